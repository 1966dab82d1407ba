"""A room's availability as customers and staff see it: per day in venue time, closed (with the reasons) or its free
and busy ranges. The API, the customer's booking page and the dashboard all show this one picture."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel

from services.booking.claims import busy_times
from services.core.context import Services
from services.rules.availability import Busy, free_ranges
from services.rules.availability import closed_reasons as rules_closed_reasons
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


def availability(svc: Services, room: str, first: date, last: date) -> AvailabilityOut:
    """Per day, in venue time: closed days with their reasons, otherwise free and busy ranges."""
    policy = svc.policy
    tz = policy.tz
    start = datetime.combine(first, policy.open_time, tzinfo=tz)
    end = datetime.combine(last, policy.close_time, tzinfo=tz)
    busy = busy_times(svc, room, start, end)
    days = []
    day = first
    while day <= last:
        reasons = closed_reasons(svc, day)
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
        day += timedelta(days=1)
    return AvailabilityOut(room=room, timezone=str(tz), days=days)
