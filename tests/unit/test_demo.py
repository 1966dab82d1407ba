"""Demo data: about 150 bookings across all rooms, past and future, and every incident of seed 000 reproduced."""

from __future__ import annotations

from collections import Counter
from datetime import time, timedelta
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg, LegState
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


# ------------------------------------------------------------------------------------ years of a busy venue's past


def test_the_present_holds_the_default_demo_and_a_bigger_count_reaches_into_the_past() -> None:
    from services.core.errors import DomainError

    assert demo.demo_span(150) == demo.DemoSpan(150, 150, 0)
    # `seed-demo --count 3000` crammed 3000 bookings into 90 days and found no free slot for the incidents.
    span = demo.demo_span(3000)
    assert span.window == demo.WINDOW_MOST and span.history == 3000 - demo.WINDOW_MOST
    assert 365 < span.history_days < 2 * 365  # at a busy venue's pace
    three = demo.demo_span(6000, years=3)
    assert three.history_days == 3 * 365 and 400 <= three.window <= demo.WINDOW_MOST
    assert demo.demo_span(100, years=2).window == 40  # the present keeps enough to show and every incident
    with pytest.raises(DomainError, match="do not fit"):
        demo.demo_span(3000, years=0)
    with pytest.raises(DomainError):
        demo.demo_span(100, years=-1)


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Four months of a busy venue's past, written in bulk, then synced and reconciled as the dashboard would."""
    from services.core.context import build_services
    from services.core.settings import Settings
    from services.reconciliation import cycle
    from tests.conftest import NOW, Clock

    svc = build_services(Settings(data_dir=tmp_path_factory.mktemp("past")))
    svc.clock = Clock(NOW)
    today = NOW.astimezone(svc.settings.tz).date()
    first, last = today - timedelta(days=150), today - timedelta(days=31)
    made = demo.seed_history(svc, count=400, first_day=first, last_day=last)
    run = cycle.run_cycle(svc, actor="test")
    yield svc, made, run, (first, last)
    svc.engine.dispose()


def _all(svc: Any, model: Any) -> list[Any]:
    with svc.session() as s:
        return list(s.exec(select(model)))


def test_the_past_is_a_busy_venue_s_bookings_over_the_days_asked(past: Any) -> None:
    from models.tables import BookingStatus, SlotClaim

    svc, made, _run, (first, last) = past
    bookings, legs = _all(svc, Booking), _all(svc, BookingLeg)
    assert made == len(bookings) == 400
    assert first <= min(leg.day for leg in legs) and max(leg.day for leg in legs) <= last
    assert {b.room_slug for b in bookings} == {r.slug for r in svc.catalogue.rooms}
    assert all(leg.day.weekday() < 5 and not holiday_name(leg.day, svc.policy) for leg in legs)
    per_booking = Counter(leg.booking_id for leg in legs)
    assert len(legs) > 1.4 * len(bookings) and max(per_booking.values()) >= 5  # runs of days and weekly series
    statuses = Counter(b.status for b in bookings)
    assert statuses[BookingStatus.COMPLETED] > 300
    assert statuses[BookingStatus.CANCELLED] and statuses[BookingStatus.EXPIRED]
    # Each held day still claims its time (the database refuses overlapping claims: none were made).
    claims = _all(svc, SlotClaim)
    assert sum(c.active for c in claims) == sum(leg.state == LegState.COMPLETED for leg in legs)


def test_the_past_reads_as_real_to_reconciliation_and_the_audit_chain(past: Any) -> None:
    from services.core.audit import verify_chain

    svc, _made, run, _days = past
    assert run.run.open_total == 0, run.line()
    chain = verify_chain(svc)
    assert chain.ok and chain.rows > 15 * 400, chain.line()
    times = [a.at for a in _all(svc, AuditLog)]
    assert times == sorted(times)  # appended in the order it happened
    # A booking made now chains on from the bulk-written head.
    from services.booking import BookingRequest, sandbox_pay, start_booking

    day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=9)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    req = BookingRequest("boardroom", (day,), time(10), time(12), "Ava Nguyen", "ava@example.org", "604-555-0101")
    sandbox_pay(svc, start_booking(svc, req, actor="customer").booking_id, actor="stripe-webhook")
    assert verify_chain(svc).ok


