"""The Overview says whether the audit trail is intact, and names the row when someone changed it behind Room Desk's
back; the check runs in the background, so the page never waits for it. (Its own module: its last test tampers with the
module's database.)"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from services.core import audit
from services.core.context import Services
from tests.unit.test_audit_chain import AUDIT, audit_ids, edit_payload

App = Callable[..., AppTest]
WAIT = 60.0


def test_the_overview_shows_at_once_while_the_first_check_still_runs(
    app: App, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit.stop_watching()
    walking, finish = threading.Event(), threading.Event()
    real = audit.chain_status

    def slow_walk(*args: object, **kwargs: float) -> audit.ChainReport:
        walking.set()
        finish.wait(WAIT)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "chain_status", slow_walk)
    try:
        at = app("finance")
        assert walking.is_set()
        assert any("Checking the audit trail" in c.value for c in at.caption)
        assert any("Worker" in w.value for w in at.warning)  # the rest of the page drew without waiting
        assert any("open findings" in i.value for i in at.info)
    finally:
        finish.set()
    audit.watch_chain(svc).check(timeout=WAIT)
    at = app("finance")
    assert any("Audit trail intact" in c.value for c in at.caption)
    assert not any("Checking the audit trail" in c.value for c in at.caption)
    audit.stop_watching()


def test_overview_shows_the_audit_trail_intact_then_tampered(app: App, svc: Services) -> None:
    audit.stop_watching()
    assert audit.watch_chain(svc).check(timeout=WAIT) is not None
    rows = len(audit_ids(svc.engine))
    at = app("finance")
    assert any(f"Audit trail intact · {rows:,} rows chained" in c.value for c in at.caption)
    assert not at.error

    victim = audit_ids(svc.engine)[len(audit_ids(svc.engine)) // 2]
    edit_payload(svc.engine, victim, {"amount_cents": 1})
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(AUDIT.c.payload).where(AUDIT.c.id == victim)).scalar_one() == {"amount_cents": 1}
    audit.watch_chain(svc).check(full=True, timeout=WAIT)  # the next full walk (every 15 min in a running app)
    at = app("manager")
    assert "The audit trail has been tampered with" in at.error[0].value
    assert f"row {victim} was changed" in at.error[0].value
    audit.stop_watching()
