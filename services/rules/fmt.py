"""The one formatting module: dates, times, money and counts as staff and customers read them (pure).

Rule messages, emails, the customer pages and the dashboard all format through here; values are formatted only at
the edge (money stays integer cents until then)."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAY_ABBREVIATIONS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


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


def range_label(first: date, last: date) -> str:
    """'March 2026' for a whole calendar month, else '1 Mar 2026 – 15 Mar 2026'."""
    whole_month = first.day == 1 and last.day == calendar.monthrange(last.year, last.month)[1]
    if whole_month and (first.year, first.month) == (last.year, last.month):
        return f"{first:%B %Y}"
    return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"


def moment_label(moment: datetime, tz: ZoneInfo, *, with_day: bool = True) -> str:
    """'Tue 3 Mar 14:05' (or '14:05') in the venue's time zone."""
    at = local(moment, tz)
    return f"{day_label(at.date())} {at:%H:%M}" if with_day else f"{at:%H:%M}"


def zone_label(timezone: str) -> str:
    """'Vancouver time' for 'America/Vancouver': said next to times so nobody wonders whose clock it is."""
    return timezone.rsplit("/", 1)[-1].replace("_", " ") + " time"


def ago_label(moment: datetime, now: datetime) -> str:
    """'just now', '3 min ago', '5 h ago', '2 days ago'."""
    minutes = int((now - moment).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days ago"


def duration_label(minutes: int) -> str:
    """'3 h', '1 h 30 min'."""
    h, m = divmod(max(minutes, 0), 60)
    return f"{h} h" + (f" {m:02d} min" if m else "")


def notice_label(hours: float) -> str:
    """How long before a day starts: 'already started', '5 h', '2.5 days'."""
    if hours < 0:
        return "already started"
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.0f} h"


def weekdays_label(weekdays: Iterable[int]) -> str:
    """'Mon, Tue, Wed' for 0, 1, 2 (0 = Monday)."""
    return ", ".join(WEEKDAY_ABBREVIATIONS[d] for d in sorted(weekdays))


def bps_label(bps: int) -> str:
    """Basis points as a percentage: 50 → '0.50 %'."""
    return f"{bps / 100:.2f} %"


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


# Audit payload keys that tell a reader nothing (the calendar is the room's; the message comes first anyway).
PAYLOAD_SKIP = frozenset({"message", "calendar_id", "channel"})


def payload_text(
    payload: Mapping[str, Any],
    *,
    currency: str,
    day: Callable[[date], str] = day_label,
    moment: Callable[[datetime], str],
) -> str:
    """An audit payload as one line: its message, then the other facts ('refund: $40.00 · days: Tue 3 Mar'), money
    and the ISO dates and instants in it formatted by `day` and `moment`."""

    def fact(key: str, value: Any) -> str:
        if (key == "amount" or key.endswith("_cents")) and isinstance(value, int):
            return money(value, currency)
        if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
            try:
                return moment(datetime.fromisoformat(value))
            except ValueError:
                return value
        if isinstance(value, str) and len(value) == 10 and value[4:5] == "-":
            try:
                return day(date.fromisoformat(value))
            except ValueError:
                return value
        if isinstance(value, list):
            return ", ".join(fact(key, v) for v in value)
        if isinstance(value, dict):
            return ", ".join(f"{fact('', k)}: {fact(key, v)}" for k, v in value.items())
        return str(value)

    parts = [str(payload["message"])] if payload.get("message") else []
    parts += [
        f"{key.removesuffix('_cents').replace('_', ' ')}: {fact(key, value)}"
        for key, value in payload.items()
        if key not in PAYLOAD_SKIP and value not in (None, "", [], {})
    ]
    return " · ".join(parts)
