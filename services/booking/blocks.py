"""Staff take rooms out of sale (issue 14 §5): maintenance, the venue's own use, or the whole venue closed.

Seed 000 #5: staff added events by hand to room calendars and caused double bookings, because nothing but the calendar
knew. A block claims its slots like a booking does (SlotClaim with block_id: the database refuses a booking over it and
it over a booking), so the gates refuse later bookings with a sentence naming it; and it puts one marked event per room
and day on the room's calendar (private property roomdesk_block=<id>), so people reading the calendar see it and
reconciliation knows it is the venue's own. Planning lists every booking, hold or block in the way before anything is
saved; making it re-checks the same way, then writes the block and its claims in one transaction (audited). The
calendar comes after: an outage leaves the block in force (the claims protect the slots) and `repair_block_events`,
which the worker runs every round, puts the missing events (deterministic ids, so a retry never duplicates). Released,
its claims stop and its events are deleted; the row stays for the audit trail.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import BlockKind, BlockState, Booking, ClaimKind, RoomBlock, SlotClaim
from services.booking.availability import event_span, events_between
from services.booking.block_queries import (
    BlockPlan,
    BlockRequest,
    BlockResult,
    BlockSlot,
    Clash,
    kind_label,
    rooms_label,
)
from services.booking.claims import is_overlap_error, sweep_expired_claims
from services.booking.events import delete_batch
from services.booking.store import resolve_now
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    ConfigError,
    EventExists,
    GatewayError,
    NotAvailable,
    NotFound,
    SlotTaken,
    ValidationError,
)
from services.rules.availability import closed_reasons, time_form_problems
from services.rules.fmt import day_label, days_label, hhmm, plural

log = logging.getLogger("roomdesk.blocks")

MAX_DAYS = 366
REASON_MIN, REASON_MAX = 3, 500
# The private properties that mark a block's event (reconciliation tells the venue's own events by them).
BLOCK_PROPERTY = "roomdesk_block"


# ---------------------------------------------------------------------------------------------------- checking


def check_block(svc: Services, req: BlockRequest, *, now: datetime) -> list[str]:
    """Every reason the request is malformed, as sentences (empty: it can be planned)."""
    problems = _reason_problems(req.reason)
    known = {r.slug for r in svc.catalogue.rooms}
    if not req.rooms:
        problems.append("Choose at least one room, or All rooms")
    problems.extend(f"There is no room {slug!r}" for slug in req.rooms if slug not in known)
    today = now.astimezone(svc.settings.tz).date()
    if req.last_day < req.first_day:
        problems.append("The last day must be on or after the first day")
    elif (req.last_day - req.first_day).days + 1 > MAX_DAYS:
        problems.append(f"At most {MAX_DAYS} days in one block ({(req.last_day - req.first_day).days + 1} chosen)")
    if req.last_day < today:
        problems.append("These days are over: a block starts today or later")
    problems.extend(_time_problems(svc, req))
    if req.kind == BlockKind.CLOSURE and (set(req.rooms) != known or not req.whole_day):
        problems.append(
            "A closure closes the whole venue for whole days: choose All rooms and Whole opening day "
            "(for part of the venue or part of a day, use Maintenance or Internal use)"
        )
    if req.kind == BlockKind.CLOSURE and req.first_day <= today:
        # A closed day counts as closed all day long (quotes, and reconciliation's holiday check, which would offer
        # full refunds for bookings already served that morning): the rest of today is a Maintenance block.
        problems.append(
            "A closure starts tomorrow at the earliest: for the rest of today, block All rooms with Maintenance"
        )
    return problems


def _reason_problems(reason: str) -> list[str]:
    text = reason.strip()
    if len(text) < REASON_MIN:
        return [f"Give a reason of at least {REASON_MIN} characters: it is on the calendar and in the audit trail"]
    if len(text) > REASON_MAX:
        return [f"The reason is at most {REASON_MAX} characters ({len(text)} given)"]
    return []


def _time_problems(svc: Services, req: BlockRequest) -> list[str]:
    if req.whole_day:
        return []
    if req.start is None or req.end is None:
        return ["Give both a start and an end time, or block the whole opening day"]
    malformed = time_form_problems(req.start, req.end)
    if malformed:
        return malformed
    policy = svc.policy
    problems = []
    if req.end <= req.start:
        problems.append("The end time must be after the start time")
    elif req.start < policy.open_time or req.end > policy.close_time:
        problems.append(f"Outside opening hours ({hhmm(policy.open_time)}–{hhmm(policy.close_time)})")
    minutes = (req.start.hour * 60 + req.start.minute, req.end.hour * 60 + req.end.minute)
    if any(m % policy.slot_minutes for m in minutes):
        problems.append(f"Start and end times must be on a {policy.slot_minutes}-minute step")
    return problems


# ---------------------------------------------------------------------------------------------------- planning


def plan_block(svc: Services, req: BlockRequest, *, now: datetime | None = None) -> BlockPlan:
    """The slots a request would claim (room × open day, venue time → UTC) and everything already on them: bookings,
    holds, changes waiting for payment, other blocks, events of payments we do not hold (these stop the block), and
    events added by hand (shown only). Reads only; raises ValidationError for a malformed request."""
    now = resolve_now(svc, now)
    problems = check_block(svc, req, now=now)
    if problems:
        raise ValidationError(problems)
    with svc.session() as s:
        slots, closed = _slots(svc, s, req, now)
        if not slots:
            raise ValidationError(
                [f"Nothing to block from {day_label(req.first_day)} to {day_label(req.last_day)}: "]
                + [f"{day_label(d)}: {why}" for d, why in closed]
            )
        clashes = _claim_clashes(svc, s, slots, now)
    found, calendar_problems = _calendar_clashes(svc, slots)
    clashes.extend(found)
    clashes.sort(key=lambda c: (not c.blocking, c.starts_at, c.room_name))
    return BlockPlan(req, tuple(slots), tuple(clashes), tuple(closed), tuple(calendar_problems))


def _slots(
    svc: Services, s: Session, req: BlockRequest, now: datetime
) -> tuple[list[BlockSlot], list[tuple[date, str]]]:
    """Each room on each open day of the range; today's slot starts no earlier than now (on the slot grid)."""
    policy, tz = svc.policy, svc.settings.tz
    closures = _closures_without_blocks(svc, s)
    start_t, end_t = (req.start, req.end) if not req.whole_day else (policy.open_time, policy.close_time)
    assert start_t is not None and end_t is not None
    slots: list[BlockSlot] = []
    closed: list[tuple[date, str]] = []
    for offset in range((req.last_day - req.first_day).days + 1):
        day = req.first_day + timedelta(days=offset)
        if why := closed_reasons(day, policy, closures):
            closed.append((day, "; ".join(why)))
            continue
        starts = datetime.combine(day, start_t, tzinfo=tz)
        ends = datetime.combine(day, end_t, tzinfo=tz)
        starts = max(starts, _next_step(now.astimezone(tz), policy.slot_minutes))
        if starts >= ends:
            closed.append((day, "that time has already passed"))
            continue
        for room in req.rooms:
            slots.append(BlockSlot(room, day, starts.astimezone(UTC), ends.astimezone(UTC)))
    return slots, closed


