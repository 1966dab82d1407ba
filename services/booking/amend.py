"""Changing a paid booking (issue 12, runbook 003 §3): move a day, change the times (all days or one), move to another
room, add a day, drop a day — planned before anything happens.

`plan_change` is the quote staff and customers see first: the new shape checked against the rules and the room's
availability (the booking's own claims and events count as free, so it never blocks its own extension), priced at the
booking's own rate with the discount band recomputed, and settled day by day (services.rules.amendments): what is
charged or refunded, and why. It reads only; applying a plan comes with its payment flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from models.tables import BookingLeg, BookingStatus, LegState
from services.booking.claims import busy_span, calendar_busy, claims_busy
from services.booking.store import booking_legs, load_booking, resolve_now, room_limits
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import ConfigError, InvalidState, ValidationError
from services.rules.amendments import DayShape, PaidDay, Settlement, resulting_days, settle, taxed_days
from services.rules.availability import LegWindow, SlotRequest, check_conflicts, check_request
from services.rules.fmt import day_label, hhmm
from services.rules.refunds import bands_from_snapshot
from services.rules.tax import policy_from

# A booking can be changed while it is paid and not over; days that have started or finished stay as they are.
CHANGEABLE_STATUSES = frozenset({BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED})


@dataclass(frozen=True)
class Change:
    """What the person asks for, in the words of the dashboard's Change booking dialog. Everything is optional;
    `moves` and `drop` name days by their leg id, `times` applies to `time_legs` (all active days when None)."""

    room: str | None = None
    moves: Mapping[int, date] = field(default_factory=dict)
    times: tuple[time, time] | None = None
    time_legs: frozenset[int] | None = None
    add: tuple[date, ...] = ()
    drop: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ChangePlan:
    booking_id: int
    reference: str
    room_from: str
    room_to: str
    settlement: Settlement
    reasons: list[str]  # empty: the change can be made
    target: tuple[tuple[int | None, DayShape | None], ...]

    @property
    def changes_anything(self) -> bool:
        return self.settlement.changes_anything or self.room_from != self.room_to

    @property
    def possible(self) -> bool:
        return not self.reasons and self.changes_anything


def plan_change(svc: Services, booking_id: int, change: Change, *, now: datetime | None = None) -> ChangePlan:
    """The new shape, every reason it cannot be made, and the money that settles it. Raises ValidationError when
    the request itself makes no sense (a day named twice, a day not in the booking, nothing left)."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        legs = booking_legs(s, booking_id)
    if booking.status not in CHANGEABLE_STATUSES:
        raise InvalidState(
            f"Booking {booking.reference} is {booking.status.replace('_', ' ').lower()}: only a paid "
            "booking that is not over can be changed"
        )
    room_from = svc.catalogue.room(booking.room_slug)
    room_to = _room(svc, change.room or booking.room_slug)
    tz = svc.settings.tz
    active = [leg for leg in legs if leg.state == LegState.CONFIRMED]
    current = [_paid_day(leg, tz) for leg in active]
    target = _target(current, change, svc.policy.open_time, svc.policy.close_time, moved_room=room_to != room_from)

    shapes = [new for _, new in resulting_days(current, target) if new is not None]
    if not shapes:
        raise ValidationError("A change must leave at least one day: cancel the booking instead")
    if len({sh.day for sh in shapes}) != len(shapes):
        raise ValidationError("Two days of the booking would fall on the same date")
    taken = _dates_taken(legs, target)
    named = {leg_id for leg_id, _ in target}
    started = [d for d in current if d.starts_at <= now and d.leg_id in named]
    if started:
        raise InvalidState(f"{day_label(started[0].shape.day)} has already started: it can no longer be changed")

    # The booking's own rate, discount bands and eligibility (a new room's rate and eligibility when it moves room);
    # days that have begun or are over count toward the band but are not re-priced.
    snapshot = booking.pricing_snapshot
    same_rate = room_to == room_from and int(snapshot.get("hourly_cents", 0)) > 0
    hourly = int(snapshot["hourly_cents"]) if same_rate else room_to.hourly_price_cents
    # A booking made before snapshots carried its eligibility and bands was sold under the rooms file and the
    # environment (the seed), not under what Settings may say today.
    seed_room = svc.seed_room(room_to.slug)
    eligible = (
        bool(snapshot.get("discount_eligible", seed_room.discount_eligible)) if same_rate else room_to.discount_eligible
    )
    sold_bands = snapshot.get("discount_bands")
    bands = (
        tuple((int(d), int(p)) for d, p in sold_bands)
        if isinstance(sold_bands, list)
        else tuple(svc.settings.policy().discount_bands)
    )
    used = sum(1 for leg in legs if leg.state in (LegState.IN_PROGRESS, LegState.COMPLETED))
    # Taxed at the rates the booking was sold at, as its refunds are.
    taxed = taxed_days(
        shapes,
        hourly_cents=hourly,
        discount_eligible=eligible,
        policy=svc.policy,
        bands=bands,
        other_days=used,
        tax=policy_from(booking.tax_snapshot),
    )
    settlement = settle(
        current,
        target,
        {day: gross for day, (gross, _tax) in taxed.items()},
        bands=bands_from_snapshot(booking.policy_snapshot),
        now=now,
        taxes={day: tax for day, (_gross, tax) in taxed.items()},
    )
    changed = [new for _, new in target if new is not None and new not in {d.shape for d in current}]
    if room_to != room_from:
        changed = shapes  # every day takes a new room
    reasons = taken + _check(svc, booking_id, booking.reference, booking.party_size, room_to, changed, len(shapes), now)
    return ChangePlan(booking_id, booking.reference, room_from.slug, room_to.slug, settlement, reasons, tuple(target))


