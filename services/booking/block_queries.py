"""Room blocks as the dashboard reads them (issue 14 §5): what staff ask to block (`BlockRequest`), what it would take
and whom it would get in the way of (`BlockPlan`, its `BlockSlot`s and `Clash`es), what a block made or released
(`BlockResult`), and the current and upcoming blocks (`current_blocks`).

The values live here, in a read module, because the page builds a request and draws a plan without importing the
module that writes (services.booking.blocks: import-linter's `pages-read-only`); blocks.py plans, makes, releases
and repairs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import BlockKind, BlockState, RoomBlock, SlotClaim
from services.booking.store import resolve_now
from services.core.context import Services
from services.rules.fmt import day_label

KIND_LABELS = {
    BlockKind.MAINTENANCE: "Maintenance",
    BlockKind.INTERNAL: "Internal use",
    BlockKind.CLOSURE: "Closure (whole venue)",
}
# What each kind of clash is, in the words the page shows; the first ones stop a block, "event" does not.
CLASH_LABELS = {
    "booking": "Paid booking",
    "hold": "Unpaid hold",
    "change": "Unpaid change",  # a change to a paid booking, waiting for its difference
    "block": "Blocked",
    "old_payment": "Old system's",  # an event of a payment Room Desk does not hold
    "event": "Hand-added",  # not in the way: listed so staff know it is there
}


@dataclass(frozen=True)
class BlockRequest:
    """Take `rooms` (slugs; the page passes every room for "All rooms") out of sale on each open day from `first_day`
    to `last_day`, from `start` to `end` venue time, or the whole opening day when both are None. A closure is the
    whole venue for whole days."""

    rooms: tuple[str, ...]
    first_day: date
    last_day: date
    start: time | None = None
    end: time | None = None
    kind: BlockKind = BlockKind.MAINTENANCE
    reason: str = ""

    @property
    def whole_day(self) -> bool:
        return self.start is None and self.end is None


@dataclass(frozen=True)
class BlockSlot:
    """One room on one open day: the time the block claims (UTC)."""

    room: str
    day: date
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class Clash:
    """Something already on a slot the block would take. `blocking`: the block cannot be made while it is there (a
    booking, a hold, another block — the database would refuse it too); a hand-added calendar event is only shown."""

    kind: str  # a CLASH_LABELS key
    room: str  # slug
    room_name: str
    day: date
    starts_at: datetime  # UTC
    ends_at: datetime
    text: str  # one sentence naming what is there
    reference: str = ""
    customer: str = ""  # the booking's customer, or the event's title
    booking_id: int | None = None
    block_id: int | None = None
    blocking: bool = True


@dataclass(frozen=True)
class BlockPlan:
    """What a request would block, checked against bookings, holds, other blocks and the calendars just now."""

    request: BlockRequest
    slots: tuple[BlockSlot, ...]
    clashes: tuple[Clash, ...]
    closed_days: tuple[tuple[date, str], ...] = ()  # days in the range the venue is shut anyway, and why
    calendar_problems: tuple[str, ...] = ()  # calendars that could not be read (hand-added events unknown there)

    @property
    def in_the_way(self) -> tuple[Clash, ...]:
        """The clashes that stop the block: staff move or cancel these first."""
        return tuple(c for c in self.clashes if c.blocking)

    @property
    def can_block(self) -> bool:
        return bool(self.slots) and not self.in_the_way

    @property
    def days(self) -> tuple[date, ...]:
        return tuple(sorted({s.day for s in self.slots}))

    def refusals(self) -> list[str]:
        """Why the block cannot be made, one sentence per clash (the error create_block raises)."""
        return [f"{c.text}: move or cancel it first" for c in self.in_the_way]


@dataclass(frozen=True)
class BlockResult:
    block_id: int
    state: str  # active | released
    message: str  # what happened, one or two sentences for the outcome
    problems: list[str] = field(default_factory=list)  # calendar steps left for the worker to finish


@dataclass(frozen=True)
class BlockRow:
    """One block as the list shows it."""

    id: int
    kind: BlockKind
    rooms: tuple[str, ...]
    first_day: date
    last_day: date
    start_time: str | None
    end_time: str | None
    reason: str
    actor: str
    created_at: datetime
    slots: int  # room × day slots it claims
    events: int  # of those, events on the calendars

    @property
    def time_label(self) -> str:
        return f"{self.start_time}–{self.end_time}" if self.start_time and self.end_time else "Whole day"

    @property
    def days_label(self) -> str:
        if self.first_day == self.last_day:
            return day_label(self.first_day)
        return f"{day_label(self.first_day)} – {day_label(self.last_day)}"

    @property
    def events_label(self) -> str:
        """How many of its events are on the calendars: '3 of 3', or '1 of 3, the worker retries'."""
        label = f"{min(self.events, self.slots)} of {self.slots}"
        return label if self.events >= self.slots else f"{label}, the worker retries"


def kind_label(kind: BlockKind | str) -> str:
    return KIND_LABELS.get(BlockKind(kind), str(kind))


def rooms_label(svc: Services, rooms: tuple[str, ...] | list[str]) -> str:
    """'All rooms', or the rooms' names."""
    if set(rooms) >= {r.slug for r in svc.catalogue.rooms}:
        return "All rooms"
    names = {r.slug: r.name for r in svc.catalogue.rooms}
    return ", ".join(names.get(slug, slug) for slug in rooms)


def current_blocks(svc: Services, *, now: datetime | None = None) -> list[BlockRow]:
    """Active blocks whose last day has not passed, soonest first."""
    now = resolve_now(svc, now)
    today = now.astimezone(svc.settings.tz).date()
    with svc.read_session() as s:
        blocks = list(
            s.exec(
                select(RoomBlock)
                .where(RoomBlock.state == BlockState.ACTIVE, col(RoomBlock.last_day) >= today)
                .order_by(col(RoomBlock.first_day), col(RoomBlock.id))
            )
        )
        ids = [b.id for b in blocks]
        counts = dict(
            s.execute(
                sa.select(col(SlotClaim.block_id), sa.func.count())
                .where(col(SlotClaim.block_id).in_(ids))
                .group_by(col(SlotClaim.block_id))
            ).all()
        )
    return [
        BlockRow(
            id=b.id,
            kind=BlockKind(b.kind),
            rooms=tuple(b.rooms),
            first_day=b.first_day,
            last_day=b.last_day,
            start_time=b.start_time,
            end_time=b.end_time,
            reason=b.reason,
            actor=b.actor,
            created_at=b.created_at,
            slots=int(counts.get(b.id, 0)),
            events=len(b.events),
        )
        for b in blocks
        if b.id is not None
    ]
