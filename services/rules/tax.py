"""Sales tax (GST, and PST where the venue's accountant says so) on prices in integer cents.

Prices are net of tax; tax is added on top, per rate, to the lines a rate applies to. A line has a kind — room hire,
extras, equipment — and each rate says which kinds it applies to, because that is the accountant's call, not ours.

THE rounding rule: tax is computed PER LINE AND PER RATE and rounded half up to the cent (5 % of $10.10 = 50.5 ¢ →
51 ¢). Totals are sums of those rounded amounts, never a rate applied to a total. CRA allows rounding per line or per
invoice; we round per line so that a day's tax is fixed when the day is sold, and refunding one day of a multi-day
booking reverses exactly that day's tax. No floats anywhere: a rate is integer basis points (500 = 5 %).

A booking keeps a snapshot of the rates it was sold at (`TaxPolicy.snapshot`), so a later change of rates never
changes what an existing booking owes or refunds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.rules.rounding import round_half_up

LINE_KINDS: tuple[str, ...] = ("room", "extras", "equipment")
BPS_PER_WHOLE = 10_000
ROUNDING_RULE = "per-line-half-up"
# CRA's prescribed-information thresholds (Input Tax Credit Information Regulations, since 2021), on the total paid
# or payable, tax included.
REGISTRATION_FROM_CENTS = 10_000
FULL_DETAIL_FROM_CENTS = 50_000

_REGISTRATION_SHAPE = re.compile(r"(\d{9})([A-Z]{2})(\d{4})")


@dataclass(frozen=True)
class TaxRate:
    """One tax the venue charges: `rate_bps` basis points of the net of every line whose kind is in `applies_to`."""

    code: str
    label: str
    rate_bps: int
    applies_to: frozenset[str]

    def __post_init__(self) -> None:
        if not self.code.strip():
            raise ValueError("a tax rate needs a code (e.g. GST)")
        if not self.label.strip():
            raise ValueError(f"{self.code}: give a label (e.g. {self.code} 5 %)")
        if not 0 <= self.rate_bps <= BPS_PER_WHOLE:
            raise ValueError(f"{self.code}: rate {self.rate_bps} bps is outside 0–10000 (500 = 5 %)")
        unknown = sorted(set(self.applies_to) - set(LINE_KINDS))
        if unknown:
            raise ValueError(
                f"{self.code}: unknown line kind {', '.join(map(repr, unknown))} (use {', '.join(LINE_KINDS)})"
            )

    def tax_on(self, net_cents: int) -> int:
        """This rate on one line's net, rounded half up to the cent."""
        return round_half_up(net_cents * self.rate_bps, BPS_PER_WHOLE)


@dataclass(frozen=True)
class TaxLine:
    """One rate's tax on one line (or, from `tax_for_lines`, on all the lines it applies to)."""

    code: str
    label: str
    rate_bps: int
    base_cents: int
    tax_cents: int


