"""Counters the reliability suite fills and its conftest prints at the end of the session."""

from __future__ import annotations

from collections import Counter

# Keys the public-abuse tests fill (tests/reliability/test_public_abuse.py): "holds refused", "rate-limit refusals",
# "body-size refusals", "concurrent duplicate deliveries".
COUNTS: Counter[str] = Counter()
FLOWS: set[str] = set()
