"""Availability rules: opening hours, weekdays, buffer, booking window, minimum hours, multi-day limit, holidays and
closures. Every refusal is a sentence a front-desk person can read out on the phone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import holidays as holidays_lib

from services.rules.fmt import day_label, hhmm
from services.rules.policy import Policy

WEEKDAY_NAMES = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"]


@dataclass(frozen=True)
class SlotRequest:
    """The same start and end time on one or more dates (venue time)."""

    dates: tuple[date, ...]
    start: time
    end: time
    party_size: int | None = None


@dataclass(frozen=True)
class RoomLimits:
    """What the rules need of a room (a subset of the catalogue's Room)."""

    name: str
    capacity: int
    min_minutes: int
    bookable: bool = True


@dataclass(frozen=True)
class Busy:
    """A busy interval on a room (an event, a hold or a confirmed day), UTC."""

    starts_at: datetime
    ends_at: datetime
    label: str = "another booking"
    ref: str = ""


@dataclass(frozen=True)
class LegWindow:
    day: date
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC


@lru_cache(maxsize=64)
def _holiday_table(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    table = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
    return {d: str(name) for d, name in table.items()}


def holiday_name(day: date, policy: Policy) -> str | None:
    """The statutory holiday on `day` for the venue's province, if any (whether or not the venue observes it)."""
    return _holiday_table(policy.holiday_country, policy.holiday_subdivision, day.year).get(day)


def observed_holiday(day: date, policy: Policy) -> str | None:
    """The holiday that closes the venue on `day`: None when there is none or OBSERVE_HOLIDAYS is off."""
    return holiday_name(day, policy) if policy.observe_holidays else None


def closed_reasons(day: date, policy: Policy, closures: Mapping[date, str] | None = None) -> list[str]:
    """The one closed-days rule: why the venue is shut all day — a closed weekday, an observed statutory holiday, a
    closure from the catalogue — each a phrase ('Saturdays are closed', 'statutory holiday (Canada Day)', 'venue
    closed (Renovation)'); empty when the venue is open. The gates, reconciliation, reports and pages all ask this."""
    reasons = []
    if day.weekday() not in policy.open_weekdays:
        reasons.append(f"{WEEKDAY_NAMES[day.weekday()]} are closed")
    if holiday := observed_holiday(day, policy):
        reasons.append(f"statutory holiday ({holiday})")
    if closures and day in closures:
        reasons.append(f"venue closed ({closures[day]})")
    return reasons


def closure_reason(day: date, policy: Policy, closures: Mapping[date, str] | None = None) -> str | None:
    """Why a day that is normally open is shut (an observed holiday or a closure), or None: what makes a booking
    already taken for that day a problem."""
    if holiday := observed_holiday(day, policy):
        return holiday
    return (closures or {}).get(day)


def is_open(day: date, policy: Policy, closures: Mapping[date, str] | None = None) -> bool:
    return not closed_reasons(day, policy, closures)


def leg_windows(request: SlotRequest, policy: Policy) -> list[LegWindow]:
    """Each date's start and end as UTC instants (venue-time wall clock, DST-aware)."""
    out = []
    for d in sorted(request.dates):
        start = datetime.combine(d, request.start, tzinfo=policy.tz)
        end = datetime.combine(d, request.end, tzinfo=policy.tz)
        out.append(LegWindow(d, start.astimezone(UTC), end.astimezone(UTC)))
    return out


def party_size_reasons(party_size: int | None, room: RoomLimits) -> list[str]:
    """Why the group does not fit the room (a new booking and a corrected group size are held to the same)."""
    if party_size is None:
        return []
    if party_size < 1:
        return ["The group needs at least one person"]
    if party_size > room.capacity:
        return [f"The {room.name} holds at most {room.capacity} people"]
    return []


def time_form_problems(start: time, end: time) -> list[str]:
    """Times are the venue's wall-clock times in whole minutes: an offset ("08:00+05:00") or seconds ("08:00:59")
    would be read one way by these rules and another by the claims and the availability."""
    problems = []
    for label, value in (("Start time", start), ("End time", end)):
        if value.tzinfo is not None:
            problems.append(f"{label} must be the venue's local time, without a time zone or offset")
        elif value.second or value.microsecond:
            problems.append(f"{label} must be whole minutes (HH:MM), without seconds")
    return problems


def check_request(
    request: SlotRequest,
    room: RoomLimits,
    policy: Policy,
    now: datetime,
    closures: Mapping[date, str] | None = None,
) -> list[str]:
    """Every reason the rules refuse this request (empty list: the rules allow it). Calendars are not consulted."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    malformed = time_form_problems(request.start, request.end)
    if malformed:  # nothing below can compare such a time
        return malformed
    reasons: list[str] = []
    closures = closures or {}
    if not room.bookable:
        reasons.append(f"The {room.name} is not open for booking")
    if not request.dates:
        return [*reasons, "Choose at least one date"]
    if len(set(request.dates)) != len(request.dates):
        reasons.append("The same date is chosen twice")
    if len(set(request.dates)) > policy.max_days_per_booking:
        reasons.append(f"At most {policy.max_days_per_booking} days in one booking ({len(set(request.dates))} chosen)")
    minutes = _minutes(request.end) - _minutes(request.start)
    if minutes <= 0:
        reasons.append("The end time must be after the start time")
    else:
        if request.start < policy.open_time or request.end > policy.close_time:
            reasons.append(f"Outside opening hours ({hhmm(policy.open_time)}–{hhmm(policy.close_time)})")
        if minutes < room.min_minutes:
            reasons.append(f"The {room.name} has a minimum of {_hours_label(room.min_minutes)}")
    if _minutes(request.start) % policy.slot_minutes or _minutes(request.end) % policy.slot_minutes:
        reasons.append(f"Start and end times must be on a {policy.slot_minutes}-minute step")
    reasons.extend(party_size_reasons(request.party_size, room))

    earliest = now + timedelta(hours=policy.min_notice_hours)
    latest = now + timedelta(days=policy.max_days_ahead)
    for d in sorted(set(request.dates)):
        label = day_label(d)
        start = datetime.combine(d, request.start, tzinfo=policy.tz)
        reasons.extend(f"{label}: {why}" for why in closed_reasons(d, policy, closures))
        if start <= now:
            reasons.append(f"{label}: that time has already passed")
        elif start < earliest:
            reasons.append(f"{label}: starts within {policy.min_notice_hours} hours")
        elif start > latest:
            reasons.append(f"{label}: more than {policy.max_days_ahead} days ahead")
    return reasons


def check_conflicts(legs: Sequence[LegWindow], busy: Iterable[Busy], policy: Policy) -> list[str]:
    """Reasons the legs collide with busy intervals, the buffer included (a gap shorter than the buffer collides)."""
    buffer = timedelta(minutes=policy.buffer_minutes)
    reasons: list[str] = []
    busy = list(busy)
    for leg in legs:
        for b in busy:
            if leg.starts_at < b.ends_at + buffer and b.starts_at < leg.ends_at + buffer:
                span = f"{_local_hhmm(b.starts_at, policy)}–{_local_hhmm(b.ends_at, policy)}"
                if leg.starts_at < b.ends_at and b.starts_at < leg.ends_at:
                    reasons.append(f"{day_label(leg.day)}: overlaps {b.label} ({span})")
                else:
                    reasons.append(
                        f"{day_label(leg.day)}: within {policy.buffer_minutes} minutes of {b.label} ({span})"
                    )
    return list(dict.fromkeys(reasons))


def free_ranges(day: date, busy: Iterable[Busy], policy: Policy) -> list[tuple[time, time]]:
    """Bookable ranges of a day in venue time once busy intervals and their buffers are taken out."""
    open_at = datetime.combine(day, policy.open_time, tzinfo=policy.tz)
    close_at = datetime.combine(day, policy.close_time, tzinfo=policy.tz)
    buffer = timedelta(minutes=policy.buffer_minutes)
    blocks = sorted(
        (max(b.starts_at - buffer, open_at), min(b.ends_at + buffer, close_at))
        for b in busy
        if b.starts_at - buffer < close_at and b.ends_at + buffer > open_at
    )
    ranges: list[tuple[time, time]] = []
    cursor = open_at
    for start, end in blocks:
        if start > cursor:
            ranges.append((cursor.astimezone(policy.tz).time(), start.astimezone(policy.tz).time()))
        cursor = max(cursor, end)
    if cursor < close_at:
        ranges.append((cursor.astimezone(policy.tz).time(), policy.close_time))
    return ranges


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _hours_label(minutes: int) -> str:
    hours = minutes / 60
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def _local_hhmm(dt: datetime, policy: Policy) -> str:
    return f"{dt.astimezone(policy.tz):%H:%M}"
