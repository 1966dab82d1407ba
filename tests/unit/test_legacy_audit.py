"""Auditing the old system's history (issue 14 §7): payments it took have no booking in Room Desk, only PaymentIntent
metadata, and every check a booking gets applies to them through that metadata — extras, holidays and closures (days
already past too), the confirmation, the refund policy. `tests/fixtures/legacy/audit` is a venue's export with one
payment per case and a near-miss next to each; loaded with sandbox-load and reconciled as a venue would. The fixes
those findings offer work on such a payment (it is adopted into a booking first), or are not offered."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from models.tables import Booking, BookingLeg
from services import booking as bk
from services.ops.sandbox_load import load_dir
from services.reconciliation import findings, remediate
from tests.unit.test_reconcile import run
from tests.unit.test_remediate import ACTOR, charge, checks, legacy_payment, venue_time, world

AUDIT = Path(__file__).resolve().parent.parent / "fixtures" / "legacy" / "audit"

SONIC_BARE = "pi_3AuditSonicBare0001"  # Sonic Studio, Wed 11 Mar, no extras in the metadata
SONIC_FULL = "pi_3AuditSonicFull0002"  # near-miss: the extras are in the metadata
GOOD_FRIDAY = "pi_3AuditGoodFri00003"  # Boardroom on Good Friday
HOLY_THURSDAY = "pi_3AuditHolyThu00004"  # near-miss: the day before
FAMILY_DAY = "pi_3AuditFamilyDay005"  # Workshop on Family Day, already past
XMAS_EVE = "pi_3AuditXmasEve00006"  # Union Room on the Christmas Eve closure
DEC_23 = "pi_3AuditXmasEveEve07"  # near-miss: the day before the closure
PART_OFF = "pi_3AuditPartOff00008"  # $30 of $140 refunded 25 h before: the policy said $70; no event
PART_POLICY = "pi_3AuditPartPolicy09"  # near-miss: $25 of $50 refunded 27 h before, the 50 % band; no event
TWO_DAYS = "pi_3AuditTwoDays00010"  # Mon 16 + Tue 17 Mar, Mon refunded in full 2 weeks ahead, Tue on the calendar
FULL_BACK = "pi_3AuditFullBack0011"  # near-miss: refunded in full (the safety net), no event
PART_TWO = "pi_3AuditPartTwo00012"  # two days, $50 of $280 refunded (fits no day), no event
BOARDROOM = "boardroom@group.calendar.google.com"
WORKSHOP = "workshop@group.calendar.google.com"
SONIC = "sonic-studio@group.calendar.google.com"


def loaded(svc: Any) -> dict[str, dict[str, Any]]:
    """The audit export loaded and reconciled: open findings by code, then by PaymentIntent."""
    report = load_dir(svc, AUDIT)
    assert report.problems == [] and report.stripe["payment_intent"] == 12
    return {code: {f.payment_intent: f for f in fs} for code, fs in run(svc).items()}


def finding_of(svc: Any, code: str, pi: str) -> Any:
    (f,) = [f for f in findings.open_findings(svc, codes=[code]) if f.payment_intent == pi]
    return f


def fix_clears(svc: Any, code: str, pi: str, action: str, **kwargs: Any) -> remediate.FixResult:
    """Fix one payment's finding: it works, a second click finds nothing to do and changes nothing, and the next
    sync + reconcile resolves the finding and opens nothing new."""
    before = checks(svc)
    target = finding_of(svc, code, pi)
    result = remediate.run_action(svc, target.id, action, actor=ACTOR, **kwargs)
    assert result.ok, result.message
    snapshot = world(svc)
    again = remediate.run_action(svc, target.id, action, actor=ACTOR, **kwargs)
    assert not again.ok and not again.changed and "nothing to do" in again.message.lower(), again.message
    assert world(svc) == snapshot
    after = checks(svc)
    assert target.key not in after
    assert set(after) <= set(before) - {target.key}, f"new findings: {set(after) - set(before)}"
    return result


def adopted(svc: Any, pi: str) -> tuple[Booking, list[BookingLeg]]:
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.payment_intent_id == pi)).one()
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id).order_by(BookingLeg.day)))
    return b, legs


# ------------------------------------------------------------------------------------------- detection


def test_an_old_systems_history_gets_every_check_a_booking_gets(svc: Any) -> None:
    found = loaded(svc)

    assert {code: sorted(by_pi) for code, by_pi in found.items()} == {
        "missing_extras": [SONIC_BARE],
        "holiday_booking": sorted([GOOD_FRIDAY, FAMILY_DAY, XMAS_EVE]),
        "refund_policy_mismatch": sorted([PART_OFF, PART_TWO]),
        "paid_no_event": sorted([PART_OFF, PART_TWO]),
        "refund_no_event": [FULL_BACK],
        # every whole old booking still ahead: the old system never sent one
        "missing_confirmation": sorted(
            [SONIC_BARE, SONIC_FULL, GOOD_FRIDAY, HOLY_THURSDAY, XMAS_EVE, DEC_23, TWO_DAYS]
        ),
    }
    # The near-misses, one by one.
    assert SONIC_FULL not in found["missing_extras"]  # its extras are in the metadata
    assert HOLY_THURSDAY not in found["holiday_booking"]  # the day before Good Friday
    assert DEC_23 not in found["holiday_booking"]  # the day before the closure
    assert all(PART_POLICY not in by_pi for by_pi in found.values())  # 50 % band: a cancellation, the fee kept
    assert all(TWO_DAYS not in found.get(code, {}) for code in ("partial_multiday", "refund_policy_mismatch"))
    assert FULL_BACK not in found["paid_no_event"]  # refunded in full is not "paid, no event"
    assert FAMILY_DAY not in found["missing_confirmation"]  # past: a confirmation no longer matters


def test_the_findings_say_what_the_old_system_left_undone(svc: Any) -> None:
    found = loaded(svc)

    partly = found["paid_no_event"][PART_OFF]
    assert "partly refunded ($30.00 of $140.00)" in partly.summary and "not refunded" not in partly.summary
    assert "the other $110.00 refunding" in partly.summary and partly.amount_cents == 11_000
    # One day still paid for gets its event; of two, which one the refund gave up is not recorded.
    assert partly.actions == ["create_events", "refund", "acknowledge"]
    assert found["paid_no_event"][PART_TWO].actions == ["refund", "acknowledge"]

    off = found["refund_policy_mismatch"][PART_OFF]
    assert off.summary == (
        "Gallery, Wed 25 Feb 10:00–12:00: the old system refunded $30.00 of $140.00; the policy said $70.00 "
        "(50 %: refunded 25 h before the day)"
    )
    assert off.details["quote_cents"] == 7_000 and off.amount_cents == 4_000
    assert "no choice of its days gives $50.00" in found["refund_policy_mismatch"][PART_TWO].summary

    past = found["holiday_booking"][FAMILY_DAY]
    assert "Mon 16 Feb (Family Day) — already past: the customer may have paid for a day" in past.summary
    assert past.amount_cents == 8_000
    assert "Fri 3 Apr (Good Friday)" in found["holiday_booking"][GOOD_FRIDAY].summary
    assert "Thu 24 Dec (Christmas Eve closure)" in found["holiday_booking"][XMAS_EVE].summary

    unconfirmed = found["missing_confirmation"][TWO_DAYS]
    assert "whether someone sent one by hand is not recorded" in unconfirmed.summary
    assert "(Mon 16 Mar cancelled)" in unconfirmed.summary
    assert "without its extras (Podcast or show name, Set choice)" in found["missing_extras"][SONIC_BARE].summary


def test_holidays_a_venue_does_not_observe_are_not_findings_closures_still_are(make_services: Any) -> None:
    svc = make_services(observe_holidays=False)
    found = loaded(svc)
    assert sorted(found["holiday_booking"]) == [XMAS_EVE]


def test_an_old_booking_with_no_customer_email_offers_only_a_note(svc: Any) -> None:
    """No address to send a confirmation to: the finding still says the confirmation is unknown, offering a note."""
    pi = svc.payments.create_payment_intent(
        amount_cents=9000,
        currency="cad",
        metadata={"room": "boardroom", "booking_dates": "2026-03-11", "booking_time": "10:00-12:00"},
        idempotency_key="old-no-email",
    )["id"]
    svc.payments.confirm_payment_intent(pi)
    svc.calendar.insert_event(
        BOARDROOM,
        {
            "summary": "Walk-in",
            "description": f"Paid: {pi}",
            "start": {"dateTime": venue_time(svc, date(2026, 3, 11), time(10))},
            "end": {"dateTime": venue_time(svc, date(2026, 3, 11), time(12))},
        },
    )
    (f,) = run(svc)["missing_confirmation"]
    assert f.payment_intent == pi and f.actions == ["acknowledge"]


# ------------------------------------------------------------------------------------------- fixes


def test_a_good_friday_booking_of_the_old_system_is_cancelled_with_a_full_refund(svc: Any) -> None:
    loaded(svc)
    svc.clock.at = datetime(2026, 4, 2, 3, 0, tzinfo=UTC)  # Wed 1 Apr 20:00, 38 h before: the policy gives 50 %
    target = finding_of(svc, "holiday_booking", GOOD_FRIDAY)
    text = remediate.describe_action(svc, target.id, "cancel_full_refund")
    assert "Adopt payment pi_3AuditGoodFri00003 (Boardroom, Fri 3 Apr 10:00–12:00, made by the old system)" in text
    assert "cancel Fri 3 Apr and refund $90.00 in full" in text and "gus.friday@example.org" in text

    result = fix_clears(svc, "holiday_booking", GOOD_FRIDAY, "cancel_full_refund", reason="Closed for Good Friday")

    b, legs = adopted(svc, GOOD_FRIDAY)
    assert result.message == (
        f"Cancelled Fri 3 Apr; refunded $90.00 for {b.reference}; deleted 1 event; emailed gus.friday@example.org"
    )
    assert (b.status, legs[0].state, legs[0].refunded_cents) == ("CANCELLED", "CANCELLED", 9000)
    assert charge(svc, GOOD_FRIDAY)["amount_refunded"] == 9000
    assert svc.calendar.get_event(BOARDROOM, "audit000320260403")["status"] == "cancelled"
    assert len(svc.mail.messages(b.id, kind="cancellation")) == 1
    # Its confirmation finding went with it: nothing is booked any more.
    assert "missing_confirmation" not in {f.code for f in checks(svc).values() if f.payment_intent == GOOD_FRIDAY}


def test_a_past_family_day_booking_of_the_old_system_is_refunded_in_full(svc: Any) -> None:
    loaded(svc)
    target = finding_of(svc, "holiday_booking", FAMILY_DAY)
    assert "mark Mon 16 Feb refunded (the venue was shut on Mon 16 Feb)" in remediate.describe_action(
        svc, target.id, "cancel_full_refund"
    )

    result = fix_clears(svc, "holiday_booking", FAMILY_DAY, "cancel_full_refund", reason="Closed for Family Day")

    b, legs = adopted(svc, FAMILY_DAY)
    assert result.message.startswith(f"Marked refunded: Mon 16 Feb; refunded $80.00 for {b.reference}")
    assert (b.status, legs[0].state, legs[0].refunded_cents) == ("REFUNDED", "REFUNDED", 8000)
    assert charge(svc, FAMILY_DAY)["amount_refunded"] == 8000
    assert svc.calendar.get_event(WORKSHOP, "audit000520260216")["status"] == "cancelled"
    assert len(svc.mail.messages(b.id, kind="refund")) == 1


def test_a_past_holiday_booking_of_ours_is_a_finding_and_is_refunded(make_services: Any, booking_request: Any) -> None:
    from tests.conftest import NOW

    booked_then = make_services(observe_holidays=False, now=NOW + timedelta(days=20))
    started = bk.start_booking(booked_then, booking_request(dates=[date(2026, 4, 3)]), actor="customer")
    bk.sandbox_pay(booked_then, started.booking_id, actor="webhook")
    booked_then.clock.at = datetime(2026, 4, 7, 17, 0, tzinfo=UTC)  # the Tuesday after: the day is over
    bk.advance_legs(booked_then)
    svc = make_services(data_dir=booked_then.settings.data_dir)  # the venue observes holidays now
    svc.clock = booked_then.clock
    (f,) = run(svc)["holiday_booking"]
    assert f.payment_intent == started.payment_intent and "Fri 3 Apr (Good Friday) — already past" in f.summary

    result = remediate.run_action(svc, f.id, "cancel_full_refund", actor=ACTOR, reason="Closed that day")

    assert result.ok and result.message.startswith("Marked refunded: Fri 3 Apr; refunded $90.00"), result.message
    with svc.session() as s:
        (leg,) = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)))
    assert (leg.state, leg.refunded_cents) == ("REFUNDED", 9000)
    assert "holiday_booking" not in run(svc)


def test_the_extras_of_an_old_sonic_studio_booking_are_filled_in(svc: Any) -> None:
    loaded(svc)
    extras = {"show_name": "Mo's Show", "set_choice": "Band rehearsal"}

    result = fix_clears(svc, "missing_extras", SONIC_BARE, "fill_extras", extras=extras)

    assert result.message == "Saved the extras and updated 1 event (Wed 11 Mar)"
    b, legs = adopted(svc, SONIC_BARE)
    assert b.extras == extras and (b.status, legs[0].event_id) == ("CONFIRMED", "audit000120260311")
    assert "Show name: Mo's Show" in svc.calendar.get_event(SONIC, "audit000120260311")["description"]


def test_an_old_booking_gets_the_confirmation_the_old_system_never_sent(svc: Any) -> None:
    loaded(svc)
    target = finding_of(svc, "missing_confirmation", HOLY_THURSDAY)
    assert "email its confirmation to tess.thursday@example.org" in remediate.describe_action(
        svc, target.id, "resend_confirmation"
    )

    result = fix_clears(svc, "missing_confirmation", HOLY_THURSDAY, "resend_confirmation")

    assert result.message == "Confirmation emailed to tess.thursday@example.org"
    b, legs = adopted(svc, HOLY_THURSDAY)
    assert b.confirmation_sent_at is not None and [leg.event_id for leg in legs] == ["audit000420260402"]


def test_a_partly_refunded_old_payment_of_two_days_is_refunded_not_put_on_the_calendar(svc: Any) -> None:
    loaded(svc)
    target = finding_of(svc, "paid_no_event", PART_TWO)
    refused = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)
    assert not refused.ok and "is not a fix for this finding" in refused.message

    result = fix_clears(svc, "paid_no_event", PART_TWO, "refund", reason="Cancelled by phone in February")

    assert "Refunded $230.00" in result.message
    assert charge(svc, PART_TWO)["amount_refunded"] == 28_000


def test_a_partly_refunded_old_payment_of_one_day_gets_its_event(svc: Any) -> None:
    pi = legacy_payment(svc, day=date(2026, 3, 11))
    svc.payments.refund(pi, amount_cents=2000, reason="goodwill", idempotency_key="old-goodwill")
    found = run(svc)
    assert "partly refunded ($20.00 of $90.00)" in found["paid_no_event"][0].summary
    # $20 is no policy quote a week ahead (100 %): the day is still paid for, and the refund is a finding of its own.
    assert found["refund_policy_mismatch"][0].details["quote_cents"] == 9000
    assert "$20.00 of it refunded in Stripe" in remediate.describe_action(
        svc, found["paid_no_event"][0].id, "create_events"
    )

    fix_clears(svc, "paid_no_event", pi, "create_events")

    b, legs = adopted(svc, pi)
    assert b.status == "CONFIRMED" and legs[0].event_id == bk.event_id_for(b.reference, date(2026, 3, 11))


def test_an_old_payment_cancelled_under_the_policy_is_left_alone(svc: Any) -> None:
    """A day refunded 50 % inside 48 h with no event: cancelled, the rest is the fee. The same refund a week ahead
    (100 % then) is not the policy: the day is still paid for."""
    pi = legacy_payment(svc, day=date(2026, 3, 4), key="old-cancelled")  # Wed 10:00, 49 h ahead of NOW
    svc.clock.advance(hours=10)  # 39 h before: the 50 % band
    svc.payments.refund(pi, amount_cents=4500, reason="requested_by_customer", idempotency_key="old-half")
    assert run(svc) == {}

    other = legacy_payment(svc, day=date(2026, 3, 11), key="old-early")
    svc.payments.refund(other, amount_cents=4500, reason="requested_by_customer", idempotency_key="old-early-half")
    found = run(svc)
    assert [f.payment_intent for f in found["paid_no_event"]] == [other]
    assert [f.payment_intent for f in found["refund_policy_mismatch"]] == [other]


def test_no_fix_offered_for_an_old_payment_fails_for_being_old(svc: Any) -> None:
    """Every action an old payment's finding offers has a plan (no "has no booking in Room Desk" refusal)."""
    loaded(svc)
    for f in findings.open_findings(svc):
        for action in f.actions:
            text = remediate.describe_action(svc, f.id, action)
            assert "no booking in Room Desk" not in text, (f.code, action, text)