def test_a_completed_past_booking_has_its_payment_events_emails_and_trail(past: Any) -> None:
    from models.tables import BookingStatus, EmailOutbox

    svc, _made, _run, _days = past
    b = next(
        b for b in _all(svc, Booking) if b.status == BookingStatus.COMPLETED and len(_booking(svc, b.reference)[1]) > 2
    )
    _, legs, acts = _booking(svc, b.reference)
    assert all(leg.state == LegState.COMPLETED for leg in legs)
    pi = svc.payments.retrieve_payment_intent(b.payment_intent_id)
    assert pi["status"] == "succeeded" and pi["latest_charge"]["amount_captured"] == b.amount_cents
    assert pi["metadata"]["booking_id"] == b.reference
    assert b.amount_cents == sum(leg.price_cents for leg in legs) == b.pricing_snapshot["total_cents"]
    events = _events(svc, b)
    assert sorted(e["extendedProperties"]["private"]["booking_date"] for e in events) == [str(leg.day) for leg in legs]
    assert {e["id"] for e in events} == {leg.event_id for leg in legs}
    with svc.session() as s:
        kinds = Counter(e.kind for e in s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == b.id)))
    assert kinds["confirmation"] == 1 and kinds["reminder"] <= len(legs)
    assert acts[:1] == ["booking.hold.created"] and acts.count("booking.event.created") == len(legs)
    assert acts.count("booking.legs.advanced") == 2 * len(legs)  # each day begun, then over


def test_a_cancelled_past_booking_was_refunded_by_the_policy_and_its_events_deleted(past: Any) -> None:
    from models.tables import BookingStatus, RefundRecord, SlotClaim

    svc, _made, _run, _days = past
    cancelled = [b for b in _all(svc, Booking) if b.status == BookingStatus.CANCELLED]
    refunds = {r.booking_id: r for r in _all(svc, RefundRecord)}
    b = next(b for b in cancelled if b.id in refunds)
    _, legs, acts = _booking(svc, b.reference)
    record = refunds[b.id]
    assert record.amount_cents == sum(leg.refunded_cents for leg in legs) > 0
    assert svc.payments.retrieve_payment_intent(b.payment_intent_id)["latest_charge"]["amount_refunded"] == (
        record.amount_cents
    )
    assert _events(svc, b) == [] and "booking.cancelled" in acts and "booking.refund.cancellation" in acts
    with svc.session() as s:
        assert not any(c.active for c in s.exec(select(SlotClaim).where(SlotClaim.booking_id == b.id)))


def test_a_count_beyond_the_present_goes_into_the_past_with_every_incident(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `seed-demo --count 3000` does, at a size a test can afford: a present that holds 40 bookings."""
    from services.core.context import build_services
    from services.core.settings import Settings
    from tests.conftest import NOW, Clock

    monkeypatch.setattr(demo, "WINDOW_MOST", 40)
    svc = build_services(Settings(data_dir=tmp_path / "data"))
    svc.clock = Clock(NOW)
    try:
        report = demo.seed_demo(svc, count=240)
        assert report.history == 200 and report.history_days > 0 and 30 <= report.bookings <= 45
        assert {"webhook_missed", "paid_no_event", "partial_cleanup_failed", "dispute"} <= set(report.incidents)
    finally:
        svc.engine.dispose()


def test_the_past_on_both_databases(make_services: Any, db_url: str) -> None:
    from services.core.audit import verify_chain
    from services.reconciliation import cycle

    svc = make_services(db_url)
    today = svc.now().astimezone(svc.settings.tz).date()
    made = demo.seed_history(svc, count=80, first_day=today - timedelta(days=80), last_day=today - timedelta(days=31))
    assert made == 80 and verify_chain(svc).ok
    assert cycle.run_cycle(svc, actor="test").run.open_total == 0


def test_the_finance_daily_close_of_a_past_day_agrees_with_stripe(past: Any) -> None:
    from models.tables import CloseStatus, RefundRecord
    from services.finance import close

    svc, _made, _run, _days = past
    refund = _all(svc, RefundRecord)[0]  # a day with payments and a refund
    day = refund.created_at.astimezone(svc.settings.tz).date()
    result = close.run_close(svc, day, actor="test")
    assert result.close.status == CloseStatus.PASSED, result.close.totals
    assert result.close.totals["refund"]["ledger_count"] >= 1
