"""Demo data: about 150 bookings across all rooms, past and future, and every incident of seed 000 reproduced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg
from services.ops import demo
from services.rules.availability import holiday_name


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from services.core.context import build_services
    from services.core.settings import Settings
    from tests.conftest import NOW, Clock

    svc = build_services(Settings(data_dir=tmp_path_factory.mktemp("demo")))
    svc.clock = Clock(NOW)
    assert demo.is_empty(svc)
    report = demo.seed_demo(svc)
    yield svc, report
    svc.engine.dispose()


def _booking(svc: Any, reference: str) -> tuple[Booking, list[BookingLeg], list[str]]:
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == reference)).one()
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)))
        acts = [a.action for a in s.exec(select(AuditLog).where(AuditLog.booking_id == b.id))]
    return b, legs, acts


def _events(svc: Any, b: Booking) -> list[dict]:
    cal = svc.catalogue.room(b.room_slug).calendar_id
    items = svc.calendar.list_events(cal, private_property=f"booking_id={b.reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


def _charge(svc: Any, b: Booking) -> dict:
    return svc.payments.retrieve_payment_intent(b.payment_intent_id)["latest_charge"] or {}


def test_about_150_bookings_across_every_room_past_and_future(seeded: Any) -> None:
    svc, report = seeded
    assert 140 <= report.bookings <= 160
    today = svc.now().astimezone(svc.settings.tz).date()
    with svc.session() as s:
        rooms = {b.room_slug for b in s.exec(select(Booking))}
        days = [leg.day for leg in s.exec(select(BookingLeg))]
    assert rooms == {r.slug for r in svc.catalogue.rooms}
    assert min(days) >= today - timedelta(days=30) and max(days) <= today + timedelta(days=60)
    assert sum(d < today for d in days) > 30 and sum(d > today for d in days) > 50
    assert not demo.is_empty(svc)


def test_every_incident_of_the_seed_is_present(seeded: Any) -> None:
    svc, report = seeded
    inc = report.incidents
    assert set(inc) >= {
        "webhook_missed",
        "paid_no_event",
        "gate2_auto_refund",
        "partial_cleanup_failed",
        "orphan_after_refund",
        "manual_double_booking",
        "holiday_booking",
        "sonic_missing_extras",
        "confirmation_not_sent",
        "dispute",
    }

    b, _, _ = _booking(svc, inc["webhook_missed"])  # #2: paid in Stripe, never processed
    assert b.status == "AWAITING_PAYMENT" and _events(svc, b) == []
    assert svc.payments.retrieve_payment_intent(b.payment_intent_id)["status"] == "succeeded"

    b, _, acts = _booking(svc, inc["paid_no_event"])  # #2: no event and the auto-refund failed
    assert _events(svc, b) == [] and _charge(svc, b)["amount_refunded"] == 0 and "booking.refund.failed" in acts

    b, _, acts = _booking(svc, inc["gate2_auto_refund"])  # #2: the safety net worked
    assert "booking.gate2.conflict" in acts and _charge(svc, b)["refunded"] and _events(svc, b) == []

    b, legs, acts = _booking(svc, inc["partial_cleanup_failed"])  # #4: worst case
    assert len(legs) == 3 and len(_events(svc, b)) == 2 and _charge(svc, b)["amount_refunded"] == 0
    assert "booking.cleanup.failed" in acts

    b, _, acts = _booking(svc, inc["orphan_after_refund"])  # refunded, event left behind
    assert b.status == "CANCELLED" and _charge(svc, b)["refunded"] and len(_events(svc, b)) == 1
    assert "booking.event.delete_failed" in acts

    b, legs, _ = _booking(svc, inc["manual_double_booking"])  # #5
    cal = svc.catalogue.room(b.room_slug).calendar_id
    others = [
        e
        for e in svc.calendar.list_events(cal, time_min=legs[0].starts_at, time_max=legs[0].ends_at)["items"]
        if not (e.get("extendedProperties") or {}).get("private")
    ]
    assert b.status in ("CONFIRMED", "COMPLETED") and others

    b, legs, _ = _booking(svc, inc["holiday_booking"])  # #6
    assert b.status == "CONFIRMED" and holiday_name(legs[0].day, svc.policy)

    b, _, _ = _booking(svc, inc["sonic_missing_extras"])  # #9
    assert b.room_slug == "sonic-studio" and b.extras == {} and b.status == "CONFIRMED"

    b, _, _ = _booking(svc, inc["confirmation_not_sent"])  # #1 / #3
    assert b.status == "CONFIRMED" and b.confirmation_sent_at is None

    b, _, _ = _booking(svc, inc["dispute"])  # #8
    disputes = svc.payments.list_disputes()["data"]
    assert [d["payment_intent"] for d in disputes] == [b.payment_intent_id]


def test_seeding_is_refused_on_existing_data(seeded: Any) -> None:
    svc, _ = seeded
    assert not demo.is_empty(svc)


def test_the_demo_has_changed_bookings_for_front_desk_to_look_at(seeded: Any) -> None:
    from models.tables import Amendment, AmendmentState

    svc, _report = seeded
    with svc.session() as s:
        states = sorted(a.state for a in s.exec(select(Amendment)))
    # A day moved and a longer booking paid (both made), and a longer one still waiting for the customer to pay.
    assert states.count(AmendmentState.APPLIED) == 2 and states.count(AmendmentState.AWAITING_PAYMENT) == 1, states
