"""Damage deposits (issue 15 §3) on sandbox gateways with a hand-moved clock: the card saved at booking, the hold placed
48 h before the first day (held again before a 7-day authorisation lapses), released 72 h after the last day, or
partly captured by a claim that a manager and a finance person approved; a declined card leaves the deposit failed
for staff. What the customer, staff and Stripe notice: the hold's state at Stripe, the deposit's state, the emails
queued and the booking's history."""

from __future__ import annotations

import tomllib
from datetime import date, time, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from models.tables import AuditLog, DamageDeposit, DepositClaim, EmailOutbox, ExternalRef
from services import booking as bk
from services.core.catalogue import Room, catalogue_toml, parse_catalogue
from services.core.errors import ConfigError, GatewayError, InvalidState, NotAllowed, ValidationError
from services.finance import deposit_queries as dq
from services.finance import deposits as dp
from services.reconciliation import findings, reconcile, sync
from services.web import webhooks

THU = date(2026, 3, 12)  # Sonic Studio, 10:00–12:00 Vancouver (PDT): 17:00–19:00 UTC
EXTRAS = {"show_name": "Night Shift", "set_choice": "Podcast table"}
HELD = 25_000  # the Sonic Studio's deposit: $250.00
FRONT, MANAGER, FINANCE = "frontdesk@venue", "mia.manager@venue", "fred.finance@venue"
NOTES = "Mixer desk fader snapped off; cable cut"


@pytest.fixture
def studio(svc: Any, booking_request: Any) -> Any:
    """`studio(dates=…)`: a paid phone booking of the Sonic Studio with its deposit started and a card saved."""

    def make(dates: tuple[date, ...] = (THU,), card: str = "pm_card_visa", pay: bool = True) -> Any:
        req = booking_request(room="sonic-studio", dates=dates, start=time(10), end=time(12), channel="phone")
        started = bk.start_booking(svc, req, actor=FRONT)
        request = dp.start_deposit(svc, started.booking_id)
        assert request is not None and request.amount_cents == HELD and request.client_secret
        if pay:
            assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
        if card:
            dp.sandbox_save_card(svc, started.booking_id, payment_method=card)
        return started

    return make


def deposit(svc: Any, booking_id: int) -> DamageDeposit:
    with svc.session() as s:
        row = s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == booking_id)).one()
        return row


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(col(AuditLog.id)))
        return [a.action for a in rows if a.action.startswith("booking.deposit")]


def emails(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking_id).order_by(col(EmailOutbox.id)))
        return [e.kind for e in rows if e.kind.startswith("deposit")]


def holds_at_stripe(svc: Any) -> list[dict[str, Any]]:
    """Every deposit hold Stripe has, oldest first."""
    found = [pi for pi in svc.payments.list_payment_intents(limit=100)["data"] if pi["metadata"].get("purpose")]
    return list(reversed(found))


def legs_span(svc: Any, booking_id: int) -> tuple[Any, Any]:
    with svc.session() as s:
        legs = bk.booking_legs(s, booking_id)
    return min(leg.starts_at for leg in legs), max(leg.ends_at for leg in legs)


def at(svc: Any, moment: Any) -> Any:
    svc.clock.at = moment
    return moment


def held(svc: Any, studio: Any, **kw: Any) -> Any:
    """A booking whose deposit hold stands (placed by the worker 48 h before the first day)."""
    started = studio(**kw)
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    assert dp.run_deposit_round(svc).done == {"held": 1}
    return started


# ------------------------------------------------------------------------------------------- saved → held → released


