"""SmtpMail against a real SMTP server (aiosmtpd) on loopback: what arrives is what a mail client shows, and every
failure becomes a GatewayError that says whether a retry may help, never with the password in it."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import icalendar
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from models.tables import Booking, BookingLeg
from services.core.catalogue import load_catalogue
from services.core.errors import GatewayError
from services.core.settings import Settings
from services.gateways.base import MailGateway, OutgoingEmail
from services.gateways.smtp_mail import SmtpMail
from services.notify.emails import render

USER = "bookings@labourtemple.example"
PASSWORD = "s3cret-Pa55word!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """An aiosmtpd handler that keeps what it receives, or answers DATA with `reply` (e.g. '550 …')."""

    def __init__(self, reply: str = "250 OK") -> None:
        self.reply = reply
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            msg = email.message_from_bytes(envelope.content, policy=default_policy)
            assert isinstance(msg, EmailMessage)
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return self.reply


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Collector, int]]]:
    """Factory: start a real SMTP server on a free loopback port with the given handler."""
    started: list[Controller] = []

    def start(handler: Collector | None = None, **kwargs: Any) -> tuple[Collector, int]:
        handler = handler or Collector()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return handler, port

    yield start
    for controller in started:
        controller.stop()


def ours(caplog: pytest.LogCaptureFixture) -> str:
    """What the adapter logged (the test server's own debug log echoes its replies, password included)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "services.gateways.smtp_mail")


def adapter(port: int, **kw: Any) -> SmtpMail:
    kw.setdefault("username", None)
    kw.setdefault("password", None)
    kw.setdefault("starttls", False)
    kw.setdefault("from_address", "Labour Temple <bookings@labourtemple.example>")
    kw.setdefault("timeout", 5)
    return SmtpMail("127.0.0.1", port, **kw)


def confirmation_email(tmp_path: Any) -> OutgoingEmail:
    settings = Settings(data_dir=tmp_path)
    catalogue = load_catalogue(settings.rooms_file)
    booking = Booking(
        id=3,
        reference="RD-7K2Q",
        room_slug="boardroom",
        start_time="10:00",
        end_time="12:00",
        customer_name="Ava <Nguyen>",
        customer_email="ava@example.org",
        amount_cents=9000,
        policy_snapshot={"bands": [[48, 100], [24, 50], [0, 0]], "text": "Full refund 48 h or more before."},
        confirmed_at=datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    )
    legs = [
        BookingLeg(
            booking_id=3,
            day=date(2026, 3, 4),
            starts_at=datetime(2026, 3, 4, 18, 0, tzinfo=UTC),
            ends_at=datetime(2026, 3, 4, 20, 0, tzinfo=UTC),
            calendar_id="boardroom@group.calendar.google.com",
        )
    ]
    rendered = render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)
    return OutgoingEmail(
        to=booking.customer_email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        kind="confirmation",
        booking_id=booking.id,
        attachments=rendered.attachments,
        idempotency_key="email:3:confirmation",
    )


def plain(to: str = "ava@example.org", key: str = "email:1:cancellation") -> OutgoingEmail:
    return OutgoingEmail(to=to, subject="Booking cancelled", text="Hello", kind="cancellation", idempotency_key=key)


def test_confirmation_arrives_with_text_html_and_the_ics(smtp_server: Any, tmp_path: Any) -> None:
    handler, port = smtp_server(authenticator=authenticator, auth_require_tls=False)
    mail = adapter(port, username=USER, password=PASSWORD)
    assert isinstance(mail, MailGateway)

    message_id = mail.send(confirmation_email(tmp_path))

    [(sender, recipients, msg)] = handler.received
    assert sender == "bookings@labourtemple.example"
    assert recipients == ["ava@example.org"]
    assert msg["Subject"] == "Booking confirmed: Boardroom, Wed 4 Mar"
    assert msg["Message-ID"] == message_id
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Ava <Nguyen>" in text.get_content() and "Wed 4 Mar, 10:00–12:00" in text.get_content()
    assert "Ava &lt;Nguyen&gt;" in html.get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_filename() == "booking-RD-7K2Q.ics"
    assert attachment.get_param("method") == "PUBLISH"
    cal = icalendar.Calendar.from_ical(attachment.get_payload(decode=True))
    [event] = cal.walk("VEVENT")
    assert event.decoded("DTSTART") == datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    assert str(event["UID"]) == "RD-7K2Q-20260304@roomdesk"


