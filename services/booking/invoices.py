"""Pay by invoice (issue 15 §2): front desk books for an organisation on terms (net 7/14/30, a PO number, a billing
contact) and Stripe Invoicing sends the invoice (collection_method=send_invoice, a hosted page to pay it on).

The days are held from the moment the invoice is made, with no expiry: an invoice is a promise to pay, so the slot
stays the organisation's until the invoice is paid (invoice.paid → the booking is confirmed exactly as a card payment
confirms it: Gate 2, one event per day, the confirmation email; a Gate 2 failure refunds it in full), voided (in
Room Desk or in Stripe's dashboard: the booking is cancelled and its days freed) or released by staff.

When it falls due: `terms_days` after it is made, but never later than `invoice_due_lead_hours` before the first
day (the venue is paid before the room is used); a booking too close to its first day for one day of terms is
refused ("take a card payment"). Past the due date the billing contact is reminded once; past the grace period
(`invoice_overdue_grace_hours`) reconciliation raises an invoice_overdue finding whose fixes are Extend (the hold
runs on to a new date: the invoice stays payable on its page) and Release (void the invoice, cancel the booking).

Every Stripe write is keyed by the booking's reference, so a retry after a crash makes nothing twice; every state
change is audited. The invoice's lines are the booking's days at their net prices with the booking's tax rates, so
Stripe's per-line tax (half up, per line and per rate) gives exactly the booking's total.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    Booking,
    BookingInvoice,
    BookingLeg,
    BookingStatus,
    ExternalRef,
    InvoiceState,
    LegState,
    StripeObjectCache,
)
from services.booking.claims import release_claims
from services.booking.lease import lease
from services.booking.refunds import refund_payment
from services.booking.requests import BookingRequest, ConfirmResult, InvoiceStart, InvoiceTerms, StartResult
from services.booking.saga import confirm_payment, start_booking
from services.booking.store import booking_legs, load_booking, resolve_now, set_leg_state
from services.core import audit
from services.core.context import Services
from services.core.errors import DomainError, GatewayError, InvalidState, NotFound, ValidationError
from services.gateways.base import InvoiceLine, Json
from services.notify import invoice_mail, outbox
from services.rules.fmt import day_label, money
from services.rules.tax import TaxPolicy, policy_from

log = logging.getLogger("roomdesk.invoices")

EXTEND_DAYS_MAX = 60
# What the invoice's custom fields are called (Stripe prints them; at most 4, names up to 30 characters).
FIELD_PO = "PO number"
FIELD_GST = "GST/HST registration"
FIELD_BOOKING = "Booking"


def due_date(svc: Services, *, first_start: datetime, terms_days: int, now: datetime) -> tuple[int, datetime]:
    """(days until due as Stripe counts them, the due moment): the terms, cut so the invoice falls due at least
    `invoice_due_lead_hours` before the first day. Raises ValidationError when not even one day is left."""
    latest = first_start - timedelta(hours=svc.settings.invoice_due_lead_hours)
    days = min(terms_days, int((latest - now) / timedelta(days=1)))
    if days < 1:
        raise ValidationError(
            "Terms: the first day is too close to pay by invoice (an invoice must fall due at least a day from now "
            f"and {svc.settings.invoice_due_lead_hours} h before the first day): take a card payment instead"
        )
    return days, now + timedelta(days=days)


def book_on_invoice(
    svc: Services, req: BookingRequest, terms: InvoiceTerms, *, actor: str, now: datetime | None = None
) -> InvoiceStart:
    """Gate 1 → hold (no expiry) → the invoice made, finalized and sent by Stripe. Raises ValidationError (the
    request or the terms), NotAvailable, SlotTaken or GatewayError (Stripe: the hold is released, nothing stays)."""
    now = resolve_now(svc, now)
    terms = terms.cleaned(svc.settings.invoice_terms_days)
    first = min(req.dates) if req.dates else None
    if first is None:
        raise ValidationError("Dates: choose at least one day")
    first_start = datetime.combine(first, req.start, tzinfo=svc.policy.tz)
    days, due_at = due_date(svc, first_start=first_start, terms_days=terms.terms_days, now=now)
    started = start_booking(svc, req, actor=actor, now=now, on_invoice=True)
    with svc.session() as s:
        booking = load_booking(s, started.booking_id)
        s.add(
            BookingInvoice(
                booking_id=started.booking_id,
                state=InvoiceState.DRAFT,
                organisation=terms.organisation,
                contact_name=terms.contact_name,
                billing_email=terms.billing_email,
                po_number=terms.po_number,
                terms_days=days,
                due_at=due_at,
                actor=actor,
                created_at=now,
                updated_at=now,
            )
        )
        audit.record(
            s,
            "booking.invoice.planned",
            actor=actor,
            at=now,
            booking=booking,
            organisation=terms.organisation,
            billing_email=terms.billing_email,
            po_number=terms.po_number,
            terms_days=days,
            due_at=due_at,
            amount_cents=booking.amount_cents,
        )
    try:
        return _send(svc, started, actor, now)
    except GatewayError as exc:
        _give_up(svc, started.booking_id, actor, now, exc.message)
        raise


def _send(svc: Services, started: StartResult, actor: str, now: datetime) -> InvoiceStart:
    """Make the invoice at Stripe (customer, tax rates, one line per day), finalize it and have Stripe send it."""
    ref = started.reference
    with svc.session() as s:
        booking = load_booking(s, started.booking_id)
        inv_row = _row(s, started.booking_id)
        legs = booking_legs(s, started.booking_id)
        tax = policy_from(booking.tax_snapshot)
        room = svc.catalogue.room(booking.room_slug)
        terms_days, due_at = inv_row.terms_days, inv_row.due_at
        organisation, email, po = inv_row.organisation, inv_row.billing_email, inv_row.po_number
        amount = booking.amount_cents
        metadata = {
            "booking_id": ref,
            "purpose": "invoice",
            "room": booking.room_slug,
            "booking_dates": ",".join(leg.day.isoformat() for leg in legs),
            "booking_time": f"{booking.start_time}-{booking.end_time}",
            "customer_name": booking.customer_name[:200],
            "customer_email": booking.customer_email,
            "customer_phone": booking.customer_phone,
        }
        descriptions = [f"{room.name}, {day_label(leg.day)} {booking.start_time}–{booking.end_time}" for leg in legs]
    customer = svc.payments.create_customer(
        email=email,
        name=organisation,
        idempotency_key=f"roomdesk-{ref}-invoice-customer",
        metadata={"booking_id": ref},
    )
    rate_ids = _tax_rate_ids(svc, tax)
    lines: list[InvoiceLine] = [
        {"description": text, "amount_cents": leg.price_cents - leg.tax_cents, "tax_rate_ids": rate_ids}
        for leg, text in zip(legs, descriptions, strict=True)
    ]
    fields = [(FIELD_BOOKING, ref)]
    if po:
        fields.append((FIELD_PO, po))
    number = tax.registration_number if tax is not None else None
    if number:
        fields.append((FIELD_GST, number))
    draft = svc.payments.create_invoice(
        customer=str(customer["id"]),
        lines=lines,
        days_until_due=terms_days,
        idempotency_key=f"roomdesk-{ref}-invoice",
        metadata=metadata,
        custom_fields=fields,
        footer=f"Booking {ref}: the room is held for you until {day_label(due_at.astimezone(svc.policy.tz).date())}.",
    )
    if int(draft.get("total") or 0) != amount:
        # Stripe's per-line tax should give exactly our total; if it does not, the customer would be asked for a
        # different amount than the booking says — stop before anything is sent.
        raise GatewayError(
            f"Stripe's invoice total {money(int(draft.get('total') or 0))} differs from the booking's {money(amount)}",
            transient=False,
            provider="payments",
        )
    with svc.session() as s:
        row = _row(s, started.booking_id)
        row.invoice_id = str(draft["id"])
        row.updated_at = now
    opened = svc.payments.finalize_invoice(str(draft["id"]), idempotency_key=f"roomdesk-{ref}-invoice-finalize")
    svc.payments.send_invoice(str(draft["id"]), idempotency_key=f"roomdesk-{ref}-invoice-send")
    with svc.session() as s:
        booking = load_booking(s, started.booking_id)
        row = _row(s, started.booking_id)
        row.state = InvoiceState.OPEN
        row.number = str(opened.get("number") or "") or None
        row.hosted_url = str(opened.get("hosted_invoice_url") or "") or None
        row.updated_at = now
        audit.record(
            s,
            "booking.invoice.sent",
            actor=actor,
            at=now,
            booking=booking,
            invoice_id=row.invoice_id,
            number=row.number,
            amount_cents=int(opened.get("amount_due") or amount),
            due_at=row.due_at,
            billing_email=row.billing_email,
        )
        mail_id = invoice_mail.queue_held(s, svc, booking, row, booking_legs(s, started.booking_id), now=now).id
        out = InvoiceStart(
            started.booking_id,
            ref,
            str(draft["id"]),
            row.number or "",
            row.hosted_url or "",
            amount,
            row.due_at,
            row.organisation,
            row.billing_email,
        )
    assert mail_id is not None
    outbox.deliver(svc, mail_id, now=now, actor=actor)  # a mail outage leaves it queued for the worker
    return out


def _tax_rate_ids(svc: Services, tax: TaxPolicy | None) -> list[str]:
    """Stripe TaxRates for the booking's rates on room hire, one per code, rate and jurisdiction for good: the one
    made first is kept in the local copy of Stripe's objects and used again (Stripe forgets an idempotency key after
    24 hours, so the key alone would make a new TaxRate every day)."""
    if tax is None:
        return []
    out = []
    for rate in tax.rates:
        if "room" not in rate.applies_to:
            continue
        jurisdiction = "CA-BC" if rate.code.upper() == "PST" else "CA"
        known = _known_tax_rate(svc, rate.code, rate.rate_bps, jurisdiction)
        if known is None:
            made = svc.payments.create_tax_rate(
                display_name=rate.code,
                rate_bps=rate.rate_bps,
                jurisdiction=jurisdiction,
                idempotency_key=f"roomdesk-tax-{rate.code.lower()}-{rate.rate_bps}",
            )
            known = str(made["id"])
            try:
                with svc.session() as s:
                    if s.get(StripeObjectCache, known) is None:
                        s.add(StripeObjectCache(id=known, object="tax_rate", data=dict(made), synced_at=svc.now()))
            except IntegrityError:  # kept a moment ago by another invoice (the same key gave the same TaxRate)
                pass
        out.append(known)
    return out


def _known_tax_rate(svc: Services, code: str, rate_bps: int, jurisdiction: str) -> str | None:
    """The id of the active, exclusive TaxRate Room Desk made for this code, rate and jurisdiction, if any."""
    with svc.session() as s:
        rows = list(s.exec(select(StripeObjectCache).where(StripeObjectCache.object == "tax_rate")))
    for row in rows:
        d = row.data
        try:
            bps = round(float(str(d.get("percentage"))) * 100)
        except (TypeError, ValueError):
            continue
        if (d.get("display_name"), bps, d.get("jurisdiction")) == (code, rate_bps, jurisdiction) and (
            d.get("active", True) and not d.get("inclusive")
        ):
            return row.id
    return None


def _give_up(svc: Services, booking_id: int, actor: str, now: datetime, error: str) -> None:
    """Stripe failed while the invoice was being made: free the days, and void the invoice if it got as far as being
    open (a send whose answer was lost may have emailed it: it must not stay payable for nothing). A draft is never
    sent or payable; a void that fails is retried by the worker's invoice round."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        for leg in booking_legs(s, booking_id):
            if leg.state == LegState.AWAITING_PAYMENT:
                set_leg_state(leg, LegState.FAILED, now)
        release_claims(s, booking_id)
        booking.status = BookingStatus.FAILED
        booking.updated_at = now
        row = _row(s, booking_id)
        row.updated_at = now
        audit.record(
            s,
            "booking.invoice.failed",
            actor=actor,
            at=now,
            booking=booking,
            error=error,
            message="The invoice could not be made; hold released",
        )
    try:
        _void_left_behind(svc, booking_id, now)
    except GatewayError as exc:
        log.warning("Invoice of failed booking=%s not voided yet: %s", booking_id, exc.message)