def test_the_card_is_saved_at_booking_the_hold_placed_48h_before_and_released_72h_after(svc: Any, studio: Any) -> None:
    started = studio()
    dep = deposit(svc, started.booking_id)
    assert (dep.state, dep.amount_cents, dep.hold_hours_before, dep.claim_window_hours) == ("card_saved", HELD, 48, 72)
    assert dep.customer_id and dep.setup_intent_id and dep.payment_method and dep.payment_method.startswith("pm_")
    first, last = legs_span(svc, started.booking_id)

    assert dp.run_deposit_round(svc).line() == "deposits -"  # a week ahead: nothing held yet
    at(svc, first - timedelta(hours=48, minutes=1))
    assert not dp.run_deposit_round(svc).done and holds_at_stripe(svc) == []
    at(svc, first - timedelta(hours=48))
    assert dp.run_deposit_round(svc).done == {"held": 1}
    [hold] = holds_at_stripe(svc)
    assert (hold["status"], hold["amount_capturable"], hold["amount_received"]) == ("requires_capture", HELD, 0)
    assert hold["metadata"] == {"purpose": "deposit", "deposit_for": started.reference, "hold": "1"}
    assert hold["customer"] == dep.customer_id
    dep = deposit(svc, started.booking_id)
    assert (dep.state, dep.payment_intent_id) == ("held", hold["id"])
    assert emails(svc, started.booking_id) == ["deposit_held"]

    at(svc, last + timedelta(hours=72) - timedelta(minutes=1))
    assert not dp.run_deposit_round(svc).done  # still inside the claim window
    at(svc, last + timedelta(hours=72))
    assert dp.run_deposit_round(svc).done == {"released": 1}
    assert svc.payments.retrieve_payment_intent(hold["id"])["status"] == "canceled"
    assert deposit(svc, started.booking_id).state == "released"
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_released"]
    assert actions(svc, started.booking_id) == [
        "booking.deposit.required",
        "booking.deposit.card_requested",
        "booking.deposit.card_saved",
        "booking.deposit.held",
        "booking.deposit.released",
    ]
    assert dp.run_deposit_round(svc).line() == "deposits -"  # closed: nothing left to do


def test_the_held_email_tells_the_amount_and_when_it_is_released(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    with svc.session() as s:
        mail = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "deposit_held")).one()
    assert mail.subject == f"Damage deposit of $250.00 held for your booking {started.reference}"
    assert "hold on your card" in mail.text and "Thu 12 Mar" in mail.text
    assert "released Sun 15 Mar 12:00" in mail.text  # 72 h after the last day ends, venue time
    assert mail.to == "ava@example.org"


def test_a_deposit_payment_is_never_taken_for_the_bookings_own(svc: Any, studio: Any) -> None:
    """Its webhooks are ignored by the booking's handler and reconciliation sees no payment to explain."""
    started = held(svc, studio)
    [hold] = holds_at_stripe(svc)
    with svc.session() as s:
        ref = s.exec(select(ExternalRef).where(ExternalRef.external_id == hold["id"])).one()
    assert (ref.kind, ref.booking_id) == ("deposit_hold", started.booking_id)
    deposit_events = [
        e
        for e in svc.payments.list_events(limit=100)["data"]
        if e["type"].startswith("payment_intent.") and e["data"]["object"]["id"] == hold["id"]
    ]
    assert deposit_events
    for event in deposit_events:
        row_id, _ = webhooks.record_event(svc, event)
        assert webhooks.process_event(svc, row_id, actor="stripe-webhook") == "ignored"
    sync.sync(svc)
    reconcile.reconcile(svc)
    assert not [f for f in findings.open_findings(svc) if f.payment_intent == hold["id"]]
    with svc.session() as s:
        booking = bk.load_booking(s, started.booking_id)
        assert (booking.status, booking.payment_intent_id) == ("CONFIRMED", started.payment_intent)


# ------------------------------------------------------------------------------------------- claims


def file(svc: Any, started: Any, cents: int = 7_500, **kw: Any) -> dp.ClaimOutcome:
    kw.setdefault("notes", NOTES)
    kw.setdefault("photos", ["mixer-1.jpg", "mixer-2.jpg"])
    kw.setdefault("actor", FRONT)
    return dp.file_claim(svc, started.booking_id, amount_cents=cents, **kw)