def _next_step(moment: datetime, step: int) -> datetime:
    """`moment` rounded up to the slot grid (a block made at 13:02 for today starts at 13:15)."""
    base = moment.replace(second=0, microsecond=0)
    if base < moment:
        base += timedelta(minutes=1)
    return base + timedelta(minutes=(-(base.hour * 60 + base.minute)) % step)


def _closures_without_blocks(svc: Services, s: Session) -> dict[date, str]:
    """The catalogue's closed days without those closed by a closure block: a block's days are planned as open days
    (its own claims and other blocks' are what clash), whether or not the closure map lists closure blocks."""
    closures = dict(svc.catalogue.closure_map)
    for block in s.exec(
        select(RoomBlock).where(RoomBlock.kind == BlockKind.CLOSURE, RoomBlock.state == BlockState.ACTIVE)
    ):
        for offset in range((block.last_day - block.first_day).days + 1):
            day = block.first_day + timedelta(days=offset)
            if closures.get(day) == block.reason:
                del closures[day]
    return closures


def _claim_clashes(svc: Services, s: Session, slots: Sequence[BlockSlot], now: datetime) -> list[Clash]:
    """Active claims the database would refuse the block's claims over (a claim's buffer after it included)."""
    out: list[Clash] = []
    for room, room_slots in _by_room(slots).items():
        lo, hi = min(x.starts_at for x in room_slots), max(x.ends_at for x in room_slots)
        claims = s.exec(
            select(SlotClaim)
            .where(
                SlotClaim.room_slug == room,
                col(SlotClaim.active).is_(True),
                SlotClaim.starts_at < hi,
                SlotClaim.block_until > lo,
            )
            .order_by(col(SlotClaim.starts_at))
        )
        for claim in claims:
            if claim.kind == ClaimKind.HOLD and claim.expires_at is not None and claim.expires_at < now:
                continue  # lapsed: swept before the block's claims go in
            for slot in room_slots:
                if claim.starts_at < slot.ends_at and slot.starts_at < claim.block_until:
                    out.append(_claim_clash(svc, s, claim, slot))
                    break
    return out


