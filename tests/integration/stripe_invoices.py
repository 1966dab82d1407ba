"""Stripe Invoicing for the localstripe shim (test-only): `/v1/invoices*` and `/v1/invoiceitems` as Stripe documents
them at API 2026-10-28.endive, served by the shim because localstripe's Invoice is the legacy model.

localstripe 1.15 builds an invoice from the customer's pending invoice items at create time (an empty draft is a 400),
refuses `collection_method`, `days_until_due`, `custom_fields`, `footer`, `currency`, `auto_advance` and
`pending_invoice_items_behavior`, has no `/finalize` or `/send`, no `number` or `hosted_invoice_url`, reports tax as
`total_tax_amounts` (Stripe now reports `total_taxes` and per-line `taxes`) and pays only by charging the customer's
default card. What it does support is used: customers and tax rates are localstripe's own (looked up through
`lookup`), and each line's tax is computed the way localstripe's `TaxRate._tax_amount` does (Decimal, half up), not
with the product's rounding helper, so the contract tests compare two independent computations.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# (method, path) -> (status, JSON body) of a GET forwarded to localstripe.
Lookup = Callable[[str], tuple[int, Any]]

PATHS = re.compile(
    r"^/v1/(?:invoices(?:/(?P<id>in_\w+)(?:/(?P<verb>finalize|send|void|pay))?)?|invoiceitems|invoice_payments)$"
)


def form_tree(form: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`custom_fields[0][name]=…`, `tax_rates[0]=…`, `metadata[k]=…`) back into JSON."""
    root: dict[str, Any] = {}
    for key, value in form:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part, nxt in itertools.zip_longest(parts, parts[1:]):
            if nxt is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _error(status: int, message: str, code: str | None = None) -> tuple[int, Any]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        error["code"] = code
    return status, {"error": error}


