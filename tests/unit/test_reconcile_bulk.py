"""A run over a large cache decides "is any of this payment's days still ahead?" without working out each day's end
when the days are well past or well ahead; around today it still compares each day's end with the clock, to the
minute, so the old system's payments get the confirmation finding exactly while one of their days is to come."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from models.tables import CalendarEventCache, StripeObjectCache
from services.reconciliation import findings, reconcile

BOARDROOM = "boardroom@group.calendar.google.com"


def old_payment(svc: Any, pi: str, days: list[date], start: time, end: time) -> None:
    """A payment the old system took, with each of its days on the calendar (as a sync leaves the cache)."""
    tz, now = svc.settings.tz, svc.now()
    amount = 4500 * len(days)
    with svc.engine.begin() as conn:
        conn.execute(
            sa.insert(StripeObjectCache.__table__),  # type: ignore[attr-defined]
            {
                "id": pi,
                "object": "payment_intent",
                "payment_intent": pi,
                "status": "succeeded",
                "amount": amount,
                "amount_received": amount,
                "currency": "CAD",
                "room": "boardroom",
                "booking_dates": ",".join(d.isoformat() for d in days),
                "booking_time": f"{start:%H:%M}-{end:%H:%M}",
                "customer_email": "old@example.org",
                "created": now - timedelta(days=30),
                "data": {},
                "synced_at": now,
            },
        )
        for d in days:
            conn.execute(
                sa.insert(CalendarEventCache.__table__),  # type: ignore[attr-defined]
                {
                    "calendar_id": BOARDROOM,
                    "event_id": f"{pi}-{d:%m%d}",
                    "summary": "Boardroom booking",
                    "starts_at": datetime.combine(d, start, tzinfo=tz).astimezone(UTC),
                    "ends_at": datetime.combine(d, end, tzinfo=tz).astimezone(UTC),
                    "payment_intent": pi,
                    "data": {},
                    "synced_at": now,
                },
            )


def test_a_day_still_ahead_is_told_from_one_over_to_the_minute(make_services: Any) -> None:
    # 09:00 on Mon 2 Mar in Vancouver.
    svc = make_services(now=datetime(2026, 3, 2, 17, 0, tzinfo=UTC))
    today = date(2026, 3, 2)
    cases = {
        "pi_two_days_ago": ([today - timedelta(days=2)], time(10), time(12)),
        "pi_yesterday": ([today - timedelta(days=1)], time(10), time(12)),
        "pi_over_this_morning": ([today], time(7), time(8, 59)),
        "pi_until_half_past_nine": ([today], time(8), time(9, 30)),
        "pi_tomorrow": ([today + timedelta(days=1)], time(10), time(12)),
        "pi_in_two_days": ([today + timedelta(days=2)], time(10), time(12)),
        "pi_in_a_month": ([today + timedelta(days=30)], time(10), time(12)),
        "pi_last_week_and_tomorrow": ([today - timedelta(days=7), today + timedelta(days=1)], time(13), time(15)),
        "pi_all_last_week": ([today - timedelta(days=8), today - timedelta(days=7)], time(13), time(15)),
    }
    for pi, (days, start, end) in cases.items():
        old_payment(svc, pi, days, start, end)

    reconcile.reconcile(svc)

    told = {f.payment_intent for f in findings.open_findings(svc, codes=["missing_confirmation"])}
    assert told == {
        "pi_until_half_past_nine",
        "pi_tomorrow",
        "pi_in_two_days",
        "pi_in_a_month",
        "pi_last_week_and_tomorrow",
    }

    # Half an hour later the morning booking is over too: its finding resolves, the rest stay.
    svc.clock.advance(minutes=31)
    reconcile.reconcile(svc)
    told = {f.payment_intent for f in findings.open_findings(svc, codes=["missing_confirmation"])}
    assert told == {"pi_tomorrow", "pi_in_two_days", "pi_in_a_month", "pi_last_week_and_tomorrow"}
