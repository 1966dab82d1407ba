"""Damage deposits (issue 15 §3, runbook 003 §6): a card hold taken shortly before the booking's first day, released
after a claim window, or partly or wholly captured by a claim that a manager and a finance person approved.

A card authorisation does not last (Stripe cancels an uncaptured PaymentIntent after 7 days), so the card is saved
when the booking is made and the hold placed later, off session:

1. `start_deposit` (once the booking is paid: the payment webhook, the customer's confirmation or booking page, the
   worker's round for any it missed, the sandbox's test card): a booking sold with a deposit (its room's terms then,
   kept in its pricing snapshot) gets a DamageDeposit and a card request — a Stripe Customer and an off-session
   SetupIntent. `card_saved` records the card the customer saved (the confirmed SetupIntent: the customer's page back
   from Stripe.js confirmSetup via `check_card`, or the webhook's setup_intent.succeeded).
2. `run_deposit_round` (the worker, every round): places the hold when services.rules.deposits says (a manual-capture
   PaymentIntent confirmed off session), holds again before a hold lapses (the new hold first, then the old one
   released), releases the hold once the claim window after the last day has closed, and closes the deposit of a
   booking that was cancelled. A declined card (or no card saved by the time the hold is due) leaves the deposit
   `hold_failed`: staff see it on Deposits, and a `deposit_hold_failed` finding names it, until a hold stands.
3. A claim (`file_claim`: the amount, at most what is held, with notes and the photos' file names, inside the
   window) waits for two signatures from two different people, one manager and one finance (the refunds-above-the-
   policy machinery: services.finance.overrides.sign_slot / seal, services.finance.two_signatures); the second
   signature captures the amount from the hold, and Stripe releases the rest.

The customer is emailed when the hold is placed, when a claim is filed, when it is captured and when the hold is
released (services.notify.deposit_mail). Every step re-checks its precondition under the booking's lease, writes an
audit row (`booking.deposit.*`) and calls Stripe under a key derived from the booking and the step
(`roomdesk-<REF>-deposit-<step>`), so a retry never holds, releases or captures twice.

The holds' PaymentIntents carry metadata `purpose=deposit` and `deposit_for=<REF>` (never `booking_id`, `room` or
the booking's dates: reconciliation reads such a payment as "not a booking") and resolve through ExternalRef kind
`deposit_hold`, not `payment_intent`: the booking payment webhook does not take them for a booking's payment.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    Booking,
    BookingLeg,
    BookingStatus,
    ClaimStatus,
    DamageDeposit,
    DepositClaim,
    DepositState,
    ExternalRef,
)
from services.booking.lease import lease
from services.booking.store import booking_legs, load_booking, resolve_now
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    BookingBusy,
    DomainError,
    GatewayError,
    InvalidState,
    NotAllowed,
    NotFound,
    PaymentDeclined,
    ValidationError,
)
from services.finance import deposit_queries as dq
from services.finance import two_signatures as ts
from services.finance.overrides import seal, sign_slot
from services.gateways.base import Json
from services.notify import deposit_mail
from services.rules.deposits import DepositTerms, claim_problems, sold_terms, terms_recorded
from services.rules.fmt import moment_label, money

log = logging.getLogger("roomdesk.deposits")

PURPOSE = "deposit"  # the holds' metadata `purpose`
REF_KIND = "deposit_hold"  # ExternalRef.kind of a hold's PaymentIntent
OPEN_CLAIMS = dq.OPEN_CLAIMS


@dataclass(frozen=True)
class CardRequest:
    """What the pay page needs to save the customer's card for the deposit (Stripe.js confirmCardSetup with the
    client secret; the sandbox confirms it with a test card)."""

    booking_id: int
    reference: str
    setup_intent_id: str
    client_secret: str
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class DepositOutcome:
    booking_id: int
    reference: str
    state: str  # the deposit's state afterwards
    message: str  # one plain sentence for staff

    @property
    def ok(self) -> bool:
        return self.state != "hold_failed"


@dataclass(frozen=True)
class ClaimOutcome:
    claim_id: int
    status: str  # the claim's status afterwards
    message: str

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class RoundReport:
    """One worker round over the open deposits: what it did to how many, how many were busy, what failed."""

    done: Counter[str] = field(default_factory=Counter)
    busy: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{n} {what}" for what, n in sorted(self.done.items())]
        parts += [f"{self.busy} busy"] if self.busy else []
        parts += [f"{len(self.errors)} failed"] if self.errors else []
        return "deposits " + (", ".join(parts) or "-")


# --------------------------------------------------------------------------------------------------- helpers


def _key(reference: str, step: str) -> str:
    """The Stripe idempotency key of one deposit step of one booking."""
    return f"roomdesk-{reference}-deposit-{step}"


def _metadata(reference: str, **more: str) -> dict[str, str]:
    return {"purpose": PURPOSE, "deposit_for": reference, **more}


def _find(s: Session, booking_id: int) -> DamageDeposit | None:
    return s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == booking_id)).first()


def _get(s: Session, booking_id: int) -> DamageDeposit:
    dep = _find(s, booking_id)
    if dep is None:
        raise NotFound(f"Booking #{booking_id} has no damage deposit")
    return dep


def _claim(s: Session, claim_id: int) -> DepositClaim:
    row = s.get(DepositClaim, claim_id)
    if row is None:
        raise NotFound(f"No damage claim #{claim_id}")
    return row


def _open_claim(s: Session, dep: DamageDeposit) -> DepositClaim | None:
    return s.exec(
        select(DepositClaim).where(DepositClaim.deposit_id == dep.id, col(DepositClaim.status).in_(OPEN_CLAIMS))
    ).first()


def _touch(dep: DamageDeposit, now: datetime) -> None:
    dep.updated_at = now


def _with_hold(dep: DamageDeposit, pi_id: str, **changes: Any) -> None:
    """Change one entry of the deposit's holds (a new list, so the JSON column is written)."""
    dep.holds = [({**h, **changes} if h.get("payment_intent") == pi_id else h) for h in dep.holds]


