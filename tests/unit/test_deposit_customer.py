"""The damage deposit as the customer meets it (issue 15 §3): the deposit follows the sale (the room's terms when it
was booked), a paid booking sold with one is asked for its card even when nobody started it (the worker's round), the
pay page says what is coming, the confirmation and manage pages show where it stands and take a card (a test card in
the sandbox; a declined one is refused with the reason), the confirmation email explains it, and the manage page shows
the bill with its tax. The live card form (Stripe.js confirmSetup) and its read-back are tested over HTTP against
localstripe in tests/integration/test_webhook_e2e.py."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import Booking, DamageDeposit, EmailOutbox
from services import booking as bk
from services.finance import deposits as dp
from services.web.api import create_app
from tests.tax_settings import GST_ONLY, REGISTRATION

THU = date(2026, 3, 12)  # Sonic Studio, 10:00–12:00 Vancouver
HELD = 25_000


@pytest.fixture
def client(svc: Any) -> TestClient:
    return TestClient(create_app(svc), raise_server_exceptions=False, follow_redirects=False)


def studio_paid(svc: Any, booking_request: Any, room: str = "sonic-studio") -> Any:
    """A phone booking paid by the customer (the webhook's work), with no deposit started by anyone."""
    started = bk.start_booking(
        svc, booking_request(room=room, dates=(THU,), start=time(10), end=time(12), channel="phone"), actor="desk"
    )
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def deposit_row(svc: Any, booking_id: int) -> DamageDeposit | None:
    with svc.session() as s:
        return s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == booking_id)).first()


def token(svc: Any, booking_id: int) -> str:
    with svc.session() as s:
        return str(bk.load_booking(s, booking_id).pay_token)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_sale_keeps_the_deposit_its_room_asked(svc: Any, booking_request: Any) -> None:
    studio = studio_paid(svc, booking_request)
    board = studio_paid(svc, booking_request, room="boardroom")
    with svc.session() as s:
        assert bk.load_booking(s, studio.booking_id).pricing_snapshot["deposit"] == {
            "amount_cents": HELD,
            "hold_hours_before": 48,
            "claim_window_hours": 72,
        }
        assert bk.load_booking(s, board.booking_id).pricing_snapshot["deposit"] is None


def test_the_round_asks_for_the_card_of_a_paid_booking_sold_with_a_deposit(svc: Any, booking_request: Any) -> None:
    started = studio_paid(svc, booking_request)
    studio_paid(svc, booking_request, room="boardroom")
    assert deposit_row(svc, started.booking_id) is None
    report = dp.run_deposit_round(svc)
    assert report.done == {"card requested": 1} and not report.errors
    dep = deposit_row(svc, started.booking_id)
    assert dep is not None and (dep.state, dep.amount_cents) == ("card_needed", HELD) and dep.setup_intent_id
    assert dp.run_deposit_round(svc).done == {}  # asked once


def test_a_booking_sold_before_its_room_asked_a_deposit_is_never_asked_one(svc: Any, booking_request: Any) -> None:
    started = studio_paid(svc, booking_request)
    with svc.session() as s:  # as sold while the room asked none (the room asks one now)
        b = s.get(Booking, started.booking_id)
        assert b is not None
        b.pricing_snapshot = {**b.pricing_snapshot, "deposit": None}
        s.add(b)
        s.commit()
    assert dp.run_deposit_round(svc).done == {}
    assert dp.start_deposit(svc, started.booking_id) is None and deposit_row(svc, started.booking_id) is None


def test_the_pay_page_says_what_deposit_is_coming(svc: Any, booking_request: Any, client: TestClient) -> None:
    started = bk.start_booking(
        svc,
        booking_request(room="sonic-studio", dates=(THU,), start=time(10), end=time(12), channel="phone"),
        actor="desk",
    )
    page = text(client.get(f"/pay/{started.reference}", params={"k": token(svc, started.booking_id)}).text)
    assert "Damage deposit: $250.00." in page
    assert "held on your card from Tue 10 Mar 10:00 and released by Sun 15 Mar 12:00" in page
    assert "The test card you pay with is saved for it." in page


