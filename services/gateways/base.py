"""Narrow interfaces to the outside world: payments (Stripe), calendars (Google Calendar) and mail.

Objects cross these interfaces as plain dicts shaped like the providers' own JSON (a Stripe PaymentIntent, a Google
Calendar Event), so the sandbox, the real adapters and recorded fixtures are interchangeable. Every write takes an
idempotency key or a deterministic id; on failure a method raises a `services.core.errors.GatewayError` subclass whose
message is safe to show staff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from services.core.errors import GatewayError

Json = dict[str, Any]


def all_pages(fetch: Callable[[str | None], Json]) -> list[Json]:
    """Every item of a Stripe-style list, following `starting_after` while `has_more`; `fetch(after)` gets a page."""
    out: list[Json] = []
    after: str | None = None
    while True:
        page = fetch(after)
        data = page.get("data") or []
        out.extend(data)
        if not page.get("has_more") or not data:
            return out
        after = data[-1]["id"]


@runtime_checkable
class PaymentsGateway(Protocol):
    """Stripe-shaped payments. Amounts are integer cents; `metadata` values are strings."""

    mode: str

    def create_payment_intent(
        self, *, amount_cents: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> Json:
        """Create a PaymentIntent (status `requires_payment_method`) and return it, with `client_secret`.

        The same idempotency key returns the same PaymentIntent instead of creating a second one."""
        ...

    def confirm_payment_intent(self, payment_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Confirm with a payment method; on success status is `succeeded`. A declined card raises PaymentDeclined."""
        ...

    def retrieve_payment_intent(self, payment_intent_id: str) -> Json:
        """The PaymentIntent with `latest_charge` expanded (None without a charge). NotFound if absent."""
        ...

    def list_payment_intents(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """A Stripe list object (`data`, `has_more`), newest first, paged with `starting_after`."""
        ...

    def cancel_payment_intent(self, payment_intent_id: str, *, idempotency_key: str) -> Json:
        """Cancel an unpaid PaymentIntent (status `canceled`). Cancelling twice returns it unchanged.

        Raises InvalidState if it already succeeded."""
        ...

    def refund(
        self,
        payment_intent_id: str,
        *,
        amount_cents: int,
        reason: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> Json:
        """Refund part or all of a succeeded payment; returns the Refund. The same key never refunds twice.

        Raises InvalidState when the amount exceeds what remains refundable."""
        ...

    def list_refunds(
        self, *, payment_intent_id: str | None = None, limit: int = 100, starting_after: str | None = None
    ) -> Json:
        """A Stripe list object of Refunds, newest first."""
        ...

    def list_disputes(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """A Stripe list object of Disputes, newest first."""
        ...

    def list_charges(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """A Stripe list object of Charges, newest first."""
        ...

    def list_events(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """A Stripe list object of Events (`type`, `created`, `data.object`), newest first: what sync follows."""
        ...

    def submit_dispute_evidence(self, dispute_id: str, evidence: dict[str, str], submit: bool) -> Json:
        """Add evidence fields (Stripe's names) to a dispute; with `submit`, send them to the bank (once)."""
        ...

    def list_balance_transactions(
        self,
        *,
        created_gte: datetime | None = None,
        created_lt: datetime | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Json:
        """Balance transactions (charges, refunds, fees, disputes; `reporting_category`), newest first, created in
        [created_gte, created_lt)."""
        ...

    # -- saved cards and deposit holds (issue 15) ------------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """Create a Customer (`cus_…`) a card can be saved to. The same key returns the same Customer."""
        ...

    def create_setup_intent(
        self, *, customer: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """A SetupIntent (`seti_…`, usage `off_session`, card only, status `requires_payment_method`) that saves the
        customer's card for charging later without them. The same key returns the same SetupIntent."""
        ...

    def confirm_setup_intent(self, setup_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Confirm with a card (a test payment method in the sandbox and tests): status `succeeded` and
        `payment_method` the saved card's id (`pm_…`), to pass to `create_deposit_hold`. Confirming again returns it
        unchanged. A card refused when saving raises PaymentDeclined."""
        ...

    def create_deposit_hold(
        self,
        *,
        customer: str,
        payment_method: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> Json:
        """Authorise `amount` cents on the saved card without the customer (manual-capture PaymentIntent, confirmed
        off session): status `requires_capture`, `amount_capturable` = amount. A declined card raises
        PaymentDeclined. The same key returns the same PaymentIntent. Release it with `cancel_payment_intent`."""
        ...

    def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int | None = None, idempotency_key: str
    ) -> Json:
        """Take all (None) or part of a hold: status `succeeded`, `amount_received` = what was taken, the rest
        released. More than the hold raises InvalidState. As on Stripe, the same key returns the captured
        PaymentIntent again; capturing an already captured (or released) hold under another key raises InvalidState."""
        ...


@runtime_checkable
class CalendarGateway(Protocol):
    """Google-Calendar-shaped events on per-room calendars. Times are RFC 3339 strings in the event dicts."""

    mode: str

    def insert_event(self, calendar_id: str, event: Json) -> Json:
        """Insert `event` (which carries its own deterministic `id`) and return it.

        An id that exists, or existed and was deleted, raises EventExists (HTTP 409)."""
        ...

    def get_event(self, calendar_id: str, event_id: str) -> Json | None:
        """The event (deleted ones come back with status `cancelled`), or None if it never existed."""
        ...

    def patch_event(self, calendar_id: str, event_id: str, patch: Json) -> Json:
        """Merge `patch` into the event and return it. NotFound if absent or deleted."""
        ...

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete the event. Already deleted (410) or never existing (404) counts as done."""
        ...

    def list_events(
        self,
        calendar_id: str,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        private_property: str | None = None,
        sync_token: str | None = None,
        page_token: str | None = None,
        show_deleted: bool = False,
    ) -> Json:
        """An events list response: `items`, and `nextPageToken` or (last page) `nextSyncToken`.

        With `sync_token`, only events changed since (deleted ones as `cancelled`); an expired token raises
        GatewayError with `status == 410`."""
        ...

    def insert_events(self, calendar_id: str, events: list[Json]) -> list[Json | GatewayError]:
        """Insert several events in one round trip (Google: one batch request). Returns, in order, each inserted
        event or the GatewayError (EventExists for 409) that event met; never raises for a single event's failure."""
        ...

    def delete_events(self, calendar_id: str, event_ids: list[str]) -> list[GatewayError | None]:
        """Delete several events in one round trip. Returns, in order, None where the event is gone (404/410 count
        as done) or the GatewayError it met."""
        ...

    def freebusy(self, calendar_ids: list[str], time_min: datetime, time_max: datetime) -> dict[str, list[Json]]:
        """Busy intervals per calendar: {calendar_id: [{"start": iso, "end": iso, "event_id": id}]}.

        (`event_id` is an extension the sandbox and adapters add by listing events, so Gate 2 can ignore the
        booking's own events.)"""
        ...


@dataclass
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str | None = None
    kind: str = "other"
    booking_id: int | None = None
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (filename, mime type, content)
    idempotency_key: str | None = None


@runtime_checkable
class MailGateway(Protocol):
    """Outgoing mail."""

    mode: str

    def send(self, message: OutgoingEmail) -> str:
        """Send and return a message id. The same idempotency key sends once and returns the first id."""
        ...
