"""Fault injection shared by the sandbox gateways: make chosen calls fail, lose their response or time out.

A gateway calls `before(op, provider, **ctx)` just before its side effect and `after(op, provider, **ctx)` just after
it. Rules are in memory only: each process (and each `Faults` instance) has its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from services.core.errors import GatewayError, TimeoutFault

FaultMode = Literal["before", "after", "timeout"]

# Names staff would recognise in an error message.
_PROVIDER_NAMES = {"payments": "Stripe", "calendar": "Google Calendar", "mail": "The mail server"}


@dataclass
class _Rule:
    op: str
    nth: int
    times: int
    mode: FaultMode
    match: Callable[[dict[str, Any]], bool] | None
    error: Exception | None
    seen: int = 0  # matching calls counted since the rule was added

    def triggers(self) -> bool:
        return self.nth <= self.seen < self.nth + self.times

    def exhausted(self) -> bool:
        return self.seen >= self.nth + self.times - 1


class Faults:
    """Fault rules and call counters for sandbox gateways; thread-safe, in memory only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._latency: dict[str, float] = {}
        # A fault decided in `before` but raised in `after` belongs to the calling thread's current call.
        self._pending = threading.local()
        self.calls: Counter[str] = Counter()
        self.injected = 0

    def fail(
        self,
        op: str,
        *,
        nth: int = 1,
        times: int = 1,
        mode: FaultMode = "before",
        match: Callable[[dict[str, Any]], bool] | None = None,
        error: Exception | None = None,
    ) -> None:
        """Make the nth matching call of `op` from now (and the `times - 1` matching calls after it) fail."""
        if nth < 1 or times < 1:
            raise ValueError("nth and times must be at least 1")
        if mode not in ("before", "after", "timeout"):
            raise ValueError(f"unknown fault mode {mode!r}")
        with self._lock:
            self._rules.append(_Rule(op, nth, times, mode, match, error))

    def latency(self, op: str, seconds: float) -> None:
        """Sleep `seconds` on every call of `op` (`"*"` for every operation)."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency[op] = seconds

    def clear(self) -> None:
        """Forget all rules, latencies and counters."""
        with self._lock:
            self._rules.clear()
            self._latency.clear()
            self.calls.clear()
            self.injected = 0
        self._pending = threading.local()

    def before(self, op: str, provider: str, **ctx: Any) -> None:
        """Hook called before the side effect: counts the call, sleeps, and raises a `before` fault if one is due."""
        pending = self._pending_map()
        pending.pop(op, None)  # left over from an earlier call of op that raised on its own
        with self._lock:
            self.calls[op] += 1
            delay = self._latency.get(op, 0.0) + self._latency.get("*", 0.0)
            due = self._due_rule(op, ctx)
            if due is not None and due.mode == "before":
                self.injected += 1
        if delay:
            time.sleep(delay)
        if due is None:
            return
        if due.mode == "before":
            raise _error_for(due, provider)
        pending[op] = due

    def after(self, op: str, provider: str, **ctx: Any) -> None:
        """Hook called after the side effect: raises the `after` or `timeout` fault decided in `before`, if any."""
        due = self._pending_map().pop(op, None)
        if due is None:
            return
        with self._lock:
            self.injected += 1
        raise _error_for(due, provider)

    def _due_rule(self, op: str, ctx: dict[str, Any]) -> _Rule | None:
        """Count this call against every matching rule; return the first rule that fires (caller holds the lock)."""
        due: _Rule | None = None
        for rule in self._rules:
            if rule.op not in (op, "*"):
                continue
            if rule.match is not None and not rule.match(ctx):
                continue
            rule.seen += 1
            if due is None and rule.triggers():
                due = rule
        self._rules = [rule for rule in self._rules if not rule.exhausted()]
        return due

    def _pending_map(self) -> dict[str, _Rule]:
        pending: dict[str, _Rule] | None = getattr(self._pending, "by_op", None)
        if pending is None:
            pending = {}
            self._pending.by_op = pending
        return pending


def _error_for(rule: _Rule, provider: str) -> Exception:
    name = _PROVIDER_NAMES.get(provider, provider.capitalize() or "The service")
    if rule.error is not None:
        # Drop the traceback of an earlier raise of the same instance (times > 1).
        return rule.error.with_traceback(None)
    if rule.mode == "timeout":
        return TimeoutFault(f"{name} did not answer in time (injected timeout)", provider=provider)
    return GatewayError(f"{name} is unavailable (injected fault)", transient=True, provider=provider, status=503)
