"""AppTest fixtures: each test module gets its own DATA_DIR, sandbox gateways and demo data, seeded once through
services.ops.demo (faster than letting the app do it), and a fresh app.

app.py builds its services through `get_settings()` (lru_cached) and `st.cache_resource`: both are cleared around
each module so no module sees another's database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pages.ui import boot, session
from services.booking import BookingRequest, StartResult, quote, sandbox_pay, start_booking
from services.core import audit
from services.core.context import Services, build_services
from services.core.settings import get_settings
from services.ops import demo

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 30


def _reset_caches() -> None:
    get_settings.cache_clear()
    st.cache_resource.clear()
    boot._SEEDINGS.clear()
    audit.stop_watching()  # its thread reads the previous module's database


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The module's services (same database as the app under test), with a small set of demo bookings."""
    data_dir = tmp_path_factory.mktemp("ui-data")
    mp = pytest.MonkeyPatch()
    for key, value in {
        "DATA_DIR": str(data_dir),
        "PAYMENTS": "sandbox",
        "CALENDAR": "sandbox",
        "MAIL": "sandbox",
        "ROOMDESK_SECRETS_FILE": str(data_dir / "no-secrets.toml"),
    }.items():
        mp.setenv(key, value)
    mp.delenv(session.DEV_ROLE_ENV, raising=False)
    _reset_caches()
    services = build_services()
    demo.seed_demo(services, count=30)
    try:
        yield services
    finally:
        services.engine.dispose()
        mp.undo()
        _reset_caches()


@pytest.fixture
def app(svc: Services) -> Callable[..., AppTest]:
    """`app(role="frontdesk", page="pages/frontdesk/bookings.py", **query)`: a run AppTest signed in as `role`."""

    def make(role: str | None = None, page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        if role:
            at.session_state["role"] = role
        at.query_params.update(query)
        at.run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return make


@dataclass(frozen=True)
class Slot:
    room: str
    day: date
    start: time
    end: time


def free_slot(svc: Services, room: str = "quiet-room", hours: int = 1, skip: int = 0) -> Slot:
    """A slot the rules and calendars accept, at least three days ahead; `skip` moves past earlier finds."""
    today = svc.now().astimezone(svc.settings.tz).date()
    for offset in range(3, 50):
        day = today + timedelta(days=offset)
        for h in range(8, 17 - hours):
            req = BookingRequest(room, (day,), time(h), time(h + hours), "x", "x@example.org")
            if quote(svc, req).available:
                if skip == 0:
                    return Slot(room, day, time(h), time(h + hours))
                skip -= 1
    raise AssertionError("no free slot in the sandbox")


def next_weekday(svc: Services, weekday: int) -> date:
    d = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=2)
    while d.weekday() != weekday:
        d += timedelta(days=1)
    return d


@pytest.fixture(scope="module")
def paid_booking(svc: Services) -> StartResult:
    """A confirmed phone booking with a unique customer, made through the service (not the page)."""
    slot = free_slot(svc, "boardroom", hours=2)
    started = start_booking(
        svc,
        BookingRequest(
            slot.room,
            (slot.day,),
            slot.start,
            slot.end,
            "Wanda Testfixture",
            "wanda.testfixture@example.org",
            "604-555-0101",
            channel="phone",
        ),
        actor="frontdesk@sandbox",
    )
    assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    return started