def test_hold_then_claim_then_two_approvals_capture_part_and_release_the_rest(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    [hold] = holds_at_stripe(svc)
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=2))

    filed = file(svc, started)
    assert filed.status == "pending" and "$75.00 of the $250.00 held" in filed.message
    assert svc.payments.retrieve_payment_intent(hold["id"])["status"] == "requires_capture"  # nothing taken yet
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_claim"]
    [view] = dq.list_open_claims(svc)
    assert (view.reference, view.held_cents, view.row.photos) == (
        started.reference,
        HELD,
        ["mixer-1.jpg", "mixer-2.jpg"],
    )

    first = dp.approve_claim(svc, filed.claim_id, actor=MANAGER, role="manager")
    assert first.status == "pending" and "waits for the finance approval" in first.message
    assert svc.payments.retrieve_payment_intent(hold["id"])["status"] == "requires_capture"
    with pytest.raises(NotAllowed, match="other approval must come from someone else"):
        dp.approve_claim(svc, filed.claim_id, actor=MANAGER.upper(), role="admin", slot="finance")
    with pytest.raises(NotAllowed, match="Front desk cannot approve a damage claim"):
        dp.approve_claim(svc, filed.claim_id, actor=FRONT, role="frontdesk")

    done = dp.approve_claim(svc, filed.claim_id, actor=FINANCE, role="finance")
    assert done.status == "captured" and "$75.00 taken" in done.message and "$175.00 released" in done.message
    pi = svc.payments.retrieve_payment_intent(hold["id"])
    assert (pi["status"], pi["amount_received"], pi["amount_capturable"]) == ("succeeded", 7_500, 0)
    dep = deposit(svc, started.booking_id)
    assert (dep.state, dep.captured_cents) == ("captured", 7_500)
    with svc.session() as s:
        claim = s.get(DepositClaim, filed.claim_id)
        assert claim is not None
        assert (claim.status, claim.captured_cents, claim.manager_approved_by, claim.finance_approved_by) == (
            "captured",
            7_500,
            MANAGER,
            FINANCE,
        )
        captured_mail = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "deposit_captured")).one()
    assert (
        "we have taken $75.00" in captured_mail.text and "other $175.00 of the hold is released" in captured_mail.text
    )
    assert actions(svc, started.booking_id)[-5:] == [
        "booking.deposit.claim.filed",
        "booking.deposit.claim.signed",
        "booking.deposit.claim.signed",
        "booking.deposit.claim.approved",
        "booking.deposit.claim.captured",
    ]
    with pytest.raises(InvalidState, match="already captured"):
        dp.retry_claim(svc, filed.claim_id, actor=FINANCE, role="finance")
    at(svc, last + timedelta(hours=80))
    assert not dp.run_deposit_round(svc).done  # captured: the window's end releases nothing more
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_claim", "deposit_captured"]


def test_a_claim_is_at_most_the_hold_with_notes_after_the_stay_and_inside_the_window(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    _, last = legs_span(svc, started.booking_id)
    with pytest.raises(InvalidState, match="has not begun"):
        file(svc, started)
    at(svc, last + timedelta(hours=1))
    with pytest.raises(ValidationError) as refused:
        file(svc, started, cents=HELD + 1, notes="broken", photos=["../etc/passwd"])
    assert refused.value.problems == [
        "At most the $250.00 held can be claimed ($250.01 asked)",
        "Say what was damaged and how (at least 10 characters): it is the claim's evidence",
        "'../etc/passwd' is not a file name: give the name only, without a folder",
    ]
    assert file(svc, started, cents=HELD).status == "pending"  # the whole hold may be claimed
    with pytest.raises(InvalidState, match="still open"):
        file(svc, started)
    assert len(dq.list_claims(svc, booking_id=started.booking_id)) == 1


def test_a_rejected_claim_takes_nothing_and_the_hold_goes_when_the_window_ends(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    [hold] = holds_at_stripe(svc)
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=1))
    filed = file(svc, started)
    with pytest.raises(ValidationError, match="Say why"):
        dp.reject_claim(svc, filed.claim_id, actor=FINANCE, role="finance", note=" ")
    rejected = dp.reject_claim(svc, filed.claim_id, actor=FINANCE, role="finance", note="Wear and tear")
    assert rejected.status == "rejected"
    at(svc, last + timedelta(hours=72))
    assert dp.run_deposit_round(svc).done == {"released": 1}
    assert svc.payments.retrieve_payment_intent(hold["id"])["status"] == "canceled"
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_claim", "deposit_released"]


