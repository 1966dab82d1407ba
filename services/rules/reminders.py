"""Which booked days get their reminder email now (pure: the caller passes `now` and the candidate days).

A day's reminder is due from `hours` before it starts until it starts. Hours are elapsed time, as in the refund
bands: across a daylight-saving change the reminder keeps its distance from the start, so its wall-clock time moves
by the hour the clocks did. A day booked inside that window gets none: the confirmation has just told the customer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ReminderCandidate:
    """One day of a booking, as the reminder rule needs it. `booked` is False for a day that is not (or no longer)
    going ahead: cancelled, refunded, failed, unpaid."""

    key: int  # the caller's id for the day (the leg's id)
    starts_at: datetime
    booked_at: datetime  # when its booking was made
    booked: bool = True


def reminder_opens(starts_at: datetime, hours: int) -> datetime:
    """When the day's reminder becomes due."""
    return starts_at - timedelta(hours=hours)


def reminder_due(day: ReminderCandidate, now: datetime, hours: int) -> bool:
    """Is this day's reminder due at `now` (whether it was already sent is the outbox's business)?"""
    for moment in (day.starts_at, day.booked_at, now):
        if moment.tzinfo is None:
            raise ValueError("times must be timezone-aware")
    opens = reminder_opens(day.starts_at, hours)
    return day.booked and opens <= now < day.starts_at and day.booked_at <= opens


def due_reminders(days: Iterable[ReminderCandidate], now: datetime, hours: int) -> list[ReminderCandidate]:
    """The days whose reminder is due at `now`, earliest first."""
    return sorted((d for d in days if reminder_due(d, now, hours)), key=lambda d: (d.starts_at, d.key))
