"""The venue's rules as one immutable value, built from settings and passed to every rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class RefundBand:
    """Cancelling at least `hours_before` hours before a day starts refunds `percent` of that day."""

    hours_before: int
    percent: int


@dataclass(frozen=True)
class Policy:
    tz: ZoneInfo
    open_time: time = time(8, 0)
    close_time: time = time(17, 0)
    open_weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    buffer_minutes: int = 15
    min_notice_hours: int = 24
    max_days_ahead: int = 60
    max_days_per_booking: int = 10
    slot_minutes: int = 15
    holiday_country: str = "CA"
    holiday_subdivision: str | None = "BC"
    observe_holidays: bool = True
    refund_bands: tuple[RefundBand, ...] = (RefundBand(48, 100), RefundBand(24, 50), RefundBand(0, 0))
    refund_policy_version: str = "2026-01"
    discount_bands: tuple[tuple[int, int], ...] = ((3, 10), (5, 15))