def _unreleased(dep: DamageDeposit) -> list[str]:
    """Holds neither released nor captured (at most the standing one, unless a step was interrupted)."""
    return [h["payment_intent"] for h in dep.holds if not h.get("released_at") and h.get("captured_cents") is None]


def _outcome(svc: Services, booking_id: int, message: str) -> DepositOutcome:
    with svc.session() as s:
        dep = _get(s, booking_id)
        booking = load_booking(s, booking_id)
        return DepositOutcome(booking_id, booking.reference, dep.state, message)


def _step_failed(svc: Services, booking_id: int, step: str, exc: DomainError, actor: str, now: datetime) -> None:
    """A Stripe call of a deposit step failed (an outage): audited, kept on the deposit, retried by the next round."""
    with svc.session() as s:
        dep = _get(s, booking_id)
        if dep.state != DepositState.HOLD_FAILED:  # that one keeps why the hold failed
            dep.last_error = f"{step}: {exc.message}"[:500]
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.step_failed",
            actor=actor,
            at=now,
            booking=load_booking(s, booking_id),
            payment_intent=dep.payment_intent_id,
            step=step,
            error=exc.message,
            message=f"Damage deposit: {step} failed; tried again",
        )


# --------------------------------------------------------------------------------------------------- the card


def start_deposit(
    svc: Services, booking_id: int, now: datetime | None = None, *, actor: str = "system"
) -> CardRequest | None:
    """At booking: a room that asks a damage deposit gets one (with the room's terms as they are now) and a card
    request for the pay page — a Stripe Customer and an off-session SetupIntent. Called again it returns the same
    request (after a declined hold, a new one for another card). None when the room asks no deposit, the booking is
    no longer live, or a card is saved already. Raises GatewayError when Stripe cannot make the request (the deposit
    is kept and the worker's round tries again)."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        exists = _find(s, booking_id) is not None
        terms = None if exists or booking.status in dq.GONE else sold_terms_of(svc, booking)
    if not exists:
        if terms is None:
            return None
        try:
            with svc.session() as s:
                _new_deposit(s, load_booking(s, booking_id), terms, actor, now)
        except IntegrityError:  # made a moment ago by another request for this booking
            pass
    with svc.session() as s:
        dep = _get(s, booking_id)
        if booking.status in dq.GONE or dep.state not in (DepositState.CARD_NEEDED, DepositState.HOLD_FAILED):
            return None
        if dep.setup_intent_id:  # the open request (after a declined card it was dropped: a new one is made)
            return _card_request(dep, booking.reference)
    return _request_card(svc, booking_id, actor, now)


def sold_terms_of(svc: Services, booking: Booking) -> DepositTerms | None:
    """The deposit the booking was sold with; for a sale from before bookings recorded it, its room's today."""
    if terms_recorded(booking.pricing_snapshot):
        return sold_terms(booking.pricing_snapshot)
    return svc.catalogue.room(booking.room_slug).deposit_terms


def missing_deposits(s: Session, now: datetime) -> list[int]:
    """Paid bookings sold with a deposit that have none yet, with a day still to come: paid on Stripe's page (the
    webhook starts it, unless that failed), or on invoice (the customer is asked for the card once it is paid)."""
    live_days = select(BookingLeg.booking_id).where(col(BookingLeg.ends_at) > now)
    has_deposit = select(DamageDeposit.booking_id)
    rows = s.exec(
        select(Booking).where(
            col(Booking.status).in_(dq.PAID_STATUSES),
            col(Booking.id).in_(live_days),
            col(Booking.id).not_in(has_deposit),
        )
    )
    return [b.id for b in rows if b.id is not None and sold_terms(b.pricing_snapshot) is not None]


def start_missing(svc: Services, now: datetime, report: RoundReport, actor: str) -> None:
    """The round's first step: a deposit (and its card request) for every paid booking sold with one that has none."""
    with svc.session() as s:
        ids = missing_deposits(s, now)
    for booking_id in ids:
        try:
            if start_deposit(svc, booking_id, now, actor=actor) is not None:
                report.done["card requested"] += 1
        except DomainError as exc:  # audited by the step; the deposit is kept and asked for again next round
            report.errors.append(f"booking #{booking_id}: {exc.message}")


def _card_request(dep: DamageDeposit, reference: str) -> CardRequest:
    return CardRequest(
        dep.booking_id,
        reference,
        str(dep.setup_intent_id),
        str(dep.setup_client_secret or ""),
        dep.amount_cents,
        dep.currency,
    )


def _new_deposit(s: Session, booking: Booking, terms: DepositTerms, actor: str, now: datetime) -> DamageDeposit:
    assert booking.id is not None
    dep = DamageDeposit(
        booking_id=booking.id,
        state=DepositState.CARD_NEEDED,
        amount_cents=terms.amount_cents,
        currency=booking.currency,
        hold_hours_before=terms.hold_hours_before,
        claim_window_hours=terms.claim_window_hours,
        created_at=now,
        updated_at=now,
    )
    s.add(dep)
    s.flush()
    audit.record(
        s,
        "booking.deposit.required",
        actor=actor,
        at=now,
        booking=booking,
        amount_cents=terms.amount_cents,
        hold_hours_before=terms.hold_hours_before,
        claim_window_hours=terms.claim_window_hours,
        message=f"Damage deposit of {money(terms.amount_cents, booking.currency)} required",
    )
    return dep


