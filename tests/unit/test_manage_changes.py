"""Changing a day from the customer's manage page (issue 12 §3): see the change and its price first, then confirm —
made at once when it costs the same or less, held and paid on the change's own page when it costs more — and, once
the day is inside the cut-off, a few words to the venue instead. Through the FastAPI app on sandbox gateways.

The clock is the suite's (Mon 2 Mar 2026, 09:00 in Vancouver). The Boardroom is $45/h: 10:00–12:00 is $90 a day.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import Amendment, AmendmentState, AuditLog, Booking, BookingLeg, LegState
from services.rules.fmt import hhmm
from tests.unit.test_manage_page import (
    FRI,
    REFUND_BANDS,
    THU,
    WED,
    book_and_pay,
    client_for,
    day_row,
    problems,
    refunds,
    text,
)


def book(client: TestClient, day: str, start: str, end: str) -> tuple[str, str]:
    """A customer books one Boardroom day on /book and pays with the sandbox test card; returns (reference, token)."""
    r = client.post(
        "/book/boardroom",
        data={
            "dates": [day],
            "start": start,
            "end": end,
            "customer_name": "Ava Nguyen",
            "customer_email": "ava@example.org",
            "terms_version": "2026-01",
            "accept_terms": "yes",
        },
    )
    assert r.status_code == 303, r.text
    ref, token = r.headers["location"].split("/pay/")[1].split("?k=")
    assert client.post(f"/pay/{ref}/test-card", data={"k": token, "card": "pm_card_visa"}).status_code == 303
    return ref, token


def shape(svc: Any, ref: str) -> list[tuple[str, str, str, int]]:
    """The booked days as the venue sees them: date, start, end, price."""
    tz = svc.settings.tz
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == ref)).one()
        legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)).all()
        return sorted(
            (
                str(leg.day),
                hhmm(leg.starts_at.astimezone(tz).time()),
                hhmm(leg.ends_at.astimezone(tz).time()),
                leg.price_cents,
            )
            for leg in legs
            if leg.state == LegState.CONFIRMED
        )


def change_fields(day: str, new_day: str | None = None, start: str = "10:00", end: str = "12:00") -> dict[str, str]:
    return {f"date_{day}": new_day or day, f"start_{day}": start, f"end_{day}": end}


def preview(client: TestClient, ref: str, token: str, **fields: str) -> Any:
    return client.get(f"/manage/{ref}/change", params={"k": token, **fields})


def confirm_form(page: str) -> dict[str, Any]:
    """The hidden fields of the preview's confirmation form, as the browser would post them."""
    form = re.search(r'<form method="post" action="[^"]+/change"[^>]*>(.*?)</form>', page, re.S)
    assert form, "no confirmation form"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1)))


def change_rows(page: str) -> list[str]:
    """The preview's days, old → new and the price, as a laptop shows them (the phone's inline labels left out)."""
    table = re.search(r'<table[^>]*id="change-table"[^>]*>.*?<tbody>(.*?)</tbody>', page, re.S)
    assert table, "no change table"
    rows = re.findall(
        r"<tr>(.*?)</tr>", re.sub(r'<span class="phone-only[^"]*">[^<]*</span>', "", table.group(1)), re.S
    )
    return [text(row) for row in rows]


def outcome(page: str) -> str:
    match = re.search(r'id="change-outcome"[^>]*>(.*?)</p>', page, re.S)
    return text(match.group(1)) if match else ""


@pytest.fixture
def client(svc: Any) -> TestClient:
    return client_for(svc)


