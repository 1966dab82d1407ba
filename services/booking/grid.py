"""The rooms × hours grid front desk reads first ("what is free at 14:00 on Friday?"): for each room and opening hour
of a day, or each room and day of a week, whether it is free, held, booked, blocked by staff, taken by a calendar
event Room Desk did not make, closed, or free but not bookable now — and where a booking could start in it.

A read model, no writes: one query for the slot claims of the window (bookings, unpaid holds, a change's held days,
staff blocks), the rooms' calendars for the events no claim explains (as the Room calendar reads them), and the
closed-days rule. Times are the venue's wall clock; the claims and events are compared as aware instants."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from sqlmodel import col, select

from models.tables import BlockKind, Booking, ClaimKind, RoomBlock, SlotClaim
from services.booking.availability import closed_reasons, event_span, events_between
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import GatewayError
from services.rules.availability import Busy, free_ranges
from services.rules.fmt import hhmm


class CellState(StrEnum):
    """What a cell of the grid says about a room at that time."""

    FREE = "free"
    HELD = "held"  # an unpaid hold (or a change's new days waiting for payment): taken until it lapses
    BOOKED = "booked"
    EVENT = "event"  # on the room's calendar, not a live booking of ours (added by hand, or left over)
    BLOCKED = "blocked"  # staff took the room out of sale (maintenance, the venue's own use)
    CLOSED = "closed"  # the venue is shut: a closed weekday, a holiday, a closure
    UNBOOKABLE = "unbookable"  # nothing there, but it cannot be booked now (past, notice, too short a gap…)


# When several things share a cell, the one that keeps the room longest out of reach is shown.
PRECEDENCE = (CellState.CLOSED, CellState.BLOCKED, CellState.BOOKED, CellState.EVENT, CellState.HELD)


@dataclass(frozen=True)
class Occupant:
    """Something that takes a room's time: a booked or held day, a staff block, a calendar event."""

    room: str
    starts_at: datetime  # venue time
    ends_at: datetime
    state: CellState
    label: str  # the customer, the block's reason, the event's title
    reference: str = ""

    @property
    def span(self) -> str:
        return f"{self.starts_at:%H:%M}–{self.ends_at:%H:%M}"

    def touches(self, day: date) -> bool:
        """It takes some of `day` (venue date): one ending at midnight is the day before's only."""
        midnight = datetime.combine(day, time(0), tzinfo=self.starts_at.tzinfo)
        return self.starts_at < midnight + timedelta(days=1) and self.ends_at > midnight


@dataclass(frozen=True)
class Cell:
    """One room over one stretch of venue time: an opening hour (a day's grid) or a whole day (a week's).

    `book_at`–`book_end` is the booking of the room's minimum length a click on the cell offers (None: none fits),
    `free` the free ranges around it, `why` why a closed or unbookable cell is so."""

    room: str
    starts_at: datetime  # venue time
    ends_at: datetime
    state: CellState
    occupants: tuple[Occupant, ...] = ()
    why: str = ""
    note: str = ""  # an unbookable cell's reason in a word or two ("Too soon", "Past")
    book_at: time | None = None
    book_end: time | None = None
    free: tuple[tuple[time, time], ...] = ()  # where a booking could run (a week's cell lists the day's)

    @property
    def day(self) -> date:
        return self.starts_at.date()

    @property
    def bookable(self) -> bool:
        return self.book_at is not None

    @property
    def free_minutes(self) -> int:
        return sum(_minutes(b) - _minutes(a) for a, b in self.free)

    @property
    def clash(self) -> bool:
        """Two of the things in the cell take the room at the same time (a double booking to sort out)."""
        latest: datetime | None = None  # the latest end so far, going by start
        for o in sorted(self.occupants, key=lambda o: o.starts_at):
            if latest is not None and o.starts_at < latest:
                return True
            latest = o.ends_at if latest is None else max(latest, o.ends_at)
        return False