def _request_card(svc: Services, booking_id: int, actor: str, now: datetime) -> CardRequest:
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        dep = _get(s, booking_id)
        ref, email, name = booking.reference, booking.customer_email, booking.customer_name
        attempt, customer = dep.setup_attempt, dep.customer_id
    meta = _metadata(ref)
    try:
        if customer is None:
            made = svc.payments.create_customer(
                email=email, name=name, idempotency_key=_key(ref, "customer"), metadata=meta
            )
            customer = str(made["id"])
        seti = svc.payments.create_setup_intent(
            customer=customer, idempotency_key=_key(ref, f"setup-{attempt}"), metadata=meta
        )
    except GatewayError as exc:
        _step_failed(svc, booking_id, "card request", exc, actor, now)
        raise
    with svc.session() as s:
        dep = _get(s, booking_id)
        dep.customer_id = customer
        if dep.setup_attempt == attempt and dep.setup_intent_id != seti["id"]:
            dep.setup_intent_id, dep.setup_client_secret = seti["id"], seti.get("client_secret")
            if dep.state != DepositState.HOLD_FAILED:
                dep.last_error = None
            _touch(dep, now)
            audit.record(
                s,
                "booking.deposit.card_requested",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                setup_intent=seti["id"],
                attempt=attempt,
                message="Damage deposit: the customer's card is asked for",
            )
        return _card_request(dep, ref)


def card_saved(
    svc: Services, booking_id: int, setup_intent: Json, now: datetime | None = None, *, actor: str = "customer"
) -> DepositOutcome:
    """The customer saved a card: `setup_intent` is the confirmed SetupIntent (the pay page's, or the webhook's
    setup_intent.succeeded object). Its card holds the deposit from now on; the worker places the hold when it is
    due. Recording the same card again changes nothing."""
    now = resolve_now(svc, now)
    seti_id = setup_intent.get("id")
    method = setup_intent.get("payment_method")
    pm = method.get("id") if isinstance(method, dict) else method
    with lease(svc, booking_id), svc.session() as s:
        dep = _get(s, booking_id)
        booking = load_booking(s, booking_id)
        if pm and pm == dep.payment_method:
            return DepositOutcome(booking_id, booking.reference, dep.state, "This card is already saved")
        if seti_id != dep.setup_intent_id:
            raise InvalidState("This card setup is not the one the deposit asks for now; save the card again")
        if setup_intent.get("status") != "succeeded" or not isinstance(pm, str):
            raise InvalidState("The card was not saved: the card setup has not succeeded")
        if dep.customer_id and setup_intent.get("customer") not in (None, dep.customer_id):
            raise InvalidState("This card setup belongs to another customer")
        if dep.state not in (DepositState.CARD_NEEDED, DepositState.HOLD_FAILED):
            return DepositOutcome(
                booking_id, booking.reference, dep.state, f"The deposit is {dep.state}: no card needed"
            )
        was = dep.state
        dep.payment_method, dep.card_saved_at = pm, now
        dep.state, dep.last_error, dep.failed_at = DepositState.CARD_SAVED, None, None
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.card_saved",
            actor=actor,
            at=now,
            booking=booking,
            setup_intent=seti_id,
            after_failed_hold=was == DepositState.HOLD_FAILED or None,
            message="Damage deposit: card saved",
        )
        return DepositOutcome(booking_id, booking.reference, dep.state, "Card saved for the damage deposit")


def check_card(svc: Services, booking_id: int, now: datetime | None = None, *, actor: str = "customer") -> bool:
    """The customer is back from Stripe's card form (Stripe.js confirmSetup): read the card request and record the
    card when it was saved, without waiting for the webhook. True when a card is now saved."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        dep = _find(s, booking_id)
        if dep is None or dep.setup_intent_id is None:
            return False
        if dep.state not in (DepositState.CARD_NEEDED, DepositState.HOLD_FAILED):
            return dep.payment_method is not None
        seti_id = dep.setup_intent_id
    seti = svc.payments.retrieve_setup_intent(seti_id)
    if seti.get("status") != "succeeded":
        return False
    card_saved(svc, booking_id, seti, now, actor=actor)
    return True


def sandbox_deposit_card(
    svc: Services, booking_id: int, *, payment_method: str = "pm_card_visa", actor: str, now: datetime | None = None
) -> None:
    """Sandbox: the card a booking was just paid with is saved for its damage deposit too (a room that asks one); the
    worker places the hold when due. A failure is logged, never raised: the booking is paid either way and staff see
    the deposit waiting for its card."""
    try:
        _sandbox_only(svc)
        now = resolve_now(svc, now)
        request = start_deposit(svc, booking_id, now, actor=actor)
        if request is not None:
            _save_test_card(svc, request, payment_method, actor, now)
    except DomainError as exc:
        log.warning("Booking #%s: the card for its deposit was not saved: %s", booking_id, exc.message)


def sandbox_save_card(
    svc: Services,
    booking_id: int,
    *,
    payment_method: str = "pm_card_visa",
    actor: str = "customer",
    now: datetime | None = None,
) -> DepositOutcome:
    """Sandbox only: the customer saves a test card for the deposit (a declining one to try the failure path)."""
    _sandbox_only(svc)
    now = resolve_now(svc, now)
    request = start_deposit(svc, booking_id, now, actor=actor)
    if request is None:
        raise InvalidState("This booking's deposit needs no card now")
    return _save_test_card(svc, request, payment_method, actor, now)


def _sandbox_only(svc: Services) -> None:
    if svc.payments.mode != "sandbox":
        raise InvalidState("Test cards can only be saved in sandbox mode")


def _save_test_card(
    svc: Services, request: CardRequest, payment_method: str, actor: str, now: datetime
) -> DepositOutcome:
    """Confirm the card request with a test card, as Stripe.js would with the customer's, and record the card."""
    seti = svc.payments.confirm_setup_intent(request.setup_intent_id, payment_method=payment_method)
    return card_saved(svc, request.booking_id, seti, now, actor=actor)


