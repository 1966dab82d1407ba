"""What the customer's own pages do: open a booking by its pay link, accept the terms, pay (Stripe's Payment Element in
live mode, a test card in sandbox), see the outcome; and the front desk's emailed pay link for phone bookings.

A pay link is `/pay/<reference>?k=<token>`: the reference alone (short, typed over the phone) opens nothing; the
token is a random secret stored on the booking and compared in constant time. A wrong or missing token answers
exactly like an unknown booking, so links cannot be guessed or probed.

Payment is refused until the customer has accepted the current cancellation policy and terms: the PaymentIntent's
client secret (what Stripe.js needs to take a card) is handed out only after acceptance, and the sandbox's test card
checks the same. Acceptance is recorded on the booking (version and time) and in the audit log.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from models.tables import ACTIVE_LEG_STATES, AuditLog, Booking, BookingLeg, BookingStatus, EmailOutbox, RefundRecord
from services import booking
from services.booking import ConfirmResult
from services.core import audit
from services.core.context import Services
from services.core.errors import GatewayError, InvalidState, NotFound, ValidationError
from services.finance import deposits
from services.notify import emails, outbox
from services.rules.bill import Bill, registration_to_show, sold_bill
from services.rules.fmt import day_label, money
from services.rules.refunds import describe_bands

log = logging.getLogger("roomdesk.web")

# What the pay page shows, by the booking's state.
STAGE_PAY = "pay"  # waiting for payment (terms may still need accepting)
STAGE_PROCESSING = "processing"  # Stripe says paid, our confirmation not yet done (webhook on its way)
STAGE_CONFIRMED = "confirmed"
STAGE_EXPIRED = "expired"
STAGE_TAKEN = "taken"  # lost the race at Gate 2: refunded in full
STAGE_REFUNDED = "refunded"  # paid, but the booking could not be completed (e.g. calendar down): refunded in full
STAGE_CANCELLED = "cancelled"
# Stages the confirmation page shows (the pay page sends the customer there).
OUTCOME_STAGES = frozenset({STAGE_PROCESSING, STAGE_CONFIRMED, STAGE_TAKEN, STAGE_REFUNDED})
STAGE_FAILED = "failed"


@dataclass(frozen=True)
class Day:
    day: date
    label: str
    start: str
    end: str
    price: str
    active: bool


@dataclass(frozen=True)
class PayView:
    booking_id: int
    reference: str
    token: str
    stage: str
    room_slug: str
    room_name: str
    venue_name: str
    venue_address: str
    customer_name: str
    customer_email: str
    channel: str
    days: list[Day]
    time: str
    total: str
    amount_cents: int
    discount: str | None
    bill: Bill  # what the payment charges, in parts: subtotal, discount, each tax, total (tax included)
    bill_rows: list[tuple[str, str]]  # the same, formatted
    registration_number: str | None  # the venue's GST/HST number, shown with the tax (None: not taxed or not set)
    currency: str
    hold_expires_at: datetime | None
    hold_until: str | None
    terms_version: str  # the version the customer must accept now
    terms_accepted: bool
    terms_accepted_version: str | None
    policy: str
    extras: list[tuple[str, str]]
    payment_intent: str | None
    refund_total: str | None
    confirmation_sent: bool
    sandbox: bool

    @property
    def pay_path(self) -> str:
        return f"/pay/{self.reference}?k={self.token}"

    @property
    def booked_path(self) -> str:
        return f"/booked/{self.reference}?k={self.token}"


def pay_url(svc: Services, reference: str, token: str) -> str:
    return f"{svc.settings.public_base_url.rstrip('/')}/pay/{reference}?k={token}"


def terms_text(svc: Services) -> str:
    """The cancellation policy in words, as the terms page and the pay page show it today."""
    return describe_bands(svc.policy.refund_bands)


def open_booking(session: Session, reference: str, token: str | None) -> Booking:
    """The booking behind a customer link (pay, confirmation, manage), or NotFound whether the reference or the token
    is wrong. Compared as bytes: compare_digest refuses non-ASCII text, and a link's token is whatever was typed."""
    ref = (reference or "").strip().upper()[:32]
    found = session.exec(select(Booking).where(Booking.reference == ref)).first()
    if (
        found is None
        or not found.pay_token
        or not token
        or not secrets.compare_digest(found.pay_token.encode(), token.encode("utf-8", "replace"))
    ):
        raise NotFound("This link is not valid. Check it against your email, or call us.")
    return found


