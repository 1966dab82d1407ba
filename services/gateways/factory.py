"""Chooses each gateway's implementation from the settings: sandbox (embedded default) or the real provider, and
wraps them read-only in audit mode."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.core.errors import ConfigError
from services.core.settings import Settings
from services.gateways.base import CalendarGateway, MailGateway, PaymentsGateway


def _real(module: str, cls: str) -> Any:
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"The {cls} adapter is not available in this version ({exc.__class__.__name__})") from None


def build_gateways(
    settings: Settings, *, clock: Callable[[], datetime], calendar_ids: list[str] | None = None
) -> tuple[PaymentsGateway, CalendarGateway, MailGateway]:
    from services.gateways.sandbox_calendar import SandboxCalendar
    from services.gateways.sandbox_mail import SandboxMail
    from services.gateways.sandbox_payments import SandboxPayments

    store = settings.sandbox_dir
    store.mkdir(parents=True, exist_ok=True)
    payments: PaymentsGateway
    calendar: CalendarGateway
    mail: MailGateway
    if settings.payments == "stripe":
        if settings.stripe_secret_key is None:
            raise ConfigError("PAYMENTS=stripe needs STRIPE_SECRET_KEY (see .streamlit/secrets.example.toml)")
        payments = _real("services.gateways.stripe_adapter", "StripePayments")(settings)
    else:
        payments = SandboxPayments(store, clock=clock, currency=settings.currency)
    if settings.calendar == "google":
        if settings.google_service_account_file is None:
            raise ConfigError("CALENDAR=google needs GOOGLE_SERVICE_ACCOUNT_FILE (a service-account key file)")
        calendar = _real("services.gateways.google_calendar", "GoogleCalendar")(
            settings, calendar_ids=list(calendar_ids or [])
        )
    else:
        calendar = SandboxCalendar(store, clock=clock)
    if settings.mail == "smtp":
        if not settings.smtp_host or not settings.mail_from:
            raise ConfigError("MAIL=smtp needs SMTP_HOST and MAIL_FROM (and SMTP_USERNAME/SMTP_PASSWORD if it logs in)")
        mail = _real("services.gateways.smtp_mail", "SmtpMail")(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            from_address=settings.mail_from,
            timeout=settings.gateway_timeout_seconds,
            reply_to=settings.mail_reply_to,
        )
    else:
        mail = SandboxMail(store, clock=clock)
    if settings.audit_mode:
        from services.gateways.readonly import ReadOnlyCalendar, ReadOnlyMail, ReadOnlyPayments

        return ReadOnlyPayments(payments), ReadOnlyCalendar(calendar), ReadOnlyMail(mail)
    return payments, calendar, mail
