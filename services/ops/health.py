"""Connection checks for the Settings page: which mode each gateway is in, and whether each connection works — the
Stripe key is accepted, each room calendar can be read and written, the webhook secret is set."""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

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
