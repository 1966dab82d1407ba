"""A room's availability as customers and staff see it: per day in venue time, closed (with the reasons) or its free
and busy ranges. The API, the customer's booking page and the dashboard all show this one picture, and pick days and
times with the helpers below (the closed-days rule is services.rules.availability's, with the catalogue's closures)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel

from services.booking.claims import busy_times
from services.core.context import Services
from services.rules.availability import Busy, free_ranges
from services.rules.availability import closed_reasons as rules_closed_reasons
from services.rules.availability import is_open as rules_is_open
from services.rules.fmt import hhmm


class RangeOut(BaseModel):
    start: str
    end: str


class DayOut(BaseModel):
    date: date
    closed: bool
    reasons: list[str]
    free: list[RangeOut]
    busy: list[RangeOut]


class AvailabilityOut(BaseModel):
    room: str
    timezone: str
    days: list[DayOut]


def closed_reasons(svc: Services, day: date) -> list[str]:
    """Why the venue is shut all day, as sentences (empty when it is open)."""
    return [why[0].upper() + why[1:] for why in rules_closed_reasons(day, svc.policy, svc.catalogue.closure_map)]


def is_open(svc: Services, day: date) -> bool:
    """The venue opens on `day`: an open weekday, no observed holiday, no closure."""
    return rules_is_open(day, svc.policy, svc.catalogue.closure_map)


def open_days(svc: Services, first: date, last: date) -> list[date]:
    """The days the venue is open from `first` to `last`, both included."""
    return [
        first + timedelta(days=i) for i in range((last - first).days + 1) if is_open(svc, first + timedelta(days=i))
    ]


def next_open_day(svc: Services, day: date, *, step: int = 1) -> date:
    """`day` if the venue opens then, else the nearest open day after it (`step=1`) or before it (`step=-1`); `day`
    itself when nothing within a year is open."""
    for i in range(366):
        candidate = day + timedelta(days=i * step)
        if is_open(svc, candidate):
            return candidate
    return day


def open_days_from(svc: Services, first: date, count: int) -> list[date]:
    """`first` as given (a closed day stays, so a quote can say why), then the open days after it, `count` in all."""
    out, day = [first], first
    while len(out) < count:
        day = next_open_day(svc, day + timedelta(days=1))
        out.append(day)
    return out


def week_of(svc: Services, day: date) -> list[date]:
    """The days of `day`'s week (Monday first) on the venue's opening weekdays. Holidays and closures stay in: a
    timetable shows them closed."""
    monday = day - timedelta(days=day.weekday())
    return [monday + timedelta(days=i) for i in range(7) if i in svc.policy.open_weekdays]


def slot_times(svc: Services) -> list[time]:
    """The times a booking may start or end at: opening to closing on the slot grid."""
    policy = svc.policy
    step = policy.slot_minutes
    first = policy.open_time.hour * 60 + policy.open_time.minute
    last = policy.close_time.hour * 60 + policy.close_time.minute
    return [time(m // 60, m % 60) for m in range(first, min(last, 24 * 60 - 1) + 1, step)]


def booking_window(svc: Services, now: datetime | None = None) -> tuple[date, date]:
    """The first and last venue days a customer may book now (the rules' notice and how far ahead)."""
    now = now or svc.now()
    tz = svc.policy.tz
    first = (now + timedelta(hours=svc.policy.min_notice_hours)).astimezone(tz).date()
    return first, (now + timedelta(days=svc.policy.max_days_ahead)).astimezone(tz).date()


def outside_window(svc: Services, day: date, window: tuple[date, date]) -> str | None:
    """Why `day` cannot be booked now because of when it is, or None inside the booking window."""
    if day > window[1]:
        return f"More than {svc.policy.max_days_ahead} days ahead"
    if day < window[0]:
        return f"Within the {svc.policy.min_notice_hours}-hour notice or in the past"
    return None


def availability(svc: Services, room: str, first: date, last: date, *, now: datetime | None = None) -> AvailabilityOut:
    """Per day, in venue time: closed days with their reasons (days outside the booking window too, never listed as
    free), otherwise free and busy ranges."""
    policy = svc.policy
    tz = policy.tz
    window = booking_window(svc, now)
    inside_first, inside_last = max(first, window[0]), min(last, window[1])
    busy: list[Busy] = []
    if inside_first <= inside_last:  # only the window's days are looked up: far dates never reach a datetime
        start = datetime.combine(inside_first, policy.open_time, tzinfo=tz)
        end = datetime.combine(inside_last, policy.close_time, tzinfo=tz)
        busy = busy_times(svc, room, start, end, now)
    days = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        too_early_or_late = outside_window(svc, day, window)
        reasons = [too_early_or_late] if too_early_or_late else closed_reasons(svc, day)
        if reasons:
            days.append(DayOut(date=day, closed=True, reasons=reasons, free=[], busy=[]))
        else:
            open_at = datetime.combine(day, policy.open_time, tzinfo=tz)
            close_at = datetime.combine(day, policy.close_time, tzinfo=tz)
            today: list[Busy] = sorted(
                (b for b in busy if b.starts_at < close_at and b.ends_at > open_at), key=lambda b: b.starts_at
            )
            days.append(
                DayOut(
                    date=day,
                    closed=False,
                    reasons=[],
                    free=[RangeOut(start=hhmm(a), end=hhmm(b)) for a, b in free_ranges(day, today, policy)],
                    busy=[
                        RangeOut(
                            start=hhmm(max(b.starts_at, open_at).astimezone(tz).time()),
                            end=hhmm(min(b.ends_at, close_at).astimezone(tz).time()),
                        )
                        for b in today
                    ],
                )
            )
    return AvailabilityOut(room=room, timezone=str(tz), days=days)


def event_span(ev: dict[str, Any], tz: tzinfo) -> tuple[datetime, datetime] | None:
    """A calendar event's start and end in venue time (`tz`); an all-day event covers its days from midnight. None
    for an event that cannot be read or ends before it starts."""
    try:
        parts = []
        for key in ("start", "end"):
            moment = ev[key]
            if moment.get("dateTime"):
                parts.append(datetime.fromisoformat(moment["dateTime"]).astimezone(tz))
            else:
                parts.append(datetime.combine(date.fromisoformat(moment["date"]), time(0), tzinfo=tz))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return (parts[0], parts[1]) if parts[1] > parts[0] else None


def events_between(svc: Services, calendar_id: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    """Every event on a calendar between two instants, all pages of the listing (a busy week runs past one)."""
    items: list[dict[str, Any]] = []
    page: str | None = None
    while True:
        listing = svc.calendar.list_events(calendar_id, time_min=lo, time_max=hi, page_token=page)
        items.extend(listing.get("items") or [])
        page = listing.get("nextPageToken")
        if not page:
            return items