def describe(plan: ChangePlan, catalogue_name: Mapping[str, str]) -> list[str]:
    """One line per day that changes, as staff read them out: 'Wed 4 Mar 09:00–12:00 → Thu 5 Mar 09:00–13:00'."""
    lines = []
    for d in plan.settlement.days:
        if d.kind == "kept":
            continue
        old = _label(d.old) if d.old else "—"
        new = _label(d.new) if d.new else "dropped"
        lines.append(f"{old} → {new}" if d.old else f"added: {new}")
    if plan.room_from != plan.room_to:
        lines.insert(
            0,
            f"{catalogue_name.get(plan.room_from, plan.room_from)} → {catalogue_name.get(plan.room_to, plan.room_to)}",
        )
    return lines


def _label(shape: DayShape) -> str:
    return f"{day_label(shape.day)} {hhmm(shape.start)}–{hhmm(shape.end)}"


def _dates_taken(legs: Sequence[BookingLeg], target: Sequence[tuple[int | None, DayShape | None]]) -> list[str]:
    """A day can move only to a date no other day of the booking has (a booking holds each date once): one that is
    still booked must move first, in its own change; one cancelled earlier cannot be booked into it again."""
    reasons = []
    for leg_id, new in target:
        if new is None:
            continue
        for leg in legs:
            if leg.id == leg_id or leg.day != new.day:
                continue
            if leg.state in (LegState.CONFIRMED, LegState.IN_PROGRESS, LegState.COMPLETED):
                if leg.id not in {i for i, _ in target}:
                    continue  # a kept day on that date: the 'same date' check says so
                reasons.append(f"{day_label(new.day)} is still another day of this booking: move one day at a time")
            else:
                reasons.append(
                    f"{day_label(new.day)} was cancelled from this booking earlier: book it as a new booking"
                )
    return list(dict.fromkeys(reasons))


def _room(svc: Services, slug: str) -> Room:
    try:
        room = svc.catalogue.room(slug)
    except ConfigError:
        raise ValidationError(f"Unknown room {slug!r}") from None
    return room


def _paid_day(leg: BookingLeg, tz: ZoneInfo) -> PaidDay:
    assert leg.id is not None
    start, end = leg.starts_at.astimezone(tz), leg.ends_at.astimezone(tz)
    return PaidDay(
        leg.id, DayShape(leg.day, start.time(), end.time()), leg.starts_at, leg.price_cents, leg.refunded_cents
    )


def _target(
    current: Sequence[PaidDay], change: Change, open_at: time, close_at: time, *, moved_room: bool
) -> list[tuple[int | None, DayShape | None]]:
    by_leg = {d.leg_id: d for d in current}
    named = set(change.moves) | set(change.drop) | set(change.time_legs or ())
    unknown = sorted(named - set(by_leg))
    if unknown:
        raise ValidationError(f"Not active days of this booking: {', '.join(map(str, unknown))}")
    clash = set(change.moves) & set(change.drop)
    if clash:
        raise ValidationError("A day cannot be moved and dropped at once")
    target: list[tuple[int | None, DayShape | None]] = []
    for d in current:
        if d.leg_id in change.drop:
            target.append((d.leg_id, None))
            continue
        shape = d.shape
        if d.leg_id in change.moves:
            shape = DayShape(change.moves[d.leg_id], shape.start, shape.end)
        if change.times and (change.time_legs is None or d.leg_id in change.time_legs):
            shape = DayShape(shape.day, *change.times)
        if shape != d.shape or moved_room:
            target.append((d.leg_id, shape))
    # An added day takes the new times if the change sets them, else the booking's first day's.
    if change.times:
        start, end = change.times
    elif current:
        start, end = current[0].shape.start, current[0].shape.end
    else:
        start, end = open_at, close_at
    target.extend((None, DayShape(day, start, end)) for day in change.add)
    return target


def _check(
    svc: Services,
    booking_id: int,
    reference: str,
    party_size: int | None,
    room: Room,
    changed: Sequence[DayShape],
    total_days: int,
    now: datetime,
) -> list[str]:
    """The rules for the days that change (a kept day is not re-judged: it may already be inside the notice), then
    the room's calendar and claims with this booking's own left out."""
    policy = svc.policy
    reasons: list[str] = []
    if total_days > policy.max_days_per_booking:
        reasons.append(f"At most {policy.max_days_per_booking} days in one booking ({total_days} after the change)")
    by_times: dict[tuple[time, time], list[date]] = {}
    for shape in changed:
        by_times.setdefault((shape.start, shape.end), []).append(shape.day)
    windows: list[LegWindow] = []
    for (start, end), days in sorted(by_times.items()):
        request = SlotRequest(tuple(sorted(days)), start, end, party_size)
        reasons.extend(
            r
            for r in check_request(request, room_limits(room), policy, now, svc.catalogue.closure_map)
            if not r.startswith("At most")
        )
        for day in days:
            windows.append(
                LegWindow(
                    day,
                    datetime.combine(day, start, tzinfo=policy.tz).astimezone(UTC),
                    datetime.combine(day, end, tzinfo=policy.tz).astimezone(UTC),
                )
            )
    if reasons or not windows:
        return list(dict.fromkeys(reasons))
    first, last = busy_span(windows, policy.buffer_minutes)
    busy = calendar_busy(svc, room, first, last, ignore_booking=reference)
    with svc.session() as s:
        seen = {(b.starts_at, b.ends_at) for b in busy}  # a booking's claim and its event: one reason, not two
        busy += [
            b for b in claims_busy(s, room.slug, first, last, now, booking_id) if (b.starts_at, b.ends_at) not in seen
        ]
    return check_conflicts(sorted(windows, key=lambda w: w.starts_at), busy, policy)