@dataclass(frozen=True)
class TaxPolicy:
    """The rates in force (in the order receipts list them) and the venue's GST/HST registration number."""

    rates: tuple[TaxRate, ...]
    registration_number: str | None = None

    def __post_init__(self) -> None:
        codes = [rate.code.upper() for rate in self.rates]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"tax code {', '.join(duplicates)} is given twice")
        if self.registration_number is not None:
            problem = registration_problem(self.registration_number)
            if problem:
                raise ValueError(problem)

    def taxes_for(self, kind: str, net_cents: int) -> tuple[TaxLine, ...]:
        """Every rate that applies to a line of this kind, each rounded on its own (THE rounding rule)."""
        if kind not in LINE_KINDS:
            raise ValueError(f"unknown line kind {kind!r} (use {', '.join(LINE_KINDS)})")
        if net_cents < 0:
            raise ValueError("a line's net is 0 or more (discounts are taken off the line before tax)")
        return tuple(
            TaxLine(rate.code, rate.label, rate.rate_bps, net_cents, rate.tax_on(net_cents))
            for rate in self.rates
            if kind in rate.applies_to
        )

    def tax_for_lines(self, lines: Sequence[tuple[str, int]]) -> tuple[TaxLine, ...]:
        """Per code, the sum of the per-line taxes and of the nets they were taken on; a rate that applies to none
        of the lines is left out."""
        per_line = [tax for kind, net in lines for tax in self.taxes_for(kind, net)]
        return tuple(
            TaxLine(
                rate.code,
                rate.label,
                rate.rate_bps,
                sum(t.base_cents for t in per_line if t.code == rate.code),
                sum(t.tax_cents for t in per_line if t.code == rate.code),
            )
            for rate in self.rates
            if any(t.code == rate.code for t in per_line)
        )

    def total_tax_cents(self, lines: Sequence[tuple[str, int]]) -> int:
        """All the tax on these lines."""
        return sum(line.tax_cents for line in self.tax_for_lines(lines))

    def snapshot(self) -> dict[str, object]:
        """The JSON-safe form a booking keeps, so it is taxed and refunded at the rates it was sold at."""
        return {
            "rounding": ROUNDING_RULE,
            "registration_number": self.registration_number,
            "rates": [
                {
                    "code": rate.code,
                    "label": rate.label,
                    "rate_bps": rate.rate_bps,
                    "applies_to": [kind for kind in LINE_KINDS if kind in rate.applies_to],
                }
                for rate in self.rates
            ],
        }

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, object]) -> TaxPolicy:
        """The policy a snapshot recorded; raises ValueError for a snapshot this code cannot honour."""
        if snapshot.get("rounding") != ROUNDING_RULE:
            raise ValueError(f"tax snapshot uses rounding {snapshot.get('rounding')!r}, not {ROUNDING_RULE!r}")
        raw_rates = snapshot.get("rates")
        if not isinstance(raw_rates, list):
            raise ValueError("tax snapshot has no list of rates")
        number = snapshot.get("registration_number")
        return cls(
            rates=tuple(_rate_from_json(raw) for raw in raw_rates),
            registration_number=None if number is None else str(number),
        )


