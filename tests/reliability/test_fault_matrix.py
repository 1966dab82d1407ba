"""Every external call of every flow, failed before its side effect, after it (the answer lost) and by timeout;
then the retry path; then the invariants. The calls are learnt, not listed: each flow runs once clean (from its
snapshot) and the sandbox gateways' call counters say which operations it makes and how many times; the matrix
injects at each (operation, nth call, mode).

Reads have no side effect, so only "before" is tried for them (after/timeout would be the same case)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.flows import FLOWS, Flow
from tests.reliability.harness import (
    calls,
    clear_faults,
    fresh_services,
    modes_for,
    quietly,
    services_from,
    settle,
)
from tests.reliability.invariants import violations
from tests.reliability.stats import COUNTS
from tests.reliability.stats import FLOWS as FLOWS_SEEN


@dataclass
class Snapshot:
    path: Path
    ctx: dict[str, Any]
    now: datetime
    calls: dict[tuple[str, str], int]


_SNAPSHOTS: dict[str, Snapshot] = {}


def snapshot(flow: Flow) -> Snapshot:
    """Run the flow's setup once, keep its data dir, and learn the calls the flow then makes."""
    if flow.name not in _SNAPSHOTS:
        svc = fresh_services(**flow.overrides)
        ctx = flow.setup(svc)
        clear_faults(svc)
        now = svc.clock.at
        svc.engine.dispose()
        probe = services_from(svc.settings.data_dir, now=now, **flow.overrides)
        quietly(lambda: flow.action(probe, ctx))
        learnt = calls(probe)
        probe.engine.dispose()
        _SNAPSHOTS[flow.name] = Snapshot(svc.settings.data_dir, ctx, now, learnt)
    return _SNAPSHOTS[flow.name]


# Known bugs the matrix finds: (flow, operation) → why, a strict xfail until fixed. The five it found are fixed
# (test_known_bugs.py pins each).
LOST_ANSWER = ("after", "timeout")
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (flow, operation) → a bug not fixed yet: strict xfail


def _cases() -> list[Any]:
    out = []
    for flow in FLOWS.values():
        for (gateway, op), n in sorted(snapshot(flow).calls.items()):
            for nth in range(1, n + 1):
                for mode in modes_for(op):
                    bug = KNOWN_BUGS.get((flow.name, op)) if mode in LOST_ANSWER else None
                    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
                    out.append(
                        pytest.param(
                            flow.name, gateway, op, nth, mode, id=f"{flow.name}-{op}#{nth}-{mode}", marks=marks
                        )
                    )
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flow_name" in metafunc.fixturenames:
        metafunc.parametrize(("flow_name", "gateway", "op", "nth", "mode"), _cases())


def test_every_flow_calls_the_outside() -> None:
    """The matrix is not empty by accident: each flow made external calls when it ran clean."""
    empty = [name for name, flow in FLOWS.items() if not snapshot(flow).calls]
    assert not empty, f"flows that made no external call: {empty}"


def test_fault_then_retry_path_keeps_the_invariants(flow_name: str, gateway: str, op: str, nth: int, mode: str) -> None:
    flow = FLOWS[flow_name]
    snap = snapshot(flow)
    svc = services_from(snap.path, now=snap.now, **flow.overrides)
    try:
        getattr(svc, gateway).faults.fail(op, nth=nth, mode=mode)
        quietly(lambda: flow.action(svc, snap.ctx))
        fired = clear_faults(svc)
        assert fired == 1, f"the fault on {op} #{nth} ({mode}) never fired: the flow took another path"
        COUNTS["faults injected"] += fired
        COUNTS["fault cases tried"] += 1
        FLOWS_SEEN.add(flow_name)
        problems = settle(svc, rerun=lambda: flow.action(svc, snap.ctx))
        found = violations(svc)
        assert not found, "\n".join(found + [f"(fix that did not work: {p})" for p in problems])
    finally:
        svc.engine.dispose()
