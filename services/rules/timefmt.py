"""Venue-time formatting shared by rule messages and pages (pure)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def day_label(d: date) -> str:
    """'Tue 3 Mar' — how staff say a date on the phone."""
    return f"{d:%a} {d.day} {d:%b}"


def hhmm(t: time) -> str:
    return f"{t:%H:%M}"


def local(dt: datetime, tz: ZoneInfo) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(tz)


def span_label(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    s, e = local(start, tz), local(end, tz)
    return f"{day_label(s.date())} {s:%H:%M}–{e:%H:%M}"


def money(cents: int, currency: str = "CAD") -> str:
    """'$1,234.50' — cents formatted only at the edge."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    symbol = "$" if currency.upper() in {"CAD", "USD"} else f"{currency.upper()} "
    return f"{sign}{symbol}{cents // 100:,}.{cents % 100:02d}"
