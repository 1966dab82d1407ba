"""The admin Settings page: modes, rules in force, and a live connection check; nobody else can open it."""

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
    modes = at.dataframe[0].value
    assert dict(zip(modes["Part"], modes["Mode"], strict=True))["Payments"] == "sandbox"
    assert "Full refund 48 h or more before" in at.table[0].value.to_string()
    next(b for b in at.button if b.label == "Check connections").click().run()
    assert "Every connection works." in everything(at)
    results = at.dataframe[1].value
    assert set(results["Result"]) <= {"OK", "Skipped"}
    assert (results["Check"] == "Calendar writable").sum() == 7


@pytest.mark.parametrize("role", ["frontdesk", "manager", "finance"])
def test_other_roles_cannot_open_settings(app: App, svc: Services, role: str) -> None:
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/admin/settings.py")
    # Run the page file on its own, skipping the navigation: its own guard stops it.
    page = AppTest.from_file(APP.replace("app.py", "pages/admin/settings.py"), default_timeout=TIMEOUT)
    page.session_state["role"] = role
    page.run()
    assert "not available to" in texts(page, "error") and not page.title
