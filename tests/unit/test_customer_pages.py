"""The customer's pages (/book, /pay, /booked) on sandbox gateways, through the FastAPI app as a browser posts forms.

The clock is the suite's (Mon 2 Mar 2026, 09:00 in Vancouver): Wednesday 4 March is bookable, Saturday is closed.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlmodel import select

from models.tables import AuditLog, Booking, EmailOutbox
from services import booking as bk
from services.core.errors import InvalidState
from services.web import customer
from services.web.api import create_app

WEDNESDAY = "2026-03-04"
THURSDAY = "2026-03-05"


@pytest.fixture
def client(svc: Any) -> TestClient:
    return TestClient(create_app(svc), raise_server_exceptions=False, follow_redirects=False)


def form(**kw: Any) -> dict[str, Any]:
    kw.setdefault("dates", [WEDNESDAY])
    kw.setdefault("start", "10:00")
    kw.setdefault("end", "12:00")
    kw.setdefault("customer_name", "Ava Nguyen")
    kw.setdefault("customer_email", "ava@example.org")
    kw.setdefault("terms_version", "2026-01")
    kw.setdefault("accept_terms", "yes")
    return kw


def problems(html: str) -> list[str]:
    block = re.search(r'<ul class="problems"[^>]*>(.*?)</ul>', html, re.S)
    if block is None:
        return []
    return [re.sub(r"\s+", " ", p).strip() for p in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def row(svc: Any, reference: str) -> Booking:
    with svc.session() as s:
        found = s.exec(select(Booking).where(Booking.reference == reference)).one()
        s.expunge(found)
        return found


def book(client: TestClient, room: str = "boardroom", **kw: Any) -> tuple[str, str]:
    """Post the booking form; returns (reference, token) from the redirect to the pay page."""
    r = client.post(f"/book/{room}", data=form(**kw))
    assert r.status_code == 303, problems(r.text)
    parts = urlsplit(r.headers["location"])
    return parts.path.rsplit("/", 1)[1], parse_qs(parts.query)["k"][0]


def add_staff_event(svc: Any, day: date, start: time, end: time, room: str = "boardroom") -> None:
    tz = svc.settings.tz
    svc.calendar.insert_event(
        f"{room}@group.calendar.google.com",
        {
            "summary": "Staff meeting",
            "start": {"dateTime": datetime.combine(day, start, tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.combine(day, end, tzinfo=tz).isoformat()},
        },
    )


# --------------------------------------------------------------------------------------------------- /book


def test_rooms_page_links_every_bookable_room(svc: Any, client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    links = re.findall(r'href="/book/([a-z-]+)"', r.text)
    assert links == [room.slug for room in svc.catalogue.bookable_rooms] and len(links) == 7
    assert "$45.00 / hour" in r.text  # the Boardroom's price from the catalogue
    assert client.get("/book/attic").status_code == 404


def test_book_page_shows_real_availability(svc: Any, client: TestClient) -> None:
    add_staff_event(svc, date(2026, 3, 4), time(9), time(11))
    r = client.get("/book/boardroom")
    assert r.status_code == 200
    assert 'value="2026-03-03"' in r.text  # Tuesday: the first day with 24 h notice
    assert 'value="2026-03-02"' not in r.text  # today is too soon
    wed = r.text[r.text.index('value="2026-03-04"') :].split("</tr>")[0]
    assert "08:00–08:45" in wed and "11:15–17:00" in wed and "09:00–11:00" in wed  # free, free, busy
    sat = r.text[r.text.index("Sat 7 Mar") :].split("</tr>")[0]
    assert "Saturdays are closed" in sat and "checkbox" not in sat
    assert "version 2026-01" in r.text and "Full refund 48 h or more before" in r.text
    later = client.get("/book/boardroom?from=2026-03-16")
    assert 'value="2026-03-16"' in later.text and 'value="2026-03-04"' not in later.text


def test_every_problem_is_listed_at_once_and_nothing_is_booked(svc: Any, client: TestClient) -> None:
    add_staff_event(svc, date(2026, 3, 4), time(9), time(11))
    r = client.post(
        "/book/sonic-studio",
        data=form(accept_terms="", customer_email="ava-at-example", extra_show_name="Night Shift"),
    )
    assert r.status_code == 422
    assert problems(r.text) == [
        "Please read and accept the cancellation policy and terms",
        "Please accept the Sonic Studio agreement",
        "A valid customer email is required (name@example.com)",
        "Set choice is required for the Sonic Studio",
    ]
    assert 'value="Night Shift"' in r.text and 'value="ava-at-example"' in r.text  # what was typed is kept
    assert re.search(r'value="2026-03-04"[^>]*checked', r.text)
    with svc.session() as s:
        assert s.exec(select(Booking)).all() == []
    first = client.post("/book/boardroom", data=form(start="12:00", end="14:00"))
    assert first.status_code == 303
    taken = client.post("/book/boardroom", data=form(start="13:00", end="15:00", customer_email="bo@example.org"))
    assert taken.status_code == 409
    assert problems(taken.text) == ["Wed 4 Mar: overlaps a held booking (12:00–14:00)"]
    with svc.session() as s:
        assert len(s.exec(select(Booking)).all()) == 1


def test_booking_form_holds_the_slot_and_records_the_terms(svc: Any, client: TestClient) -> None:
    ref, token = book(
        client,
        "sonic-studio",
        dates=[WEDNESDAY, THURSDAY],
        accept_agreement="yes",
        extra_show_name="Night Shift",
        extra_set_choice="Band rehearsal",
        party_size="4",
    )
    b = row(svc, ref)
    assert b.status == "AWAITING_PAYMENT" and b.channel == "web" and b.pay_token == token
    assert b.extras == {"show_name": "Night Shift", "set_choice": "Band rehearsal"}
    assert b.party_size == 4
    # One question about the group: the booking's own "Number of people", not a second "Group size" in the extras.
    form = client.get("/book/sonic-studio").text
    assert "Number of people" in form and "Group size" not in form
    assert (b.terms_version, b.terms_accepted_at) == ("2026-01", svc.now())
    assert b.agreement_accepted_at == svc.now()
    assert b.amount_cents == 2 * 2 * 5500
    page = client.get(f"/pay/{ref}", params={"k": token})
    assert page.status_code == 200
    assert "Wed 4 Mar, 10:00–12:00" in page.text and "Thu 5 Mar, 10:00–12:00" in page.text
    assert "$220.00" in page.text and "Night Shift" in page.text
    assert "Pay $220.00 with test card" in page.text and "accept_terms" not in page.text


def test_a_pay_link_with_a_wrong_token_opens_nothing(svc: Any, client: TestClient) -> None:
    ref, token = book(client)
    for params in ({}, {"k": "guess"}, {"k": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        r = client.get(f"/pay/{ref}", params=params)
        assert r.status_code == 404 and "Ava" not in r.text
    assert client.get("/pay/RDNOSUCH", params={"k": token}).status_code == 404
    r = client.post(f"/pay/{ref}/test-card", data={"k": "guess"})
    assert r.status_code == 404 and row(svc, ref).status == "AWAITING_PAYMENT"


# --------------------------------------------------------------------------------------------------- paying


def test_paying_confirms_with_email_and_calendar_file(svc: Any, client: TestClient) -> None:
    ref, token = book(client, dates=[WEDNESDAY, THURSDAY])
    r = client.post(f"/pay/{ref}/test-card", data={"k": token, "card": "pm_card_visa"})
    assert r.status_code == 303 and r.headers["location"] == f"/booked/{ref}?k={token}"
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Your booking is confirmed" in page.text
    assert "A confirmation email with a calendar file is on its way to ava@example.org" in page.text
    b = row(svc, ref)
    assert b.status == "CONFIRMED"
    mail = svc.mail.messages(booking_id=b.id)
    assert [m["kind"] for m in mail] == ["confirmation"] and mail[0]["to"] == "ava@example.org"
    ics = client.get(f"/booked/{ref}/calendar.ics", params={"k": token})
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    events = Calendar.from_ical(ics.content).walk("VEVENT")
    assert sorted(str(e["dtstart"].dt.date()) for e in events) == [WEDNESDAY, THURSDAY]
    # Back on the pay link later: it shows the outcome, and nothing can be paid twice.
    again = client.get(f"/pay/{ref}", params={"k": token})
    assert again.status_code == 303 and again.headers["location"].startswith(f"/booked/{ref}")
    twice = client.post(f"/pay/{ref}/test-card", data={"k": token})
    assert twice.status_code == 303 and len(svc.payments.list_charges()["data"]) == 1


def test_a_declined_card_keeps_the_hold_and_another_card_pays(svc: Any, client: TestClient) -> None:
    ref, token = book(client)
    r = client.post(f"/pay/{ref}/test-card", data={"k": token, "card": "pm_card_chargeDeclinedInsufficientFunds"})
    assert r.status_code == 402
    assert problems(r.text) == ["The card was declined: insufficient funds. Nothing was charged; try another card."]
    assert row(svc, ref).status == "AWAITING_PAYMENT"
    assert client.post(f"/pay/{ref}/test-card", data={"k": token}).status_code == 303
    assert row(svc, ref).status == "CONFIRMED"


def test_losing_the_race_at_gate_2_refunds_and_tells_the_customer(svc: Any, client: TestClient) -> None:
    ref, token = book(client)
    add_staff_event(svc, date(2026, 3, 4), time(11), time(13))  # staff take the slot while the customer pays
    r = client.post(f"/pay/{ref}/test-card", data={"k": token})
    page = client.get(r.headers["location"])
    assert "the slot was taken at the moment of your payment" in page.text
    assert "Your card is refunded in full ($90.00)" in page.text
    b = row(svc, ref)
    assert b.status in ("FAILED", "REFUNDED")
    mail = svc.mail.messages(booking_id=b.id)
    assert [m["kind"] for m in mail] == ["auto_refund"] and mail[0]["to"] == "ava@example.org"


def test_an_expired_hold_cannot_be_paid(svc: Any, client: TestClient) -> None:
    ref, token = book(client)
    svc.clock.advance(minutes=31)
    page = client.get(f"/pay/{ref}", params={"k": token})
    assert "This hold has expired" in page.text and "test-card" not in page.text
    r = client.post(f"/pay/{ref}/test-card", data={"k": token})
    assert r.status_code == 409 and "hold has expired" in problems(r.text)[0]
    assert svc.payments.list_charges()["data"] == []


# --------------------------------------------------------------------------------------------------- phone bookings


def phone_booking(svc: Any, booking_request: Any) -> bk.StartResult:
    return bk.start_booking(svc, booking_request(channel="phone"), actor="frontdesk@venue.example")


def test_phone_customer_must_accept_the_terms_before_paying(svc: Any, client: TestClient, booking_request: Any) -> None:
    started = phone_booking(svc, booking_request)
    url, sent = customer.send_pay_link(svc, started.booking_id, actor="frontdesk@venue.example")
    assert sent and url == f"http://127.0.0.1:8000{started.pay_path}"
    [mail] = svc.mail.messages(booking_id=started.booking_id)
    assert mail["kind"] == "pay_link" and url in mail["text"] and "Mon 2 Mar, 09:30" not in mail["text"]
    assert "until Tue 3 Mar, 09:00" in mail["text"]  # the phone hold (24 h), in venue time

    path = urlsplit(url)
    page = client.get(path.path, params={"k": parse_qs(path.query)["k"][0]})
    assert 'name="accept_terms"' in page.text and "test-card" not in page.text
    token = started.pay_token
    refused = client.post(f"/pay/{started.reference}/test-card", data={"k": token})
    assert refused.status_code == 409
    assert problems(refused.text) == ["Please accept the cancellation policy and terms before paying"]
    secret = client.get(f"/pay/{started.reference}/secret", params={"k": token})
    assert secret.status_code == 409 and "client_secret" not in secret.text
    unticked = client.post(f"/pay/{started.reference}/accept", data={"k": token, "terms_version": "2026-01"})
    assert unticked.status_code == 422 and "Tick the box" in problems(unticked.text)[0]

    ok = client.post(
        f"/pay/{started.reference}/accept", data={"k": token, "terms_version": "2026-01", "accept_terms": "yes"}
    )
    assert ok.status_code == 303
    b = row(svc, started.reference)
    assert (b.terms_version, b.terms_accepted_at) == ("2026-01", svc.now())
    secret = client.get(f"/pay/{started.reference}/secret", params={"k": token})
    assert secret.status_code == 200 and secret.json()["client_secret"].startswith(started.payment_intent)
    assert client.post(f"/pay/{started.reference}/test-card", data={"k": token}).status_code == 303
    assert row(svc, started.reference).status == "CONFIRMED"
    with svc.session() as s:
        acts = [a for a in s.exec(select(AuditLog).where(AuditLog.booking_id == b.id)).all()]
    accepted = [a for a in acts if a.action == "booking.terms.accepted"]
    assert [(a.actor, a.payload["version"], a.payload["via"]) for a in accepted] == [
        ("customer", "2026-01", "pay page")
    ]
    assert any(a.action == "booking.pay_link.queued" and a.actor == "frontdesk@venue.example" for a in acts)


def test_new_terms_are_asked_again_before_paying(svc: Any, make_services: Any, client: TestClient) -> None:
    ref, token = book(client)
    newer = make_services(data_dir=svc.settings.data_dir, terms_version="2026-07")
    newer_client = TestClient(create_app(newer), raise_server_exceptions=False, follow_redirects=False)
    page = newer_client.get(f"/pay/{ref}", params={"k": token})
    assert 'name="accept_terms"' in page.text and "version 2026-07" in page.text
    stale = newer_client.post(
        f"/pay/{ref}/accept", data={"k": token, "terms_version": "2026-01", "accept_terms": "yes"}
    )
    assert stale.status_code == 422 and "now version 2026-07" in problems(stale.text)[0]


def test_pay_link_email_survives_a_mail_outage_and_is_refused_once_paid(svc: Any, booking_request: Any) -> None:
    started = phone_booking(svc, booking_request)
    svc.mail.faults.fail("send", times=1)
    url, sent = customer.send_pay_link(svc, started.booking_id, actor="frontdesk")
    assert not sent
    with svc.session() as s:
        queued = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "pay_link")).all()
    assert [(q.status, q.to) for q in queued] == [("failed", "ava@example.org")] and url in queued[0].text
    customer.send_pay_link(svc, started.booking_id, actor="frontdesk")  # staff resend: a second email
    assert [m["kind"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["pay_link"]
    bk.sandbox_pay(svc, started.booking_id, actor="frontdesk")
    with pytest.raises(InvalidState, match="not waiting for payment"):
        customer.send_pay_link(svc, started.booking_id, actor="frontdesk")


def test_a_mistyped_email_domain_is_questioned_once_with_a_one_click_fix(svc: Any, client: TestClient) -> None:
    asked = client.post("/book/boardroom", data=form(customer_email="ava@gmial.com"))
    assert asked.status_code == 422
    assert problems(asked.text) == ["Please check your email address: did you mean ava@gmail.com?"]
    assert 'id="customer_email" autocomplete="email" maxlength="254" value="ava@gmial.com"' in asked.text  # kept
    assert re.search(r'<button type="submit" class="linkish" name="use_email" value="ava@gmail.com"', asked.text)
    assert '<input type="hidden" name="email_checked" value="ava@gmial.com">' in asked.text
    # A use_email that is not the suggestion is not taken.
    forged = client.post("/book/boardroom", data=form(customer_email="ava@gmial.com", use_email="eve@evil.example"))
    assert forged.status_code == 422
    with svc.session() as s:
        assert s.exec(select(Booking)).all() == []

    # One click: the suggestion.
    fixed = client.post("/book/boardroom", data=form(customer_email="ava@gmial.com", use_email="ava@gmail.com"))
    assert fixed.status_code == 303
    ref = urlsplit(fixed.headers["location"]).path.rsplit("/", 1)[1]
    assert row(svc, ref).customer_email == "ava@gmail.com"
    # Or as typed, once the customer has seen the question.
    kept = client.post(
        "/book/boardroom",
        data=form(customer_email="ava@gmial.com", email_checked="ava@gmial.com", start="13:00", end="15:00"),
    )
    assert kept.status_code == 303
    ref = urlsplit(kept.headers["location"]).path.rsplit("/", 1)[1]
    assert row(svc, ref).customer_email == "ava@gmial.com"


def test_a_group_size_written_in_other_digits_is_a_clear_problem_not_a_crash(svc: Any, client: TestClient) -> None:
    r = client.post("/book/boardroom", data=form(party_size="²"))  # a digit to str.isdigit(), not to int()
    assert r.status_code == 422
    assert problems(r.text) == ["Number of people must be a whole number from 1 to 1000"]
