"""Real mail over SMTP (stdlib smtplib): multipart text + HTML with attachments.

SMTP has no idempotency: a retry after a lost reply may deliver twice. The Message-ID is derived from the idempotency
key, so a retried message carries the same Message-ID and mail clients (and Gmail) treat the copies as one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr

from services.core.errors import GatewayError
from services.gateways.base import OutgoingEmail

PROVIDER = "smtp"
log = logging.getLogger(__name__)


class SmtpMail:
    """`MailGateway` over SMTP. Failures raise GatewayError: transient for connection problems and 4xx replies,
    not transient for 5xx rejections (a bad address, a refused login, a server that cannot STARTTLS)."""

    mode = "smtp"

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        from_address: str,
        timeout: float = 20.0,
        reply_to: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not parseaddr(from_address)[1]:
            raise ValueError("from_address must be an email address")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.starttls = starttls
        self.from_address = from_address
        self.timeout = timeout
        self.reply_to = reply_to
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpMail({self.host!r}, {self.port}, username={self.username!r}, starttls={self.starttls})"

    @property
    def _domain(self) -> str:
        return parseaddr(self.from_address)[1].rpartition("@")[2] or "roomdesk.invalid"

    @staticmethod
    def recipient(to: str) -> str | None:
        """The single address an email goes to, or None when `to` is not exactly one plain address (a list such as
        'frontdesk,attacker@example.com', a group, a display name hiding a second address)."""
        found = getaddresses([to])
        if len(found) != 1 or any(c in to for c in ",;\r\n"):
            return None
        address = found[0][1]
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain or address != to.strip():
            return None
        return address

    def message_id(self, idempotency_key: str | None) -> str:
        """`<hash-of-key@sender-domain>`: the same key always gives the same Message-ID."""
        if idempotency_key is None:
            return make_msgid(domain=self._domain)
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return f"<{digest}@{self._domain}>"

    def build(self, message: OutgoingEmail) -> EmailMessage:
        """The MIME message: multipart/alternative (text, HTML), inside multipart/mixed when there are attachments."""
        msg = EmailMessage()
        msg["From"] = self.from_address
        msg["To"] = message.to
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = message.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = self.message_id(message.idempotency_key)
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        for filename, mime, content in message.attachments:
            maintype, _, subtype = mime.partition("/")
            params = {"method": "PUBLISH"} if mime == "text/calendar" else {}
            msg.add_attachment(
                content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename, params=params
            )
        return msg

    def send(self, message: OutgoingEmail) -> str:
        """Deliver to the SMTP server and return the Message-ID (derived from the idempotency key)."""
        recipient = self.recipient(message.to)
        if recipient is None:
            raise GatewayError(
                f"Invalid recipient address {message.to!r}: one address expected",
                transient=False,
                provider=PROVIDER,
                status=400,
            )
        try:
            msg = self.build(message)
        except ValueError as exc:  # a header with a line break, an unparseable address
            raise GatewayError(
                f"The email cannot be sent as written: {exc}", transient=False, provider=PROVIDER, status=400
            ) from None
        where = f"mail server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self._password or "")
                # The envelope names exactly the one recipient: never whatever else a To header might be parsed into.
                smtp.send_message(msg, to_addrs=[recipient])
        except smtplib.SMTPNotSupportedError as exc:
            self._log(exc)
            missing = "STARTTLS" if "STARTTLS" in str(exc) else "AUTH"
            raise GatewayError(
                f"The {where} does not support {missing}: check the SMTP settings",
                transient=False,
                provider=PROVIDER,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            self._log(exc)
            codes = [code for code, _ in exc.recipients.values()]
            code = max(codes) if codes else 550
            detail = "; ".join(self._reply(c, m) for c, m in exc.recipients.values())
            raise GatewayError(
                f"The {where} refused the recipient {message.to}: {detail}",
                transient=code < 500,
                provider=PROVIDER,
                status=code,
            ) from None
        except smtplib.SMTPResponseException as exc:
            # Covers connect, HELO, AUTH (535), sender and DATA replies: 4xx = try later, 5xx = rejected for good.
            self._log(exc)
            what = "refused the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "refused the message"
            raise GatewayError(
                f"The {where} {what}: {self._reply(exc.smtp_code, exc.smtp_error)}",
                transient=exc.smtp_code < 500,
                provider=PROVIDER,
                status=exc.smtp_code,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            # Connection refused, timeout, TLS failure, server hung up: worth a retry.
            self._log(exc)
            raise GatewayError(
                f"Could not reach the {where} ({type(exc).__name__}); the email stays queued",
                transient=True,
                provider=PROVIDER,
            ) from None
        return str(msg["Message-ID"])

    def _reply(self, code: int, text: bytes | str) -> str:
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return self._scrub(f"{code} {' '.join(raw.split())}")[:300]

    def _scrub(self, text: str) -> str:
        """No password in a message or a log line, not even the base64 an AUTH exchange carries."""
        if not self._password:
            return text
        secrets = {self._password, base64.b64encode(self._password.encode()).decode()}
        if self.username:
            plain = f"\0{self.username}\0{self._password}".encode()
            secrets.add(base64.b64encode(plain).decode())
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def _log(self, exc: BaseException) -> None:
        log.warning("SMTP send via %s:%s failed: %s", self.host, self.port, self._scrub(repr(exc)))
