"""Who may do what: every dashboard action × every role, checked in the service layer before anything happens, and
the pages unable to go around it."""

from __future__ import annotations

import inspect
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from models.tables import AuditLog
from services import authz
from services.authz import ACTIONS, DESK_ACTIONS, Desk, Staff
from services.core.errors import NotAllowed

PAGES = Path(__file__).resolve().parents[2] / "pages"
ROLES = ("frontdesk", "manager", "finance", "admin")

# What the venue asked for, written out independently of services/authz.py: method → roles that may use it.
DESK = {"frontdesk", "manager", "admin"}
MANAGE = {"manager", "admin"}
MONEY = {"manager", "finance", "admin"}
EXPECTED: dict[str, set[str]] = {
    "start_booking": DESK,
    "record_payment": DESK,
    "send_pay_link": DESK,
    "cancel_booking": DESK,
    "request_override": DESK,
    "approve_override": MONEY,
    "reject_override": MONEY,
    "retry_override": MONEY,
    "withdraw_override": set(ROLES),
    "run_remediation": MANAGE,
    "run_bulk_remediation": MANAGE,
    "sync": MANAGE,
    "reconcile": MANAGE,
    "send_due_emails": MANAGE,
    "retry_email": MANAGE,
    "replay_webhook": MANAGE,
    "refresh_disputes": MONEY,
    "save_dispute_evidence": MONEY,
    "run_close": {"finance", "admin"},
    "check_connections": {"admin"},
}

# Arguments that get each call past its role check to the service, which then fails or succeeds on its own terms.
ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "start_booking": ((None,), {}),
    "record_payment": ((999_999,), {}),
    "send_pay_link": ((999_999,), {}),
    "cancel_booking": ((999_999,), {}),
    "request_override": ((999_999,), {"leg_ids": [1], "refund_cents": 100, "reason": "x"}),
    "approve_override": ((999_999,), {}),
    "reject_override": ((999_999,), {"note": "x"}),
    "retry_override": ((999_999,), {}),
    "withdraw_override": ((999_999,), {}),
    "run_remediation": ((999_999, "refund"), {}),
    "run_bulk_remediation": (([999_999], "refund"), {}),
    "sync": ((), {}),
    "reconcile": ((), {}),
    "send_due_emails": ((), {}),
    "retry_email": ((999_999,), {}),
    "replay_webhook": ((999_999,), {}),
    "refresh_disputes": ((), {}),
    "save_dispute_evidence": ((999_999,), {"submit": True}),
    "run_close": ((date(2026, 3, 1),), {}),
    "check_connections": ((), {}),
}


def desk_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(Desk, inspect.isfunction) if not name.startswith("_")]


def audit_rows(svc: Any) -> int:
    with svc.session() as s:
        return int(s.exec(select(func.count()).select_from(AuditLog)).one())


def calls(svc: Any) -> int:
    return sum(sum(g.faults.calls.values()) for g in (svc.payments, svc.calendar, svc.mail))


def test_every_desk_method_is_in_the_tables() -> None:
    assert sorted(desk_methods()) == sorted(DESK_ACTIONS) == sorted(EXPECTED) == sorted(ARGS)
    assert {a for actions in DESK_ACTIONS.values() for a in actions} == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_every_action_with_every_role(svc: Any, method: str, role: str) -> None:
    args, kwargs = ARGS[method]
    desk = Desk(svc, Staff(f"{role}@venue.example", role))
    before = (audit_rows(svc), calls(svc))
    try:
        getattr(desk, method)(*args, **kwargs)
        raised: Exception | None = None
    except Exception as exc:  # the service's own refusal (no such booking…) once past the role check
        raised = exc
    if role in EXPECTED[method]:
        assert not isinstance(raised, NotAllowed), f"{role} refused {method}: {raised}"
    else:
        assert isinstance(raised, NotAllowed), f"{role} was let through {method} ({raised!r})"
        assert authz.ROLES[role] in raised.message and "only" in raised.message
        assert (audit_rows(svc), calls(svc)) == before  # refused before anything: no audit row, no gateway call


def test_acknowledging_and_fixing_are_separate_actions(svc: Any) -> None:
    finance = Desk(svc, Staff("fin@venue.example", "finance"))
    for action in ("acknowledge", "refund"):
        with pytest.raises(NotAllowed):
            finance.run_remediation(1, action, note="x")


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_nobody_signed_in_can_do_nothing(svc: Any, method: str) -> None:
    args, kwargs = ARGS[method]
    with pytest.raises(NotAllowed, match="Someone not signed in cannot"):
        getattr(Desk(svc, None), method)(*args, **kwargs)


def test_an_unknown_role_is_refused_everything(svc: Any) -> None:
    with pytest.raises(NotAllowed):
        Desk(svc, Staff("x@venue.example", "owner")).cancel_booking(1)


def test_the_person_is_the_actor_in_the_audit_trail(svc: Any, booking_request: Any) -> None:
    desk = Desk(svc, Staff("dana@venue.example", "frontdesk"))
    started = desk.start_booking(booking_request(channel="phone"))
    desk.record_payment(started.booking_id)
    with svc.session() as s:
        actors = {a.actor for a in s.exec(select(AuditLog).where(AuditLog.booking_id == started.booking_id))}
    assert "dana@venue.example" in actors and not {a for a in actors if a.endswith("@sandbox")}


def test_roles_come_from_staff_roles_by_email_any_case() -> None:
    roles = {"dana@venue.example": "frontdesk", "fin@venue.example": "finance"}
    assert authz.role_for("Dana@Venue.Example ", roles) == "frontdesk"
    assert authz.role_for("fin@venue.example", roles) == "finance"
    assert authz.role_for("stranger@venue.example", roles) is None
    assert authz.role_for("", roles) is None and authz.role_for(None, roles) is None


# Service functions that change something: a page may reach them only through ui.desk().
WRITERS = (
    "start_booking",
    "sandbox_pay",
    "cancel_booking",
    "send_pay_link",
    "request_override",
    "run_action",
    "run_bulk",
    "deliver_due",
    "retry_now",
    "replay_event",
    "refresh_disputes",
    "save_evidence",
    "run_close",
    "check_connections",
    "confirm_payment",
    "expire_holds",
    "advance_legs",
    "acknowledge",
)
MODULE_WRITERS = re.compile(r"\b(?:overrides\.(?:approve|reject|retry|withdraw)|sync\.sync|reconcile\.reconcile)\(")


@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.glob("*.py")), ids=str)
def test_pages_change_nothing_except_through_the_desk(page: str) -> None:
    source = (PAGES / page).read_text()
    direct = [
        m.group(0)
        for m in re.finditer(r"(?<![\w.])(?:[a-z_]+\.)?(" + "|".join(WRITERS) + r")\(", source)
        if not source[max(0, m.start() - 10) : m.start()].endswith("desk().")
    ]
    assert direct == [], f"{page} calls {direct} directly: go through ui.desk() so the role is checked"
    assert not MODULE_WRITERS.search(source), f"{page}: {MODULE_WRITERS.search(source)}"