@dataclass(frozen=True)
class RoomGrid:
    """Rooms down; the opening hours of each day (`cell`) or the days (`day_cell`) across."""

    rooms: tuple[Room, ...]
    days: tuple[date, ...]
    hours: tuple[time, ...]  # each column's start on a day's grid
    cells: dict[tuple[str, date, time], Cell]
    day_cells: dict[tuple[str, date], Cell]
    calendar_errors: tuple[str, ...] = ()
    occupants: tuple[Occupant, ...] = field(default=(), repr=False)

    def cell(self, room: str, day: date, hour: time) -> Cell:
        return self.cells[(room, day, hour)]

    def day_cell(self, room: str, day: date) -> Cell:
        return self.day_cells[(room, day)]

    def on(self, day: date) -> list[Occupant]:
        """What takes any room on `day`, room by room (the grid's order), then by start."""
        order = {r.slug: i for i, r in enumerate(self.rooms)}
        found = [o for o in self.occupants if o.touches(day)]
        return sorted(found, key=lambda o: (order.get(o.room, len(order)), o.starts_at))

    def idle_hours(self) -> dict[str, float]:
        """Opening hours with nothing in them, per room name, over the grid's days (a closed day counts none)."""
        out: dict[str, float] = {}
        for room in self.rooms:
            total = 0
            for day in self.days:
                whole = self.day_cells[(room.slug, day)]
                if whole.state == CellState.CLOSED:
                    continue
                taken, cursor = 0, whole.starts_at
                for o in sorted(whole.occupants, key=lambda o: o.starts_at):
                    start, end = max(o.starts_at, cursor), min(o.ends_at, whole.ends_at)
                    if end > start:
                        taken += int((end - start).total_seconds() // 60)
                        cursor = end
                total += int((whole.ends_at - whole.starts_at).total_seconds() // 60) - taken
            out[room.name] = total / 60
        return out


def room_grid(svc: Services, days: Sequence[date], *, now: datetime | None = None) -> RoomGrid:
    """The grid of every room of the catalogue over `days` (venue dates), as of `now`."""
    now = now or svc.now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = svc.policy.tz
    wanted = tuple(sorted(set(days)))
    rooms = tuple(svc.catalogue.rooms)
    if not wanted:
        return RoomGrid(rooms, (), hour_columns(svc), {}, {})
    lo = datetime.combine(wanted[0], time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(wanted[-1] + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    occupants, ours, blocks = _claimed(svc, lo, hi, now)
    events, errors = _calendar_events(svc, rooms, lo, hi, ours, blocks)
    occupants += events
    hours = hour_columns(svc)
    cells: dict[tuple[str, date, time], Cell] = {}
    day_cells: dict[tuple[str, date], Cell] = {}
    for day in wanted:
        closed = closed_reasons(svc, day)
        for room in rooms:
            here = [o for o in occupants if o.room == room.slug and o.touches(day)]
            free = () if closed else _free(svc, room, day, here, now)
            for hour in hours:
                cells[(room.slug, day, hour)] = _cell(svc, room, day, hour, here, closed, free, now)
            day_cells[(room.slug, day)] = _day_cell(svc, room, day, here, closed, free, now)
    return RoomGrid(rooms, wanted, hours, cells, day_cells, tuple(errors), tuple(occupants))


def hour_columns(svc: Services) -> tuple[time, ...]:
    """The start of each opening hour (the last may be shorter, up to closing)."""
    policy = svc.policy
    first, last = _minutes(policy.open_time), _minutes(policy.close_time)
    return tuple(time(m // 60, m % 60) for m in range(first, last, 60))


# ------------------------------------------------------------------------------------------------ reading


def _claimed(
    svc: Services, lo: datetime, hi: datetime, now: datetime
) -> tuple[list[Occupant], set[tuple[str, str]], set[str]]:
    """The active claims of the window as occupants, with what the calendar events of ours carry: the live
    (reference, day) pairs and the block ids, so those events are not counted twice."""
    tz = svc.policy.tz
    q = (
        select(SlotClaim, Booking, RoomBlock)
        .outerjoin(Booking, col(Booking.id) == col(SlotClaim.booking_id))
        .outerjoin(RoomBlock, col(RoomBlock.id) == col(SlotClaim.block_id))
        .where(col(SlotClaim.active).is_(True), SlotClaim.starts_at < hi, SlotClaim.ends_at > lo)
    )
    out: list[Occupant] = []
    ours: set[tuple[str, str]] = set()
    blocks: set[str] = set()
    with svc.read_session() as s:
        rows = list(s.exec(q))
    for claim, booking, block in rows:
        if claim.kind == ClaimKind.HOLD and claim.expires_at is not None and claim.expires_at < now:
            continue  # lapsed: it no longer stops anyone (the expiry job tidies it)
        start, end = claim.starts_at.astimezone(tz), claim.ends_at.astimezone(tz)
        if block is not None:
            blocks.add(str(block.id))
            state = CellState.CLOSED if block.kind == BlockKind.CLOSURE else CellState.BLOCKED
            out.append(Occupant(claim.room_slug, start, end, state, block.reason or "Blocked by staff"))
            continue
        if booking is None:
            continue
        if claim.kind == ClaimKind.HOLD:
            state = CellState.HELD
            label = f"{booking.customer_name} (" + ("change, " if claim.amendment_id is not None else "") + "unpaid)"
        else:
            state, label = CellState.BOOKED, booking.customer_name
        ours.add((booking.reference, start.date().isoformat()))
        out.append(Occupant(claim.room_slug, start, end, state, label, booking.reference))
    return out, ours, blocks


def _calendar_events(
    svc: Services,
    rooms: Iterable[Room],
    lo: datetime,
    hi: datetime,
    ours: set[tuple[str, str]],
    blocks: set[str],
) -> tuple[list[Occupant], list[str]]:
    """Events on the rooms' calendars that no live claim explains (added by hand, or a booking's left-over event):
    they take the room as far as a booking's Gate 2 is concerned. A calendar that does not answer is named."""
    tz = svc.policy.tz
    out: list[Occupant] = []
    errors: list[str] = []
    for room in rooms:
        try:
            listed = events_between(svc, room.calendar_id, lo, hi)
        except GatewayError as exc:
            errors.append(f"{room.name}: {exc.message}")
            continue
        for ev in listed:
            if ev.get("status") == "cancelled" or ev.get("transparency") == "transparent":
                continue  # neither blocks a booking
            private = (ev.get("extendedProperties") or {}).get("private") or {}
            span = event_span(ev, tz)
            if span is None:
                continue
            start, end = span
            ref = str(private.get("booking_id") or "")
            if private.get("roomdesk_block") and str(private["roomdesk_block"]) in blocks:
                continue
            if ref and (ref, str(private.get("booking_date") or start.date().isoformat())) in ours:
                continue
            title = str(ev.get("summary") or "(no title)")
            out.append(Occupant(room.slug, start, end, CellState.EVENT, title, ref))
    return out, errors


# ------------------------------------------------------------------------------------------------ deciding


def _free(
    svc: Services, room: Room, day: date, here: Sequence[Occupant], now: datetime
) -> tuple[tuple[time, time], ...]:
    """Where a booking of the room could run on `day`: the free ranges once the buffers are taken out, each starting
    on the slot grid and no earlier than the notice allows (days past the booking window have none)."""
    policy = svc.policy
    if not room.bookable:
        return ()
    earliest = now + timedelta(hours=policy.min_notice_hours)
    latest = now + timedelta(days=policy.max_days_ahead)
    out = []
    for a, b in free_ranges(day, [Busy(o.starts_at, o.ends_at) for o in here], policy):
        start = _up(_minutes(a), policy.slot_minutes)
        at = datetime.combine(day, _time(min(start, 24 * 60 - 1)), tzinfo=policy.tz)
        if at < earliest:  # the notice ends inside (or after) this range
            start = max(start, _up(_minutes(earliest.astimezone(policy.tz).time()), policy.slot_minutes))
            if earliest.astimezone(policy.tz).date() > day:
                continue
        if start < _minutes(b) and at <= latest:
            out.append((_time(start), b))
    return tuple(out)


def _least(svc: Services, room: Room) -> int:
    """The shortest booking of the room, in minutes."""
    return max(room.min_minutes, svc.policy.slot_minutes)


def _booking_over(
    svc: Services, room: Room, free: Sequence[tuple[time, time]], lo: int, hi: int
) -> tuple[time, time] | None:
    """The booking of the room's minimum length to offer for the minutes [lo, hi): from `lo` when it fits, else the
    latest start that still fits the free range (so the offer covers as much of the cell as it can); None when no
    free range around the cell is long enough."""
    slot, least = svc.policy.slot_minutes, _least(svc, room)
    for a, b in free:
        first, last = _minutes(a), _minutes(b)
        if first >= hi or last <= lo or last - first < least:
            continue
        start = max(first, _up(lo, slot))
        if start + least > last:
            start = (last - least) // slot * slot
        if start >= first:
            return _time(start), _time(start + least)
    return None


def _cell(
    svc: Services,
    room: Room,
    day: date,
    hour: time,
    here: Sequence[Occupant],
    closed: Sequence[str],
    free: Sequence[tuple[time, time]],
    now: datetime,
) -> Cell:
    tz = svc.policy.tz
    start = datetime.combine(day, hour, tzinfo=tz)
    end = min(start + timedelta(hours=1), datetime.combine(day, svc.policy.close_time, tzinfo=tz))
    inside = tuple(o for o in here if o.starts_at < end and o.ends_at > start)
    lo, hi = _minutes(hour), _minutes(hour) + 60
    near = tuple((a, b) for a, b in free if _minutes(a) < hi and _minutes(b) > lo)
    if closed:
        return Cell(room.slug, start, end, CellState.CLOSED, inside, why="; ".join(closed))
    offer = _booking_over(svc, room, free, lo, hi)
    at, until = offer or (None, None)
    if inside:
        if at is not None and _minutes(at) < lo:  # a taken hour offers only its own free end, never earlier
            at = until = None
        return Cell(room.slug, start, end, _dominant(inside), inside, book_at=at, book_end=until, free=near)
    if offer is None:
        note, why = _why_not(svc, room, start, end, near, now)
        return Cell(room.slug, start, end, CellState.UNBOOKABLE, why=why, note=note, free=near)
    return Cell(room.slug, start, end, CellState.FREE, book_at=at, book_end=until, free=near)


def _day_cell(
    svc: Services,
    room: Room,
    day: date,
    here: Sequence[Occupant],
    closed: Sequence[str],
    free: Sequence[tuple[time, time]],
    now: datetime,
) -> Cell:
    """A room's whole day: free while a booking can still be made in it (the free ranges long enough for one),
    else what takes it."""
    tz = svc.policy.tz
    start = datetime.combine(day, svc.policy.open_time, tzinfo=tz)
    end = datetime.combine(day, svc.policy.close_time, tzinfo=tz)
    inside = tuple(o for o in here if o.starts_at < end and o.ends_at > start)
    if closed:
        return Cell(room.slug, start, end, CellState.CLOSED, inside, why="; ".join(closed))
    least = _least(svc, room)
    long_enough = tuple((a, b) for a, b in free if _minutes(b) - _minutes(a) >= least)
    if long_enough:
        at = long_enough[0][0]
        until = _time(_minutes(at) + least)
        return Cell(room.slug, start, end, CellState.FREE, inside, book_at=at, book_end=until, free=long_enough)
    if inside:
        return Cell(room.slug, start, end, _dominant(inside), inside)
    note, why = _why_not(svc, room, start, end, free, now)
    return Cell(room.slug, start, end, CellState.UNBOOKABLE, why=why, note=note)


def _dominant(inside: Sequence[Occupant]) -> CellState:
    return next(s for s in PRECEDENCE if any(o.state == s for o in inside))


def _why_not(
    svc: Services, room: Room, start: datetime, end: datetime, free: Sequence[tuple[time, time]], now: datetime
) -> tuple[str, str]:
    """Why nothing can be booked in an empty cell: a word or two for the cell, and a sentence."""
    policy = svc.policy
    if not room.bookable:
        return "Not for sale", f"The {room.name} is not open for booking"
    if end <= now:
        return "Past", "That time has passed"
    if start < now + timedelta(hours=policy.min_notice_hours):
        return "Too soon", f"Within the {policy.min_notice_hours}-hour notice"
    if start > now + timedelta(days=policy.max_days_ahead):
        return "Too far", f"More than {policy.max_days_ahead} days ahead"
    gaps = ", ".join(f"{hhmm(a)}–{hhmm(b)}" for a, b in free)
    return "Short gap", (
        f"Free {gaps}, " if gaps else "Free, "
    ) + f"but the {room.name} needs {room.min_hours:g} h in a row"


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _up(minutes: int, step: int) -> int:
    """`minutes` rounded up to the slot grid."""
    return -(-minutes // step) * step


def _time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def describe(cell: Cell) -> str:
    """The cell in words, for a tooltip: what is there, and where a booking could start."""
    lines = ["Clash: these overlap"] if cell.clash else []
    lines += [f"{o.span} {o.label}" + (f" · {o.reference}" if o.reference else "") for o in cell.occupants]
    if cell.why:
        lines.append(cell.why)
    if cell.free and cell.state != CellState.UNBOOKABLE:
        lines.append("Free " + ", ".join(f"{hhmm(a)}–{hhmm(b)}" for a, b in cell.free))
    return "\n\n".join(lines)
