"""The venue configuration in force and the cache every process keeps of it: VenueState (rooms, prices, closures,
the venue rules and staff roles), an admin's edit checked by the same validators as rooms.toml and the environment
(apply_edit), what it changes, old → new (changes), and what the bookings forbid (room_problems). Reads only: the
Settings page's read model is services.core.venue_queries, saving a version is services.core.venue.

Bookings never read this back: each keeps its own day prices (BookingLeg.price_cents) and the pricing and refund
policy it was sold under (Booking.pricing_snapshot / policy_snapshot), so a new version changes only what is sold
from then on.

Every process (dashboard, API, worker) reads `svc.catalogue` and `svc.policy` on hot paths, so each keeps the state
in a VenueCache and asks the database at most every REFRESH_SECONDS whether the newest version or the venue's active
closure blocks changed — two small reads — and rebuilds only then. The process that saves (or closes the venue)
calls `svc.reload_venue()` and sees its change at once.

The cache reads through a raw DBAPI connection, outside any SQLAlchemy transaction: `svc.catalogue` is read inside
open sessions, and on SQLite every transaction begins with BEGIN IMMEDIATE (models.db), so a second transaction
from the same thread would wait for its own write lock. A plain SELECT in WAL mode takes no lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import ValidationError as PydanticError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.tables import BlockState, Booking, RoomBlock, SlotClaim
from services.core.catalogue import FIELD_LABELS, Catalogue, Closure, ExtraField, Room, catalogue_problems
from services.core.errors import ConfigError, ValidationError
from services.core.roles import ROLES
from services.core.settings import RULE_FIELDS, Settings
from services.rules.contact import validate_email
from services.rules.fmt import day_label, hhmm, money, plural, weekdays_label
from services.rules.policy import Policy, RefundBand
from services.rules.refunds import describe_bands

log = logging.getLogger("roomdesk")

REFRESH_SECONDS = 2.0

# The audit action of one changed field (one row per field, with the version it went into).
CHANGED = "settings.changed"

RULE_LABELS = {
    "open_time": "Opening time",
    "close_time": "Closing time",
    "open_weekdays": "Open days",
    "buffer_minutes": "Buffer between bookings",
    "min_notice_hours": "Minimum notice",
    "max_days_ahead": "Furthest ahead",
    "max_days_per_booking": "Days in one booking",
    "refund_bands": "Refund bands",
    "refund_policy_version": "Refund policy version",
    "discount_bands": "Multi-day discount",
    "staff_roles": "Staff roles",
}


@dataclass(frozen=True)
class VenueState:
    """The configuration in force: the highest saved version, or (version 0) the first-run seed — config/rooms.toml
    and the rule values of the environment. `catalogue` is what every rule uses: the saved rooms and closures plus
    the venue's active closure blocks (made with Block a room); `stored` is the saved catalogue alone (what
    Settings edits and exports)."""

    version: int
    stored: Catalogue
    settings: Settings
    staff_roles: Mapping[str, str]
    catalogue: Catalogue
    policy: Policy
    block_closures: tuple[Closure, ...] = ()
    saved_by: str = ""
    note: str = ""

    @property
    def is_seed(self) -> bool:
        return self.version == 0


def venue_state(
    version: int,
    stored: Catalogue,
    settings: Settings,
    staff_roles: Mapping[str, str],
    *,
    block_closures: Sequence[Closure] = (),
    saved_by: str = "",
    note: str = "",
) -> VenueState:
    """A state with its derived parts (the catalogue with the closure blocks, the policy) computed once."""
    blocks = tuple(block_closures)
    catalogue = stored.model_copy(update={"closures": (*stored.closures, *blocks)}) if blocks else stored
    return VenueState(
        version, stored, settings, dict(staff_roles), catalogue, settings.policy(), blocks, saved_by, note
    )


def seed_state(settings: Settings, seed: Catalogue, block_closures: Sequence[Closure] = ()) -> VenueState:
    """Nothing saved yet: the rooms file and the environment, as before Settings could edit them."""
    return venue_state(0, seed, settings, settings.staff_roles, block_closures=block_closures)


def saved_state(
    settings: Settings,
    version: int,
    catalogue: Mapping[str, Any],
    rules: Mapping[str, Any],
    staff_roles: Mapping[str, str],
    *,
    block_closures: Sequence[Closure] = (),
    saved_by: str = "",
    note: str = "",
) -> VenueState:
    """A saved version read back, validated again (a version saved by an older release must still make sense)."""
    source = f"Saved settings version {version}"
    try:
        stored = Catalogue.model_validate(dict(catalogue))
    except PydanticError as exc:
        raise ConfigError(f"{source} is invalid: " + "; ".join(catalogue_problems(exc, catalogue))) from None
    try:
        in_force = settings.with_rules({k: v for k, v in rules.items() if k in RULE_FIELDS}, staff_roles)
    except PydanticError as exc:
        raise ConfigError(f"{source} is invalid: " + "; ".join(rule_problems(exc))) from None
    return venue_state(
        version,
        stored,
        in_force,
        in_force.staff_roles,
        block_closures=block_closures,
        saved_by=saved_by,
        note=note,
    )


# --------------------------------------------------------------------------------------------- an admin's edit


@dataclass(frozen=True)
class VenueEdit:
    """One section of Settings as the admin left it, on top of version `base_version` (the one they were shown).
    A section left None keeps what is in force. Rooms and closures are raw rows (rooms.toml's keys) validated with
    the catalogue's own models; rules are RULE_FIELDS values validated with the settings' own validators."""

    base_version: int
    rooms: tuple[Mapping[str, Any], ...] | None = None
    rules: Mapping[str, Any] | None = None
    closures: tuple[Mapping[str, Any], ...] | None = None
    staff_roles: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Draft:
    """What a version would hold: checked, not saved."""

    catalogue: Catalogue
    settings: Settings
    staff_roles: dict[str, str]


@dataclass(frozen=True)
class FieldChange:
    """One field an edit changes, as the preview and the audit row say it: 'Boardroom hourly price $45.00 → $50.00'."""

    field: str  # rooms.boardroom.hourly_price_cents, rules.buffer_minutes, closures.2026-12-24, staff_roles.<email>
    old: str  # as a person reads it; "" when the thing is new
    new: str  # "" when it goes
    sentence: str


def stale(state: VenueState, edit: VenueEdit) -> str | None:
    """Why an edit started on another version than the one in force cannot be saved as it is; None if it can."""
    if edit.base_version == state.version:
        return None
    who = f" by {state.saved_by}" if state.saved_by else ""
    return f"The settings were saved{who} meanwhile (now version {state.version}): look at them again before saving"


def apply_edit(state: VenueState, edit: VenueEdit, *, today: date) -> Draft:
    """The configuration the edit makes, every part validated; raises ValidationError with one sentence per
    problem, naming the room (or rule) and the field."""
    problems: list[str] = []
    catalogue = _edited_catalogue(state, edit, problems)
    roles = _edited_roles(state, edit, problems)
    unknown = sorted(set(edit.rules or {}) - set(RULE_FIELDS))
    problems += [f"{key}: not a venue rule Settings can change" for key in unknown]
    rules = state.settings.rules() | {k: v for k, v in (edit.rules or {}).items() if k in RULE_FIELDS}
    settings = state.settings
    try:
        settings = state.settings.with_rules(rules, roles)
    except PydanticError as exc:
        problems += rule_problems(exc)
    if problems or catalogue is None:
        raise ValidationError(problems or ["The rooms could not be read"])
    if _bands(settings.refund_bands) != _bands(state.settings.refund_bands) and "refund_policy_version" not in (
        edit.rules or {}
    ):
        # Bookings keep the version they were sold under: a new set of bands is a new version of the policy.
        settings = settings.model_copy(update={"refund_policy_version": f"{today:%Y-%m}-v{state.version + 1}"})
    return Draft(catalogue, settings, dict(settings.staff_roles))


def _bands(bands: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    return sorted((int(h), int(p)) for h, p in bands)


def _edited_catalogue(state: VenueState, edit: VenueEdit, problems: list[str]) -> Catalogue | None:
    data: dict[str, Any] = state.stored.model_dump(mode="json")
    if edit.rooms is not None:
        data["rooms"] = [dict(r) for r in edit.rooms]
    if edit.closures is not None:
        data["closures"] = [dict(c) for c in edit.closures]
        days = [str(c.get("date")) for c in data["closures"]]
        problems += [f"Closures: {day} is listed twice" for day in sorted({d for d in days if days.count(d) > 1})]
    try:
        return Catalogue.model_validate(data)
    except PydanticError as exc:
        problems += catalogue_problems(exc, data, friendly=True)
        return None


def _edited_roles(state: VenueState, edit: VenueEdit, problems: list[str]) -> dict[str, str]:
    if edit.staff_roles is None:
        return dict(state.staff_roles)
    roles: dict[str, str] = {}
    for email, role in edit.staff_roles.items():
        try:
            address = validate_email(str(email))
        except ValueError as exc:
            problems.append(f"Staff roles, {email or '(empty)'}: {exc}")
            continue
        if address in roles:
            problems.append(f"Staff roles: {address} is listed twice")
        roles[address] = str(role)
    if roles != dict(state.staff_roles) and "admin" not in roles.values():
        problems.append("Staff roles: keep at least one admin, or nobody could sign in to change the settings again")
    return roles


def rule_problems(exc: PydanticError) -> list[str]:
    """The settings validators' errors as sentences naming the rule ('Buffer between bookings: …')."""
    out = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Input ")
        loc = [str(p) for p in err["loc"]]
        if not loc:
            label = "Opening hours"
            msg = msg.replace("close_time must be after open_time", "the closing time must be after the opening time")
        else:
            label = RULE_LABELS.get(loc[0], loc[0])
        out.append(f"{label}: {msg}")
    return out


# --------------------------------------------------------------------------------------------- old → new


def changes(state: VenueState, draft: Draft) -> list[FieldChange]:
    """Every field the draft changes, in the order Settings shows them."""
    currency = state.settings.currency
    return [
        *_venue_changes(state.stored, draft.catalogue),
        *_room_changes(state.stored, draft.catalogue, currency),
        *_rule_changes(state.settings, draft.settings),
        *_closure_changes(state.stored, draft.catalogue),
        *_role_changes(state.staff_roles, draft.staff_roles),
    ]


def _venue_changes(old: Catalogue, new: Catalogue) -> list[FieldChange]:
    out = []
    for key, value in new.venue.model_dump().items():
        before = getattr(old.venue, key)
        if value != before:
            out.append(FieldChange(f"venue.{key}", before, value, f"Venue {key} {before or '—'} → {value or '—'}"))
    return out


# The room fields a change is said of, in the order Settings lists them (named as catalogue.FIELD_LABELS names them).
ROOM_FIELDS = (
    "name",
    "calendar_id",
    "hourly_price_cents",
    "capacity",
    "min_hours",
    "discount_eligible",
    "bookable",
    "agreement_required",
    "description",
    "extras",
    "deposit_cents",
    "deposit_hold_hours",
    "deposit_claim_hours",
)


def _room_changes(old: Catalogue, new: Catalogue, currency: str) -> list[FieldChange]:
    before = {r.slug: r for r in old.rooms}
    after = {r.slug: r for r in new.rooms}
    out = []
    for slug, room in after.items():
        if slug not in before:
            text = f"{room.name} ({slug}), {money(room.hourly_price_cents, currency)} an hour, up to {room.capacity}"
            out.append(FieldChange(f"rooms.{slug}", "", text, f"Room added: {text}"))
            continue
        was = before[slug]
        for key in ROOM_FIELDS:
            word = FIELD_LABELS[key]
            a, b = _room_value(was, key, currency), _room_value(room, key, currency)
            if a == b:
                continue
            sentence = f"{was.name} renamed {b}" if key == "name" else f"{was.name} {word} {a or '—'} → {b or '—'}"
            out.append(FieldChange(f"rooms.{slug}.{key}", a, b, sentence))
    for slug, room in before.items():
        if slug not in after:
            out.append(FieldChange(f"rooms.{slug}", room.name, "", f"Room removed: {room.name} ({slug})"))
    return out


def _room_value(room: Room, key: str, currency: str) -> str:
    value = getattr(room, key)
    if key == "hourly_price_cents":
        return money(value, currency)
    if key == "deposit_cents":
        return money(value, currency) if value else "none"
    if key in ("deposit_hold_hours", "deposit_claim_hours"):
        return f"{value} h"
    if key == "min_hours":
        return f"{value:g} h"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "extras":
        return "; ".join(_question(q) for q in value) or "none"
    if key == "description" and len(value) > 60:
        return value[:59] + "…"
    return str(value)


def _question(q: ExtraField) -> str:
    """'Set choice (choice of Podcast table / Band rehearsal, required)'."""
    kind = f"choice of {' / '.join(q.choices)}" if q.kind == "choice" else q.kind
    if q.kind == "int" and (q.min is not None or q.max is not None):
        kind += f" {q.min if q.min is not None else '…'}–{q.max if q.max is not None else '…'}"
    return f"{q.label} ({kind}, {'required' if q.required else 'optional'})"


def rule_value(settings: Settings, key: str) -> str:
    """A venue rule as a person reads it ('08:00', 'Mon, Tue', '15 min', 'Full refund 48 h or more before; …')."""
    value = getattr(settings, key)
    if key in ("open_time", "close_time"):
        return hhmm(value)
    if key == "open_weekdays":
        return weekdays_label(value)
    if key == "buffer_minutes":
        return f"{value} min"
    if key == "min_notice_hours":
        return f"{value} h"
    if key in ("max_days_ahead", "max_days_per_booking"):
        return plural(value, "day")
    if key == "refund_bands":
        return describe_bands(tuple(RefundBand(h, p) for h, p in value))
    if key == "discount_bands":
        return discount_text(value)
    return str(value)


def discount_text(bands: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{p} % from {d} days" for d, p in sorted(bands)) or "none"


def _rule_changes(old: Settings, new: Settings) -> list[FieldChange]:
    out = []
    for key in RULE_FIELDS:
        a, b = rule_value(old, key), rule_value(new, key)
        if a != b:
            out.append(FieldChange(f"rules.{key}", a, b, f"{RULE_LABELS[key]}: {a} → {b}"))
    return out


def _closure_changes(old: Catalogue, new: Catalogue) -> list[FieldChange]:
    before = {c.date: c.reason for c in old.closures}
    after = {c.date: c.reason for c in new.closures}
    out = []
    for day in sorted(before.keys() | after.keys()):
        a, b = before.get(day), after.get(day)
        label = f"{day_label(day)} {day.year}"
        if a == b:
            continue
        if a is None:
            out.append(FieldChange(f"closures.{day}", "", b or "", f"Closure added: {label} — {b}"))
        elif b is None:
            out.append(FieldChange(f"closures.{day}", a, "", f"Closure removed: {label} ({a})"))
        else:
            out.append(FieldChange(f"closures.{day}", a, b, f"Closure {label} reason {a} → {b}"))
    return out


def _role_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[FieldChange]:
    out = []
    for email in sorted(old.keys() | new.keys()):
        a, b = ROLES.get(old.get(email, ""), ""), ROLES.get(new.get(email, ""), "")
        if a == b:
            continue
        if not a:
            sentence = f"Staff role added: {email} — {b}"
        elif not b:
            sentence = f"Staff role removed: {email} (was {a})"
        else:
            sentence = f"Staff role of {email} {a} → {b}"
        out.append(FieldChange(f"staff_roles.{email}", a, b, sentence))
    return out


# --------------------------------------------------------------------------------------------- rooms in use


def booking_problems(
    session: Session,
    old: Catalogue,
    new: Catalogue,
    now: datetime,
    tz: ZoneInfo,
    rules: tuple[Settings, Settings] | None = None,
) -> list[str]:
    """What the bookings forbid: a room that has bookings cannot leave the catalogue (its bookings name it; make it
    not bookable instead); a room's calendar cannot change while days are booked or held on it to come (their
    events are on the old calendar); a day with bookings cannot become a closure (closing it would cancel nothing);
    and (with the rules before and after) opening longer or on more days while whole-day blocks lie ahead: they
    claimed the old opening hours, so the new hours of a room under renovation would be on sale."""
    found = _room_problems(session, old, new, now, tz) + _closure_problems(session, old, new, tz)
    if rules is not None:
        found += _whole_day_block_problems(session, *rules, now.astimezone(tz).date())
    return found


def _whole_day_block_problems(session: Session, before: Settings, after: Settings, today: date) -> list[str]:
    wider = (
        after.open_time < before.open_time
        or after.close_time > before.close_time
        or bool(set(after.open_weekdays) - set(before.open_weekdays))
    )
    if not wider:
        return []
    ahead = session.exec(
        select(RoomBlock.id, RoomBlock.reason)
        .where(
            RoomBlock.state == BlockState.ACTIVE,
            col(RoomBlock.start_time).is_(None),
            col(RoomBlock.last_day) >= today,
        )
        .order_by(col(RoomBlock.id))
    ).all()
    if not ahead:
        return []
    names = ", ".join(f"#{i} ({reason})" for i, reason in ahead)
    return [
        f"Longer opening hours or more open days would leave the whole-day blocks ahead ({names}) covering the old "
        "hours only: release them on Blocks & closures, save, then block again"
    ]


def _room_problems(session: Session, old: Catalogue, new: Catalogue, now: datetime, tz: ZoneInfo) -> list[str]:
    after = {r.slug: r for r in new.rooms}
    problems = []
    for room in old.rooms:
        if room.slug not in after:
            n = session.exec(select(sa.func.count()).select_from(Booking).where(Booking.room_slug == room.slug)).one()
            if n:
                problems.append(
                    f"{room.name} has {plural(int(n), 'booking')}: it cannot be removed — untick Bookable instead"
                )
                continue
            # A block (its claims, its events the worker still puts or deletes) names the room too.
            blocked = session.exec(
                select(sa.func.count())
                .select_from(SlotClaim)
                .where(SlotClaim.room_slug == room.slug, col(SlotClaim.block_id).is_not(None))
            ).one()
            if blocked:
                problems.append(
                    f"{room.name} has been blocked on Blocks & closures: it cannot be removed — untick Bookable instead"
                )
        elif after[room.slug].calendar_id != room.calendar_id:
            claims = session.exec(
                select(SlotClaim.starts_at)
                .where(SlotClaim.room_slug == room.slug, col(SlotClaim.active).is_(True), SlotClaim.ends_at > now)
                .order_by(col(SlotClaim.starts_at))
            ).all()
            if claims:
                first = claims[0].astimezone(tz).date()
                problems.append(
                    f"{room.name}: the calendar id cannot change while {plural(len(claims), 'day')} from "
                    f"{day_label(first)} {first.year} are booked, held or blocked on it (their events are on the old "
                    "calendar). Move or cancel them first, or make this room not bookable and add a new one"
                )
    return problems


def _closure_problems(session: Session, old: Catalogue, new: Catalogue, tz: ZoneInfo) -> list[str]:
    problems = []
    for day in sorted({c.date for c in new.closures} - {c.date for c in old.closures}):
        start = datetime(day.year, day.month, day.day, tzinfo=tz)  # the venue's midnight, then the next one
        end = datetime.combine(day + timedelta(days=1), start.timetz())
        refs = session.exec(
            select(Booking.reference)
            .join(SlotClaim, col(SlotClaim.booking_id) == Booking.id)
            .where(col(SlotClaim.active).is_(True), SlotClaim.starts_at < end, SlotClaim.ends_at > start)
            .distinct()
            .order_by(Booking.reference)
        ).all()
        if refs:
            shown = ", ".join(refs[:3]) + (f" and {len(refs) - 3} more" if len(refs) > 3 else "")
            problems.append(
                f"Closures: {day_label(day)} {day.year} has bookings ({shown}) — move or cancel them first "
                "(a closure does not cancel them)"
            )
    return problems


# --------------------------------------------------------------------------------------------- the cache


REFRESH_SECONDS = 2.0

# (newest version or 0, the active closure blocks as (id, first day, last day, reason))
Stamp = tuple[int, tuple[tuple[int, date, date, str], ...]]


class VenueCache:
    """One process's copy of the configuration in force, checked against the database at most every `interval`
    seconds (monotonic clock); `invalidate()` makes the next read check at once."""

    def __init__(self, *, interval: float = REFRESH_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._state: VenueState | None = None
        self._stamp: Stamp | None = None
        self._next_check = float("-inf")

    def invalidate(self) -> None:
        self._next_check = float("-inf")

    def forget(self) -> None:
        """The seed changed (a test, or a process replacing its rooms file): build the state again."""
        with self._lock:
            self._state, self._stamp = None, None
            self._next_check = float("-inf")

    def current(self, engine: Engine, settings: Settings, seed: Catalogue) -> VenueState:
        state = self._state
        if state is not None and self.monotonic() < self._next_check:
            return state
        with self._lock:
            now = self.monotonic()
            if self._state is not None and now < self._next_check:
                return self._state
            self._next_check = now + self.interval
            try:
                stamp = read_stamp(engine)
                if self._state is None or stamp != self._stamp:
                    self._state = read_state(engine, settings, seed, stamp)
                    self._stamp = stamp
            except DatabaseAway as exc:
                # The database is away: keep serving what was in force (the seed at first) and look again later.
                log.warning("The venue configuration could not be read (%s); keeping the last one", exc)
                if self._state is None:
                    self._state = seed_state(settings, seed)
            return self._state


class DatabaseAway(Exception):
    """The configuration could not be read (the database is unreachable, or not migrated yet)."""


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """A plain SELECT without parameters on a pooled DBAPI connection, outside any transaction (see above)."""
    try:
        raw = engine.raw_connection()
    except Exception as exc:
        raise DatabaseAway(type(exc).__name__) from exc
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()
    except Exception as exc:
        raise DatabaseAway(type(exc).__name__) from exc
    finally:
        raw.close()


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def read_stamp(engine: Engine) -> Stamp:
    """What decides whether the state must be built again: the newest version and the active closure blocks."""
    ((newest,),) = _rows(engine, "SELECT MAX(version) FROM venue_config")
    blocks = _rows(
        engine,
        "SELECT id, first_day, last_day, reason FROM room_block "
        "WHERE kind = 'closure' AND state = 'active' ORDER BY id",
    )
    return int(newest or 0), tuple((int(i), _day(a), _day(b), str(r)) for i, a, b, r in blocks)


def read_state(engine: Engine, settings: Settings, seed: Catalogue, stamp: Stamp) -> VenueState:
    closures = block_closures(stamp[1])
    if stamp[0] == 0:
        return seed_state(settings, seed, closures)
    ((version, catalogue, rules, roles, actor, note),) = _rows(
        engine,
        f"SELECT version, catalogue, rules, staff_roles, actor, note FROM venue_config WHERE version = {int(stamp[0])}",
    )
    return saved_state(
        settings,
        int(version),
        _json(catalogue),
        _json(rules),
        _json(roles),
        block_closures=closures,
        saved_by=str(actor),
        note=str(note or ""),
    )


def block_closures(blocks: tuple[tuple[int, date, date, str], ...]) -> tuple[Closure, ...]:
    """Each day of each active closure block as a catalogue closure with the block's reason, so every rule that
    reads the closures (quotes, the public calendar, reconciliation) refuses it."""
    out = []
    for _, first, last, reason in blocks:
        day = first
        while day <= last:
            out.append(Closure(date=day, reason=reason or "Venue closed"))
            day += timedelta(days=1)
    return tuple(out)
