"""Narrow interfaces to the outside world: payments (Stripe), calendars (Google Calendar) and mail.

Objects cross these interfaces as plain dicts shaped like the providers' own JSON (a Stripe PaymentIntent, a Google
Calendar Event), so the sandbox, the real adapters and recorded fixtures are interchangeable. Every write takes an
idempotency key or a deterministic id; on failure a method raises a `services.core.errors.GatewayError` subclass whose
message is safe to show staff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict, runtime_checkable

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


class InvoiceLine(TypedDict):
    """One line of an invoice: becomes one Stripe invoice item."""

    description: str
    amount_cents: int
    tax_rate_ids: list[str]


# Stripe's limits on an invoice's custom fields (API reference: up to 4; name ≤ 30, value ≤ 140 characters).
INVOICE_CUSTOM_FIELDS_MAX = 4
INVOICE_CUSTOM_FIELD_NAME_MAX = 30
INVOICE_CUSTOM_FIELD_VALUE_MAX = 140


def check_invoice_request(
    lines: Sequence[InvoiceLine], days_until_due: int, custom_fields: Sequence[tuple[str, str]]
) -> list[dict[str, str]]:
    """Refuse, before anything is sent, what Stripe would refuse half way through building an invoice (or silently
    cut on the printed invoice); returns the custom fields as Stripe's `[{name, value}]`."""
    if not lines:
        raise _invoice_error("An invoice needs at least one line")
    for line in lines:
        amount = line.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise _invoice_error(f"An invoice line's amount must be a positive whole number of cents, not {amount!r}")
        if not str(line.get("description") or "").strip():
            raise _invoice_error("Every invoice line needs a description")
    if isinstance(days_until_due, bool) or not isinstance(days_until_due, int) or not 1 <= days_until_due <= 365:
        raise _invoice_error(f"Days until due must be a whole number from 1 to 365, not {days_until_due!r}")
    if len(custom_fields) > INVOICE_CUSTOM_FIELDS_MAX:
        raise _invoice_error(
            f"An invoice can carry at most {INVOICE_CUSTOM_FIELDS_MAX} custom fields, not {len(custom_fields)}"
        )
    out: list[dict[str, str]] = []
    for name, value in custom_fields:
        if not name.strip() or len(name) > INVOICE_CUSTOM_FIELD_NAME_MAX:
            raise _invoice_error(f"Invoice field name {name!r} must be 1 to {INVOICE_CUSTOM_FIELD_NAME_MAX} characters")
        if not value.strip() or len(value) > INVOICE_CUSTOM_FIELD_VALUE_MAX:
            raise _invoice_error(
                f"Invoice field {name!r} must have a value of 1 to {INVOICE_CUSTOM_FIELD_VALUE_MAX} characters"
            )
        out.append({"name": name, "value": value})
    return out


def check_tax_rate_bps(rate_bps: int) -> int:
    """A tax rate in basis points (500 = 5 %), 0 to 100 %, as Stripe's `percentage` allows."""
    if isinstance(rate_bps, bool) or not isinstance(rate_bps, int) or not 0 <= rate_bps <= 10_000:
        raise _invoice_error(f"A tax rate must be 0 to 10000 basis points, not {rate_bps!r}")
    return rate_bps


def line_tax(amount_cents: int, rate_bps: int) -> int:
    """Tax on one invoice line with an exclusive rate: amount × rate, rounded to the cent half up, per line and per
    rate (Stripe computes tax rates' amounts on each line item; localstripe rounds the same way)."""
    return (amount_cents * rate_bps + 5_000) // 10_000


def invoice_tax(invoice: Json) -> int:
    """The invoice's tax in cents: the sum of `total_taxes` (API 2025-03-31 and later have no `tax` field)."""
    return sum(int(t.get("amount") or 0) for t in invoice.get("total_taxes") or [])


def paid_invoice_payment_intent(payments: Sequence[Json]) -> str | None:
    """From an invoice's invoice payments (Stripe lists the newest first): the PaymentIntent of the one that paid,
    or None (none paid, or paid out of band). Since API 2025-03-31 an Invoice has no `payment_intent` field."""
    for payment in payments:
        target = payment.get("payment") or {}
        if payment.get("status") == "paid" and target.get("type") == "payment_intent":
            pi = target.get("payment_intent")
            return str(pi["id"] if isinstance(pi, dict) else pi) if pi else None
    return None


def _invoice_error(message: str) -> GatewayError:
    return GatewayError(message, transient=False, provider="payments", status=400)


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

    def retrieve_setup_intent(self, setup_intent_id: str) -> Json:
        """The SetupIntent as it is now (`status`, `payment_method`, `customer`, `metadata`). NotFound if absent."""
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

    # -- pay by invoice (issue 15) -----------------------------------------------------------------------------------

    def create_tax_rate(
        self, *, display_name: str, rate_bps: int, jurisdiction: str, idempotency_key: str, inclusive: bool = False
    ) -> Json:
        """A TaxRate (`txr_…`): `percentage` = rate_bps / 100 (500 → 5 %), exclusive unless `inclusive`. The same
        key returns the same TaxRate."""
        ...

    def create_invoice(
        self,
        *,
        customer: str,
        lines: Sequence[InvoiceLine],
        days_until_due: int,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
        custom_fields: Sequence[tuple[str, str]] = (),
        footer: str | None = None,
    ) -> Json:
        """A draft Invoice (`in_…`, collection_method `send_invoice`) in the gateway's currency with one invoice item
        per line; `subtotal`, per-line `taxes`, `total_taxes` and `total` in cents (tax per line, see `line_tax`).
        `custom_fields` (name, value) pairs are printed on the invoice (PO number, GST number): at most 4, names up to
        30 and values up to 140 characters, else GatewayError 400 before anything is sent. The same key returns the
        same Invoice."""
        ...

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Draft → `open`: it gets a `number`, a `hosted_invoice_url` (where the customer pays) and `amount_due`.
        An invoice no longer a draft is returned as it is."""
        ...

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Have Stripe email the invoice to the customer (open: to pay; paid: as a copy). A draft or void invoice
        raises InvalidState."""
        ...

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Open → `void`: it can no longer be paid. Voiding twice returns it unchanged; a paid invoice, or a draft
        (delete it instead, as Stripe says), raises InvalidState."""
        ...

    def retrieve_invoice(self, invoice_id: str) -> Json:
        """The Invoice with its `lines`. NotFound if absent."""
        ...

    def list_invoices(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """A Stripe list object of Invoices, newest first."""
        ...

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid the invoice (refunds go back on it), or None: not paid, or paid out of band.
        NotFound for an unknown invoice."""
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
