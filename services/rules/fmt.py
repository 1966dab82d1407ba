"""The one formatting module: dates, times, money and counts as staff and customers read them (pure).

Rule messages, emails, the customer pages and the dashboard all format through here; values are formatted only at
the edge (money stays integer cents until then)."""

from __future__ import annotations

from collections.abc import Iterable
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


def days_label(days: Iterable[date], limit: int | None = None) -> str:
    """'Tue 3 Mar, Wed 4 Mar' in date order; past `limit` days, '… +2 more'; '—' for none."""
    ordered = sorted(days)
    shown = ordered if limit is None else ordered[:limit]
    more = len(ordered) - len(shown)
    return (", ".join(day_label(d) for d in shown) + (f" +{more} more" if more else "")) or "—"


def plural(n: int, word: str) -> str:
    """'1 day', '3 days'."""
    return f"{n} {word}" + ("" if n == 1 else "s")
