"""Reconciliation writes in bulk on both databases: over a cache large enough for the bulk paths (every event's link
to its payment through a temporary table, thousands of findings opened at once, the unchanged ones compared in
memory), the Mismatches list is exactly what the detectors find — after the first run, after the cache changed (new,
changed, resolved and acknowledged findings) and after a run with nothing new — and every event keeps the link this
run made."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import CalendarEventCache, Finding, StripeObjectCache
from services.reconciliation import reconcile

SLOTS = [(time(8), time(10)), (time(10, 15), time(12, 15)), (time(12, 30), time(14, 30)), (time(14, 45), time(16, 45))]
PAYMENTS = 1600  # 2,400 events: more links than `reconcile` writes one statement each


def old_system_history(svc: Any, now: datetime) -> None:
    """The old system's payments straight into the cache as a sync leaves it: one per room and slot, every other one
    over two days, from two months ago to seven weeks ahead, with a few of every kind of mismatch."""
    tz, rooms = svc.settings.tz, list(svc.catalogue.rooms)
    first = now.astimezone(tz).date() - timedelta(days=60)
    pis: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i in range(PAYMENTS):
        room, (t0, t1) = rooms[i % len(rooms)], SLOTS[(i // len(rooms)) % len(SLOTS)]
        days = [first + timedelta(days=2 * (i // (len(rooms) * len(SLOTS))) + k) for k in range(1 if i % 2 else 2)]
        base = (room.hourly_price_cents * ((t1.hour - t0.hour) * 60 + t1.minute - t0.minute) + 30) // 60
        kind = i % 50
        pi = f"pi_bulk{i:06d}"
        pis.append(
            {
                "id": pi,
                "object": "payment_intent",
                "payment_intent": pi,
                "status": "requires_payment_method" if kind == 6 else "succeeded",
                "amount": len(days) * base,
                "amount_received": len(days) * base + (100 if kind == 2 else 0),
                "currency": "CAD",
                "booking_ref": f"RB{i:07d}",
                "room": room.slug,
                "booking_dates": ",".join(d.isoformat() for d in days),
                "booking_time": "25:00-26:00" if kind == 4 else f"{t0:%H:%M}-{t1:%H:%M}",
                "customer_email": f"c{i}@example.org",
                "created": now - timedelta(days=90),
                "data": {},
                "synced_at": now,
            }
        )
        for k, d in enumerate(days):
            if kind in (1, 10) and k == 0:
                continue  # a day missing from the calendar (of a one-day and of a two-day payment)
            start = time(t0.hour + 1, t0.minute) if kind == 3 else t0  # at the wrong time
            events.append(_event(room.calendar_id, f"ev{i:06d}{k}", d, start, t1, tz, now, pi=pi, ref=f"RB{i:07d}"))
        if kind == 5:  # an event naming a payment Stripe never had
            events.append(_event(room.calendar_id, f"ghost{i:06d}", days[0], t0, t1, tz, now, pi=f"pi_gone{i:06d}"))
        if kind == 7:  # added by hand over the booking
            events.append(_event(room.calendar_id, f"hand{i:06d}", days[0], t0, t1, tz, now))
    with svc.engine.begin() as conn:
        conn.execute(sa.insert(StripeObjectCache.__table__), pis)  # type: ignore[attr-defined]
        conn.execute(sa.insert(CalendarEventCache.__table__), events)  # type: ignore[attr-defined]


def _event(
    cal: str, event_id: str, day: date, t0: time, t1: time, tz: Any, now: datetime, pi: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "calendar_id": cal,
        "event_id": event_id,
        "status": "confirmed",
        "summary": "Booking" if pi else "Staff",
        "starts_at": datetime.combine(day, t0, tzinfo=tz).astimezone(UTC),
        "ends_at": datetime.combine(day, t1, tzinfo=tz).astimezone(UTC),
        "booking_id": extra.get("ref"),
        "payment_intent": pi,
        "booking_date": day.isoformat(),
        "transparent": False,
        "data": {},
        "synced_at": now,
    }


def live(svc: Any) -> dict[str, Finding]:
    """The open and acknowledged findings, by key (one row per key)."""
    with svc.read_session() as s:
        rows = list(s.exec(select(Finding).where(col(Finding.status).in_(["open", "acknowledged"]))))
    by_key = {f.key: f for f in rows}
    assert len(by_key) == len(rows), "two live rows for one finding"
    return by_key


def what(f: Any) -> tuple[Any, ...]:
    """What a finding tells staff (a stored row or a detected one)."""
    return (
        f.code,
        f.severity,
        f.summary[:500],
        f.payment_intent,
        f.booking_ref,
        f.room,
        f.dates,
        f.event_ids,
        f.actions,
        f.amount_cents,
        f.details,
    )


def assert_stored_as_detected(svc: Any, now: datetime) -> dict[str, Finding]:
    """The live findings are exactly what the detectors find in the cache now, each seen now; every event's link
    is the one the matcher makes."""
    with svc.read_session() as s:
        found, data = reconcile.detect(svc, s, now)
    detected: dict[str, Any] = {}
    for d in found:
        detected.setdefault(d.key, d)
    stored = live(svc)
    assert {k: what(f) for k, f in stored.items()} == {k: what(d) for k, d in detected.items()}
    assert {f.last_seen_at for f in stored.values()} == {now}
    with svc.read_session() as s:
        links = {
            (e.calendar_id, e.event_id): (e.matched_pi, e.match_method)
            for e in s.exec(select(CalendarEventCache).where(CalendarEventCache.status != "cancelled"))
        }
    assert links == {(e.calendar_id, e.event_id): (e.new_pi, e.new_method) for e in data.events}
    return stored


def test_bulk_writes_store_exactly_what_the_detectors_find(db_url: str, make_services: Any) -> None:
    svc = make_services(db_url)
    now = svc.now()
    old_system_history(svc, now)

    first = reconcile.reconcile(svc, now=now)
    stored = assert_stored_as_detected(svc, now)
    assert first.opened == len(stored) and first.resolved == 0
    codes = {f.code for f in stored.values()}
    assert {"paid_no_event", "partial_multiday", "amount_mismatch", "event_mismatch", "unparseable"} <= codes
    assert {"orphan_event", "double_booking", "manual_event", "missing_confirmation", "holiday_booking"} <= codes
    with svc.read_session() as s:
        methods = set(s.exec(select(CalendarEventCache.match_method)))
    assert methods == {"private", None}  # the ghost's and the hand-added events have no payment

    # The cache changes: days disappear from the calendar, amounts and metadata change; staff leave one finding be.
    kept = next(f for f in stored.values() if f.code == "holiday_booking" and f.payment_intent[-2:] != "44")
    reconcile.acknowledge(svc, kept.id or 0, actor="manager", note="the old system sold it", now=now)
    with svc.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM calendar_event WHERE event_id LIKE 'ev%3_' OR event_id LIKE 'hand%'"))
        conn.execute(sa.text("UPDATE stripe_object SET amount_received = amount_received + 7 WHERE id LIKE '%2'"))
        conn.execute(sa.text("UPDATE stripe_object SET booking_time = '10:00-09:00' WHERE id LIKE '%44'"))
    later = now + timedelta(hours=1)
    second = reconcile.reconcile(svc, now=later)
    after = assert_stored_as_detected(svc, later)
    gone = stored.keys() - after.keys()
    assert second.opened == len(after.keys() - stored.keys()) > 0 and second.resolved == len(gone) > 0
    assert any(what(after[k]) != what(stored[k]) for k in after.keys() & stored.keys())  # rewritten in place
    assert after[kept.key].status == "acknowledged" and after[kept.key].note == "the old system sold it"
    with svc.read_session() as s:
        resolved = list(s.exec(select(Finding).where(col(Finding.key).in_(gone))))
    assert {(str(f.status), f.resolved_at, f.last_seen_at) for f in resolved} == {("resolved", later, now)}

    # Nothing new: nothing opened, resolved or rewritten; every live finding seen again.
    again = now + timedelta(hours=2)
    third = reconcile.reconcile(svc, now=again)
    assert (third.opened, third.resolved) == (0, 0)
    unchanged = assert_stored_as_detected(svc, again)
    assert {k: (f.id, what(f), f.first_seen_at) for k, f in unchanged.items()} == {
        k: (f.id, what(f), f.first_seen_at) for k, f in after.items()
    }
