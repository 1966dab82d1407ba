"""Connection checks for the Settings page: which mode each gateway is in, and whether each connection works — the
Stripe key is accepted, each room calendar can be read and written, the webhook secret is set. And the background
worker's health for the Overview (read only)."""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.tables import WorkerStatus
from services.core.context import Services
from services.core.errors import DomainError, GatewayError


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    ok: bool | None  # None: not checked (e.g. writes in audit mode)
    detail: str


def modes(svc: Services) -> list[tuple[str, str]]:
    """What each part of the system is connected to (never a secret's value)."""
    s = svc.settings
    return [
        ("Payments", svc.payments.mode),
        ("Calendars", svc.calendar.mode),
        ("Mail", svc.mail.mode),
        ("Database", svc.engine.dialect.name),
        ("Audit mode (read-only)", "on" if s.audit_mode else "off"),
        ("Stripe secret key", "set" if s.stripe_secret_key else "not set"),
        ("Stripe webhook secret", "set" if s.stripe_webhook_secret else "not set"),
        (
            "Service-account key file",
            s.google_service_account_file.name if s.google_service_account_file else "not set",
        ),
    ]


def check_connections(svc: Services, *, progress: Callable[[float, str], None] | None = None) -> list[Check]:
    """Try each connection for real; every problem is a sentence an admin can act on."""
    progress = progress or (lambda _f, _m: None)
    out: list[Check] = []
    rooms = list(svc.catalogue.rooms)
    steps = 2 + len(rooms)
    progress(0.0, "Stripe")
    try:
        svc.payments.list_payment_intents(limit=1)
        out.append(Check("Stripe", "API key", True, f"Accepted ({svc.payments.mode})"))
    except DomainError as exc:
        out.append(Check("Stripe", "API key", False, exc.message))
    if svc.settings.payments == "stripe":
        ok = svc.settings.stripe_webhook_secret is not None
        out.append(
            Check(
                "Stripe",
                "Webhook secret",
                ok,
                "Set"
                if ok
                else "Set STRIPE_WEBHOOK_SECRET from the "
                "Stripe dashboard's webhook endpoint, or payments will never be confirmed",
            )
        )
    else:
        out.append(Check("Stripe", "Webhook secret", None, "Not needed in sandbox"))
    now = svc.now()
    for i, room in enumerate(rooms, start=1):
        progress(i / steps, room.name)
        try:
            svc.calendar.list_events(room.calendar_id, time_min=now, time_max=now + timedelta(days=1))
            out.append(Check(room.name, "Calendar readable", True, room.calendar_id))
        except DomainError as exc:
            out.append(Check(room.name, "Calendar readable", False, exc.message))
            continue
        if svc.settings.audit_mode:
            out.append(Check(room.name, "Calendar writable", None, "Not tried: audit mode writes nothing"))
            continue
        probe_id = "rdprobe" + _secrets.token_hex(8)  # a fresh id: Google refuses a deleted event's id forever
        probe = {
            "id": probe_id,
            "summary": "Room Desk connection check (deleted at once)",
            "transparency": "transparent",
            "start": {"dateTime": (now + timedelta(days=400)).isoformat()},
            "end": {"dateTime": (now + timedelta(days=400, minutes=5)).isoformat()},
        }
        try:
            svc.calendar.insert_event(room.calendar_id, probe)
            svc.calendar.delete_event(room.calendar_id, probe_id)
            out.append(Check(room.name, "Calendar writable", True, "Created and deleted a test event"))
        except GatewayError as exc:
            out.append(Check(room.name, "Calendar writable", False, exc.message))
    progress(1.0, "done")
    return out


@dataclass(frozen=True)
class WorkerHealth:
    """What the Overview says about the background worker."""

    ok: bool  # False: it never ran, or its last round failed
    text: str
    last_ok_at: datetime | None
    failures_in_a_row: int


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 86400} days ago"


def worker_health(svc: Services, name: str = "worker") -> WorkerHealth:
    """The worker's last successful round, or since when and how often it has been failing (reads one row)."""
    with svc.read_session() as s:
        row = s.get(WorkerStatus, name)
        if row is None or row.last_round_at is None:
            return WorkerHealth(False, "Worker: never ran", None, 0)
        last_ok, failures, error, round_at = row.last_ok_at, row.failures_in_a_row, row.last_error, row.last_round_at
    now = svc.now()
    if failures == 0 and last_ok is not None:
        return WorkerHealth(True, f"Worker: last successful round {_ago(now, last_ok)}", last_ok, 0)
    since = f"last success {_ago(now, last_ok)}" if last_ok is not None else "never succeeded"
    text = f"Worker: failing ({since}), {failures} round(s) in a row; last try {_ago(now, round_at)}: {error or '?'}"
    return WorkerHealth(False, text, last_ok, failures)