def _void_left_behind(svc: Services, booking_id: int, now: datetime) -> bool:
    """The invoice of a booking that failed while it was being made: void it at Stripe if it is open. True when
    there is nothing (more) to do."""
    with svc.session() as s:
        row = _row(s, booking_id)
        invoice_id, state, ref = row.invoice_id, row.state, load_booking(s, booking_id).reference
    if invoice_id is None or state == InvoiceState.VOID:
        return True
    live = svc.payments.retrieve_invoice(invoice_id)
    if live.get("status") == "open":
        svc.payments.void_invoice(invoice_id, idempotency_key=f"roomdesk-{ref}-invoice-void")
    if live.get("status") == "paid":
        # Paid before the void reached Stripe: the booking failed, so the money goes back in full (once, by key).
        recorded = record_invoice_payment(svc, invoice_id, "system", now)
        if isinstance(recorded, tuple):
            with svc.session() as s:
                amount = load_booking(s, booking_id).amount_cents
            done = refund_payment(
                svc,
                booking_id,
                amount,
                origin="auto_gate2",
                reason="The booking failed while its invoice was being made: the payment goes back in full",
                actor="system",
                now=now,
                key=f"roomdesk-{ref}-invoice-refund",
                policy_quote=amount,
                payment_intent=recorded[1],
            )
            return done
        return True
    with svc.session() as s:
        row = _row(s, booking_id)
        if live.get("status") in ("open", "void", "draft"):  # a draft is never sent: as good as void
            row.state = InvoiceState.VOID
            row.voided_at = row.voided_at or now
            row.updated_at = now
    return True


