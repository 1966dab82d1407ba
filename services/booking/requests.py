"""Commands and results of the booking use cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from services.core.errors import ValidationError
from services.rules.availability import (
    SlotRequest,
)
from services.rules.bill import Bill
from services.rules.contact import validate_email
from services.rules.pricing import Quote


@dataclass(frozen=True)
class BookingRequest:
    room: str
    dates: tuple[date, ...]
    start: time
    end: time
    customer_name: str
    customer_email: str
    customer_phone: str = ""
    party_size: int | None = None
    extras: dict[str, Any] | None = None
    notes: str = ""
    channel: str = "web"  # web | phone
    agreement_version: str | None = None
    # The version of the cancellation policy and terms the customer accepted (web); None = not yet (phone bookings
    # accept on the pay page). Must be the current version (settings.terms_version).
    terms_version: str | None = None
    # A keyed hash of the web client's address (never the address itself): its unpaid holds are limited
    # (settings.hold_limit_per_client). None for staff and for callers that do not know it.
    client_key: str | None = None

    def slot(self) -> SlotRequest:
        return SlotRequest(tuple(self.dates), self.start, self.end, self.party_size)

    @property
    def minutes_per_day(self) -> int:
        """Minutes from start to end on each day (0 when the end is not after the start)."""
        return max((self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute), 0)


@dataclass(frozen=True)
class QuoteResult:
    quote: Quote
    reasons: list[str]

    @property
    def available(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class StartResult:
    booking_id: int
    reference: str
    payment_intent: str
    client_secret: str
    amount_cents: int
    hold_expires_at: datetime | None  # None: held until an invoice is paid or voided
    bill: Bill  # what the payment charges, in parts (rules.bill.sold_bill of the booking as stored)
    pay_token: str = ""

    @property
    def pay_path(self) -> str:
        """The customer's pay page (relative to settings.public_base_url)."""
        return f"/pay/{self.reference}?k={self.pay_token}"


@dataclass
class ConfirmResult:
    booking_id: int
    reference: str
    outcome: str  # confirmed | already_done | auto_refunded | cleanup_failed | not_paid
    messages: list[str] = field(default_factory=list)


@dataclass
class CancelResult:
    booking_id: int
    refund_cents: int
    cancelled_days: list[date]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CustomerUpdate:
    """What update_customer changed: each field's (before, after), the days whose calendar events now say so and
    what could not be updated there, and what the person may want to do next."""

    booking_id: int
    reference: str
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    events_updated: list[date] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The email changed on a confirmed booking: its confirmation went to the old address and may be sent again.
    offer_resend: bool = False
    # The email changed while the booking waits for payment: the next pay link goes to the new address.
    pay_link_follows: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)


ORGANISATION_MAX = 200
PO_MAX = 60


@dataclass(frozen=True)
class InvoiceTerms:
    """Who pays and how: the organisation, the person invoices go to, an optional PO number, and net days."""

    organisation: str
    contact_name: str
    billing_email: str
    terms_days: int
    po_number: str = ""

    def cleaned(self, offered: list[int]) -> InvoiceTerms:
        """The terms trimmed and checked; ValidationError naming every field that is wrong."""
        problems: list[str] = []
        organisation = " ".join(self.organisation.split())
        contact = " ".join(self.contact_name.split())
        po = self.po_number.strip()
        if not organisation:
            problems.append("Organisation: give the name the invoice is made out to")
        elif len(organisation) > ORGANISATION_MAX:
            problems.append(f"Organisation: at most {ORGANISATION_MAX} characters")
        if not contact:
            problems.append("Billing contact: give the name of the person who pays invoices")
        elif len(contact) > ORGANISATION_MAX:
            problems.append(f"Billing contact: at most {ORGANISATION_MAX} characters")
        email = self.billing_email
        try:
            email = validate_email(self.billing_email)
        except ValueError as exc:
            problems.append(f"Billing email: {exc}")
        if len(po) > PO_MAX:
            problems.append(f"PO number: at most {PO_MAX} characters")
        if any(ord(ch) < 32 for ch in organisation + contact + po):
            problems.append("Organisation, contact and PO number cannot hold control characters")
        if self.terms_days not in offered:
            problems.append(f"Terms: net {', '.join(str(d) for d in offered)} days (not {self.terms_days})")
        if problems:
            raise ValidationError(problems)
        return InvoiceTerms(organisation, contact, email, self.terms_days, po)


@dataclass(frozen=True)
class InvoiceStart:
    """A booking made on invoice: its reference, the invoice's number and page, what it asks, and when it is due."""

    booking_id: int
    reference: str
    invoice_id: str
    number: str
    hosted_url: str
    amount_cents: int
    due_at: datetime
    organisation: str = ""
    billing_email: str = ""