def _claim_clash(svc: Services, s: Session, claim: SlotClaim, slot: BlockSlot) -> Clash:
    tz = svc.settings.tz
    room = svc.catalogue.room(claim.room_slug)
    span = f"{claim.starts_at.astimezone(tz):%H:%M}–{claim.ends_at.astimezone(tz):%H:%M}"
    where = f"{room.name} {day_label(slot.day)}"
    near = "" if claim.ends_at > slot.starts_at else f", ending less than {svc.policy.buffer_minutes} min before"
    at = (room.slug, room.name, slot.day, claim.starts_at, claim.ends_at)
    if claim.block_id is not None:
        other = s.get(RoomBlock, claim.block_id)
        what = f"{kind_label(other.kind)}: {other.reason}" if other is not None else "a block"
        text = f"{where} {span} is already blocked (block #{claim.block_id}, {what}){near}"
        return Clash("block", *at, text, customer=what, block_id=claim.block_id)
    booking = s.get(Booking, claim.booking_id)
    assert booking is not None
    if claim.amendment_id is not None:
        kind, what = "change", f"a change to {booking.reference} waiting for payment"
    elif claim.kind == ClaimKind.HOLD:
        kind, what = "hold", f"{booking.reference}, an unpaid hold"
    else:
        kind, what = "booking", f"booking {booking.reference}"
    text = f"{where} {span}: {what} ({booking.customer_name}){near}"
    return Clash(kind, *at, text, reference=booking.reference, customer=booking.customer_name, booking_id=booking.id)


def _calendar_clashes(svc: Services, slots: Sequence[BlockSlot]) -> tuple[list[Clash], list[str]]:
    """Events on the slots that no claim stands for: a payment we do not hold (the old system's) stops the block; an
    event added by hand is listed so staff know it is there. A calendar that cannot be read is said, not fatal."""
    tz = svc.settings.tz
    out: list[Clash] = []
    problems: list[str] = []
    events: list[tuple[BlockSlot, dict[str, Any], datetime, datetime]] = []
    for room_slug, room_slots in _by_room(slots).items():
        room = svc.catalogue.room(room_slug)
        lo, hi = min(x.starts_at for x in room_slots), max(x.ends_at for x in room_slots)
        try:
            listed = events_between(svc, room.calendar_id, lo, hi)
        except GatewayError as exc:
            problems.append(
                f"The {room.name}'s calendar could not be read ({exc.message}): events added by hand there "
                "are not listed"
            )
            continue
        for ev in listed:
            span = event_span(ev, tz)
            if span is None or ev.get("status") == "cancelled" or ev.get("transparency") == "transparent":
                continue
            starts, ends = span[0].astimezone(UTC), span[1].astimezone(UTC)  # a Clash's times are UTC
            for slot in room_slots:
                if starts < slot.ends_at and slot.starts_at < ends:
                    events.append((slot, ev, starts, ends))
                    break
    refs = {_private(ev).get("booking_id") for _, ev, _, _ in events} - {None, ""}
    with svc.session() as s:
        ours = set(s.exec(select(Booking.reference).where(col(Booking.reference).in_(refs)))) if refs else set()
    for slot, ev, starts, ends in events:
        private = _private(ev)
        if private.get(BLOCK_PROPERTY) or private.get("booking_id") in ours:
            continue  # a block's or a booking's we hold: their claims decide
        room = svc.catalogue.room(slot.room)
        where = f"{room.name} {day_label(slot.day)} {starts.astimezone(tz):%H:%M}–{ends.astimezone(tz):%H:%M}"
        title = str(ev.get("summary") or "(no title)")
        pi = private.get("payment_intent") or _pi_in(str(ev.get("description") or ""))
        if pi or private.get("booking_id"):
            text = f"{where}: “{title}”, an event of a payment Room Desk does not hold ({pi or private['booking_id']})"
            out.append(
                Clash("old_payment", room.slug, room.name, slot.day, starts, ends, text, reference=pi, customer=title)
            )
        else:
            text = f"{where}: “{title}” is on the calendar, added by hand (the block leaves it there)"
            out.append(
                Clash("event", room.slug, room.name, slot.day, starts, ends, text, customer=title, blocking=False)
            )
    return out, problems


