"""Tax where a customer or the front desk sees a price before and after paying: the API's quote and booking answers,
the booking form, the pay page and the emails — subtotal, discount, one line per tax, total — with each day's tax
rounded on its own (half up), and an existing booking always shown at the rates it was sold at.

The clock is the suite's (Mon 2 Mar 2026, 09:00 in Vancouver). Boardroom 10:00–12:00 is 2 h; its price is $45/h
unless a test sets another."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services import booking as bk
from services.core.catalogue import Catalogue
from services.core.settings import TaxRateSetting
from services.notify import emails
from services.web.api import create_app
from tests import tax_settings
from tests.unit.test_customer_pages import add_staff_event, book, row

WEDNESDAY = "2026-03-04"
THREE_DAYS = ["2026-03-09", "2026-03-10", "2026-03-11"]  # Mon–Wed: the 3-day band, 10 % off


def priced(svc: Any, slug: str, hourly_cents: int) -> None:
    """Sell `slug` at another hourly price from now on."""
    seed: Catalogue = svc.seed_catalogue
    rooms = tuple(
        r.model_copy(update={"hourly_price_cents": hourly_cents}) if r.slug == slug else r for r in seed.rooms
    )
    svc.catalogue = seed.model_copy(update={"rooms": rooms})


@pytest.fixture
def gst(make_services: Any) -> Any:
    """A GST-registered venue: GST 5 % on every line, registration number 123456782RT0001."""
    return make_services(**tax_settings.gst())


def client_for(svc: Any) -> TestClient:
    return TestClient(create_app(svc), raise_server_exceptions=False, follow_redirects=False)


def quote_json(client: TestClient, dates: list[str]) -> dict[str, Any]:
    r = client.post("/api/quotes", json={"room": "boardroom", "dates": dates, "start": "10:00", "end": "12:00"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def summary(html: str) -> list[tuple[str, str]]:
    """The pay page's summary as (label, value) pairs, tags and extra spaces dropped."""
    block = re.search(r'<dl class="summary">(.*?)</dl>', html, re.S)
    assert block is not None
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", block.group(1), re.S)

    def clean(part: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", part)).strip()

    return [(clean(dt), clean(dd)) for dt, dd in pairs]


# --------------------------------------------------------------------------------------------------- quotes


def test_a_one_day_quote_adds_gst_to_the_subtotal(gst: Any) -> None:
    q = quote_json(client_for(gst), [WEDNESDAY])
    assert (q["subtotal_cents"], q["discount_cents"], q["net_cents"], q["tax_cents"], q["total_cents"]) == (
        9000,
        0,
        9000,
        450,
        9450,
    )
    assert q["tax_lines"] == [{"code": "GST", "label": "GST 5 %", "cents": 450}]
    assert q["legs"] == [
        {
            "date": WEDNESDAY,
            "base_cents": 9000,
            "discount_cents": 0,
            "net_cents": 9000,
            "tax_cents": 450,
            "total_cents": 9450,
        }
    ]


def test_a_three_day_discounted_quote_rounds_each_days_gst_half_up(gst: Any) -> None:
    """$45.50/h × 2 h = $91.00 a day, 10 % off = $81.90 net; 5 % of that is 409.5 ¢ → 410 ¢ each day. Three days'
    tax is 3 × 410 = 1230 ¢, not 5 % of the $245.70 net (1228.5 → 1229 ¢): the tax is fixed per day."""
    priced(gst, "boardroom", 4550)
    q = quote_json(client_for(gst), THREE_DAYS)
    assert [(leg["base_cents"], leg["discount_cents"], leg["net_cents"], leg["tax_cents"]) for leg in q["legs"]] == [
        (9100, 910, 8190, 410)
    ] * 3
    assert [leg["total_cents"] for leg in q["legs"]] == [8600] * 3
    assert (q["subtotal_cents"], q["discount_percent"], q["discount_cents"], q["net_cents"]) == (27300, 10, 2730, 24570)
    assert q["tax_lines"] == [{"code": "GST", "label": "GST 5 %", "cents": 1230}]
    assert q["total_cents"] == 25800 == sum(leg["total_cents"] for leg in q["legs"])


def test_a_venue_without_tax_quotes_no_tax_line(svc: Any) -> None:
    q = quote_json(client_for(svc), [WEDNESDAY])
    assert (q["tax_cents"], q["tax_lines"], q["total_cents"]) == (0, [], 9000)


# --------------------------------------------------------------------------------------------- the customer's pages


def test_the_booking_form_says_gst_is_added_to_the_hourly_price(gst: Any, svc: Any) -> None:
    assert '$45.00 / hour</span> <span class="muted">+ GST 5 %</span>' in client_for(gst).get("/book/boardroom").text
    assert "+ GST" not in client_for(svc).get("/book/boardroom").text  # no tax, nothing said about it


def test_the_api_booking_and_the_pay_page_show_the_parts_of_what_is_charged(gst: Any) -> None:
    priced(gst, "boardroom", 4550)
    client = client_for(gst)
    r = client.post(
        "/api/bookings",
        json={
            "room": "boardroom",
            "dates": THREE_DAYS,
            "start": "10:00",
            "end": "12:00",
            "customer_name": "Ava Nguyen",
            "customer_email": "ava@example.org",
            "terms_version": "2026-01",
        },
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["amount_cents"], out["net_cents"], out["tax_cents"]) == (25800, 24570, 1230)
    assert out["tax_lines"] == [{"code": "GST", "label": "GST 5 %", "cents": 1230}]
    page = client.get("/pay/" + out["pay_url"].split("/pay/", 1)[1])
    assert page.status_code == 200
    shown = summary(page.text)
    days = "Mon 9 Mar, 10:00–12:00 · $86.00 Tue 10 Mar, 10:00–12:00 · $86.00 Wed 11 Mar, 10:00–12:00 · $86.00"
    assert shown[3:] == [
        ("Days", days),  # each day's price, tax included
        ("Subtotal", "$273.00"),
        ("Multi-day discount (10 %)", "-$27.30"),
        ("GST 5 %", "$12.30"),
        ("Total (tax included)", "$258.00"),
        ("GST/HST no.", "123456782RT0001"),
    ]


def test_the_pay_page_of_a_booking_sold_without_tax_has_no_tax_line(svc: Any) -> None:
    client = client_for(svc)
    ref, token = book(client)
    shown = summary(client.get(f"/pay/{ref}", params={"k": token}).text)
    assert shown[-1] == ("Total", "$90.00")
    assert not any("GST" in label or "Subtotal" in label for label, _ in shown)


def test_an_existing_booking_keeps_the_rates_it_was_sold_at(gst: Any) -> None:
    client = client_for(gst)
    ref, token = book(client)
    # The venue's rate changes after the sale: new quotes use it, the booking keeps GST 5 %.
    sixth = TaxRateSetting(code="GST", label="GST 6 %", rate_bps=600, applies_to=["room", "extras", "equipment"])
    gst.settings = gst.settings.model_copy(update={"tax_rates": [sixth]})
    assert quote_json(client, [THREE_DAYS[0]])["tax_lines"] == [{"code": "GST", "label": "GST 6 %", "cents": 540}]
    shown = summary(client.get(f"/pay/{ref}", params={"k": token}).text)
    assert ("GST 5 %", "$4.50") in shown and ("Total (tax included)", "$94.50") in shown
    assert not any("6 %" in label for label, _ in shown)
    assert row(gst, ref).amount_cents == 9450


# --------------------------------------------------------------------------------------------------- emails


def test_the_confirmation_email_lists_the_gst_and_the_registration_number(gst: Any, booking_request: Any) -> None:
    started = bk.start_booking(gst, booking_request(), actor="customer")
    assert bk.sandbox_pay(gst, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    (mail,) = gst.mail.messages(booking_id=started.booking_id, kind="confirmation")
    assert "  Subtotal: $90.00\n  GST 5 %: $4.50\n  Paid (tax included): $94.50\n" in mail["text"]
    assert "GST/HST registration no.: 123456782RT0001" in mail["text"]
    assert "<th" in mail["html"] and "GST 5 %</th><td>$4.50</td>" in mail["html"]


def test_without_a_registration_number_the_email_still_shows_the_gst(make_services: Any, booking_request: Any) -> None:
    svc = make_services(tax_rates=tax_settings.GST_ONLY)
    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    (mail,) = svc.mail.messages(booking_id=started.booking_id, kind="confirmation")
    assert "GST 5 %: $4.50" in mail["text"] and "registration" not in mail["text"]


def test_a_refund_in_full_after_losing_the_race_says_the_gst_it_gives_back(gst: Any) -> None:
    client = client_for(gst)
    ref, token = book(client)
    add_staff_event(gst, date(2026, 3, 4), time(11), time(13))  # the slot is taken while the customer pays
    client.post(f"/pay/{ref}/test-card", data={"k": token})
    (mail,) = gst.mail.messages(booking_id=row(gst, ref).id, kind="auto_refund")
    assert "Your card is refunded in full ($94.50, including GST 5 % $4.50)" in mail["text"]


def _sold(svc: Any, booking_request: Any, **kw: Any) -> tuple[Any, list[Any]]:
    from sqlmodel import select

    from models.tables import Booking, BookingLeg

    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)))
        for item in (b, *legs):
            s.expunge(item)
    return b, legs


