"""Audit actions as the sentences a person reads in a booking's timeline: `booking.hold.created` → "Slot held until
Fri 4 Dec 14:30", `booking.legs.advanced` → "Every day is over: booking completed".

Every action name written by services/ (audit.record) has its sentence here, filled from the row's payload where it
says something worth reading (the money, the day, the hold's end); an action without one — a new one — still reads
as words ("block.created" → "Block created"), never as a dotted code. Pure: the caller passes how money, days and
instants are written (the dashboard in venue time, the evidence PDF its own way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.rules.fmt import day_label, money

# What each email kind is called in a sentence ("Confirmation email sent to …").
EMAIL_KINDS = {
    "confirmation": "Confirmation",
    "auto_refund": "Refund",
    "refund": "Refund",
    "cancellation": "Cancellation",
    "pay_link": "Pay link",
    "reminder": "Reminder",
    "changed": "Booking changed",
    "change_failed": "Change not made",
    "change_pay_link": "Change pay link",
    "change_request": "Change request",
    "invoice_held": "Booking held on invoice",
    "invoice_overdue": "Invoice overdue reminder",
    "deposit_held": "Deposit held",
    "deposit_claim": "Damage claim",
    "deposit_captured": "Damage claim taken",
    "deposit_released": "Deposit released",
}
# Why a refund was made (RefundRecord.origin), after "Refund of $40.00 made …".
REFUND_ORIGINS = {
    "cancellation": "for the cancelled days",
    "auto_gate2": "in full: the slot was taken when the payment arrived",
    "remediation": "by a fix on Mismatches",
    "amendment": "for a change to the booking",
    "override": "above the policy, as approved",
    "stripe_dashboard": "in Stripe's own dashboard",
}
CHANGE_STATES = {
    "awaiting_payment": "waits for its payment",
    "applying": "is being made",
    "applied": "made",
    "lapsed": "lapsed unpaid",
    "withdrawn": "withdrawn",
    "failed": "not made: the difference was refunded",
}
OVERRIDE_STATES = {
    "requested": "asked",
    "signed": "signed",
    "approved": "approved",
    "executed": "made",
    "failed": "failed",
    "retried": "tried again",
    "rejected": "rejected",
    "withdrawn": "withdrawn",
}
CLOSE_STATES = {"passed": "Stripe and the ledger agree", "failed": "Stripe and the ledger differ", "error": "failed"}


@dataclass(frozen=True)
class Say:
    """One audit row's payload with the formatters a sentence needs."""

    payload: Mapping[str, Any]
    currency: str
    moment: Callable[[datetime], str]
    day: Callable[[date], str]

    def text(self, key: str, default: str = "") -> str:
        value = self.payload.get(key)
        return default if value in (None, "") else str(value)

    def money(self, *keys: str) -> str:
        """The first of `keys` the payload has, in money ('' when none)."""
        for key in keys:
            if isinstance(value := self.payload.get(key), int):
                return money(value, self.currency)
        return ""

    def when(self, key: str) -> str:
        value = self.payload.get(key)
        try:
            return self.moment(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))
        except (TypeError, ValueError):
            return ""

    def days(self, key: str = "days") -> str:
        value = self.payload.get(key)
        values = value if isinstance(value, list) else [value] if value else []
        out = []
        for v in values:
            try:
                out.append(self.day(v if isinstance(v, date) else date.fromisoformat(str(v))))
            except ValueError:
                out.append(str(v))
        return ", ".join(out)


def _opt(word: str, value: str) -> str:
    """' until Fri 4 Dec 14:30' when there is a value, '' when not: the optional end of a sentence."""
    if not value:
        return ""
    return f"{word} {value}" if word in (":", ";", ",") else f" {word} {value}".replace("  ", " ")


def _change(s: Say) -> str:
    return f"Change {s.text('change', '?')}"


