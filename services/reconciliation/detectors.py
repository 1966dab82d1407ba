"""One detector per finding code: each reads the run's one loaded cache (a `Snapshot`) and yields what it finds,
with a summary a manager understands. Pure reading; `reconcile` runs them all and persists the findings.

A payment that is not a readable booking is only `unparseable`; a paid one still waiting to be processed is only
`stale_payment`: every other payment detector looks at `Snapshot.cases`, the rest.

A booking we hold is checked against its own days (its legs: room calendar, day, times), not its first payment's
metadata: a change to the booking moves days, times or the room while that metadata keeps the original sale. The
payment of a change that cost more (`Snapshot.changes`) belongs to its booking: it is checked only for its amount
(the change's difference), for being paid but never processed, and for its refunds.

A payment the old system took (no booking of ours: its booking is the PaymentIntent's metadata) goes through every
check a booking does, through that metadata (`legacy`): its days, times and room, each day's share of what was
charged, the extras it carries, the policy its refunds are judged by."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from operator import attrgetter
from typing import Any

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    BlockState,
    Booking,
    BookingLeg,
    BookingStatus,
    RefundRecord,
)
from services.core.catalogue import Room
from services.core.context import Services
from services.reconciliation.cache import CacheData, CachedEvent, CachedPayment
from services.reconciliation.findings import CODES, REFUND_TOLD_KINDS, dispute_reason_words
from services.reconciliation.legacy import (
    day_shares,
    day_start,
    matches_some_days,
    metadata_extras,
    missing_labels,
    policy_quotes,
    within,
)
from services.rules.availability import closure_reason
from services.rules.fmt import day_label, days_label, money, span_label
from services.rules.policy import Policy
from services.rules.pricing import price
from services.rules.refunds import bands_from_snapshot, refund_for_leg

_days = partial(days_label, limit=4)  # a finding names at most 4 days, then '+N more'

_OPEN_DISPUTE = {"needs_response", "warning_needs_response", "under_review", "warning_under_review"}
_NO_DAYS: frozenset[date] = frozenset()
_CONFIRMED = (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED)
_GONE = (BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.REFUNDED)  # its days are no longer booked
# A change's payment that succeeded while our records say the change was never paid: the webhook was missed.
_UNPAID_CHANGE = (AmendmentState.AWAITING_PAYMENT, AmendmentState.LAPSED, AmendmentState.WITHDRAWN)


@dataclass
class Detected:
    code: str
    subject: str  # what the finding is about (pi, event, pair…): with the code, the key across runs
    summary: str
    payment_intent: str | None = None
    booking_id: int | None = None
    booking_ref: str | None = None
    room: str | None = None
    dates: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    amount_cents: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    offers: tuple[str, ...] | None = None  # the fixes that work on this one, when not every fix of its code does

    @property
    def key(self) -> str:
        return f"{self.code}:{self.subject}"

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    @property
    def actions(self) -> list[str]:
        return list(self.offers if self.offers is not None else CODES[self.code][2])


# --------------------------------------------------------------------------------------------- the shared dataset


@dataclass(slots=True)
class PaymentCase:
    """One payment with what several detectors read about it, worked out once per run."""

    pi: CachedPayment
    booking: Booking | None
    events: list[CachedEvent]  # the events matched to it
    legs: list[BookingLeg]
    kept: int  # received and not refunded
    fully_refunded: bool
    keeps_money: bool  # succeeded, and Stripe keeps some of it
    expected: AbstractSet[date]  # the days that should be on the calendar (none unless it keeps money)
    have: AbstractSet[date]  # those of them its readable events are on
    legacy: bool  # a payment the old system took (no booking, not a change's): its booking is only the metadata
    change: Amendment | None = None  # the payment is that of this change to the booking
    # An old payment's days cancelled under the policy (their refund is what the policy gave back then, their events
    # are gone): no longer expected on the calendar, the money kept for them is the cancellation fee.
    cancelled: AbstractSet[date] = _NO_DAYS
    # Worked out by the first detector that asks (Snapshot.booked_days, Snapshot.upcoming), then shared.
    booked: list[date] | None = None
    ahead: list[date] | None = None

    @property
    def days(self) -> list[date]:
        """The booking's days as they are now (its active ones; all of them once none is), else the metadata's."""
        legs = self.shown_legs()
        return sorted({leg.day for leg in legs}) if legs else list(self.pi.dates)

    def shown_legs(self) -> list[BookingLeg]:
        """The legs a finding names: the active ones, or every one when none is active any more."""
        active = [leg for leg in self.legs if leg.state in ACTIVE_LEG_STATES]
        return active or list(self.legs)

    def finding(self, code: str, subject: str, summary: str, **extra: Any) -> Detected:
        """A finding about this payment, naming its booking and days."""
        extra.setdefault("dates", [d.isoformat() for d in self.days])
        if self.legacy:
            # An old payment's events carry no booking of ours to find them by: the finding names them for its fix.
            extra.setdefault("event_ids", [e.event_id for e in self.events])
        if self.change is not None:
            extra["details"] = {**extra.get("details", {}), "change": self.change.number}
        return Detected(
            code,
            subject,
            summary,
            payment_intent=self.pi.id,
            booking_id=self.booking.id if self.booking else None,
            booking_ref=self.booking.reference if self.booking else self.pi.booking_ref,
            room=self.booking.room_slug if self.booking else self.pi.room,
            **extra,
        )


class Snapshot:
    """One run's loaded cache and the per-payment facts the detectors share: loaded and worked out once, read by
    every detector (a run over 100,000 payments must not re-read or re-derive them per code)."""

    def __init__(self, svc: Services, data: CacheData, now: datetime) -> None:
        self.svc, self.data, self.now = svc, data, now
        self.tz = svc.settings.tz
        self.policy: Policy = svc.policy
        # The old system's payments are judged by the rules Room Desk started from (the environment), not by a
        # version saved on Settings since: their customers were sold under those.
        self.seed_policy: Policy = svc.settings.policy()
        self.rooms = {r.slug: r for r in svc.catalogue.rooms}
        self.bookable = {r.calendar_id: r for r in svc.catalogue.rooms if r.bookable}
        self.price_memo: dict[tuple[Any, ...], tuple[int, int]] = {}  # (without tax, with today's tax)
        self.closures = svc.catalogue.closure_map
        self._closed: dict[date, str | None] = {}
        self.open_days: set[date] = set()  # the days of `_closed` the venue is open
        self._when_memo: dict[tuple[Any, ...], str] = {}
        # Days whose end is over, or ahead, whatever the time of day and the time zone's offset: `upcoming` compares
        # the exact end only for the few days in between.
        today = now.astimezone(self.tz).date()
        self._surely_over, self._surely_ahead = today - timedelta(days=2), today + timedelta(days=2)
        self._unpaid: list[tuple[CachedEvent, Room]] | None = None
        self.unreadable: list[PaymentCase] = []  # metadata that is not a booking we can read
        self.awaiting: list[PaymentCase] = []  # paid, booking still waiting for the payment to be processed
        self.cases: list[PaymentCase] = []  # every other readable payment
        self.changes: list[PaymentCase] = []  # the payments of changes that cost more, each with its booking
        # What paid_no_event and partial_multiday look at, in the order of `cases`: days expected on the calendar and
        # some of them missing, or a booking of ours (marked failed while whole on it). Most payments are neither.
        self.short: list[PaymentCase] = []
        changes, bookings, all_legs = data.changes, data.bookings, data.legs
        surely_over = self._surely_over
        none: list[CachedEvent] = []  # shared by every payment without events: read, never changed
        no_legs: list[BookingLeg] = []  # likewise, by every payment without a booking of ours
        # This loop runs once per payment: lookups are local and the common shapes (no change, one or two events)
        # take the short way.
        for p in data.pis.values():
            pi_id = p.id
            if changes and (change := changes.get(pi_id)) is not None:
                self.changes.append(self._change_case(p, change))
                continue
            evs = p.events or none
            problem = p.problem
            if problem == "not a booking" and not evs:
                continue
            booking = bookings.get(pi_id) if bookings else None
            legs = all_legs.get(booking.id, no_legs) if booking is not None and booking.id else no_legs
            succeeded = p.status == "succeeded"
            received = p.received if succeeded else 0
            kept = received - p.refunded
            keeps_money = succeeded and kept > 0
            expected: AbstractSet[date] = _NO_DAYS
            have: AbstractSet[date] = _NO_DAYS
            if keeps_money and not problem:
                expected = p.day_set if booking is None else _expected_days(p, booking, legs)
                if len(evs) == 1:
                    e = evs[0]
                    if (d := e.day) is not None and d in expected and not e.unparseable:
                        have = expected if len(expected) == 1 else {d}
                elif len(evs) == 2 and len(expected) == 2 and _both_on(evs, expected):
                    have = expected  # whole on the calendar: no set of its own
                elif evs:
                    have = {d for e in evs if (d := e.day) is not None and d in expected and not e.unparseable}
            cancelled: AbstractSet[date] = _NO_DAYS
            if booking is None and expected and p.refunded:
                cancelled = self._cancelled_by_policy(p, expected - have)
                expected = expected - cancelled
            case = PaymentCase(
                p,
                booking,
                evs,
                legs,
                kept,
                received > 0 and kept <= 0,
                keeps_money,
                expected,
                have,
                booking is None,
                None,
                cancelled,
                None,
                # `upcoming`'s answer for an old payment long over (most of them), known without a call
                [] if booking is None and (not expected or p.dates[-1] <= surely_over) else None,
            )
            if problem:
                self.unreadable.append(case)
            elif succeeded and booking is not None and booking.status == BookingStatus.AWAITING_PAYMENT:
                self.awaiting.append(case)
            else:
                self.cases.append(case)
                if expected and (booking is not None or len(have) < len(expected)):
                    self.short.append(case)

    def _cancelled_by_policy(self, p: CachedPayment, missing: AbstractSet[date]) -> AbstractSet[date]:
        """The days of an old payment that were cancelled: those with no event, when what Stripe refunded is what the
        policy gave back for exactly those days at the latest refund (the old system kept no record of which days a
        refund was for; a refund that fits nothing leaves every day expected)."""
        times = [r.created for r in self.data.refunds.get(p.id, []) if r.created is not None]
        if not missing or not times or p.start is None:
            return _NO_DAYS
        shares = dict(zip(p.dates, day_shares(p.received, len(p.dates)), strict=True))
        days = sorted(missing)
        quotes = policy_quotes(
            days, p.start, [shares[d] for d in days], self.seed_policy.refund_bands, max(times), self.tz
        )
        return frozenset(days) if within(p.refunded, sum(q.refund_cents for q in quotes), len(days)) else _NO_DAYS

    def shares(self, c: PaymentCase) -> dict[date, int]:
        """What each day of the booking cost: its legs' prices, or an old payment's charge shared over its days."""
        if not c.legacy:
            return {leg.day: leg.price_cents - leg.refunded_cents for leg in c.shown_legs()}
        return dict(zip(c.pi.dates, day_shares(c.pi.received, len(c.pi.dates)), strict=True))

    def closed_why(self, day: date) -> str | None:
        """Why the venue is shut that day (an observed holiday or a closure), worked out once per day per run."""
        if day not in self._closed:
            why = self._closed[day] = closure_reason(day, self.policy, self.closures)
            if why is None:
                self.open_days.add(day)
        return self._closed[day]

    def closed_on(self, days: list[date]) -> list[tuple[date, str]]:
        """Those of the days the venue is shut, each with why (most bookings fall on days already known open)."""
        if self.open_days.issuperset(days):
            return []
        return [(d, why) for d in days if (why := self.closed_why(d))]

    def booking_of(self, pi_id: str | None) -> Booking | None:
        """The booking a payment paid for: its own first payment, or that of one of its changes."""
        booking = self.data.bookings.get(pi_id or "")
        change = self.data.changes.get(pi_id or "")
        return booking or (self.data.by_id.get(change.booking_id) if change is not None else None)

    def _change_case(self, p: CachedPayment, change: Amendment) -> PaymentCase:
        booking = self.data.by_id.get(change.booking_id)
        legs = self.data.legs.get(change.booking_id, [])
        received = p.received if p.status == "succeeded" else 0
        kept = received - p.refunded
        return PaymentCase(
            p,
            booking,
            [],  # a booking's events carry its own payment, never a change's
            legs,
            kept,
            received > 0 and kept <= 0,
            p.status == "succeeded" and kept > 0,
            _NO_DAYS,
            _NO_DAYS,
            False,
            change,
        )

    def who(self, c: PaymentCase) -> str:
        """'Boardroom, Wed 4 Mar 10:00–12:00': built only for a finding, most payments are clean. A booking we hold
        is named by its days as they are now; a change's payment says which change it paid for."""
        legs = c.shown_legs() if c.booking is not None else []
        if c.booking is not None and legs:
            room = self.rooms.get(c.booking.room_slug)
            text = f"{room.name if room else c.booking.room_slug}, {_legs_label(legs, self.tz)}"
        else:
            p = c.pi
            text = f"{self.rooms[p.room or ''].name}, {self._when(p)}"
            if c.cancelled:
                text += f" ({_days(c.cancelled)} cancelled)"
        return f"{text} (change {c.change.number})" if c.change is not None else text

    def _when(self, p: CachedPayment) -> str:
        """'Wed 4 Mar, Thu 5 Mar 10:00–12:00' for an old payment's metadata: many payments share their days and
        times (every room, every slot), so each text is made once per run."""
        key = (tuple(p.dates), p.start, p.end)
        text = self._when_memo.get(key)
        if text is None:
            text = self._when_memo[key] = f"{_days(p.dates)} {p.start:%H:%M}–{p.end:%H:%M}"
        return text

    def upcoming(self, case: PaymentCase) -> list[date]:
        """A confirmed booking's active days still ahead, or those of an old payment that keeps its money (the days
        it still pays for); none for any other payment."""
        if case.ahead is None:
            if case.legacy and (not case.expected or case.pi.dates[-1] <= self._surely_over):
                case.ahead = []  # the common case, told without sorting its days: an old payment long over
                return case.ahead
            days = self.booked_days(case)
            if not days or (case.legacy and days[-1] <= self._surely_over):
                case.ahead = []
            elif case.legacy and days[0] >= self._surely_ahead:
                case.ahead = days
            else:
                case.ahead = [d for d in days if self.ends(case, d) > self.now]
        return case.ahead

    def booked_days(self, case: PaymentCase) -> list[date]:
        """Every day a live booking holds, past ones too: a confirmed (or completed) booking's active days, or the
        days an old payment still pays for."""
        if case.booked is None:
            case.booked = self._booked_days(case)
        return case.booked

    def _booked_days(self, case: PaymentCase) -> list[date]:
        if case.legacy:
            return sorted(case.expected)  # kept money, readable metadata, less the days cancelled under the policy
        booking = case.booking
        if booking is None or booking.status not in (*_CONFIRMED, BookingStatus.COMPLETED):
            return []
        return sorted(leg.day for leg in case.legs if leg.state in ACTIVE_LEG_STATES)

    def ends(self, case: PaymentCase, day: date) -> datetime:
        """When the booking's day ends (its leg's end, or the old payment's end time that day)."""
        if case.legacy:
            assert case.pi.end is not None  # a readable payment
            return day_start(day, case.pi.end, self.tz)
        return max(leg.ends_at for leg in case.legs if leg.day == day and leg.state in ACTIVE_LEG_STATES)

    def unpaid_events(self) -> list[tuple[CachedEvent, Room]]:
        """Live, readable, opaque events on a bookable room's calendar that no payment is behind, other than those
        of a block in force (the venue's own, holding the room on purpose)."""
        if self._unpaid is None:
            self._unpaid = []
            for ev in self.data.unpaid:
                if ev.unparseable or not ev.starts_at or not ev.ends_at or ev.transparent:
                    continue
                room = self.bookable.get(ev.calendar_id)
                if room is None:
                    continue
                if ev.block is not None and self.data.blocks.get(ev.block) == BlockState.ACTIVE:
                    continue
                self._unpaid.append((ev, room))
        return self._unpaid


