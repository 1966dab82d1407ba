"""Saving a new version of the venue configuration (Settings, admins): validated whole, refused when it changes
nothing or starts from an older version, written with one audit row per changed field. Every process picks the
version up through its VenueCache (services.core.venue_state); the saving process at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session, select

from models.tables import VenueConfig
from services.core import audit
from services.core.errors import InvalidState, ValidationError
from services.core.venue_state import (
    CHANGED,
    Draft,
    FieldChange,
    VenueEdit,
    VenueState,
    apply_edit,
    booking_problems,
    changes,
    stale,
)

if TYPE_CHECKING:
    from services.core.context import Services


@dataclass(frozen=True)
class VenueSaved:
    version: int
    changes: list[FieldChange]


def save_venue_config(
    svc: Services, edit: VenueEdit, *, actor: str, note: str = "", now: datetime | None = None
) -> VenueSaved:
    """Validate the whole configuration the edit makes, refuse a no-op, write the next version and one audit row per
    changed field (`settings.changed`: field, old → new). Existing bookings keep their own prices and policy."""
    now = now or svc.now()
    svc.reload_venue()
    state = svc.venue
    if why := stale(state, edit):
        raise InvalidState(why)
    draft = apply_edit(state, edit, today=now.astimezone(state.settings.tz).date())
    found = changes(state, draft)
    if not found:
        raise InvalidState("Nothing to save: these settings are already in force")
    note = note.strip()[:500]
    try:
        with svc.session() as s:
            _check_again(s, state, draft, now)
            _write(s, state.version + 1, draft, found, actor=actor, note=note, now=now)
    except sa.exc.IntegrityError:  # another process wrote the same version number first (PostgreSQL)
        raise InvalidState("Someone saved the settings at the same moment: look at them again") from None
    svc.reload_venue()
    return VenueSaved(state.version + 1, found)


def _check_again(s: Session, state: VenueState, draft: Draft, now: datetime) -> None:
    """Under the write transaction: still the version the edit was made on, and the bookings still allow it."""
    newest = s.exec(select(sa.func.max(VenueConfig.version))).one()
    if int(newest or 0) != state.version:
        raise InvalidState("The settings were saved by someone else meanwhile: look at them again")
    problems = booking_problems(
        s, state.stored, draft.catalogue, now, state.settings.tz, (state.settings, draft.settings)
    )
    if problems:
        raise ValidationError(problems)


def _write(
    s: Session, version: int, draft: Draft, found: list[FieldChange], *, actor: str, note: str, now: datetime
) -> None:
    """The version row and one audit row per changed field, in one transaction."""
    s.add(
        VenueConfig(
            version=version,
            catalogue=draft.catalogue.model_dump(mode="json"),
            rules=draft.settings.rules(),
            staff_roles=draft.staff_roles,
            note=note,
            actor=actor,
            created_at=now,
        )
    )
    for c in found:
        audit.record(
            s,
            CHANGED,
            actor=actor,
            at=now,
            field=c.field,
            old=c.old,
            new=c.new,
            version=version,
            note=note,
            message=c.sentence,
        )