def _row(s: Session, booking_id: int) -> BookingInvoice:
    row = s.exec(select(BookingInvoice).where(BookingInvoice.booking_id == booking_id)).first()
    if row is None:
        raise NotFound(f"Booking #{booking_id} is not paid by invoice")
    return row


def _row_for_invoice(s: Session, invoice_id: str) -> BookingInvoice | None:
    return s.exec(select(BookingInvoice).where(BookingInvoice.invoice_id == invoice_id)).first()


# --------------------------------------------------------------------------------------------- Stripe says


def on_invoice_paid(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """invoice.paid (the webhook, or the worker finding it paid): see settle_paid_invoice."""
    return "ignored" if settle_paid_invoice(svc, str(obj.get("id") or ""), actor, now) is None else "processed"


def settle_paid_invoice(svc: Services, invoice_id: str, actor: str, now: datetime) -> ConfirmResult | None:
    """Re-fetch the invoice; paid → link the PaymentIntent that paid it to the booking and confirm the booking as a
    card payment would (confirm_payment: Gate 2, events, email; a clash refunds it in full). None: not one of ours,
    or not paid. A redelivery, or a paid invoice whose booking is done, changes nothing."""
    recorded = record_invoice_payment(svc, invoice_id, actor, now)
    if recorded is None or isinstance(recorded, ConfirmResult):
        return recorded
    return confirm_payment(svc, recorded[1], actor=actor, now=now)


def record_invoice_payment(
    svc: Services, invoice_id: str, actor: str, now: datetime
) -> tuple[int, str] | ConfirmResult | None:
    """The first half of settling a paid invoice, for a caller that holds the booking's lease already (it then
    confirms with confirm_under_lease): re-fetch the invoice; paid → the PaymentIntent that paid it linked to the
    booking (booking.payment_intent_id, ExternalRef, the invoice row paid), audited once. Returns (booking id,
    PaymentIntent); a ConfirmResult when there is nothing to confirm against (paid outside Stripe); None when the
    invoice is not ours or not paid."""
    with svc.session() as s:
        row = _row_for_invoice(s, invoice_id)
        if row is None:
            return None  # not one of ours
        booking_id, reference = row.booking_id, load_booking(s, row.booking_id).reference
    invoice = svc.payments.retrieve_invoice(invoice_id)  # never trust a webhook payload
    if invoice.get("status") != "paid":
        return None
    pi_id = svc.payments.invoice_payment_intent(invoice_id)
    if pi_id is None:
        # Marked paid outside Stripe (a cheque, a transfer): there is no card payment to confirm against or to refund
        # on. Staff confirm it by hand; say so loudly rather than guess.
        with svc.session() as s:
            audit.record(
                s,
                "booking.invoice.paid_out_of_band",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                invoice_id=invoice_id,
                message="The invoice was marked paid outside Stripe: confirm the booking by hand",
            )
        return ConfirmResult(booking_id, reference, "paid_out_of_band", ["Paid outside Stripe: confirm by hand"])
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        row = _row(s, booking_id)
        if row.state != InvoiceState.PAID:
            row.state = InvoiceState.PAID
            row.payment_intent_id = pi_id
            row.paid_at = now
            row.updated_at = now
            if booking.payment_intent_id is None:
                booking.payment_intent_id = pi_id
                booking.updated_at = now
            known = s.exec(
                select(ExternalRef.id).where(
                    ExternalRef.provider == "stripe",
                    ExternalRef.kind == "payment_intent",
                    ExternalRef.external_id == pi_id,
                )
            ).first()
            if known is None:
                s.add(
                    ExternalRef(
                        provider="stripe",
                        kind="payment_intent",
                        external_id=pi_id,
                        booking_id=booking_id,
                        created_at=now,
                    )
                )
            audit.record(
                s,
                "booking.invoice.paid",
                actor=actor,
                at=now,
                booking=booking,
                invoice_id=invoice_id,
                payment_intent=pi_id,
                amount_cents=int(invoice.get("amount_paid") or 0),
            )
    return booking_id, pi_id


def on_invoice_voided(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """invoice.voided (in Room Desk or in Stripe's dashboard): re-fetch; void → the booking, still unpaid, is
    cancelled and its days freed. A booking already confirmed is left alone (a paid invoice cannot be voided)."""
    invoice_id = str(obj.get("id") or "")
    with svc.session() as s:
        row = _row_for_invoice(s, invoice_id)
        if row is None:
            return "ignored"
        booking_id = row.booking_id
    if svc.payments.retrieve_invoice(invoice_id).get("status") != "void":
        return "ignored"
    with lease(svc, booking_id):
        _cancel_voided(svc, booking_id, actor, now, reason="The invoice was voided")
    return "processed"


def _cancel_voided(svc: Services, booking_id: int, actor: str, now: datetime, *, reason: str) -> bool:
    """The invoice is void: cancel what is still unpaid of the booking (False: nothing left to cancel)."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        row = _row(s, booking_id)
        changed = row.state != InvoiceState.VOID
        row.state = InvoiceState.VOID
        row.voided_at = row.voided_at or now
        row.updated_at = now
        legs = booking_legs(s, booking_id)
        pending = [leg for leg in legs if leg.state == LegState.AWAITING_PAYMENT]
        for leg in pending:
            set_leg_state(leg, LegState.CANCELLED, now)
        if pending:
            release_claims(s, booking_id)
            booking.status = BookingStatus.CANCELLED
            booking.updated_at = now
        if changed or pending:
            audit.record(
                s,
                "booking.invoice.voided",
                actor=actor,
                at=now,
                booking=booking,
                invoice_id=row.invoice_id,
                reason=reason,
                message=f"{reason}: the booking is cancelled and its days freed" if pending else reason,
            )
        return bool(pending)


def mark_voided(svc: Services, booking_id: int, now: datetime) -> None:
    """Record that the booking's invoice is void (the caller cancels the booking and audits it)."""
    with svc.session() as s:
        row = _row(s, booking_id)
        if row.state != InvoiceState.VOID:
            row.state = InvoiceState.VOID
            row.voided_at = now
            row.updated_at = now


def sandbox_pay_invoice(svc: Services, booking_id: int, *, actor: str, now: datetime | None = None) -> ConfirmResult:
    """Sandbox only: the organisation pays the invoice on its hosted page (a test card), then invoice.paid's work
    runs (the booking confirmed as a card payment would be)."""
    now = resolve_now(svc, now)
    pay = getattr(svc.payments, "pay_invoice", None)
    if svc.payments.mode != "sandbox" or pay is None:
        raise InvalidState("Test payments are only available in sandbox mode")
    with svc.session() as s:
        row = _row(s, booking_id)
        if row.state != InvoiceState.OPEN or row.invoice_id is None:
            raise InvalidState(f"The invoice is {row.state.value}: there is nothing to pay")
        invoice_id = row.invoice_id
    pay(invoice_id)
    done = settle_paid_invoice(svc, invoice_id, actor, now)
    assert done is not None
    return done


# --------------------------------------------------------------------------------------------- staff choices


def release_invoice(svc: Services, booking_id: int, *, actor: str, reason: str, now: datetime | None = None) -> str:
    """Void the unpaid invoice at Stripe and cancel the booking (staff's choice on an overdue invoice, or a booking
    given up). Re-checks just before acting: an invoice paid meanwhile is never voided."""
    now = resolve_now(svc, now)
    if len(reason.strip()) < 3:
        raise ValidationError("Reason: say why the booking is released (the organisation may ask)")
    with lease(svc, booking_id):
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            row = _row(s, booking_id)
            invoice_id, state, ref = row.invoice_id, row.state, booking.reference
        if state == InvoiceState.PAID:
            raise InvalidState("The invoice has been paid: cancel the booking instead (the policy refund applies)")
        if invoice_id is not None and state != InvoiceState.VOID:
            live = svc.payments.retrieve_invoice(invoice_id)
            if live.get("status") == "paid":
                raise InvalidState("The invoice was paid a moment ago: nothing was released")
            if live.get("status") == "open":
                svc.payments.void_invoice(invoice_id, idempotency_key=f"roomdesk-{ref}-invoice-void")
        _cancel_voided(svc, booking_id, actor, now, reason=f"Released by staff: {reason.strip()}")
    return f"Invoice voided and booking {ref} cancelled: its days are free again"


def extend_invoice(
    svc: Services, booking_id: int, *, days: int, actor: str, reason: str, now: datetime | None = None
) -> datetime:
    """Hold the days longer for an invoice that is late (the organisation said it is on its way): the hold runs to
    the new due date and the reminder may go again. The invoice stays payable on its page (Stripe does not change a
    sent invoice's due date). Returns the new due date: `days` later, but never past the first day's lead time
    (refused when that has come)."""
    now = resolve_now(svc, now)
    if not 1 <= days <= EXTEND_DAYS_MAX:
        raise ValidationError(f"Days: extend by 1 to {EXTEND_DAYS_MAX} days")
    if len(reason.strip()) < 3:
        raise ValidationError("Reason: say why the invoice gets more time")
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        row = _row(s, booking_id)
        if row.state != InvoiceState.OPEN or booking.status != BookingStatus.AWAITING_PAYMENT:
            raise InvalidState(f"The invoice is {row.state.value}: there is nothing to extend")
        first = s.exec(
            select(BookingLeg.starts_at)
            .where(BookingLeg.booking_id == booking_id, BookingLeg.state == LegState.AWAITING_PAYMENT)
            .order_by(col(BookingLeg.starts_at))
        ).first()
        new_due = max(row.due_at, now) + timedelta(days=days)
        latest = first - timedelta(hours=svc.settings.invoice_due_lead_hours) if first is not None else None
        if latest is not None and new_due > latest:
            # Not past the first day's lead time: as far as it may go, if that is any later than now.
            if latest <= max(row.due_at, now):
                raise ValidationError(
                    f"Days: the first day is {svc.settings.invoice_due_lead_hours} h away or less: the hold cannot "
                    "run longer (release the days, or take a card payment)"
                )
            new_due = latest
        old_due = row.due_at
        row.due_at = new_due
        row.reminded_at = None
        row.updated_at = now
        audit.record(
            s,
            "booking.invoice.extended",
            actor=actor,
            at=now,
            booking=booking,
            invoice_id=row.invoice_id,
            old_due_at=old_due,
            due_at=new_due,
            reason=reason.strip(),
        )
        return new_due


# --------------------------------------------------------------------------------------------- the worker's round


def overdue_invoices(svc: Services, now: datetime, *, grace: bool = False) -> list[BookingInvoice]:
    """Open invoices past their due date (with `grace`: past the grace period too), oldest due first."""
    limit = now - timedelta(hours=svc.settings.invoice_overdue_grace_hours) if grace else now
    with svc.session() as s:
        return list(
            s.exec(
                select(BookingInvoice)
                .where(BookingInvoice.state == InvoiceState.OPEN, col(BookingInvoice.due_at) < limit)
                .order_by(col(BookingInvoice.due_at))
            )
        )


def invoice_round(svc: Services, *, actor: str = "worker", now: datetime | None = None) -> dict[str, int]:
    """The worker's look at every open invoice: one paid or voided at Stripe whose webhook was missed is settled
    now (confirmed / cancelled), and the billing contact of one past due is reminded once per due date (an
    extension allows another). Returns counts by outcome."""
    now = resolve_now(svc, now)
    counts: dict[str, int] = {}
    with svc.session() as s:
        rows = list(
            s.exec(
                select(BookingInvoice.booking_id, BookingInvoice.invoice_id, BookingInvoice.due_at).where(
                    BookingInvoice.state == InvoiceState.OPEN, col(BookingInvoice.invoice_id).is_not(None)
                )
            )
        )
        # Paid and linked, but the confirmation never finished (the process died, or the booking was busy).
        unconfirmed = list(
            s.exec(
                select(BookingInvoice.booking_id, BookingInvoice.payment_intent_id)
                .join(Booking, col(Booking.id) == col(BookingInvoice.booking_id))
                .where(
                    BookingInvoice.state == InvoiceState.PAID,
                    col(BookingInvoice.payment_intent_id).is_not(None),
                    Booking.status == BookingStatus.AWAITING_PAYMENT,
                )
            )
        )
        left = list(
            s.exec(
                select(BookingInvoice.booking_id)
                .join(Booking, col(Booking.id) == col(BookingInvoice.booking_id))
                .where(
                    BookingInvoice.state == InvoiceState.DRAFT,
                    col(BookingInvoice.invoice_id).is_not(None),
                    Booking.status == BookingStatus.FAILED,
                )
            )
        )
    for booking_id, invoice_id, due_at in rows:
        assert invoice_id is not None
        try:
            outcome = _look_at(svc, booking_id, invoice_id, due_at, actor, now)
        except (GatewayError, DomainError) as exc:
            log.warning("Invoice of booking=%s deferred: %s", booking_id, exc.message)
            outcome = "deferred"
        if outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
    for booking_id, pi_id in unconfirmed:
        assert pi_id is not None
        try:
            confirm_payment(svc, pi_id, actor=actor, now=now)
            counts["confirmed"] = counts.get("confirmed", 0) + 1
        except (GatewayError, DomainError) as exc:
            log.warning("Paid invoice of booking=%s not confirmed yet: %s", booking_id, exc.message)
    for booking_id in left:  # a booking that failed while its invoice was made: never leave that invoice payable
        try:
            _void_left_behind(svc, booking_id, now)
            counts["left behind"] = counts.get("left behind", 0) + 1
        except (GatewayError, DomainError) as exc:
            log.warning("Invoice of failed booking=%s not voided yet: %s", booking_id, exc.message)
    return counts


def _look_at(svc: Services, booking_id: int, invoice_id: str, due_at: datetime, actor: str, now: datetime) -> str:
    live = svc.payments.retrieve_invoice(invoice_id)
    status = live.get("status")
    if status == "paid":
        on_invoice_paid(svc, live, actor, now)
        return "paid"
    if status == "void":
        with lease(svc, booking_id):
            _cancel_voided(svc, booking_id, actor, now, reason="The invoice was voided in Stripe")
        return "voided"
    if due_at >= now:
        return ""
    with svc.session() as s:
        row = _row(s, booking_id)
        if row.reminded_at is not None or row.state != InvoiceState.OPEN or row.due_at >= now:
            return ""
        booking = load_booking(s, booking_id)
        row.reminded_at = now
        row.updated_at = now
        mail_id = invoice_mail.queue_overdue_reminder(s, svc, booking, row, booking_legs(s, booking_id), now=now).id
        audit.record(
            s,
            "booking.invoice.reminded",
            actor=actor,
            at=now,
            booking=booking,
            invoice_id=row.invoice_id,
            billing_email=row.billing_email,
            due_at=row.due_at,
        )
    assert mail_id is not None
    outbox.deliver(svc, mail_id, now=now, actor=actor)
    return "reminded"


def unpaid_booking(s: Session, booking: Booking) -> bool:
    """The booking waits for its invoice (held, not yet paid)."""
    assert booking.id is not None
    row = s.exec(select(BookingInvoice).where(BookingInvoice.booking_id == booking.id)).first()
    return row is not None and row.state == InvoiceState.OPEN