def _both_on(evs: list[CachedEvent], days: AbstractSet[date]) -> bool:
    """Two readable events on two different days, both of them among these."""
    a, b = evs
    return a.day != b.day and a.day in days and b.day in days and not a.unparseable and not b.unparseable


def _local_times(leg: BookingLeg, tz: Any) -> tuple[time, time]:
    return leg.starts_at.astimezone(tz).time(), leg.ends_at.astimezone(tz).time()


def _legs_label(legs: list[BookingLeg], tz: Any) -> str:
    """'Wed 4 Mar, Thu 5 Mar 10:00–12:00' when the days share their times, else each day with its own."""
    ordered = sorted(legs, key=lambda leg: leg.day)
    times = {_local_times(leg, tz) for leg in ordered}
    if len(times) == 1:
        ((t0, t1),) = times
        return f"{_days([leg.day for leg in ordered])} {t0:%H:%M}–{t1:%H:%M}"
    shown = [f"{day_label(leg.day)} {t0:%H:%M}–{t1:%H:%M}" for leg in ordered[:4] for t0, t1 in [_local_times(leg, tz)]]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f" +{more} more" if more else "")


def _expected_days(p: CachedPayment, booking: Booking, legs: list[BookingLeg]) -> set[date]:
    if booking.status in (*_CONFIRMED, BookingStatus.COMPLETED):
        return {leg.day for leg in legs if leg.state in ACTIVE_LEG_STATES}
    if booking.status in _GONE:
        return set()
    return set(p.dates)  # a failed booking: the days it was paid for


