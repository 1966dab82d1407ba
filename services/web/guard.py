"""What the public endpoints check before any booking work (issue 13): who the client is (a keyed hash of its
address, never the address), how often it may ask (rate limits from the `limits` library, in memory: one process),
how large a body may be (cut off while it streams in, before it is buffered), and, when the venue turns it on, a
challenge (Cloudflare Turnstile or hCaptcha) verified server-side.

The booking service enforces the limit on unpaid holds itself (services.booking.web_holds); this module only feeds it
the client key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.errors import DomainError, GatewayError
from services.core.settings import Settings

log = logging.getLogger("roomdesk.guard")

SALT_FILE = "client-key.salt"
WEBHOOK_PREFIX = "/api/webhooks/"
VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
WIDGETS = {  # (script, the div's class, the form field the widget fills in)
    "turnstile": ("https://challenges.cloudflare.com/turnstile/v0/api.js", "cf-turnstile", "cf-turnstile-response"),
    "hcaptcha": ("https://js.hcaptcha.com/1/api.js", "h-captcha", "h-captcha-response"),
}
CHALLENGE_TIMEOUT_SECONDS = 10.0


# --------------------------------------------------------------------------------------------------- the client


def client_address(request: Request, *, trust_forwarded_for: bool) -> str:
    """The client's address: the first X-Forwarded-For hop behind a trusted proxy, else the socket's peer."""
    if trust_forwarded_for:
        first = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else "unknown"


def installation_salt(data_dir: Path) -> bytes:
    """The random per-installation key of the client hash: created once (0600) under DATA_DIR, then reused."""
    path = data_dir / SALT_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it a moment ago
        return bytes.fromhex(path.read_text().strip())
    salt = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(salt.hex())
    return salt


def client_key(salt: bytes, address: str) -> str:
    """HMAC-SHA256 of the address (64 hex characters): the same client always gets the same key, and the key does
    not give the address back without the salt."""
    return hmac.new(salt, address.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class Refusal:
    limit: str  # as configured, e.g. "10 per 1 minute"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        return f"Too many requests from your address (limit: {self.limit}). Please try again in {self.retry_after} s."

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimits:
    """Named rate limits per client address, counted in this process (moving window). Served by `processes` API
    worker processes, each counts its own share of every limit (rounded up, at least one): a client's requests are
    spread over the workers, so together they allow about the configured limit, and never more than that per worker
    when one client's connection stays with one."""

    def __init__(self, rules: dict[str, str], *, processes: int = 1) -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, list[RateLimitItem]] = {
            name: [_share(item, processes) for item in parse_many(spec)] for name, spec in rules.items()
        }

    def hit(self, name: str, address: str) -> Refusal | None:
        """Count one request; a Refusal when one of the rule's limits is already used up."""
        for item in self._rules.get(name, []):
            if not self._limiter.hit(item, name, address):
                reset, _ = self._limiter.get_window_stats(item, name, address)
                return Refusal(str(item), max(1, int(reset - time.time()) + 1))
        return None


def _share(item: RateLimitItem, processes: int) -> RateLimitItem:
    """One process's share of a limit: '60/hour' over 4 workers is 15 per hour in each."""
    if processes <= 1:
        return item
    return type(item)(max(1, math.ceil(item.amount / processes)), item.multiples, item.namespace)


class RateLimited(HTTPException):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(status_code=429, detail=refusal.message, headers=refusal.headers)


# --------------------------------------------------------------------------------------------------- challenge


class ChallengeFailed(DomainError):
    """The challenge token is missing or the provider did not accept it."""


class ChallengeUnavailable(GatewayError):
    """The challenge provider could not be reached; nothing was booked."""


def challenge_widget(settings: Settings) -> dict[str, str] | None:
    """What the booking form renders for the configured challenge (None when off)."""
    if not settings.challenge:
        return None
    script, css_class, field = WIDGETS[settings.challenge]
    return {"script": script, "class": css_class, "field": field, "site_key": settings.challenge_site_key or ""}


def verify_challenge(settings: Settings, token: str | None, address: str) -> None:
    """Nothing when the challenge is off or the provider accepts the token; ChallengeFailed / ChallengeUnavailable."""
    if not settings.challenge:
        return
    if not token or len(token) > 4096:
        raise ChallengeFailed("challenge_token: please complete the check that you are not a robot")
    secret = settings.challenge_secret.get_secret_value() if settings.challenge_secret else ""
    url = settings.challenge_verify_url or VERIFY_URLS[settings.challenge]
    if not url.startswith(("https://", "http://")):
        raise ChallengeUnavailable("The anti-robot check is not configured correctly", transient=False)
    data = urllib.parse.urlencode({"secret": secret, "response": token, "remoteip": address}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (http(s) only, checked above)
    try:
        with urllib.request.urlopen(req, timeout=CHALLENGE_TIMEOUT_SECONDS) as resp:  # noqa: S310 (configured URL)
            answer: Any = json.loads(resp.read(65_536) or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("Challenge provider %s unreachable: %s", settings.challenge, type(exc).__name__)
        raise ChallengeUnavailable(
            "The anti-robot check could not be reached; nothing was booked. Please try again shortly.", transient=True
        ) from None
    if not isinstance(answer, dict) or answer.get("success") is not True:
        raise ChallengeFailed("challenge_token: the check that you are not a robot failed; please try again")


# --------------------------------------------------------------------------------------------------- body size


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"The request body is larger than {limit} bytes")


class BodySizeLimit:
    """ASGI middleware: a body over the limit (JSON API and forms: max_json_body_bytes; the Stripe webhook:
    max_webhook_body_bytes) answers 413. A Content-Length over the limit is refused before anything is read; a body
    without one (chunked) is counted as it streams in and cut off at limit + 1 bytes, so it is never buffered."""

    def __init__(self, app: ASGIApp, *, json_limit: int, webhook_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.webhook_limit = webhook_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.webhook_limit if str(scope.get("path", "")).startswith(WEBHOOK_PREFIX) else self.json_limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                too_large = False
            if too_large:
                await _refuse(send, limit)
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------------------------------- per app


class PublicGuard:
    """One app's limits: its rate-limit counters and the installation's client-key salt."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = RateLimits(
            {"bookings": settings.rate_limit_bookings, "reads": settings.rate_limit_reads},
            processes=settings.api_workers,
        )
        self._salt: bytes | None = None

    def address(self, request: Request) -> str:
        return client_address(request, trust_forwarded_for=self.settings.trust_forwarded_for)

    def client_key(self, request: Request) -> str:
        if self._salt is None:
            self._salt = installation_salt(self.settings.data_dir)
        return client_key(self._salt, self.address(request))

    def hit(self, name: str, request: Request) -> Refusal | None:
        return self.limits.hit(name, self.address(request))

    def check(self, name: str, request: Request) -> None:
        """Raise RateLimited (429 with Retry-After) when the client has used up the named limit."""
        refusal = self.hit(name, request)
        if refusal is not None:
            raise RateLimited(refusal)