@dataclass
class Invoicing:
    """The shim's invoices, in memory; `clear()` with the shim's reset."""

    hosted_base: str = "http://127.0.0.1"
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Invoice id -> its invoice payments, newest first (GET /v1/invoice_payments?invoice=…).
    payments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def clear(self) -> None:
        with self.lock:
            self.invoices.clear()
            self.payments.clear()
            self._counter = itertools.count(1)

    def handle(
        self, method: str, path: str, query: list[tuple[str, str]], form: list[tuple[str, str]], lookup: Lookup
    ) -> tuple[int, Any]:
        match = PATHS.match(path)
        assert match is not None
        body = form_tree(form)
        with self.lock:
            if path == "/v1/invoiceitems" and method == "POST":
                return self._add_item(body, lookup)
            if path == "/v1/invoices" and method == "POST":
                return self._create(body, lookup)
            if path == "/v1/invoices" and method == "GET":
                return self._list(dict(query))
            if path == "/v1/invoice_payments" and method == "GET":
                wanted = dict(query).get("invoice", "")
                data = self.payments.get(wanted, [])
                return 200, {"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"}
            invoice = self.invoices.get(match.group("id") or "")
            if invoice is None:
                return _error(404, f"No such invoice: '{match.group('id')}'", "resource_missing")
            verb = match.group("verb")
            if method == "GET" and verb is None:
                return 200, invoice
            if method == "POST" and verb:
                return self._transition(invoice, verb, body)
        return _error(405, f"{method} {path} is not served by the test shim")

    # -- endpoints ----------------------------------------------------------------------------------------------

    def _create(self, body: dict[str, Any], lookup: Lookup) -> tuple[int, Any]:
        customer = body.get("customer")
        status, cus = lookup(f"/v1/customers/{customer}")
        if status != 200:
            return _error(404, f"No such customer: '{customer}'", "resource_missing")
        if body.get("collection_method") == "send_invoice" and "days_until_due" not in body:
            return _error(400, "Missing required param: days_until_due.", "parameter_missing")
        fields = body.get("custom_fields") or []
        if len(fields) > 4 or any(len(f["name"]) > 30 or len(f["value"]) > 140 for f in fields):
            return _error(400, "Invalid custom_fields: at most 4, name up to 30 and value up to 140 characters")
        invoice_id = "in_" + secrets.token_hex(12)
        now = _now()
        self.invoices[invoice_id] = {
            "id": invoice_id,
            "object": "invoice",
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "auto_advance": body.get("auto_advance") == "true",
            "collection_method": body.get("collection_method", "charge_automatically"),
            "created": now,
            "currency": body.get("currency", "usd"),
            "custom_fields": fields or None,
            "customer": customer,
            "customer_email": cus.get("email"),
            "customer_name": cus.get("name"),
            "days_until_due": int(body["days_until_due"]) if "days_until_due" in body else None,
            "due_date": None,
            "footer": body.get("footer"),
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False,
            "metadata": body.get("metadata") or {},
            "number": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "total": 0,
            "total_excluding_tax": 0,
            "total_taxes": [],
        }
        return 200, self.invoices[invoice_id]

    def _add_item(self, body: dict[str, Any], lookup: Lookup) -> tuple[int, Any]:
        invoice = self.invoices.get(body.get("invoice") or "")
        if invoice is None:
            return _error(400, "This test shim only adds invoice items to an invoice (`invoice=in_…`)")
        if invoice["status"] != "draft":
            return _error(400, f"Invoice {invoice['id']} is no longer a draft", "invoice_not_editable")
        amount = int(body["amount"])
        taxes = []
        for rate_id in body.get("tax_rates") or []:
            status, rate = lookup(f"/v1/tax_rates/{rate_id}")
            if status != 200:
                return _error(404, f"No such tax rate: '{rate_id}'", "resource_missing")
            taxes.append(_tax(amount, rate))
        line = {
            "id": "il_" + secrets.token_hex(12),
            "object": "line_item",
            "amount": amount,
            "currency": body.get("currency", invoice["currency"]),
            "description": body.get("description"),
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": body.get("metadata") or {},
            "quantity": 1,
            "subtotal": amount,
            "taxes": taxes,
        }
        invoice["lines"]["data"].append(line)
        _total(invoice)
        item = {**line, "id": "ii_" + secrets.token_hex(12), "object": "invoiceitem", "customer": invoice["customer"]}
        return 200, item

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        items = list(reversed(self.invoices.values()))  # creation order, newest first, as Stripe lists
        start = 0
        after = query.get("starting_after")
        if after:
            ids = [i["id"] for i in items]
            if after not in ids:
                return _error(404, f"No such invoice: '{after}'", "resource_missing")
            start = ids.index(after) + 1
        limit = int(query.get("limit", 10))
        page = items[start : start + limit]
        return 200, {"object": "list", "data": page, "has_more": start + limit < len(items), "url": "/v1/invoices"}

    def _transition(self, invoice: dict[str, Any], verb: str, body: dict[str, Any]) -> tuple[int, Any]:
        now = _now()
        status = invoice["status"]
        if verb == "finalize":
            if status != "draft":
                return _error(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.")
            invoice.update(
                status="open",
                number=f"LOCAL-{next(self._counter):04d}",
                hosted_invoice_url=f"{self.hosted_base}/i/{invoice['id']}",
                invoice_pdf=f"{self.hosted_base}/i/{invoice['id']}/pdf",
                amount_remaining=invoice["amount_due"],
                due_date=now + int(invoice["days_until_due"] or 0) * 86_400,
            )
            invoice["status_transitions"]["finalized_at"] = now
        elif verb == "send":  # Stripe sends an open invoice, or a paid one as a copy
            if status not in ("open", "paid"):
                return _error(400, f"You can only send an open or paid invoice; this one is {status}.")
        elif verb == "void":
            if status != "open":
                return _error(400, f"You can only void an open invoice; this one is {status}.")
            invoice.update(status="void", amount_remaining=0)
            invoice["status_transitions"]["voided_at"] = now
        elif verb == "pay":
            # Paid out of band, or — test-only `paid_with_payment_intent`, standing in for the customer paying on the
            # hosted page — with a PaymentIntent the test charged on localstripe: recorded as the invoice's payment.
            if status == "paid":
                return _error(400, "Invoice is already paid")
            if status != "open":
                return _error(400, f"You can only pay an open invoice; this one is {status}.")
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
            invoice["status_transitions"]["paid_at"] = now
            pi = body.get("paid_with_payment_intent")
            payment = {"type": "payment_intent", "payment_intent": pi} if pi else {"type": "out_of_band_payment"}
            self.payments.setdefault(invoice["id"], []).insert(
                0,
                {
                    "id": "inpay_" + secrets.token_hex(12),
                    "object": "invoice_payment",
                    "amount_paid": invoice["amount_due"],
                    "invoice": invoice["id"],
                    "payment": payment,
                    "status": "paid",
                },
            )
        return 200, invoice


def _tax(amount: int, rate: dict[str, Any]) -> dict[str, Any]:
    # localstripe's TaxRate._tax_amount; only exclusive rates are served (Room Desk's prices are before tax).
    tax = int(Decimal(str(amount * float(rate["percentage"]) / 100.0)).quantize(Decimal("1."), ROUND_HALF_UP))
    return {
        "amount": tax,
        "tax_behavior": "inclusive" if rate.get("inclusive") else "exclusive",
        "tax_rate_details": {"tax_rate": rate["id"]},
        "taxability_reason": "standard_rated",
        "taxable_amount": amount,
        "type": "tax_rate_details",
    }


def _total(invoice: dict[str, Any]) -> None:
    lines = invoice["lines"]["data"]
    subtotal = sum(line["amount"] for line in lines)
    taxes = [tax for line in lines for tax in line["taxes"]]
    total = subtotal + sum(t["amount"] for t in taxes)
    invoice.update(
        subtotal=subtotal,
        subtotal_excluding_tax=subtotal,
        total=total,
        total_excluding_tax=subtotal,
        total_taxes=taxes,
        amount_due=total,
    )


def _now() -> int:
    return int(time.time())