# --------------------------------------------------------------------------------------------- the detectors


def paid_no_event(snap: Snapshot) -> Iterator[Detected]:
    """Money kept and no day on the calendar; or every day there, but the booking marked failed. A payment partly
    refunded (not as a cancellation under the policy: that leaves no day expected) says so: the days it still pays
    for need their events, or the rest needs refunding."""
    for c in snap.short:
        p, have = c.pi, c.have
        offers: tuple[str, ...] | None = None
        if c.booking is not None and c.booking.status == BookingStatus.FAILED and have == c.expected:
            # Marked failed, money kept, yet every day is on the calendar (a fix created the events and lost the
            # answer): the booking must be restored (create_events notes the events) or refunded.
            summary = (
                f"{snap.who(c)}: {money(c.kept, p.currency)} paid and kept, its days are on the calendar, but the "
                "booking is marked failed"
            )
        elif not have and p.refunded:
            summary = (
                f"{snap.who(c)}: partly refunded ({money(p.refunded, p.currency)} of {money(p.received, p.currency)}) "
                f"and no calendar event for any day: the days still paid for need their events, or the other "
                f"{money(c.kept, p.currency)} refunding"
            )
            if c.legacy and len(p.dates) > 1:
                # Which of its days the refund gave up is not recorded: creating every day's event could hold the room
                # for days the customer cancelled.
                offers = ("refund", "acknowledge")
        elif not have:
            summary = (
                f"{snap.who(c)}: {money(c.kept, p.currency)} paid, not refunded, and no calendar event for any day"
            )
        else:
            continue
        yield c.finding("paid_no_event", p.id, summary, amount_cents=c.kept, offers=offers)


