"""Chooses each gateway's implementation from the settings: sandbox (embedded default) or the real provider."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.errors import ConfigError
from services.gateways.base import CalendarGateway, MailGateway, PaymentsGateway
from services.settings import Settings


def build_gateways(
    settings: Settings, *, clock: Callable[[], datetime]
) -> tuple[PaymentsGateway, CalendarGateway, MailGateway]:
    from services.gateways.sandbox_calendar import SandboxCalendar
    from services.gateways.sandbox_mail import SandboxMail
    from services.gateways.sandbox_payments import SandboxPayments

    store = settings.sandbox_dir
    store.mkdir(parents=True, exist_ok=True)
    if settings.payments != "sandbox":
        raise ConfigError("PAYMENTS=stripe needs the Stripe adapter, which this version does not include yet")
    if settings.calendar != "sandbox":
        raise ConfigError("CALENDAR=google needs the Google Calendar adapter, which this version does not include yet")
    if settings.mail != "sandbox":
        raise ConfigError("MAIL=smtp is not available in this version yet")
    return (
        SandboxPayments(store, clock=clock),
        SandboxCalendar(store, clock=clock),
        SandboxMail(store, clock=clock),
    )
