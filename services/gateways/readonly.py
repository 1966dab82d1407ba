"""Audit mode: live reads from the real Stripe account and calendars, no writes anywhere. A venue points the
dashboard at its real data and sees the findings before switching the booking flow over."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.core.errors import GatewayError
from services.gateways.base import CalendarGateway, Json, MailGateway, OutgoingEmail, PaymentsGateway

REFUSED = "Audit mode: Room Desk is read-only here, so nothing was changed in {what}"


def _refuse(what: str) -> GatewayError:
    return GatewayError(REFUSED.format(what=what), transient=False, provider="audit", status=403)


class ReadOnlyPayments:
    """Reads go to the real gateway; every write is refused before it leaves the process."""

    def __init__(self, inner: PaymentsGateway) -> None:
        self.inner = inner
        self.mode = f"{inner.mode} (read-only)"

    def __getattr__(self, name: str) -> Any:  # list_* / retrieve_* and adapter extras that only read
        if name.startswith(("list_", "retrieve_")):
            return getattr(self.inner, name)
        raise AttributeError(name)

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        return self.inner.invoice_payment_intent(invoice_id)

    def create_payment_intent(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def confirm_payment_intent(self, payment_intent_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def cancel_payment_intent(self, payment_intent_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def refund(self, payment_intent_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def submit_dispute_evidence(self, dispute_id: str, evidence: dict[str, str], submit: bool) -> Json:
        raise _refuse("Stripe")

    def create_customer(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def create_setup_intent(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def confirm_setup_intent(self, setup_intent_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def create_deposit_hold(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def capture_payment_intent(self, payment_intent_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def create_tax_rate(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def create_invoice(self, **_: Any) -> Json:
        raise _refuse("Stripe")

    def finalize_invoice(self, invoice_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def send_invoice(self, invoice_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")

    def void_invoice(self, invoice_id: str, **_: Any) -> Json:
        raise _refuse("Stripe")


class ReadOnlyCalendar:
    def __init__(self, inner: CalendarGateway) -> None:
        self.inner = inner
        self.mode = f"{inner.mode} (read-only)"

    def get_event(self, calendar_id: str, event_id: str) -> Json | None:
        return self.inner.get_event(calendar_id, event_id)

    def list_events(self, calendar_id: str, **kwargs: Any) -> Json:
        return self.inner.list_events(calendar_id, **kwargs)

    def freebusy(self, calendar_ids: list[str], time_min: datetime, time_max: datetime) -> dict[str, list[Json]]:
        return self.inner.freebusy(calendar_ids, time_min, time_max)

    def insert_event(self, calendar_id: str, event: Json) -> Json:
        raise _refuse("the room calendars")

    def insert_events(self, calendar_id: str, events: list[Json]) -> list[Json | GatewayError]:
        raise _refuse("the room calendars")

    def patch_event(self, calendar_id: str, event_id: str, patch: Json) -> Json:
        raise _refuse("the room calendars")

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        raise _refuse("the room calendars")

    def delete_events(self, calendar_id: str, event_ids: list[str]) -> list[GatewayError | None]:
        raise _refuse("the room calendars")


class ReadOnlyMail:
    def __init__(self, inner: MailGateway) -> None:
        self.inner = inner
        self.mode = f"{inner.mode} (read-only)"

    def send(self, message: OutgoingEmail) -> str:
        raise _refuse("anyone's inbox")