def partial_multiday(snap: Snapshot) -> Iterator[Detected]:
    """Money kept, some of the days on the calendar and others missing."""
    for c in snap.short:
        if not c.have or len(c.have) == len(c.expected):
            continue  # no day on the calendar (that is paid_no_event), or every day
        missing = sorted(c.expected - c.have)
        yield c.finding(
            "partial_multiday",
            c.pi.id,
            f"{snap.who(c)}: {len(c.have)} of {len(c.expected)} days on the calendar; missing {_days(missing)}",
            amount_cents=c.kept,
            event_ids=[e.event_id for e in c.events],
            details={"missing": [d.isoformat() for d in missing]},
        )


def orphan_event(snap: Snapshot) -> Iterator[Detected]:
    """Events with no live paid booking behind them: left on a kept booking's cancelled days, still there after
    the payment failed or went back, or naming a payment Stripe does not know."""
    for c in snap.cases:
        p = c.pi
        if c.keeps_money:
            if c.booking is None:
                continue
            orphans = [e for e in c.events if e.day not in c.expected and not e.unparseable]
            if orphans:  # events left on days that were cancelled
                yield c.finding(
                    "orphan_event",
                    f"{p.id}:days",
                    f"{snap.who(c)}: {len(orphans)} event(s) left on "
                    f"cancelled day(s) {_days({d for e in orphans if (d := e.day)})}",
                    event_ids=[e.event_id for e in orphans],
                )
        elif c.events and (
            c.fully_refunded
            or p.status in ("canceled", "requires_payment_method")
            or (c.booking is not None and c.booking.status in (BookingStatus.FAILED, *_GONE))
        ):
            state = "refunded" if c.fully_refunded else (p.status or "unpaid")
            yield c.finding(
                "orphan_event",
                p.id,
                f"{snap.who(c)}: payment {state} but {len(c.events)} event(s) still on the calendar (clean-up failed)",
                event_ids=[e.event_id for e in c.events],
            )
    for ev, room in snap.unpaid_events():
        if ev.block and not (ev.pi or ev.booking_ref):
            assert ev.starts_at and ev.ends_at
            # A block's event outlived its block (released, its events' deletion failed) or names one we never had.
            gone = "which was released" if ev.block in snap.data.blocks else "which Room Desk does not know"
            yield Detected(
                "orphan_event",
                f"{ev.calendar_id}/{ev.event_id}",
                f"{room.name} {span_label(ev.starts_at, ev.ends_at, snap.tz)}: “{ev.summary or '(no title)'}” is the "
                f"event of room block #{ev.block}, {gone}",
                room=room.slug,
                event_ids=[ev.event_id],
                dates=[ev.starts_at.astimezone(snap.tz).date().isoformat()],
                details={"block": ev.block},
            )
        elif ev.pi or ev.booking_ref:
            assert ev.starts_at and ev.ends_at
            yield Detected(
                "orphan_event",
                f"{ev.calendar_id}/{ev.event_id}",
                f"{room.name} {span_label(ev.starts_at, ev.ends_at, snap.tz)}: event of payment "
                f"{ev.pi or ev.booking_ref}, which Stripe does not know",
                room=room.slug,
                payment_intent=ev.pi,
                booking_ref=ev.booking_ref,
                event_ids=[ev.event_id],
                dates=[ev.starts_at.astimezone(snap.tz).date().isoformat()],
            )


def refund_no_event(snap: Snapshot) -> Iterator[Detected]:
    """Refunded in full with no event (the safety net worked) and the customer never told."""
    for c in snap.cases:
        if not c.fully_refunded or c.events:
            continue
        booking = c.booking
        told = booking is not None and any((booking.id, k) in snap.data.told for k in REFUND_TOLD_KINDS)
        if not told:
            yield c.finding(
                "refund_no_event",
                c.pi.id,
                f"{snap.who(c)}: refunded in full, no event — the safety net worked; tell the customer",
            )


# By start, then by id: two events starting together are named in the same order whatever order the database
# returned them in.
_starts = attrgetter("starts_at", "event_id")