# --------------------------------------------------------------------------------------------------- the worker


def run_deposit_round(svc: Services, now: datetime | None = None, *, actor: str = "worker") -> RoundReport:
    """The worker's round over every open deposit: the card asked for again after an outage, holds placed when due
    and held again before they lapse, holds released after the claim window, deposits of cancelled bookings closed,
    a hold with no card saved in time marked failed. A busy booking waits for the next round; one deposit's trouble
    never stops the others. Audit mode does nothing (read-only)."""
    now = resolve_now(svc, now)
    report = RoundReport()
    if svc.settings.audit_mode:
        return report
    start_missing(svc, now, report, actor)
    with svc.session() as s:
        ids = list(s.exec(select(DamageDeposit.booking_id).where(col(DamageDeposit.state).in_(dq.OPEN_STATES))))
        ids = [i for i in ids if due(s, i, now)]
    for booking_id in ids:
        try:
            with lease(svc, booking_id):
                did = tend(svc, booking_id, actor=actor, now=now)
        except BookingBusy:
            report.busy += 1
            continue
        except DomainError as exc:  # audited by the step; tried again next round
            report.errors.append(f"booking #{booking_id}: {exc.message}")
            continue
        except Exception:
            log.exception("Damage deposit of booking #%s could not be tended", booking_id)
            report.errors.append(f"booking #{booking_id}: unexpected error (see the log)")
            continue
        if did:
            report.done[did] += 1
    return report


def due(s: Session, booking_id: int, now: datetime) -> tuple[str, ...]:
    """What the deposit needs now, in order (reads only, so the worker leases only bookings with work): 'release
    stale' (a re-hold interrupted before the old hold went), then 'close' (the booking was cancelled, or the claim
    window has ended with no claim open), or 'request card' (Stripe was down when it was asked for) and then 'no card'
    (the hold is due and none was saved) or 'hold' (due, or due again before the standing one lapses)."""
    dep = _get(s, booking_id)
    if dep.state in dq.CLOSED_STATES:
        return ()
    booking = load_booking(s, booking_id)
    steps = ["release stale"] if any(pi != dep.payment_intent_id for pi in _unreleased(dep)) else []
    plan = None if booking.status in dq.GONE else dq.deposit_plan(dep, booking_legs(s, booking_id), now)
    claim_open = _open_claim(s, dep) is not None
    needs_card = dep.state == DepositState.CARD_NEEDED and dep.setup_intent_id is None
    if plan is None:
        return (*steps, *(() if claim_open else ("close",)))
    if booking.status == BookingStatus.AWAITING_PAYMENT:  # nothing is held before the booking is paid
        return (*steps, *(("request card",) if needs_card else ()))
    if now >= plan.release_at and not claim_open:
        return (*steps, "close")
    if needs_card:
        steps.append("request card")
    first_due = now >= plan.first_hold
    again_due = dep.held_at is not None and (not dq.standing(dep, now) or now >= dep.held_at + dq.REHOLD_AFTER)
    if dep.state == DepositState.CARD_NEEDED and first_due:
        steps.append("no card")
    if (dep.state == DepositState.CARD_SAVED and first_due) or (dep.state == DepositState.HELD and again_due):
        steps.append("hold")
    return tuple(steps)


def tend(svc: Services, booking_id: int, *, actor: str, now: datetime) -> str:
    """One deposit, under the booking's lease: do what is due now (`due`, read again). Returns what it did ('' for
    nothing worth counting)."""
    with svc.session() as s:
        steps = due(s, booking_id, now)
        cancelled = load_booking(s, booking_id).status in dq.GONE
    did = ""
    for step in steps:
        if step == "release stale":
            with svc.session() as s:
                dep = _get(s, booking_id)
                stale = [pi for pi in _unreleased(dep) if pi != dep.payment_intent_id]
            release_holds(svc, booking_id, stale, actor=actor, now=now, why="held again")
        elif step == "close":
            why = "the booking was cancelled" if cancelled else "the claim window ended"
            did = close(svc, booking_id, actor=actor, now=now, why=why)
        elif step == "request card":
            _request_card(svc, booking_id, actor, now)
            did = "card requested"
        elif step == "no card":
            did = _no_card(svc, booking_id, actor, now)
        elif step == "hold":
            did = place_hold(svc, booking_id, actor=actor, now=now)
    return did


def place_hold(svc: Services, booking_id: int, *, actor: str, now: datetime) -> str:
    """Hold the deposit on the saved card (again, when one stands: the new hold first, then the old released).
    Returns 'held', 'reheld' or 'failed' (declined). Raises GatewayError on an outage (the next try replays the same
    key, so Stripe never makes two holds)."""
    with svc.session() as s:
        dep = _get(s, booking_id)
        ref = load_booking(s, booking_id).reference
        n, attempt = len(dep.holds) + 1, dep.hold_attempt
        customer, pm, amount, currency = dep.customer_id, dep.payment_method, dep.amount_cents, dep.currency
    if customer is None or pm is None:
        raise InvalidState(f"No card is saved for the deposit of {ref}: ask the customer to save one")
    try:
        pi = svc.payments.create_deposit_hold(
            customer=customer,
            payment_method=pm,
            amount=amount,
            currency=currency.lower(),
            idempotency_key=_key(ref, f"hold-{n}-{attempt}"),
            metadata=_metadata(ref, hold=str(n)),
        )
    except PaymentDeclined as exc:
        return _declined(svc, booking_id, attempt, exc.message, actor, now)
    except GatewayError as exc:
        _step_failed(svc, booking_id, "placing the hold", exc, actor, now)
        raise
    return _record_hold(svc, booking_id, pi, actor, now)