SENTENCES: dict[str, Callable[[Say], str]] = {
    # A booking's life
    "booking.hold.created": lambda s: "Slot held" + _opt("until", s.when("expires_at")),
    "booking.hold.extended": lambda s: "Hold extended" + _opt("to", s.when("expires_at")),
    "booking.hold.lapsed": lambda s: "Unpaid hold lapsed; the slot was released",
    "booking.hold.expired": lambda s: "Unpaid hold expired; the slot was released",
    "booking.hold.released": lambda s: "Hold released by staff; the slot is free again",
    "booking.hold.cancelled": lambda s: "Unpaid booking cancelled; the slot was released",
    "booking.hold.refused": lambda s: "Web hold refused: too many unpaid holds",
    "booking.terms.accepted": lambda s: (
        "Terms" + _opt("", s.text("version")) + " accepted" + (" on the pay page" if s.payload.get("via") else "")
    ),
    "booking.payment_intent.created": lambda s: "Payment" + _opt("of", s.money("amount_cents")) + " requested",
    "booking.payment_intent.failed": lambda s: "Payment request could not be made",
    "booking.invoice.planned": lambda s: (
        "To be paid by invoice"
        + _opt("by", s.text("organisation"))
        + _opt("on net", s.text("terms_days"))
        + (" days" if s.text("terms_days") else "")
        + _opt(";", f"PO {s.text('po_number')}" if s.text("po_number") else "")
    ),
    "booking.invoice.sent": lambda s: (
        "Invoice"
        + _opt("", s.text("number"))
        + _opt("of", s.money("amount_cents"))
        + " sent"
        + _opt("to", s.text("billing_email"))
        + _opt(";", f"due {s.when('due_at')}" if s.when("due_at") else "")
    ),
    "booking.invoice.failed": lambda s: "The invoice could not be made; the hold was released",
    "booking.invoice.paid": lambda s: "Invoice paid" + _opt("—", s.money("amount_cents")),
    "booking.invoice.paid_out_of_band": lambda s: "Invoice marked paid outside Stripe: confirm the booking by hand",
    "booking.invoice.voided": lambda s: "Invoice voided" + _opt(":", s.text("reason")),
    "booking.invoice.extended": lambda s: (
        "Invoice hold extended" + _opt("to", s.when("due_at")) + _opt("—", s.text("reason"))
    ),
    "booking.invoice.reminded": lambda s: "Overdue reminder sent" + _opt("to", s.text("billing_email")),
    "booking.payment.succeeded": lambda s: "Payment" + _opt("of", s.money("amount", "amount_cents")) + " received",
    "booking.payment.failed": lambda s: "Card payment failed" + _opt("—", s.text("decline_code").replace("_", " ")),
    "booking.payment.refunded_before_processing": lambda s: "Payment refunded before it was processed",
    "booking.confirmed": lambda s: "Booking confirmed" + _opt("for", s.days()),
    "booking.gate2.conflict": lambda s: "Slot found taken when the payment arrived",
    "booking.gate2.failed": lambda s: "Availability could not be checked when the payment arrived",
    "booking.legs.advanced": lambda s: (
        "Every day is over: booking completed" if s.text("status") == "COMPLETED" else "A booked day started or ended"
    ),
    "booking.cancelled": lambda s: "Cancelled" + _opt("", s.days()) + _opt("with a refund of", s.money("refund_cents")),
    "booking.refunded": lambda s: "Refunded" + _opt("", s.money("refund_cents")) + _opt("for", s.days()),
    "booking.refund.failed": lambda s: "Refund" + _opt("of", s.money("amount_cents")) + " failed",
    "booking.reinstated": lambda s: "Booking restored" + _opt("for", s.days()),
    "booking.adopted": lambda s: "The old system's payment was taken into Room Desk as this booking",
    "booking.customer.updated": lambda s: "Customer details corrected",
    "booking.confirmation.resent": lambda s: "Confirmation sent again",
    "booking.pay_link.queued": lambda s: "Pay link emailed to the customer",
    "booking.reminder.queued": lambda s: "Reminder queued" + _opt("for", s.days("day")),
    "booking.extras.filled": lambda s: "Room details filled in",
    # The room's calendar
    "booking.event.created": lambda s: "Calendar event created" + _opt("for", s.days("day")),
    "booking.event.updated": lambda s: "Calendar event details updated" + _opt("for", s.days()),
    "booking.event.moved": lambda s: "Calendar event moved",
    "booking.event.deleted": lambda s: "Calendar event deleted",
    "booking.event.delete_failed": lambda s: "Calendar event could not be deleted",
    "booking.event.failed": lambda s: "Calendar event could not be created",
    "booking.cleanup.started": lambda s: "Clean-up started: removing the events just made",
    "booking.cleanup.failed": lambda s: "Clean-up failed: events are left on the calendar",
    "booking.cleanup.done": lambda s: "Clean-up done: the events just made are removed",
    # Changes to a paid booking
    "booking.change.requested": lambda s: "Customer asked the venue for a change",
    "booking.change.started": lambda s: f"{_change(s)} started",
    "booking.change.held": lambda s: (
        f"{_change(s)}: new times held" + _opt("until", s.when("expires_at")) + ", waiting for payment"
    ),
    "booking.change.payment_intent.created": lambda s: (
        f"{_change(s)}: payment" + _opt("of", s.money("amount_cents")) + " requested"
    ),
    "booking.change.paid": lambda s: f"{_change(s)}: payment" + _opt("of", s.money("amount_cents")) + " received",
    "booking.change.days_moved": lambda s: f"{_change(s)}: days moved",
    "booking.change.step_failed": lambda s: f"{_change(s)}: a step failed and is retried",
    "booking.change.gate2_failed": lambda s: f"{_change(s)} could not be made: the room was taken",
    "booking.changed": lambda s: f"Booking changed ({_change(s).lower()})",
    # Refunds above the policy
    "booking.override.requested": lambda s: (
        "Refund above the policy asked" + _opt("for", s.money("requested_refund_cents"))
    ),
    "booking.override.executed": lambda s: "Refund above the policy made" + _opt("of", s.money("refund_cents")),
    "booking.override.signed": lambda s: "Refund above the policy signed" + _opt("by the", s.text("role")),
    # Disputes
    "booking.dispute.opened": lambda s: "The customer's bank opened a dispute",
    "booking.dispute.updated": lambda s: "Dispute updated by Stripe",
    "booking.dispute.closed": lambda s: "Dispute closed",
    "booking.dispute.evidence.saved": lambda s: "Dispute evidence saved as a draft",
    "booking.dispute.evidence.submitted": lambda s: "Dispute evidence submitted to Stripe",
    # Blocks and closures, settings
    "block.created": lambda s: "Block made" + _opt("for", s.text("kind").replace("_", " ")),
    "block.released": lambda s: "Block released",
    "block.events.created": lambda s: "Block's calendar events put",
    "block.events.deleted": lambda s: "Block's calendar events deleted",
    "settings.changed": lambda s: "Setting changed" + _opt(":", s.text("field").replace("_", " ")),
    # Emails, reconciliation, the daily close, webhooks
    "email.reminder.withdrawn": lambda s: "Reminder withdrawn: its day is no longer booked",
    "finding.acknowledged": lambda s: "Mismatch acknowledged with a note",
    "reconcile.run": lambda s: f"Reconciliation: {s.text('opened', '0')} new, {s.text('resolved', '0')} resolved",
    "sync.completed": lambda s: "Stripe and the room calendars synced",
    "finance.close.error": lambda s: "Daily close failed",
    "webhook.failed": lambda s: "Stripe webhook could not be processed",
    "webhook.replayed": lambda s: "Stripe webhook processed again",
    # Damage deposits (services/finance/deposits.py)
    "booking.deposit.required": lambda s: "Damage deposit" + _opt("of", s.money("amount_cents")) + " required",
    "booking.deposit.card_requested": lambda s: "Card asked for the damage deposit",
    "booking.deposit.card_saved": lambda s: "Card saved for the damage deposit",
    "booking.deposit.held": lambda s: "Damage deposit" + _opt("of", s.money("amount_cents")) + " held on the card",
    "booking.deposit.reheld": lambda s: "Damage deposit held again before the earlier hold lapsed",
    "booking.deposit.hold_released": lambda s: "Earlier damage deposit hold released",
    "booking.deposit.hold_failed": lambda s: "Damage deposit hold failed" + _opt(":", s.text("error")),
    "booking.deposit.step_failed": lambda s: "Damage deposit step failed" + _opt(":", s.text("step")) + "; retried",
    "booking.deposit.released": lambda s: (
        "Damage deposit" + _opt("of", s.money("amount_cents")) + " released" + _opt(":", s.text("why"))
    ),
    "booking.deposit.cancelled": lambda s: "No damage deposit held" + _opt(":", s.text("why")),
    "booking.deposit.lapsed": lambda s: "Damage deposit hold cancelled at Stripe",
    "booking.deposit.claim.filed": lambda s: "Damage claim" + _opt("of", s.money("amount_cents")) + " filed",
    "booking.deposit.claim.signed": lambda s: "Damage claim signed" + _opt("by the", s.text("role")),
    "booking.deposit.claim.approved": lambda s: "Damage claim approved by a manager and finance",
    "booking.deposit.claim.captured": lambda s: (
        "Damage claim" + _opt("of", s.money("amount_cents")) + " taken from the deposit"
    ),
    "booking.deposit.claim.failed": lambda s: "Damage claim could not be taken from the deposit",
    "booking.deposit.claim.rejected": lambda s: "Damage claim rejected",
    "booking.deposit.claim.withdrawn": lambda s: "Damage claim withdrawn",
    "booking.deposit.claim.retried": lambda s: "Damage claim tried again",
}


