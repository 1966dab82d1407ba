"""Editing the venue configuration on Settings (issue 14 §6): an admin changes the Boardroom's price and sees the
change listed before and after saving; a bad capacity is named and cannot be saved; the saved staff roles decide who
signs in (live mode)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pages.ui import boot, session
from services.core.context import Services, build_services
from services.core.settings import get_settings
from services.core.venue import save_venue_config
from services.core.venue_state import VenueEdit
from tests.conftest import OIDC_TEST_AUTH

from .test_pages import everything, texts

App = Callable[..., AppTest]
PAGE = "pages/admin/settings.py"


def plain(text: str) -> str:
    """Page text without the Markdown escapes typed values are shown with."""
    return text.replace("\\", "")


def edit_rooms(at: AppTest, edited_rows: dict[int, dict[str, Any]]) -> AppTest:
    """Type into the rooms table as a person would (AppTest seeds a keyed data editor's edit state)."""
    key = at.data_editor[0].key
    assert key is not None
    at.session_state[key] = {"edited_rows": edited_rows, "added_rows": [], "deleted_rows": []}
    return at.run()


def save_button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def test_an_admin_changes_the_boardrooms_price_and_sees_the_change(app: App, svc: Services) -> None:
    at = app("admin", page=PAGE)
    assert save_button(at, "Save rooms").disabled
    at = edit_rooms(at, {1: {"price": 50.0}})
    assert "Saving will change" in texts(at, "info")
    assert "Boardroom hourly price $45.00 → $50.00" in plain(texts(at, "info"))
    assert not save_button(at, "Save rooms").disabled

    at.text_input(key=next(t.key for t in at.text_input if t.key and t.key.startswith("se_note_rooms"))).input(
        "2027 prices"
    )
    save_button(at, "Save rooms").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = plain(texts(at, "success"))
    assert "Saved rooms as version 1" in said and "Boardroom hourly price $45.00 → $50.00" in said
    assert "In force: version 1, saved by admin@sandbox" in texts(at, "caption")
    assert at.data_editor[0].value["price"].iloc[1] == 50.0  # the table starts again from what is in force
    assert save_button(at, "Save rooms").disabled
    history = next(df for df in at.dataframe if df.editing_mode == "read_only" and "Version" in df.value).value
    assert list(history["Version"]) == [1] and history["Note"].iloc[0] == "2027 prices"

    svc.reload_venue()  # this test's own process: the dashboard saved, it looks at once
    assert svc.catalogue.room("boardroom").hourly_price_cents == 5000


def test_a_bad_capacity_is_named_and_cannot_be_saved(app: App, svc: Services) -> None:
    at = edit_rooms(app("admin", page=PAGE), {2: {"capacity": 0}})
    assert "Fix before saving" in texts(at, "error")
    assert "Union Room (union-room), capacity: should be greater than 0" in plain(texts(at, "error"))
    assert save_button(at, "Save rooms").disabled
    svc.reload_venue()
    assert svc.catalogue.room("union-room").capacity == 30


def test_a_rule_change_is_previewed_and_saved(app: App, svc: Services) -> None:
    at = app("admin", page=PAGE)
    at.number_input(key=next(n.key for n in at.number_input if n.key and n.key.startswith("se_buffer"))).set_value(
        20
    ).run()
    assert "Buffer between bookings: 15 min → 20 min" in plain(texts(at, "info"))
    save_button(at, "Save hours").click().run()
    assert "Saved hours & booking as version" in plain(everything(at))
    svc.reload_venue()
    assert svc.policy.buffer_minutes == 20


# --------------------------------------------------------------------------------------------- live-mode sign-in


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    """Live mode (real payments, never contacted: a closed loopback port) with STAFF_ROLES naming one admin."""
    for key, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "PAYMENTS": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_settings_roles",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "CALENDAR": "sandbox",
        "MAIL": "sandbox",
        "STAFF_ROLES": json.dumps({"ann@venue.example": "admin"}),
        "ROOMDESK_SECRETS_FILE": str(tmp_path / "none.toml"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(session.DEV_ROLE_ENV, raising=False)
    get_settings.cache_clear()
    st.cache_resource.clear()
    svc = build_services()
    yield svc
    svc.engine.dispose()
    get_settings.cache_clear()
    st.cache_resource.clear()


def signed_in(email: str) -> AppTest:
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=30)
    at.secrets["auth"] = OIDC_TEST_AUTH
    at.user = {"is_logged_in": True, "email": email}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_saved_staff_roles_replace_staff_roles_for_sign_in(live: Services) -> None:
    assert "no role in Room Desk" in signed_in("dana@venue.example").error[0].value
    save_venue_config(
        live,
        VenueEdit(0, staff_roles={"ann@venue.example": "admin", "dana@venue.example": "frontdesk"}),
        actor="ann@venue.example",
    )
    boot.get_services().reload_venue()  # the dashboard's process would look within two seconds; now at once
    at = signed_in("dana@venue.example")
    assert "no role in Room Desk" not in texts(at, "error"), texts(at, "error")
    assert "Front desk" in texts(at.sidebar, "markdown")
