"""Reconciliation speed: 100,000 PaymentIntents against 150,000 calendar events in the cache, next to a plain SQL
read of the same rows (the floor no reconciler can beat), and the API calls of a sync with nothing changed.

    .venv/bin/python bench/reconcile_bench.py [--pis 100000] [--database-url postgresql+psycopg://…]

Prints a table; asserts nothing (speed is measured here, not in the test suite).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from models.tables import CalendarEventCache, StripeObjectCache
from services.core.context import build_services
from services.core.settings import Settings
from services.reconciliation import reconcile, sync

SLOTS = [(time(8), time(10)), (time(10, 15), time(12, 15)), (time(12, 30), time(14, 30)), (time(14, 45), time(16, 45))]


def fill(svc, n_pis: int, seed: int = 1) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Clean, non-overlapping history: every other payment spans two days (so 1.5 events per payment), plus 1 %
    of incidents so the reconciler has findings to write."""
    rng = random.Random(seed)
    tz = svc.settings.tz
    rooms = list(svc.catalogue.rooms)
    now = datetime.now(UTC)
    slot_iter = ((d, r, s) for d in range(100_000) for r in rooms for s in SLOTS)
    pis, events = [], []
    start_day = date(2012, 1, 2)
    for i in range(n_pis):
        n_days = 1 if i % 2 else 2
        day_off, room, (t0, t1) = next(slot_iter)
        days = [start_day + timedelta(days=day_off * 2 + k) for k in range(n_days)]
        minutes = (t1.hour * 60 + t1.minute) - (t0.hour * 60 + t0.minute)
        base = (room.hourly_price_cents * minutes + 30) // 60
        pct = 10 if room.discount_eligible and n_days >= 3 else 0
        amount = n_days * (base - (base * pct + 50) // 100)
        pi = f"pi_bench{i:09d}"
        pis.append(
            {
                "id": pi,
                "object": "payment_intent",
                "payment_intent": pi,
                "status": "succeeded",
                "amount": amount,
                "amount_received": amount,
                "currency": "CAD",
                "booking_ref": f"RB{i:07d}",
                "room": room.slug,
                "booking_dates": ",".join(d.isoformat() for d in days),
                "booking_time": f"{t0:%H:%M}-{t1:%H:%M}",
                "customer_email": f"c{i}@example.org",
                "created": now - timedelta(days=400),
                "data": {},
                "synced_at": now,
            }
        )
        for k, d in enumerate(days):
            if rng.random() < 0.01 and k == 0:
                continue  # an incident: a missing day
            s = datetime.combine(d, t0, tzinfo=tz).astimezone(UTC)
            e = datetime.combine(d, t1, tzinfo=tz).astimezone(UTC)
            events.append(
                {
                    "calendar_id": room.calendar_id,
                    "event_id": f"ev{i:09d}{k}",
                    "status": "confirmed",
                    "summary": f"{room.name} booking",
                    "starts_at": s,
                    "ends_at": e,
                    "booking_id": f"RB{i:07d}",
                    "payment_intent": pi,
                    "booking_date": d.isoformat(),
                    "transparent": False,
                    "data": {},
                    "synced_at": now,
                }
            )
    with svc.engine.begin() as conn:
        for table, rows in ((StripeObjectCache.__table__, pis), (CalendarEventCache.__table__, events)):  # type: ignore[attr-defined]
            for i in range(0, len(rows), 5000):
                conn.execute(sa.insert(table), rows[i : i + 5000])
    return len(pis), len(events)


def plain_read(svc) -> float:  # type: ignore[no-untyped-def]
    t = clock.perf_counter()
    with svc.engine.connect() as conn:
        conn.execute(
            sa.text(
                "select id, status, amount, amount_received, room, booking_dates, booking_time, "
                "customer_email, booking_ref from stripe_object where object='payment_intent'"
            )
        ).all()
        conn.execute(
            sa.text(
                "select calendar_id, event_id, starts_at, ends_at, booking_id, payment_intent, "
                "booking_date from calendar_event where status != 'cancelled'"
            )
        ).all()
    return clock.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pis", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = build_services(Settings(data_dir=Path(tmp), database_url=args.database_url))
        t = clock.perf_counter()
        n_pi, n_ev = fill(svc, args.pis)
        fill_s = clock.perf_counter() - t
        floor = min(plain_read(svc) for _ in range(3))
        first = reconcile.reconcile(svc)
        second = reconcile.reconcile(svc)
        sync.sync(svc)  # full sync of the (empty) sandbox gateways, then one with nothing changed
        idle = sync.sync(svc)
        rows = [
            ("cache rows", f"{n_pi:,} payment intents, {n_ev:,} events", f"loaded in {fill_s:.1f} s"),
            ("plain SQL read of the same rows (floor)", f"{floor:.2f} s", "1.00x"),
            ("reconcile, first run (writes findings)", f"{first.seconds:.2f} s", f"{first.seconds / floor:.2f}x"),
            ("reconcile, next run (nothing new)", f"{second.seconds:.2f} s", f"{second.seconds / floor:.2f}x"),
            ("findings open", f"{first.open_total:,}", ", ".join(f"{k}: {v}" for k, v in first.open_by_code.items())),
            (
                "sync with nothing changed: API calls",
                f"{idle.calls}",
                f"baseline {len(svc.catalogue.rooms)} calendars + 1 Stripe = {len(svc.catalogue.rooms) + 1}",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"database: {svc.engine.dialect.name}; target: reconcile ≤ 3 s on this machine")
        print(f"{'measure':<{width}}  {'value':<34}  vs baseline")
        for name, value, ratio in rows:
            print(f"{name:<{width}}  {value:<34}  {ratio}")
        svc.engine.dispose()


if __name__ == "__main__":
    main()
