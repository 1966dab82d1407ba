"""Creating the ten events of a 10-day booking on Google Calendar: one batch request (`insert_events`) next to ten
single `insert_event` calls, measured in the same run against the fake Google Calendar (tests/fake_calendar) with a
simulated network latency on every HTTP round trip. The real google-api-python-client and google-auth do the work.

    .venv/bin/python bench/calendar_batch_bench.py [--latency-ms 100] [--days 10] [--runs 3]

Prints a table; asserts nothing (speed is measured here, not in the test suite).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_calendar import fake_calendar

FIRST_DAY = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)


def booking_events(run: int, variant: str, days: int) -> list[dict[str, Any]]:
    """The events of one multi-day booking, with deterministic base32hex ids like the booking service's."""
    out = []
    for day in range(days):
        start = FIRST_DAY + timedelta(days=day)
        out.append(
            {
                "id": f"{variant}r{run:03d}d{day:04d}",
                "summary": "Boardroom — Ava Nguyen (RD7K2M)",
                "start": {"dateTime": start.isoformat(), "timeZone": "America/Vancouver"},
                "end": {"dateTime": (start + timedelta(hours=2)).isoformat(), "timeZone": "America/Vancouver"},
                "extendedProperties": {"private": {"booking_id": "RD7K2M", "booking_date": start.date().isoformat()}},
            }
        )
    return out


def measure(server: Any, action: Callable[[], None]) -> tuple[int, float]:
    before = server.round_trips(include_token=True)
    started = time.perf_counter()
    action()
    return server.round_trips(include_token=True) - before, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="added to every HTTP round trip")
    parser.add_argument("--days", type=int, default=10, help="events per booking (the booking limit is 10 days)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is shown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, fake_calendar(Path(tmp)) as fake:
        calendar, cal = fake.gateway(), fake.calendar_id
        calendar.list_events(cal)  # sign in and open the connection before timing anything
        fake.server.latency = args.latency_ms / 1000
        results: dict[str, list[tuple[int, float]]] = {"single": [], "batch": []}
        for run in range(args.runs):
            singles = booking_events(run, "s", args.days)
            batch = booking_events(run, "b", args.days)

            def one_by_one(events: list[dict[str, Any]] = singles) -> None:
                for event in events:
                    calendar.insert_event(cal, event)

            def in_one_batch(events: list[dict[str, Any]] = batch) -> None:
                outcomes = calendar.insert_events(cal, events)
                failed = [o for o in outcomes if not isinstance(o, dict)]
                if failed:
                    raise SystemExit(f"batch insert failed: {failed[0]}")

            results["single"].append(measure(fake.server, one_by_one))
            results["batch"].append(measure(fake.server, in_one_batch))

    rows = [
        (f"{args.days} × insert_event (baseline)", results["single"]),
        (f"insert_events ({args.days} in one batch)", results["batch"]),
    ]
    base_seconds = statistics.median(s for _, s in results["single"])
    print(
        f"Google Calendar, {args.days}-day booking, {args.latency_ms:.0f} ms per HTTP round trip "
        f"(fake server on loopback, median of {args.runs} runs)"
    )
    print(f"{'variant':<36} {'round trips':>11} {'seconds':>9} {'speed-up':>9}")
    for label, samples in rows:
        trips = statistics.median(t for t, _ in samples)
        seconds = statistics.median(s for _, s in samples)
        print(f"{label:<36} {trips:>11.0f} {seconds:>9.3f} {base_seconds / seconds:>8.1f}×")


if __name__ == "__main__":
    main()
