"""Sandbox Stripe: PaymentIntents, Charges, Refunds, Disputes and Events shaped like Stripe's API JSON.

State lives in `<store_dir>/stripe.sqlite3`, shared by every process that opens the same directory. The sandbox follows
Stripe where localstripe does not (see REFERENCE.md): idempotency keys are honoured (reusing one with different
parameters is refused), over-refunds are refused, disputes exist, and every state change records an Event.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from services.core.errors import GatewayError, InvalidState, NotFound, PaymentDeclined
from services.gateways.base import (
    InvoiceLine,
    Json,
    check_invoice_request,
    check_tax_rate_bps,
    line_tax,
    paid_invoice_payment_intent,
)
from services.gateways.faults import Faults
from services.gateways.sandbox_store import SandboxStore, StoreTx, checked_now, random_id, utc_now

PROVIDER = "payments"
_IDEMPOTENCY_SCOPE = "stripe"  # Stripe keys are per account, across endpoints

# Stripe's test payment methods the sandbox understands: succeeding ones, and declines with their decline codes.
_CARD_DETAILS = {
    "pm_card_visa": ("visa", "4242"),
    "pm_card_visa_debit": ("visa", "5556"),
    "pm_card_mastercard": ("mastercard", "4444"),
    "pm_card_amex": ("amex", "8431"),
}
_DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "The card was declined"),
    "pm_card_chargeCustomerFail": ("card_declined", "generic_decline", "The card was declined"),
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline", "The card was declined"),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "The card was declined: insufficient funds",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "The card has expired"),
}
_KINDS = ("payment_intent", "charge", "refund", "dispute", "event", "invoice", "tax_rate")
# Saving this card succeeds; charging it is declined (Stripe's 4000 0000 0000 0341). The other declines fail at setup.
_DECLINED_ONLY_WHEN_CHARGED = frozenset({"pm_card_chargeCustomerFail"})
_TEST_CARD_FIELD = "sandbox_test_card"  # on stored PaymentMethods only; never returned
_PREFIXES = {"payment_intent": "pi_", "charge": "ch_", "refund": "re_", "dispute": "dp_", "event": "evt_"}
_URLS = {
    "payment_intent": "/v1/payment_intents",
    "charge": "/v1/charges",
    "refund": "/v1/refunds",
    "dispute": "/v1/disputes",
    "event": "/v1/events",
    "invoice": "/v1/invoices",
}
_LABELS = {
    "payment_intent": "payment",
    "charge": "charge",
    "refund": "refund",
    "dispute": "dispute",
    "event": "event",
    "customer": "customer",
    "setup_intent": "card setup",
    "payment_method": "payment method",
    "invoice": "invoice",
    "tax_rate": "tax rate",
}


class SandboxPayments:
    """A Stripe look-alike implementing `PaymentsGateway`, with fault injection and sandbox-only helpers."""

    mode = "sandbox"

    def __init__(
        self,
        store_dir: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        faults: Faults | None = None,
        currency: str = "cad",
    ) -> None:
        self.store = SandboxStore(Path(store_dir) / "stripe.sqlite3")
        self.currency = _check_currency(currency)  # invoices are in the venue's currency (settings.currency)
        self.clock: Callable[[], datetime] = clock or utc_now
        self.faults = faults if faults is not None else Faults()

    # -- PaymentsGateway -------------------------------------------------------------------------------------------

    def create_payment_intent(
        self, *, amount_cents: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> Json:
        """Create a PaymentIntent; the same idempotency key replays the first response."""
        op = "create_payment_intent"
        self.faults.before(
            op,
            PROVIDER,
            amount_cents=amount_cents,
            currency=currency,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        _check_amount(amount_cents)
        currency = _check_currency(currency)
        _check_metadata(metadata)
        fingerprint = _fingerprint(op, amount_cents, currency, metadata)
        with self.store.transaction() as tx:
            replay = _replay(tx, idempotency_key, fingerprint)
            if replay is not None:
                result = replay
            else:
                pi_id = random_id("pi_")
                result = {
                    "id": pi_id,
                    "object": "payment_intent",
                    "amount": amount_cents,
                    "amount_capturable": 0,
                    "amount_received": 0,
                    "capture_method": "automatic",
                    "currency": currency,
                    "status": "requires_payment_method",
                    "metadata": dict(metadata),
                    "client_secret": f"{pi_id}_secret_{random_id('', 25)}",
                    "created": self._now(),
                    "canceled_at": None,
                    "cancellation_reason": None,
                    "last_payment_error": None,
                    "latest_charge": None,
                    "livemode": False,
                    "next_action": None,
                    "payment_method": None,
                    "payment_method_types": ["card"],
                }
                tx.put("payment_intent", pi_id, result)
                self._record_event(tx, "payment_intent.created", result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "payment_intent",
                    pi_id,
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(
            op,
            PROVIDER,
            amount_cents=amount_cents,
            currency=currency,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return result

    def confirm_payment_intent(self, payment_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Confirm with a test payment method: charge it, or record the decline and raise PaymentDeclined."""
        op = "confirm_payment_intent"
        self.faults.before(op, PROVIDER, payment_intent_id=payment_intent_id, payment_method=payment_method)
        if payment_method not in _CARD_DETAILS and payment_method not in _DECLINES:
            known = ", ".join(sorted([*_CARD_DETAILS, *_DECLINES]))
            raise NotFound(f"No such payment method {payment_method!r} in the sandbox (known: {known})")
        declined: str | None = None
        with self.store.transaction() as tx:
            pi = _get(tx, "payment_intent", payment_intent_id)
            if pi["status"] == "canceled":
                raise InvalidState(f"Payment {payment_intent_id} was cancelled and can no longer be paid")
            now = self._now()
            if pi["status"] in ("succeeded", "requires_capture"):
                pass  # Stripe answers a repeated confirm with the PaymentIntent as it is
            elif payment_method in _DECLINES:
                code, decline_code, declined = _DECLINES[payment_method]
                pi.update(
                    status="requires_payment_method",
                    payment_method=None,
                    last_payment_error={
                        "type": "card_error",
                        "code": code,
                        "decline_code": decline_code,
                        "message": declined,
                        "payment_method": {"id": payment_method, "object": "payment_method", "type": "card"},
                    },
                )
                tx.put("payment_intent", payment_intent_id, pi)
                self._record_event(tx, "payment_intent.payment_failed", pi)
            else:
                self._charge(tx, pi, payment_method, now)
        if declined is not None:
            raise PaymentDeclined(declined)
        self.faults.after(op, PROVIDER, payment_intent_id=payment_intent_id, payment_method=payment_method)
        return pi

    def _charge(self, tx: StoreTx, pi: Json, payment_method: str, now: int) -> Json:
        """Charge the PaymentIntent in full with a test card that pays: its Charge (with a balance transaction),
        status `succeeded`; records charge.succeeded and payment_intent.succeeded."""
        brand, last4 = _CARD_DETAILS[payment_method]
        charge_id = random_id("ch_")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"],
            "amount_refunded": 0,
            "balance_transaction": random_id("txn_"),
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "captured": True,
            "created": now,
            "currency": pi["currency"],
            "disputed": False,
            "livemode": False,
            "metadata": dict(pi.get("metadata") or {}),
            "paid": True,
            "payment_intent": pi["id"],
            "payment_method": payment_method,
            "payment_method_details": {"type": "card", "card": {"brand": brand, "last4": last4}},
            "refunded": False,
            "status": "succeeded",
        }
        pi.update(
            status="succeeded",
            amount_received=pi["amount"],
            latest_charge=charge_id,
            payment_method=payment_method,
            last_payment_error=None,
        )
        tx.put("charge", charge_id, charge)
        tx.put("payment_intent", pi["id"], pi)
        self._record_event(tx, "charge.succeeded", charge)
        self._record_event(tx, "payment_intent.succeeded", pi)
        return charge

    def retrieve_payment_intent(self, payment_intent_id: str) -> Json:
        """The PaymentIntent with `latest_charge` expanded to the Charge (or None)."""
        op = "retrieve_payment_intent"
        self.faults.before(op, PROVIDER, payment_intent_id=payment_intent_id)
        with self.store.read() as tx:
            pi = _get(tx, "payment_intent", payment_intent_id)
            if pi.get("latest_charge"):
                pi["latest_charge"] = tx.get("charge", pi["latest_charge"])
        self.faults.after(op, PROVIDER, payment_intent_id=payment_intent_id)
        return pi

    def list_payment_intents(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """PaymentIntents as a Stripe list object, newest first."""
        op = "list_payment_intents"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        result = self._list("payment_intent", limit=limit, starting_after=starting_after)
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    def cancel_payment_intent(self, payment_intent_id: str, *, idempotency_key: str) -> Json:
        """Cancel an unpaid PaymentIntent; cancelling twice returns it unchanged; a paid one raises InvalidState."""
        op = "cancel_payment_intent"
        self.faults.before(op, PROVIDER, payment_intent_id=payment_intent_id, idempotency_key=idempotency_key)
        fingerprint = _fingerprint(op, payment_intent_id)
        with self.store.transaction() as tx:
            replay = _replay(tx, idempotency_key, fingerprint)
            if replay is not None:
                result = replay
            else:
                result = _get(tx, "payment_intent", payment_intent_id)
                if result["status"] == "succeeded":
                    raise InvalidState(
                        f"Payment {payment_intent_id} has already been paid; refund it instead of cancelling"
                    )
                if result["status"] != "canceled":
                    # A hold (`requires_capture`) is released: nothing is left to capture.
                    result.update(
                        status="canceled", canceled_at=self._now(), cancellation_reason=None, amount_capturable=0
                    )
                    tx.put("payment_intent", payment_intent_id, result)
                    self._record_event(tx, "payment_intent.canceled", result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "payment_intent",
                    payment_intent_id,
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, payment_intent_id=payment_intent_id, idempotency_key=idempotency_key)
        return result

    def refund(
        self,
        payment_intent_id: str,
        *,
        amount_cents: int,
        reason: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> Json:
        """Refund part or all of a succeeded payment; the same idempotency key replays the first Refund."""
        op = "refund"
        ctx: dict[str, Any] = {
            "payment_intent_id": payment_intent_id,
            "amount_cents": amount_cents,
            "reason": reason,
            "idempotency_key": idempotency_key,
            "metadata": metadata,
        }
        self.faults.before(op, PROVIDER, **ctx)
        # Stripe's `reason` is an enum; our free-text reason travels in metadata, where the passed keys can't erase it.
        refund_metadata = {**(metadata or {}), "reason": reason}
        _check_metadata(refund_metadata)
        fingerprint = _fingerprint(op, payment_intent_id, amount_cents, refund_metadata)
        with self.store.transaction() as tx:
            replay = _replay(tx, idempotency_key, fingerprint)
            if replay is not None:
                result = replay
            else:
                result = self._create_refund(tx, payment_intent_id, amount_cents, refund_metadata)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "refund",
                    result["id"],
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, **ctx)
        return result

    def list_refunds(
        self, *, payment_intent_id: str | None = None, limit: int = 100, starting_after: str | None = None
    ) -> Json:
        """Refunds as a Stripe list object, newest first, optionally for one PaymentIntent."""
        op = "list_refunds"
        self.faults.before(
            op, PROVIDER, payment_intent_id=payment_intent_id, limit=limit, starting_after=starting_after
        )
        result = self._list(
            "refund",
            limit=limit,
            starting_after=starting_after,
            where=None if payment_intent_id is None else (lambda r: r.get("payment_intent") == payment_intent_id),
        )
        self.faults.after(op, PROVIDER, payment_intent_id=payment_intent_id, limit=limit, starting_after=starting_after)
        return result

    def list_disputes(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Disputes as a Stripe list object, newest first."""
        op = "list_disputes"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        result = self._list("dispute", limit=limit, starting_after=starting_after)
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    def list_charges(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Charges as a Stripe list object, newest first."""
        op = "list_charges"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        result = self._list("charge", limit=limit, starting_after=starting_after)
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    def list_events(self, *, limit: int = 100, starting_after: str | None = None, type: str | None = None) -> Json:
        """Recorded Stripe Events as a list object, newest first (optionally of one `type`)."""
        op = "list_events"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        result = self._list(
            "event",
            limit=limit,
            starting_after=starting_after,
            where=None if type is None else (lambda e: e.get("type") == type),
        )
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    # -- saved cards and deposit holds -----------------------------------------------------------------------------

    def create_customer(
        self, *, email: str, name: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """Create a Customer; the same idempotency key replays the first response."""
        op = "create_customer"
        self.faults.before(op, PROVIDER, email=email, idempotency_key=idempotency_key)
        metadata = dict(metadata or {})
        _check_metadata(metadata)
        fingerprint = _fingerprint(op, email, name, metadata)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                customer_id = random_id("cus_")
                result = {
                    "id": customer_id,
                    "object": "customer",
                    "created": self._now(),
                    "email": email,
                    "name": name,
                    "invoice_settings": {"default_payment_method": None},
                    "livemode": False,
                    "metadata": metadata,
                }
                tx.put("customer", customer_id, result)
                self._record_event(tx, "customer.created", result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "customer",
                    customer_id,
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, email=email, idempotency_key=idempotency_key)
        return result

    def create_setup_intent(
        self, *, customer: str, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> Json:
        """Create an off-session card SetupIntent for `customer`; the same idempotency key replays the first one."""
        op = "create_setup_intent"
        self.faults.before(op, PROVIDER, customer=customer, idempotency_key=idempotency_key)
        metadata = dict(metadata or {})
        _check_metadata(metadata)
        fingerprint = _fingerprint(op, customer, metadata)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                _get(tx, "customer", customer)
                seti_id = random_id("seti_")
                result = {
                    "id": seti_id,
                    "object": "setup_intent",
                    "client_secret": f"{seti_id}_secret_{random_id('', 25)}",
                    "created": self._now(),
                    "customer": customer,
                    "last_setup_error": None,
                    "livemode": False,
                    "metadata": metadata,
                    "next_action": None,
                    "payment_method": None,
                    "payment_method_types": ["card"],
                    "status": "requires_payment_method",
                    "usage": "off_session",
                }
                tx.put("setup_intent", seti_id, result)
                self._record_event(tx, "setup_intent.created", result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "setup_intent",
                    seti_id,
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, customer=customer, idempotency_key=idempotency_key)
        return result

    def retrieve_setup_intent(self, setup_intent_id: str) -> Json:
        """The SetupIntent as it is now."""
        return self._read_one("retrieve_setup_intent", "setup_intent", setup_intent_id)

    def _read_one(self, op: str, kind: str, object_id: str) -> Json:
        """One stored object as it is now (a retrieve call: faults before and after, NotFound if absent)."""
        self.faults.before(op, PROVIDER, **{f"{kind}_id": object_id})
        with self.store.read() as tx:
            found = _get(tx, kind, object_id)
        self.faults.after(op, PROVIDER, **{f"{kind}_id": object_id})
        return found

    def confirm_setup_intent(self, setup_intent_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """Save a test card: a new PaymentMethod attached to the SetupIntent's customer (as Stripe turns
        `pm_card_visa` into a `pm_…` of its own). Cards Stripe refuses at setup raise PaymentDeclined;
        `pm_card_chargeCustomerFail` saves and is declined only when charged, as on Stripe."""
        op = "confirm_setup_intent"
        self.faults.before(op, PROVIDER, setup_intent_id=setup_intent_id, payment_method=payment_method)
        _check_test_card(payment_method)
        declined: str | None = None
        with self.store.transaction() as tx:
            seti = _get(tx, "setup_intent", setup_intent_id)
            if seti["status"] == "canceled":
                raise InvalidState(f"Card setup {setup_intent_id} was cancelled")
            if seti["status"] != "succeeded":
                if payment_method in _DECLINES and payment_method not in _DECLINED_ONLY_WHEN_CHARGED:
                    code, decline_code, declined = _DECLINES[payment_method]
                    seti.update(
                        last_setup_error={
                            "type": "card_error",
                            "code": code,
                            "decline_code": decline_code,
                            "message": declined,
                        },
                        payment_method=None,
                        status="requires_payment_method",
                    )
                    tx.put("setup_intent", setup_intent_id, seti)
                    self._record_event(tx, "setup_intent.setup_failed", seti)
                else:
                    pm = self._save_card(tx, payment_method, seti.get("customer"))
                    seti.update(last_setup_error=None, payment_method=pm["id"], status="succeeded")
                    tx.put("setup_intent", setup_intent_id, seti)
                    self._record_event(tx, "setup_intent.succeeded", seti)
        if declined is not None:
            raise PaymentDeclined(declined)
        self.faults.after(op, PROVIDER, setup_intent_id=setup_intent_id, payment_method=payment_method)
        return seti

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
        """Authorise `amount` on the customer's saved card off session (manual capture → `requires_capture`).

        A decline leaves the PaymentIntent in `requires_payment_method` with `last_payment_error` and raises
        PaymentDeclined; the same key then raises it again (Stripe saves the declined attempt's response)."""
        op = "create_deposit_hold"
        ctx: dict[str, Any] = {"customer": customer, "amount": amount, "idempotency_key": idempotency_key}
        self.faults.before(op, PROVIDER, **ctx)
        _check_amount(amount)
        currency = _check_currency(currency)
        metadata = dict(metadata or {})
        _check_metadata(metadata)
        fingerprint = _fingerprint(op, customer, payment_method, amount, currency, metadata)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                result = self._place_hold(tx, customer, payment_method, amount, currency, metadata)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "payment_intent",
                    result["id"],
                    fingerprint=fingerprint,
                    response=result,
                )
        error = result.get("last_payment_error")
        if result["status"] == "requires_payment_method" and error:
            raise PaymentDeclined(str(error.get("message") or "The card was declined"))
        self.faults.after(op, PROVIDER, **ctx)
        return result

    def capture_payment_intent(
        self, payment_intent_id: str, *, amount_to_capture: int | None = None, idempotency_key: str
    ) -> Json:
        """Capture all or part of a hold; the rest is released. The same key replays the captured PaymentIntent;
        another key on a captured or released hold raises InvalidState (Stripe: payment_intent_unexpected_state)."""
        op = "capture_payment_intent"
        ctx: dict[str, Any] = {
            "payment_intent_id": payment_intent_id,
            "amount_to_capture": amount_to_capture,
            "idempotency_key": idempotency_key,
        }
        self.faults.before(op, PROVIDER, **ctx)
        fingerprint = _fingerprint(op, payment_intent_id, amount_to_capture)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                result = self._capture(tx, payment_intent_id, amount_to_capture)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "payment_intent",
                    payment_intent_id,
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, **ctx)
        return result

    # -- pay by invoice ----------------------------------------------------------------------------------------------

    def create_tax_rate(
        self, *, display_name: str, rate_bps: int, jurisdiction: str, idempotency_key: str, inclusive: bool = False
    ) -> Json:
        """A TaxRate with `percentage` = rate_bps / 100; the same idempotency key replays the first one."""
        op = "create_tax_rate"
        ctx: dict[str, Any] = {"display_name": display_name, "rate_bps": rate_bps, "idempotency_key": idempotency_key}
        self.faults.before(op, PROVIDER, **ctx)
        check_tax_rate_bps(rate_bps)
        fingerprint = _fingerprint(op, display_name, rate_bps, jurisdiction, inclusive)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                rate_id = random_id("txr_")
                result = {
                    "id": rate_id,
                    "object": "tax_rate",
                    "active": True,
                    "created": self._now(),
                    "display_name": display_name,
                    "inclusive": bool(inclusive),
                    "jurisdiction": jurisdiction,
                    "livemode": False,
                    "metadata": {},
                    "percentage": rate_bps / 100,  # a JSON number, as Stripe returns it
                }
                tx.put("tax_rate", rate_id, result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE, idempotency_key, "tax_rate", rate_id, fingerprint=fingerprint, response=result
                )
        self.faults.after(op, PROVIDER, **ctx)
        return result

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
        """A draft send_invoice Invoice with one item per line, tax per line; the same key replays the first one."""
        op = "create_invoice"
        ctx: dict[str, Any] = {"customer": customer, "idempotency_key": idempotency_key}
        self.faults.before(op, PROVIDER, **ctx)
        fields = check_invoice_request(lines, days_until_due, custom_fields)
        metadata = dict(metadata or {})
        _check_metadata(metadata)
        plain_lines = [
            {
                "description": ln["description"],
                "amount_cents": ln["amount_cents"],
                "tax_rate_ids": list(ln["tax_rate_ids"]),
            }
            for ln in lines
        ]
        fingerprint = _fingerprint(op, customer, plain_lines, days_until_due, metadata, fields, footer)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                result = self._draft_invoice(tx, customer, lines, days_until_due, metadata, fields, footer)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE,
                    idempotency_key,
                    "invoice",
                    result["id"],
                    fingerprint=fingerprint,
                    response=result,
                )
        self.faults.after(op, PROVIDER, **ctx)
        return result

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Draft → open with a number, a hosted URL (`sandbox://invoice/<id>`) and `amount_due`."""

        def finalize(tx: StoreTx, inv: Json) -> Json:
            if inv["status"] != "draft":
                return inv  # Stripe refuses a second finalize; the Protocol returns the invoice as it is
            now = self._now()
            number = sum(1 for other in tx.list("invoice") if other.get("number")) + 1
            inv.update(
                status="open",
                number=f"SBX-{number:04d}",
                hosted_invoice_url=f"sandbox://invoice/{invoice_id}",
                invoice_pdf=f"sandbox://invoice/{invoice_id}/pdf",
                amount_remaining=inv["amount_due"],
                due_date=now + int(inv["days_until_due"]) * 86_400,
                effective_at=now,
            )
            inv["status_transitions"]["finalized_at"] = now
            self._record_event(tx, "invoice.finalized", inv)
            return inv

        return self._invoice_step("finalize_invoice", invoice_id, idempotency_key, finalize)

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Record that the open invoice was emailed (`invoice.sent`); the sandbox sends no mail itself."""

        def send(tx: StoreTx, inv: Json) -> Json:
            if inv["status"] in ("draft", "void", "uncollectible"):
                raise InvalidState(f"Invoice {invoice_id} is {inv['status']}; only an open or paid invoice can be sent")
            self._record_event(tx, "invoice.sent", inv)
            return inv

        return self._invoice_step("send_invoice", invoice_id, idempotency_key, send)

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> Json:
        """Open → void (no longer payable); void again → unchanged; paid or draft → InvalidState."""

        def void(tx: StoreTx, inv: Json) -> Json:
            if inv["status"] == "void":
                return inv
            if inv["status"] != "open":
                raise InvalidState(f"Invoice {invoice_id} is {inv['status']}; only an open invoice can be voided")
            inv.update(status="void", amount_remaining=0)
            inv["status_transitions"]["voided_at"] = self._now()
            self._record_event(tx, "invoice.voided", inv)
            return inv

        return self._invoice_step("void_invoice", invoice_id, idempotency_key, void)

    def retrieve_invoice(self, invoice_id: str) -> Json:
        """The Invoice with its lines."""
        return self._read_one("retrieve_invoice", "invoice", invoice_id)

    def list_invoices(self, *, limit: int = 100, starting_after: str | None = None) -> Json:
        """Invoices as a Stripe list object, newest first."""
        op = "list_invoices"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        result = self._list("invoice", limit=limit, starting_after=starting_after)
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    # -- sandbox only ----------------------------------------------------------------------------------------------

    def open_dispute(
        self, payment_intent_id: str, *, reason: str = "product_not_received", due_in_days: int = 7
    ) -> Json:
        """Have the customer's bank dispute the payment's charge (status `needs_response`); returns the Dispute."""
        with self.store.transaction() as tx:
            pi = _get(tx, "payment_intent", payment_intent_id)
            charge_id = pi.get("latest_charge")
            if pi["status"] != "succeeded" or not charge_id:
                raise InvalidState(f"Payment {payment_intent_id} has not been paid, so it cannot be disputed")
            charge = _get(tx, "charge", charge_id)
            if charge.get("disputed"):
                raise InvalidState(f"Payment {payment_intent_id} is already disputed")
            disputable = int(charge["amount_captured"]) - int(charge["amount_refunded"])
            if disputable <= 0:
                raise InvalidState(f"Payment {payment_intent_id} was fully refunded, so it cannot be disputed")
            now = self._now()
            dispute_id = random_id("dp_")
            dispute = {
                "id": dispute_id,
                "object": "dispute",
                "amount": disputable,
                "balance_transactions": [],
                "charge": charge_id,
                "created": now,
                "currency": charge["currency"],
                "evidence": {},
                "evidence_details": {
                    "due_by": now + due_in_days * 86_400,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": payment_intent_id,
                "reason": reason,
                "status": "needs_response",
            }
            charge["disputed"] = True
            tx.put("charge", charge_id, charge)
            tx.put("dispute", dispute_id, dispute)
            self._record_event(tx, "charge.dispute.created", dispute)
        return dispute

    def pay_invoice(self, invoice_id: str, *, payment_method: str = "pm_card_visa") -> Json:
        """The customer pays the open invoice by card on its hosted page: a PaymentIntent for `amount_due` (the
        invoice's metadata copied, as the sandbox's stand-in for Stripe linking them) is charged, an invoice payment
        links the two (`invoice_payment_intent`), the invoice is `paid`; records payment_intent.succeeded,
        invoice.paid and invoice.payment_succeeded as Stripe sends them. Paying a paid invoice returns it; a draft or
        void one raises InvalidState. Sandbox only."""
        with self.store.transaction() as tx:
            inv = _get(tx, "invoice", invoice_id)
            if inv["status"] == "paid":
                return inv
            if inv["status"] != "open":
                raise InvalidState(f"Invoice {invoice_id} is {inv['status']}; only an open invoice can be paid")
            now = self._now()
            pi_id = random_id("pi_")
            pi: Json = {
                "id": pi_id,
                "object": "payment_intent",
                "amount": inv["amount_due"],
                "amount_capturable": 0,
                "amount_received": 0,
                "capture_method": "automatic",
                "currency": inv["currency"],
                "customer": inv["customer"],
                "status": "requires_payment_method",
                "metadata": dict(inv.get("metadata") or {}),
                "client_secret": f"{pi_id}_secret_{random_id('', 25)}",
                "created": now,
                "canceled_at": None,
                "cancellation_reason": None,
                "last_payment_error": None,
                "latest_charge": None,
                "livemode": False,
                "next_action": None,
                "payment_method": None,
                "payment_method_types": ["card"],
            }
            tx.put("payment_intent", pi_id, pi)
            self._record_event(tx, "payment_intent.created", pi)
            self._charge(tx, pi, payment_method, now)
            payment_id = random_id("inpay_")
            tx.put(
                "invoice_payment",
                payment_id,
                {
                    "id": payment_id,
                    "object": "invoice_payment",
                    "amount_paid": inv["amount_due"],
                    "amount_requested": inv["amount_due"],
                    "created": now,
                    "currency": inv["currency"],
                    "invoice": invoice_id,
                    "is_default": True,
                    "livemode": False,
                    "payment": {"type": "payment_intent", "payment_intent": pi_id},
                    "status": "paid",
                    "status_transitions": {"canceled_at": None, "paid_at": now},
                },
            )
            inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0, attempted=True)
            inv["status_transitions"]["paid_at"] = now
            tx.put("invoice", invoice_id, inv)
            self._record_event(tx, "invoice.paid", inv)
            self._record_event(tx, "invoice.payment_succeeded", inv)
        return inv

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid the invoice (its paid invoice payment), or None (unpaid, or paid outside
        Stripe). NotFound for an unknown invoice."""
        op = "invoice_payment_intent"
        self.faults.before(op, PROVIDER, invoice_id=invoice_id)
        with self.store.read() as tx:
            _get(tx, "invoice", invoice_id)
            payments = [r.data for r in tx.records("invoice_payment") if r.data.get("invoice") == invoice_id]
        self.faults.after(op, PROVIDER, invoice_id=invoice_id)
        return paid_invoice_payment_intent(payments)

    def close_dispute(self, dispute_id: str, *, won: bool) -> Json:
        """The bank decides the dispute (`won` or `lost`); records `charge.dispute.closed`. Sandbox only."""
        with self.store.transaction() as tx:
            dispute = _get(tx, "dispute", dispute_id)
            if dispute["status"] in ("won", "lost"):
                return dispute
            dispute["status"] = "won" if won else "lost"
            tx.put("dispute", dispute_id, dispute)
            self._record_event(tx, "charge.dispute.closed", dispute)
        return dispute

    # -- finance ---------------------------------------------------------------------------------------------------

    def submit_dispute_evidence(self, dispute_id: str, evidence: dict[str, str], submit: bool) -> Json:
        """Add evidence fields to a dispute (Stripe's names); with `submit`, send it (status `under_review`, once)."""
        op = "submit_dispute_evidence"
        self.faults.before(op, PROVIDER, dispute_id=dispute_id, submit=submit)
        unknown = sorted(set(evidence) - DISPUTE_EVIDENCE_FIELDS)
        if unknown:
            raise _bad_request(f"Received unknown parameter: evidence[{unknown[0]}]")
        with self.store.transaction() as tx:
            dispute = _get(tx, "dispute", dispute_id)
            details = dispute.setdefault("evidence_details", {})
            if details.get("submission_count", 0) and dispute["status"] != "needs_response":
                if submit:
                    raise InvalidState(f"The evidence for dispute {dispute_id} has already been submitted")
            elif dispute["status"] not in ("needs_response", "warning_needs_response"):
                raise InvalidState(f"Dispute {dispute_id} is {dispute['status']}; evidence can no longer be added")
            dispute["evidence"] = {**(dispute.get("evidence") or {}), **evidence}
            details["has_evidence"] = True
            if submit:
                details["submission_count"] = int(details.get("submission_count", 0)) + 1
                dispute["status"] = "under_review"
            tx.put("dispute", dispute_id, dispute)
            self._record_event(tx, "charge.dispute.updated", dispute)
        self.faults.after(op, PROVIDER, dispute_id=dispute_id, submit=submit)
        return dispute

    def list_balance_transactions(
        self,
        *,
        created_gte: datetime | None = None,
        created_lt: datetime | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Json:
        """Balance transactions as Stripe reports them (newest first): one per charge (`reporting_category`
        charge, with Stripe's card fee), per refund (refund), per dispute debit (dispute, with the dispute fee) and
        per won dispute's reversal (dispute_reversal). Derived from the store's charges, refunds and disputes."""
        op = "list_balance_transactions"
        self.faults.before(op, PROVIDER, limit=limit, starting_after=starting_after)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise _bad_request(f"limit must be between 1 and 100, not {limit!r}")
        with self.store.read() as tx:
            charges, refunds, disputes = tx.records("charge"), tx.records("refund"), tx.records("dispute")
        txns: list[tuple[int, Json]] = []
        for rec in charges:
            ch = rec.data
            if ch.get("status") == "succeeded" and ch.get("balance_transaction"):
                amount = int(ch["amount_captured"])
                fee = card_fee(amount)
                txns.append((rec.ord, _txn(ch["balance_transaction"], "charge", "charge", ch, amount, fee)))
        for rec in refunds:
            re_ = rec.data
            if re_.get("status") == "succeeded" and re_.get("balance_transaction"):
                txns.append((rec.ord, _txn(re_["balance_transaction"], "refund", "refund", re_, -int(re_["amount"]))))
        for rec in disputes:
            dp = rec.data
            if dp.get("status", "").startswith("warning"):
                continue  # an inquiry moves no money
            txns.append((rec.ord, _txn(f"txn_{dp['id']}", "adjustment", "dispute", dp, -int(dp["amount"]), 1500)))
            if dp.get("status") == "won":
                reversal = _txn(f"txn_{dp['id']}_won", "adjustment", "dispute_reversal", dp, int(dp["amount"]), -1500)
                txns.append((rec.ord, reversal))
        lo = int(created_gte.timestamp()) if created_gte is not None else None
        hi = int(created_lt.timestamp()) if created_lt is not None else None
        items = [
            t
            for _, t in sorted(txns, key=lambda pair: (int(pair[1]["created"]), pair[0]), reverse=True)
            if (lo is None or t["created"] >= lo) and (hi is None or t["created"] < hi)
        ]
        start = 0
        if starting_after is not None:
            position = next((i for i, item in enumerate(items) if item["id"] == starting_after), None)
            if position is None:
                raise NotFound(f"No such balance transaction: {starting_after}")
            start = position + 1
        result = {
            "object": "list",
            "data": items[start : start + limit],
            "has_more": start + limit < len(items),
            "url": "/v1/balance_transactions",
        }
        self.faults.after(op, PROVIDER, limit=limit, starting_after=starting_after)
        return result

    def load(self, kind: str, objects: list[Json]) -> None:
        """Import provider-JSON objects as they are (kind: payment_intent, charge, refund, dispute or event)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_KINDS)}")
        with self.store.transaction() as tx:
            for obj in objects:
                obj = dict(obj)
                if not isinstance(obj.get("id"), str):
                    raise ValueError(f"every {kind} needs a string id")
                obj.setdefault("object", kind)
                # A recorded retrieve carries the Charge expanded; keep Stripe's stored shape (an id) and the Charge.
                if kind == "payment_intent" and isinstance(obj.get("latest_charge"), dict):
                    charge = obj["latest_charge"]
                    tx.put("charge", charge["id"], charge)
                    obj["latest_charge"] = charge["id"]
                tx.put(kind, obj["id"], obj)

    def is_empty(self) -> bool:
        """True when the sandbox holds no Stripe objects."""
        return self.store.is_empty()

    def reset(self) -> None:
        """Delete every object, event and idempotency key."""
        self.store.reset()

    # -- internals -------------------------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(checked_now(self.clock).timestamp())

    def _create_refund(self, tx: StoreTx, payment_intent_id: str, amount_cents: int, metadata: dict[str, str]) -> Json:
        pi = _get(tx, "payment_intent", payment_intent_id)
        if pi["status"] != "succeeded" or not pi.get("latest_charge"):
            raise InvalidState(
                f"Payment {payment_intent_id} has not been paid (status {pi['status']}); nothing to refund"
            )
        charge = _get(tx, "charge", pi["latest_charge"])
        if charge.get("disputed") and self._has_open_chargeback(tx, charge["id"]):
            # Stripe refuses refunds on a charged-back charge (`charge_disputed`): the dispute decides the money.
            raise InvalidState(f"Payment {payment_intent_id} is disputed; it cannot be refunded while the dispute runs")
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
            raise InvalidState(f"A refund must be a positive whole number of cents, not {amount_cents!r}")
        remaining = int(charge["amount_captured"]) - int(charge["amount_refunded"])
        if amount_cents > remaining:
            raise InvalidState(
                f"Refund of {amount_cents} cents exceeds the {remaining} cents still refundable "
                f"on payment {payment_intent_id}"
            )
        refund_id = random_id("re_")
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount_cents,
            "balance_transaction": random_id("txn_"),
            "charge": charge["id"],
            "created": self._now(),
            "currency": charge["currency"],
            "metadata": metadata,
            "payment_intent": payment_intent_id,
            "reason": "requested_by_customer",
            "status": "succeeded",
        }
        charge["amount_refunded"] = int(charge["amount_refunded"]) + amount_cents
        charge["refunded"] = charge["amount_refunded"] >= int(charge["amount_captured"])
        tx.put("refund", refund_id, refund)
        tx.put("charge", charge["id"], charge)
        self._record_event(tx, "charge.refunded", charge)
        return refund

    def _save_card(self, tx: StoreTx, test_card: str, customer: str | None) -> Json:
        pm_id = random_id("pm_")
        brand, last4 = _CARD_DETAILS.get(test_card, ("visa", "0341"))
        pm = {
            "id": pm_id,
            "object": "payment_method",
            "card": {"brand": brand, "last4": last4},
            "created": self._now(),
            "customer": customer,
            "livemode": False,
            "metadata": {},
            "type": "card",
        }
        # The test card it stands for, so a later charge succeeds or declines as that card would (sandbox only).
        tx.put("payment_method", pm_id, {**pm, _TEST_CARD_FIELD: test_card})
        return pm

    def _card_for_hold(self, tx: StoreTx, customer: str, payment_method: str) -> str:
        """The test card behind `payment_method`: a saved card of this customer, or a test id used directly."""
        if payment_method in _CARD_DETAILS or payment_method in _DECLINES:
            return payment_method
        pm = _get(tx, "payment_method", payment_method)
        if pm.get("customer") != customer:
            raise _bad_request(f"The payment method {payment_method} does not belong to customer {customer}")
        return str(pm[_TEST_CARD_FIELD])

    def _place_hold(
        self, tx: StoreTx, customer: str, payment_method: str, amount: int, currency: str, metadata: dict[str, str]
    ) -> Json:
        _get(tx, "customer", customer)
        test_card = self._card_for_hold(tx, customer, payment_method)
        pi_id = random_id("pi_")
        now = self._now()
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "manual",
            "currency": currency,
            "customer": customer,
            "status": "requires_payment_method",
            "metadata": metadata,
            "client_secret": f"{pi_id}_secret_{random_id('', 25)}",
            "created": now,
            "canceled_at": None,
            "cancellation_reason": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_types": ["card"],
        }
        if test_card in _DECLINES:
            code, decline_code, message = _DECLINES[test_card]
            pi.update(
                payment_method=None,
                last_payment_error={
                    "type": "card_error",
                    "code": code,
                    "decline_code": decline_code,
                    "message": message,
                    "payment_method": {"id": payment_method, "object": "payment_method", "type": "card"},
                },
            )
            tx.put("payment_intent", pi_id, pi)
            self._record_event(tx, "payment_intent.payment_failed", pi)
            return pi
        brand, last4 = _CARD_DETAILS[test_card]
        charge_id = random_id("ch_")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": 0,
            "amount_refunded": 0,
            "balance_transaction": None,  # money moves (and Stripe writes a balance transaction) only on capture
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "captured": False,
            "created": now,
            "currency": currency,
            "customer": customer,
            "disputed": False,
            "livemode": False,
            "metadata": dict(metadata),
            "paid": True,
            "payment_intent": pi_id,
            "payment_method": payment_method,
            "payment_method_details": {"type": "card", "card": {"brand": brand, "last4": last4}},
            "refunded": False,
            "status": "succeeded",
        }
        pi.update(status="requires_capture", amount_capturable=amount, latest_charge=charge_id)
        tx.put("charge", charge_id, charge)
        tx.put("payment_intent", pi_id, pi)
        self._record_event(tx, "charge.succeeded", charge)
        self._record_event(tx, "payment_intent.amount_capturable_updated", pi)
        return pi

    def _capture(self, tx: StoreTx, payment_intent_id: str, amount_to_capture: int | None) -> Json:
        pi = _get(tx, "payment_intent", payment_intent_id)
        if pi["status"] == "succeeded":
            raise InvalidState(f"Payment {payment_intent_id} has already been captured")
        if pi["status"] == "canceled":
            raise InvalidState(f"The hold {payment_intent_id} was released and can no longer be captured")
        if pi["status"] != "requires_capture":
            raise InvalidState(f"Payment {payment_intent_id} is {pi['status']}; only a hold can be captured")
        capturable = int(pi["amount_capturable"])
        amount = capturable if amount_to_capture is None else amount_to_capture
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise _bad_request(f"The amount to capture must be a positive whole number of cents, not {amount!r}")
        if amount > capturable:
            raise InvalidState(
                f"Capturing {amount} cents exceeds the {capturable} cents held on payment {payment_intent_id}"
            )
        charge = _get(tx, "charge", pi["latest_charge"])
        charge.update(captured=True, amount_captured=amount, balance_transaction=random_id("txn_"))
        pi.update(status="succeeded", amount_capturable=0, amount_received=amount)
        tx.put("charge", charge["id"], charge)
        tx.put("payment_intent", payment_intent_id, pi)
        self._record_event(tx, "charge.captured", charge)
        self._record_event(tx, "payment_intent.succeeded", pi)
        return pi

    def _invoice_step(
        self, op: str, invoice_id: str, idempotency_key: str, step: Callable[[StoreTx, Json], Json]
    ) -> Json:
        """Run one invoice transition under Stripe's idempotency rules: the same key replays the first answer."""
        ctx: dict[str, Any] = {"invoice_id": invoice_id, "idempotency_key": idempotency_key}
        self.faults.before(op, PROVIDER, **ctx)
        fingerprint = _fingerprint(op, invoice_id)
        with self.store.transaction() as tx:
            result = _replay(tx, idempotency_key, fingerprint)
            if result is None:
                result = step(tx, _get(tx, "invoice", invoice_id))
                tx.put("invoice", invoice_id, result)
                tx.remember_key(
                    _IDEMPOTENCY_SCOPE, idempotency_key, "invoice", invoice_id, fingerprint=fingerprint, response=result
                )
        self.faults.after(op, PROVIDER, **ctx)
        return result

    def _draft_invoice(
        self,
        tx: StoreTx,
        customer: str,
        lines: Sequence[InvoiceLine],
        days_until_due: int,
        metadata: dict[str, str],
        custom_fields: list[dict[str, str]],
        footer: str | None,
    ) -> Json:
        cus = _get(tx, "customer", customer)
        invoice_id = random_id("in_")
        now = self._now()
        items: list[Json] = []
        for line in lines:
            rates = [_get(tx, "tax_rate", rate_id) for rate_id in line["tax_rate_ids"]]
            amount = int(line["amount_cents"])
            taxes = [_line_tax_entry(amount, rate) for rate in rates]
            items.append(
                {
                    "id": random_id("il_"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": self.currency,
                    "description": line["description"],
                    "invoice": invoice_id,
                    "livemode": False,
                    "metadata": {},
                    "quantity": 1,
                    "subtotal": amount,
                    "taxes": taxes,
                }
            )
        subtotal = sum(int(item["amount"]) for item in items)
        total_taxes = [tax for item in items for tax in item["taxes"]]
        all_tax = sum(int(tax["amount"]) for tax in total_taxes)
        total = subtotal + sum(int(t["amount"]) for t in total_taxes if t["tax_behavior"] == "exclusive")
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "amount_due": total,
            "amount_paid": 0,
            "amount_remaining": total,
            "attempted": False,
            "auto_advance": False,
            "collection_method": "send_invoice",
            "created": now,
            "currency": self.currency,
            "custom_fields": custom_fields or None,
            "customer": customer,
            "customer_email": cus.get("email"),
            "customer_name": cus.get("name"),
            "days_until_due": days_until_due,
            "due_date": None,
            "effective_at": None,
            "footer": footer,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {"object": "list", "data": items, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": metadata,
            "number": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal - (all_tax - (total - subtotal)),
            "total": total,
            "total_excluding_tax": total - all_tax,
            "total_taxes": total_taxes,
        }
        tx.put("invoice", invoice_id, invoice)
        self._record_event(tx, "invoice.created", invoice)
        return invoice

    @staticmethod
    def _has_open_chargeback(tx: StoreTx, charge_id: str) -> bool:
        # Inquiries (`warning_*`) and won disputes still allow refunds; a running or lost chargeback does not.
        return any(
            d.get("charge") == charge_id and d.get("status") in ("needs_response", "under_review", "lost")
            for d in tx.list("dispute")
        )

    def _record_event(self, tx: StoreTx, event_type: str, obj: Json) -> None:
        event_id = random_id("evt_")
        tx.put(
            "event",
            event_id,
            {
                "id": event_id,
                "object": "event",
                "type": event_type,
                "created": self._now(),
                "data": {"object": json.loads(json.dumps(obj))},  # a snapshot, not a live reference
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
            },
        )

    def _list(
        self,
        kind: str,
        *,
        limit: int,
        starting_after: str | None,
        where: Callable[[Json], bool] | None = None,
    ) -> Json:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise _bad_request(f"limit must be between 1 and 100, not {limit!r}")
        with self.store.read() as tx:
            records = tx.records(kind)
        # Newest first like Stripe; creation order breaks ties within one second.
        records.sort(key=lambda rec: (_created(rec.data), rec.ord), reverse=True)
        items = [rec.data for rec in records if where is None or where(rec.data)]
        start = 0
        if starting_after is not None:
            position = next((i for i, item in enumerate(items) if item.get("id") == starting_after), None)
            if position is None:
                raise NotFound(f"No such {_LABELS[kind]}: {starting_after}")
            start = position + 1
        return {
            "object": "list",
            "data": items[start : start + limit],
            "has_more": start + limit < len(items),
            "url": _URLS[kind],
        }


# Stripe's dispute evidence fields (API reference); the sandbox refuses others as Stripe does.
DISPUTE_EVIDENCE_FIELDS = frozenset(
    {
        "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
        "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
        "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation",
        "duplicate_charge_explanation", "duplicate_charge_id", "product_description", "receipt", "refund_policy",
        "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "service_documentation",
        "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
        "uncategorized_file", "uncategorized_text",
    }
)  # fmt: skip


def card_fee(amount_cents: int) -> int:
    """Stripe's standard Canadian card fee: 2.9 % + 30 ¢ (what the sandbox charges; live fees come from Stripe)."""
    return round(amount_cents * 29 / 1000) + 30


def _txn(txn_id: str, type_: str, category: str, source: Json, amount: int, fee: int = 0) -> Json:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": int(source.get("created") or 0) + 2 * 86_400,
        "created": int(source.get("created") or 0),
        "currency": source.get("currency") or "cad",
        "description": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "currency": source.get("currency") or "cad", "type": "stripe_fee"}]
        if fee
        else [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source["id"],
        "status": "available",
        "type": type_,
    }


def _get(tx: StoreTx, kind: str, object_id: str) -> Json:
    obj = tx.get(kind, object_id)
    if obj is None:
        raise NotFound(f"No such {_LABELS[kind]}: {object_id}")
    return obj


def _replay(tx: StoreTx, idempotency_key: str, fingerprint: str) -> Json | None:
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
        raise _bad_request("An idempotency key must be 1 to 255 characters")
    seen = tx.lookup_key(_IDEMPOTENCY_SCOPE, idempotency_key)
    if seen is None:
        return None
    if seen.fingerprint != fingerprint:
        raise _bad_request(f"Idempotency key {idempotency_key!r} was already used for a different request")
    return seen.response


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _line_tax_entry(amount: int, rate: Json) -> Json:
    """A line's tax under one exclusive rate, shaped as API 2026 reports it (`taxes` / `total_taxes` entries)."""
    rate_bps = round(float(rate["percentage"]) * 100)
    inclusive = bool(rate.get("inclusive"))
    # An inclusive rate's tax is inside the amount: taxable = amount / (1 + rate), rounded half up.
    taxable = (amount * 20_000 + 10_000 + rate_bps) // (2 * (10_000 + rate_bps)) if inclusive else amount
    return {
        "amount": amount - taxable if inclusive else line_tax(amount, rate_bps),
        "tax_behavior": "inclusive" if inclusive else "exclusive",
        "tax_rate_details": {"tax_rate": rate["id"]},
        "taxability_reason": "standard_rated",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


def _check_test_card(payment_method: str) -> None:
    if payment_method not in _CARD_DETAILS and payment_method not in _DECLINES:
        known = ", ".join(sorted([*_CARD_DETAILS, *_DECLINES]))
        raise NotFound(f"No such payment method {payment_method!r} in the sandbox (known: {known})")


def _check_amount(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise _bad_request(f"Amount must be a positive whole number of cents, not {amount_cents!r}")


def _check_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise _bad_request(f"Invalid currency {currency!r}: expected a three-letter ISO code")
    return currency.lower()


def _check_metadata(metadata: dict[str, str]) -> None:
    # Stripe's limits (REFERENCE.md): the real API would refuse these with a 400.
    if len(metadata) > 50:
        raise _bad_request("Metadata can have at most 50 keys")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 40:
            raise _bad_request(f"Metadata key {key!r} must be 1 to 40 characters")
        if not isinstance(value, str) or len(value) > 500:
            raise _bad_request(f"Metadata value for {key!r} must be a string of at most 500 characters")


def _bad_request(message: str) -> GatewayError:
    return GatewayError(message, transient=False, provider=PROVIDER, status=400)


def _created(data: Json) -> int:
    """An object's `created` for ordering; a damaged one (not a finite number) sorts as the oldest, never crashes a
    listing."""
    value = data.get("created")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return int(value)
