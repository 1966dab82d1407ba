"""Customer emails render every kind in text and HTML, escape what customers typed, and the confirmation's .ics
opens in a calendar at the right times."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import icalendar
import pytest

from models.tables import Booking, BookingLeg
from services.core.catalogue import Catalogue, parse_catalogue
from services.core.settings import Settings
from services.notify.emails import KINDS, ChangeNote, ics, policy_text, render

POLICY = {"version": "2026-01", "bands": [[48, 100], [24, 50], [0, 0]], "text": "Full refund 48 h or more before."}


@pytest.fixture
def catalogue() -> Catalogue:
    return parse_catalogue(
        {
            "venue": {
                "name": "Labour Temple",
                "address": "307 W Pender St, Vancouver, BC",
                "email": "admin@labourtemple.example",
                "phone": "604-555-0142",
            },
            "rooms": [
                {
                    "slug": "sonic-studio",
                    "name": "Sonic Studio",
                    "calendar_id": "sonic@group.calendar.google.com",
                    "hourly_price_cents": 5000,
                    "capacity": 10,
                    "extras": [{"key": "show_name", "label": "Show name"}],
                }
            ],
        }
    )


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path)


def make_booking(**kw: Any) -> tuple[Booking, list[BookingLeg]]:
    kw.setdefault("id", 7)
    kw.setdefault("reference", "RD-7K2Q")
    kw.setdefault("room_slug", "sonic-studio")
    kw.setdefault("start_time", "10:00")
    kw.setdefault("end_time", "12:00")
    kw.setdefault("customer_name", "Ava Nguyen")
    kw.setdefault("customer_email", "ava@example.org")
    kw.setdefault("amount_cents", 20000)
    kw.setdefault("extras", {"show_name": "Late Night Radio"})
    kw.setdefault("policy_snapshot", dict(POLICY))
    kw.setdefault("confirmed_at", datetime(2026, 3, 2, 17, 0, tzinfo=UTC))
    booking = Booking(**kw)
    # 10:00–12:00 Vancouver time on both sides of the DST change (8 March 2026): PST is UTC-8, PDT UTC-7.
    legs = [
        BookingLeg(
            booking_id=7,
            day=date(2026, 3, 6),
            starts_at=datetime(2026, 3, 6, 18, 0, tzinfo=UTC),
            ends_at=datetime(2026, 3, 6, 20, 0, tzinfo=UTC),
            calendar_id="sonic@group.calendar.google.com",
            price_cents=10000,
        ),
        BookingLeg(
            booking_id=7,
            day=date(2026, 3, 9),
            starts_at=datetime(2026, 3, 9, 17, 0, tzinfo=UTC),
            ends_at=datetime(2026, 3, 9, 19, 0, tzinfo=UTC),
            calendar_id="sonic@group.calendar.google.com",
            price_cents=10000,
        ),
    ]
    return booking, legs


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_text_and_html_with_the_reference(
    kind: str, catalogue: Catalogue, settings: Settings
) -> None:
    booking, legs = make_booking()
    change = ChangeNote(1, ("Thu 5 Mar 10:00–12:00 → Fri 6 Mar 10:00–12:00",), charge_cents=2500)
    email = render(
        kind, booking=booking, legs=legs, catalogue=catalogue, settings=settings, refund_cents=5000, change=change
    )
    assert email.subject
    for body in (email.text, email.html):
        assert "Ava Nguyen" in body
        assert "RD-7K2Q" in body
        assert "Sonic Studio" in body
        assert "Fri 6 Mar" in body and "Mon 9 Mar" in body
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    assert "{{" not in email.text and "{%" not in email.text


def test_confirmation_lists_days_in_venue_time_policy_extras_and_address(
    catalogue: Catalogue, settings: Settings
) -> None:
    booking, legs = make_booking()
    email = render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    assert email.subject == "Booking confirmed: Sonic Studio, Fri 6 Mar, Mon 9 Mar"
    for body in (email.text, email.html):
        # Same local hours on both sides of the DST change, though the UTC times differ.
        assert "Fri 6 Mar, 10:00–12:00" in body
        assert "Mon 9 Mar, 10:00–12:00" in body
        assert "Full refund 48 h or more before." in body
        assert "Show name" in body and "Late Night Radio" in body
        assert "307 W Pender St, Vancouver, BC" in body
        assert "$200.00" in body
        assert "604-555-0142" in body


def test_policy_text_comes_from_the_snapshot_not_todays_settings(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking(policy_snapshot={"version": "2025-01", "bands": [[72, 100], [0, 0]]})
    email = render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    assert "Full refund 72 h or more before; no refund under 72 h." in email.text
    assert policy_text({}) == ""


def test_html_escapes_what_the_customer_typed(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking(customer_name='<script>alert("x")</script> & Co', extras={"show_name": "<b>Loud</b>"})
    for kind in KINDS:
        change = ChangeNote(1, ("<i>x</i> → Fri 6 Mar",))
        email = render(
            kind, booking=booking, legs=legs, catalogue=catalogue, settings=settings, reason="<i>x</i>", change=change
        )
        assert "<script>" not in email.html
        assert "&lt;script&gt;" in email.html
        assert "&amp; Co" in email.html
        assert "<b>Loud</b>" not in email.html
        assert "<i>x</i>" not in email.html
        # The plain-text part shows the name as typed.
        assert '<script>alert("x")</script> & Co' in email.text


def test_cancellation_says_refund_amount_or_none(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking()
    paid = render(
        "cancellation", booking=booking, legs=legs[:1], catalogue=catalogue, settings=settings, refund_cents=5000
    )
    assert "We have refunded $50.00" in paid.text and "$50.00" in paid.html
    assert "Fri 6 Mar" in paid.text and "Mon 9 Mar" not in paid.text
    none = render("cancellation", booking=booking, legs=legs[:1], catalogue=catalogue, settings=settings)
    assert "no refund is due" in none.text and "no refund is due" in none.html
    assert "refunded" not in none.text


def test_refund_gives_amount_and_reason(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking()
    email = render(
        "refund",
        booking=booking,
        legs=legs,
        catalogue=catalogue,
        settings=settings,
        refund_cents=2550,
        reason="The projector was broken",
    )
    assert email.subject == "Refund for your booking RD-7K2Q: $25.50"
    assert "We have refunded $25.50" in email.text
    assert "Why: The projector was broken" in email.text
    assert "The projector was broken" in email.html
    assert "stands as it is" in email.text
    gone = render("refund", booking=booking, legs=legs, catalogue=catalogue, settings=settings, booking_stands=False)
    assert "find another time" in gone.text


def test_auto_refund_explains_the_slot_was_taken_and_refunds_in_full(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking()
    email = render("auto_refund", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    for body in (email.text, email.html):
        assert "was taken at the moment of your payment" in body
        assert "refunded in full" in body
        assert "$200.00" in body
    assert email.attachments == []


def test_unknown_kind_is_refused(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking()
    with pytest.raises(ValueError, match="unknown email kind"):
        render("invoice", booking=booking, legs=legs, catalogue=catalogue, settings=settings)


def test_confirmation_carries_an_ics_with_one_event_per_day_in_utc(catalogue: Catalogue, settings: Settings) -> None:
    booking, legs = make_booking()
    email = render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    [(filename, mime, content)] = email.attachments
    assert filename == "booking-RD-7K2Q.ics"
    assert mime == "text/calendar"
    assert b"\r\n" in content  # RFC 5545 line endings
    assert all(len(line) <= 75 for line in content.split(b"\r\n"))  # folded

    cal = icalendar.Calendar.from_ical(content)
    assert str(cal["METHOD"]) == "PUBLISH"
    events = list(cal.walk("VEVENT"))
    assert [str(e["UID"]) for e in events] == ["RD-7K2Q-20260306@roomdesk", "RD-7K2Q-20260309@roomdesk"]
    assert [e.decoded("DTSTART") for e in events] == [
        datetime(2026, 3, 6, 18, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 17, 0, tzinfo=UTC),
    ]
    assert [e.decoded("DTEND") for e in events] == [
        datetime(2026, 3, 6, 20, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 19, 0, tzinfo=UTC),
    ]
    assert b"DTSTART:20260306T180000Z" in content  # UTC form, no TZID to resolve
    first = events[0]
    assert "Sonic Studio" in str(first["SUMMARY"])
    assert str(first["LOCATION"]) == "Sonic Studio, Labour Temple, 307 W Pender St, Vancouver, BC"
    assert "RD-7K2Q" in str(first["DESCRIPTION"])


def test_ics_escapes_and_folds_long_customer_text_and_is_stable(catalogue: Catalogue) -> None:
    name = "Ava; Nguyen, \\ Co " + "x" * 120
    booking, legs = make_booking(customer_name=name)
    content = ics(booking, legs, catalogue)
    assert content == ics(booking, legs, catalogue)  # same bytes on a retry: same UIDs and DTSTAMP
    assert b"Ava\\; Nguyen\\, \\\\ Co" in content
    assert all(len(line) <= 75 for line in content.split(b"\r\n"))
    [event, _] = icalendar.Calendar.from_ical(content).walk("VEVENT")
    assert name in str(event["DESCRIPTION"])


def test_confirmation_and_what_is_left_after_a_cancellation_link_to_the_manage_page(
    catalogue: Catalogue, settings: Settings
) -> None:
    url = "http://127.0.0.1:8000/manage/RD-7K2Q?k=tok123"
    booking, legs = make_booking(pay_token="tok123", status="CONFIRMED")
    confirmed = render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    assert url in confirmed.text and f'href="{url}"' in confirmed.html
    reminder = render("reminder", booking=booking, legs=legs[1:], catalogue=catalogue, settings=settings)
    assert reminder.subject == "Reminder: Sonic Studio, Mon 9 Mar, 10:00–12:00"
    assert url in reminder.text and f'href="{url}"' in reminder.html and "Fri 6 Mar" not in reminder.text
    booking.status = "PARTLY_CANCELLED"  # type: ignore[assignment]
    partly = render("cancellation", booking=booking, legs=legs[:1], catalogue=catalogue, settings=settings)
    assert f"The rest of your booking stands. See it and your receipt: {url}" in partly.text and url in partly.html
    booking.status = "CANCELLED"  # type: ignore[assignment]
    gone = render("cancellation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    assert "/manage/" not in gone.text and "/manage/" not in gone.html
    old, legs = make_booking(status="CONFIRMED")  # made before customer links existed: no token, no link
    assert "/manage/" not in render("confirmation", booking=old, legs=legs, catalogue=catalogue, settings=settings).text
