"""What a customer may change on their own manage page, and until when (pure: the caller passes `now`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta


def change_deadline(day_start: datetime, cutoff_hours: int) -> datetime:
    """The last moment the customer may change or cancel a day themselves."""
    if day_start.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return day_start - timedelta(hours=cutoff_hours)


def open_for_changes(day_start: datetime, now: datetime, cutoff_hours: int) -> bool:
    """True until `cutoff_hours` (elapsed hours, like the refund bands) before the day starts; after that the venue
    makes the changes. A cut-off of 0 still closes a day once it has started."""
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return now < change_deadline(day_start, cutoff_hours)


def closed_among(starts: Iterable[datetime], now: datetime, cutoff_hours: int) -> list[datetime]:
    """The starts of the days a customer's change touches — each day as it is and as it would become (moving a day
    into the closed window is the venue's call too) — that are already inside the cut-off, earliest first."""
    return sorted(start for start in starts if not open_for_changes(start, now, cutoff_hours))
