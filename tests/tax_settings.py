"""Tax settings for tests about tax: the product's default (GST 5 % on every line kind) and a registration number
that passes CRA's check digit."""

from __future__ import annotations

from typing import Any

GST_ONLY: list[dict[str, Any]] = [
    {"code": "GST", "label": "GST 5 %", "rate_bps": 500, "applies_to": ["room", "extras", "equipment"]}
]
GST_AND_PST: list[dict[str, Any]] = [
    *GST_ONLY,
    {"code": "PST", "label": "PST 7 %", "rate_bps": 700, "applies_to": ["extras", "equipment"]},
]
REGISTRATION = "123456782RT0001"


def gst(**overrides: Any) -> dict[str, Any]:
    """make_services keyword arguments for a GST-registered venue."""
    return {"tax_rates": GST_ONLY, "gst_registration_number": REGISTRATION, **overrides}