def double_booking(snap: Snapshot) -> Iterator[Detected]:
    """Two events of different payments that overlap, or come closer than the buffer, in one bookable room."""
    now, tz = snap.now, snap.tz
    buffer = timedelta(minutes=snap.policy.buffer_minutes)
    live: list[CachedEvent] = []
    horizon: datetime | None = None  # the earliest start of an event not over yet
    for ev in snap.data.events:
        if not ev.unparseable and ev.starts_at and ev.ends_at and not ev.transparent:
            live.append(ev)
            if ev.ends_at > now and (horizon is None or ev.starts_at < horizon):
                horizon = ev.starts_at
    if horizon is None:
        return  # every event is over: a pair is reported only while its later-starting event is not
    # Nor can an event be in a reported pair that ends, with the buffer, before the first event not over starts: the
    # room's history (most of the calendar) need not be put in order.
    edge = min(horizon - buffer, now)
    live_by_cal: dict[str, list[CachedEvent]] = defaultdict(list)
    for ev in live:
        assert ev.ends_at
        if ev.ends_at > edge:
            live_by_cal[ev.calendar_id].append(ev)
    for cal, evs in live_by_cal.items():
        cal_room = snap.bookable.get(cal)
        if cal_room is None:
            continue
        evs.sort(key=_starts)
        n = len(evs)
        for i, a in enumerate(evs):
            assert a.starts_at and a.ends_at
            clear = a.ends_at + buffer  # an event starting then or later is far enough, and so is every later one
            j = i + 1  # by index: a slice copy per event made this loop quadratic
            while j < n:
                b = evs[j]
                j += 1
                assert b.starts_at and b.ends_at
                if b.starts_at >= clear:
                    break
                if a.new_pi and a.new_pi == b.new_pi:
                    continue  # one payment's own events (a duplicate is an event_mismatch matter)
                if b.ends_at <= now:
                    continue
                s = a.starts_at.astimezone(tz)
                gap = "overlap" if b.starts_at < a.ends_at else f"are closer than {snap.policy.buffer_minutes} min"
                pis_involved = [x for x in (a.new_pi, b.new_pi) if x]
                yield Detected(
                    "double_booking",
                    "|".join(sorted([a.event_id, b.event_id])),
                    f"{cal_room.name} {day_label(s.date())}: “{a.summary}” and “{b.summary}” {gap}",
                    room=cal_room.slug,
                    payment_intent=pis_involved[0] if pis_involved else None,
                    event_ids=[a.event_id, b.event_id],
                    dates=[s.date().isoformat()],
                    details={"payment_intents": pis_involved},
                )


def manual_event(snap: Snapshot) -> Iterator[Detected]:
    """An upcoming event someone added by hand on a bookable room's calendar, with no payment behind it."""
    for ev, room in snap.unpaid_events():
        assert ev.starts_at and ev.ends_at
        if ev.pi or ev.booking_ref or ev.block or ev.ends_at <= snap.now:
            continue  # a payment's or a block's: an orphan_event matter
        yield Detected(
            "manual_event",
            f"{ev.calendar_id}/{ev.event_id}",
            f"{room.name} {span_label(ev.starts_at, ev.ends_at, snap.tz)}: “{ev.summary or '(no title)'}” added by "
            "hand, no payment behind it",
            room=room.slug,
            event_ids=[ev.event_id],
            dates=[ev.starts_at.astimezone(snap.tz).date().isoformat()],
        )


def event_mismatch(snap: Snapshot) -> Iterator[Detected]:
    """Events of a kept payment at a different room, date or time than the booking's days (for a booking we hold:
    its legs, as changes left them) or, for a payment the old system took, than its metadata says."""
    tz = snap.tz
    calendar_of = {slug: room.calendar_id for slug, room in snap.rooms.items()}
    for c in snap.cases:
        if not c.keeps_money or not c.events:
            continue
        p = c.pi
        if c.booking is not None and c.legs:
            # Every day the booking has had at its latest shape: an event left on a cancelled day is an orphan_event
            # matter, not a mismatch.
            slots = {(leg.calendar_id, leg.day, *_local_times(leg, tz)) for leg in c.legs}
            wrong = [e for e in c.events if e.day is not None and (e.calendar_id, e.day, e.t0, e.t1) not in slots]
        else:
            cal, start, end, days = calendar_of[p.room or ""], p.start, p.end, p.day_set
            for e in c.events:
                if e.day is not None and (e.calendar_id != cal or e.t0 != start or e.t1 != end or e.day not in days):
                    break
            else:
                continue  # every event where the metadata says (most payments): nothing to list
            wrong = [
                e
                for e in c.events
                if e.day is not None and (e.calendar_id != cal or e.t0 != start or e.t1 != end or e.day not in days)
            ]
        if wrong:
            yield c.finding(
                "event_mismatch",
                p.id,
                f"{snap.who(c)}: {len(wrong)} event(s) at a different room, date or time than the booking",
                event_ids=[e.event_id for e in wrong],
            )


def amount_mismatch(snap: Snapshot) -> Iterator[Detected]:
    """Charged more than the price while Stripe still keeps it, or less (until someone looks, unless refunded). A
    change's payment is measured against the difference the change cost."""
    memo = snap.price_memo
    for c in (*snap.cases, *snap.changes):
        p = c.pi
        if p.status != "succeeded":
            continue
        expected: int | None
        if c.legacy and (priced := memo.get((p.room, len(p.dates), p.start, p.end))) is not None:
            expected = priced[1] if p.received == priced[1] else priced[0]  # _expected_amount, already worked out
        else:
            expected = c.change.net_cents if c.change is not None else _expected_amount(snap, p, c.booking)
        if expected is None:
            continue
        # Overcharged: flagged while Stripe still keeps more than the price (a refund of the difference, or a
        # cancellation, settles it). Undercharged: flagged until someone looks, unless the money went back.
        over = p.received > expected and c.kept > expected
        under = p.received < expected and p.refunded == 0
        if over or under:
            yield c.finding(
                "amount_mismatch",
                p.id,
                f"{snap.who(c)}: charged {money(p.received, p.currency)}, the "
                f"{'change cost' if c.change is not None else 'price was'} {money(expected, p.currency)}",
                amount_cents=abs(p.received - expected),
                details={"expected_cents": expected, "charged_cents": p.received},
            )


