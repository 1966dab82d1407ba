"""Read models of damage deposits (services.finance.deposits writes them): each deposit with its booking's days, when
its hold is placed and released and what happens next in words; the Deposits page's groups; the claims against a
hold with their two signatures in the shared rules' words (services.finance.two_signatures); and the failed holds a
finding names. No writes here.

The timing is one function, `deposit_plan`, used by the writer too: the terms the deposit was sold with
(services.rules.deposits.plan_deposit) over the booking's days as they are now (a change to the booking moves them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Booking,
    BookingLeg,
    BookingStatus,
    DamageDeposit,
    DepositClaim,
    DepositState,
    LegState,
)
from services.core.context import Services
from services.core.errors import DomainError
from services.finance import two_signatures as ts
from services.rules.deposits import AUTH_LIFETIME, AUTH_MARGIN, DepositPlan, DepositTerms, plan_deposit
from services.rules.fmt import moment_label, money

OPEN_STATES = (DepositState.CARD_NEEDED, DepositState.CARD_SAVED, DepositState.HELD, DepositState.HOLD_FAILED)
CLOSED_STATES = (DepositState.CAPTURED, DepositState.RELEASED, DepositState.CANCELLED)
# A claim that still needs someone: signatures, the capture, or a retry / reject after a failed capture.
OPEN_CLAIMS = ("pending", "approved", "failed")
DONE_CLAIMS = ("captured", "rejected", "withdrawn")
# Bookings whose days are no longer booked: their deposit is released (or never held).
GONE = (BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.FAILED, BookingStatus.REFUNDED)
# Paid bookings with days booked: a deposit they were sold with is asked for (missing_deposits).
PAID_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED)
# A hold is placed again this long after the one standing was placed (before Stripe cancels it at 7 days).
REHOLD_AFTER = AUTH_LIFETIME - AUTH_MARGIN

# The Deposits page's views, in its order: (label, what it lists).
GROUPS = {
    "attention": "Needs attention",
    "upcoming": "Upcoming holds",
    "held": "Holds standing",
    "claims": "Claims",
    "closed": "Released / captured",
}
STATE_WORDS = {
    "card_needed": "Card needed",
    "card_saved": "Card saved",
    "held": "Held",
    "hold_failed": "Hold failed",
    "captured": "Captured",
    "released": "Released",
    "cancelled": "Not held",
}
MAX_PHOTOS = 20
MAX_PHOTO_NAME = 200


def terms_of(dep: DamageDeposit) -> DepositTerms:
    """The terms the deposit was sold with (its room's when it was booked)."""
    return DepositTerms(dep.amount_cents, dep.hold_hours_before, dep.claim_window_hours)


def live_legs(legs: Sequence[BookingLeg]) -> list[BookingLeg]:
    """The days the deposit covers: the booked ones, or those waiting for payment before the booking is paid."""
    active = [leg for leg in legs if leg.state in ACTIVE_LEG_STATES]
    return active or [leg for leg in legs if leg.state == LegState.AWAITING_PAYMENT]


def deposit_plan(dep: DamageDeposit, legs: Sequence[BookingLeg], now: datetime) -> DepositPlan | None:
    """When the first hold is placed and when the hold is released, over the booking's days as they are now; None
    when it has no day left to cover."""
    days = live_legs(legs)
    if not days:
        return None
    first = min(leg.starts_at for leg in days)
    last = max(leg.ends_at for leg in days)
    return plan_deposit(terms_of(dep), first_start=first, last_end=last, now=now)


def hold_lapses_at(dep: DamageDeposit) -> datetime | None:
    """When Stripe cancels the standing hold (7 days after it was placed)."""
    return dep.held_at + AUTH_LIFETIME if dep.held_at is not None else None


def standing(dep: DamageDeposit, now: datetime) -> bool:
    """A hold stands on the card now: placed, not released, captured or lapsed."""
    if dep.payment_intent_id is None or dep.held_at is None:
        return False
    if dep.state not in (DepositState.HELD, DepositState.HOLD_FAILED):
        return False
    current: dict[str, Any] = next((h for h in dep.holds if h.get("payment_intent") == dep.payment_intent_id), {})
    return not current.get("released_at") and now < dep.held_at + AUTH_LIFETIME


def group_of(dep: DamageDeposit, claim: DepositClaim | None) -> str:
    if claim is not None:
        return "claims"
    if dep.state == DepositState.HOLD_FAILED:
        return "attention"
    if dep.state in (DepositState.CARD_NEEDED, DepositState.CARD_SAVED):
        return "upcoming"
    if dep.state == DepositState.HELD:
        return "held"
    return "closed"


# --------------------------------------------------------------------------------------------------- claims


def claim_what(row: DepositClaim) -> str:
    return f"damage claim #{row.id}"


def claim_closed(row: DepositClaim) -> str:
    """Why a claim no longer takes signatures or decisions."""
    return {
        "approved": f"Damage claim #{row.id} has both approvals and is being captured",
        "captured": f"Damage claim #{row.id} was already captured: nothing to do",
        "failed": f"Damage claim #{row.id} has both approvals but its capture failed ({row.error}); retry or reject it",
        "rejected": f"Damage claim #{row.id} was rejected by {row.decided_by}",
        "withdrawn": f"Damage claim #{row.id} was withdrawn by {row.decided_by}",
    }.get(row.status, f"Damage claim #{row.id} is {row.status}")


def claim_slot_for(row: DepositClaim, actor: str, role: str, slot: str | None) -> str:
    """The slot this person signs on the claim now (the shared rules, in the claim's words)."""
    return ts.slot_for(
        row, actor, role, slot, what=claim_what(row), doing="approve a damage claim", closed=claim_closed(row)
    )


def claim_signing_problem(row: DepositClaim, *, actor: str, role: str, slot: str | None = None) -> str | None:
    """Why this person cannot sign the claim now (None: they can); the page disables its button with it."""
    return ts.signing_problem(
        row,
        actor=actor,
        role=role,
        slot=slot,
        what=claim_what(row),
        doing="approve a damage claim",
        closed=claim_closed(row),
    )


def claim_status_text(row: DepositClaim) -> str:
    """The claim's state in plain words, for tables."""
    if row.status == "pending":
        return ts.waiting_text(row)
    return {
        "approved": "Approved, capturing",
        "captured": f"Captured {money(row.captured_cents or 0, row.currency)}",
        "failed": f"Capture failed: {row.error}",
        "rejected": f"Rejected by {row.decided_by}",
        "withdrawn": f"Withdrawn by {row.decided_by}",
    }.get(row.status, row.status) + (f": {row.decision_note}" if row.decision_note else "")


def can_withdraw_claim(row: DepositClaim, actor: str) -> bool:
    """Only the person who filed the claim may take it back, while it is undecided."""
    return row.status in ("pending", "failed") and ts.same_person(row.requested_by, actor)


def photo_problems(photos: Sequence[str]) -> list[str]:
    """Why these photo file names cannot be kept as evidence (names only: the photos themselves stay where staff
    keep them)."""
    found = []
    if len(photos) > MAX_PHOTOS:
        found.append(f"At most {MAX_PHOTOS} photos per claim ({len(photos)} given)")
    for name in photos:
        if len(name) > MAX_PHOTO_NAME:
            found.append(f"The photo name {name[:40]!r}… is longer than {MAX_PHOTO_NAME} characters")
        elif any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
            found.append(f"{name!r} is not a file name: give the name only, without a folder")
    return found


@dataclass(frozen=True)
class ClaimView:
    """A claim with what the approvals queue shows next to it: the booking, its room and days, the hold."""

    row: DepositClaim
    reference: str
    room_name: str
    days: list[date]
    held_cents: int

    @property
    def id(self) -> int:
        assert self.row.id is not None
        return self.row.id

    def signer(self, slot: str) -> str | None:
        return ts.signer(self.row, slot)

    def completes(self, slot: str) -> bool:
        """Signing `slot` would be the second signature, which captures the claim at once."""
        return ts.completes(self.row, slot)


def list_claims(
    svc: Services, *, booking_id: int | None = None, statuses: Sequence[str] | None = None, limit: int = 200
) -> list[ClaimView]:
    """Claims (newest first) with their booking's reference, room and days, and the amount held."""
    with svc.read_session() as s:
        q = (
            select(DepositClaim, DamageDeposit, Booking)
            .join(DamageDeposit, col(DamageDeposit.id) == DepositClaim.deposit_id)
            .join(Booking, col(Booking.id) == DepositClaim.booking_id)
        )
        if booking_id is not None:
            q = q.where(DepositClaim.booking_id == booking_id)
        if statuses is not None:
            q = q.where(col(DepositClaim.status).in_(list(statuses)))
        rows = list(s.exec(q.order_by(col(DepositClaim.requested_at).desc(), col(DepositClaim.id).desc())))[:limit]
        days = _days(s, {b.id for _, _, b in rows if b.id is not None})
    return [
        ClaimView(claim, b.reference, _room_name(svc, b.room_slug), days.get(claim.booking_id, []), dep.amount_cents)
        for claim, dep, b in rows
    ]


def list_open_claims(svc: Services) -> list[ClaimView]:
    """The approvals queue's claims: those that still need someone, oldest first."""
    return list(reversed(list_claims(svc, statuses=OPEN_CLAIMS)))


# --------------------------------------------------------------------------------------------------- deposits


@dataclass(frozen=True)
class DepositView:
    """One deposit as the Deposits page lists it."""

    row: DamageDeposit
    reference: str
    room_name: str
    customer: str
    email: str
    booking_status: str
    days: list[date]
    hold_at: datetime | None  # when the first hold is (or was) due
    release_at: datetime | None  # when the hold is released unless a claim is filed
    claim: DepositClaim | None  # the open claim, if any
    standing: bool
    next_step: str

    @property
    def group(self) -> str:
        return group_of(self.row, self.claim)

    @property
    def state_words(self) -> str:
        return STATE_WORDS.get(self.row.state, self.row.state)


def list_deposits(
    svc: Services, *, group: str | None = None, booking_id: int | None = None, now: datetime | None = None
) -> list[DepositView]:
    """Deposits with their booking, timing and next step; in a group of the page (GROUPS) when given. Soonest
    first: the hold (or release) due next at the top."""
    now = now or svc.now()
    with svc.read_session() as s:
        q = select(DamageDeposit, Booking).join(Booking, col(Booking.id) == DamageDeposit.booking_id)
        if booking_id is not None:
            q = q.where(DamageDeposit.booking_id == booking_id)
        pairs = list(s.exec(q))
        ids = [b.id for _, b in pairs if b.id is not None]
        legs: dict[int, list[BookingLeg]] = {i: [] for i in ids}
        for leg in s.exec(select(BookingLeg).where(col(BookingLeg.booking_id).in_(ids))) if ids else []:
            legs[leg.booking_id].append(leg)
        claims = {
            c.deposit_id: c for c in s.exec(select(DepositClaim).where(col(DepositClaim.status).in_(OPEN_CLAIMS)))
        }
    views = [_view(svc, dep, b, legs.get(b.id or 0, []), claims.get(dep.id or 0), now) for dep, b in pairs]
    if group is not None:
        views = [v for v in views if v.group == group]
    far = datetime.max.replace(tzinfo=now.tzinfo)
    if group == "closed":
        return sorted(views, key=lambda v: v.row.closed_at or v.row.updated_at, reverse=True)
    return sorted(views, key=lambda v: (_due(v) or far, v.reference))


def get_deposit(svc: Services, booking_id: int, *, now: datetime | None = None) -> DepositView | None:
    """The booking's deposit, or None when it has none."""
    found = list_deposits(svc, booking_id=booking_id, now=now)
    return found[0] if found else None


def group_counts(svc: Services, *, now: datetime | None = None) -> dict[str, int]:
    """How many deposits each group of the page holds."""
    counts = dict.fromkeys(GROUPS, 0)
    for v in list_deposits(svc, now=now):
        counts[v.group] += 1
    return counts


def failed_holds(svc: Services) -> list[DepositView]:
    """Deposits whose hold failed (declined, or no card saved in time), as the Deposits page lists them."""
    return list_deposits(svc, group="attention")


def failed_hold_rows(s: Session) -> list[tuple[DamageDeposit, Booking]]:
    """The failed holds of bookings that still stand, with their booking, read in the caller's session: what the
    deposit_hold_failed finding names (a reconciliation run reads everything in its one open transaction)."""
    return list(
        s.exec(
            select(DamageDeposit, Booking)
            .join(Booking, col(Booking.id) == DamageDeposit.booking_id)
            .where(DamageDeposit.state == DepositState.HOLD_FAILED, col(Booking.status).not_in(GONE))
            .order_by(col(DamageDeposit.failed_at), col(DamageDeposit.id))
        )
    )


def _view(
    svc: Services, dep: DamageDeposit, b: Booking, legs: list[BookingLeg], claim: DepositClaim | None, now: datetime
) -> DepositView:
    plan = None if b.status in GONE else deposit_plan(dep, legs, now)
    hold_at = plan.first_hold if plan and dep.state in (DepositState.CARD_NEEDED, DepositState.CARD_SAVED) else None
    if dep.held_at is not None and hold_at is None:
        hold_at = min((datetime.fromisoformat(h["placed_at"]) for h in dep.holds if h.get("placed_at")), default=None)
    release_at = plan.release_at if plan else None
    days = sorted({leg.day for leg in live_legs(legs)}) or sorted({leg.day for leg in legs})
    up = standing(dep, now)
    return DepositView(
        dep,
        b.reference,
        _room_name(svc, b.room_slug),
        b.customer_name,
        b.customer_email,
        b.status,
        days,
        hold_at,
        release_at,
        claim,
        up,
        _next_step(svc, dep, b, claim, hold_at, release_at, up, now),
    )


def _next_step(
    svc: Services,
    dep: DamageDeposit,
    b: Booking,
    claim: DepositClaim | None,
    hold_at: datetime | None,
    release_at: datetime | None,
    up: bool,
    now: datetime,
) -> str:
    """What happens next to the deposit, in one sentence for staff."""
    tz = svc.settings.tz
    amount = money(dep.amount_cents, dep.currency)

    def when(moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return "now" if moment <= now else moment_label(moment, tz)

    if claim is not None:
        return f"Claim #{claim.id} for {money(claim.amount_cents, claim.currency)}: {claim_status_text(claim)}"
    state = dep.state
    if state == DepositState.CARD_NEEDED:
        if b.status == BookingStatus.AWAITING_PAYMENT:
            return "Waiting for the booking to be paid and the card saved"
        if dep.setup_intent_id is None:
            return "The card request could not be made yet: the worker retries it"
        return f"Waiting for the customer to save a card; the hold is due {when(hold_at)}"
    if state == DepositState.CARD_SAVED:
        return f"Card saved: {amount} is held {when(hold_at)}"
    if state == DepositState.HELD:
        lapse = hold_lapses_at(dep)
        rehold = dep.held_at + REHOLD_AFTER if dep.held_at else None
        again = f"; held again {when(rehold)}" if rehold and release_at and rehold < release_at else ""
        if not up and lapse is not None and lapse <= now:
            return "The hold lapsed: the worker places it again"
        return f"Released {when(release_at)} unless a claim is filed{again}"
    if state == DepositState.HOLD_FAILED:
        still = " (the earlier hold stands until it lapses)" if up else ""
        return f"{dep.last_error or 'The hold failed'}{still}: place the hold again, or ask for another card"
    if state == DepositState.CAPTURED:
        rest = dep.amount_cents - dep.captured_cents
        return f"{money(dep.captured_cents, dep.currency)} captured for a claim; {money(rest, dep.currency)} released"
    if state == DepositState.RELEASED:
        return f"Released {when(dep.closed_at)}"
    return "Closed without a hold"


def _due(v: DepositView) -> datetime | None:
    """The moment the deposit next needs something: its hold, its release, or (failed) when it failed."""
    if v.row.state == DepositState.HOLD_FAILED:
        return v.row.failed_at
    if v.row.state in (DepositState.CARD_NEEDED, DepositState.CARD_SAVED):
        return v.hold_at
    return v.release_at


def _days(s: Session, booking_ids: set[int]) -> dict[int, list[date]]:
    if not booking_ids:
        return {}
    out: dict[int, list[date]] = {}
    for leg in s.exec(select(BookingLeg).where(col(BookingLeg.booking_id).in_(sorted(booking_ids)))):
        if leg.state in ACTIVE_LEG_STATES:
            out.setdefault(leg.booking_id, []).append(leg.day)
    return {k: sorted(v) for k, v in out.items()}


def _room_name(svc: Services, slug: str) -> str:
    try:
        return svc.catalogue.room(slug).name
    except DomainError:
        return slug
