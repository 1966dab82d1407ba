"""The cancellation refund policy: time bands per day-leg, applied with the policy snapshot the booking was sold
under (not today's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.rules.policy import Policy, RefundBand


@dataclass(frozen=True)
class LegRefund:
    paid_cents: int
    already_refunded_cents: int
    percent: int
    refund_cents: int
    hours_before: float
    band: str

    @property
    def left_cents(self) -> int:
        """What can still be refunded for the day at most: what was paid less what was already refunded."""
        return max(self.paid_cents - self.already_refunded_cents, 0)


def policy_snapshot(policy: Policy) -> dict[str, object]:
    return {
        "version": policy.refund_policy_version,
        "bands": [[b.hours_before, b.percent] for b in policy.refund_bands],
        "text": describe_bands(policy.refund_bands),
    }


def bands_from_snapshot(snapshot: dict[str, object]) -> tuple[RefundBand, ...]:
    raw = snapshot.get("bands")
    if not isinstance(raw, list) or not raw:
        raise ValueError("policy snapshot has no bands")
    return tuple(RefundBand(int(h), int(p)) for h, p in raw)


def describe_bands(bands: tuple[RefundBand, ...]) -> str:
    """'Full refund 48 h or more before; 50 % 24–48 h before; none under 24 h.'"""
    ordered = sorted(bands, key=lambda b: -b.hours_before)
    parts = []
    upper: int | None = None
    for band in ordered:
        what = "full refund" if band.percent == 100 else ("no refund" if band.percent == 0 else f"{band.percent} %")
        if upper is None:
            parts.append(f"{what} {band.hours_before} h or more before" if band.hours_before else what)
        elif band.hours_before == 0:
            parts.append(f"{what} under {upper} h")
        else:
            parts.append(f"{what} {band.hours_before}–{upper} h before")
        upper = band.hours_before
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def band_for(hours_before: float, bands: tuple[RefundBand, ...]) -> RefundBand:
    """The widest band whose threshold the notice reaches; after the start nothing is refunded."""
    for band in sorted(bands, key=lambda b: -b.hours_before):
        if hours_before >= band.hours_before:
            return band
    return RefundBand(0, 0)


def refund_for_leg(
    *, leg_start: datetime, paid_cents: int, already_refunded_cents: int, bands: tuple[RefundBand, ...], now: datetime
) -> LegRefund:
    """What cancelling one day-leg at `now` refunds, never more than what is left of it."""
    if now.tzinfo is None or leg_start.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    hours = (leg_start - now).total_seconds() / 3600
    band = band_for(hours, bands) if hours >= 0 else RefundBand(0, 0)
    due = (paid_cents * band.percent * 2 + 100) // 200
    remaining = max(paid_cents - already_refunded_cents, 0)
    refund = min(due, remaining)
    label = f"{band.percent} % ({'after start' if hours < 0 else f'{hours:.0f} h before'})"
    return LegRefund(paid_cents, already_refunded_cents, band.percent, refund, hours, label)