def test_a_cancellation_email_says_how_much_of_the_refund_is_gst(gst: Any, booking_request: Any) -> None:
    b, legs = _sold(gst, booking_request)
    mail = emails.cancellation(gst.catalogue, gst.settings, b, legs, 4725, refund_tax_cents=225)
    assert "We have refunded $47.25 (including GST 5 % $2.25) to your card" in mail.text
    assert "(including GST 5 % $2.25)" in mail.html
    assert "GST/HST registration no.: 123456782RT0001" in mail.text
    # A caller that does not know the refund's tax says nothing about tax rather than something wrong.
    assert "GST" not in emails.cancellation(gst.catalogue, gst.settings, b, legs, 4725).text


def test_a_refund_email_of_a_booking_sold_without_tax_says_nothing_about_tax(svc: Any, booking_request: Any) -> None:
    b, legs = _sold(svc, booking_request)
    mail = emails.refund(svc.catalogue, svc.settings, b, legs, 2500, booking_stands=True, refund_tax_cents=0)
    assert "We have refunded $25.00 for booking" in mail.text and "GST" not in mail.text + mail.html


def test_change_emails_say_the_gst_inside_the_difference(gst: Any, booking_request: Any) -> None:
    b, legs = _sold(gst, booking_request)
    more = emails.ChangeNote(1, ("Wed 4 Mar 10:00–12:00 → 10:00–13:00",), charge_cents=4725, charge_tax_cents=225)
    assert "We have charged the difference, $47.25 (including GST 5 % $2.25), to your card." in (
        emails.changed(gst.catalogue, gst.settings, b, legs, more).text
    )
    link = emails.change_pay_link(gst.catalogue, gst.settings, b, legs, more, "https://x.example/p", "Wed 4 Mar 10:00")
    assert "The change costs $47.25 more (including GST 5 % $2.25)." in link.text
    failed = emails.change_failed(gst.catalogue, gst.settings, b, legs, more)
    assert "We have refunded the $47.25 (including GST 5 % $2.25) in full" in failed.text
    less = emails.ChangeNote(2, ("Wed 4 Mar 10:00–12:00 → 10:00–11:00",), refund_cents=4725, refund_tax_cents=225)
    assert "We have refunded $47.25 (including GST 5 % $2.25) to your card" in (
        emails.changed(gst.catalogue, gst.settings, b, legs, less).text
    )


