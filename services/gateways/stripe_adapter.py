"""Stripe through the official SDK (`stripe.StripeClient`): the real `PaymentsGateway`.

Everything crossing this module is a plain dict shaped like Stripe's JSON, with the same shapes as the sandbox:
PaymentIntents carry `latest_charge` as an id (expanded to the Charge only by `retrieve_payment_intent`), lists are
Stripe list objects in Stripe's order (newest first). Every write sends an idempotency key: the caller's, or one derived
from the object and its state where the Protocol gives none. SDK errors become `services.core.errors` with a message
safe to show staff; the original is logged, and the secret key never appears in either.

Tested against localstripe (a Stripe look-alike run as a separate process, see tests/README.md). The few `setdefault`
calls in `_normalise` fill fields Stripe always sends and localstripe omits; on Stripe they change nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import stripe
from stripe.params import (
    BalanceTransactionListParams,
    ChargeListParams,
    CustomerCreateParams,
    DisputeListParams,
    DisputeUpdateParams,
    EventListParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
    InvoiceListParams,
    PaymentIntentCaptureParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    RefundCreateParams,
    RefundListParams,
    SetupIntentCreateParams,
    TaxRateCreateParams,
)

from services.core.errors import (
    ConfigError,
    DomainError,
    GatewayError,
    InvalidState,
    NotFound,
    PaymentDeclined,
    TimeoutFault,
)
from services.core.settings import Settings
from services.gateways.base import (
    InvoiceLine,
    Json,
    check_invoice_request,
    check_tax_rate_bps,
    paid_invoice_payment_intent,
)

log = logging.getLogger(__name__)

PROVIDER = "payments"
MAX_NETWORK_RETRIES = 2  # the SDK retries connection errors, 409 and 5xx, re-sending the same idempotency key
# Refund metadata key holding the caller's idempotency key: Stripe forgets keys after 24 hours, the refund does not.
REFUND_KEY_FIELD = "idempotency_key"
# Stripe error codes meaning "not allowed from the object's current state" rather than "malformed request".
_STATE_CODES = frozenset(
    {
        "payment_intent_unexpected_state",
        "charge_already_refunded",
        "charge_disputed",
        "amount_too_large",  # refund larger than what remains on the charge
        "charge_exceeds_source_limit",
        "invoice_not_editable",
        "invoice_unexpected_state",  # hypothetical future code; Stripe mostly answers a plain 400 (re-read below)
    }
)
_KEY_LIKE = re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z_]{4,}")


class StripePayments:
    """`PaymentsGateway` on the Stripe API (or a Stripe-compatible test server at `settings.stripe_api_base`)."""

    mode = "stripe"

    def __init__(self, settings: Settings, *, http_client: stripe.HTTPClient | None = None) -> None:
        """`http_client` is a test seam (recorded responses without a network); by default the SDK's requests
        client with `settings.gateway_timeout_seconds`."""
        secret = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else ""
        if not secret:
            raise ConfigError("PAYMENTS=stripe needs STRIPE_SECRET_KEY (a secret key from the Stripe dashboard)")
        self._secret = settings.stripe_secret_key  # a SecretStr: its repr is masked
        self.currency = settings.currency.lower()  # invoices are in the venue's currency
        self.api_base = settings.stripe_api_base.rstrip("/") if settings.stripe_api_base else None
        self._client = stripe.StripeClient(
            secret,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=MAX_NETWORK_RETRIES,
            http_client=http_client or _http_client(self.api_base, settings.gateway_timeout_seconds),
        )
        self._v1 = self._client.v1

    def __repr__(self) -> str:
        return f"StripePayments(api_base={self.api_base or 'https://api.stripe.com'!r})"

    # -- PaymentsGateway -------------------------------------------------------------------------------------------

    def create_payment_intent(
        self, *, amount_cents: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> Json:
        """Create a card PaymentIntent; Stripe replays the first response for a key it has seen (for 24 hours)."""
        params: PaymentIntentCreateParams = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "metadata": dict(metadata),
            # Since API version 2026-09-30.endive (stripe 16 pins 2026-10-28.endive) Stripe refuses
            # `payment_method_types` on create; `allowed_payment_method_types` replaces it and, card only, keeps
            # server-side confirm free of redirects (no `return_url` needed).
            "allowed_payment_method_types": ["card"],
        }
        key = _checked_key(idempotency_key)
        pi = self._call(
            "create the payment",
            lambda: self._v1.payment_intents.create(params=params, options={"idempotency_key": key}),
        )
        return _normalise(pi)

    def confirm_payment_intent(self, payment_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Attach `payment_method` to the PaymentIntent, then confirm it; a decline raises PaymentDeclined.

        Two calls (update, then confirm without parameters) rather than `confirm(payment_method=…)`: Stripe treats
        both the same, and the test server (localstripe) only supports this form. The keys derive from the
        PaymentIntent, its latest charge and the payment method, so a network retry replays the same attempt while a
        new attempt after a decline (a new latest charge) gets fresh keys."""
        pi = self._retrieve(payment_intent_id, expand=False)
        status = pi.get("status")
        if status == "succeeded":
            return pi  # already paid: confirming again would be refused
        if status == "canceled":
            raise InvalidState(f"Payment {payment_intent_id} was cancelled and can no longer be paid")
        if status not in ("requires_payment_method", "requires_confirmation"):
            return pi  # requires_action / processing / requires_capture: the customer or Stripe moves it on
        attempt = pi.get("latest_charge") or "first"
        key = f"roomdesk-confirm-{payment_intent_id}-{attempt}-{payment_method}"
        missing = f"No such payment or payment method: {payment_intent_id}, {payment_method}"
        self._call(
            f"attach a payment method to payment {payment_intent_id}",
            lambda: self._v1.payment_intents.update(
                payment_intent_id,
                params={"payment_method": payment_method},
                options={"idempotency_key": key + "-attach"},
            ),
            missing=missing,
        )
        confirmed = self._call(
            f"confirm payment {payment_intent_id}",
            lambda: self._v1.payment_intents.confirm(payment_intent_id, options={"idempotency_key": key}),
            missing=missing,
        )
        return _normalise(confirmed)

    def retrieve_payment_intent(self, payment_intent_id: str) -> Json:
        """The PaymentIntent with `latest_charge` expanded to the Charge dict (None before any charge)."""
        return self._retrieve(payment_intent_id, expand=True)

    def list_payment_intents(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """PaymentIntents as a Stripe list object, newest first."""
        params: PaymentIntentListParams = {"limit": _checked_limit(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        return self._list("list payments", lambda: self._v1.payment_intents.list(params=params), starting_after)

    def cancel_payment_intent(self, payment_intent_id: str, *, idempotency_key: str) -> Json:
        """Cancel an unpaid PaymentIntent. Already cancelled: returned as it is. Already paid: InvalidState."""
        key = _checked_key(idempotency_key)
        try:
            return _normalise(
                self._call(
                    f"cancel payment {payment_intent_id}",
                    lambda: self._v1.payment_intents.cancel(payment_intent_id, options={"idempotency_key": key}),
                    missing=f"No such payment: {payment_intent_id}",
                )
            )
        except (GatewayError, InvalidState) as exc:
            if isinstance(exc, GatewayError) and exc.status != 400:
                raise
            # Stripe refuses to cancel from `canceled` or `succeeded` (payment_intent_unexpected_state): find which.
            current = self._retrieve(payment_intent_id, expand=False)
            if current.get("status") == "canceled":
                return current
            if current.get("status") == "succeeded":
                raise InvalidState(
                    f"Payment {payment_intent_id} has already been paid; refund it instead of cancelling"
                ) from None
            raise

    def refund(
        self,
        payment_intent_id: str,
        *,
        amount_cents: int,
        reason: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> Json:
        """Refund part or all of a succeeded payment and return the Refund.

        Our free-text reason goes in metadata["reason"] (Stripe's `reason` is an enum: always
        `requested_by_customer`), with the idempotency key beside it. Before creating, the payment's refunds are
        searched for that key, so a retry returns the first Refund even after Stripe's 24-hour key window; and the
        amount is checked against what remains on the charge (InvalidState if larger)."""
        key = _checked_key(idempotency_key)
        refund_metadata = {**(metadata or {}), "reason": reason, REFUND_KEY_FIELD: key}
        pi = self._retrieve(payment_intent_id, expand=True)
        charge = pi.get("latest_charge")
        if pi.get("status") != "succeeded" or not isinstance(charge, dict):
            raise InvalidState(
                f"Payment {payment_intent_id} has not been paid (status {pi.get('status')}); nothing to refund"
            )
        earlier = self._refund_with_key(payment_intent_id, key)
        if earlier is not None:
            if earlier.get("amount") != amount_cents:
                raise GatewayError(
                    f"Idempotency key {key!r} was already used for a refund of {earlier.get('amount')} cents",
                    transient=False,
                    provider=PROVIDER,
                    status=400,
                )
            return earlier
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
            raise InvalidState(f"A refund must be a positive whole number of cents, not {amount_cents!r}")
        remaining = int(charge.get("amount_captured") or 0) - int(charge.get("amount_refunded") or 0)
        if amount_cents > remaining:
            raise InvalidState(
                f"Refund of {amount_cents} cents exceeds the {remaining} cents still refundable "
                f"on payment {payment_intent_id}"
            )
        params: RefundCreateParams = {
            "payment_intent": payment_intent_id,
            "amount": amount_cents,
            "reason": "requested_by_customer",
            "metadata": refund_metadata,
        }
        refund = self._call(
            f"refund payment {payment_intent_id}",
            lambda: self._v1.refunds.create(params=params, options={"idempotency_key": key}),
            missing=f"No such payment: {payment_intent_id}",
        )
        return _normalise(refund)

    def list_refunds(
        self, *, payment_intent_id: str | None = None, limit: int = 100, starting_after: str | None = None
    ) -> Json:
        """Refunds as a Stripe list object, newest first, optionally for one PaymentIntent."""
        params: RefundListParams = {"limit": _checked_limit(limit)}
        if payment_intent_id:
            params["payment_intent"] = payment_intent_id
        if starting_after:
            params["starting_after"] = starting_after
        return self._list("list refunds", lambda: self._v1.refunds.list(params=params), starting_after)

    def list_disputes(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Disputes as a Stripe list object, newest first."""
        params: DisputeListParams = {"limit": _checked_limit(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        return self._list("list disputes", lambda: self._v1.disputes.list(params=params), starting_after)

    def list_charges(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Charges as a Stripe list object, newest first."""
        params: ChargeListParams = {"limit": _checked_limit(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        return self._list("list charges", lambda: self._v1.charges.list(params=params), starting_after)

    def list_events(self, *, limit: int = 100, starting_after: str | None = None, type: str | None = None) -> Json:
        """Events as a Stripe list object, newest first (optionally of one `type`); Stripe keeps 30 days."""
        params: EventListParams = {"limit": _checked_limit(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        if type:
            params["type"] = type
        return self._list("list events", lambda: self._v1.events.list(params=params), starting_after)

    # -- saved cards and deposit holds -----------------------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """Create a Customer a card can be saved to; Stripe replays the first response for a key it has seen."""
        key = _checked_key(idempotency_key)
        params: CustomerCreateParams = {"email": email, "name": name, "metadata": dict(metadata or {})}
        customer = self._call(
            "create the customer",
            lambda: self._v1.customers.create(params=params, options={"idempotency_key": key}),
        )
        return _normalise(customer)

    def create_setup_intent(
        self, *, customer: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """A card SetupIntent with usage `off_session`, so the saved card can be held later without the customer."""
        key = _checked_key(idempotency_key)
        params: SetupIntentCreateParams = {
            "customer": customer,
            "usage": "off_session",
            # As for PaymentIntents: `payment_method_types` is refused since API 2026-09-30.endive.
            "allowed_payment_method_types": ["card"],
            "metadata": dict(metadata or {}),
        }
        seti = self._call(
            "set up the card",
            lambda: self._v1.setup_intents.create(params=params, options={"idempotency_key": key}),
            missing=f"No such customer: {customer}",
        )
        return _normalise(seti)

    def retrieve_setup_intent(self, setup_intent_id: str) -> Json:
        """The SetupIntent as it is now (after Stripe.js confirmSetup sent the customer back)."""
        seti = self._call(
            f"look up card setup {setup_intent_id}",
            lambda: self._v1.setup_intents.retrieve(setup_intent_id),
            missing=f"No such card setup: {setup_intent_id}",
        )
        return _normalise(seti)

    def confirm_setup_intent(self, setup_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Confirm the SetupIntent with `payment_method`; returns it with the saved card's id in `payment_method`.

        Already succeeded: returned unchanged (a second confirm would save nothing new). The key derives from the
        SetupIntent and the card, so a network retry replays the same attempt."""
        current = self._call(
            f"look up card setup {setup_intent_id}",
            lambda: self._v1.setup_intents.retrieve(setup_intent_id),
            missing=f"No such card setup: {setup_intent_id}",
        )
        if current.get("status") == "succeeded":
            return _normalise(current)
        if current.get("status") == "canceled":
            raise InvalidState(f"Card setup {setup_intent_id} was cancelled")
        key = f"roomdesk-setup-{setup_intent_id}-{payment_method}"
        seti = self._call(
            f"save the card on card setup {setup_intent_id}",
            lambda: self._v1.setup_intents.confirm(
                setup_intent_id, params={"payment_method": payment_method}, options={"idempotency_key": key}
            ),
            missing=f"No such card setup or payment method: {setup_intent_id}, {payment_method}",
        )
        return _normalise(seti)

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
        """Authorise `amount` on the saved card without the customer: a manual-capture PaymentIntent created and
        confirmed off session in one call (status `requires_capture`). A decline raises PaymentDeclined."""
        key = _checked_key(idempotency_key)
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "capture_method": "manual",
            "confirm": True,
            "off_session": True,
            "metadata": dict(metadata or {}),
            "allowed_payment_method_types": ["card"],
        }
        pi = self._call(
            "place the deposit hold",
            lambda: self._v1.payment_intents.create(params=params, options={"idempotency_key": key}),
            missing=f"No such customer or saved card: {customer}, {payment_method}",
        )
        return _normalise(pi)

    def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int | None = None, idempotency_key: str
    ) -> Json:
        """Capture all or part of a hold (the rest is released). A released hold, or an amount above the hold, is
        refused before asking Stripe (InvalidState). Stripe replays the same key; under another key it refuses a
        captured hold (payment_intent_unexpected_state), which is re-read here to say so in words."""
        key = _checked_key(idempotency_key)
        if amount_to_capture is not None and (
            isinstance(amount_to_capture, bool) or not isinstance(amount_to_capture, int) or amount_to_capture <= 0
        ):
            raise GatewayError(
                f"The amount to capture must be a positive whole number of cents, not {amount_to_capture!r}",
                transient=False,
                provider=PROVIDER,
                status=400,
            )
        held = self._retrieve(payment_intent_id, expand=False)
        if held.get("status") == "canceled":
            # A released hold was never captured, so no earlier capture can be replayed (localstripe would capture it).
            raise self._capture_refused(payment_intent_id)
        capturable = int(held.get("amount_capturable") or 0)
        if held.get("status") == "requires_capture" and (amount_to_capture or 0) > capturable:
            raise InvalidState(
                f"Capturing {amount_to_capture} cents exceeds the {capturable} cents held "
                f"on payment {payment_intent_id}"
            )
        params: PaymentIntentCaptureParams = {}
        if amount_to_capture is not None:
            params["amount_to_capture"] = amount_to_capture
        try:
            pi = self._call(
                f"capture payment {payment_intent_id}",
                lambda: self._v1.payment_intents.capture(
                    payment_intent_id, params=params, options={"idempotency_key": key}
                ),
                missing=f"No such payment: {payment_intent_id}",
            )
        except (GatewayError, InvalidState) as exc:
            if isinstance(exc, GatewayError) and exc.status != 400:
                raise
            raise self._capture_refused(payment_intent_id) from None
        return _normalise(pi)

    def _capture_refused(self, payment_intent_id: str) -> DomainError:
        """Why Stripe refused a capture, in words: already captured, released, or not a hold."""
        status = self._retrieve(payment_intent_id, expand=False).get("status")
        if status == "succeeded":
            return InvalidState(f"Payment {payment_intent_id} has already been captured")
        if status == "canceled":
            return InvalidState(f"The hold {payment_intent_id} was released and can no longer be captured")
        return InvalidState(f"Payment {payment_intent_id} is {status}; only a hold can be captured")

    # -- pay by invoice ----------------------------------------------------------------------------------------------

    def create_tax_rate(
        self, *, display_name: str, rate_bps: int, jurisdiction: str, idempotency_key: str, inclusive: bool = False
    ) -> Json:
        """A TaxRate; `percentage` goes as an exact decimal string (500 bps → "5.00"), never a binary float."""
        key = _checked_key(idempotency_key)
        check_tax_rate_bps(rate_bps)
        params = cast(
            TaxRateCreateParams,
            {
                "display_name": display_name,
                "percentage": f"{rate_bps // 100}.{rate_bps % 100:02d}",
                "inclusive": bool(inclusive),
                "jurisdiction": jurisdiction,
            },
        )
        rate = self._call(
            "create the tax rate",
            lambda: self._v1.tax_rates.create(params=params, options={"idempotency_key": key}),
        )
        return _normalise(rate)

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
        """A draft send_invoice Invoice, then one invoice item per line attached to it (Stripe's recommended order:
        `pending_invoice_items_behavior=exclude` keeps a customer's stray pending items off this invoice). Each step
        has its own key derived from the caller's, so a retry after a failure half way replays what was made and
        adds only what is missing. Returns the invoice re-read with its lines and totals."""
        key = _checked_key(idempotency_key)
        fields = check_invoice_request(lines, days_until_due, custom_fields)
        params: InvoiceCreateParams = {
            "customer": customer,
            "collection_method": "send_invoice",
            "days_until_due": days_until_due,
            "currency": self.currency,
            "auto_advance": False,  # Room Desk finalizes and sends it itself, when the booking is held
            "pending_invoice_items_behavior": "exclude",
            "metadata": dict(metadata or {}),
        }
        if fields:
            params["custom_fields"] = cast(Any, fields)
        if footer:
            params["footer"] = footer
        invoice = self._call(
            "create the invoice",
            lambda: self._v1.invoices.create(params=params, options={"idempotency_key": key}),
            missing=f"No such customer: {customer}",
        )
        invoice_id = str(invoice["id"])
        for n, line in enumerate(lines, start=1):
            item: InvoiceItemCreateParams = {
                "customer": customer,
                "invoice": invoice_id,
                "amount": line["amount_cents"],
                "currency": self.currency,
                "description": line["description"],
                "tax_rates": list(line["tax_rate_ids"]),
            }
            self._call(
                f"add line {n} to invoice {invoice_id}",
                partial(self._v1.invoice_items.create, params=item, options={"idempotency_key": f"{key}-line-{n}"}),
                missing=f"No such tax rate on line {n}: {', '.join(line['tax_rate_ids'])}",
            )
        return self.retrieve_invoice(invoice_id)

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Draft → open (number, hosted_invoice_url, amount_due); already finalized → returned as it is."""
        key = _checked_key(idempotency_key)
        current = self.retrieve_invoice(invoice_id)
        if current.get("status") != "draft":
            return current
        return self._invoice_call(
            invoice_id,
            "finalize",
            lambda: self._v1.invoices.finalize_invoice(
                invoice_id, params={"auto_advance": False}, options={"idempotency_key": key}
            ),
        )

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Have Stripe email the open invoice to the customer."""
        key = _checked_key(idempotency_key)
        return self._invoice_call(
            invoice_id,
            "send",
            lambda: self._v1.invoices.send_invoice(invoice_id, options={"idempotency_key": key}),
        )

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Open → void; already void → returned as it is; paid or draft → InvalidState (Stripe refuses both)."""
        key = _checked_key(idempotency_key)
        current = self.retrieve_invoice(invoice_id)
        if current.get("status") == "void":
            return current
        if current.get("status") != "open":
            raise _invoice_refused(invoice_id, "void", current.get("status"))
        return self._invoice_call(
            invoice_id,
            "void",
            lambda: self._v1.invoices.void_invoice(invoice_id, options={"idempotency_key": key}),
        )

    def retrieve_invoice(self, invoice_id: str) -> Json:
        """The Invoice with its lines (Stripe includes the first page of `lines`; ours have a handful)."""
        return _normalise(
            self._call(
                f"look up invoice {invoice_id}",
                lambda: self._v1.invoices.retrieve(invoice_id),
                missing=f"No such invoice: {invoice_id}",
            )
        )

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid the invoice, from its invoice payments (GET /v1/invoice_payments?invoice=…,
        newest first): since API 2025-03-31 the Invoice itself no longer names it."""
        self.retrieve_invoice(invoice_id)  # NotFound for an unknown invoice, as the sandbox answers
        page = _normalise(
            self._call(
                f"list the payments of invoice {invoice_id}",
                lambda: self._v1.invoice_payments.list(params={"invoice": invoice_id, "limit": 10}),
            )
        )
        return paid_invoice_payment_intent(page.get("data") or [])

    def list_invoices(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Invoices as a Stripe list object, newest first."""
        params: InvoiceListParams = {"limit": _checked_limit(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        return self._list("list invoices", lambda: self._v1.invoices.list(params=params), starting_after)

    def _invoice_call(self, invoice_id: str, verb: str, fetch: Callable[[], stripe.StripeObject]) -> Json:
        """One invoice transition; Stripe's plain 400 for a transition its state forbids is re-read and said in
        words (InvalidState)."""
        try:
            return _normalise(
                self._call(f"{verb} invoice {invoice_id}", fetch, missing=f"No such invoice: {invoice_id}")
            )
        except (GatewayError, InvalidState) as exc:
            if isinstance(exc, GatewayError) and exc.status != 400:
                raise
            status = self.retrieve_invoice(invoice_id).get("status")
            raise _invoice_refused(invoice_id, verb, status) from None

    # -- finance (not in the Protocol yet) -------------------------------------------------------------------------

    def submit_dispute_evidence(self, dispute_id: str, evidence: dict[str, str], submit: bool) -> Json:
        """Add `evidence` fields (Stripe's names: `cancellation_policy_disclosure`, `service_date`, …) to a dispute;
        with `submit`, send it to the bank (Stripe allows one submission). Returns the Dispute.

        The key derives from the dispute and the exact evidence, so a retry never submits twice."""
        digest = hashlib.sha256(json.dumps([evidence, submit], sort_keys=True).encode()).hexdigest()[:24]
        key = f"roomdesk-dispute-{dispute_id}-{digest}"
        params = cast(DisputeUpdateParams, {"evidence": dict(evidence), "submit": bool(submit)})
        dispute = self._call(
            f"update dispute {dispute_id}",
            lambda: self._v1.disputes.update(dispute_id, params=params, options={"idempotency_key": key}),
            missing=f"No such dispute: {dispute_id}",
        )
        return _normalise(dispute)

    def list_balance_transactions(
        self,
        *,
        created_gte: datetime | None = None,
        created_lt: datetime | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Json:
        """Balance transactions (charges, refunds, fees, disputes; `reporting_category`) as a list object, newest
        first, created in [created_gte, created_lt). Datetimes must be timezone-aware."""
        params: BalanceTransactionListParams = {"limit": _checked_limit(limit)}
        created: dict[str, int] = {}
        if created_gte is not None:
            created["gte"] = _epoch_ceil(created_gte)
        if created_lt is not None:
            created["lt"] = _epoch_ceil(created_lt)
        if created:
            params["created"] = cast(Any, created)
        if starting_after:
            params["starting_after"] = starting_after
        return self._list(
            "list balance transactions", lambda: self._v1.balance_transactions.list(params=params), starting_after
        )

    # -- internals -------------------------------------------------------------------------------------------------

    def _retrieve(self, payment_intent_id: str, *, expand: bool) -> Json:
        pi = self._call(
            f"look up payment {payment_intent_id}",
            lambda: self._v1.payment_intents.retrieve(
                payment_intent_id, params={"expand": ["latest_charge"]} if expand else None
            ),
            missing=f"No such payment: {payment_intent_id}",
        )
        if not expand:
            return _normalise(pi)
        charge = pi.get("latest_charge")
        if isinstance(charge, str):  # a server that ignored `expand`
            pi["latest_charge"] = self._call(
                f"look up charge {charge}",
                lambda: self._v1.charges.retrieve(charge),
                missing=f"No such charge: {charge}",
            )
        return _normalise(pi, expanded=True)

    def _refund_with_key(self, payment_intent_id: str, key: str) -> Json | None:
        for refund in self._each(
            lambda after: self.list_refunds(payment_intent_id=payment_intent_id, starting_after=after)
        ):
            if (refund.get("metadata") or {}).get(REFUND_KEY_FIELD) == key:
                return refund
        return None

    @staticmethod
    def _each(fetch: Callable[[str | None], Json]) -> Iterator[Json]:
        after: str | None = None
        while True:
            page = fetch(after)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            after = data[-1]["id"]

    def _list(self, action: str, fetch: Callable[[], stripe.StripeObject], starting_after: str | None) -> Json:
        missing = f"Cannot {action} after {starting_after}: Stripe has no such object" if starting_after else None
        listing = self._call(action, fetch, missing=missing)
        listing["data"] = [_normalise(item) for item in listing.get("data") or []]
        return listing

    def _call(self, action: str, fetch: Callable[[], stripe.StripeObject], *, missing: str | None = None) -> Json:
        """Run one SDK call; return its object as a plain dict or raise the translated error (without the SDK's
        exception chained on, since its text is not ours to show)."""
        try:
            obj = fetch()
        except stripe.StripeError as exc:
            raise translate_error(exc, action=action, missing=missing, secret=self._secret_text()) from None
        return obj.to_dict(recursive=True, for_json=True)

    def _secret_text(self) -> str | None:
        return self._secret.get_secret_value() if self._secret else None


# --------------------------------------------------------------------------------------------- error translation


def translate_error(
    exc: stripe.StripeError, *, action: str, missing: str | None = None, secret: str | None = None
) -> DomainError:
    """The `services.core.errors` exception for an SDK error, with a message safe to show staff; logs the original."""
    status = exc.http_status
    stripe_message = scrub(exc.user_message or "", secret).strip() or "no detail given"
    log.log(
        logging.INFO if isinstance(exc, stripe.CardError) else logging.WARNING,  # declines are business as usual
        "Stripe refused or failed to %s: %s (status=%s, code=%s, request_id=%s): %s",
        action,
        type(exc).__name__,
        status,
        exc.code,
        exc.request_id,
        scrub(str(exc), secret),
    )
    if isinstance(exc, stripe.CardError):
        return PaymentDeclined(f"The card was declined: {stripe_message}")
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return GatewayError(
            "Stripe rejected the API key — check STRIPE_SECRET_KEY", transient=False, provider=PROVIDER, status=status
        )
    if isinstance(exc, stripe.RateLimitError):
        return GatewayError(
            "Stripe is limiting how fast we call it; try again in a minute",
            transient=True,
            provider=PROVIDER,
            status=429,
        )
    if isinstance(exc, stripe.APIConnectionError):
        if isinstance(exc.__context__, requests.exceptions.ReadTimeout):
            # The request went out: Stripe may have acted on it. Retrying with the same idempotency key is safe.
            return TimeoutFault("Stripe could not be reached in time; try again", provider=PROVIDER)
        return GatewayError("Stripe could not be reached; try again", transient=True, provider=PROVIDER)
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError(
            f"Stripe refused to {action}: the idempotency key was already used differently ({stripe_message})",
            transient=False,
            provider=PROVIDER,
            status=status or 400,
        )
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.code == "resource_missing" or status == 404:
            return NotFound(missing or f"Stripe could not find what is needed to {action}: {stripe_message}")
        if exc.code in _STATE_CODES:
            return InvalidState(f"Stripe refused to {action}: {stripe_message}")
        return GatewayError(
            f"Stripe refused to {action}: {stripe_message}", transient=False, provider=PROVIDER, status=status or 400
        )
    if isinstance(exc, stripe.APIError) and (status is None or status >= 500):
        return GatewayError(
            f"Stripe had a problem and could not {action}; try again", transient=True, provider=PROVIDER, status=status
        )
    return GatewayError(
        f"Stripe could not {action}: {stripe_message}", transient=False, provider=PROVIDER, status=status
    )


def scrub(text: str, secret: str | None = None) -> str:
    """`text` with the secret key, and anything shaped like a Stripe secret or restricted key, masked."""
    if secret:
        text = text.replace(secret, "sk_…redacted")
    return _KEY_LIKE.sub("sk_…redacted", text)


# --------------------------------------------------------------------------------------------- helpers


def _normalise(obj: Json, *, expanded: bool = False) -> Json:
    """Give every object the sandbox's shape: PaymentIntents carry `latest_charge` as an id unless `expanded`."""
    kind = obj.get("object")
    if kind == "payment_intent":
        charge = obj.get("latest_charge")
        succeeded = obj.get("status") == "succeeded"
        received = obj.get("amount") if succeeded else 0
        if succeeded and isinstance(charge, dict) and "amount_captured" in charge:
            received = charge["amount_captured"]  # a partly captured hold received less than its amount
        if isinstance(charge, dict):
            obj["latest_charge"] = _normalise(charge) if expanded else charge.get("id")
        obj.setdefault("amount_received", received)
        obj.setdefault("amount_capturable", obj.get("amount") if obj.get("status") == "requires_capture" else 0)
    elif kind == "charge":
        obj.setdefault("amount_captured", obj.get("amount") if obj.get("captured") else 0)
    elif kind == "event":
        inner = (obj.get("data") or {}).get("object")
        if isinstance(inner, dict):
            obj["data"]["object"] = _normalise(inner)
    return obj


def _invoice_refused(invoice_id: str, verb: str, status: Any) -> InvalidState:
    """The sandbox's words for a transition the invoice's state forbids."""
    needed, done = {
        "finalize": ("a draft", "finalized"),
        "send": ("an open or paid", "sent"),
        "void": ("an open", "voided"),
    }[verb]
    return InvalidState(f"Invoice {invoice_id} is {status}; only {needed} invoice can be {done}")


def _checked_key(key: str) -> str:
    # An empty key would make the SDK invent a random one: the write would silently stop being idempotent.
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        raise GatewayError(
            "An idempotency key must be 1 to 255 characters", transient=False, provider=PROVIDER, status=400
        )
    return key


def _checked_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise GatewayError(
            f"limit must be between 1 and 100, not {limit!r}", transient=False, provider=PROVIDER, status=400
        )
    return limit


def _epoch_ceil(moment: datetime) -> int:
    # `created` is whole seconds: an object created at second s is >= / < moment exactly when s is >= / < ceil(moment).
    if moment.tzinfo is None:
        raise ValueError("created_gte / created_lt must be timezone-aware")
    return math.ceil(moment.timestamp())


def _http_client(api_base: str | None, timeout: float) -> stripe.HTTPClient:
    if api_base and _is_loopback(api_base):
        # A proxy from the environment (HTTPS_PROXY…) cannot reach a Stripe-compatible server on this machine.
        session = requests.Session()
        session.trust_env = False
        return stripe.RequestsClient(timeout=timeout, session=session)
    return stripe.RequestsClient(timeout=timeout)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
