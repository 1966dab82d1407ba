"""Every audit action services/ writes reads as a sentence in a booking's timeline (issue 14 §2), never as its code.

The action names are found in the source itself (each audit.record call, and the action names handed to one through
a variable or a constant), so a new action without a sentence fails here rather than showing a code to staff."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.tables import AmendmentState, CloseStatus
from services.authz import ACTIONS as PERMISSIONS
from services.finance.reports import ORIGINS
from services.reconciliation.findings import ACTION_LABELS
from services.rules import audit_words

SERVICES = Path(__file__).resolve().parents[2] / "services"
ACTION_NAME = re.compile(r"^(booking|email|block|settings|finding|reconcile|sync|webhook|finance)\.[a-z0-9_.]*[a-z]$")


def _sources() -> list[tuple[Path, ast.Module]]:
    # services/rules writes nothing (no audit row), and its word lists hold domain names ("email.com").
    return [(p, ast.parse(p.read_text())) for p in SERVICES.rglob("*.py") if "rules" not in p.parts]


def _audit_calls() -> list[ast.Call]:
    return [
        node
        for _, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "record"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "audit"
        and len(node.args) > 1
    ]


def literal_actions() -> set[str]:
    """The action names written as such: audit.record's own argument, and every action-shaped string in services/
    (those reach audit.record through a variable: `action="booking.hold.cancelled"`, EXTENDED = "…"), less the
    permission names services.authz checks."""
    found = {
        c.value
        for call in _audit_calls()
        for c in ast.walk(call.args[1])
        if isinstance(c, ast.Constant) and isinstance(c.value, str)
    }
    for _, tree in _sources():
        found |= {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and ACTION_NAME.match(n.value)
        }
    return {a for a in found if ACTION_NAME.match(a) and a not in PERMISSIONS}


def templated_actions() -> set[str]:
    """The action names built from a value (f"email.{row.kind}.sent"…), with every value that value can take."""
    templates = {ast.unparse(call.args[1]) for call in _audit_calls() if isinstance(call.args[1], ast.JoinedStr)}
    # The email kinds: `kind=` of the calls that queue an email (they also pass the `mail=`).
    kinds = {
        n.value
        for _, tree in _sources()
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and any(k.arg == "mail" for k in call.keywords)
        for n in [k.value for k in call.keywords if k.arg == "kind"]
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    values = {
        "f'email.{row.kind}.sent'": [f"email.{k}.sent" for k in kinds],
        "f'email.{row.kind}.failed'": [f"email.{k}.failed" for k in kinds],
        "f'email.{row.kind}.retry'": [f"email.{k}.retry" for k in kinds],
        "f'booking.refund.{origin}'": [f"booking.refund.{o}" for o in [*ORIGINS, "override"]],
        "f'booking.change.{state.value}'": [f"booking.change.{s.value}" for s in AmendmentState],
        "f'booking.override.{status}'": ["booking.override.rejected", "booking.override.withdrawn"],
        "f'finance.close.{status}'": [f"finance.close.{s.value}" for s in CloseStatus],
        "f'remediation.{action}'": [f"remediation.{a}" for a in ACTION_LABELS],
    }
    unknown = templates - set(values)
    assert not unknown, f"an audit action built from a value this test does not know: {unknown}"
    assert {"confirmation", "reminder", "pay_link", "refund", "cancellation"} <= kinds
    return {a for t in templates for a in values[t]}


def test_the_scan_finds_the_actions_it_should() -> None:
    found = literal_actions()
    # Direct, through a variable (holds' action=, saga's _fail_and_refund), and through a module constant.
    assert {"booking.confirmed", "booking.hold.cancelled", "booking.gate2.conflict", "booking.hold.extended"} <= found
    assert not found & {"booking.cancel", "booking.create", "finding.fix"}  # permissions, not actions


@pytest.mark.parametrize("action", sorted(literal_actions() | templated_actions()))
def test_every_audit_action_has_a_sentence(action: str) -> None:
    assert audit_words.has_sentence(action), f"{action} has no sentence in services/rules/audit_words.py"
    said = audit_words.sentence(action, {}, fix_words=ACTION_LABELS)
    assert said and said[0].isupper() and "_" not in said and action not in said
    assert not re.search(r"\b[a-z]+\.[a-z]+\b", said), said
    if action.startswith("email."):
        assert action.split(".")[1] in audit_words.EMAIL_KINDS


def test_sentences_carry_the_payloads_facts() -> None:
    def say(action: str, **payload: object) -> str:
        return audit_words.sentence(
            action, payload, currency="CAD", moment=lambda m: f"{m:%a %d %b %H:%M}", fix_words=ACTION_LABELS
        )

    held = datetime(2026, 3, 4, 14, 30, tzinfo=UTC).isoformat()
    assert say("booking.hold.created", expires_at=held) == "Slot held until Wed 04 Mar 14:30"
    assert say("booking.hold.created") == "Slot held"  # an old row without the expiry still reads
    assert say("booking.payment.succeeded", amount=9000) == "Payment of $90.00 received"
    assert say("booking.cancelled", days=["2026-03-04"], refund_cents=4500) == (
        "Cancelled Wed 4 Mar with a refund of $45.00"
    )
    assert say("booking.legs.advanced", status="COMPLETED") == "Every day is over: booking completed"
    assert say("booking.legs.advanced", status="CONFIRMED") == "A booked day started or ended"
    assert say("booking.refund.cancellation", amount_cents=4500) == "Refund of $45.00 made for the cancelled days"
    assert say("remediation.create_events", ok=False) == "Fix on Mismatches: create the missing events (not done)"
    assert say("booking.change.held", change=2, expires_at=held) == (
        "Change 2: new times held until Wed 04 Mar 14:30, waiting for payment"
    )


def test_an_action_without_a_sentence_still_reads_as_words() -> None:
    assert audit_words.sentence("booking.room.swapped_over") == "Room swapped over"
    assert audit_words.sentence("waitlist.offer.sent") == "Waitlist offer sent"
    assert not audit_words.has_sentence("waitlist.offer.sent")