def test_cancelling_a_day_emails_the_refund_with_the_gst_it_gives_back(gst: Any, booking_request: Any) -> None:
    from sqlmodel import select

    from models.tables import BookingLeg

    priced(gst, "boardroom", 4550)
    started = bk.start_booking(gst, booking_request(dates=[date.fromisoformat(d) for d in THREE_DAYS]), actor="x")
    bk.sandbox_pay(gst, started.booking_id, actor="stripe-webhook")
    with gst.session() as s:
        tuesday = s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)).all()[1]
    bk.cancel_booking(gst, started.booking_id, actor="frontdesk@sandbox", leg_ids=[tuesday.id], reason="Flu")
    (mail,) = gst.mail.messages(booking_id=started.booking_id, kind="cancellation")
    assert "We have refunded $86.00 (including GST 5 % $4.10) to your card" in mail["text"]


def test_change_emails_carry_the_gst_of_the_difference_charged_and_refunded(gst: Any, booking_request: Any) -> None:
    from services.booking.amend import Change

    started = bk.start_booking(gst, booking_request(), actor="customer")  # Wed 10:00–12:00, $94.50
    bk.sandbox_pay(gst, started.booking_id, actor="stripe-webhook")
    longer = bk.change_booking(gst, started.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    assert longer.net_cents == 4725  # one more hour: $45.00 + $2.25 GST
    (link,) = gst.mail.messages(started.booking_id, kind="change_pay_link")
    assert "The change costs $47.25 more (including GST 5 % $2.25)." in link["text"]
    bk.sandbox_pay_change(gst, started.booking_id, actor="stripe-webhook")
    (more,) = gst.mail.messages(started.booking_id, kind="changed")
    assert "We have charged the difference, $47.25 (including GST 5 % $2.25), to your card." in more["text"]
    shorter = bk.change_booking(gst, started.booking_id, Change(times=(time(10), time(12))), actor="frontdesk")
    assert shorter.net_cents == -4725  # 49 h ahead: the hour given up is refunded in full
    less = [m for m in gst.mail.messages(started.booking_id, kind="changed") if m["id"] != more["id"]]
    assert "We have refunded $47.25 (including GST 5 % $2.25) to your card" in less[0]["text"]
