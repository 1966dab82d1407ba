"""The room catalogue: the single source of truth for pricing, capacity, minimum hours and what is bookable.

Loaded from a TOML file (`ROOMS_FILE`) and validated; an error names the room and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from services.core.errors import ConfigError
from services.rules.deposits import DepositTerms

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class ExtraField(BaseModel):
    """One question of a room's extras form (e.g. the Sonic Studio's show name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(min_length=1)
    kind: Literal["text", "int", "choice"] = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _choices(self) -> ExtraField:
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice field needs 'choices'")
        return self


class Room(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str
    name: str = Field(min_length=1)
    calendar_id: str = Field(min_length=3)
    hourly_price_cents: int = Field(gt=0, le=10_000_00)
    capacity: int = Field(gt=0, le=1000)
    min_hours: float = Field(default=1, gt=0, le=9)
    discount_eligible: bool = False
    bookable: bool = True
    agreement_required: bool = False
    description: str = ""
    extras: tuple[ExtraField, ...] = ()
    # A damage deposit held on the customer's card (0: none): the hold is placed `deposit_hold_hours` before the
    # first day and released `deposit_claim_hours` after the last, unless a claim is filed (services.rules.deposits).
    deposit_cents: int = Field(default=0, ge=0, le=10_000_00)
    deposit_hold_hours: int = 48
    deposit_claim_hours: int = 72

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("use lower-case letters, digits and dashes, like 'board-room'")
        return value

    @model_validator(mode="after")
    def _unique_extras(self) -> Room:
        keys = [e.key for e in self.extras]
        if len(keys) != len(set(keys)):
            raise ValueError("extras: each key must be unique")
        return self

    @model_validator(mode="after")
    def _deposit(self) -> Room:
        if self.deposit_terms is not None and (problems := self.deposit_terms.problems()):
            raise ValueError("deposit: " + "; ".join(problems))
        return self

    @property
    def min_minutes(self) -> int:
        return round(self.min_hours * 60)

    @property
    def deposit_terms(self) -> DepositTerms | None:
        """What the room's damage deposit asks, or None when it asks none."""
        if not self.deposit_cents:
            return None
        return DepositTerms(self.deposit_cents, self.deposit_hold_hours, self.deposit_claim_hours)

    def validate_extras(self, values: dict[str, object] | None) -> tuple[dict[str, object], list[str]]:
        """Clean the extras a customer gave; returns (clean values, problems a person can fix)."""
        values = values or {}
        clean: dict[str, object] = {}
        problems: list[str] = []
        for f in self.extras:
            raw = values.get(f.key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if f.required:
                    problems.append(f"{f.label} is required for the {self.name}")
                continue
            if f.kind == "int":
                try:
                    number = int(str(raw).strip())
                except ValueError:
                    problems.append(f"{f.label} must be a whole number")
                    continue
                if (f.min is not None and number < f.min) or (f.max is not None and number > f.max):
                    problems.append(f"{f.label} must be between {f.min} and {f.max}")
                    continue
                clean[f.key] = number
            elif f.kind == "choice":
                if str(raw) not in f.choices:
                    problems.append(f"{f.label} must be one of: {', '.join(f.choices)}")
                    continue
                clean[f.key] = str(raw)
            else:
                clean[f.key] = str(raw).strip()[:200]
        return clean, problems


class Closure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: date
    reason: str = "Venue closed"


class Venue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "Room Desk Venue"
    address: str = ""
    email: str = ""
    phone: str = ""


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    venue: Venue = Venue()
    rooms: tuple[Room, ...]
    closures: tuple[Closure, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        for attr in ("slug", "calendar_id"):
            seen: set[str] = set()
            for room in self.rooms:
                value = getattr(room, attr)
                if value in seen:
                    raise ValueError(f"room '{room.slug}': {attr} {value!r} is used by two rooms")
                seen.add(value)
        if not self.rooms:
            raise ValueError("the catalogue has no rooms")
        return self

    def room(self, slug: str) -> Room:
        for room in self.rooms:
            if room.slug == slug:
                return room
        raise ConfigError(f"Unknown room {slug!r}")

    def room_by_calendar(self, calendar_id: str) -> Room | None:
        return next((r for r in self.rooms if r.calendar_id == calendar_id), None)

    @property
    def bookable_rooms(self) -> tuple[Room, ...]:
        return tuple(r for r in self.rooms if r.bookable)

    @property
    def closure_map(self) -> dict[date, str]:
        return {c.date: c.reason for c in self.closures}


DEPOSIT_FIELDS = ("deposit_cents", "deposit_hold_hours", "deposit_claim_hours")

# How Settings names a room's fields in a sentence (the TOML keys stay the names in rooms.toml's own errors).
FIELD_LABELS = {
    "slug": "slug",
    "name": "name",
    "calendar_id": "calendar id",
    "hourly_price_cents": "hourly price",
    "capacity": "capacity",
    "min_hours": "minimum hours",
    "discount_eligible": "multi-day discount",
    "bookable": "bookable",
    "agreement_required": "agreement required",
    "description": "description",
    "extras": "extras questions",
    "deposit_cents": "damage deposit",
    "deposit_hold_hours": "deposit hold (hours before)",
    "deposit_claim_hours": "deposit claim window (hours)",
    "date": "date",
    "reason": "reason",
}


def catalogue_problems(exc: ValidationError, data: object, *, friendly: bool = False) -> list[str]:
    """One line per error, naming the room (by slug or position) and the field: in rooms.toml's keys, or — for the
    Settings page (`friendly`) — by the room's name, the field in words and prices in dollars."""
    rooms = data.get("rooms") if isinstance(data, dict) else None
    raw_rooms = rooms if isinstance(rooms, list) else []
    line = _friendly_line if friendly else _toml_line
    return [line(err, raw_rooms) for err in exc.errors()]


def _room_of(loc: Sequence[object], rooms: Sequence[object]) -> dict[str, object] | None:
    """The raw room an error is about (loc = rooms, index, field…), or None when it is not about one room."""
    if len(loc) >= 2 and loc[0] == "rooms" and isinstance(loc[1], int):
        raw = rooms[loc[1]] if loc[1] < len(rooms) else None
        return raw if isinstance(raw, dict) else {}
    return None


def _toml_line(err: ErrorDetails, rooms: list[object]) -> str:
    loc = list(err["loc"])
    room = _room_of(loc, rooms)
    if room is None:
        return f"{'.'.join(str(p) for p in loc) or '(top level)'}: {err['msg']}"
    slug = room.get("slug")
    who = f"room '{slug}'" if slug else f"room #{int(str(loc[1])) + 1}"
    return f"{who}, field '{'.'.join(str(p) for p in loc[2:]) or '(room)'}': {err['msg']}"


def _friendly_line(err: ErrorDetails, rooms: list[object]) -> str:
    loc = list(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Input ")
    keys = [str(p) for p in loc[2:]]
    room = _room_of(loc, rooms)
    if room is not None:
        slug, name = room.get("slug"), room.get("name")
        if name:
            who = f"{name} ({slug})" if slug else str(name)
        else:
            who = f"Room '{slug}'" if slug else f"Room #{int(str(loc[1])) + 1}"
    elif len(loc) >= 2 and loc[0] == "closures" and isinstance(loc[1], int):
        who = f"Closure #{loc[1] + 1}"
    else:
        return msg[:1].upper() + msg[1:]
    field = FIELD_LABELS.get(keys[0], keys[0]) if keys else ""
    if keys[:1] == ["extras"] and len(keys) > 1:
        field = f"extras question #{int(keys[1]) + 1}" + (f" {FIELD_LABELS.get(keys[2], keys[2])}" if keys[2:] else "")
    if keys[:1] == ["hourly_price_cents"] and err["type"] in ("greater_than", "less_than_equal"):
        msg = "must be more than 0 and at most 10,000.00 an hour"
    if keys[:1] == ["deposit_cents"] and err["type"] in ("greater_than_equal", "less_than_equal"):
        msg = "must be 0 (none) to 10,000.00"
    return f"{who}, {field}: {msg}" if field else f"{who}: {msg}"


def parse_catalogue(data: dict[str, object], source: str = "rooms file") -> Catalogue:
    """Validate raw config; errors name the room (by slug or position) and the field."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid: " + "; ".join(catalogue_problems(exc, data))) from None


def load_catalogue(path: Path) -> Catalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Rooms file not found: {path.name} (set ROOMS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None
    return parse_catalogue(raw, source=path.name)


# --------------------------------------------------------------------------------------------- writing rooms.toml
# A small TOML writer for the one shape rooms.toml has (tables of strings, numbers, booleans, dates and lists of
# strings): the Settings page's export round-trips through load_catalogue. tomli-w would do it too, but it is not a
# dependency, and this shape needs fifty lines, not a package.


def catalogue_toml(catalogue: Catalogue, *, header: str = "") -> str:
    """The catalogue in rooms.toml's own format (`header` as comment lines first): venue, closures, rooms with their
    extras questions. Fields left empty (None, no choices) are left out, as a person writing the file would."""
    out = [f"# {_CONTROL.sub(' ', line)}".rstrip() for line in header.splitlines()]
    out += ["", "[venue]", *_pairs(catalogue.venue.model_dump())]
    for closure in catalogue.closures:
        out += ["", "[[closures]]", *_pairs(closure.model_dump())]
    for room in catalogue.rooms:
        # A room without a deposit is written without its (unused) deposit fields, as a person would.
        left_out = {"extras"} | (set() if room.deposit_cents else set(DEPOSIT_FIELDS))
        out += ["", "[[rooms]]", *_pairs(room.model_dump(exclude=left_out))]
        for extra in room.extras:
            out += ["", "  [[rooms.extras]]", *("  " + p for p in _pairs(extra.model_dump()))]
    return "\n".join(out).lstrip("\n") + "\n"


def _pairs(values: dict[str, object]) -> list[str]:
    return [f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None and value != ()]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"rooms.toml has no place for a {type(value).__name__}")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # not allowed in a TOML comment (a tab is)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, everything else as it is."""
    chars = (_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text)
    return '"' + "".join(chars) + '"'