def refund_policy_mismatch(snap: Snapshot) -> Iterator[Detected]:
    """A refund that differs from the cancellation policy's quote at that moment, unless an override approved it.
    Our own refunds carry their quote (a change's refund: the difference the change gave back); one made in the
    Stripe dashboard is compared with cancelling every active day, that quote spread over the booking's payments
    in the order our refunds take them (its own first, then its changes')."""
    refunded = snap.data.refunds
    if not refunded:
        return  # nothing refunded: nothing to judge
    for c in (*snap.cases, *snap.changes):
        p = c.pi
        if p.id not in refunded or p.status != "succeeded":
            continue  # most payments were never refunded
        if c.legacy:
            yield from _legacy_refunds_off_policy(snap, c)
            continue
        for refund in snap.data.refunds.get(p.id, []):
            record = snap.data.records.get(refund.id)
            override = (record.booking_id, refund.amount, frozenset(record.leg_ids)) if record is not None else None
            if override in snap.data.approved:
                continue
            quote = _policy_quote(record, c.booking, c.legs, refund.created, snap.policy)
            if record is None and quote is not None and c.booking is not None:
                quote = _share_of(snap, c.booking, p.id, quote)
            if quote is not None and quote != refund.amount:
                yield c.finding(
                    "refund_policy_mismatch",
                    refund.id,
                    f"{snap.who(c)}: refunded {money(refund.amount, p.currency)}, "
                    f"the policy said {money(quote, p.currency)}",
                    amount_cents=abs(refund.amount - quote),
                    details={"refund_id": refund.id, "quote_cents": quote, "refunded_cents": refund.amount},
                )


def _legacy_refunds_off_policy(snap: Snapshot, c: PaymentCase) -> Iterator[Detected]:
    """An old payment's partial refunds judged by the policy bands, from each refund's time to the start of the booked
    days: it must be what cancelling one or more of its days gave back then. A refund in full is the old system's
    safety net or a venue's-fault refund, not a cancellation priced by the policy."""
    p = c.pi
    if p.start is None:
        return
    shares = list(snap.shares(c).values())
    for refund in snap.data.refunds.get(p.id, []):
        if refund.created is None or refund.amount <= 0 or refund.amount >= p.received:
            continue
        quotes = policy_quotes(p.dates, p.start, shares, snap.seed_policy.refund_bands, refund.created, snap.tz)
        cents = [q.refund_cents for q in quotes]
        if matches_some_days(refund.amount, cents):
            continue
        quote = sum(cents)
        if len(quotes) == 1:
            q = quotes[0]
            when = f"{q.hours_before:.0f} h before the day" if q.hours_before >= 0 else "after the day began"
            said = f"the policy said {money(quote, p.currency)} ({q.percent} %: refunded {when})"
        else:
            days = "both days" if len(quotes) == 2 else f"all {len(quotes)} days"
            said = (
                f"the policy said {money(quote, p.currency)} for {days} then, and no choice of its days gives "
                f"{money(refund.amount, p.currency)}"
            )
        yield c.finding(
            "refund_policy_mismatch",
            refund.id,
            f"{snap.who(c)}: the old system refunded {money(refund.amount, p.currency)} of "
            f"{money(p.received, p.currency)}; {said}",
            amount_cents=abs(refund.amount - quote),
            details={"refund_id": refund.id, "quote_cents": quote, "refunded_cents": refund.amount, "old_system": True},
        )


def stale_payment(snap: Snapshot) -> Iterator[Detected]:
    """Paid for longer than the webhook should take, and the booking still waits for it (the webhook was missed)."""
    stale_after = timedelta(minutes=snap.svc.settings.stale_payment_minutes)
    for c in snap.awaiting:
        p = c.pi
        paid_at = p.charge_created or p.created
        if paid_at is None or paid_at <= snap.now - stale_after:
            yield c.finding(
                "stale_payment",
                p.id,
                f"{snap.who(c)}: paid {_ago(paid_at, snap.now)} but never processed "
                "(webhook missed) — no event, no confirmation",
                amount_cents=c.kept,
                event_ids=[e.event_id for e in c.events],
            )
    for c in snap.changes:
        p, change = c.pi, c.change
        if (
            change is None
            or p.status != "succeeded"
            or change.paid_at is not None
            or change.state not in _UNPAID_CHANGE
        ):
            continue
        paid_at = p.charge_created or p.created
        if paid_at is None or paid_at <= snap.now - stale_after:
            yield c.finding(
                "stale_payment",
                p.id,
                f"{snap.who(c)}: the change's {money(p.received, p.currency)} was paid {_ago(paid_at, snap.now)} "
                f"but never processed (webhook missed) — the booking is still as it was",
                amount_cents=c.kept,
            )


def dispute_open(snap: Snapshot) -> Iterator[Detected]:
    """A dispute that still needs evidence (or is under review)."""
    for dispute in snap.data.disputes:
        if dispute.status not in _OPEN_DISPUTE:
            continue
        dp = snap.data.pis.get(dispute.payment_intent or "")
        b = snap.booking_of(dispute.payment_intent)
        due_by, amount = dispute.due_by, dispute.amount or 0
        due = f"evidence due {day_label(due_by.astimezone(snap.tz).date())}" if due_by else "no due date"
        yield Detected(
            "dispute_open",
            dispute.id,
            f"Dispute on {money(amount, dp.currency if dp else 'CAD')}: {dispute_reason_words(dispute.reason)}; {due}",
            payment_intent=dispute.payment_intent,
            booking_id=b.id if b else None,
            booking_ref=b.reference if b else (dp.booking_ref if dp else None),
            room=dp.room if dp else None,
            dates=[d.isoformat() for d in dp.dates] if dp else [],
            amount_cents=amount,
            details={"due_by": due_by.isoformat() if due_by else None, "status": dispute.status},
        )


