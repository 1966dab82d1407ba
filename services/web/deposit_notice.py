"""The damage deposit as the customer's pages show it (the confirmation page and the manage page): how much, when it
is held and released, where it stands, and — when the card is still needed, or a hold was declined — the card form
(Stripe.js confirmSetup with the card request's client secret in live mode, a test card in the sandbox).

Reading the notice may make the card request (services.finance.deposits.start_deposit): a paid booking sold with a
deposit asks for its card the first time the customer sees it, even if the payment webhook's request failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from models.tables import Booking, BookingLeg, BookingStatus, DamageDeposit, DepositClaim, DepositState
from services.booking.store import booking_legs, load_booking
from services.core.context import Services
from services.core.errors import DomainError
from services.finance import deposit_queries as dq
from services.finance import deposits
from services.rules.deposits import DepositPlan, DepositTerms, plan_deposit
from services.rules.fmt import moment_label, money
from services.web.customer import open_booking

log = logging.getLogger("roomdesk.web")

CARD_FORM_DOWN = "The card form could not be prepared just now. Please reload this page in a minute, or call us."


@dataclass(frozen=True)
class DepositNotice:
    amount: str  # '$250.00'
    state: str  # a DepositState value, or 'to_come' (the booking is not paid yet)
    words: str  # where it stands, in one or two plain sentences
    card_needed: bool  # the page offers the card form
    client_secret: str = ""  # live mode: the card request's secret for Stripe.js ('' in the sandbox)
    problem: str = ""  # the card form could not be prepared


def notice(
    svc: Services, booking_id: int, *, now: datetime | None = None, prepare_card: bool = True
) -> DepositNotice | None:
    """The booking's deposit for its customer, or None when it was sold without one (or it never came to anything:
    cancelled before a hold). With `prepare_card`, a paid booking whose card is needed gets its card request now."""
    now = now or svc.now()
    with svc.read_session() as s:
        b = load_booking(s, booking_id)
        dep = s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == booking_id)).first()
        terms = dq.terms_of(dep) if dep is not None else deposits.sold_terms_of(svc, b)
        legs = booking_legs(s, booking_id)
        claim = (
            s.exec(
                select(DepositClaim).where(
                    DepositClaim.deposit_id == dep.id, col(DepositClaim.status).in_(dq.OPEN_CLAIMS)
                )
            ).first()
            if dep is not None
            else None
        )
        plan = dq.deposit_plan(dep, legs, now) if dep is not None else _plan(terms, legs, now)
    if terms is None:
        return None
    amount = money(terms.amount_cents, b.currency)
    if dep is None or dep.state == DepositState.CARD_NEEDED or dep.state == DepositState.HOLD_FAILED:
        if b.status == BookingStatus.AWAITING_PAYMENT:
            return DepositNotice(amount, "to_come", _to_come(svc, terms, plan), card_needed=False)
        if b.status in dq.GONE:
            return None
        return _card_needed(svc, b, dep, plan, amount, now, prepare_card)
    if dep.state == DepositState.CANCELLED:
        return None
    return DepositNotice(amount, str(dep.state), _standing_words(svc, dep, plan, claim, b.currency), False)


def _plan(terms: DepositTerms | None, legs: Sequence[BookingLeg], now: datetime) -> DepositPlan | None:
    days = dq.live_legs(legs)
    if terms is None or not days:
        return None
    return plan_deposit(
        terms, first_start=min(x.starts_at for x in days), last_end=max(x.ends_at for x in days), now=now
    )


def _when(svc: Services, at: datetime) -> str:
    return moment_label(at, svc.settings.tz)


def _window(svc: Services, plan: DepositPlan | None) -> str:
    if plan is None:
        return ""
    return f" It is held on your card from {_when(svc, plan.first_hold)} and released by {_when(svc, plan.release_at)}"


def _to_come(svc: Services, terms: DepositTerms, plan: DepositPlan | None) -> str:
    window = _window(svc, plan) or (
        f" It is held on your card from {terms.hold_hours_before} h before your first day until"
        f" {terms.claim_window_hours} h after your last"
    )
    return f"This room asks a damage deposit.{window}; nothing is taken unless the room is damaged." + (
        " The test card you pay with is saved for it."
        if svc.payments.mode == "sandbox"
        else " After paying you save a card for it."
    )


def _card_needed(
    svc: Services,
    b: Booking,
    dep: DamageDeposit | None,
    plan: DepositPlan | None,
    amount: str,
    now: datetime,
    prepare: bool,
) -> DepositNotice:
    declined = dep is not None and dep.state == DepositState.HOLD_FAILED
    phone = svc.catalogue.venue.phone
    if declined:
        words = "Your card declined the deposit hold. Please save another card below" + (
            f", or call us on {phone}." if phone else "."
        )
    else:
        words = (
            "Please save a card for it below: nothing is taken now."
            + _window(svc, plan)
            + ", unless the room is damaged."
        )
    state = str(dep.state) if dep is not None else str(DepositState.CARD_NEEDED)
    if not prepare:
        return DepositNotice(amount, state, words, card_needed=True)
    assert b.id is not None
    try:
        request = deposits.start_deposit(svc, b.id, now, actor="customer")
    except DomainError as exc:
        log.warning("Booking %s: the deposit's card form could not be prepared: %s", b.reference, exc.message)
        return DepositNotice(amount, state, words, card_needed=True, problem=CARD_FORM_DOWN)
    if request is None:  # saved a moment ago (the webhook), or nothing is needed any more
        return notice(svc, b.id, now=now, prepare_card=False) or DepositNotice(amount, state, words, False)
    secret = "" if svc.payments.mode == "sandbox" else request.client_secret
    return DepositNotice(amount, state, words, card_needed=True, client_secret=secret)


def _standing_words(
    svc: Services, dep: DamageDeposit, plan: DepositPlan | None, claim: DepositClaim | None, currency: str
) -> str:
    release = f" released by {_when(svc, plan.release_at)}" if plan is not None else " released after your booking"
    if claim is not None:
        return (
            f"We reported damage and claim {money(claim.amount_cents, currency)} of the hold; we emailed you the"
            " details."
        )
    if dep.state == DepositState.CARD_SAVED:
        hold = f" on {_when(svc, plan.first_hold)}" if plan is not None else " shortly before your first day"
        return f"Your card is saved for it. We place the hold{hold} and it is{release}, unless the room is damaged."
    if dep.state == DepositState.HELD:
        since = f" since {_when(svc, dep.held_at)}" if dep.held_at is not None else ""
        return f"Held on your card{since} (not taken). It is{release}, unless the room is damaged."
    if dep.state == DepositState.CAPTURED:
        return (
            f"{money(dep.captured_cents, currency)} was taken for damage; we emailed you the details. The rest of the"
            " hold was released."
        )
    closed = f" on {_when(svc, dep.closed_at)}" if dep.closed_at is not None else ""
    return f"Released{closed}: nothing was taken."


def for_customer(
    svc: Services, reference: str, token: str | None, *, back_from_stripe: bool = False
) -> tuple[DepositNotice | None, bool]:
    """(the notice, whether a card was saved just now) for the booking a customer link opens. Back from Stripe's card
    form, the card request is read at once (the webhook may not have come yet)."""
    with svc.read_session() as s:
        booking_id = open_booking(s, reference, token).id
    assert booking_id is not None
    saved = False
    if back_from_stripe:
        try:
            saved = deposits.check_card(svc, booking_id, actor="customer")
        except DomainError as exc:
            log.info("Booking %s: the saved card could not be read back yet: %s", reference, exc.message)
    return notice(svc, booking_id), saved