def _family(action: str, say: Say, fix_words: Mapping[str, str]) -> str | None:
    """Sentences for the action names built from a value: email.<kind>.<what>, booking.refund.<origin>,
    booking.change.<state>, booking.override.<state>, finance.close.<status>, remediation.<action>."""
    head, _, last = action.rpartition(".")
    if action.startswith("email.") and action.count(".") == 2:
        kind = action.split(".")[1]
        name = EMAIL_KINDS.get(kind, kind.replace("_", " ").capitalize())
        return {  # the address is in the row's details
            "sent": f"{name} email sent",
            "failed": f"{name} email not sent yet (retried)",
            "retry": f"{name} email queued again",
        }.get(last)
    if head == "booking.refund":
        why = REFUND_ORIGINS.get(last, f"({last.replace('_', ' ')})")
        return "Refund" + _opt("of", say.money("amount_cents")) + f" made {why}"
    if head == "booking.change" and last in CHANGE_STATES:
        return f"Change {say.text('change', '?')} {CHANGE_STATES[last]}"
    if head == "booking.override" and last in OVERRIDE_STATES:
        return f"Refund above the policy {OVERRIDE_STATES[last]}"
    if head == "finance.close" and last in CLOSE_STATES:
        return f"Daily close: {CLOSE_STATES[last]}"
    if head == "remediation":
        done = " (not done)" if say.payload.get("ok") is False else ""
        return f"Fix on Mismatches: {fix_words.get(last, last.replace('_', ' ')).lower()}{done}"
    return None


def plain(action: str) -> str:
    """Any action name as words, for one without a sentence: 'booking.block.created' → 'Block created'."""
    words = action.removeprefix("booking.").replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Recorded"


def sentence(
    action: str,
    payload: Mapping[str, Any] | None = None,
    *,
    currency: str = "CAD",
    moment: Callable[[datetime], str] = lambda m: m.isoformat(timespec="minutes"),
    day: Callable[[date], str] = day_label,
    fix_words: Mapping[str, str] | None = None,
) -> str:
    """The audit row `action` (with its payload) as one sentence; `fix_words` names the Mismatches fixes."""
    say = Say(payload or {}, currency, moment, day)
    if (words := SENTENCES.get(action)) is not None:
        return words(say)
    return _family(action, say, fix_words or {}) or plain(action)


def has_sentence(action: str) -> bool:
    """Whether `action` has a sentence of its own (not the plain-words fallback)."""
    return action in SENTENCES or _family(action, Say({}, "CAD", str, str), {}) is not None
