"""Known secret values — the Stripe secret key, the webhook signing secret, the SMTP password and a Google
service-account private key — never appear anywhere a person or a log collector could read them: log records at
DEBUG (the stripe SDK's logger included), exception messages and reprs, API answers on the error paths (bad
signature, gateways down), CLI output, the settings' repr, and what the Settings page shows (health.modes and
check_connections). Every provider is real (stripe SDK, google-auth, smtplib) and points at closed loopback ports,
so every call fails the way an outage does."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time as wallclock
import traceback
from collections.abc import Iterator
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services import booking as bk
from services.core.context import build_services
from services.core.errors import DomainError
from services.core.settings import get_settings
from services.gateways.base import OutgoingEmail
from services.ops import cli, health
from services.reconciliation import sync
from services.web.api import create_app
from tests.fake_calendar.keys import generate_key, write_key_file
from tests.reliability.stats import COUNTS, FLOWS

STRIPE_KEY = "sk_test_51RELIABILITYsecretKeyValue0123456789abcdef"
WEBHOOK_SECRET = "whsec_RELIABILITYsigningSecret0123456789"
SMTP_PASSWORD = "smtp-RELIABILITY-pa55word-Zq9"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every setting in the environment, as in production; returns the secret strings to look for."""
    key = generate_key("reliability-secrets")
    key_file = write_key_file(tmp_path / "sa.json", key=key, token_uri=f"http://127.0.0.1:{closed_port()}/token")
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "PAYMENTS": "stripe",
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": f"http://127.0.0.1:{closed_port()}",
        "CALENDAR": "google",
        "GOOGLE_SERVICE_ACCOUNT_FILE": str(key_file),
        "GOOGLE_API_ROOT": f"http://127.0.0.1:{closed_port()}/",
        "MAIL": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(closed_port()),
        "SMTP_USERNAME": "desk@venue.example",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "MAIL_FROM": "Venue <desk@venue.example>",
        "GATEWAY_TIMEOUT_SECONDS": "3",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    pem_lines = [line for line in key.private_pem.splitlines() if len(line) >= 40 and "PRIVATE KEY" not in line]
    yield [STRIPE_KEY, STRIPE_KEY[8:32], WEBHOOK_SECRET, WEBHOOK_SECRET[6:30], SMTP_PASSWORD, *pem_lines]
    get_settings.cache_clear()


def no_backoff(svc: Any) -> Any:
    """The Google client's retries stay (they are the code path), its backoff sleeps go."""
    svc.calendar._sleep = lambda seconds: None
    return svc


def sign(payload: bytes, secret: str) -> str:
    t = int(wallclock.time())
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + payload, hashlib.sha256).hexdigest()}"


def texts_of(exc: BaseException) -> list[str]:
    out = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, DomainError):
        out.append(exc.message)
    return out


def test_no_secret_reaches_logs_errors_answers_cli_or_the_settings_page(
    live_settings: list[str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FLOWS.add("secrets")
    caplog.set_level(logging.DEBUG)
    for name in ("stripe", "roomdesk", "google", "googleapiclient", "urllib3", "httplib2", "smtplib"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []

    svc = no_backoff(build_services(get_settings()))
    monkeypatch.setattr(cli, "_services", lambda: no_backoff(build_services()))
    seen += [repr(svc.settings), str(svc.settings), svc.settings.model_dump_json(), repr(svc.payments)]
    seen += [f"{part}: {mode}" for part, mode in health.modes(svc)]
    checks = health.check_connections(svc)
    assert any(c.ok is False for c in checks)  # every connection is down: the error paths ran
    seen += [f"{c.area} {c.name} {c.detail}" for c in checks]

    # Every gateway's error path, straight.
    calls = [
        lambda: svc.payments.list_payment_intents(limit=1),
        lambda: svc.payments.retrieve_payment_intent("pi_123456789"),
        lambda: svc.payments.create_payment_intent(
            amount_cents=100, currency="cad", metadata={}, idempotency_key="k-1"
        ),
        lambda: svc.payments.refund("pi_123456789", amount_cents=100, reason="x", idempotency_key="k-2"),
        lambda: svc.calendar.list_events(svc.catalogue.rooms[0].calendar_id),
        lambda: svc.calendar.insert_event(svc.catalogue.rooms[0].calendar_id, {"id": "rdsecretprobe1"}),
        lambda: svc.mail.send(OutgoingEmail(to="ava@example.org", subject="Hi", text="Hello", idempotency_key="m1")),
        lambda: sync.sync(svc),
        lambda: bk.start_booking(
            svc,
            bk.BookingRequest(
                room="boardroom",
                dates=(date(2026, 3, 9),),
                start=time(10),
                end=time(12),
                customer_name="Ava",
                customer_email="ava@example.org",
            ),
            actor="customer",
        ),
    ]
    for call in calls:
        try:
            result = call()
            seen.append(repr(result))
        except Exception as exc:  # what any caller (a page, the API, the CLI) would see
            seen += texts_of(exc)

    # The API's error paths.
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    # A weekday inside the booking window, so the API really asks the (unreachable) calendar and answers 503.
    day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=7)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    body = {
        "room": "boardroom",
        "dates": [day.isoformat()],
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Ava",
        "customer_email": "ava@example.org",
        "terms_version": svc.settings.terms_version,
    }
    event = json.dumps(
        {"id": "evt_secret_probe", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_x"}}}
    ).encode()
    answers = [
        client.post("/api/bookings", json=body),
        client.post("/api/quotes", json={k: body[k] for k in ("room", "dates", "start", "end")}),
        client.get("/api/availability", params={"room": "boardroom", "from": day.isoformat(), "to": day.isoformat()}),
        client.post("/api/webhooks/stripe", content=event, headers={"Stripe-Signature": sign(event, "whsec_wrong")}),
        client.post("/api/webhooks/stripe", content=event, headers={"Stripe-Signature": sign(event, WEBHOOK_SECRET)}),
        client.post("/api/webhooks/stripe", content=b"not json", headers={"Stripe-Signature": "t=1,v1=00"}),
    ]
    assert {r.status_code for r in answers} >= {400, 503}, [(r.status_code, r.text) for r in answers]
    seen += [f"{r.status_code} {r.headers} {r.text}" for r in answers]
    client.close()
    svc.engine.dispose()

    # The CLI, as an operator runs it.
    for argv in (["-v", "sync"], ["-v", "reconcile"], ["-v", "expire-holds"], ["-v", "send-mail"]):
        try:
            cli.main(argv)
        except SystemExit:
            pass
        except Exception as exc:
            seen += texts_of(exc)
        out = capsys.readouterr()
        seen += [out.out, out.err]

    seen.append(caplog.text)
    for record in caplog.records:
        seen += [record.getMessage(), str(record.args), record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            seen += texts_of(record.exc_info[1])

    COUNTS["secret probes"] += len(seen) * len(live_settings)
    leaks = [(secret[:12] + "…", text[:300]) for text in seen for secret in live_settings if secret in text]
    assert not leaks, leaks
    loggers = {r.name.split(".")[0] for r in caplog.records}
    assert {"stripe", "roomdesk", "googleapiclient"} <= loggers, loggers  # the logs really were captured at DEBUG
