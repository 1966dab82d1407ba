"""services.rules.bill: a stored booking's tax shown per rate without being worked out again at today's rates."""

from __future__ import annotations

from services.rules.bill import TaxAmount, sold_with_tax, stored_bill, taxes_inside
from services.rules.tax import TaxPolicy, TaxRate

GST = TaxRate("GST", "GST 5 %", 500, frozenset({"room"}))
PST = TaxRate("PST", "PST 7 %", 700, frozenset({"room"}))
BOTH = TaxPolicy(rates=(GST, PST), registration_number="123456782RT0001").snapshot()


def test_two_rates_on_room_hire_split_the_stored_tax_by_the_days_nets() -> None:
    # Two days of $81.90 net: GST 409.5 → 410 ¢ and PST 573.3 → 573 ¢ each day.
    assert taxes_inside(1966, BOTH, [8190, 8190]) == (
        TaxAmount("GST", "GST 5 %", 820),
        TaxAmount("PST", "PST 7 %", 1146),
    )


def test_a_split_that_does_not_give_back_the_stored_tax_shows_one_line_naming_both_rates() -> None:
    assert taxes_inside(1967, BOTH, [8190, 8190]) == (TaxAmount("GST+PST", "GST 5 % + PST 7 %", 1967),)
    assert taxes_inside(1966, BOTH) == (TaxAmount("GST+PST", "GST 5 % + PST 7 %", 1966),)  # no nets to split by


def test_no_tax_line_for_a_sale_without_tax_and_the_stored_tax_for_a_snapshot_we_cannot_read() -> None:
    none_configured = TaxPolicy(rates=()).snapshot()
    assert not sold_with_tax({}) and not sold_with_tax(none_configured)
    assert taxes_inside(0, {}) == () and taxes_inside(0, none_configured) == ()
    unreadable = {"rounding": "per-invoice", "rates": []}
    assert sold_with_tax(unreadable) and taxes_inside(450, unreadable) == (TaxAmount("TAX", "Tax", 450),)


def test_a_stored_bill_adds_up_to_what_was_charged() -> None:
    bill = stored_bill(
        total_cents=25800,
        tax_cents=1230,
        tax_snapshot=TaxPolicy(rates=(GST,)).snapshot(),
        discount_cents=2730,
        discount_percent=10,
    )
    assert (bill.subtotal_cents, bill.net_cents, bill.tax_cents) == (27300, 24570, 1230)
    assert bill.rows("CAD") == [
        ("Subtotal", "$273.00"),
        ("Multi-day discount (10 %)", "-$27.30"),
        ("GST 5 %", "$12.30"),
        ("Total", "$258.00"),
    ]
    assert stored_bill(total_cents=9000, tax_cents=0, tax_snapshot={}).rows("CAD") == [("Total", "$90.00")]