def test_raising_a_price_on_settings_does_not_flag_the_old_systems_payments(svc: Any) -> None:
    """The old system charged the price list Room Desk started from: an admin raising the Boardroom's price later
    must not turn every old Boardroom payment into an amount_mismatch; a payment that was wrong then still is."""
    from services.core.venue import save_venue_config
    from services.core.venue_state import VenueEdit

    before = loaded(svc).get("amount_mismatch", {})
    rows = [r.model_dump(mode="json") for r in svc.venue.stored.rooms]
    for row in rows:
        if row["slug"] == "boardroom":
            row["hourly_price_cents"] += 1500
    save_venue_config(svc, VenueEdit(svc.venue.version, rooms=tuple(rows)), actor=ACTOR, note="new prices")
    assert svc.catalogue.room("boardroom").hourly_price_cents == 6000
    after = {f.payment_intent for f in run(svc).get("amount_mismatch", [])}
    assert after == set(before)
    assert GOOD_FRIDAY not in after and HOLY_THURSDAY not in after  # Boardroom payments at the old $45.00/h


def test_an_adopted_old_booking_keeps_the_old_systems_rate_after_prices_rise(svc: Any) -> None:
    """A fix adopts an old payment into a booking; its snapshot carries the rate the old system sold at (the price
    list Room Desk started from), so a later change re-prices its hours at that rate, not at a price raised since."""
    from services.core.venue import save_venue_config
    from services.core.venue_state import VenueEdit

    loaded(svc)
    rows = [r.model_dump(mode="json") for r in svc.venue.stored.rooms]
    for row in rows:
        if row["slug"] == "sonic-studio":
            row["hourly_price_cents"] = 9900
    save_venue_config(svc, VenueEdit(svc.venue.version, rooms=tuple(rows)), actor=ACTOR, note="new prices")
    fix_clears(
        svc, "missing_extras", SONIC_BARE, "fill_extras", extras={"show_name": "X", "set_choice": "Band rehearsal"}
    )
    b, _ = adopted(svc, SONIC_BARE)
    assert b.pricing_snapshot["hourly_cents"] == svc.seed_catalogue.room("sonic-studio").hourly_price_cents == 5500
    assert svc.catalogue.room("sonic-studio").hourly_price_cents == 9900


def test_new_refund_bands_on_settings_do_not_rejudge_the_old_systems_refunds(svc: Any) -> None:
    """An old payment cancelled correctly under the 50 % band stays clean after an admin saves stricter bands: its
    customer was sold under the rules Room Desk started from."""
    from services.core.venue import save_venue_config
    from services.core.venue_state import VenueEdit

    before = loaded(svc)
    assert all(PART_POLICY not in by_pi for by_pi in before.values())
    save_venue_config(
        svc, VenueEdit(svc.venue.version, rules={"refund_bands": [[72, 100], [0, 0]]}), actor=ACTOR, note="stricter"
    )
    assert [(b.hours_before, b.percent) for b in svc.policy.refund_bands] == [(72, 100), (0, 0)]
    after = run(svc)
    assert all(PART_POLICY not in {f.payment_intent for f in fs} for fs in after.values())
    assert {f.payment_intent for f in after.get("refund_policy_mismatch", [])} == set(before["refund_policy_mismatch"])