def _record_hold(svc: Services, booking_id: int, pi: Json, actor: str, now: datetime) -> str:
    pi_id = str(pi["id"])
    with svc.session() as s:
        dep = _get(s, booking_id)
        booking = load_booking(s, booking_id)
        if any(h.get("payment_intent") == pi_id for h in dep.holds):
            return ""  # recorded by an earlier try
        first = not dep.holds
        previous = dep.payment_intent_id if dep.payment_intent_id in _unreleased(dep) else None  # still to release
        entry = {"payment_intent": pi_id, "placed_at": now.isoformat(), "released_at": None, "captured_cents": None}
        dep.holds = [*dep.holds, entry]
        dep.payment_intent_id, dep.held_at, dep.hold_attempt = pi_id, now, 1
        dep.state, dep.last_error, dep.failed_at = DepositState.HELD, None, None
        _touch(dep, now)
        s.add(ExternalRef(provider="stripe", kind=REF_KIND, external_id=pi_id, booking_id=booking_id, created_at=now))
        legs = booking_legs(s, booking_id)
        plan = dq.deposit_plan(dep, legs, now)
        audit.record(
            s,
            "booking.deposit.held" if first else "booking.deposit.reheld",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=pi_id,
            amount_cents=dep.amount_cents,
            lapses_at=dq.hold_lapses_at(dep),
            replaces=previous,
            message=f"Damage deposit of {money(dep.amount_cents, dep.currency)} held on the card",
        )
        if first:
            deposit_mail.held(
                s,
                booking=booking,
                legs=dq.live_legs(legs),
                deposit=dep,
                catalogue=svc.catalogue,
                settings=svc.settings,
                release_at=plan.release_at if plan else None,
                now=now,
            )
    if previous:
        release_holds(svc, booking_id, [previous], actor=actor, now=now, why="held again")
    return "held" if first else "reheld"


def _declined(svc: Services, booking_id: int, attempt: int, error: str, actor: str, now: datetime) -> str:
    """The card was declined: the deposit waits for staff (Place hold now) or another card (a new SetupIntent is
    made when the customer is next asked for one); this attempt's key is spent."""
    with svc.session() as s:
        dep = _get(s, booking_id)
        if dep.hold_attempt != attempt:
            return ""  # another try has been recorded since
        dep.state, dep.last_error, dep.failed_at = DepositState.HOLD_FAILED, error[:500], now
        dep.hold_attempt += 1
        dep.setup_attempt += 1
        dep.setup_intent_id = dep.setup_client_secret = None
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.hold_failed",
            actor=actor,
            at=now,
            booking=load_booking(s, booking_id),
            amount_cents=dep.amount_cents,
            error=error,
            earlier_hold_stands=dq.standing(dep, now) or None,
            message="Damage deposit: the card was declined",
        )
    return "failed"


def _no_card(svc: Services, booking_id: int, actor: str, now: datetime) -> str:
    """The hold is due and the customer never saved a card: failed, for staff to chase (the request stays open)."""
    with svc.session() as s:
        dep = _get(s, booking_id)
        if dep.state != DepositState.CARD_NEEDED:
            return ""
        dep.state, dep.failed_at = DepositState.HOLD_FAILED, now
        dep.last_error = "No card was saved for the deposit by the time the hold was due"
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.hold_failed",
            actor=actor,
            at=now,
            booking=load_booking(s, booking_id),
            amount_cents=dep.amount_cents,
            error=dep.last_error,
            message="Damage deposit: no card saved in time",
        )
    return "failed"


def release_holds(svc: Services, booking_id: int, pis: Sequence[str], *, actor: str, now: datetime, why: str) -> None:
    """Release (cancel) these holds at Stripe and record it; a hold released before is released again harmlessly
    (Stripe answers a cancelled PaymentIntent unchanged)."""
    with svc.session() as s:
        ref = load_booking(s, booking_id).reference
    for pi in pis:
        try:
            svc.payments.cancel_payment_intent(pi, idempotency_key=_key(ref, f"release-{pi}"))
        except DomainError as exc:
            _step_failed(svc, booking_id, "releasing the hold", exc, actor, now)
            raise
        with svc.session() as s:
            dep = _get(s, booking_id)
            if pi not in _unreleased(dep):
                continue
            _with_hold(dep, pi, released_at=now.isoformat())
            _touch(dep, now)
            audit.record(
                s,
                "booking.deposit.hold_released",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                payment_intent=pi,
                why=why,
                message=f"Damage deposit: an earlier hold released ({why})",
            )


def close(svc: Services, booking_id: int, *, actor: str, now: datetime, why: str) -> str:
    """Release every hold still standing and close the deposit: `released` (the customer is told) when a hold was
    ever placed, else `cancelled`. Returns which."""
    with svc.session() as s:
        dep = _get(s, booking_id)
        if dep.state in dq.CLOSED_STATES:
            return ""
        ref = load_booking(s, booking_id).reference
        todo = _unreleased(dep)
    for pi in todo:
        try:
            svc.payments.cancel_payment_intent(pi, idempotency_key=_key(ref, f"release-{pi}"))
        except DomainError as exc:
            _step_failed(svc, booking_id, "releasing the hold", exc, actor, now)
            raise
    with svc.session() as s:
        dep = _get(s, booking_id)
        if dep.state in dq.CLOSED_STATES:
            return ""
        booking = load_booking(s, booking_id)
        for pi in todo:
            _with_hold(dep, pi, released_at=now.isoformat())
        ever_held = bool(dep.holds)
        dep.state = DepositState.RELEASED if ever_held else DepositState.CANCELLED
        dep.closed_at = now
        _touch(dep, now)
        amount = money(dep.amount_cents, dep.currency)
        audit.record(
            s,
            "booking.deposit.released" if ever_held else "booking.deposit.cancelled",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=dep.payment_intent_id,
            amount_cents=dep.amount_cents,
            why=why,
            message=f"Damage deposit of {amount} released: {why}" if ever_held else f"No deposit held: {why}",
        )
        if ever_held:
            deposit_mail.released(
                s,
                booking=booking,
                legs=dq.live_legs(booking_legs(s, booking_id)),
                deposit=dep,
                catalogue=svc.catalogue,
                settings=svc.settings,
                now=now,
            )
        return str(dep.state)


