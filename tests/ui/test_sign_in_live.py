"""Live mode: staff sign in with OIDC (st.login; AppTest's simulated st.user) and get the role STAFF_ROLES gives
their email. Without an [auth] section the dashboard refuses to start; an unknown email reaches no page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pages.ui import session
from services.core.settings import get_settings
from tests.conftest import OIDC_TEST_AUTH

from .test_pages import nav_pages

APP = str(Path(__file__).resolve().parents[2] / "app.py")
STAFF = {"dana@venue.example": "frontdesk", "fin@venue.example": "finance"}


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Real payments (Stripe, never contacted by these pages: the API base is a closed loopback port)."""
    for key, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "PAYMENTS": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_live_mode_sign_in",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "CALENDAR": "sandbox",
        "MAIL": "sandbox",
        "STAFF_ROLES": json.dumps(STAFF),
        "ROOMDESK_SECRETS_FILE": str(tmp_path / "none.toml"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(session.DEV_ROLE_ENV, raising=False)
    get_settings.cache_clear()
    st.cache_resource.clear()
    yield
    get_settings.cache_clear()
    st.cache_resource.clear()


def run(user: dict[str, object] | None = None, *, auth: bool = True, role: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if auth:
        at.secrets["auth"] = OIDC_TEST_AUTH
    at.user = user if user is not None else {"is_logged_in": False}
    if role:
        at.session_state["role"] = role  # a sandbox-style role in the session must not count in live mode
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_live_mode_without_sign_in_configured_refuses_to_start(live: None) -> None:
    at = run(auth=False, role="admin")
    assert "will not start in live mode without staff sign-in" in at.error[0].value
    assert [t.value for t in at.title] == ["Room Desk"] and not at.sidebar.button  # no page ran, nobody signed in


def test_signed_out_sees_only_the_sign_in_button(live: None) -> None:
    at = run(role="admin")
    assert [b.label for b in at.button] == ["Sign in"]
    assert {Path(p["script_path"]).name for p in at._registered_pages.values()} == {"sign_in.py"}
    assert "Choose the role" not in "\n".join(m.value for m in at.markdown)  # no role picker in live mode


def test_a_signed_in_person_gets_the_role_of_their_email(live: None) -> None:
    at = run({"is_logged_in": True, "email": "Fin@Venue.Example", "name": "Fin"})
    assert nav_pages(at) == _expected("finance")
    assert "`fin@venue.example`" in "\n".join(m.value for m in at.sidebar.markdown)
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    at = run({"is_logged_in": True, "email": "dana@venue.example"})
    assert nav_pages(at) == _expected("frontdesk")


def test_an_email_without_a_role_reaches_no_page(live: None) -> None:
    at = run({"is_logged_in": True, "email": "stranger@elsewhere.example"}, role="admin")
    assert "stranger@elsewhere.example" in at.error[0].value and "no role in Room Desk" in at.error[0].value
    assert {Path(p["script_path"]).name for p in at._registered_pages.values()} == {"sign_in.py"}


def _expected(role: str) -> list[str]:
    from .test_pages import ROLE_PAGES

    return ROLE_PAGES[role]
