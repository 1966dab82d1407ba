"""Audit mode: the dashboard pointed at a "real" Stripe account and calendars (the local servers, through the real
SDKs) shows the findings of its history and changes nothing anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pages.ui import boot, session
from services import booking as bk
from services.core.context import build_services
from services.core.settings import PROJECT_ROOT, Settings, get_settings
from tests.conftest import OIDC_TEST_AUTH
from tests.fake_calendar import fake_calendar
from tests.integration.stripe_server import LocalStripe, localstripe, localstripe_server  # noqa: F401
from tests.integration.test_live_adapters import request, weekdays

APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture
def audited(tmp_path: Path, localstripe: LocalStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # noqa: F811
    """History made by the booking flow on the real adapters, then the dashboard opened on it in audit mode."""
    from services.core.catalogue import load_catalogue

    rooms = load_catalogue(PROJECT_ROOT / "config" / "rooms.toml").rooms
    with fake_calendar(tmp_path, calendar_ids=[r.calendar_id for r in rooms]) as fake:
        env = {
            "DATA_DIR": str(tmp_path / "data"),
            "PAYMENTS": "stripe",
            "STRIPE_SECRET_KEY": "sk_test_roomdesk_local",
            "STRIPE_API_BASE": localstripe.url,
            "CALENDAR": "google",
            "GOOGLE_SERVICE_ACCOUNT_FILE": str(fake.key_file),
            "GOOGLE_API_ROOT": fake.server.url,
            "ROOMDESK_SECRETS_FILE": str(tmp_path / "none.toml"),
            "STAFF_ROLES": '{"manager@venue.example": "manager"}',
        }
        own = {k.lower(): v for k, v in env.items() if k not in ("ROOMDESK_SECRETS_FILE", "STAFF_ROLES")}
        writer = build_services(Settings(**own))
        started = bk.start_booking(writer, request(writer, room="gallery"), actor="customer")
        writer.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_visa")
        bk.confirm_payment(writer, started.payment_intent)
        day = weekdays(writer, 1)[0]
        from datetime import datetime

        writer.calendar.insert_event(
            writer.catalogue.room("gallery").calendar_id,
            {
                "summary": "Staff",
                "start": {"dateTime": datetime.combine(day, time(14), tzinfo=writer.settings.tz).isoformat()},
                "end": {"dateTime": datetime.combine(day, time(15), tzinfo=writer.settings.tz).isoformat()},
            },
        )
        writer.engine.dispose()
        for key, value in {**env, "AUDIT_MODE": "true", "DATA_DIR": str(tmp_path / "audit")}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv(session.DEV_ROLE_ENV, raising=False)
        get_settings.cache_clear()
        st.cache_resource.clear()
        boot._SEEDINGS.clear()
        fake.server.log.clear()
        yield fake, localstripe
        get_settings.cache_clear()
        st.cache_resource.clear()


def test_audit_mode_dashboard_reads_live_data_and_writes_nothing(audited: Any) -> None:
    fake, stripe_peer = audited
    writes_before = len(stripe_peer.writes())
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()  # real customers' data: no page without staff sign-in
    assert "will not start in live mode without staff sign-in" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = OIDC_TEST_AUTH
    at.user = {"is_logged_in": True, "email": "manager@venue.example"}
    at.run()
    shown = "\n".join(str(w.value) for w in [*at.warning, *at.info])
    assert "Audit mode — read-only" in shown
    assert at.title[0].value == "Overview"
    next(b for b in at.button if "Sync now" in str(b.label)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    # The hand-made event; and the paid booking, which this fresh audit database knows only from Stripe (as it knows
    # the old system's): its days are on the calendar, but no confirmation email is on record (issue 14 §7).
    assert metrics["Open findings"] == "2"
    from services.reconciliation.findings import open_findings

    audit_svc = build_services(get_settings())
    assert sorted(f.code for f in open_findings(audit_svc)) == ["manual_event", "missing_confirmation"]
    audit_svc.engine.dispose()
    # Nothing went out: no Stripe POST, no calendar write.
    assert len(stripe_peer.writes()) == writes_before
    assert [
        r
        for r in fake.server.log
        if r.method in ("POST", "PATCH", "PUT", "DELETE")
        and r.path != "/token"
        and not r.path.endswith("/batch/calendar/v3")
    ] == []
