"""Building blocks of the reliability suite: cheap service containers copied from snapshots, the retry path that
follows a fault (re-run, webhook redelivery, hold expiry, outbox, sync + reconcile + the offered remediations), and
the fault modes per operation."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from services import booking as bk
from services.booking.holds import finish_paid
from services.booking.invoices import invoice_round
from services.core.context import build_services
from services.core.errors import DomainError
from services.core.settings import Settings
from services.gateways.base import all_pages
from services.notify import outbox
from services.reconciliation import findings, reconcile, remediate, sync
from services.web import webhooks
from tests.conftest import NOW, Clock
from tests.reliability.stats import COUNTS

ACTOR = "reliability@venue.example"
SONIC_EXTRAS = {"show_name": "Night Shift", "set_choice": "Podcast table"}

# Calls with a side effect outside: each fails before it, after it (the answer is lost) and by timeout (after it,
# as TimeoutFault). Reads have no side effect, so "before" is the only distinct case.
WRITE_OPS = {
    # pay by invoice (issue 15)
    "create_customer",
    "create_tax_rate",
    "create_invoice",
    "finalize_invoice",
    "send_invoice",
    "void_invoice",
    "create_payment_intent",
    "confirm_payment_intent",
    "cancel_payment_intent",
    "refund",
    "insert_event",
    "delete_event",
    "patch_event",
    "send",
}
READ_OPS = {"retrieve_payment_intent", "get_event", "list_events", "freebusy", "list_refunds"}
GATEWAYS = ("payments", "calendar", "mail")

# The fix tried first for each finding (then the one a refusal offers).
PREFERRED = {
    "stale_payment": "confirm_payment",
    "paid_no_event": "create_events",
    "partial_multiday": "create_events",
    "orphan_event": "delete_events",
    "double_booking": "delete_hand_added",
    "manual_event": "delete_events",
    "holiday_booking": "cancel_full_refund",
    "missing_extras": "fill_extras",
    "missing_confirmation": "resend_confirmation",
    "refund_no_event": "send_refund_notice",
    "event_mismatch": "recreate_events",
    "amount_mismatch": "refund",
}
FIX_KWARGS: dict[str, Any] = {
    "note": "Checked after the reliability run",
    "reason": "Reliability retry path",
    "extras": SONIC_EXTRAS,
}

_ROOT = Path(tempfile.mkdtemp(prefix="roomdesk-reliability-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_TEMPLATE: Path | None = None


def template() -> Path:
    """A migrated, empty data dir, built once per process and copied for every case."""
    global _TEMPLATE
    if _TEMPLATE is None:
        path = _ROOT / "template"
        svc = build_services(Settings(data_dir=path))
        svc.engine.dispose()
        _TEMPLATE = path
    return _TEMPLATE


def new_dir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name[:40]}-", dir=_ROOT))
    path.rmdir()
    return path


def services_from(source: Path, *, now: datetime = NOW, **overrides: Any) -> Any:
    """A Services container on a copy of `source` (a data dir), with a hand-moved clock."""
    target = new_dir(source.name)
    shutil.copytree(source, target)
    svc = build_services(Settings(data_dir=target, **overrides), migrate=False)
    svc.clock = Clock(now)
    return svc


def fresh_services(now: datetime = NOW, **overrides: Any) -> Any:
    return services_from(template(), now=now, **overrides)


def all_faults(svc: Any) -> list[Any]:
    return [getattr(getattr(svc, g), "faults") for g in GATEWAYS]


def clear_faults(svc: Any) -> int:
    """Disarm every rule; returns how many faults fired since the last clear."""
    fired = sum(f.injected for f in all_faults(svc))
    for f in all_faults(svc):
        f.clear()
    return fired


def calls(svc: Any) -> dict[tuple[str, str], int]:
    """(gateway, operation) → number of calls counted since the last clear."""
    return {(g, op): n for g in GATEWAYS for op, n in getattr(svc, g).faults.calls.items()}


def modes_for(op: str) -> tuple[str, ...]:
    return ("before", "after", "timeout") if op in WRITE_OPS else ("before",)


# --------------------------------------------------------------------------------------------- the retry path


def quietly(fn: Callable[[], Any]) -> Any:
    """Run one step of the retry path; a domain error (a gateway still refusing, nothing to do) is an answer."""
    try:
        return fn()
    except DomainError as exc:
        return exc


def redeliver_webhooks(svc: Any) -> int:
    """Stripe redelivers every event (any order, duplicates allowed): store and process each one, oldest first."""
    events = all_pages(lambda after: svc.payments.list_events(limit=100, starting_after=after))
    n = 0
    for event in reversed(events):
        row_id, needs = webhooks.record_event(svc, event)
        if needs:
            quietly(lambda row_id=row_id: webhooks.process_event(svc, row_id, actor="stripe-webhook"))
        n += 1
    return n


def remediate_open(svc: Any, rounds: int = 3) -> list[str]:
    """Sync + reconcile, then apply each open finding's fix (or the alternative a refusal offers); repeat until no
    finding is left that a fix can clear. Returns the messages of fixes that did not work."""
    failures: list[str] = []
    for _ in range(rounds):
        sync.sync(svc)
        reconcile.reconcile(svc)
        todo = [f for f in findings.open_findings(svc) if f.code in PREFERRED]
        if not todo:
            return failures
        failures = []
        for f in todo:
            assert f.id is not None
            kwargs = dict(FIX_KWARGS)
            if f.code == "amount_mismatch":
                kwargs["amount"] = "difference"
            result = remediate.run_action(svc, f.id, PREFERRED[f.code], actor=ACTOR, **kwargs)
            COUNTS["remediations applied"] += 1
            if not result.ok and result.offer:
                result = remediate.run_action(svc, f.id, result.offer, actor=ACTOR, **kwargs)
                COUNTS["remediations applied"] += 1
            if not result.ok and "nothing to do" not in result.message.lower():
                failures.append(f"{f.code} → {result.action}: {result.message}")
    sync.sync(svc)
    reconcile.reconcile(svc)
    return failures


def settle(svc: Any, rerun: Callable[[], Any] | None = None, *, advance: bool = True) -> list[str]:
    """The retry path after a fault, with every fault disarmed: re-run the action, let Stripe redeliver its
    webhooks, let the unpaid holds expire (`advance`: move the clock past a web hold) and the worker finish what a
    change left half made, send the outbox, then sync + reconcile and apply the offered fixes."""
    clear_faults(svc)
    if rerun is not None:
        quietly(rerun)
    redeliver_webhooks(svc)
    if advance:
        svc.clock.advance(minutes=45)  # past a web hold's 30 minutes and the outbox's first backoffs
    quietly(lambda: finish_paid(svc))  # the worker's first step: paid at Stripe, owner gone → confirmed now
    quietly(lambda: bk.expire_holds(svc))
    quietly(lambda: bk.expire_change_holds(svc))  # the worker: lapsed change holds, changes a fault left half made
    quietly(lambda: invoice_round(svc))  # the worker: invoices paid / voided at Stripe, invoices a fault left open
    quietly(lambda: outbox.deliver_due(svc, now=svc.now() + timedelta(hours=2)))
    problems = remediate_open(svc)
    quietly(lambda: outbox.deliver_due(svc, now=svc.now() + timedelta(hours=2)))
    return problems
