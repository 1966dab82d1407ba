"""Reading the reconciliation's results (a read model for the dashboard, the CLI and the worker): what each finding
code means and how to fix it, the open findings, their trend, and when the sources last synced. No writes here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from models.tables import Booking, BookingStatus, DisputeCase, Finding, ReconcileRun, SyncState
from services.core.context import Services
from services.core.errors import NotFound
from services.reconciliation.sync import STRIPE_CURSOR
from services.rules import fmt

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

# code → (severity, what it means, the actions that fix it)
CODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "paid_no_event": (
        "high",
        "Paid (not refunded in full), no calendar event",
        ("create_events", "refund", "acknowledge"),
    ),
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
        "Confirmed booking, no confirmation email on record",
        ("resend_confirmation", "acknowledge"),
    ),
    "missing_extras": ("low", "Sonic Studio booking without its extras", ("fill_extras", "acknowledge")),
    "holiday_booking": ("medium", "Booked on a statutory holiday or a closure", ("cancel_full_refund", "acknowledge")),
    "unparseable": ("low", "Payment metadata or an event we cannot read", ("acknowledge",)),
    "invoice_overdue": (
        "medium",
        "Invoice unpaid past its due date: the days are still held",
        ("extend_invoice", "release_invoice", "acknowledge"),
    ),
    "deposit_hold_failed": (
        "medium",
        "A damage deposit's card hold failed: ask for another card or place it again on Deposits",
        ("acknowledge",),
    ),
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
    "resend_confirmation": "Send the confirmation email",
    "fill_extras": "Fill in the extras",
    "extend_invoice": "Hold the days 7 more days",
    "release_invoice": "Void the invoice and free the days",
    "acknowledge": "Acknowledge with a note",
}

# Stripe's dispute reasons (API reference, dispute.reason) as what the customer told their bank.
DISPUTE_REASONS = {
    "fraudulent": "Customer says they did not make this payment (fraud)",
    "unrecognized": "Customer does not recognise the charge",
    "product_not_received": "Customer says they did not get the room they paid for",
    "product_unacceptable": "Customer says the room was not as described",
    "credit_not_processed": "Customer says a refund they were promised never came",
    "duplicate": "Customer says they were charged twice",
    "subscription_canceled": "Customer says they cancelled and should not have been charged",
    "customer_initiated": "Customer asked their bank to take the payment back",
    "debit_not_authorized": "Customer says they never authorised the debit",
    "bank_cannot_process": "The bank could not process the payment",
    "insufficient_funds": "The payment bounced: not enough funds",
    "incorrect_account_details": "The payment bounced: wrong account details",
    "check_returned": "The cheque was returned",
    "noncompliant": "The card network found the payment noncompliant",
    "general": "The bank gave no specific reason",
}


def dispute_reason_words(reason: str | None) -> str:
    """A Stripe dispute reason as a sentence staff can act on (never the raw code)."""
    if not reason:
        return "The bank gave no reason"
    return DISPUTE_REASONS.get(reason, f"The bank's reason: {reason.replace('_', ' ')}")


def dispute_id(f: Finding) -> str | None:
    """The Stripe dispute a dispute_open finding is about (its subject), else None."""
    code, _, subject = f.key.partition(":")
    return subject if code == "dispute_open" and subject else None


def dispute_reasons(svc: Services) -> dict[str, str]:
    """Stripe's reason for each dispute Room Desk knows, by dispute id."""
    with svc.read_session() as s:
        return {d: r for d, r in s.exec(select(DisputeCase.dispute_id, DisputeCase.reason))}


def summary_text(svc: Services, f: Finding, reasons: dict[str, str] | None = None) -> str:
    """A finding's summary as the dashboard shows it. A dispute's is rebuilt from its facts with Stripe's reason in
    words ("Customer says they did not make this payment (fraud)") instead of the code the detector quotes."""
    dispute = dispute_id(f)
    if dispute is None:
        return f.summary
    reason = (reasons if reasons is not None else dispute_reasons(svc)).get(dispute)
    if reason is None:
        return f.summary
    due = f.details.get("due_by")
    when = (
        f"evidence due {fmt.day_label(datetime.fromisoformat(due).astimezone(svc.settings.tz).date())}"
        if isinstance(due, str)
        else "no due date"
    )
    return f"Dispute on {fmt.money(f.amount_cents, svc.settings.currency)}: {dispute_reason_words(reason)}; {when}"


def fix_label(svc: Services, f: Finding, action: str) -> str:
    """The words on a fix's button (and its dialog's) for this finding: what the fix will do to it.

    `cancel` cancels a confirmed booking's days with the policy refund — but a booking that never became confirmed
    (its saga failed with the money kept, as partial_multiday's clean-up failures do) or a payment with no booking
    has no policy to apply: the fix gives all the money back and deletes its events (plans._plan_give_back), and the
    button says so. A double booking's target is one of its two payments, not the finding's booking: its label
    stays."""
    if action == "cancel" and f.code != "double_booking" and _never_confirmed(svc, f):
        return "Refund it all and delete its events"
    return ACTION_LABELS.get(action, action)


def fixes_label(svc: Services, findings: list[Finding], action: str) -> str:
    """One fix for several findings at once (the bulk action): its words when it does the same to each, else each
    way it goes ("Cancel with the policy refund / Refund it all and delete its events")."""
    said = sorted({fix_label(svc, f, action) for f in findings}) or [ACTION_LABELS.get(action, action)]
    return " / ".join(said)


def _never_confirmed(svc: Services, f: Finding) -> bool:
    if f.booking_id is None:
        return True
    with svc.read_session() as s:
        booking = s.get(Booking, f.booking_id)
    return booking is None or booking.status == BookingStatus.FAILED


def open_findings(
    svc: Services, *, codes: list[str] | None = None, include_acknowledged: bool = False
) -> list[Finding]:
    """Open findings, most severe first."""
    statuses = ["open", "acknowledged"] if include_acknowledged else ["open"]
    with svc.read_session() as s:
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
    with svc.read_session() as s:
        row = s.get(Finding, finding_id)
    if row is None:
        raise NotFound(f"No finding #{finding_id}")
    return row


def trend(svc: Services, *, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Open findings per code after each run in the last `days` days (for the Overview chart)."""
    now = now or svc.now()
    with svc.read_session() as s:
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
    with svc.read_session() as s:
        rows = list(s.exec(select(SyncState).where(col(SyncState.source).like("%:%"))))
    sources = {STRIPE_CURSOR} | {f"calendar:{r.calendar_id}" for r in svc.catalogue.rooms}
    ok = {r.source: r.last_ok_at for r in rows if r.source in sources}
    if set(ok) != sources or any(v is None for v in ok.values()):
        return None
    return min(v for v in ok.values() if v is not None)