def _stage(svc: Services, s: Session, b: Booking, now: datetime) -> str:
    status = b.status
    if status in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED):
        return STAGE_CONFIRMED
    if status == BookingStatus.CANCELLED:
        return STAGE_CANCELLED
    if status in (BookingStatus.FAILED, BookingStatus.REFUNDED):
        refunded = s.exec(
            select(RefundRecord.id).where(RefundRecord.booking_id == b.id, RefundRecord.origin == "auto_gate2")
        ).first()
        if not refunded:
            return STAGE_FAILED
        conflict = s.exec(
            select(AuditLog.id).where(AuditLog.booking_id == b.id, AuditLog.action == "booking.gate2.conflict")
        ).first()
        return STAGE_TAKEN if conflict else STAGE_REFUNDED
    if status == BookingStatus.EXPIRED:
        return STAGE_EXPIRED
    if status == BookingStatus.AWAITING_PAYMENT:
        if b.hold_expires_at is not None and b.hold_expires_at <= now:
            return STAGE_EXPIRED
        return STAGE_PAY
    return STAGE_FAILED


def view(svc: Services, reference: str, token: str | None, *, now: datetime | None = None) -> PayView:
    """Everything the pay and confirmation pages show, read in one transaction."""
    now = now or svc.now()
    tz = svc.settings.tz
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        assert b.id is not None
        legs = sorted(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)), key=lambda leg: leg.day)
        stage = _stage(svc, s, b, now)
        if stage == STAGE_PAY and b.payment_intent_id and _paid_at_stripe(svc, b.payment_intent_id):
            stage = STAGE_PROCESSING
        refunds = sum(r.amount_cents for r in s.exec(select(RefundRecord).where(RefundRecord.booking_id == b.id)))
        room = svc.catalogue.room(b.room_slug)
        labels = {f.key: f.label for f in room.extras}
        shown_legs = [leg for leg in legs if leg.state in ACTIVE_LEG_STATES] or legs
        days = [
            Day(
                day=leg.day,
                label=day_label(leg.day),
                start=f"{leg.starts_at.astimezone(tz):%H:%M}",
                end=f"{leg.ends_at.astimezone(tz):%H:%M}",
                price=money(leg.price_cents, b.currency),
                active=leg.state in ACTIVE_LEG_STATES,
            )
            for leg in shown_legs
        ]
        venue = svc.catalogue.venue
        bill = sold_bill(b)
        return PayView(
            booking_id=b.id,
            reference=b.reference,
            token=b.pay_token or "",
            stage=stage,
            room_slug=room.slug,
            room_name=room.name,
            venue_name=venue.name,
            venue_address=venue.address,
            customer_name=b.customer_name,
            customer_email=b.customer_email,
            channel=b.channel,
            days=days,
            time=f"{b.start_time}–{b.end_time}",
            total=money(b.amount_cents, b.currency),
            amount_cents=b.amount_cents,
            discount=money(b.discount_cents, b.currency) if b.discount_cents else None,
            bill=bill,
            bill_rows=bill.rows(b.currency),
            registration_number=registration_to_show(bill, svc.settings.gst_registration_number),
            currency=b.currency,
            hold_expires_at=b.hold_expires_at,
            hold_until=f"{b.hold_expires_at.astimezone(tz):%a %-d %b, %H:%M}" if b.hold_expires_at else None,
            terms_version=svc.settings.terms_version,
            terms_accepted=_terms_ok(svc, b),
            terms_accepted_version=b.terms_version,
            policy=emails.policy_text(b.policy_snapshot) or terms_text(svc),
            extras=[(labels.get(k, k.replace("_", " ").capitalize()), str(v)) for k, v in b.extras.items()],
            payment_intent=b.payment_intent_id,
            refund_total=money(refunds, b.currency) if refunds else None,
            confirmation_sent=b.confirmation_sent_at is not None,
            sandbox=svc.payments.mode == "sandbox",
        )


def _terms_ok(svc: Services, b: Booking) -> bool:
    """Accepted, and the version the customer accepted is the one in force (a booking made under an older version
    is asked again before paying)."""
    return b.terms_accepted_at is not None and b.terms_version == svc.settings.terms_version


def _paid_at_stripe(svc: Services, pi_id: str) -> bool:
    try:
        return svc.payments.retrieve_payment_intent(pi_id).get("status") == "succeeded"
    except GatewayError:  # the page still renders from our own state when Stripe cannot be reached
        return False


def accept_terms(
    svc: Services, reference: str, token: str | None, version: str | None, *, now: datetime | None = None
) -> None:
    """Record that the customer accepted the current terms (version and time); a second acceptance changes nothing."""
    now = now or svc.now()
    current = svc.settings.terms_version
    if not version:
        raise ValidationError(["Tick the box to accept the cancellation policy and terms"])
    if version != current:
        raise ValidationError([f"The terms have changed (now version {current}); please read them again"])
    with svc.session() as s:
        b = open_booking(s, reference, token)
        if _terms_ok(svc, b):
            return
        if b.status != BookingStatus.AWAITING_PAYMENT:
            raise InvalidState(f"Booking {b.reference} is not waiting for payment")
        b.terms_version = version
        b.terms_accepted_at = now
        b.updated_at = now
        audit.record(s, "booking.terms.accepted", actor="customer", at=now, booking=b, version=version, via="pay page")


