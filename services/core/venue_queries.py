"""The Settings page's read model of the venue configuration: what saving an edit would change or why it cannot
(preview), the versions saved (history) and the export of the configuration in force as a rooms.toml. Reads only;
saving is services.core.venue."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from models.tables import AuditLog, VenueConfig
from services.core.catalogue import catalogue_toml
from services.core.errors import ValidationError
from services.core.settings import RULE_FIELDS
from services.core.venue_state import CHANGED, FieldChange, VenueEdit, apply_edit, booking_problems, changes, stale

if TYPE_CHECKING:
    from services.core.context import Services


@dataclass(frozen=True)
class Preview:
    """What saving an edit would change, or why it cannot be saved yet."""

    changes: list[FieldChange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def can_save(self) -> bool:
        return bool(self.changes) and not self.problems


def preview(svc: Services, edit: VenueEdit, *, now: datetime | None = None) -> Preview:
    """What saving `edit` would change, or every reason it cannot be saved: the validators' and the bookings'."""
    now = now or svc.now()
    state = svc.venue
    problems = [why] if (why := stale(state, edit)) else []
    try:
        draft = apply_edit(state, edit, today=now.astimezone(state.settings.tz).date())
    except ValidationError as exc:
        return Preview([], problems + exc.problems)
    found = changes(state, draft)
    if found:
        with svc.read_session() as s:
            problems += booking_problems(
                s, state.stored, draft.catalogue, now, state.settings.tz, (state.settings, draft.settings)
            )
    return Preview(found, problems)


@dataclass(frozen=True)
class VersionRow:
    version: int
    saved_at: datetime
    actor: str
    note: str
    changes: list[str]


def history(svc: Services, *, limit: int = 50) -> list[VersionRow]:
    """The versions saved, newest first, each with what it changed (its audit rows' sentences)."""
    with svc.read_session() as s:
        rows = s.exec(select(VenueConfig).order_by(col(VenueConfig.version).desc()).limit(limit)).all()
        if not rows:
            return []
        # A version's audit rows are written with it: none is older than the oldest version listed.
        audits = s.exec(
            select(AuditLog)
            .where(AuditLog.action == CHANGED, col(AuditLog.at) >= rows[-1].created_at)
            .order_by(col(AuditLog.id))
        ).all()
    said: dict[int, list[str]] = {}
    for a in audits:
        version = a.payload.get("version")
        if isinstance(version, int):
            said.setdefault(version, []).append(str(a.payload.get("message", "")))
    return [VersionRow(r.version, r.created_at, r.actor, r.note, said.get(r.version, [])) for r in rows]


def export_toml(svc: Services, *, now: datetime | None = None) -> str:
    """The configuration in force as a rooms.toml (the seed's format: it loads with load_catalogue), the rules in
    force as comments in the environment's own names, for a new install or a backup. Closure blocks are not in it:
    they are blocks, with their calendar events, not catalogue closures."""
    state = svc.venue
    now = now or svc.now()
    made = now.astimezone(state.settings.tz)
    title = "the first-run seed" if state.is_seed else f"version {state.version}"
    rules = state.settings.rules()
    lines = [
        f"Room Desk venue configuration, {title}, exported {made:%Y-%m-%d %H:%M} ({state.settings.venue_timezone}).",
        "Use it as ROOMS_FILE on a new install. The venue rules in force, as environment variables:",
        *(f"  {key.upper()}={_env_value(rules[key])}" for key in RULE_FIELDS),
    ]
    return catalogue_toml(state.stored, header="\n".join(lines))


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value[:5] if len(value) == 8 and value[2] == ":" else value  # 08:00:00 → 08:00
    return json.dumps(value, separators=(",", ":"))