def _private(ev: dict[str, Any]) -> dict[str, str]:
    return dict((ev.get("extendedProperties") or {}).get("private") or {})


def _pi_in(text: str) -> str:
    word = next((w for w in text.replace(",", " ").split() if w.startswith("pi_")), "")
    return word.strip(".;:()")


def _by_room(slots: Iterable[BlockSlot]) -> dict[str, list[BlockSlot]]:
    out: dict[str, list[BlockSlot]] = {}
    for slot in slots:
        out.setdefault(slot.room, []).append(slot)
    return out


# ---------------------------------------------------------------------------------------------------- making


def create_block(svc: Services, req: BlockRequest, *, actor: str, now: datetime | None = None) -> BlockResult:
    """Re-plan, then block: the block and its claims in one transaction (audited `block.created`), then one marked
    event per room and day. Raises ValidationError, NotAvailable listing every booking, hold or block in the way
    (nothing written), or SlotTaken when a booking took a slot between the check and the write (nothing written).
    A calendar failure leaves the block in force; its `problems` say so and the worker puts the missing events."""
    now = resolve_now(svc, now)
    plan = plan_block(svc, req, now=now)
    if plan.in_the_way:
        raise NotAvailable(plan.refusals())
    time_label = "whole opening day" if req.whole_day else f"{req.start:%H:%M}–{req.end:%H:%M}"
    try:
        with svc.session() as s:
            for room in req.rooms:
                sweep_expired_claims(s, room, now, actor)
            block = RoomBlock(
                kind=req.kind,
                rooms=list(req.rooms),
                # The days it claims, not the range asked for: a closure's days are what the closed-days map shows.
                first_day=min(plan.days, default=req.first_day),
                last_day=max(plan.days, default=req.last_day),
                start_time=None if req.whole_day else f"{req.start:%H:%M}",
                end_time=None if req.whole_day else f"{req.end:%H:%M}",
                reason=req.reason.strip(),
                actor=actor,
                created_at=now,
                updated_at=now,
            )
            s.add(block)
            s.flush()
            assert block.id is not None
            for slot in plan.slots:
                s.add(
                    SlotClaim(
                        block_id=block.id,
                        room_slug=slot.room,
                        starts_at=slot.starts_at,
                        ends_at=slot.ends_at,
                        block_until=slot.ends_at,
                        kind=ClaimKind.BLOCK,
                        created_at=now,
                    )
                )
            s.flush()
            audit.record(
                s,
                "block.created",
                actor=actor,
                at=now,
                message=f"{kind_label(req.kind)} block #{block.id} made: {block.reason}",
                block_id=block.id,
                kind=req.kind.value,
                rooms=list(req.rooms),
                first_day=req.first_day,
                last_day=req.last_day,
                days=len(plan.days),
                time=time_label,
                reason=block.reason,
                slots=len(plan.slots),
            )
            block_id = block.id
    except IntegrityError as exc:
        if is_overlap_error(exc):
            raise SlotTaken(
                "A booking or hold took one of these slots while you were checking: nothing was blocked, check again"
            ) from None
        raise
    if req.kind == BlockKind.CLOSURE:
        svc.reload_venue()  # the closed days are in this process's closures at once (other processes within seconds)
    _, problems = put_block_events(svc, block_id, actor=actor, now=now)
    verb = "Closed the venue" if req.kind == BlockKind.CLOSURE else f"Blocked {rooms_label(svc, req.rooms)}"
    days = plan.days
    when = f"on {days_label(days)}" if len(days) <= 2 else f"from {day_label(days[0])} to {day_label(days[-1])}"
    message = (
        f"{verb} {when}, {time_label} (block #{block_id}, "
        f"{plural(len(plan.slots), 'slot')}): no booking can take {'them' if len(plan.slots) > 1 else 'it'} now."
    )
    if problems:
        message += " Some calendar events could not be put yet: the worker retries them."
    return BlockResult(block_id, BlockState.ACTIVE.value, message, problems)


