"""Sales tax rules (issue 15, step 1): GST per line with one rounding rule, PST where configured, refunds that reverse
exactly the tax charged, CRA's receipt thresholds, the booking's rate snapshot and the settings that configure it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.core.settings import Settings
from services.rules.policy import Policy
from services.rules.pricing import price
from services.rules.tax import (
    TaxLine,
    TaxPolicy,
    TaxRate,
    receipt_requirements,
    refund_split,
    registration_problem,
)

GST = TaxRate("GST", "GST 5 %", 500, frozenset({"room", "extras"}))
PST = TaxRate("PST", "PST 7 %", 700, frozenset({"extras", "equipment"}))
GST_ONLY = TaxPolicy(rates=(GST,))
GST_AND_PST = TaxPolicy(rates=(GST, PST))
VALID_NUMBER = "123456782RT0001"  # 12345678 + Luhn check digit 2
POLICY = Policy(tz=ZoneInfo("America/Vancouver"))
MON, TUE, WED = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


def test_a_one_day_room_booking_of_90_dollars_carries_4_50_gst() -> None:
    quote = price(
        room_slug="boardroom",
        hourly_cents=4500,
        discount_eligible=False,
        dates=[WED],
        minutes_per_day=120,
        policy=POLICY,
    )
    assert quote.total_cents == 9000
    assert GST_ONLY.taxes_for("room", quote.total_cents) == (TaxLine("GST", "GST 5 %", 500, 9000, 450),)


def test_a_three_day_discounted_booking_is_taxed_per_day_after_the_discount() -> None:
    # $11.22 a day, 10 % off for 3 days → $10.10 a day; 5 % of each is 50.5 ¢ → 51 ¢ (per line, half up).
    quote = price(
        room_slug="union-room",
        hourly_cents=1122,
        discount_eligible=True,
        dates=[MON, TUE, WED],
        minutes_per_day=60,
        policy=POLICY,
    )
    assert [leg.total_cents for leg in quote.legs] == [1010, 1010, 1010]
    lines = [("room", leg.total_cents) for leg in quote.legs]
    assert [GST_ONLY.taxes_for(kind, net)[0].tax_cents for kind, net in lines] == [51, 51, 51]
    # Per line, not per invoice: 5 % of $30.30 would be $1.52; the booking carries 3 × 51 ¢.
    assert GST_ONLY.tax_for_lines(lines) == (TaxLine("GST", "GST 5 %", 500, 3030, 153),)
    assert GST_ONLY.total_tax_cents(lines) == 153


def test_pst_is_charged_on_an_extras_line_only_when_configured() -> None:
    lines = [("room", 9000), ("extras", 2000)]
    assert GST_ONLY.tax_for_lines(lines) == (TaxLine("GST", "GST 5 %", 500, 11_000, 550),)
    assert GST_AND_PST.tax_for_lines(lines) == (
        TaxLine("GST", "GST 5 %", 500, 11_000, 550),
        TaxLine("PST", "PST 7 %", 700, 2000, 140),
    )
    assert GST_AND_PST.taxes_for("room", 9000) == (TaxLine("GST", "GST 5 %", 500, 9000, 450),)
    # Equipment carries PST only: GST's default lines are room and extras.
    assert GST_AND_PST.tax_for_lines([("equipment", 1000)]) == (TaxLine("PST", "PST 7 %", 700, 1000, 70),)


@pytest.mark.parametrize(
    ("net_cents", "rate_bps", "tax_cents"),
    [
        (1010, 500, 51),  # 50.5 → 51: half rounds up
        (1009, 500, 50),  # 50.45 → 50
        (1030, 500, 52),  # 51.5 → 52
        (10, 500, 1),  # 0.5 → 1
        (9, 500, 0),  # 0.45 → 0
        (1050, 700, 74),  # 73.5 → 74
        (0, 500, 0),
        (12_345, 10_000, 12_345),  # 100 %
    ],
)
def test_tax_rounds_half_up_to_the_cent(net_cents: int, rate_bps: int, tax_cents: int) -> None:
    policy = TaxPolicy(rates=(TaxRate("T", "T", rate_bps, frozenset({"room"})),))
    assert policy.taxes_for("room", net_cents)[0].tax_cents == tax_cents


def test_a_line_kind_no_rate_applies_to_carries_no_tax_and_an_unknown_kind_is_refused() -> None:
    assert GST_ONLY.taxes_for("equipment", 5000) == ()
    assert GST_ONLY.tax_for_lines([("equipment", 5000)]) == ()
    with pytest.raises(ValueError, match="unknown line kind 'parking'"):
        GST_ONLY.taxes_for("parking", 5000)
    with pytest.raises(ValueError, match="0 or more"):
        GST_ONLY.taxes_for("room", -1)


# ----------------------------------------------------------------------------- refunds


def test_a_partial_refund_reverses_a_proportional_share_of_the_tax() -> None:
    # $94.50 paid = $90.00 + $4.50 GST; refunding half reverses half the tax.
    assert refund_split(4725, 9450, 450) == (4500, 225)
    # A full refund reverses all of it.
    assert refund_split(9450, 9450, 450) == (9000, 450)
    assert refund_split(0, 9450, 450) == (0, 0)


def test_one_day_of_three_refunds_exactly_that_days_tax() -> None:
    # Three days of $10.10 + 51 ¢: refunding one day's $10.61 reverses its 51 ¢, not a rounded third of $1.53.
    gross, tax = 3 * 1061, 3 * 51
    net1, tax1 = refund_split(1061, gross, tax)
    net2, tax2 = refund_split(1061, gross, tax, already_refunded_cents=1061, already_refunded_tax_cents=tax1)
    net3, tax3 = refund_split(1061, gross, tax, already_refunded_cents=2122, already_refunded_tax_cents=tax1 + tax2)
    assert (tax1, tax2, tax3) == (51, 51, 51)
    assert (net1, net2, net3) == (1010, 1010, 1010)


def test_refunds_in_parts_sum_exactly_to_the_tax_the_last_one_taking_what_is_left() -> None:
    gross, tax = 10_001, 477  # shares that do not divide evenly
    parts = [3333, 3333, 3335]
    done, done_tax = 0, 0
    for part in parts:
        net, part_tax = refund_split(part, gross, tax, already_refunded_cents=done, already_refunded_tax_cents=done_tax)
        assert net + part_tax == part
        done, done_tax = done + part, done_tax + part_tax
    assert (done, done_tax) == (gross, tax)


def test_a_refund_beyond_what_was_paid_or_with_impossible_history_is_refused() -> None:
    with pytest.raises(ValueError, match="exceed"):
        refund_split(100, 9450, 450, already_refunded_cents=9400)
    with pytest.raises(ValueError, match="tax 500"):
        refund_split(100, 400, 500)
    with pytest.raises(ValueError, match="tax already refunded"):
        refund_split(100, 9450, 450, already_refunded_cents=100, already_refunded_tax_cents=451)


@st.composite
def paid_and_refunded_in_parts(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    net = draw(st.integers(0, 2_000_000))
    rate_bps = draw(st.sampled_from([0, 500, 700, 1200, 10_000]))
    tax = TaxPolicy(rates=(TaxRate("T", "T", rate_bps, frozenset({"room"})),)).total_tax_cents([("room", net)])
    gross = net + tax
    cuts = sorted(draw(st.lists(st.integers(0, gross), max_size=8)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, gross], strict=True)]
    return gross, tax, parts


@given(case=paid_and_refunded_in_parts())
@settings(max_examples=400, deadline=None)
def test_any_sequence_of_partial_refunds_reverses_exactly_the_tax_charged(case: tuple[int, int, list[int]]) -> None:
    gross, tax, parts = case
    done, done_tax = 0, 0
    for part in parts:
        net, part_tax = refund_split(part, gross, tax, already_refunded_cents=done, already_refunded_tax_cents=done_tax)
        assert net >= 0 and part_tax >= 0 and net + part_tax == part
        if gross:  # within a cent of the exact proportional share
            assert abs(part_tax * gross - part * tax) <= gross
        done, done_tax = done + part, done_tax + part_tax
        assert done_tax <= tax and done - done_tax <= gross - tax
    assert (done, done_tax) == (gross, tax)


# ----------------------------------------------------------------------------- receipts


@pytest.mark.parametrize(
    ("total_cents", "number", "buyer_details"),
    [(9_999, False, False), (10_000, True, False), (49_999, True, False), (50_000, True, True)],
)
def test_receipts_follow_cras_thresholds(total_cents: int, number: bool, buyer_details: bool) -> None:
    needs = receipt_requirements(total_cents)
    assert needs.tax_rate_or_amount  # always
    assert needs.registration_number is number
    assert (needs.buyer_name, needs.description, needs.payment_terms) == (buyer_details,) * 3
    assert ("from $100: the supplier's GST/HST registration number" in needs.reasons) is number
    assert any(reason.startswith("from $500: the buyer's name") for reason in needs.reasons) is buyer_details


# ----------------------------------------------------------------------------- snapshot


def test_a_snapshot_survives_json_and_gives_back_the_same_policy() -> None:
    policy = TaxPolicy(rates=(GST, PST), registration_number=VALID_NUMBER)
    snapshot = json.loads(json.dumps(policy.snapshot()))
    assert snapshot["rates"][0] == {
        "code": "GST",
        "label": "GST 5 %",
        "rate_bps": 500,
        "applies_to": ["room", "extras"],
    }
    assert TaxPolicy.from_snapshot(snapshot) == policy


def test_a_snapshot_with_another_rounding_rule_or_a_bad_rate_is_refused() -> None:
    snapshot = GST_ONLY.snapshot()
    with pytest.raises(ValueError, match="rounding"):
        TaxPolicy.from_snapshot(snapshot | {"rounding": "per-invoice"})
    with pytest.raises(ValueError, match="rate_bps"):
        TaxPolicy.from_snapshot(
            snapshot | {"rates": [{"code": "GST", "label": "x", "rate_bps": "5%", "applies_to": []}]}
        )


# ----------------------------------------------------------------------------- registration numbers


@pytest.mark.parametrize("number", [VALID_NUMBER, "123456782 RT 0001", " 123456782rt0001 "])
def test_a_well_formed_gst_registration_number_passes(number: str) -> None:
    assert registration_problem(number) is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("123456789RT0001", "fails its check digit"),  # the last digit should be 2
        ("123456782RC0001", "RC account, not GST/HST"),
        ("12345678RT0001", "9 digits, RT, 4 digits"),
        ("123456782RT001", "9 digits, RT, 4 digits"),
        ("123456782", "9 digits, RT, 4 digits"),
        ("123-456-782-RT-0001", "9 digits, RT, 4 digits"),
    ],
)
def test_a_wrong_gst_registration_number_says_what_is_wrong(number: str, problem: str) -> None:
    assert problem in (registration_problem(number) or "")


# ----------------------------------------------------------------------------- settings


def test_settings_default_to_gst_only_on_every_line_kind(tmp_path: Path) -> None:
    """GST applies to room hire, extras and equipment rental alike; PST is the accountant's call (off by default)."""
    policy = Settings(data_dir=tmp_path).tax_policy()
    gst_everywhere = TaxRate("GST", "GST 5 %", 500, frozenset({"room", "extras", "equipment"}))
    assert policy == TaxPolicy(rates=(gst_everywhere,), registration_number=None)
    assert policy.taxes_for("equipment", 2000) == (TaxLine("GST", "GST 5 %", 500, 2000, 100),)


