"""The Emails & webhooks page through AppTest: the outbox's counts and list, one email's preview, Retry now, Send due
emails now, failed Stripe webhooks with Replay and Replay all, and who may open the page.

Faults are injected on the app's own services (`boot.get_services()`, cached for the module) when the page itself must
meet an outage, and on the fixture's services when an outage only sets the scene.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import AuditLog, Booking, EmailOutbox
from pages.ui import boot
from pages.ui.labels import literal
from services import booking as bk
from services.core.context import Services
from services.core.errors import GatewayError
from services.notify import queries
from services.web import webhook_queries, webhooks

from .conftest import APP, TIMEOUT, free_slot
from .test_pages import everything, nav_pages, texts

App = Callable[..., AppTest]
PAGE = "pages/admin/outbox.py"
REFUSED = GatewayError("Mailbox unknown (550 5.1.1)", transient=False, provider="mail", status=550)


def table(at: AppTest, prefix: str) -> Any:
    found = [d for d in at.dataframe if d.key and d.key.startswith(prefix)]
    assert found, f"no table {prefix}* on the page"
    return found[0]


def replay_results(at: AppTest) -> Any:
    (found,) = [t.value for t in at.table if "Result" in t.value.columns]
    return found


def select_row(at: AppTest, prefix: str, row: int) -> None:
    at.session_state[table(at, prefix).key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def start(svc: Services, name: str, skip: int) -> bk.StartResult:
    slot = free_slot(svc, "quiet-room", skip=skip)
    return bk.start_booking(
        svc,
        bk.BookingRequest(slot.room, (slot.day,), slot.start, slot.end, name, f"{name.split()[0].lower()}@example.org"),
        actor="customer",
    )


def listed_references(at: AppTest) -> list[str]:
    return [str(v) for d in at.dataframe if d.key and d.key.startswith("ob_emails_") for v in d.value["Booking"]]


def outbox_row(svc: Services, booking_id: int) -> EmailOutbox:
    with svc.session() as s:
        return s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking_id)).one()


def actors(svc: Services, action: str) -> list[str]:
    with svc.session() as s:
        return [a.actor for a in s.exec(select(AuditLog).where(AuditLog.action == action))]


def failed_webhook(svc: Services, name: str, skip: int) -> tuple[bk.StartResult, webhook_queries.StoredEvent]:
    """A customer paid in Stripe, and Stripe's payment_intent.succeeded reached us while Stripe could not be read
    back: the event is stored and failed, the booking still awaits payment."""
    started = start(svc, name, skip)
    svc.payments.confirm_payment_intent(started.payment_intent)
    event = next(
        e
        for e in svc.payments.list_events(limit=100)["data"]
        if e["type"] == "payment_intent.succeeded" and e["data"]["object"]["id"] == started.payment_intent
    )
    row_id, _ = webhooks.record_event(svc, event)
    svc.payments.faults.fail("retrieve_payment_intent")
    with pytest.raises(GatewayError):
        webhooks.process_event(svc, row_id, actor=webhooks.ACTOR)
    stored = next(f for f in webhook_queries.list_failed_events(svc) if f.id == row_id)
    return started, stored


def status(svc: Services, booking_id: int) -> str:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b.status


# ------------------------------------------------------------------------------------------------ emails


def test_the_page_lists_the_outbox_with_its_counts(app: App, svc: Services) -> None:
    at = app("manager", page=PAGE)
    assert at.title[0].value == "Emails & webhooks"
    assert "no email really leaves Room Desk" in texts(at, "info")
    counts = queries.outbox_counts(svc)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Queued": str(counts["queued"]),
        "Sent": str(counts["sent"]),
        "Failed, will retry": str(counts["failed"]),
        "Needs attention": str(counts["needs_attention"]),
    }
    listed = table(at, "ob_emails_").value
    assert len(listed) == sum(counts.values()) > 20
    assert set(listed.columns) == {
        "Status",
        "Kind",
        "Booking",
        "To",
        "Subject",
        "Attempts",
        "Last error",
        "Created",
        "Sent",
        "Next attempt",
    }
    # The demo's confirmation that failed in a mail outage is there, waiting for its retry.
    assert "Failed, will retry" in set(listed["Status"])

    at.button_group(key="ob_states").set_value(["sent"]).run()
    assert set(table(at, "ob_emails_").value["Status"]) == {"Sent"}
    select_row(at, "ob_emails_", 0)
    shown = queries.list_outbox(svc, states=["sent"])[0]
    page = everything(at)
    assert literal(shown.subject) in page and "Sent " in page  # shown as text: Markdown characters escaped
    assert "ob_retry" not in {b.key for b in at.button}  # nothing to retry on a sent email


def test_retry_now_sends_an_email_the_mail_server_refused(app: App, svc: Services) -> None:
    svc.mail.faults.fail("send", error=REFUSED)
    started = start(svc, "Rhea Refusedmail", skip=0)
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    row = outbox_row(svc, started.booking_id)
    assert (row.status, row.next_attempt_at) == ("failed", None)

    at = app("admin", page=PAGE)
    assert "attention**: refused by the mail server, so not retried by itself." in texts(at, "error")
    at.button_group(key="ob_states").set_value(["needs_attention"]).run()
    listed = table(at, "ob_emails_").value
    row_index = list(listed["Booking"]).index(started.reference)
    assert listed["Next attempt"].iloc[row_index] == "Not by itself"
    select_row(at, "ob_emails_", row_index)
    page = everything(at)
    assert "**Needs attention** — refused by the mail server: Mailbox unknown (550 5.1.1)" in page
    assert "Plain text" in [t.label for t in at.tabs] and started.reference in texts(at, "text")

    at.button(key="ob_retry").click().run()
    assert not at.exception
    assert f"Sent to rhea@example.org: “{row.subject}”." in texts(at, "success")
    after = outbox_row(svc, started.booking_id)
    assert (after.status, after.attempts) == ("sent", 2)
    assert [m["kind"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["confirmation"]
    assert "admin@sandbox" in actors(svc, "email.confirmation.retry")
    # The filter shows what still needs attention: this one is gone from it.
    assert started.reference not in listed_references(at)


def test_retry_now_during_an_outage_says_when_it_tries_again(app: App, svc: Services) -> None:
    svc.mail.faults.fail("send")
    started = start(svc, "Otto Outage", skip=1)
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    boot.get_services().mail.faults.fail("send")  # the page's own mail gateway: the outage goes on

    at = app("manager", page=PAGE)
    at.text_input(key="ob_search").set_value(started.reference).run()
    select_row(at, "ob_emails_", 0)
    at.button(key="ob_retry").click().run()
    warning = texts(at, "warning")
    assert "Not sent: The mail server is unavailable (injected fault)." in warning
    assert "It will be tried again by itself at" in warning
    assert outbox_row(svc, started.booking_id).status == "failed"
    # The same email stays selected after the action.
    assert "Failed 2 times" in everything(at)


def test_send_due_emails_now_sends_what_the_worker_would(app: App, svc: Services) -> None:
    due = queries.count_due(svc, now=svc.now())
    assert due >= 1  # the demo's failed confirmation, whose retry time has come
    at = app("manager", page=PAGE)
    button = at.button(key="ob_send_due")
    assert button.label == f"Send due emails now ({due})" and not button.disabled
    button.click().run()
    assert not at.exception
    assert f"{due} email{'' if due == 1 else 's'} sent." in texts(at, "success")
    assert queries.count_due(svc, now=svc.now()) == 0
    assert at.button(key="ob_send_due").disabled
    assert "manager@sandbox" in actors(svc, "email.confirmation.sent")


# ------------------------------------------------------------------------------------------------ webhooks


def test_a_failed_webhook_is_listed_and_replay_clears_it(app: App, svc: Services) -> None:
    started, event = failed_webhook(svc, "Wendy Webhook", skip=2)
    assert status(svc, started.booking_id) == "AWAITING_PAYMENT"

    at = app("manager", page=PAGE)
    assert "**1 Stripe event could not be processed**: see *Failed webhooks*." in texts(at, "warning")
    hooks = table(at, "ob_hooks_").value
    assert list(hooks["Event id"]) == [event.event_id]
    assert hooks["Event"].iloc[0] == "Payment succeeded" and hooks["Attempts"].iloc[0] == 1
    assert "Stripe is unavailable" in hooks["Last error"].iloc[0]
    assert at.button(key="ob_replay").disabled  # nothing selected yet

    select_row(at, "ob_hooks_", 0)
    at.button(key="ob_replay").click().run()
    assert not at.exception
    assert "Replayed 1: 1 done." in texts(at, "success")
    results = replay_results(at)
    assert list(results["Result"]) == ["The booking now matches what Stripe says."]
    assert "No failed webhook" in texts(at, "success")
    assert "could not be processed" not in texts(at, "warning")
    assert webhook_queries.list_failed_events(svc) == []
    assert status(svc, started.booking_id) == "CONFIRMED"
    assert actors(svc, "webhook.replayed") == ["manager@sandbox"]


def test_replay_all_reports_each_event(app: App, svc: Services) -> None:
    first, one = failed_webhook(svc, "Abel Allreplay", skip=3)
    second, two = failed_webhook(svc, "Bea Allreplay", skip=4)
    boot.get_services().payments.faults.fail("retrieve_payment_intent")  # the first replay meets the outage again

    at = app("admin", page=PAGE)
    at.button(key="ob_replay_all").click().run()
    assert not at.exception
    assert "Replayed 2: 1 done." in texts(at, "warning")
    results = replay_results(at)
    assert list(results["Event id"]) == [one.event_id, two.event_id]
    assert list(results["Outcome"]) == ["Not done", "Done"]
    assert results["Result"].iloc[0] == (
        "Stripe is unavailable (injected fault). Stripe sends it again by itself; or replay it later."
    )
    assert results["Result"].iloc[1] == "The booking now matches what Stripe says."
    assert [f.event_id for f in webhook_queries.list_failed_events(svc)] == [one.event_id]
    assert (status(svc, first.booking_id), status(svc, second.booking_id)) == ("AWAITING_PAYMENT", "CONFIRMED")

    at.button(key="ob_replay_all").click().run()
    assert "Replayed 1: 1 done." in texts(at, "success")
    assert webhook_queries.list_failed_events(svc) == []


# ------------------------------------------------------------------------------------------------ who may see it


@pytest.mark.parametrize("role", ["frontdesk", "finance"])
def test_front_desk_and_finance_cannot_open_the_page(app: App, svc: Services, role: str) -> None:
    at = app(role)
    assert "Emails & webhooks" not in nav_pages(at)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)

    direct = AppTest.from_file(APP.replace("app.py", PAGE), default_timeout=TIMEOUT)
    direct.session_state["role"] = role
    direct.run()
    assert "This page is not available to" in texts(direct, "error")
    assert not direct.title
