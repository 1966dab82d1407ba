"""The short cuts a run over a large cache takes change nothing staff see, on both databases: a sync links each event
that names its payment as it writes it (a run corrects the links it concludes otherwise), overlaps in the room's
history are left alone while one reaching into what is not over yet is still reported, and a payment's events are
named in time order whatever order the database returns them in."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from models.tables import CalendarEventCache, Finding, StripeObjectCache
from services.ops.sandbox_load import load_dir
from services.reconciliation import findings, reconcile, sync

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"


def links(svc: Any) -> dict[str, tuple[str | None, str | None]]:
    with svc.read_session() as s:
        return {e.event_id: (e.matched_pi, e.match_method) for e in s.exec(select(CalendarEventCache))}


def open_by_code(svc: Any) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = defaultdict(list)
    for f in findings.open_findings(svc):
        out[f.code].append(f)
    return dict(out)


def test_a_sync_links_the_events_naming_their_payment_and_a_run_corrects_the_rest(
    db_url: str, make_services: Any
) -> None:
    svc = make_services(db_url)
    assert load_dir(svc, LEGACY).problems == []
    sync.sync(svc)
    synced = links(svc)
    # Linked as they are written: by the payment an event names, privately or in its description.
    assert synced["legacy0desc0match0001"] == ("pi_3LegacyDescMatch0001", "description")
    assert synced["legacy0ghost0pay00001"] == ("pi_3NeverSeenByStripe99", "private")
    assert synced["legacy0slot0match0001"] == (None, None)  # names no payment: only a run can match it

    reconcile.reconcile(svc)
    linked = links(svc)
    assert linked["legacy0desc0match0001"] == ("pi_3LegacyDescMatch0001", "description")
    assert linked["legacy0slot0match0001"] == ("pi_3LegacySlotMatch0002", "slot")
    assert linked["legacy0ghost0pay00001"] == (None, None)  # Stripe never had that payment
    (orphan,) = open_by_code(svc)["orphan_event"]
    assert orphan.event_ids == ["legacy0ghost0pay00001"] and "which Stripe does not know" in orphan.summary

    # A later sync rewriting the events leaves the run's links as the run made them.
    sync.sync(svc)
    reconcile.reconcile(svc)
    assert links(svc) == linked


def _event(svc: Any, event_id: str, start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "calendar_id": "boardroom@group.calendar.google.com",
        "event_id": event_id,
        "status": "confirmed",
        "summary": extra.pop("summary", "Staff"),
        "starts_at": start.astimezone(UTC),
        "ends_at": end.astimezone(UTC),
        "transparent": False,
        "data": {},
        "synced_at": svc.now(),
        **extra,
    }


def test_overlaps_in_the_past_stay_quiet_and_one_reaching_into_now_is_reported(db_url: str, make_services: Any) -> None:
    svc = make_services(db_url)  # Monday 2 March 2026, 09:00 in Vancouver
    tz = svc.settings.tz

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 3, day, hour, minute, tzinfo=tz)

    rows = [
        # Last week: two hand-made events over each other, both long over.
        _event(svc, "old-a", datetime(2026, 2, 23, 10, tzinfo=tz), datetime(2026, 2, 23, 12, tzinfo=tz)),
        _event(svc, "old-b", datetime(2026, 2, 23, 11, tzinfo=tz), datetime(2026, 2, 23, 13, tzinfo=tz)),
        # This morning: one over at 08:50, the next starting five minutes later and still on.
        _event(svc, "early", at(2, 7), at(2, 8, 50)),
        _event(svc, "now-on", at(2, 8, 55), at(2, 10)),
        # Later this week: two over each other.
        _event(svc, "wed-a", at(4, 13), at(4, 15)),
        _event(svc, "wed-b", at(4, 14), at(4, 16)),
    ]
    with svc.engine.begin() as conn:
        conn.execute(sa.insert(CalendarEventCache.__table__), rows)  # type: ignore[attr-defined]
    reconcile.reconcile(svc)
    pairs = {f.key: f.summary for f in open_by_code(svc)["double_booking"]}
    assert pairs.keys() == {"double_booking:early|now-on", "double_booking:wed-a|wed-b"}
    assert "closer than 15 min" in pairs["double_booking:early|now-on"]
    assert "overlap" in pairs["double_booking:wed-a|wed-b"]


def test_a_payments_events_are_named_in_time_order_whatever_order_they_are_stored_in(
    db_url: str, make_services: Any
) -> None:
    svc = make_services(db_url)
    tz, now = svc.settings.tz, svc.now()
    two, three = [date(2026, 3, 9), date(2026, 3, 10)], [date(2026, 3, 11), date(2026, 3, 12), date(2026, 3, 13)]
    payments, events = [], []
    # Every day's event an hour late, the last day's stored first.
    for pi, days, stored in (("pi_old_two_days", two, (1, 0)), ("pi_old_three_days", three, (2, 0, 1))):
        payments.append(
            {
                "id": pi,
                "object": "payment_intent",
                "payment_intent": pi,
                "status": "succeeded",
                "amount": len(days) * 8500,
                "amount_received": len(days) * 8500,
                "currency": "cad",
                "booking_ref": pi.upper(),
                "room": "boardroom",
                "booking_dates": ",".join(d.isoformat() for d in days),
                "booking_time": "10:00-12:00",
                "customer_email": "ava@example.org",
                "created": now - timedelta(days=30),
                "data": {},
                "synced_at": now,
            }
        )
        for k in stored:
            start = datetime.combine(days[k], time(11), tzinfo=tz)
            events.append(_event(svc, f"{pi}-{k}", start, start + timedelta(hours=2), payment_intent=pi))
    with svc.engine.begin() as conn:
        conn.execute(sa.insert(StripeObjectCache.__table__), payments)  # type: ignore[attr-defined]
        for row in events:  # one statement each: stored in this order
            conn.execute(sa.insert(CalendarEventCache.__table__), [row])  # type: ignore[attr-defined]
    reconcile.reconcile(svc)
    named = {f.payment_intent: f.event_ids for f in open_by_code(svc)["event_mismatch"]}
    assert named == {
        "pi_old_two_days": ["pi_old_two_days-0", "pi_old_two_days-1"],
        "pi_old_three_days": ["pi_old_three_days-0", "pi_old_three_days-1", "pi_old_three_days-2"],
    }
