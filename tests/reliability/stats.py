"""Counters the reliability suite fills and its conftest prints at the end of the session."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
FLOWS: set[str] = set()