def block_event_id(block: RoomBlock, room: str, day: date, attempt: int = 0) -> str:
    """Deterministic event id (hex is base32hex) per block, room, day and attempt: a retry finds its own event, and
    the block's creation time keeps a fresh database's block #1 from meeting an old one's events."""
    key = f"roomdesk-block|{block.id}|{block.created_at.isoformat()}|{room}|{day.isoformat()}|{attempt}"
    return "rb" + hashlib.sha256(key.encode()).hexdigest()[:30]


def block_event_body(svc: Services, block: RoomBlock, slot: BlockSlot, event_id: str) -> dict[str, Any]:
    tz, zone = svc.settings.tz, svc.settings.venue_timezone
    word = "Closed" if block.kind == BlockKind.CLOSURE else "Blocked"
    return {
        "id": event_id,
        "summary": f"{word}: {block.reason}",
        "description": "\n".join(
            [
                f"{kind_label(block.kind)}: {block.reason}",
                f"Room Desk block #{block.id}, made by {block.actor}. No booking can take this time.",
                "Release it on the dashboard (Blocks & closures): deleting this event does not free the room.",
            ]
        ),
        "start": {"dateTime": slot.starts_at.astimezone(tz).isoformat(), "timeZone": zone},
        "end": {"dateTime": slot.ends_at.astimezone(tz).isoformat(), "timeZone": zone},
        "extendedProperties": {"private": {BLOCK_PROPERTY: str(block.id), "roomdesk": "block"}},
    }


def put_block_events(svc: Services, block_id: int, *, actor: str, now: datetime) -> tuple[int, list[str]]:
    """Put the events an active block still lacks (its slots not over yet), one batch per calendar, and record them
    on the block. Safe to repeat: ids are deterministic and a 409 on our own event counts as done. Returns (events
    put, problems)."""
    tz = svc.settings.tz
    with svc.session() as s:
        block = s.get(RoomBlock, block_id)
        if block is None or block.state != BlockState.ACTIVE:
            return 0, []
        s.expunge(block)
        recorded = {(e["room"], e["day"]) for e in block.events}
        todo = [
            BlockSlot(c.room_slug, c.starts_at.astimezone(tz).date(), c.starts_at, c.ends_at)
            for c in _block_claims(s, block_id)
            if c.active and c.ends_at > now
        ]
    todo = [slot for slot in todo if (slot.room, slot.day.isoformat()) not in recorded]
    if not todo:
        return 0, []
    created: list[dict[str, Any]] = []
    problems: list[str] = []
    for room_slug, slots in _by_room(todo).items():
        room = svc.catalogue.room(room_slug)
        bodies = [block_event_body(svc, block, slot, block_event_id(block, room_slug, slot.day)) for slot in slots]
        try:
            results: list[Any] = svc.calendar.insert_events(room.calendar_id, bodies)
        except GatewayError as exc:  # the whole batch failed to arrive
            results = [exc] * len(slots)
        for slot, result in zip(slots, results, strict=True):
            if isinstance(result, EventExists):
                result = _insert_one(svc, block, room.calendar_id, slot)
            if isinstance(result, GatewayError):
                problems.append(
                    f"{room.name} {day_label(slot.day)}: the calendar event is not there yet ({result.message})"
                )
                continue
            created.append(_entry(room_slug, room.calendar_id, slot, str(result["id"])))
    _record_created(svc, block_id, created, problems, actor=actor, now=now)
    return len(created), problems