def missing_confirmation(snap: Snapshot) -> Iterator[Detected]:
    """A confirmed booking with days ahead whose customer never got the confirmation email. An old payment whose days
    are all on the calendar, some still ahead, is seed incident #3: the old system sent no confirmation (only the
    on-screen page and Stripe's receipt), and one sent by hand left no record — so the finding says that it is not
    known, not that it is missing. Its other problems (no event, days missing) have fixes that confirm."""
    for c in snap.cases:
        if c.booking is not None and c.booking.confirmation_sent_at is None and snap.upcoming(c):
            yield c.finding(
                "missing_confirmation",
                c.pi.id,
                f"{snap.who(c)}: confirmed, but the customer has no confirmation email",
            )
        elif c.legacy and (c.ahead if c.ahead is not None else snap.upcoming(c)) and _whole_on_calendar(snap, c):
            yield c.finding(
                "missing_confirmation",
                c.pi.id,
                f"{snap.who(c)}: booked through the old system, which sent no confirmation email; whether someone "
                "sent one by hand is not recorded",
                # Sending one needs an address: without it a person decides what to do.
                offers=None if c.pi.email else ("acknowledge",),
            )


def _whole_on_calendar(snap: Snapshot, c: PaymentCase) -> bool:
    """Every day an old payment still pays for has its event, each in its room at its times (seed incident #3's "the
    calendar event exists"); one with events missing or wrong has a finding of its own, whose fix confirms."""
    p = c.pi
    cal = snap.rooms[p.room or ""].calendar_id
    return (
        bool(c.have)
        and c.have == c.expected
        and all(e.calendar_id == cal and (e.t0, e.t1) == (p.start, p.end) for e in c.events if e.day in c.expected)
    )


def missing_extras(snap: Snapshot) -> Iterator[Detected]:
    """A confirmed booking with days ahead in a room with an extras form, the form not filled in: the booking's own
    extras, or those an old payment's metadata carries."""
    no_form = {slug for slug, room in snap.rooms.items() if not room.extras}
    for c in snap.cases:
        booking = c.booking
        if booking is None and not c.legacy:
            continue
        slug = booking.room_slug if booking is not None else c.pi.room or ""
        if slug in no_form:
            continue  # no form to fill in (most rooms): whether its days are ahead does not matter
        if not snap.upcoming(c):
            continue
        room = snap.rooms[slug]
        if not room.extras:
            continue
        if booking is not None:
            extras, old = booking.extras, ""
        else:
            extras, old = metadata_extras(snap.data.legacy_meta.get(c.pi.id, {}), room), " paid through the old system"
        if room.validate_extras(extras)[1]:
            yield c.finding(
                "missing_extras",
                c.pi.id,
                f"{snap.who(c)}: {room.name} booking{old} without its extras "
                f"({', '.join(missing_labels(room, extras))})",
            )


def holiday_booking(snap: Snapshot) -> Iterator[Detected]:
    """A live booking (or an old payment that keeps its money) on a day the venue is closed — a statutory holiday or
    a closure — days already past included: the customer may have paid for a day the venue was shut."""
    open_days = snap.open_days
    said: dict[tuple[tuple[date, str], ...], str] = {}  # the closed days in words: many bookings share them
    for c in snap.cases:
        if c.legacy and open_days.issuperset(c.expected):
            continue  # an old payment's booked days are its expected ones, known open: no need to sort them
        closed = snap.closed_on(snap.booked_days(c))
        if not closed:
            continue
        shares = snap.shares(c)
        past = [d for d, _ in closed if snap.ends(c, d) <= snap.now]
        key = tuple(closed)
        if key not in said:
            said[key] = ", ".join(f"{day_label(d)} ({why})" for d, why in closed)
        summary = f"{snap.who(c)}: booked on {said[key]}"
        if past:
            summary += (
                f" — {'already past' if len(past) == len(closed) else f'{_days(past)} already past'}: the customer "
                "may have paid for a day the venue was shut"
            )
        yield c.finding(
            "holiday_booking",
            c.pi.id,
            summary,
            amount_cents=_at_risk(c, sum(shares.get(d, 0) for d, _ in closed)),
            details={"closed": [d.isoformat() for d, _ in closed], "past": [d.isoformat() for d in past]},
        )


def _at_risk(c: PaymentCase, cents: int) -> int:
    """What a finding puts at risk, never more than an old payment still keeps (a booking of ours may hold more
    than its first payment: a change that cost more was paid separately)."""
    return min(cents, max(c.kept, 0)) if c.legacy else cents


def unparseable(snap: Snapshot) -> Iterator[Detected]:
    """Payment metadata that is not a booking we can read, and events whose times cannot be read."""
    for c in snap.unreadable:
        yield c.finding(
            "unparseable",
            c.pi.id,
            f"Payment {c.pi.id}: {c.pi.problem}",
            dates=[],
            event_ids=[e.event_id for e in c.events],
            details={"metadata_problem": c.pi.problem},
        )
    for ev in snap.data.events:
        if not ev.unparseable:
            continue
        room = snap.bookable.get(ev.calendar_id)
        yield Detected(
            "unparseable",
            f"{ev.calendar_id}/{ev.event_id}",
            f"Event “{ev.summary or '(no title)'}” on {room.name if room else ev.calendar_id}: {ev.unparseable}",
            room=room.slug if room else None,
            event_ids=[ev.event_id],
        )


