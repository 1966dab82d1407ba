"""Integer rounding for money: the one rule prices, discounts and taxes share."""

from __future__ import annotations


def round_half_up(numerator: int, denominator: int) -> int:
    """Round numerator / denominator half up on non-negative integers, so a price never depends on float
    representation."""
    return (2 * numerator + denominator) // (2 * denominator)
