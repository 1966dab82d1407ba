"""The reliability suite's session summary: how many faults were injected into how many flows, how many invariant
checks ran, how many cases and hypothesis examples were tried."""

from __future__ import annotations

from typing import Any

from tests.reliability.stats import COUNTS, FLOWS

_ORDER = [
    ("faults injected", "faults injected"),
    ("flows", None),
    ("fault cases tried", "fault cases tried"),
    ("remediations applied", "remediations applied"),
    ("invariant checks", "invariant checks"),
    ("invariants evaluated", "invariants evaluated"),
    ("hypothesis examples run", "hypothesis examples run"),
    ("hypothesis steps run", "hypothesis steps run"),
    ("hypothesis bookings started", "hypothesis bookings started"),
    ("hypothesis changes made/held", "changes made or held"),
    ("hypothesis changes paid", "changes paid"),
    ("API requests (schemathesis)", "API requests (schemathesis)"),
    ("secret probes", "secret probes"),
    ("concurrent processes", "concurrent processes"),
    ("holds refused", "holds refused"),
    ("rate-limit refusals", "rate-limit refusals"),
    ("body-size refusals", "body-size refusals"),
    ("concurrent duplicate deliveries", "concurrent duplicate deliveries"),
]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not COUNTS and not FLOWS:
        return
    terminalreporter.section("reliability summary")
    for label, key in _ORDER:
        value = len(FLOWS) if key is None else COUNTS.get(key, 0)
        terminalreporter.write_line(f"{label:>30}: {value}")