def test_a_pending_claim_keeps_the_hold_past_the_window_until_it_is_decided(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=70))
    filed = file(svc, started)
    at(svc, last + timedelta(hours=73))
    assert not dp.run_deposit_round(svc).done  # not released under a claim still waiting for its approvals
    dp.approve_claim(svc, filed.claim_id, actor=MANAGER, role="manager")
    assert dp.approve_claim(svc, filed.claim_id, actor=FINANCE, role="finance").status == "captured"


def test_a_failed_capture_is_kept_for_a_retry_that_never_captures_twice(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=1))
    filed = file(svc, started)
    dp.approve_claim(svc, filed.claim_id, actor=MANAGER, role="manager")
    svc.payments.faults.fail("capture_payment_intent", mode="after")  # Stripe captured; the answer was lost
    failed = dp.approve_claim(svc, filed.claim_id, actor=FINANCE, role="finance")
    assert failed.status == "failed" and "not captured" in failed.message
    assert [c.row.status for c in dq.list_open_claims(svc)] == ["failed"]
    again = dp.retry_claim(svc, filed.claim_id, actor=FINANCE, role="finance")
    assert again.status == "captured"
    [hold] = holds_at_stripe(svc)
    assert svc.payments.retrieve_payment_intent(hold["id"])["amount_received"] == 7_500
    assert emails(svc, started.booking_id).count("deposit_captured") == 1


# ------------------------------------------------------------------------------------------- failures


def test_a_declined_hold_fails_for_staff_until_another_card_holds(svc: Any, studio: Any) -> None:
    started = studio(card="pm_card_chargeCustomerFail")  # saves, then declines when charged
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    assert dp.run_deposit_round(svc).done == {"failed": 1}
    dep = deposit(svc, started.booking_id)
    assert (dep.state, dep.last_error) == ("hold_failed", "The card was declined")
    [failed] = dq.failed_holds(svc)
    assert failed.reference == started.reference and "ask for another card" in failed.next_step
    assert emails(svc, started.booking_id) == []  # the customer is told by staff, who see it first
    assert actions(svc, started.booking_id)[-1] == "booking.deposit.hold_failed"
    assert not dp.run_deposit_round(svc).done  # not retried by itself on a card that was just declined

    again = dp.place_hold_now(svc, started.booking_id, actor=MANAGER)
    assert again.state == "hold_failed" and "declined" in again.message

    request = dp.start_deposit(svc, started.booking_id)  # the pay page asks for another card
    assert request is not None and request.setup_intent_id != dep.setup_intent_id
    dp.sandbox_save_card(svc, started.booking_id)
    assert dp.run_deposit_round(svc).done == {"held": 1}
    assert deposit(svc, started.booking_id).state == "held" and dq.failed_holds(svc) == []
    assert [h["status"] for h in holds_at_stripe(svc)] == ["requires_payment_method"] * 2 + ["requires_capture"]


def test_a_failed_hold_is_a_finding_until_a_hold_stands(svc: Any, studio: Any) -> None:
    started = studio(card="pm_card_chargeCustomerFail")
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    dp.run_deposit_round(svc)
    reconcile.reconcile(svc)
    [found] = findings.open_findings(svc, codes=["deposit_hold_failed"])
    assert (found.booking_ref, found.amount_cents, found.dates) == (started.reference, HELD, [THU.isoformat()])
    assert found.summary == "Damage deposit of $250.00 for Sonic Studio, Thu 12 Mar not held: The card was declined"
    dp.sandbox_save_card(svc, started.booking_id)
    dp.run_deposit_round(svc)
    reconcile.reconcile(svc)
    assert findings.open_findings(svc, codes=["deposit_hold_failed"]) == []