def test_settings_read_rates_and_the_registration_number_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rates = [
        {"code": "GST", "label": "GST 5 %", "rate_bps": 500, "applies_to": ["room", "extras"]},
        {"code": "PST", "label": "PST 7 %", "rate_bps": 700, "applies_to": ["extras", "equipment"]},
    ]
    monkeypatch.setenv("TAX_RATES", json.dumps(rates))
    monkeypatch.setenv("GST_REGISTRATION_NUMBER", "123456782 rt 0001")
    policy = Settings(data_dir=tmp_path).tax_policy()
    assert policy == TaxPolicy(rates=(GST, PST), registration_number=VALID_NUMBER)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tax_rates": [{"code": "GST", "label": "GST", "rate_bps": 10_001, "applies_to": ["room"]}]}, "rate_bps"),
        ({"tax_rates": [{"code": "GST", "label": "GST", "rate_bps": -1, "applies_to": ["room"]}]}, "rate_bps"),
        ({"tax_rates": [{"code": "GST", "label": "GST", "rate_bps": 500, "applies_to": ["parking"]}]}, "'parking'"),
        (
            {
                "tax_rates": [
                    {"code": "GST", "label": "GST", "rate_bps": 500, "applies_to": ["room"]},
                    {"code": "gst", "label": "GST again", "rate_bps": 500, "applies_to": ["extras"]},
                ]
            },
            "GST is given twice",
        ),
        ({"gst_registration_number": "123456789RT0001"}, "check digit"),
        ({"gst_registration_number": "GST-5"}, "not a GST/HST registration number"),
    ],
)
def test_bad_tax_settings_name_the_field(tmp_path: Path, fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, **fields)
    text = str(caught.value)
    assert next(iter(fields)) in text and named in text