def _insert_one(svc: Services, block: RoomBlock, calendar_id: str, slot: BlockSlot) -> dict[str, Any] | GatewayError:
    """An id that exists: our live event from an earlier try is done; a deleted one (or not ours) moves on to the
    next attempt's id, the same sequence on every retry."""
    for attempt in range(5):
        event_id = block_event_id(block, slot.room, slot.day, attempt)
        try:
            existing = svc.calendar.get_event(calendar_id, event_id)
            if existing is None:
                return svc.calendar.insert_event(calendar_id, block_event_body(svc, block, slot, event_id))
            if existing.get("status") != "cancelled" and _private(existing).get(BLOCK_PROPERTY) == str(block.id):
                return existing
        except EventExists:
            continue
        except GatewayError as exc:
            return exc
    return GatewayError("Could not find a free calendar event id for this day", transient=False, provider="calendar")


def _entry(room: str, calendar_id: str, slot: BlockSlot, event_id: str) -> dict[str, Any]:
    return {
        "room": room,
        "day": slot.day.isoformat(),
        "calendar_id": calendar_id,
        "event_id": event_id,
        "starts_at": slot.starts_at.isoformat(),
        "ends_at": slot.ends_at.isoformat(),
    }


def _record_created(
    svc: Services, block_id: int, created: list[dict[str, Any]], problems: list[str], *, actor: str, now: datetime
) -> None:
    """Remember the events on the block (audited). Released meanwhile, the block's events are deleted again."""
    active = _store_events(
        svc,
        block_id,
        add=created,
        done=len(created),
        action="block.events.created",
        verb="put",
        problems=problems,
        actor=actor,
        now=now,
    )
    if not active and created:
        delete_block_events(svc, block_id, actor=actor, now=now)


def _store_events(
    svc: Services,
    block_id: int,
    *,
    add: Sequence[dict[str, Any]] = (),
    keep: Sequence[dict[str, Any]] | None = None,
    done: int,
    action: str,
    verb: str,
    problems: list[str],
    actor: str,
    now: datetime,
) -> bool:
    """Record which of the block's events are on the calendars now (`add` to those known, or only `keep`), audited
    `action`; True while the block is active."""
    with svc.session() as s:
        block = s.get(RoomBlock, block_id)
        assert block is not None
        # One entry per room and day: a worker round and create_block putting the same events at once both add them.
        merged = {(e["room"], e["day"]): e for e in ([*block.events, *add] if keep is None else keep)}
        block.events = list(merged.values())
        block.updated_at = now
        audit.record(
            s,
            action,
            actor=actor,
            at=now,
            message=f"Block #{block_id}: {plural(done, 'calendar event')} {verb}, {len(problems)} not",
            block_id=block_id,
            events=done,
            failed=problems,
        )
        return block.state == BlockState.ACTIVE


def _block_claims(s: Session, block_id: int) -> list[SlotClaim]:
    return list(s.exec(select(SlotClaim).where(SlotClaim.block_id == block_id).order_by(col(SlotClaim.starts_at))))


# ---------------------------------------------------------------------------------------------------- releasing


def release_block(svc: Services, block_id: int, *, actor: str, reason: str, now: datetime | None = None) -> BlockResult:
    """Give the rooms back: the block's claims stop at once and it is marked released (audited `block.released`,
    with the reason), then its calendar events are deleted (a failure is left for the worker). Releasing a released
    block changes nothing and says so."""
    now = resolve_now(svc, now)
    problems = _reason_problems(reason)
    if problems:
        raise ValidationError(problems)
    with svc.session() as s:
        block = s.get(RoomBlock, block_id)
        if block is None:
            raise NotFound(f"There is no block #{block_id}")
        already = block.state == BlockState.RELEASED
        if not already:
            s.execute(sa.update(SlotClaim).where(col(SlotClaim.block_id) == block_id).values(active=False))
            block.state = BlockState.RELEASED
            block.released_at, block.released_by = now, actor
            block.release_reason = reason.strip()
            block.updated_at = now
            audit.record(
                s,
                "block.released",
                actor=actor,
                at=now,
                message=f"{kind_label(block.kind)} block #{block_id} released: {block.release_reason}",
                block_id=block_id,
                kind=BlockKind(block.kind).value,
                rooms=list(block.rooms),
                first_day=block.first_day,
                last_day=block.last_day,
                reason=block.release_reason,
            )
        what = rooms_label(svc, tuple(block.rooms))
        closure = block.kind == BlockKind.CLOSURE
    if closure and not already:
        svc.reload_venue()
    problems = delete_block_events(svc, block_id, actor=actor, now=now)
    if already:
        message = f"Block #{block_id} was already released."
    else:
        message = f"Released block #{block_id}: {what} can be booked again on its days."
    if problems:
        message += " Some of its calendar events could not be deleted yet: the worker retries them."
    return BlockResult(block_id, BlockState.RELEASED.value, message, problems)


