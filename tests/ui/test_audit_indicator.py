"""The Overview says whether the audit trail is intact, and names the row when someone changed it behind Room Desk's
back. (Its own module: it tampers with the module's database.)"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from services.core import audit
from services.core.context import Services
from tests.unit.test_audit_chain import AUDIT, audit_ids, edit_payload

App = Callable[..., AppTest]


def test_overview_shows_the_audit_trail_intact_then_tampered(app: App, svc: Services) -> None:
    audit._status.clear()
    at = app("finance")
    rows = len(audit_ids(svc.engine))
    assert any(f"Audit trail intact · {rows:,} rows chained" in c.value for c in at.caption)
    assert not at.error

    victim = audit_ids(svc.engine)[len(audit_ids(svc.engine)) // 2]
    edit_payload(svc.engine, victim, {"amount_cents": 1})
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(AUDIT.c.payload).where(AUDIT.c.id == victim)).scalar_one() == {"amount_cents": 1}
    audit._status.clear()  # the next full walk (every 15 min in a running app) finds it
    at = app("manager")
    assert "The audit trail has been tampered with" in at.error[0].value
    assert f"row {victim} was changed" in at.error[0].value