def test_moving_a_day_at_the_same_price_from_the_page(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    page = client.get(f"/manage/{ref}", params={"k": token})
    assert 'id="change-form"' in page.text and f'name="date_{THU}"' in page.text and "<script" not in page.text

    shown = preview(client, ref, token, **change_fields(THU, FRI))
    assert shown.status_code == 200
    assert "Make this change?" in text(shown.text)
    assert change_rows(shown.text) == ["Thu 5 Mar 10:00–12:00 → Fri 6 Mar 10:00–12:00 $90.00"]
    assert outcome(shown.text) == "Same price: nothing to pay, nothing refunded"
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]  # nothing happens before confirming

    form = confirm_form(shown.text)
    assert (form["net_cents"], form["base"], form["k"]) == ("0", "0", token)
    r = client.post(f"/manage/{ref}/change", data=form)
    assert r.status_code == 303 and r.headers["location"] == f"/manage/{ref}?k={token}&changed=1"
    after = client.get(r.headers["location"])
    notice = text(re.search(r'id="changed-notice">(.*?)</div>', after.text, re.S).group(1))  # type: ignore[union-attr]
    assert notice.startswith("Changed Thu 5 Mar 10:00–12:00 → Fri 6 Mar 10:00–12:00")
    assert "An email with the new days and calendar file goes to ava@example.org" in notice
    assert day_row(after.text, FRI).startswith("Fri 6 Mar 10:00–12:00 Booked $90.00")

    assert shape(svc, ref) == [(FRI, "10:00", "12:00", 9_000)]
    [mail] = svc.mail.messages(kind="changed")
    assert mail["to"] == "ava@example.org" and "Fri 6 Mar" in mail["text"]
    with svc.session() as s:
        [a] = s.exec(select(Amendment)).all()
    assert (a.state, a.actor, a.net_cents) == (AmendmentState.APPLIED, "customer", 0)

    # The same confirmation again (a double click, a reload): the first one's outcome, nothing more.
    again = client.post(f"/manage/{ref}/change", data=form)
    assert again.status_code == 303 and again.headers["location"] == r.headers["location"]
    assert len(svc.mail.messages(kind="changed")) == 1 and shape(svc, ref) == [(FRI, "10:00", "12:00", 9_000)]


def test_a_cheaper_change_shows_the_refund_then_makes_it(svc: Any, client: TestClient) -> None:
    ref, token = book(client, THU, "10:00", "13:00")
    shown = preview(client, ref, token, **change_fields(THU, end="12:00"))
    assert change_rows(shown.text) == ["Thu 5 Mar 10:00–13:00 → Thu 5 Mar 10:00–12:00 $135.00 → $90.00"]
    assert outcome(shown.text) == "We refund $45.00 to your card"
    assert "Change and refund $45.00" in shown.text and refunds(svc, ref) == []

    r = client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    assert r.status_code == 303
    after = text(client.get(r.headers["location"]).text)
    assert "Refunded to your card: $45.00" in after
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]
    [refund] = refunds(svc, ref)
    assert (refund.amount_cents, refund.origin, refund.actor) == (4_500, "amendment", "customer")
    [mail] = svc.mail.messages(kind="changed")
    assert "$45.00" in mail["text"]