def on_setup_intent(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """setup_intent.succeeded (the webhook): the customer saved the card a deposit asked for. Found by the
    SetupIntent's id (a card setup of another integration is ignored); recording it twice changes nothing. The event
    is the signed one Stripe sent: the gateway has no SetupIntent read to fetch it again."""
    seti_id = obj.get("id")
    if (obj.get("metadata") or {}).get("purpose") != PURPOSE or not isinstance(seti_id, str):
        return "ignored"
    with svc.session() as s:
        dep = s.exec(select(DamageDeposit).where(DamageDeposit.setup_intent_id == seti_id)).first()
    if dep is None:
        return "ignored"  # an earlier card request, replaced after a decline
    card_saved(svc, dep.booking_id, obj, now, actor=actor)
    return "processed"


def on_hold_event(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """payment_intent.canceled for a hold Room Desk did not release (Stripe let it lapse after 7 days, or someone
    cancelled it in Stripe's dashboard): re-read it, record it, and — while the deposit should still stand — leave it
    for the worker to hold again. Anything else about a hold is Room Desk's own doing: ignored."""
    pi_id = obj.get("id")
    with svc.session() as s:
        booking_id = s.exec(
            select(ExternalRef.booking_id).where(
                ExternalRef.provider == "stripe", ExternalRef.kind == REF_KIND, ExternalRef.external_id == pi_id
            )
        ).first()
    if booking_id is None or not isinstance(pi_id, str):
        return "ignored"
    if svc.payments.retrieve_payment_intent(pi_id).get("status") != "canceled":
        return "ignored"
    with lease(svc, booking_id), svc.session() as s:
        dep = _get(s, booking_id)
        if pi_id not in _unreleased(dep):
            return "ignored"
        _with_hold(dep, pi_id, released_at=now.isoformat())
        if pi_id == dep.payment_intent_id and dep.state == DepositState.HELD:
            dep.state = DepositState.CARD_SAVED
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.lapsed",
            actor=actor,
            at=now,
            booking=load_booking(s, booking_id),
            payment_intent=pi_id,
            message="Damage deposit: the hold was cancelled at Stripe",
        )
    return "processed"


# --------------------------------------------------------------------------------------------------- staff


def place_hold_now(svc: Services, booking_id: int, *, actor: str, now: datetime | None = None) -> DepositOutcome:
    """Staff's Place hold now: hold the deposit on the saved card at once (before its time, or again after a
    decline once the customer has sorted it out with their bank)."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    with lease(svc, booking_id):
        with svc.session() as s:
            dep = _get(s, booking_id)
            booking = load_booking(s, booking_id)
            plan = None if booking.status in dq.GONE else dq.deposit_plan(dep, booking_legs(s, booking_id), now)
            ref = booking.reference
            if plan is None:
                raise InvalidState(f"{ref} is no longer booked: no deposit is held for it")
            if booking.status == BookingStatus.AWAITING_PAYMENT:
                raise InvalidState(f"{ref} is not paid yet: the deposit is held once it is")
            if dep.state in dq.CLOSED_STATES:
                raise InvalidState(f"The deposit of {ref} is already {dep.state}")
            if dep.payment_method is None:
                raise InvalidState(f"No card is saved for the deposit of {ref}: ask the customer to save one")
            if dep.state == DepositState.HELD and dq.standing(dep, now):
                raise InvalidState(f"A hold of {money(dep.amount_cents, dep.currency)} already stands for {ref}")
            if now >= plan.release_at:
                raise InvalidState(f"The claim window of {ref} has closed: there is nothing left to hold")
        did = place_hold(svc, booking_id, actor=actor, now=now)
    with svc.session() as s:
        dep = _get(s, booking_id)
        amount, error = money(dep.amount_cents, dep.currency), dep.last_error
    if did == "failed":
        return DepositOutcome(booking_id, ref, "hold_failed", f"The card was declined for {ref}: {error}")
    return DepositOutcome(booking_id, ref, "held", f"Held {amount} on the card for {ref}")


def release_deposit(
    svc: Services, booking_id: int, *, actor: str, reason: str, now: datetime | None = None
) -> DepositOutcome:
    """Staff release the deposit before its time (nothing to claim): every hold released, the customer told."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    reason = reason.strip()
    if not reason:
        raise ValidationError("Say why the deposit is released early: it goes in the booking's history")
    with lease(svc, booking_id):
        with svc.session() as s:
            dep = _get(s, booking_id)
            ref = load_booking(s, booking_id).reference
            if dep.state in dq.CLOSED_STATES:
                raise InvalidState(f"The deposit of {ref} is already {dep.state}")
            claim = _open_claim(s, dep)
            if claim is not None:
                raise InvalidState(f"Damage claim #{claim.id} on {ref} is still open: decide it first")
        did = close(svc, booking_id, actor=actor, now=now, why=reason[:300])
    words = "released" if did == "released" else "closed (nothing was held)"
    return _outcome(svc, booking_id, f"The deposit of {ref} is {words}")


# --------------------------------------------------------------------------------------------------- claims


def file_claim(
    svc: Services,
    booking_id: int,
    *,
    amount_cents: int,
    notes: str,
    photos: Sequence[str] = (),
    actor: str,
    now: datetime | None = None,
) -> ClaimOutcome:
    """Claim part or all of the hold for damage, with notes and the photos' file names, inside the claim window;
    nothing is taken until a manager and a finance person approve it. The customer is emailed the claim."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    names = [p.strip() for p in photos if p.strip()]
    with lease(svc, booking_id), svc.session() as s:
        dep = _get(s, booking_id)
        booking = load_booking(s, booking_id)
        ref = booking.reference
        legs = booking_legs(s, booking_id)
        plan = dq.deposit_plan(dep, legs, now)
        if not dq.standing(dep, now) or plan is None:
            raise InvalidState(f"No deposit is held for {ref} now: there is nothing to claim against")
        if (open_claim := _open_claim(s, dep)) is not None:
            raise InvalidState(f"Damage claim #{open_claim.id} on {ref} is still open: decide or withdraw it first")
        first_start = min(leg.starts_at for leg in dq.live_legs(legs))
        if now < first_start:
            raise InvalidState(f"{ref} has not begun: a damage claim is filed after the room was used")
        problems = claim_problems(
            amount_cents,
            held_cents=dep.amount_cents,
            notes=notes,
            now=now,
            release_at=plan.release_at,
            currency=dep.currency,
        )
        problems += dq.photo_problems(names)
        if problems:
            raise ValidationError(problems)
        assert dep.id is not None
        row = DepositClaim(
            deposit_id=dep.id,
            booking_id=booking_id,
            amount_cents=amount_cents,
            currency=dep.currency,
            notes=notes.strip(),
            photos=names,
            status=ClaimStatus.PENDING,
            requested_by=actor,
            requested_at=now,
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        audit.record(
            s,
            "booking.deposit.claim.filed",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=dep.payment_intent_id,
            claim=row.id,
            amount_cents=amount_cents,
            held_cents=dep.amount_cents,
            photos=names,
            message=f"Damage claim #{row.id} filed: waits for manager and finance",
        )
        deposit_mail.claim_filed(
            s,
            booking=booking,
            legs=dq.live_legs(legs),
            deposit=dep,
            claim=row,
            catalogue=svc.catalogue,
            settings=svc.settings,
            now=now,
        )
        claim_id = row.id
        amount, held = money(amount_cents, dep.currency), money(dep.amount_cents, dep.currency)
    return ClaimOutcome(
        claim_id,
        "pending",
        f"Damage claim #{claim_id}: {amount} of the {held} held on {ref} now waits for a manager's and a finance "
        "approval. Nothing is taken yet; the customer is emailed the claim.",
    )


def approve_claim(
    svc: Services, claim_id: int, *, actor: str, role: str, slot: str | None = None, now: datetime | None = None
) -> ClaimOutcome:
    """Sign one slot of the claim (manager or finance; an admin either). The second signature captures it at once."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    with svc.session() as s:
        row = _claim(s, claim_id)
        chosen = dq.claim_slot_for(row, actor, role, slot)
        other = next(x for x in ts.SLOTS if x != chosen)
        if not sign_slot(s, DepositClaim, claim_id, slot=chosen, actor=actor, now=now):
            raise InvalidState(f"Damage claim #{claim_id} changed while you looked at it; reload and check it again")
        booking = load_booking(s, row.booking_id)
        audit.record(
            s,
            "booking.deposit.claim.signed",
            actor=actor,
            at=now,
            booking=booking,
            claim=claim_id,
            slot=chosen,
            role=role,
            message=f"Damage claim #{claim_id} approved ({chosen})",
        )
        both = seal(s, DepositClaim, claim_id)
        if both:
            s.refresh(row)
            audit.record(
                s,
                "booking.deposit.claim.approved",
                actor=actor,
                at=now,
                booking=booking,
                claim=claim_id,
                manager=row.manager_approved_by,
                finance=row.finance_approved_by,
                message=f"Damage claim #{claim_id} has both approvals: capturing",
            )
    if both:
        return _capture(svc, claim_id, actor=actor, now=now)
    return ClaimOutcome(claim_id, "pending", f"Approved as {chosen}. It now waits for the {other} approval.")


def retry_claim(svc: Services, claim_id: int, *, actor: str, role: str, now: datetime | None = None) -> ClaimOutcome:
    """Capture an approved claim whose capture failed (an outage, a busy booking); never captures twice."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    ts.check_approver(role, "retry a damage claim")
    with svc.session() as s:
        row = _claim(s, claim_id)
        if row.status not in ("failed", "approved"):
            raise InvalidState(dq.claim_closed(row) if row.status != "pending" else "It still needs its approvals")
        audit.record(
            s,
            "booking.deposit.claim.retried",
            actor=actor,
            at=now,
            booking=load_booking(s, row.booking_id),
            claim=claim_id,
            error=row.error,
        )
    return _capture(svc, claim_id, actor=actor, now=now)


def _capture(svc: Services, claim_id: int, *, actor: str, now: datetime) -> ClaimOutcome:
    with svc.session() as s:
        booking_id = _claim(s, claim_id).booking_id
    try:
        with lease(svc, booking_id):
            return _capture_locked(svc, claim_id, actor, now)
    except BookingBusy:
        return _claim_failed(svc, claim_id, actor, now, "The booking is being processed right now; retry in a minute")


def _capture_locked(svc: Services, claim_id: int, actor: str, now: datetime) -> ClaimOutcome:
    with svc.session() as s:
        row = _claim(s, claim_id)
        if row.status == "captured":
            return ClaimOutcome(claim_id, "captured", dq.claim_closed(row))
        if row.status not in ("approved", "failed"):
            raise InvalidState(dq.claim_closed(row))
        dep = _get(s, row.booking_id)
        ref = load_booking(s, row.booking_id).reference
        pi_id, amount, booking_id = dep.payment_intent_id, row.amount_cents, row.booking_id
    if pi_id is None:
        return _claim_failed(svc, claim_id, actor, now, "No hold was ever placed for this deposit")
    try:
        pi = svc.payments.capture_payment_intent(
            pi_id, amount_to_capture=amount, idempotency_key=_key(ref, f"claim-{claim_id}-capture")
        )
    except DomainError as exc:
        return _claim_failed(svc, claim_id, actor, now, exc.message)
    taken = int(pi.get("amount_received") or amount)
    with svc.session() as s:
        row = _claim(s, claim_id)
        dep = _get(s, booking_id)
        booking = load_booking(s, booking_id)
        row.status, row.captured_cents, row.captured_at, row.error = ClaimStatus.CAPTURED, taken, now, None
        dep.state, dep.captured_cents, dep.captured_at, dep.closed_at = DepositState.CAPTURED, taken, now, now
        _with_hold(dep, pi_id, captured_cents=taken)
        _touch(dep, now)
        audit.record(
            s,
            "booking.deposit.claim.captured",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=pi_id,
            claim=claim_id,
            amount_cents=taken,
            released_cents=dep.amount_cents - taken,
            message=f"Damage claim #{claim_id}: {money(taken, dep.currency)} captured from the deposit",
        )
        deposit_mail.captured(
            s,
            booking=booking,
            legs=dq.live_legs(booking_legs(s, booking_id)),
            deposit=dep,
            claim=row,
            catalogue=svc.catalogue,
            settings=svc.settings,
            now=now,
        )
        stale = _unreleased(dep)
        rest = money(dep.amount_cents - taken, dep.currency)
    if stale:
        release_holds(svc, booking_id, stale, actor=actor, now=now, why="the claim was captured")
    return ClaimOutcome(
        claim_id,
        "captured",
        f"Damage claim #{claim_id} captured: {money(taken, row.currency)} taken from the hold on {ref}, {rest} "
        "released. The customer is emailed.",
    )


def _claim_failed(svc: Services, claim_id: int, actor: str, now: datetime, error: str) -> ClaimOutcome:
    with svc.session() as s:
        row = _claim(s, claim_id)
        if row.status not in (ClaimStatus.APPROVED, ClaimStatus.FAILED):
            # Taken (or closed) by another attempt meanwhile: this one's failure changes nothing.
            return ClaimOutcome(claim_id, row.status.value, f"Damage claim #{claim_id} is {row.status.value}.")
        row.status, row.error = ClaimStatus.FAILED, error[:500]
        audit.record(
            s,
            "booking.deposit.claim.failed",
            actor=actor,
            at=now,
            booking=load_booking(s, row.booking_id),
            claim=claim_id,
            error=error,
            message=f"Damage claim #{claim_id} could not be captured",
        )
    return ClaimOutcome(claim_id, "failed", f"Damage claim #{claim_id} was not captured. {error.rstrip('.')}.")


def reject_claim(
    svc: Services, claim_id: int, *, actor: str, role: str, note: str, now: datetime | None = None
) -> ClaimOutcome:
    """A manager or finance person turns the claim down (with a note); the hold is released when the window ends."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    ts.check_approver(role, "reject a damage claim")
    if not note.strip():
        raise ValidationError("Say why it is rejected: the note goes back to the person who filed it")
    return _close_claim(svc, claim_id, "rejected", actor=actor, note=note.strip(), now=now)


def withdraw_claim(
    svc: Services, claim_id: int, *, actor: str, note: str = "", now: datetime | None = None
) -> ClaimOutcome:
    """The person who filed the claim takes it back; nothing is taken."""
    now = resolve_now(svc, now)
    actor = ts.person(actor)
    with svc.session() as s:
        row = _claim(s, claim_id)
        if not ts.same_person(row.requested_by, actor):
            raise NotAllowed(f"Only {row.requested_by}, who filed damage claim #{claim_id}, can withdraw it")
    return _close_claim(svc, claim_id, "withdrawn", actor=actor, note=note.strip(), now=now)


def _close_claim(svc: Services, claim_id: int, status: str, *, actor: str, note: str, now: datetime) -> ClaimOutcome:
    if len(note) > 500:
        raise ValidationError(f"The note is too long ({len(note)} characters; at most 500)")
    with svc.session() as s:
        row = _claim(s, claim_id)
        done = s.execute(
            sa.update(DepositClaim)
            .where(col(DepositClaim.id) == claim_id, col(DepositClaim.status).in_(("pending", "failed")))
            .values(status=status, decided_by=actor, decided_at=now, decision_note=note or None)
        ).rowcount  # type: ignore[attr-defined]
        if not done:
            raise InvalidState(dq.claim_closed(row))
        audit.record(
            s,
            "booking.deposit.claim.rejected" if status == "rejected" else "booking.deposit.claim.withdrawn",
            actor=actor,
            at=now,
            booking=load_booking(s, row.booking_id),
            claim=claim_id,
            note=note or None,
            message=f"Damage claim #{claim_id} {status}; nothing was taken",
        )
        filed = moment_label(row.requested_at, svc.settings.tz)
    return ClaimOutcome(
        claim_id,
        status,
        f"Damage claim #{claim_id} (filed {filed}) {status}. Nothing is taken; the hold is released when the claim "
        "window ends.",
    )
