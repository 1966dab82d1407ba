"""The email outbox's retries on sandbox gateways: a mail outage delays an email, never loses or doubles it; a refusal
waits for staff; two workers at once send each email exactly once; `send-mail` and the worker report what they did."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from models.tables import AuditLog, Booking, EmailOutbox
from services import booking as bk
from services.core.errors import GatewayError, NotFound
from services.notify import outbox, queries
from tests.conftest import NOW

WEEKDAYS = (4, 5, 6, 9, 10, 11)  # of March 2026
REFUSED = GatewayError("Mailbox unknown (550 5.1.1)", transient=False, provider="mail", status=550)


def paid(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    return started


def email(svc: Any, booking_id: int) -> EmailOutbox:
    with svc.session() as s:
        return s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking_id)).one()


def sends(svc: Any) -> int:
    """Calls that reached the mail gateway (the sandbox would store a repeated idempotency key only once, so its
    stored messages cannot show a double send; its call counter can)."""
    return svc.mail.faults.calls["send"]


def audit(svc: Any, booking_id: int) -> list[tuple[str, str]]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(col(AuditLog.id)))
        return [(a.action, a.actor) for a in rows if a.action.startswith("email.")]


def test_backoff_grows_then_settles_and_never_gives_up() -> None:
    waits = [outbox.backoff(n) for n in range(1, 9)]
    minutes = [int(w.total_seconds() // 60) for w in waits]
    assert minutes == [1, 5, 15, 60, 240, 240, 240, 240]


def test_a_mail_outage_delays_the_email_and_it_goes_out_once_when_due(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    started = paid(svc, booking_request)
    row = email(svc, started.booking_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, NOW + timedelta(minutes=1))
    assert row.last_error and "unavailable" in row.last_error
    assert svc.mail.messages(booking_id=started.booking_id) == []

    # Before its time: nothing is tried.
    for at in (NOW, NOW + timedelta(seconds=59)):
        report = outbox.deliver_due(svc, now=at)
        assert (report.sent, report.failed, report.still_queued, report.needs_attention) == (0, 0, 1, 0)
    assert sends(svc) == 1

    # The outage still lasts at the first retry: the next wait is longer.
    svc.mail.faults.fail("send")
    report = outbox.deliver_due(svc, now=NOW + timedelta(minutes=1))
    assert (report.sent, report.failed, report.still_queued) == (0, 1, 1)
    row = email(svc, started.booking_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.next_attempt_at == NOW + timedelta(minutes=1 + 5)

    # Over: it goes out at its time, once.
    assert outbox.deliver_due(svc, now=NOW + timedelta(minutes=5)).sent == 0
    report = outbox.deliver_due(svc, now=NOW + timedelta(minutes=6))
    assert (report.sent, report.failed, report.still_queued, report.needs_attention) == (1, 0, 0, 0)
    assert outbox.deliver_due(svc, now=NOW + timedelta(days=1)).sent == 0
    assert sends(svc) == 3
    row = email(svc, started.booking_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == ("sent", 3, None, None)
    assert row.sent_at == NOW + timedelta(minutes=6)
    assert [m["kind"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["confirmation"]
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        assert b is not None and b.confirmation_sent_at == NOW + timedelta(minutes=6)
    assert audit(svc, started.booking_id) == [
        ("email.confirmation.failed", "stripe-webhook"),
        ("email.confirmation.failed", "worker"),
        ("email.confirmation.sent", "worker"),
    ]


def test_due_emails_go_oldest_first_up_to_the_limit(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send", times=3)
    first = paid(svc, booking_request, dates=[date(2026, 3, 4)])
    svc.clock.advance(minutes=1)
    second = paid(svc, booking_request, dates=[date(2026, 3, 5)])
    svc.clock.advance(minutes=1)
    third = paid(svc, booking_request, dates=[date(2026, 3, 6)])
    report = outbox.deliver_due(svc, now=NOW + timedelta(hours=1), limit=2)
    assert (report.sent, report.still_queued) == (2, 1)
    assert [email(svc, b.booking_id).status for b in (first, second, third)] == ["sent", "sent", "failed"]


def test_a_refused_email_waits_for_staff_and_retry_now_sends_it(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send", error=REFUSED)
    started = paid(svc, booking_request)
    row = email(svc, started.booking_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert row.last_error == "Mailbox unknown (550 5.1.1)"
    assert queries.outbox_counts(svc) == {"queued": 0, "failed": 0, "needs_attention": 1, "sent": 0, "withdrawn": 0}
    (listed,) = queries.list_outbox(svc, states=["needs_attention"])
    assert listed.needs_attention and listed.booking_reference == started.reference

    # Never again by itself, however long the worker runs.
    for days in (0, 1, 30):
        report = outbox.deliver_due(svc, now=NOW + timedelta(days=days))
        assert (report.sent, report.failed, report.still_queued, report.needs_attention) == (0, 0, 0, 1)
    assert sends(svc) == 1

    after = outbox.retry_now(svc, row.id, actor="manager@sandbox", now=NOW + timedelta(hours=2))
    assert (after.status, after.attempts, after.needs_attention) == ("sent", 2, False)
    assert sends(svc) == 2
    assert len(svc.mail.messages(booking_id=started.booking_id)) == 1
    assert audit(svc, started.booking_id)[-2:] == [
        ("email.confirmation.retry", "manager@sandbox"),
        ("email.confirmation.sent", "manager@sandbox"),
    ]
    assert queries.outbox_counts(svc)["sent"] == 1
    # Retrying a sent email sends nothing more.
    assert outbox.retry_now(svc, row.id, actor="manager@sandbox", now=NOW).status == "sent"
    assert sends(svc) == 2
    with pytest.raises(NotFound):
        outbox.retry_now(svc, 999_999, actor="manager@sandbox", now=NOW)


def test_retry_now_after_a_refusal_goes_to_the_corrected_address(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send", error=REFUSED)
    started = paid(svc, booking_request, customer_email="ava@exmaple.org")
    with svc.session() as s:  # staff correct the typo on the booking
        b = s.get(Booking, started.booking_id)
        assert b is not None
        b.customer_email = "ava@example.org"
    row = email(svc, started.booking_id)
    assert outbox.retry_now(svc, row.id, actor="admin@sandbox", now=NOW).to == "ava@example.org"
    assert [m["to"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["ava@example.org"]


def test_retry_now_on_a_continuing_outage_keeps_the_backoff(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send", times=2)
    started = paid(svc, booking_request)
    row = email(svc, started.booking_id)
    after = outbox.retry_now(svc, row.id, actor="manager@sandbox", now=NOW + timedelta(seconds=10))
    assert (after.status, after.attempts) == ("failed", 2)
    assert after.next_attempt_at == NOW + timedelta(seconds=10) + timedelta(minutes=5)
    assert not after.needs_attention


def test_an_unexpected_error_is_not_retried_blindly(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.mail.faults.fail("send")
    started = paid(svc, booking_request)

    def crash(message: Any) -> str:
        raise RuntimeError("a bug, not a mail server's answer")

    monkeypatch.setattr(svc.mail, "send", crash)
    report = outbox.deliver_due(svc, now=NOW + timedelta(hours=1))
    assert (report.failed, report.needs_attention) == (1, 1)
    row = email(svc, started.booking_id)
    assert (row.status, row.next_attempt_at) == ("failed", None)
    assert row.last_error and "may or may not have left" in row.last_error


def test_trouble_before_sending_leaves_that_email_due_and_the_others_go(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.notify import emails

    svc.mail.faults.fail("send", times=2)
    first = paid(svc, booking_request, dates=[date(2026, 3, 4)])
    second = paid(svc, booking_request, dates=[date(2026, 3, 5)])
    real = emails.calendar_attachment

    def broken_for_first(booking: Any, *args: Any) -> Any:
        if booking.id == first.booking_id:
            raise RuntimeError("database went away")
        return real(booking, *args)

    monkeypatch.setattr(emails, "calendar_attachment", broken_for_first)
    report = outbox.deliver_due(svc, now=NOW + timedelta(hours=1))
    assert (report.sent, report.failed, report.still_queued) == (1, 1, 1)
    row = email(svc, first.booking_id)  # rolled back: nothing was sent, it is tried again next round
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, NOW + timedelta(minutes=1))
    assert email(svc, second.booking_id).status == "sent"
    monkeypatch.setattr(emails, "calendar_attachment", real)
    assert outbox.deliver_due(svc, now=NOW + timedelta(hours=1)).sent == 1


def test_a_queued_email_can_be_filtered_and_previewed(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    failed = paid(svc, booking_request, dates=[date(2026, 3, 4)])
    sent = paid(svc, booking_request, dates=[date(2026, 3, 5)], customer_email="bo@example.org")
    assert [e.booking_reference for e in queries.list_outbox(svc)] == [sent.reference, failed.reference]
    assert [e.booking_reference for e in queries.list_outbox(svc, states=["failed"])] == [failed.reference]
    assert [e.to for e in queries.list_outbox(svc, search="BO@EXAMPLE")] == ["bo@example.org"]
    assert [e.to for e in queries.list_outbox(svc, search=failed.reference.lower())] == ["ava@example.org"]
    assert queries.list_outbox(svc, states=[]) == []
    assert [e.kind for e in queries.list_outbox(svc, kinds=["confirmation"])] == ["confirmation", "confirmation"]
    assert queries.list_outbox(svc, kinds=["cancellation"]) == []
    assert all(e.text == "" and e.html is None for e in queries.list_outbox(svc))  # the list carries no bodies
    one = queries.get_email(svc, queries.list_outbox(svc, search=sent.reference)[0].id)
    assert one.html and sent.reference in one.html and sent.reference in one.text
    assert queries.count_due(svc, now=NOW) == 0 and queries.count_due(svc, now=NOW + timedelta(minutes=1)) == 1


@pytest.mark.parametrize("outage", [False, True], ids=["mail-up", "mail-still-down"])
def test_two_workers_at_once_try_each_email_exactly_once(
    make_services: Any, db_url: str, booking_request: Any, outage: bool
) -> None:
    svc = make_services(db_url)
    svc.mail.faults.fail("send", times=6)
    started = [paid(svc, booking_request, dates=[date(2026, 3, day)]) for day in WEEKDAYS]
    svc.mail.faults.clear()
    svc.mail.faults.latency("send", 0.05)  # both workers are mid-send at the same time
    if outage:  # a failed try must not let the other worker try again at once either
        svc.mail.faults.fail("send", times=6)
    later = NOW + timedelta(hours=1)
    barrier = threading.Barrier(2)
    reports: list[outbox.DeliveryReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            reports.append(outbox.deliver_due(svc, now=later))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sends(svc) == 6
    assert sum(r.failed if outage else r.sent for r in reports) == 6
    assert sum(r.sent if outage else r.failed for r in reports) == 0
    for b in started:
        row = email(svc, b.booking_id)
        if outage:
            assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 2, later + timedelta(minutes=5))
        else:
            assert (row.status, row.attempts) == ("sent", 2)
        tries = [action for action in audit(svc, b.booking_id) if action[1] == "worker"]
        assert tries == [("email.confirmation.failed" if outage else "email.confirmation.sent", "worker")]


def test_the_request_that_queued_an_email_and_a_worker_send_it_once(
    make_services: Any, db_url: str, booking_request: Any
) -> None:
    """The booking flow sends its email right away while the worker may find it queued at the same moment."""
    svc = make_services(db_url)
    started = bk.start_booking(svc, booking_request(), actor="customer")
    svc.mail.faults.latency("send", 0.2)
    worker_reports: list[outbox.DeliveryReport] = []
    paying = threading.Thread(target=bk.sandbox_pay, args=(svc, started.booking_id), kwargs={"actor": "webhook"})
    paying.start()
    while paying.is_alive():
        worker_reports.append(outbox.deliver_due(svc, now=NOW + timedelta(seconds=1)))
    paying.join()
    assert sends(svc) == 1
    row = email(svc, started.booking_id)
    assert (row.status, row.attempts) == ("sent", 1)


def test_send_mail_command_prints_the_counts(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import get_settings
    from services.ops import cli

    svc.mail.faults.fail("send", times=2)
    paid(svc, booking_request, dates=[date(2026, 3, 4)])
    refused = paid(svc, booking_request, dates=[date(2026, 3, 5)])
    with svc.session() as s:  # the second one was refused for good
        row = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == refused.booking_id)).one()
        row.next_attempt_at = None
    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    get_settings.cache_clear()
    try:
        assert cli.main(["send-mail"]) == 0
        assert capsys.readouterr().out == "Emails 1 sent, 0 failed, 0 waiting, 1 need attention.\n"
        assert cli.main(["send-mail"]) == 0
        assert capsys.readouterr().out == "Emails 0 sent, 0 failed, 0 waiting, 1 need attention.\n"
    finally:
        get_settings.cache_clear()


def test_the_worker_sends_due_emails_every_round(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import get_settings
    from services.ops import cli

    svc.mail.faults.fail("send")
    started = paid(svc, booking_request)
    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    get_settings.cache_clear()
    try:
        assert cli.main(["worker", "--once"]) == 0
    finally:
        get_settings.cache_clear()
    assert "emails 1 sent, 0 failed, 0 waiting;" in capsys.readouterr().out
    assert email(svc, started.booking_id).status == "sent"


def test_no_transaction_is_open_while_the_mail_server_is_talked_to(svc: Any, booking_request: Any) -> None:
    """On SQLite a transaction holds the whole database's write lock: if the email were sent inside one, every
    booking, payment and page would wait for a slow mail server. While send() runs, another connection writes."""
    writes: list[str] = []
    real_send = svc.mail.send

    database = svc.engine.url.database

    def send_and_write(message: Any) -> str:
        other = sqlite3.connect(database, timeout=0.2, isolation_level=None)  # fail fast, not after 30 s
        try:
            other.execute("BEGIN IMMEDIATE")  # takes the write lock, or raises "database is locked"
            other.execute("ROLLBACK")
        finally:
            other.close()
        writes.append(message.kind)
        return str(real_send(message))

    svc.mail.send = send_and_write
    started = paid(svc, booking_request)
    assert writes == ["confirmation"] and email(svc, started.booking_id).status == "sent"


def test_an_email_whose_sender_died_mid_send_goes_out_after_the_lease(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    started = paid(svc, booking_request)
    row_id = email(svc, started.booking_id).id
    with svc.session() as s:  # a worker claimed it, then its process was killed before recording the outcome
        row = s.get(EmailOutbox, row_id)
        row.status, row.attempts, row.next_attempt_at = "sending", 2, svc.now() + outbox.SEND_LEASE
    svc.mail.faults.clear()
    assert outbox.deliver_due(svc, now=svc.now() + timedelta(minutes=9)).sent == 0  # still someone else's
    assert not outbox.deliver(svc, row_id, now=svc.now() + timedelta(minutes=9))
    report = outbox.deliver_due(svc, now=svc.now() + outbox.SEND_LEASE)
    assert report.sent == 1 and email(svc, started.booking_id).status == "sent"
    assert [m["kind"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["confirmation"]
