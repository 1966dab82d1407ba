"""Reading the reconciliation's results (a read model for the dashboard, the CLI and the worker): what each finding
code means and how to fix it, the open findings, their trend, and when the sources last synced. No writes here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from models.tables import Finding, ReconcileRun, SyncState
from services.core.context import Services
from services.core.errors import NotFound
from services.reconciliation.sync import STRIPE_CURSOR

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

# code → (severity, what it means, the actions that fix it)
CODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "paid_no_event": ("high", "Paid, not refunded, no calendar event", ("create_events", "refund", "acknowledge")),
    "partial_multiday": (
        "high",
        "Some days on the calendar, others missing",
        ("create_events", "cancel", "acknowledge"),
    ),
    "orphan_event": ("medium", "Calendar event with no live paid booking behind it", ("delete_events", "acknowledge")),
    "refund_no_event": (
        "low",
        "Refunded, no event: the customer still needs telling",
        ("send_refund_notice", "acknowledge"),
    ),
    "double_booking": (
        "high",
        "Two events overlap in one room",
        ("delete_hand_added", "cancel", "acknowledge"),
    ),
    "manual_event": ("low", "Event added by hand on a bookable room's calendar", ("delete_events", "acknowledge")),
    "event_mismatch": (
        "medium",
        "Event's room, date or time differs from the booking",
        ("recreate_events", "acknowledge"),
    ),
    "amount_mismatch": ("medium", "Amount charged differs from the room's price", ("refund", "acknowledge")),
    "refund_policy_mismatch": ("medium", "Refund differs from the policy's quote", ("acknowledge",)),
    "stale_payment": ("high", "Paid but never processed: webhook missed", ("confirm_payment", "refund", "acknowledge")),
    "dispute_open": ("high", "A dispute needs evidence", ("acknowledge",)),
    "missing_confirmation": (
        "medium",
        "Confirmed booking, no confirmation email sent",
        ("resend_confirmation", "acknowledge"),
    ),
    "missing_extras": ("low", "Sonic Studio booking without its extras", ("fill_extras", "acknowledge")),
    "holiday_booking": ("medium", "Booked on a statutory holiday or a closure", ("cancel_full_refund", "acknowledge")),
    "unparseable": ("low", "Payment metadata or an event we cannot read", ("acknowledge",)),
}

# The emails that tell a customer about a refund: one of them sent, a refund without an event needs no notice.
REFUND_TOLD_KINDS = {"auto_refund", "cancellation", "refund"}

ACTION_LABELS = {
    "create_events": "Create the missing events",
    "recreate_events": "Re-create the events from the payment",
    "refund": "Refund",
    "cancel": "Cancel with the policy refund",
    "cancel_full_refund": "Cancel with a full refund",
    "delete_events": "Delete the events",
    "delete_hand_added": "Delete the hand-added event",
    "send_refund_notice": "Email the customer about the refund",
    "confirm_payment": "Process the payment now",
    "resend_confirmation": "Resend the confirmation email",
    "fill_extras": "Fill in the extras",
    "acknowledge": "Acknowledge with a note",
}


def open_findings(
    svc: Services, *, codes: list[str] | None = None, include_acknowledged: bool = False
) -> list[Finding]:
    """Open findings, most severe first."""
    statuses = ["open", "acknowledged"] if include_acknowledged else ["open"]
    with svc.session() as s:
        q = select(Finding).where(col(Finding.status).in_(statuses))
        if codes:
            q = q.where(col(Finding.code).in_(codes))
        rows = list(s.exec(q))
    return sorted(rows, key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.code, f.first_seen_at))


def finding_json(f: Finding) -> dict[str, Any]:
    """A finding as JSON (what `cli reconcile --json` prints)."""
    return {
        "id": f.id,
        "code": f.code,
        "severity": f.severity,
        "status": f.status,
        "booking_id": f.booking_ref or (str(f.booking_id) if f.booking_id else None),
        "payment_intent": f.payment_intent,
        "room": f.room,
        "dates": f.dates,
        "event_ids": f.event_ids,
        "summary": f.summary,
        "actions": f.actions,
        "amount_cents": f.amount_cents,
        "first_seen_at": f.first_seen_at.isoformat(),
        "last_seen_at": f.last_seen_at.isoformat(),
    }


def get_finding(svc: Services, finding_id: int) -> Finding:
    """One finding by id; NotFound when there is none."""
    with svc.session() as s:
        row = s.get(Finding, finding_id)
    if row is None:
        raise NotFound(f"No finding #{finding_id}")
    return row


def trend(svc: Services, *, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Open findings per code after each run in the last `days` days (for the Overview chart)."""
    now = now or svc.now()
    with svc.session() as s:
        runs = list(
            s.exec(
                select(ReconcileRun)
                .where(ReconcileRun.started_at >= now - timedelta(days=days))
                .order_by(col(ReconcileRun.started_at))
            )
        )
    # Every code seen in the window gets a point at every run, 0 when none was open, so a line can reach zero.
    codes = sorted({code for r in runs for code in r.open_by_code})
    return [{"at": r.started_at, "code": code, "open": r.open_by_code.get(code, 0)} for r in runs for code in codes]


def last_sync(svc: Services) -> datetime | None:
    """When every source last synced successfully (the oldest of them), or None if never."""
    with svc.session() as s:
        rows = list(s.exec(select(SyncState).where(col(SyncState.source).like("%:%"))))
    sources = {STRIPE_CURSOR} | {f"calendar:{r.calendar_id}" for r in svc.catalogue.rooms}
    ok = {r.source: r.last_ok_at for r in rows if r.source in sources}
    if set(ok) != sources or any(v is None for v in ok.values()):
        return None
    return min(v for v in ok.values() if v is not None)
