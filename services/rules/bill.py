"""What a price is made of, as customers and the front desk read it: the subtotal, the multi-day discount, one line
per tax ("GST 5 %  $4.50") and the total, tax included. Quotes, the booking form, the pay page, emails, receipts and
the booking view all show money through here, so they never disagree.

Two sources, never mixed:
- a Quote (a sale not yet made): its own per-day figures, taxed at the rates in force (services/rules/pricing.py);
- a booking's stored figures (amount_cents, tax_cents, discount_cents, the days' price_cents/tax_cents) and its tax
  snapshot. An existing booking is never taxed again at today's rates: the amounts are the stored ones, the snapshot
  only names the rates. When more than one rate applies to room hire, the stored tax is split per rate by applying
  the snapshot's rates to the days' stored nets (THE rounding rule, services/rules/tax.py); when that does not give
  back exactly the stored tax, it shows as one line naming every rate rather than as figures that do not add up.

A sale without tax (an empty snapshot, or one naming no rate) has no tax lines at all — never "GST 0 %".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.rules.fmt import money
from services.rules.pricing import Quote
from services.rules.tax import TaxPolicy, policy_from

ROOM = "room"  # the line kind of a room's hire (services.rules.tax.LINE_KINDS)


@dataclass(frozen=True)
class TaxAmount:
    """One tax as a line on a bill: its label as sold ('GST 5 %') and the cents of it."""

    code: str
    label: str
    cents: int


@dataclass(frozen=True)
class Bill:
    """A price in parts. `total_cents` is what is charged, tax included; `taxed` is False for a sale without tax."""

    subtotal_cents: int  # before the discount and before tax
    discount_cents: int
    discount_percent: int
    taxes: tuple[TaxAmount, ...]
    total_cents: int
    taxed: bool
    registration_number: str | None = None  # the one recorded with the rates it was sold at

    @property
    def tax_cents(self) -> int:
        return sum(t.cents for t in self.taxes)

    @property
    def net_cents(self) -> int:
        """Before tax, after the discount."""
        return self.total_cents - self.tax_cents

    def rows(self, currency: str) -> list[tuple[str, str]]:
        """(label, amount) lines as a customer reads them: Subtotal, discount, each tax, Total. A price with neither
        discount nor tax is just its Total."""
        out: list[tuple[str, str]] = []
        if self.discount_cents or self.taxes:
            out.append(("Subtotal", money(self.subtotal_cents, currency)))
        if self.discount_cents:
            pct = f" ({self.discount_percent} %)" if self.discount_percent else ""
            out.append((f"Multi-day discount{pct}", money(-self.discount_cents, currency)))
        out += [(t.label, money(t.cents, currency)) for t in self.taxes]
        out.append(("Total", money(self.total_cents, currency)))
        return out


def quote_bill(quote: Quote) -> Bill:
    """A quote's parts, per tax summed over its days (each day's tax rounded on its own)."""
    taxes: dict[str, TaxAmount] = {}
    for leg in quote.legs:
        for t in leg.taxes:
            seen = taxes.get(t.code)
            taxes[t.code] = TaxAmount(t.code, t.label, (seen.cents if seen else 0) + t.tax_cents)
    policy = _policy(quote.tax_snapshot)
    return Bill(
        subtotal_cents=quote.subtotal_cents,
        discount_cents=quote.discount_cents,
        discount_percent=quote.discount_percent,
        taxes=tuple(taxes.values()),
        total_cents=quote.total_cents,
        taxed=sold_with_tax(quote.tax_snapshot),
        registration_number=policy.registration_number if policy else None,
    )


def stored_bill(
    *,
    total_cents: int,
    tax_cents: int,
    tax_snapshot: Mapping[str, object] | None,
    discount_cents: int = 0,
    discount_percent: int = 0,
    day_nets: Sequence[int] = (),
) -> Bill:
    """The parts of amounts a booking stored: `total_cents` tax included, `tax_cents` inside it, at the snapshot's
    rates; `day_nets` (each day's price less its tax) split the tax per rate when several rates apply."""
    taxes = taxes_inside(tax_cents, tax_snapshot, day_nets)
    policy = _policy(tax_snapshot)
    return Bill(
        subtotal_cents=total_cents - tax_cents + discount_cents,
        discount_cents=discount_cents,
        discount_percent=discount_percent,
        taxes=taxes,
        total_cents=total_cents,
        taxed=sold_with_tax(tax_snapshot),
        registration_number=policy.registration_number if policy else None,
    )


class SoldBooking(Protocol):
    """What a booking row stores about its sale (models.tables.Booking has these)."""

    @property
    def amount_cents(self) -> int: ...
    @property
    def tax_cents(self) -> int: ...
    @property
    def discount_cents(self) -> int: ...
    @property
    def tax_snapshot(self) -> Mapping[str, Any]: ...
    @property
    def pricing_snapshot(self) -> Mapping[str, Any]: ...


def sold_bill(booking: SoldBooking) -> Bill:
    """What the booking's own payment charged, in parts: its stored amount, tax and discount at the rates it was sold
    at (the pay page, the confirmation, the receipt of a booking never changed)."""
    pct = booking.pricing_snapshot.get("discount_percent")
    return stored_bill(
        total_cents=booking.amount_cents,
        tax_cents=booking.tax_cents,
        tax_snapshot=booking.tax_snapshot,
        discount_cents=booking.discount_cents,
        discount_percent=pct if isinstance(pct, int) else 0,
        day_nets=sold_day_nets(booking.pricing_snapshot),
    )


def sold_day_nets(pricing_snapshot: Mapping[str, Any]) -> list[int]:
    """Each day's net as sold (its price less its tax, from the booking's pricing snapshot)."""
    legs, legs_tax = pricing_snapshot.get("legs"), pricing_snapshot.get("legs_tax")
    if not isinstance(legs, Mapping):
        return []
    tax = legs_tax if isinstance(legs_tax, Mapping) else {}
    return [int(gross) - int(tax.get(day, 0)) for day, gross in sorted(legs.items())]


def taxes_inside(
    tax_cents: int, tax_snapshot: Mapping[str, object] | None, day_nets: Sequence[int] = ()
) -> tuple[TaxAmount, ...]:
    """The stored `tax_cents` of room hire as one line per rate of the snapshot; () when sold without tax."""
    if not sold_with_tax(tax_snapshot):
        return ()
    policy = _policy(tax_snapshot)
    rates = [rate for rate in policy.rates if ROOM in rate.applies_to] if policy else []
    if not rates:
        # A snapshot this code cannot read, or one whose rates leave room hire untaxed: the stored tax, unnamed.
        return (TaxAmount("TAX", "Tax", tax_cents),) if tax_cents else ()
    if len(rates) == 1:
        return (TaxAmount(rates[0].code, rates[0].label, tax_cents),)
    assert policy is not None
    split = policy.tax_for_lines([(ROOM, net) for net in day_nets]) if day_nets else ()
    if split and sum(line.tax_cents for line in split) == tax_cents:
        return tuple(TaxAmount(line.code, line.label, line.tax_cents) for line in split)
    return (TaxAmount("+".join(r.code for r in rates), " + ".join(r.label for r in rates), tax_cents),)


def registration_to_show(bill: Bill, configured: str | None) -> str | None:
    """The GST/HST registration number beside a taxed price: the one recorded with the rates it was sold at, else the
    one configured now (set after the sale: the registrant is the same venue); None for a sale without tax."""
    if not bill.taxed:
        return None
    return bill.registration_number or configured or None


def tax_words(taxes: Sequence[TaxAmount], currency: str) -> str:
    """'GST 5 % $4.50' (several: joined with ', '); '' without tax."""
    return ", ".join(f"{t.label} {money(t.cents, currency)}" for t in taxes)


def sold_with_tax(tax_snapshot: Mapping[str, object] | None) -> bool:
    """Whether a sale was taxed: its snapshot names at least one rate. An empty snapshot (the old system's, or made
    before tax) and one of a venue with no rates configured both mean no tax; a snapshot this code cannot read still
    counts as taxed, so its stored tax is shown rather than hidden."""
    if not tax_snapshot:
        return False
    try:
        policy = policy_from(tax_snapshot)
    except ValueError:
        return True
    return policy is not None and bool(policy.rates)


def _policy(tax_snapshot: Mapping[str, object] | None) -> TaxPolicy | None:
    """The snapshot's rates, or None for a sale without tax or a snapshot this code cannot honour (shown unnamed)."""
    try:
        return policy_from(tax_snapshot)
    except ValueError:
        return None