def _rate_from_json(raw: object) -> TaxRate:
    """One rate of a snapshot, checked like a configured one."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("applies_to"), list):
        raise ValueError(f"tax snapshot rate {raw!r} is not a {{code, label, rate_bps, applies_to}} object")
    rate_bps = raw.get("rate_bps")
    if not isinstance(rate_bps, int) or isinstance(rate_bps, bool):
        raise ValueError(f"tax snapshot rate {raw!r}: rate_bps is not a whole number of basis points")
    kinds = frozenset(map(str, raw["applies_to"]))
    return TaxRate(str(raw.get("code", "")), str(raw.get("label", "")), rate_bps, kinds)


def policy_from(snapshot: Mapping[str, object] | None) -> TaxPolicy | None:
    """The rates a booking was sold at; None for a booking sold without tax (an empty snapshot: the old system's, or
    one made before tax was charged)."""
    if not snapshot:
        return None
    return TaxPolicy.from_snapshot(snapshot)


def refund_split(
    refund_cents: int,
    gross_cents: int,
    tax_cents: int,
    *,
    already_refunded_cents: int = 0,
    already_refunded_tax_cents: int = 0,
) -> tuple[int, int]:
    """(net, tax) of a refund of part of a tax-inclusive amount `gross_cents` that carried `tax_cents` of tax.

    The tax reversed is the proportional share of everything refunded so far, rounded half up, less the tax already
    reversed — so refunds in several parts never drift: the one that brings the total to the gross takes exactly the
    tax that is left, and no part reverses more tax than is left or leaves more net refunded than was paid.
    """
    _check_refund(refund_cents, gross_cents, tax_cents, already_refunded_cents, already_refunded_tax_cents)
    if refund_cents == 0:
        return 0, 0
    tax_left = tax_cents - already_refunded_tax_cents
    refunded = already_refunded_cents + refund_cents
    if refunded == gross_cents:
        return refund_cents - tax_left, tax_left
    share = round_half_up(refunded * tax_cents, gross_cents) - already_refunded_tax_cents
    net_left = (gross_cents - tax_cents) - (already_refunded_cents - already_refunded_tax_cents)
    # Only an earlier split made some other way can push the share outside these bounds; they keep both parts whole.
    share = min(max(share, refund_cents - net_left, 0), tax_left, refund_cents)
    return refund_cents - share, share


def _check_refund(refund: int, gross: int, tax: int, already: int, already_tax: int) -> None:
    """Refuse figures no real refund has: the caller has a bug, and a tax figure built on it would be wrong."""
    if not 0 <= tax <= gross:
        raise ValueError(f"tax {tax} ¢ must be between 0 and the gross {gross} ¢")
    if not 0 <= already_tax <= min(already, tax):
        raise ValueError(f"tax already refunded ({already_tax} ¢) must be between 0 and {min(already, tax)} ¢")
    if already - already_tax > gross - tax:
        raise ValueError(f"net already refunded ({already - already_tax} ¢) exceeds the net paid ({gross - tax} ¢)")
    if refund < 0 or already < 0 or already + refund > gross:
        raise ValueError(f"refunding {refund} ¢ after {already} ¢ would exceed the {gross} ¢ paid")


@dataclass(frozen=True)
class ReceiptRequirements:
    """What a receipt for this total must show (CRA's prescribed information), and why, in staff's words."""

    total_cents: int
    tax_rate_or_amount: bool
    registration_number: bool
    buyer_name: bool
    description: bool
    payment_terms: bool
    reasons: tuple[str, ...]


def receipt_requirements(total_cents: int) -> ReceiptRequirements:
    """CRA's thresholds on the total paid or payable, tax included: from $100 the supplier's registration number,
    from $500 also the buyer's name, a description and the payment terms. The GST rate or amount is shown on every
    receipt (below $100 that is more than CRA asks, and it is what the venue wants)."""
    if total_cents < 0:
        raise ValueError("a receipt's total is 0 or more")
    with_number = total_cents >= REGISTRATION_FROM_CENTS
    full = total_cents >= FULL_DETAIL_FROM_CENTS
    reasons = ["always: the GST/HST charged (its rate or amount)"]
    if with_number:
        reasons.append("from $100: the supplier's GST/HST registration number")
    if full:
        reasons.append("from $500: the buyer's name, a description of what was supplied and the payment terms")
    return ReceiptRequirements(
        total_cents=total_cents,
        tax_rate_or_amount=True,
        registration_number=with_number,
        buyer_name=full,
        description=full,
        payment_terms=full,
        reasons=tuple(reasons),
    )


def normalise_registration_number(number: str) -> str:
    """The form we store and print: spaces dropped, letters upper case ('123456782 rt 0001' → '123456782RT0001')."""
    return "".join(number.split()).upper()


def registration_problem(number: str) -> str | None:
    """What is wrong with a GST/HST registration number, or None: it is the 9-digit business number (whose last
    digit is a Luhn check digit, as CRA issues them) + "RT" (the GST/HST program) + a 4-digit reference."""
    compact = normalise_registration_number(number)
    match = _REGISTRATION_SHAPE.fullmatch(compact)
    if match is None:
        return f"{number.strip()!r} is not a GST/HST registration number: 9 digits, RT, 4 digits (123456782 RT 0001)"
    business_number, program, _reference = match.groups()
    if program != "RT":
        return f"{compact} is a {program} account, not GST/HST: a GST/HST registration number has RT after the 9 digits"
    if not _luhn_ok(business_number):
        return f"{compact}: the business number {business_number} fails its check digit (a digit mistyped?)"
    return None


def _luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check: double every second digit from the right, add the digits, a multiple of 10."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0