def delete_block_events(svc: Services, block_id: int, *, actor: str, now: datetime) -> list[str]:
    """Delete a released block's events: those recorded, and for its other slots the first id an insert may have
    made without our hearing of it (a timeout). What could not be deleted stays recorded for the next try."""
    with svc.session() as s:
        block = s.get(RoomBlock, block_id)
        assert block is not None
        s.expunge(block)
        claims = _block_claims(s, block_id)
    entries = {(e["calendar_id"], e["event_id"]): e for e in block.events}
    recorded = {(e["room"], e["day"]) for e in block.events}
    tz = svc.settings.tz
    for c in claims:
        day = c.starts_at.astimezone(tz).date()
        if (c.room_slug, day.isoformat()) in recorded or c.ends_at <= now:
            continue
        slot = BlockSlot(c.room_slug, day, c.starts_at, c.ends_at)
        calendar_id = svc.catalogue.room(c.room_slug).calendar_id
        entries.setdefault(
            (calendar_id, block_event_id(block, c.room_slug, day)),
            _entry(c.room_slug, calendar_id, slot, block_event_id(block, c.room_slug, day)),
        )
    if not entries:
        return []
    left: list[dict[str, Any]] = []
    problems: list[str] = []
    for calendar_id, event_id, error in delete_batch(svc, list(entries)):
        if error is not None:
            entry = entries[(calendar_id, event_id)]
            left.append(entry)
            where = f"{svc.catalogue.room(entry['room']).name} {day_label(date.fromisoformat(entry['day']))}"
            problems.append(f"{where}: the event could not be deleted ({error.message})")
    _store_events(
        svc,
        block_id,
        keep=left,
        done=len(entries) - len(left),
        action="block.events.deleted",
        verb="deleted",
        problems=problems,
        actor=actor,
        now=now,
    )
    return problems


# ---------------------------------------------------------------------------------------------------- repairing


def repair_block_events(svc: Services, *, actor: str = "worker", now: datetime | None = None) -> int:
    """The worker's round: active blocks get the events a calendar outage kept from them, released blocks lose the
    events that outlived them. Returns how many blocks it worked on (0 when all is in order: no calendar call)."""
    now = resolve_now(svc, now)
    today = now.astimezone(svc.settings.tz).date()
    with svc.session() as s:
        active = list(
            s.exec(select(RoomBlock).where(RoomBlock.state == BlockState.ACTIVE, col(RoomBlock.last_day) >= today))
        )
        claims: dict[int | None, int] = dict(
            s.execute(
                sa.select(col(SlotClaim.block_id), sa.func.count())
                .where(
                    col(SlotClaim.block_id).in_([b.id for b in active]),
                    col(SlotClaim.active).is_(True),
                    col(SlotClaim.ends_at) > now,
                )
                .group_by(col(SlotClaim.block_id))
            ).all()
        )
        upcoming = {
            b.id
            for b in active
            if claims.get(b.id, 0)
            > len({(e["room"], e["day"]) for e in b.events if datetime.fromisoformat(e["ends_at"]) > now})
        }
        released = [b.id for b in s.exec(select(RoomBlock).where(RoomBlock.state == BlockState.RELEASED)) if b.events]
    for block_id in sorted(i for i in upcoming if i is not None):
        with _one_block(block_id):
            put_block_events(svc, block_id, actor=actor, now=now)
    for block_id in sorted(i for i in released if i is not None):
        with _one_block(block_id):
            delete_block_events(svc, block_id, actor=actor, now=now)
    return len(upcoming) + len(released)


@contextmanager
def _one_block(block_id: int) -> Iterator[None]:
    """One block that cannot be put right (its room gone from the catalogue) never stops the worker's round: the
    reminders, the outbox and the sync after it still run."""
    try:
        yield
    except ConfigError as exc:
        log.error("Block #%s: its calendar events could not be put right: %s", block_id, exc.message)
