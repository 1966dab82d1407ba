"""A manager fixes a mismatch in a real browser: sign in on a deep link to the finding, read it, run its fix through
the confirmation dialog, and see it resolved (the page syncs and reconciles after the fix).

The demo data is made, synced and reconciled here in the test process, against the DATA_DIR the app then opens:
that is also how the test knows the finding's id (the findings grid is a canvas, so the test does not click rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import open_page, screenshot, wait_idle, wait_text
from .seeding import demo_venue

# Streamlit reloads a changed module on the next rerun; with SQLModel tables that breaks the app until a restart. The
# test runs the code as it was at start, whatever else is being edited in the checkout meanwhile.
NO_WATCHER = ["--server.fileWatcherType", "none"]


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any]]:
    """A DATA_DIR with demo bookings, synced and reconciled: (the folder, the services over it)."""
    from services.reconciliation import reconcile, sync

    data_dir = tmp_path / "data"
    with demo_venue(data_dir, monkeypatch, count=30) as svc:
        sync.sync(svc, actor="test")
        reconcile.reconcile(svc, actor="test")
        yield data_dir, svc


def test_manager_resends_a_missing_confirmation_and_sees_it_resolved(
    start_app: Any, page: Any, seeded: tuple[Path, Any]
) -> None:
    from services.reconciliation.findings import CODES, get_finding, open_findings

    data_dir, svc = seeded
    [finding] = open_findings(svc, codes=["missing_confirmation"])
    server = start_app(data_dir=data_dir, extra_args=NO_WATCHER)

    # Signed out, the deep link shows the sign-in page and survives it.
    open_page(page, server, f"/mismatches?finding={finding.id}", timeout=120)
    page.get_by_text("Manager — ").click()
    page.get_by_role("button", name="Sign in").click()
    wait_text(page, f"#{finding.id} · {CODES['missing_confirmation'][1]}")
    wait_idle(page)
    wait_text(page, finding.summary)
    screenshot(page, "e2e_mismatch_detail")

    page.get_by_role("button", name="Send the confirmation email").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Email the confirmation of").wait_for()
    screenshot(page, "e2e_mismatch_dialog", full_page=False)
    dialog.get_by_role("button", name="Send the confirmation email").click()

    wait_text(page, "Confirmation emailed")
    wait_text(page, "the last sync no longer sees this mismatch")
    wait_idle(page)
    assert page.get_by_role("dialog").count() == 0
    assert page.get_by_role("button", name="Send the confirmation email").count() == 0  # nothing left to do
    screenshot(page, "e2e_mismatch_resolved")
    assert get_finding(svc, finding.id).status == "resolved"

    page.get_by_role("button", name="All findings").click()
    wait_text(page, "Select a row to see it and fix it")
    wait_idle(page)
    # The grid is a canvas, but its accessible cells carry the text: the finding is off the open list.
    page.locator("[role=gridcell]", has_text="Two events overlap").first.wait_for(state="attached")
    assert page.locator("[role=gridcell]", has_text=finding.booking_ref).count() == 0