def invoice_overdue(snap: Snapshot) -> Iterator[Detected]:
    """A booking held on invoice whose invoice is still unpaid past its due date and the grace period after it (the
    billing contact was reminded at the due date): staff choose — extend the hold, or release the days."""
    grace = timedelta(hours=snap.svc.settings.invoice_overdue_grace_hours)
    rows = [(inv, b) for inv, b in snap.data.open_invoices if inv.due_at < snap.now - grace]
    legs = {b.id: sorted(leg.day for leg in snap.data.legs.get(b.id or 0, [])) for _, b in rows}
    for inv, b in rows:
        days = legs.get(b.id, [])
        due = day_label(inv.due_at.astimezone(snap.tz).date())
        late = (snap.now - inv.due_at).days
        yield Detected(
            "invoice_overdue",
            inv.invoice_id or f"booking-{b.id}",
            f"{inv.organisation}: invoice {inv.number or b.reference} of {money(b.amount_cents, b.currency)} was due "
            f"{due} ({late} days ago) and is unpaid; {days_label(days)} held for it",
            booking_id=b.id,
            booking_ref=b.reference,
            room=b.room_slug,
            dates=[d.isoformat() for d in days],
            amount_cents=b.amount_cents,
            details={
                "invoice_id": inv.invoice_id,
                "due_at": inv.due_at.isoformat(),
                "billing_email": inv.billing_email,
                "reminded": inv.reminded_at is not None,
            },
        )


def deposit_hold_failed(snap: Snapshot) -> Iterator[Detected]:
    """A damage deposit whose card hold failed (the card declined, or no card saved by the time the hold was due)
    while its booking stands: staff ask the customer for another card, or place the hold again on Deposits. Resolved
    once a hold stands (or the deposit is closed)."""
    for dep, b in snap.data.failed_deposits:
        room = snap.rooms.get(b.room_slug)
        days = sorted(leg.day for leg in snap.data.legs.get(b.id or 0, []) if leg.state in ACTIVE_LEG_STATES)
        yield Detected(
            "deposit_hold_failed",
            b.reference,
            f"Damage deposit of {money(dep.amount_cents, dep.currency)} for {room.name if room else b.room_slug}, "
            f"{_days(days)} not held: {dep.last_error or 'the hold failed'}",
            booking_id=b.id,
            booking_ref=b.reference,
            room=b.room_slug,
            dates=[d.isoformat() for d in days],
            amount_cents=dep.amount_cents,
            details={"error": dep.last_error, "failed_at": dep.failed_at.isoformat() if dep.failed_at else None},
        )


Detector = Callable[[Snapshot], Iterator[Detected]]

# Finding code → its detector, in the order of findings.CODES (a run reports them in this order).
DETECTORS: dict[str, Detector] = {
    "paid_no_event": paid_no_event,
    "partial_multiday": partial_multiday,
    "orphan_event": orphan_event,
    "refund_no_event": refund_no_event,
    "double_booking": double_booking,
    "manual_event": manual_event,
    "event_mismatch": event_mismatch,
    "amount_mismatch": amount_mismatch,
    "refund_policy_mismatch": refund_policy_mismatch,
    "stale_payment": stale_payment,
    "dispute_open": dispute_open,
    "missing_confirmation": missing_confirmation,
    "missing_extras": missing_extras,
    "holiday_booking": holiday_booking,
    "unparseable": unparseable,
    "invoice_overdue": invoice_overdue,
    "deposit_hold_failed": deposit_hold_failed,
}


# --------------------------------------------------------------------------------------------- helpers


def _expected_amount(snap: Snapshot, p: CachedPayment, booking: Booking | None) -> int | None:
    if booking is not None:
        total = booking.pricing_snapshot.get("total_cents")
        return int(total) if isinstance(total, int) else booking.amount_cents
    if p.start is None or p.end is None:
        return None
    key = (p.room, len(p.dates), p.start, p.end)
    memo = snap.price_memo
    if key not in memo:
        # A payment with no booking of ours: the old system's, or (in audit mode, or after a lost database) one Room
        # Desk took. The price list Room Desk started from (the rooms file, and the discount bands of the environment)
        # is the best record of the prices used — not a price an admin set on Settings since, which would flag every
        # old payment the day prices rise. The old system charged no tax and Room Desk adds it: a payment of either
        # amount is priced right.
        room = snap.svc.seed_room(p.room or "")
        minutes = (p.end.hour * 60 + p.end.minute) - (p.start.hour * 60 + p.start.minute)
        priced = [
            price(
                room_slug=room.slug,
                hourly_cents=room.hourly_price_cents,
                discount_eligible=room.discount_eligible,
                dates=p.dates,
                minutes_per_day=minutes,
                policy=snap.svc.settings.policy(),
                tax=tax,
            ).total_cents
            for tax in (None, snap.svc.tax)
        ]
        memo[key] = (priced[0], priced[1])
    untaxed, taxed = memo[key]
    return taxed if p.received == taxed else untaxed


def _policy_quote(
    record: RefundRecord | None,
    booking: Booking | None,
    legs: list[BookingLeg],
    created: datetime | None,
    policy: Policy,
) -> int | None:
    if record is not None:
        return record.policy_quote_cents
    if booking is None or created is None:
        return None
    # Refunded in the Stripe dashboard: compare with cancelling every day that was active, at that moment.
    bands = bands_from_snapshot(booking.policy_snapshot) if booking.policy_snapshot else policy.refund_bands
    return sum(
        refund_for_leg(
            leg_start=leg.starts_at, paid_cents=leg.price_cents, already_refunded_cents=0, bands=bands, now=created
        ).refund_cents
        for leg in legs
    )


def _share_of(snap: Snapshot, booking: Booking, pi_id: str, quote: int) -> int:
    """The part of a whole-booking refund quote that falls on one of its payments, spread like our own refunds: the
    booking's own payment first, then its changes' (oldest first), each up to what it took."""
    changes = sorted(
        (a for a in snap.data.changes.values() if a.booking_id == booking.id and a.paid_at is not None),
        key=lambda a: a.number,
    )
    if not changes:
        return quote
    left = quote
    for pi, took in [
        (booking.payment_intent_id, booking.amount_cents),
        *((a.payment_intent_id, a.net_cents) for a in changes),
    ]:
        share = min(left, max(took, 0))
        if pi == pi_id:
            return share
        left -= share
    return 0


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "some time ago"
    minutes = int((now - at).total_seconds() // 60)
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
