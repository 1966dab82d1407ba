"""The room catalogue: the single source of truth for pricing, capacity, minimum hours and what is bookable.

Loaded from a TOML file (`ROOMS_FILE`) and validated; an error names the room and the field.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.core.errors import ConfigError

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

    @property
    def min_minutes(self) -> int:
        return round(self.min_hours * 60)

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


def parse_catalogue(data: dict[str, object], source: str = "rooms file") -> Catalogue:
    """Validate raw config; errors name the room (by slug or position) and the field."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        rooms = data.get("rooms") if isinstance(data, dict) else None
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "rooms" and isinstance(loc[1], int):
                idx = loc[1]
                slug = None
                if isinstance(rooms, list) and idx < len(rooms) and isinstance(rooms[idx], dict):
                    slug = rooms[idx].get("slug")
                field = ".".join(str(p) for p in loc[2:]) or "(room)"
                who = f"room '{slug}'" if slug else f"room #{idx + 1}"
                lines.append(f"{who}, field '{field}': {err['msg']}")
            else:
                lines.append(f"{where or '(top level)'}: {err['msg']}")
        raise ConfigError(f"{source} is invalid: " + "; ".join(lines)) from None


def load_catalogue(path: Path) -> Catalogue:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Rooms file not found: {path.name} (set ROOMS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}") from None
    return parse_catalogue(raw, source=path.name)