def test_a_captured_claim_is_in_the_daily_close(svc: Any, studio: Any) -> None:
    """Money a claim took is in our ledger: every day's close from the hold to the capture passes, and between them
    they count the capture once (Stripe dates its balance transaction at the capture; the sandbox at the hold)."""
    from services.finance import close

    started = held(svc, studio)
    hold_day = svc.now().astimezone(svc.settings.tz).date()
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=1))
    filed = file(svc, started)
    dp.approve_claim(svc, filed.claim_id, actor=MANAGER, role="manager")
    dp.approve_claim(svc, filed.claim_id, actor=FINANCE, role="finance")
    capture_day = svc.now().astimezone(svc.settings.tz).date()
    taken = 0
    for n in range((capture_day - hold_day).days + 1):
        result = close.run_close(svc, hold_day + timedelta(days=n), actor=FINANCE, now=svc.now() + timedelta(days=1))
        assert result.passed, [(i.category, i.problem, i.note) for i in result.items]
        taken += result.close.totals["charge"]["ledger"]
    assert taken == 7_500


def test_no_card_saved_by_the_hold_time_is_a_failed_hold(svc: Any, studio: Any) -> None:
    started = studio(card="")
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    assert dp.run_deposit_round(svc).done == {"failed": 1}
    assert (
        deposit(svc, started.booking_id).last_error == "No card was saved for the deposit by the time the hold was due"
    )
    dp.sandbox_save_card(svc, started.booking_id)  # the customer saves one after staff called
    assert dp.run_deposit_round(svc).done == {"held": 1}


def test_an_outage_while_holding_is_retried_with_the_same_key_one_hold_at_stripe(svc: Any, studio: Any) -> None:
    started = studio()
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    svc.payments.faults.fail("create_deposit_hold", mode="after")  # Stripe holds; the answer is lost
    report = dp.run_deposit_round(svc)
    assert not report.done and len(report.errors) == 1
    assert deposit(svc, started.booking_id).state == "card_saved"
    assert "booking.deposit.step_failed" in actions(svc, started.booking_id)
    assert dp.run_deposit_round(svc).done == {"held": 1}
    assert [h["status"] for h in holds_at_stripe(svc)] == ["requires_capture"]


def test_every_step_run_twice_changes_nothing_the_second_time(svc: Any, studio: Any) -> None:
    started = studio()
    dep = deposit(svc, started.booking_id)
    assert dp.start_deposit(svc, started.booking_id) is None  # a card is saved: nothing more to ask
    seti = {"id": dep.setup_intent_id, "status": "succeeded", "payment_method": dep.payment_method}
    assert dp.card_saved(svc, started.booking_id, seti).message == "This card is already saved"
    first, last = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    assert dp.run_deposit_round(svc).done == {"held": 1}
    assert not dp.run_deposit_round(svc).done
    with pytest.raises(InvalidState, match="already stands"):
        dp.place_hold_now(svc, started.booking_id, actor=MANAGER)
    at(svc, last + timedelta(hours=72))
    assert dp.run_deposit_round(svc).done == {"released": 1}
    assert not dp.run_deposit_round(svc).done
    assert len(holds_at_stripe(svc)) == 1
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_released"]
    assert actions(svc, started.booking_id).count("booking.deposit.released") == 1


def stripe_events(svc: Any, kind: str, object_id: str) -> list[dict[str, Any]]:
    found = svc.payments.list_events(limit=100)["data"]
    return [e for e in found if e["type"] == kind and e["data"]["object"]["id"] == object_id]


