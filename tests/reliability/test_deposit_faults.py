"""The fault matrix for damage deposits: every external call of every deposit flow (deposit_flows.DEPOSIT_FLOWS) failed
before its side effect, after it (the answer lost) and by timeout; then the retry path (the action again, Stripe's
webhooks redelivered, the worker's deposit round, the outbox, sync + reconcile + fixes); then the deposit invariants,
the booking invariants, and each flow's end state. The calls are learnt, as in test_fault_matrix.py: each flow runs
once clean from its snapshot and the sandbox gateways' counters say what it calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from models.tables import DamageDeposit
from services.finance import deposits as dp
from tests.reliability.deposit_flows import DEPOSIT_FLOWS, END_STATE, booking_violations, deposit_violations
from tests.reliability.flows import Flow
from tests.reliability.harness import calls, clear_faults, fresh_services, quietly, services_from, settle
from tests.reliability.stats import COUNTS
from tests.reliability.stats import FLOWS as FLOWS_SEEN

# The deposit calls with a side effect at Stripe (the harness's WRITE_OPS predate some of them).
WRITES = {
    "create_customer",
    "create_setup_intent",
    "confirm_setup_intent",
    "create_deposit_hold",
    "capture_payment_intent",
    "cancel_payment_intent",
}

# A call that fails by itself (a declined card) never reaches its "after" hook: only "before" is a case there.
FAILS_ANYWAY = {("deposit.declined", "create_deposit_hold")}


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


def _cases() -> list[Any]:
    out = []
    for flow in DEPOSIT_FLOWS.values():
        for (gateway, op), n in sorted(snapshot(flow).calls.items()):
            for nth in range(1, n + 1):
                lost = op in WRITES and (flow.name, op) not in FAILS_ANYWAY
                for mode in ("before", "after", "timeout") if lost else ("before",):
                    out.append(pytest.param(flow.name, gateway, op, nth, mode, id=f"{flow.name}-{op}#{nth}-{mode}"))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flow_name" in metafunc.fixturenames:
        metafunc.parametrize(("flow_name", "gateway", "op", "nth", "mode"), _cases())


def test_every_deposit_flow_calls_stripe() -> None:
    """The matrix is not empty by accident: each flow made its Stripe calls when it ran clean."""
    made = {name: {op for _, op in snapshot(flow).calls} for name, flow in DEPOSIT_FLOWS.items()}
    assert {"create_customer", "create_setup_intent", "confirm_setup_intent"} <= made["deposit.card_saved"]
    assert {"create_customer", "create_setup_intent"} <= made["deposit.card_asked"]  # the round, for a paid booking
    assert "create_deposit_hold" in made["deposit.hold"] and "create_deposit_hold" in made["deposit.declined"]
    assert {"create_deposit_hold", "cancel_payment_intent"} <= made["deposit.rehold"]
    assert (
        "cancel_payment_intent" in made["deposit.release"]
        and "cancel_payment_intent" in made["deposit.cancelled_booking"]
    )
    assert "capture_payment_intent" in made["deposit.claim_capture"]


def end_state(svc: Any) -> str:
    with svc.session() as s:
        return str(s.exec(select(DamageDeposit)).one().state)


def test_a_deposit_fault_then_the_retry_path_keeps_the_invariants(
    flow_name: str, gateway: str, op: str, nth: int, mode: str
) -> None:
    flow = DEPOSIT_FLOWS[flow_name]
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
        problems = settle(svc, rerun=lambda: flow.action(svc, snap.ctx), advance=False)
        quietly(lambda: dp.run_deposit_round(svc))  # the worker's next round
        found = deposit_violations(svc) + booking_violations(svc)
        assert not found, "\n".join(found + [f"(fix that did not work: {p})" for p in problems])
        assert end_state(svc) == END_STATE[flow_name]
    finally:
        svc.engine.dispose()