def _payable(svc: Services, reference: str, token: str | None, now: datetime) -> tuple[int, str | None]:
    """(booking id, PaymentIntent id) of a booking the customer may pay now, else InvalidState saying why not."""
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        stage = _stage(svc, s, b, now)
        if stage == STAGE_EXPIRED:
            raise InvalidState("This booking's hold has expired, so the days were released. Please book again.")
        if stage != STAGE_PAY:
            raise InvalidState(f"Booking {b.reference} is not waiting for payment")
        if not _terms_ok(svc, b):
            raise InvalidState("Please accept the cancellation policy and terms before paying")
        assert b.id is not None
        return b.id, b.payment_intent_id


def client_secret(svc: Services, reference: str, token: str | None, *, now: datetime | None = None) -> str:
    """The PaymentIntent's client secret for Stripe's Payment Element: only for a booking waiting for payment whose
    customer accepted the terms."""
    _, pi_id = _payable(svc, reference, token, now or svc.now())
    if not pi_id:
        raise InvalidState("The payment cannot be taken right now; please call us")
    secret = svc.payments.retrieve_payment_intent(pi_id).get("client_secret")
    if not secret:
        raise InvalidState("The payment cannot be taken right now; please call us")
    return str(secret)


def pay_with_test_card(
    svc: Services, reference: str, token: str | None, *, card: str = "pm_card_visa", now: datetime | None = None
) -> ConfirmResult:
    """Sandbox: the customer pays with a Stripe test card; then what the webhook would do runs (Gate 2, events, email).
    A declined card raises PaymentDeclined and the booking keeps its hold."""
    booking_id, _ = _payable(svc, reference, token, now or svc.now())
    done = booking.sandbox_pay(svc, booking_id, actor="customer", payment_method=card, now=now)
    # A room that asks a damage deposit: the same test card is saved for its hold (the worker places it when due).
    deposits.sandbox_deposit_card(svc, booking_id, payment_method=card, actor="customer", now=now)
    return done


def save_deposit_test_card(
    svc: Services, reference: str, token: str | None, *, card: str = "pm_card_visa", now: datetime | None = None
) -> None:
    """Sandbox: the customer saves a test card for the booking's damage deposit (the manage page's card form; a
    declining card raises PaymentDeclined and the deposit still needs a card)."""
    with svc.read_session() as s:
        booking_id = open_booking(s, reference, token).id
    assert booking_id is not None
    deposits.sandbox_save_card(svc, booking_id, payment_method=card, actor="customer", now=now)


def finish_after_return(svc: Services, reference: str, token: str | None) -> None:
    """Stripe sends the customer back to the confirmation page after paying. If Stripe says the payment succeeded and
    the webhook has not been processed yet, confirm now (the saga is idempotent and leased, so racing the webhook is
    harmless)."""
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        pi_id, status = b.payment_intent_id, b.status
    if status == BookingStatus.AWAITING_PAYMENT and pi_id and _paid_at_stripe(svc, pi_id):
        booking.confirm_payment(svc, pi_id, actor="customer")


def send_pay_link(svc: Services, booking_id: int, *, actor: str, now: datetime | None = None) -> tuple[str, bool]:
    """Email the customer the link to the pay page (front desk, phone bookings). Returns (url, sent now); when the
    mail server is down the email stays queued in the outbox and goes out on a later try."""
    now = now or svc.now()
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        if b is None:
            raise NotFound(f"No booking #{booking_id}")
        if b.status != BookingStatus.AWAITING_PAYMENT:
            raise InvalidState(f"Booking {b.reference} is not waiting for payment ({b.status})")
        if b.hold_expires_at is not None and b.hold_expires_at <= now:
            raise InvalidState(f"Booking {b.reference}'s hold has expired")
        if not b.pay_token:  # bookings made before pay links existed
            b.pay_token = secrets.token_urlsafe(18)
        url = pay_url(svc, b.reference, b.pay_token)
        legs = [leg for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id))]
        mail = emails.render(
            "pay_link", booking=b, legs=legs, catalogue=svc.catalogue, settings=svc.settings, pay_url=url
        )
        sent_before = len(
            s.exec(
                select(EmailOutbox.id).where(EmailOutbox.booking_id == b.id, col(EmailOutbox.kind) == "pay_link")
            ).all()
        )
        row = outbox.queue(s, b, kind="pay_link", mail=mail, key=f"{b.reference}-pay-link-{sent_before + 1}", now=now)
        audit.record(s, "booking.pay_link.queued", actor=actor, at=now, booking=b, to=b.customer_email)
        row_id = row.id
    assert row_id is not None
    sent = outbox.deliver(svc, row_id, now=now, actor=actor)
    return url, sent


def calendar_file(svc: Services, reference: str, token: str | None) -> tuple[str, bytes]:
    """The confirmed days as an .ics (the same file the confirmation email carries)."""
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        if b.status not in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED):
            raise InvalidState(f"Booking {b.reference} is not confirmed")
        legs = [
            leg
            for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id))
            if leg.state in ACTIVE_LEG_STATES
        ]
        name, _, content = emails.calendar_attachment(b, legs, svc.catalogue)
        return name, content