def test_the_webhook_records_a_card_saved_in_the_customers_browser(svc: Any, studio: Any) -> None:
    """Live mode: Stripe.js confirms the SetupIntent in the browser; setup_intent.succeeded tells Room Desk."""
    started = studio(card="")
    request = dp.start_deposit(svc, started.booking_id)
    assert request is not None
    svc.payments.confirm_setup_intent(request.setup_intent_id)  # what confirmCardSetup does
    [event] = stripe_events(svc, "setup_intent.succeeded", request.setup_intent_id)
    now = svc.now()
    assert dp.on_setup_intent(svc, event["data"]["object"], "stripe-webhook", now) == "processed"
    assert deposit(svc, started.booking_id).state == "card_saved"
    assert dp.on_setup_intent(svc, event["data"]["object"], "stripe-webhook", now) == "processed"  # redelivered
    assert actions(svc, started.booking_id).count("booking.deposit.card_saved") == 1
    other = {**event["data"]["object"], "metadata": {}}
    assert dp.on_setup_intent(svc, other, "stripe-webhook", now) == "ignored"  # another integration's card setup


def test_a_hold_cancelled_at_stripe_is_held_again_by_the_next_round(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    [hold] = holds_at_stripe(svc)
    svc.payments.cancel_payment_intent(hold["id"], idempotency_key="cancelled-in-the-stripe-dashboard")
    [event] = stripe_events(svc, "payment_intent.canceled", hold["id"])
    assert dp.on_hold_event(svc, event["data"]["object"], "stripe-webhook", svc.now()) == "processed"
    assert deposit(svc, started.booking_id).state == "card_saved"
    assert dp.run_deposit_round(svc).done == {"reheld": 1}  # the hold was due: placed again at once
    assert [h["status"] for h in holds_at_stripe(svc)] == ["canceled", "requires_capture"]
    assert emails(svc, started.booking_id) == ["deposit_held"]
    # Room Desk's own release of a hold is no news to it.
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=72))
    dp.run_deposit_round(svc)
    [_, second] = holds_at_stripe(svc)
    [own] = stripe_events(svc, "payment_intent.canceled", second["id"])
    assert dp.on_hold_event(svc, own["data"]["object"], "stripe-webhook", svc.now()) == "ignored"


# ------------------------------------------------------------------------------------------- long and cancelled


def test_a_long_booking_is_held_again_before_the_first_hold_lapses(svc: Any, studio: Any) -> None:
    days = tuple(THU + timedelta(days=i) for i in (0, 1, 4, 5, 6))  # Thu, Fri, Mon–Wed: 6 days from first to last
    started = held(svc, studio, dates=days)
    [first_hold] = holds_at_stripe(svc)
    placed = deposit(svc, started.booking_id).held_at
    assert placed is not None
    at(svc, placed + timedelta(days=6, hours=12) - timedelta(minutes=1))
    assert not dp.run_deposit_round(svc).done
    at(svc, placed + timedelta(days=6, hours=12))
    assert dp.run_deposit_round(svc).done == {"reheld": 1}
    old, new = holds_at_stripe(svc)
    assert old["id"] == first_hold["id"] and old["status"] == "canceled"  # released once the new one stood
    assert new["status"] == "requires_capture" and new["metadata"]["hold"] == "2"
    dep = deposit(svc, started.booking_id)
    assert dep.payment_intent_id == new["id"] and [bool(h["released_at"]) for h in dep.holds] == [True, False]
    assert emails(svc, started.booking_id) == ["deposit_held"]  # one email for the deposit, not per hold
    _, last = legs_span(svc, started.booking_id)
    assert placed + timedelta(days=13) > last + timedelta(hours=72)  # the second hold stands through the window
    at(svc, last + timedelta(hours=72))
    assert dp.run_deposit_round(svc).done == {"released": 1}
    assert svc.payments.retrieve_payment_intent(new["id"])["status"] == "canceled"


def test_a_booking_cancelled_before_the_hold_is_never_held(svc: Any, studio: Any) -> None:
    started = studio()
    bk.cancel_booking(svc, started.booking_id, actor=FRONT, reason="Customer changed plans")
    assert dp.run_deposit_round(svc).done == {"cancelled": 1}
    assert deposit(svc, started.booking_id).state == "cancelled"
    first, _ = legs_span(svc, started.booking_id)
    at(svc, first - timedelta(hours=48))
    assert not dp.run_deposit_round(svc).done and holds_at_stripe(svc) == []
    assert emails(svc, started.booking_id) == []