def test_a_retry_carries_the_same_message_id(smtp_server: Any) -> None:
    handler, port = smtp_server()
    mail = adapter(port)
    first = mail.send(plain(key="email:9:refund"))
    again = mail.send(plain(key="email:9:refund"))
    other = mail.send(plain(key="email:10:refund"))
    assert first == again != other
    assert first.endswith("@labourtemple.example>")
    assert [m["Message-ID"] for _, _, m in handler.received] == [first, first, other]


def test_a_rejection_is_not_transient(smtp_server: Any) -> None:
    _, port = smtp_server(Collector("550 5.7.1 Message rejected as spam"))
    with pytest.raises(GatewayError) as err:
        adapter(port).send(plain())
    assert err.value.transient is False
    assert err.value.status == 550
    assert "550 5.7.1 Message rejected as spam" in err.value.message


def test_a_4xx_reply_is_transient(smtp_server: Any) -> None:
    _, port = smtp_server(Collector("451 4.3.0 Mailbox busy, try later"))
    with pytest.raises(GatewayError) as err:
        adapter(port).send(plain())
    assert err.value.transient is True
    assert err.value.status == 451


def test_a_server_that_is_down_is_transient() -> None:
    with pytest.raises(GatewayError) as err:
        adapter(free_port(), username=USER, password=PASSWORD).send(plain())
    assert err.value.transient is True
    assert "127.0.0.1" in err.value.message
    assert PASSWORD not in err.value.message


def test_a_refused_login_is_not_transient_and_never_shows_the_password(
    smtp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = smtp_server(authenticator=authenticator, auth_require_tls=False)
    wrong = "wr0ng-" + PASSWORD
    with caplog.at_level(logging.DEBUG), pytest.raises(GatewayError) as err:
        adapter(port, username=USER, password=wrong).send(plain())
    assert err.value.transient is False
    assert err.value.status == 535
    assert "login" in err.value.message
    assert wrong not in err.value.message and wrong not in repr(err.value)
    assert wrong not in ours(caplog)


def test_a_server_echoing_the_password_has_it_scrubbed(smtp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, port = smtp_server(
        Collector(f"554 5.0.0 no thanks {PASSWORD}"), authenticator=authenticator, auth_require_tls=False
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(GatewayError) as err:
        adapter(port, username=USER, password=PASSWORD).send(plain())
    assert err.value.transient is False
    assert PASSWORD not in err.value.message
    assert "***" in err.value.message
    assert "***" in ours(caplog)
    assert PASSWORD not in ours(caplog)


def test_starttls_required_but_not_offered_is_a_configuration_error(smtp_server: Any) -> None:
    _, port = smtp_server()
    with pytest.raises(GatewayError) as err:
        adapter(port, starttls=True).send(plain())
    assert err.value.transient is False
    assert "STARTTLS" in err.value.message


def test_a_refused_recipient_is_not_transient(smtp_server: Any) -> None:
    class NoSuchUser(Collector):
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            return "550 5.1.1 No such user"

    handler, port = smtp_server(NoSuchUser())
    with pytest.raises(GatewayError) as err:
        adapter(port).send(plain(to="nobody@example.org"))
    assert err.value.transient is False
    assert "nobody@example.org" in err.value.message
    assert handler.received == []


def test_a_malformed_address_or_header_is_refused_before_connecting() -> None:
    mail = adapter(free_port())
    with pytest.raises(GatewayError) as err:
        mail.send(plain(to="not-an-address"))
    assert err.value.transient is False
    injected = plain()
    injected.subject = "Hi\nBcc: everyone@example.org"
    with pytest.raises(GatewayError) as err:
        mail.send(injected)
    assert err.value.transient is False


@pytest.mark.parametrize(
    "to",
    [
        "frontdesk,attacker@example.com",
        "ava@example.org, attacker@example.com",
        "ava@example.org;attacker@example.com",
        "Ava <ava@example.org>, attacker@example.com",
        "team: ava@example.org, attacker@example.com;",
        "ava@example.org\r\nattacker@example.com",
    ],
)
def test_one_email_goes_to_exactly_one_recipient(smtp_server: Any, to: str) -> None:
    collector, port = smtp_server()
    with pytest.raises(GatewayError) as err:
        adapter(port).send(plain(to=to))
    assert err.value.transient is False and "one address expected" in err.value.message
    assert collector.received == []
    adapter(port).send(plain(to="ava@example.org"))
    ((_sender, envelope, _msg),) = collector.received
    assert envelope == ["ava@example.org"]