def test_a_dearer_change_is_held_paid_on_its_own_page_then_made(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    assert outcome(shown.text) == "You pay $45.00 more" and "Continue to pay $45.00" in shown.text

    r = client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    assert r.status_code == 303 and r.headers["location"] == f"/manage/{ref}/change/1?k={token}"
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]  # held, not changed, until paid
    pay = client.get(r.headers["location"])
    assert pay.status_code == 200
    page = text(pay.text)
    assert "Thu 5 Mar 10:00–12:00 → Thu 5 Mar 10:00–13:00" in page
    assert "To pay for this change: $45.00" in page and "We hold the new times for you until Mon 2 Mar 09:30" in page
    assert 'id="test-card-form"' in pay.text

    # While it waits, the manage page points to it and a second change waits for it.
    waiting = client.get(f"/manage/{ref}", params={"k": token})
    assert f'href="/manage/{ref}/change/1?k={token}"' in waiting.text
    other = preview(client, ref, token, **change_fields(THU, FRI))
    assert other.status_code == 409 and "Your change 1 is still waiting for payment" in text(other.text)

    declined = client.post(f"/manage/{ref}/change/1/test-card", data={"k": token, "card": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and "Nothing was charged; try another card." in problems(declined.text)[0]
    paid = client.post(f"/manage/{ref}/change/1/test-card", data={"k": token, "card": "pm_card_visa"})
    assert paid.status_code == 303 and paid.headers["location"] == f"/manage/{ref}/change/1?k={token}"
    done = client.get(paid.headers["location"])
    assert outcome(done.text) == "Changed"
    assert "Paid: $45.00." in text(done.text) and "Your booking now: Thu 5 Mar 10:00–13:00" in text(done.text)
    assert shape(svc, ref) == [(THU, "10:00", "13:00", 13_500)]
    assert len(svc.mail.messages(kind="changed")) == 1
    # Paying again does nothing more: the page says it is changed.
    twice = client.post(f"/manage/{ref}/change/1/test-card", data={"k": token, "card": "pm_card_visa"})
    assert twice.status_code == 409 and outcome(twice.text) == "Changed"


def test_a_dearer_change_whose_room_was_taken_meanwhile_is_refunded_in_full(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    svc.calendar.insert_event(  # staff put a meeting on the Boardroom's calendar by hand
        svc.catalogue.room("boardroom").calendar_id,
        {
            "summary": "Hand-added",
            "start": {"dateTime": f"{THU}T12:15:00-08:00"},
            "end": {"dateTime": f"{THU}T12:45:00-08:00"},
        },
    )
    r = client.post(f"/manage/{ref}/change/1/test-card", data={"k": token, "card": "pm_card_visa"})
    page = client.get(r.headers["location"])
    assert outcome(page.text) == "The room was taken meanwhile"
    assert "the $45.00 you paid was refunded in full" in text(page.text) and "Your booking is as it was." in text(
        page.text
    )
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


def test_a_change_withdrawn_or_lapsed_says_so_plainly(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    w = client.post(f"/manage/{ref}/change/1/withdraw", data={"k": token})
    assert w.status_code == 303
    page = client.get(w.headers["location"])
    assert outcome(page.text) == "This change was withdrawn" and 'id="test-card-form"' not in page.text

    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    assert confirm_form(shown.text)["base"] == "1"
    r = client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    assert r.headers["location"] == f"/manage/{ref}/change/2?k={token}"
    svc.clock.advance(minutes=31)  # the hold ran out; the worker has not lapsed it yet
    page = client.get(r.headers["location"])
    assert outcome(page.text) == "This change lapsed" and "Nothing was charged" in text(page.text)
    late = client.post(f"/manage/{ref}/change/2/test-card", data={"k": token})
    assert late.status_code == 409 and "The hold on this change ran out" in problems(late.text)[0]
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


def test_when_the_refund_changes_before_confirming_the_new_figure_is_shown(make_services: Any) -> None:
    svc = make_services(self_service_cutoff_hours=0, refund_bands=REFUND_BANDS)
    client = client_for(svc)
    ref, token = book(client, WED, "10:00", "13:00")
    shown = preview(client, ref, token, **change_fields(WED, end="12:00"))
    assert outcome(shown.text) == "We refund $45.00 to your card"
    svc.clock.advance(hours=2)  # 47 h before: the 50 % band
    r = client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    assert r.status_code == 409
    assert problems(r.text)[0].startswith(
        "This change now comes to: we refund $22.50 to your card — not we refund $45.00 to your card as shown before"
    )
    assert outcome(r.text) == "We refund $22.50 to your card" and shape(svc, ref) == [(WED, "10:00", "13:00", 13_500)]
    ok = client.post(f"/manage/{ref}/change", data=confirm_form(r.text))
    assert ok.status_code == 303 and [x.amount_cents for x in refunds(svc, ref)] == [2_250]


def test_a_change_that_cannot_be_made_says_why_in_plain_words(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    book_and_pay(client, (FRI,))  # someone else has Friday 10:00–12:00
    taken = preview(client, ref, token, **change_fields(THU, FRI))
    assert taken.status_code == 409 and "This change cannot be made" in text(taken.text)
    assert 'id="confirm-change"' not in taken.text
    assert problems(taken.text)[0] == "Fri 6 Mar: overlaps another booking (10:00–12:00)"

    late = preview(client, ref, token, **change_fields(THU, "2026-03-03"))  # Tuesday: inside the 48 h cut-off
    assert late.status_code == 409
    assert "Tue 3 Mar is less than 48 h away: only Labour Temple can move a day there." in text(late.text)

    hours = preview(client, ref, token, **change_fields(THU, start="06:00", end="08:00"))
    assert hours.status_code == 409 and problems(hours.text) == ["Outside opening hours (08:00–17:00)"]
    sunday = preview(client, ref, token, **change_fields(THU, "2026-03-08"))
    assert sunday.status_code == 409 and problems(sunday.text) == ["Sun 8 Mar: Sundays are closed"]
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


MOVE = change_fields(THU, FRI)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "date: pick a new date or new times for a day of the booking"),
        ({**MOVE, f"date_{THU}": "2026-13-45"}, f"date_{THU}: '2026-13-45' is not a date (YYYY-MM-DD)"),
        ({**MOVE, f"date_{THU}": "x" * 500}, f"date_{THU}: {'x' * 20!r} is not a date (YYYY-MM-DD)"),
        ({**MOVE, f"date_{THU}": ""}, f"date_{THU}: pick the new date for Thu 5 Mar"),
        ({**MOVE, f"start_{THU}": "25:00"}, f"start_{THU}: '25:00' is not a time (HH:MM) for Thu 5 Mar"),
        ({**MOVE, f"end_{THU}": "09:00"}, f"end_{THU}: the end (09:00) must be after the start (10:00) on Thu 5 Mar"),
        (change_fields("2026-03-09", "2026-03-10"), None),
        (change_fields(THU), "date: nothing to change: pick a new date or new times for a day"),
    ],
)
def test_bad_change_fields_are_4xx_naming_the_field(
    svc: Any, client: TestClient, fields: dict[str, str], expected: str | None
) -> None:
    ref, token = book_and_pay(client, (THU,))
    got = preview(client, ref, token, **fields)
    post = client.post(f"/manage/{ref}/change", data={"k": token, **fields, "net_cents": "0", "base": "0"})
    want = expected or f"date_2026-03-09: 2026-03-09 is not a day of booking {ref}"
    for r in (got, post):
        assert r.status_code == 422, r.text[:300]
        assert problems(r.text) == [want]
        assert "Traceback" not in r.text
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


def test_a_confirmation_missing_its_figures_is_refused_naming_them(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    r = client.post(f"/manage/{ref}/change", data={"k": token, **change_fields(THU, FRI), "net_cents": "²"})
    assert r.status_code == 422
    assert problems(r.text) == [
        "net_cents: the difference you confirm must be a whole number of cents",
        "base: the change form is incomplete; please open the change again from your booking",
    ]
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


def test_after_the_cut_off_the_card_is_closed_and_the_venue_can_be_asked(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (WED,))
    svc.clock.advance(hours=1, minutes=1)  # 10:01: Wednesday starts in under 48 h
    page = client.get(f"/manage/{ref}", params={"k": token})
    card = text(re.search(r'id="change-date">(.*)</form>', page.text, re.S).group(1))  # type: ignore[union-attr]
    assert 'id="change-form"' not in page.text
    assert card.startswith(
        "Change a date or time Changes are closed online. Wed 4 Mar is less than 48 h away, so changes are made by "
        "Labour Temple. Phone 604-555-0142 Email admin@labourtemple.example Ask the venue for a change"
    )
    refused = preview(client, ref, token, **change_fields(WED, THU))
    assert refused.status_code == 409 and problems(refused.text) == [
        "Wed 4 Mar is closed for changes online (from 48 h before the start). "
        "Please call 604-555-0142 or email admin@labourtemple.example."
    ]

    short = client.post(f"/manage/{ref}/request", data={"k": token, "message": "  move  "})
    assert short.status_code == 422
    assert problems(short.text) == ["message: say in a few words what you would like changed (at least 10 characters)"]
    long = client.post(f"/manage/{ref}/request", data={"k": token, "message": "x" * 1001})
    assert long.status_code == 422 and problems(long.text) == ["message: at most 1000 characters (yours has 1001)"]

    ask = "Could we move Wednesday to Thursday, same times? <b>Thanks</b>"
    r = client.post(f"/manage/{ref}/request", data={"k": token, "message": ask})
    assert r.status_code == 303 and r.headers["location"] == f"/manage/{ref}?k={token}&requested=1"
    assert "Sent: we will call or email you." in text(client.get(r.headers["location"]).text)
    [mail] = svc.mail.messages(kind="change_request")
    assert mail["to"] == "admin@labourtemple.example" and ref in mail["subject"]
    assert ask in mail["text"] and "Reply to: ava@example.org" in mail["text"]
    assert "&lt;b&gt;Thanks&lt;/b&gt;" in mail["html"] and "<b>Thanks" not in mail["html"]
    # The same request again (a double click): queued once, audited once.
    assert client.post(f"/manage/{ref}/request", data={"k": token, "message": ask}).status_code == 303
    assert len(svc.mail.messages(kind="change_request")) == 1
    with svc.session() as s:
        audits = s.exec(select(AuditLog).where(AuditLog.action == "booking.change.requested")).all()
    assert [(a.actor, a.payload["text"]) for a in audits] == [("customer", ask)]
    assert shape(svc, ref) == [(WED, "10:00", "12:00", 9_000)]


def test_with_self_service_changes_off_only_the_request_is_offered(make_services: Any) -> None:
    svc = make_services(self_service_changes=False)
    client = client_for(svc)
    ref, token = book_and_pay(client, (THU,))
    r = preview(client, ref, token, **change_fields(THU, FRI))
    assert r.status_code == 403
    assert problems(r.text) == [
        "Bookings are changed by Labour Temple: please call 604-555-0142 or email admin@labourtemple.example."
    ]
    ok = client.post(f"/manage/{ref}/request", data={"k": token, "message": "Please move us to Friday."})
    assert ok.status_code == 303 and len(svc.mail.messages(kind="change_request")) == 1


def test_a_wrong_token_opens_no_change_page(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    for k in ("", "guess", token[:-1], "é" * 30, "x" * 5000):
        for r in (
            preview(client, ref, k, **change_fields(THU, FRI)),
            client.post(
                f"/manage/{ref}/change", data={"k": k, **change_fields(THU, FRI), "net_cents": "0", "base": "0"}
            ),
            client.get(f"/manage/{ref}/change/1", params={"k": k}),
            client.post(f"/manage/{ref}/change/1/test-card", data={"k": k}),
            client.post(f"/manage/{ref}/change/1/withdraw", data={"k": k}),
            client.post(f"/manage/{ref}/request", data={"k": k, "message": "Please move us to Friday."}),
        ):
            assert r.status_code == 404, (k[:10], r.url)
            assert "This link is not valid" in r.text and "Ava" not in r.text
    for n in ("2", "0", "abc", "9" * 40):  # a change the booking never had
        assert client.get(f"/manage/{ref}/change/{n}", params={"k": token}).status_code == 404
    assert svc.mail.messages(kind="change_request") == []
    assert shape(svc, ref) == [(THU, "10:00", "12:00", 9_000)]


def test_in_live_mode_the_change_is_paid_with_stripes_payment_element(
    svc: Any, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change's page carries its own PaymentIntent's client secret for Stripe.js (no test card), and coming
    back from Stripe after paying makes the change even before the webhook arrives."""
    ref, token = book_and_pay(client, (THU,))
    shown = preview(client, ref, token, **change_fields(THU, end="13:00"))
    client.post(f"/manage/{ref}/change", data=confirm_form(shown.text))
    with svc.session() as s:
        [a] = s.exec(select(Amendment)).all()
    secret = svc.payments.retrieve_payment_intent(a.payment_intent_id)["client_secret"]
    monkeypatch.setattr(svc.payments, "mode", "live")
    page = client.get(f"/manage/{ref}/change/1", params={"k": token})
    assert page.status_code == 200 and 'id="test-card-form"' not in page.text
    assert 'id="payment-element"' in page.text and "https://js.stripe.com/v3/" in page.text
    assert f'mount("{secret}")' in page.text
    assert f'return_url: "http://127.0.0.1:8000/manage/{ref}/change/1?k={token}"' in page.text

    svc.payments.confirm_payment_intent(a.payment_intent_id)  # paid on Stripe's side; no webhook yet
    back = client.get(f"/manage/{ref}/change/1", params={"k": token})
    assert outcome(back.text) == "Changed" and "js.stripe.com" not in back.text
    assert shape(svc, ref) == [(THU, "10:00", "13:00", 13_500)]