def test_a_booking_cancelled_while_held_releases_the_hold(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    [hold] = holds_at_stripe(svc)
    bk.cancel_booking(svc, started.booking_id, actor=FRONT, reason="Customer changed plans")
    assert dp.run_deposit_round(svc).done == {"released": 1}
    assert svc.payments.retrieve_payment_intent(hold["id"])["status"] == "canceled"
    assert emails(svc, started.booking_id) == ["deposit_held", "deposit_released"]


def test_an_unpaid_booking_is_never_held_and_its_lapse_closes_the_deposit(svc: Any, studio: Any) -> None:
    started = studio(pay=False)
    first, _ = legs_span(svc, started.booking_id)
    assert not dp.run_deposit_round(svc).done
    at(svc, first - timedelta(hours=47))
    bk.expire_holds(svc)
    assert dp.run_deposit_round(svc).done == {"cancelled": 1}
    assert holds_at_stripe(svc) == []


def test_staff_release_early_with_a_reason_and_not_under_an_open_claim(svc: Any, studio: Any) -> None:
    started = held(svc, studio)
    with pytest.raises(ValidationError, match="Say why"):
        dp.release_deposit(svc, started.booking_id, actor=MANAGER, reason="")
    _, last = legs_span(svc, started.booking_id)
    at(svc, last + timedelta(hours=1))
    filed = file(svc, started)
    with pytest.raises(InvalidState, match=f"claim #{filed.claim_id}"):
        dp.release_deposit(svc, started.booking_id, actor=MANAGER, reason="Room checked, all fine")
    dp.withdraw_claim(svc, filed.claim_id, actor=FRONT)
    done = dp.release_deposit(svc, started.booking_id, actor=MANAGER, reason="Room checked, all fine")
    assert done.state == "released" and "released" in done.message


def test_a_stripe_outage_on_the_card_request_is_retried_by_the_worker(svc: Any, booking_request: Any) -> None:
    req = booking_request(room="sonic-studio", dates=(THU,), start=time(10), end=time(12), channel="phone")
    started = bk.start_booking(svc, req, actor=FRONT)
    svc.payments.faults.fail("create_setup_intent")
    with pytest.raises(GatewayError):
        dp.start_deposit(svc, started.booking_id)
    assert deposit(svc, started.booking_id).setup_intent_id is None
    assert dp.run_deposit_round(svc).done == {"card requested": 1}
    assert deposit(svc, started.booking_id).setup_intent_id is not None


def test_rooms_without_a_deposit_get_none(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(channel="phone"), actor=FRONT)
    assert dp.start_deposit(svc, started.booking_id) is None
    assert dq.get_deposit(svc, started.booking_id) is None


# ------------------------------------------------------------------------------------------- the room's terms


def test_a_rooms_deposit_terms_are_checked_and_round_trip_through_rooms_toml(svc: Any) -> None:
    studio = svc.catalogue.room("sonic-studio")
    assert (studio.deposit_cents, studio.deposit_hold_hours, studio.deposit_claim_hours) == (HELD, 48, 72)
    assert svc.catalogue.room("boardroom").deposit_terms is None
    with pytest.raises(ValueError, match="at most 6 days"):
        Room(**{**studio.model_dump(), "deposit_hold_hours": 200})
    text = catalogue_toml(svc.catalogue)
    assert text.count("deposit_cents") == 1  # rooms without a deposit are written without its fields
    assert parse_catalogue(tomllib.loads(text)) == svc.catalogue
    bad = {**svc.catalogue.model_dump(mode="json")}
    bad["rooms"][0]["deposit_cents"] = -1
    with pytest.raises(ConfigError, match="deposit_cents"):
        parse_catalogue(bad)
