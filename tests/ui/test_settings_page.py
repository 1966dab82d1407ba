"""The admin Settings page: the configuration in force in editable sections, modes, rules in force, and a live
connection check; nobody else can open it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from services.core.context import Services

from .conftest import APP, TIMEOUT
from .test_pages import everything, texts

App = Callable[..., AppTest]


def test_admin_checks_every_connection(app: App) -> None:
    at = app("admin", page="pages/admin/settings.py")
    modes = next(df for df in at.dataframe if df.editing_mode == "read_only").value
    assert dict(zip(modes["Part"], modes["Mode"], strict=True))["Payments"] == "sandbox"
    assert "Full refund 48 h or more before" in at.table[0].value.to_string()
    next(b for b in at.button if b.label == "Check connections").click().run()
    assert "Every connection works." in everything(at)
    results = next(df.value for df in at.dataframe if "Check" in df.value.columns)
    assert set(results["Result"]) <= {"OK", "Skipped"}
    assert (results["Check"] == "Calendar writable").sum() == 7


def test_admin_sees_the_seed_in_force_and_nothing_to_save(app: App) -> None:
    at = app("admin", page="pages/admin/settings.py")
    assert "In force: the first-run seed" in texts(at, "caption")
    rooms = at.data_editor[0].value
    assert list(rooms["name"])[:2] == ["Main Hall", "Boardroom"] and list(rooms["price"])[:2] == [120.0, 45.0]
    saves = [b for b in at.button if b.label.startswith("Save ")]
    assert len(saves) == 6 and all(b.disabled for b in saves)  # nothing edited: nothing to save
    assert "Nothing saved yet" in texts(at, "info")


@pytest.mark.parametrize("role", ["frontdesk", "manager", "finance"])
def test_other_roles_cannot_open_settings(app: App, svc: Services, role: str) -> None:
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/admin/settings.py")
    # Run the page file on its own, skipping the navigation: its own guard stops it before any editor is drawn.
    page = AppTest.from_file(APP.replace("app.py", "pages/admin/settings.py"), default_timeout=TIMEOUT)
    page.session_state["role"] = role
    page.run()
    assert "not available to" in texts(page, "error") and not page.title
    assert not page.data_editor and not [b for b in page.button if b.label.startswith("Save")]
