"""The customer's manage page (/manage/<ref>?k=…) on sandbox gateways, through the FastAPI app as a browser posts forms.

The clock is the suite's (Mon 2 Mar 2026, 09:00 in Vancouver). Booked 10:00–12:00 on Wed 4, Thu 5 and Fri 6 March in
the Boardroom ($45/h: $90 a day, $81 with the 10 % discount for three days). Wednesday starts 49 h from now, so with
the default 48 h cut-off it closes for changes at 10:00 today.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg, BookingStatus, LegState, RefundRecord
from services.web.api import create_app

WED, THU, FRI = "2026-03-04", "2026-03-05", "2026-03-06"
REFUND_BANDS = [(48, 100), (24, 50), (0, 0)]


def client_for(svc: Any) -> TestClient:
    return TestClient(create_app(svc), raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def client(svc: Any) -> TestClient:
    return client_for(svc)


def book_and_pay(
    client: TestClient, dates: tuple[str, ...] = (WED, THU, FRI), room: str = "boardroom"
) -> tuple[str, str]:
    """A customer books on /book and pays with the sandbox test card; returns (reference, token)."""
    r = client.post(
        f"/book/{room}",
        data={
            "dates": list(dates),
            "start": "10:00",
            "end": "12:00",
            "customer_name": "Ava Nguyen",
            "customer_email": "ava@example.org",
            "terms_version": "2026-01",
            "accept_terms": "yes",
        },
    )
    assert r.status_code == 303, r.text
    parts = urlsplit(r.headers["location"])
    ref, token = parts.path.rsplit("/", 1)[1], parse_qs(parts.query)["k"][0]
    assert client.post(f"/pay/{ref}/test-card", data={"k": token, "card": "pm_card_visa"}).status_code == 303
    return ref, token


def text(page: str) -> str:
    """The page (its <main>) as a reader sees it: tags dropped, whitespace collapsed."""
    main = re.search(r"<main>(.*)</main>", page, re.S)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main.group(1) if main else page)).strip())


def problems(page: str) -> list[str]:
    block = re.search(r'<ul class="problems"[^>]*>(.*?)</ul>', page, re.S)
    return [] if block is None else [text(p) for p in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def day_row(page: str, iso: str) -> str:
    match = re.search(rf'<tr[^>]*data-day="{iso}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row for {iso}"
    return text(match.group(1))


def legs(svc: Any, ref: str) -> dict[str, LegState]:
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == ref)).one()
        return {str(leg.day): leg.state for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id))}


def booking_row(svc: Any, ref: str) -> Booking:
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == ref)).one()
        s.expunge(b)
        return b


def refunds(svc: Any, ref: str) -> list[RefundRecord]:
    b = booking_row(svc, ref)
    with svc.session() as s:
        rows = list(s.exec(select(RefundRecord).where(RefundRecord.booking_id == b.id)))
        for r in rows:
            s.expunge(r)
        return rows


def manage(client: TestClient, ref: str, token: str, **params: Any) -> Any:
    return client.get(f"/manage/{ref}", params={"k": token, **params})


# --------------------------------------------------------------------------------------------------- the page


def test_the_confirmation_email_links_to_the_manage_page_which_shows_the_booking(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client)
    [mail] = svc.mail.messages(kind="confirmation")
    url = f"http://127.0.0.1:8000/manage/{ref}?k={token}"
    assert url in mail["text"] and f'href="{url}"' in mail["html"]
    assert "cancel days (until 48 h before each day)" in mail["text"]

    r = manage(client, ref, token)
    assert r.status_code == 200
    page = text(r.text)
    assert f"Your booking {ref}" in page and "Boardroom, Labour Temple" in page and "Ava Nguyen" in page
    assert "Paid $243.00" in page
    assert day_row(r.text, WED) == "Wed 4 Mar 10:00–12:00 Booked $81.00 Cancel this day until Mon 2 Mar 10:00"
    assert day_row(r.text, FRI) == "Fri 6 Mar 10:00–12:00 Booked $81.00 Cancel this day until Wed 4 Mar 10:00"
    assert "Cancel the whole booking" in page
    assert f'href="/manage/{ref}/receipt.pdf?k={token}"' in r.text
    assert f'href="/booked/{ref}/calendar.ics?k={token}"' in r.text
    assert 'id="change-form"' in r.text and 'id="change-request"' not in r.text  # every day is open for changes
    assert "<script" not in r.text  # no JavaScript needed

    booked = client.get(f"/booked/{ref}", params={"k": token})
    assert f'href="/manage/{ref}?k={token}"' in booked.text


def test_a_wrong_token_opens_nothing_anywhere(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (WED,))
    for k in ("", "guess", token[:-1], token + "x", "é" * 30, "x" * 5000):
        for r in (
            client.get(f"/manage/{ref}", params={"k": k}),
            client.get(f"/manage/{ref}/receipt.pdf", params={"k": k}),
            client.get(f"/manage/{ref}/cancel", params={"k": k, "day": WED}),
            client.post(f"/manage/{ref}/cancel", data={"k": k, "day": WED, "refund_cents": "9000"}),
        ):
            assert r.status_code == 404, (k[:10], r.url)
            assert "This link is not valid" in r.text and "Ava" not in r.text
    assert client.get("/manage/RDNOPE", params={"k": token}).status_code == 404
    assert client.get(f"/pay/{ref}", params={"k": "é"}).status_code == 404  # was a 500: compare_digest and non-ASCII
    assert legs(svc, ref) == {WED: LegState.CONFIRMED}


def test_the_receipt_pdf_and_an_unpaid_booking(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (WED,))
    r = client.get(f"/manage/{ref}/receipt.pdf", params={"k": token})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF") and f'filename="receipt-{ref}.pdf"' in r.headers["content-disposition"]

    unpaid = client.post(
        "/book/quiet-room",
        data={
            "dates": [THU],
            "start": "10:00",
            "end": "12:00",
            "customer_name": "Bo",
            "customer_email": "bo@example.org",
            "terms_version": "2026-01",
            "accept_terms": "yes",
        },
    )
    pay_path = unpaid.headers["location"]
    ref2, token2 = urlsplit(pay_path).path.rsplit("/", 1)[1], parse_qs(urlsplit(pay_path).query)["k"][0]
    page = manage(client, ref2, token2)
    assert page.status_code == 303 and page.headers["location"] == pay_path  # not paid yet: the pay page
    pdf = client.get(f"/manage/{ref2}/receipt.pdf", params={"k": token2})
    assert pdf.status_code == 409 and "has not been paid" in pdf.text


# --------------------------------------------------------------------------------------------------- cancelling


def test_cancel_one_day_shows_the_refund_first_then_refunds_and_emails(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client)
    confirm = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": THU})
    assert confirm.status_code == 200
    page = text(confirm.text)
    assert "Cancel this day?" in page
    assert day_row(confirm.text, THU) == "Thu 5 Mar 10:00–12:00 $81.00 $81.00 (100 %, 73 h before the start)"
    assert "Refund to your card: $81.00" in page and "Your other days stand: Wed 4 Mar, Fri 6 Mar." in page
    assert legs(svc, ref)[THU] == LegState.CONFIRMED and refunds(svc, ref) == []  # nothing happens before confirming

    r = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": THU, "refund_cents": "8100"})
    assert r.status_code == 303 and r.headers["location"] == f"/manage/{ref}?k={token}&done={THU}"
    after = client.get(r.headers["location"])
    assert "Cancelled: Thu 5 Mar. Refunded to your card: $81.00 for Thu 5 Mar" in text(after.text)
    assert day_row(after.text, THU) == "Thu 5 Mar 10:00–12:00 Cancelled ($81.00 refunded) $81.00"
    assert "Refunds $81.00 on Mon 2 Mar 09:00" in text(after.text) and "Net paid $162.00" in text(after.text)

    assert legs(svc, ref) == {WED: LegState.CONFIRMED, THU: LegState.CANCELLED, FRI: LegState.CONFIRMED}
    assert booking_row(svc, ref).status == BookingStatus.PARTLY_CANCELLED
    [refund] = refunds(svc, ref)
    assert (refund.amount_cents, refund.origin, refund.actor) == (8100, "cancellation", "customer")
    with svc.session() as s:
        actions = [(a.action, a.actor) for a in s.exec(select(AuditLog).where(AuditLog.action == "booking.cancelled"))]
    assert actions == [("booking.cancelled", "customer")]
    [mail] = svc.mail.messages(kind="cancellation")
    assert "We have refunded $81.00" in mail["text"] and "Thu 5 Mar" in mail["text"]
    assert (
        f"The rest of your booking stands. See it and your receipt: http://127.0.0.1:8000/manage/{ref}?k={token}"
        in (mail["text"])
    )
    # The calendar event of that day is gone; the others stay.
    events = svc.calendar.list_events("boardroom@group.calendar.google.com")["items"]
    assert sorted(e["start"]["dateTime"][:10] for e in events if e.get("status") != "cancelled") == [WED, FRI]

    # The same confirmation sent again (a double click, a reload): the outcome of the first, nothing more.
    again = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": THU, "refund_cents": "8100"})
    assert again.status_code == 303 and again.headers["location"] == r.headers["location"]
    assert len(refunds(svc, ref)) == 1 and len(svc.mail.messages(kind="cancellation")) == 1


def test_cancel_all_cancels_the_whole_booking(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU, FRI))
    confirm = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": "all"})
    assert "Cancel the whole booking?" in text(confirm.text) and "Refund to your card: $180.00" in text(confirm.text)
    r = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": [THU, FRI], "refund_cents": "18000"})
    assert r.status_code == 303
    assert booking_row(svc, ref).status == BookingStatus.CANCELLED
    assert sum(x.amount_cents for x in refunds(svc, ref)) == 18000
    [mail] = svc.mail.messages(kind="cancellation")
    assert "/manage/" not in mail["text"]  # nothing is left to manage
    page = client.get(r.headers["location"])
    assert "Cancel this day" not in page.text and 'id="ics"' not in page.text and 'id="receipt"' in page.text


def test_a_day_inside_the_cut_off_is_closed_and_the_page_gives_the_venues_contact(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client)
    svc.clock.advance(hours=1, minutes=1)  # 10:01: Wednesday starts in under 48 h
    r = manage(client, ref, token)
    assert day_row(r.text, WED) == "Wed 4 Mar 10:00–12:00 Booked $81.00 Closed for changes since Mon 2 Mar 10:00"
    assert "Cancel this day" in day_row(r.text, THU)
    contact = text(re.search(r'<div id="contact"[^>]*>(.*?)<form', r.text, re.S).group(1))  # type: ignore[union-attr]
    assert contact == (
        "Closed for changes online Wed 4 Mar is less than 48 h away, so changes are made by Labour Temple. "
        "Phone 604-555-0142 Email admin@labourtemple.example"
    )
    assert "Cancel all 2 days still open for changes" in text(r.text)

    refused = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": WED})
    assert refused.status_code == 409
    assert problems(refused.text) == [
        "Wed 4 Mar is closed for changes online (from 48 h before the start). "
        "Please call 604-555-0142 or email admin@labourtemple.example."
    ]
    post = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": [WED, THU], "refund_cents": "18000"})
    assert post.status_code == 409
    all_open = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": "all"})
    assert re.findall(r'<tr data-day="([^"]+)"', all_open.text) == [THU, FRI]
    assert legs(svc, ref) == {WED: LegState.CONFIRMED, THU: LegState.CONFIRMED, FRI: LegState.CONFIRMED}

    svc.clock.advance(days=2)  # Wednesday 10:01: under way
    begun = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": WED})
    assert begun.status_code == 409 and problems(begun.text) == ["Wed 4 Mar cannot be cancelled: it has begun."]
    assert "Closed for changes" not in day_row(manage(client, ref, token).text, WED)


def test_when_the_refund_band_changes_before_confirming_nothing_is_cancelled(make_services: Any) -> None:
    svc = make_services(self_service_cutoff_hours=0, refund_bands=REFUND_BANDS)
    client = client_for(svc)
    ref, token = book_and_pay(client, (WED,))
    confirm = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": WED})
    assert "Refund to your card: $90.00" in text(confirm.text)
    svc.clock.advance(hours=2)  # 11:00: 47 h before, the 50 % band
    r = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": WED, "refund_cents": "9000"})
    assert r.status_code == 409
    assert problems(r.text) == [
        "The refund for these days is now $45.00, not the $90.00 shown before (a refund band has ended since). "
        "Nothing was cancelled; please confirm again."
    ]
    assert "Cancel and refund $45.00" in r.text
    assert legs(svc, ref) == {WED: LegState.CONFIRMED} and refunds(svc, ref) == []
    ok = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": WED, "refund_cents": "4500"})
    assert ok.status_code == 303 and [x.amount_cents for x in refunds(svc, ref)] == [4500]


def test_with_self_service_changes_off_the_page_only_shows_the_booking(make_services: Any) -> None:
    svc = make_services(self_service_changes=False)
    client = client_for(svc)
    ref, token = book_and_pay(client, (THU,))
    [mail] = svc.mail.messages(kind="confirmation")
    assert "See your booking and get your receipt:" in mail["text"] and "cancel days" not in mail["text"]
    r = manage(client, ref, token)
    assert r.status_code == 200
    assert "Cancel this day" not in r.text and 'id="cancel-all"' not in r.text and 'id="change-form"' not in r.text
    assert "Changes and cancellations are made by Labour Temple. Phone 604-555-0142" in text(r.text)
    assert 'id="change-request"' in r.text  # the venue can still be asked, in a few words
    assert 'id="receipt"' in r.text and 'id="ics"' in r.text
    for resp in (
        client.get(f"/manage/{ref}/cancel", params={"k": token, "day": THU}),
        client.post(f"/manage/{ref}/cancel", data={"k": token, "day": THU, "refund_cents": "9000"}),
    ):
        assert resp.status_code == 403
        assert problems(resp.text) == [
            "Bookings are changed by Labour Temple: please call 604-555-0142 or email admin@labourtemple.example."
        ]
    assert legs(svc, ref) == {THU: LegState.CONFIRMED}


def test_a_refund_that_cannot_be_made_cancels_nothing(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    svc.payments.faults.fail("refund", times=5)
    r = client.post(f"/manage/{ref}/cancel", data={"k": token, "day": THU, "refund_cents": "9000"})
    assert r.status_code == 503
    assert problems(r.text) == [
        "The refund could not be made just now, so nothing was cancelled. Please try again in a few minutes."
    ]
    assert legs(svc, ref) == {THU: LegState.CONFIRMED}


@pytest.mark.parametrize(
    ("data", "status", "expected"),
    [
        ({"refund_cents": "9000"}, 422, ["day: pick a day to cancel"]),
        ({"day": "2026-13-45", "refund_cents": "9000"}, 422, ["day: '2026-13-45' is not a date (YYYY-MM-DD)"]),
        ({"day": "x" * 500, "refund_cents": "9000"}, 422, [f"day: {'x' * 20!r} is not a date (YYYY-MM-DD)"]),
        ({"day": [THU] * 40, "refund_cents": "9000"}, 422, ["day: at most 31 days at a time"]),
        ({"day": THU}, 422, ["refund_cents: the refund you confirm must be a whole number of cents"]),
        (
            {"day": THU, "refund_cents": "²"},  # a digit to str.isdigit(), not to int()
            422,
            ["refund_cents: the refund you confirm must be a whole number of cents"],
        ),
        (
            {"day": THU, "refund_cents": "-5"},
            422,
            ["refund_cents: the refund you confirm must be a whole number of cents"],
        ),
        (
            {"day": THU, "refund_cents": "9" * 40},
            422,
            ["refund_cents: the refund you confirm must be a whole number of cents"],
        ),
        ({"day": "2026-03-09", "refund_cents": "0"}, 422, None),
    ],
)
def test_bad_form_fields_are_4xx_naming_the_field(
    svc: Any, client: TestClient, data: dict[str, Any], status: int, expected: list[str] | None
) -> None:
    ref, token = book_and_pay(client, (THU,))
    r = client.post(f"/manage/{ref}/cancel", data={"k": token, **data})
    assert r.status_code == status
    assert problems(r.text) == (expected or [f"day: 2026-03-09 is not a day of booking {ref}"])
    assert "Traceback" not in r.text
    assert legs(svc, ref) == {THU: LegState.CONFIRMED} and refunds(svc, ref) == []


def test_the_cancel_preview_validates_its_query_the_same_way(svc: Any, client: TestClient) -> None:
    ref, token = book_and_pay(client, (THU,))
    assert client.get(f"/manage/{ref}/cancel", params={"k": token}).status_code == 422
    bad = client.get(f"/manage/{ref}/cancel", params={"k": token, "day": "tomorrow"})
    assert bad.status_code == 422 and problems(bad.text) == ["day: 'tomorrow' is not a date (YYYY-MM-DD)"]
    # The after-cancel notice's `done` is display only: junk shows nothing, and never claims a day was cancelled.
    junk = manage(client, ref, token, done="nonsense," + THU)
    assert junk.status_code == 200 and 'id="cancelled-notice"' not in junk.text


def test_a_refund_that_changes_under_the_lease_cancels_nothing(svc: Any, client: TestClient) -> None:
    """The customer confirmed Thu + Fri for $180; a colleague cancels Thursday in between (a phone call): under the
    booking's lease the quote no longer matches, so nothing happens and the customer is told."""
    from services import booking as bk
    from services.core.errors import QuoteChanged

    ref, _ = book_and_pay(client, (THU, FRI))
    booking_id = booking_row(svc, ref).id
    with svc.session() as s:
        ids = {leg.day.isoformat(): leg.id for leg in bk.booking_legs(s, booking_id)}
    bk.cancel_booking(svc, booking_id, actor="frontdesk", leg_ids=[ids[THU]])
    with pytest.raises(QuoteChanged):
        bk.cancel_booking(svc, booking_id, actor="customer", leg_ids=[ids[THU], ids[FRI]], expected_refund_cents=18_000)
    assert legs(svc, ref) == {THU: LegState.CANCELLED, FRI: LegState.CONFIRMED}
    assert [r.amount_cents for r in refunds(svc, ref)] == [9_000]
