"""Reconciliation speed: 100,000 PaymentIntents against 150,000 calendar events in the cache, next to a plain SQL
read of the same rows (the floor no reconciler can beat), and the API calls of a sync with nothing changed.

    .venv/bin/python bench/reconcile_bench.py [--pis 100000] [--ahead 0.25]
                                              [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

The payments are the old system's (no booking of ours: every check runs on its metadata), one per room and slot,
every other one over two days, 1 % with a day missing from the calendar; each event carries the link to the payment
it names that the sync writes with it (cache.named_link). By default they are all history, ending a week ago;
--ahead 0.25 puts the last quarter of them still to come, each then a finding (the old system sent no confirmation
email): the run that writes tens of thousands of findings. A last run, after every link is cleared and every finding
deleted, is a first run over a cache synced before the sync wrote links: every link to write. With --database-url
the bench works in a throwaway database next to the one named, dropped afterwards.

The ratios are against the plain read as an application makes it (the cyclic garbage collector on); a run pauses
the collector, and the plain read with it paused is shown too.

Prints a table; asserts nothing (speed is measured here, not in the test suite).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import tempfile
import time as clock
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from benchdb import throwaway_database

from models.tables import CalendarEventCache, StripeObjectCache
from services.core.context import build_services
from services.core.settings import Settings
from services.reconciliation import reconcile, sync

SLOTS = [(time(8), time(10)), (time(10, 15), time(12, 15)), (time(12, 30), time(14, 30)), (time(14, 45), time(16, 45))]


def fill(svc, n_pis: int, seed: int = 1, ahead: float = 0.0) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Clean, non-overlapping history: every other payment spans two days (so 1.5 events per payment), plus 1 %
    of incidents so the reconciler has findings to write. It ends a week ago, or with `ahead` of it still to come."""
    rng = random.Random(seed)
    tz = svc.settings.tz
    rooms = list(svc.catalogue.rooms)
    now = datetime.now(UTC)
    slot_iter = ((d, r, s) for d in range(100_000) for r in rooms for s in SLOTS)
    pis, events = [], []
    span = 2 * math.ceil(n_pis / (len(rooms) * len(SLOTS)))  # days: one pair per room and slot
    start_day = now.astimezone(tz).date() - timedelta(days=7 + round(span * (1 - ahead)))
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
                    "matched_pi": pi,  # the link the sync writes with an event naming its payment
                    "match_method": "private",
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


def plain_read(svc, *, collector: bool = True) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds (elapsed, and CPU of this process) to read the rows a run reads, the plain way: SQL, rows as the
    driver gives them."""
    gc.collect()  # every read starts from the same heap: what the collector finds to do depends on it
    was = gc.isenabled()
    if not collector:
        gc.disable()
    try:
        cpu = clock.process_time()
        return _plain_read(svc), clock.process_time() - cpu
    finally:
        if was:
            gc.enable()


def timed_reconcile(svc) -> tuple[reconcile.RunReport, float]:  # type: ignore[no-untyped-def]
    """A run, and the CPU seconds of this process it took."""
    cpu = clock.process_time()
    report = reconcile.reconcile(svc)
    return report, clock.process_time() - cpu


def _plain_read(svc) -> float:  # type: ignore[no-untyped-def]
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
    parser.add_argument("--ahead", type=float, default=0.0, help="share of the payments still to come (0 to 1)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, throwaway_database(args.database_url) as url:
        svc = build_services(Settings(data_dir=Path(tmp), database_url=url))
        try:
            run(svc, args.pis, args.ahead)
        finally:
            svc.engine.dispose()


def run(svc, n: int, ahead: float) -> None:  # type: ignore[no-untyped-def]
    t = clock.perf_counter()
    n_pi, n_ev = fill(svc, n, ahead=ahead)
    fill_s = clock.perf_counter() - t
    floor, floor_cpu = min(plain_read(svc) for _ in range(3))
    paused, paused_cpu = min(plain_read(svc, collector=False) for _ in range(3))
    first, first_cpu = timed_reconcile(svc)
    # Like the floor, the best of three: each of these runs does the same work (nothing new since the last).
    second, second_cpu = min((timed_reconcile(svc) for _ in range(3)), key=lambda run: run[0].seconds)
    # A cache synced before the sync wrote links (or one every link of which changed): a first run writes them all.
    with svc.engine.begin() as conn:
        conn.execute(sa.text("UPDATE calendar_event SET matched_pi = NULL, match_method = NULL"))
        conn.execute(sa.text("DELETE FROM finding"))
    unlinked, unlinked_cpu = timed_reconcile(svc)
    sync.sync(svc)  # full sync of the (empty) sandbox gateways, then one with nothing changed
    idle = sync.sync(svc)
    rows = [
        ("cache rows", f"{n_pi:,} payment intents, {n_ev:,} events", f"loaded in {fill_s:.1f} s; {ahead:.0%} ahead"),
        ("plain SQL read of the same rows (floor)", f"{floor:.2f} s (CPU {floor_cpu:.2f} s)", "1.00x (CPU 1.00x)"),
        ("  the same, collector paused", *_vs(paused, paused_cpu, floor, floor_cpu)),
        ("reconcile, first run (writes findings)", *_vs(first.seconds, first_cpu, floor, floor_cpu)),
        ("reconcile, next run (nothing new; best of 3)", *_vs(second.seconds, second_cpu, floor, floor_cpu)),
        ("  first run, no event linked by the sync yet", *_vs(unlinked.seconds, unlinked_cpu, floor, floor_cpu)),
        ("findings open", f"{first.open_total:,}", ", ".join(f"{k}: {v}" for k, v in first.open_by_code.items())),
        (
            "sync with nothing changed: API calls",
            f"{idle.calls}",
            f"baseline {len(svc.catalogue.rooms)} calendars + 1 Stripe = {len(svc.catalogue.rooms) + 1}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"database: {svc.engine.dialect.name}; target: next run ≤ 2x the floor, first run ≤ 3x "
        "(CPU: this process's, the database server's not counted)"
    )
    print(f"{'measure':<{width}}  {'value':<34}  vs baseline")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:<34}  {ratio}")


def _vs(seconds: float, cpu: float, floor: float, floor_cpu: float) -> tuple[str, str]:
    return f"{seconds:.2f} s (CPU {cpu:.2f} s)", f"{seconds / floor:.2f}x (CPU {cpu / floor_cpu:.2f}x)"


if __name__ == "__main__":
    main()