def test_the_customer_saves_a_card_on_the_manage_page_after_a_declined_one(
    svc: Any, booking_request: Any, client: TestClient
) -> None:
    started = studio_paid(svc, booking_request)
    k = token(svc, started.booking_id)
    page = client.get(f"/booked/{started.reference}", params={"k": k})
    words = text(page.text)
    assert "Damage deposit: $250.00" in words and "Please save a card for it below: nothing is taken now." in words
    assert 'id="deposit-form"' in page.text  # the sandbox's test card form (no Stripe.js)

    declined = client.post(f"/manage/{started.reference}/deposit-card", data={"k": k, "card": "pm_card_chargeDeclined"})
    assert declined.status_code == 402
    assert "The card was declined. It was not saved: try another card." in text(declined.text)
    assert deposit_row(svc, started.booking_id).state == "card_needed"  # type: ignore[union-attr]

    bad = client.post(f"/manage/{started.reference}/deposit-card", data={"k": k, "card": "4242424242424242"})
    assert bad.status_code == 422 and "card: pick one of the test cards" in text(bad.text)
    wrong_link = client.post(f"/manage/{started.reference}/deposit-card", data={"k": "nope", "card": "pm_card_visa"})
    assert wrong_link.status_code == 404

    saved = client.post(f"/manage/{started.reference}/deposit-card", data={"k": k, "card": "pm_card_visa"})
    assert saved.status_code == 303
    after = text(client.get(saved.headers["location"]).text)
    assert "Card saved for the damage deposit. Thank you!" in after
    assert "Your card is saved for it. We place the hold on Tue 10 Mar 10:00" in after
    assert deposit_row(svc, started.booking_id).state == "card_saved"  # type: ignore[union-attr]


def test_the_manage_page_shows_the_hold_and_its_release(svc: Any, booking_request: Any, client: TestClient) -> None:
    started = studio_paid(svc, booking_request)
    dp.sandbox_save_card(svc, started.booking_id)
    svc.clock.at = datetime(2026, 3, 10, 17, tzinfo=UTC)  # 48 h before the day (10:00 Vancouver)
    assert dp.run_deposit_round(svc).done == {"held": 1}
    page = text(client.get(f"/manage/{started.reference}", params={"k": token(svc, started.booking_id)}).text)
    assert "Held on your card since Tue 10 Mar 10:00 (not taken). It is released by Sun 15 Mar 12:00" in page
    assert 'id="deposit-form"' not in page


def test_the_confirmation_email_explains_the_deposit(svc: Any, booking_request: Any) -> None:
    studio = studio_paid(svc, booking_request)
    board = studio_paid(svc, booking_request, room="boardroom")
    with svc.session() as s:
        mails = {m.booking_id: m.text for m in s.exec(select(EmailOutbox).where(EmailOutbox.kind == "confirmation"))}
    assert "Damage deposit: This room asks a damage deposit of $250.00" in mails[studio.booking_id]
    assert "from 48 h before your first day until 72 h after your last" in mails[studio.booking_id]
    assert "Damage deposit" not in mails[board.booking_id]


def test_the_manage_page_shows_the_tax_inside_what_was_paid(
    make_services: Any, booking_request: Any, tmp_path: Any
) -> None:
    svc = make_services(tax_rates=GST_ONLY, gst_registration_number=REGISTRATION)
    client = TestClient(create_app(svc), raise_server_exceptions=False, follow_redirects=False)
    started = studio_paid(svc, booking_request, room="boardroom")
    page = text(client.get(f"/manage/{started.reference}", params={"k": token(svc, started.booking_id)}).text)
    with svc.session() as s:
        b = bk.load_booking(s, started.booking_id)
    tax = f"${b.tax_cents / 100:,.2f}"
    assert b.tax_cents > 0 and f"GST 5 % {tax}" in page
    assert f"Paid (tax included) ${b.amount_cents / 100:,.2f}" in page
    assert "GST/HST no." in page and "Damage deposit" not in page
