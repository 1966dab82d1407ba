"""The reconciliation pages through AppTest: Overview (counts, freshness, Sync now) and Mismatches (the list, one
finding's detail, fixes through the confirmation dialog, bulk fixes), and the Bookings page's joined timeline.

The module shares one DATA_DIR seeded with the demo data (tests/ui/conftest.py). The first test runs before any sync
on purpose: it sees the never-synced state, then syncs through the page; every later test asks for `synced`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from models.tables import Finding
from pages.ui.labels import literal
from services.core.context import Services
from services.reconciliation import reconcile, remediate
from services.reconciliation.findings import ACTION_LABELS, CODES, get_finding, last_sync, open_findings
from services.reconciliation.sync import sync

from .conftest import APP, TIMEOUT
from .test_pages import everything, nav_pages, texts

App = Callable[..., AppTest]
MISMATCHES = "pages/reconcile/mismatches.py"


@pytest.fixture(scope="module")
def synced(svc: Services) -> Services:
    """The module's data after a sync and a reconciliation (the demo's incidents are open findings)."""
    sync(svc, actor="test")
    reconcile.reconcile(svc, actor="test")
    return svc


def one(svc: Services, code: str) -> Finding:
    """The first open finding of `code` (the demo data makes one of each incident)."""
    found = open_findings(svc, codes=[code])
    assert found, f"the demo data has no open {code} finding"
    return found[0]


def select_row(at: AppTest, table_index: int, row: int) -> None:
    table = at.dataframe[table_index]
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()


def sources(timeline: object) -> list[str]:
    """The timeline's Source column as a person reads it (the page keeps "Room Desk" on one line with a no-break
    space)."""
    return [str(v).replace("\u00a0", " ") for v in timeline["Source"]]  # type: ignore[index]


def button_keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key}


# ------------------------------------------------------------------------------------------------ overview


def test_overview_before_any_sync_warns_then_sync_now_shows_the_findings(app: App, svc: Services) -> None:
    assert last_sync(svc) is None  # this module's first test: nothing synced yet
    at = app("manager")
    assert at.title[0].value == "Overview"  # the landing page for managers
    assert "**Never synced**" in texts(at, "warning")
    assert "appear here after the first sync" in texts(at, "info")
    assert not at.metric  # no zeros that would read as "all is well"

    at.button(key="ov_sync").click().run()
    assert not at.exception
    assert "Synced: " in texts(at, "success") and "new finding(s)" in texts(at, "success")
    assert "**Synced just now**" in texts(at, "markdown")
    assert "Never synced" not in texts(at, "warning")
    opened = open_findings(svc)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open findings"] == str(len(opened)) and len(opened) >= 8
    assert metrics["High severity"] == str(sum(f.severity == "high" for f in opened))
    assert metrics["Money at risk"] == f"${sum(f.amount_cents for f in opened) / 100:,.2f}"
    by_code = at.dataframe[0].value
    assert set(by_code["Code"]) == {f.code for f in opened}
    assert by_code["Open"].sum() == len(opened)
    assert by_code["Severity"].iloc[0] == "High"  # most severe first


def test_overview_row_opens_mismatches_filtered_to_that_code(app: App, synced: Services) -> None:
    at = app("admin")
    codes = list(at.dataframe[0].value["Code"])
    select_row(at, 0, codes.index("manual_event"))
    assert at.title[0].value == "Mismatches"
    assert at.multiselect(key="mm_codes").value == ["manual_event"]
    listed = at.dataframe[0].value
    assert set(listed["Finding"]) == {CODES["manual_event"][1]} and len(listed) == 2

    at.switch_page("pages/reconcile/overview.py").run()  # back again: the old selection does not bounce to Mismatches
    assert at.title[0].value == "Overview"


def test_finance_sees_the_overview_but_cannot_sync_or_fix(app: App, synced: Services) -> None:
    at = app("finance")
    assert at.title[0].value == "Overview"
    assert "ov_sync" not in button_keys(at)
    assert "Mismatches" not in nav_pages(at)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(MISMATCHES)


def test_front_desk_sees_neither_reconciliation_page(app: App, synced: Services) -> None:
    at = app("frontdesk")
    assert at.title[0].value == "Phone booking"
    assert "Overview" not in nav_pages(at) and "Mismatches" not in nav_pages(at)
    for page in ("pages/reconcile/overview.py", MISMATCHES):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)


@pytest.mark.parametrize("role", ["finance", "frontdesk"])
def test_mismatches_page_checks_the_role_itself(synced: Services, role: str) -> None:
    at = AppTest.from_file(APP.replace("app.py", MISMATCHES), default_timeout=TIMEOUT)
    at.session_state["role"] = role
    at.run()
    assert "This page is not available to" in texts(at, "error")
    assert not at.title


# ------------------------------------------------------------------------------------------------ mismatches


def test_mismatches_lists_the_demo_findings_most_severe_first(app: App, synced: Services) -> None:
    at = app("manager", page=MISMATCHES)
    table = at.dataframe[0].value
    opened = open_findings(synced)
    assert list(table["#"]) == [f.id for f in opened]
    assert {
        "Paid (not refunded in full), no calendar event",
        "Confirmed booking, no confirmation email on record",
    } <= set(table["Finding"])
    assert table["Severity"].iloc[0] == "High" and table["Severity"].iloc[-1] == "Low"

    at.button_group(key="mm_sev").set_value(["low"]).run()
    assert set(at.dataframe[0].value["Severity"]) == {"Low"}


def test_selecting_a_row_shows_the_finding_with_its_timeline_and_fixes(app: App, synced: Services) -> None:
    finding = one(synced, "paid_no_event")
    at = app("manager", page=MISMATCHES)
    row = list(at.dataframe[0].value["#"]).index(finding.id)
    select_row(at, 0, row)
    assert at.query_params.get("finding") == str(finding.id)
    page = everything(at)
    assert f"#{finding.id} · {CODES['paid_no_event'][1]}" in page
    assert literal(finding.summary) in page and f"PaymentIntent `{finding.payment_intent}`" in page
    assert "At risk: **$126.00**" in page  # the demo's paid day: $120.00 + GST 5 %
    link = at.get("page_link")[0]
    assert link.proto.label == f"Open booking {finding.booking_ref}"
    assert (link.proto.page, link.proto.query_string) == ("bookings", f"ref={finding.booking_ref}")
    assert {f"mm_do_{a}" for a in CODES["paid_no_event"][2]} <= button_keys(at)
    labels = {b.label for b in at.button if str(b.key).startswith("mm_do_")}
    assert labels == {ACTION_LABELS[a] for a in CODES["paid_no_event"][2]}
    timeline = at.table[0].value
    assert {"Stripe", "Room Desk"} <= set(sources(timeline))
    assert "Payment succeeded" in set(timeline["What"])


def test_acknowledge_with_a_note_takes_it_off_the_open_list(app: App, synced: Services) -> None:
    finding = one(synced, "dispute_open")
    at = app("manager", page=MISMATCHES, finding=str(finding.id))
    at.button(key="mm_do_acknowledge").click().run()
    assert at.button(key="mm_go").disabled  # a note is required
    at.text_area(key=f"mm_in_{finding.id}_acknowledge_note").set_value("Evidence sent by email to the bank").run()
    at.button(key="mm_go").click().run()
    assert not at.exception
    assert "**Acknowledge with a note** — Acknowledged: Evidence sent by email to the bank" in texts(at, "success")
    assert "Acknowledged** by manager@sandbox" in texts(at, "info")
    assert get_finding(synced, finding.id or 0).status == "acknowledged"
    assert "mm_go" not in button_keys(at)  # the dialog closed
    at.button(key="mm_back_list").click().run()
    assert "finding" not in at.query_params
    assert finding.id not in list(at.dataframe[0].value["#"])  # the default filter shows open findings

    at.button_group(key="mm_status").set_value(["acknowledged"]).run()
    assert list(at.dataframe[0].value["#"]) == [finding.id]


def test_resend_confirmation_resolves_its_finding(app: App, synced: Services) -> None:
    finding = one(synced, "missing_confirmation")
    at = app("manager", finding=str(finding.id))  # '/?finding=…' lands on Mismatches
    assert at.title[0].value == "Mismatches"
    at.button(key="mm_do_resend_confirmation").click().run()
    assert "Email the confirmation of" in texts(at, "markdown")  # describe_action's text in the dialog
    at.button(key="mm_go").click().run()
    assert not at.exception
    assert "**Send the confirmation email** — Confirmation emailed" in texts(at, "success")
    assert "**Resolved**" in texts(at, "success")
    assert get_finding(synced, finding.id or 0).status == "resolved"
    assert not any(str(k).startswith("mm_do_") for k in button_keys(at))  # nothing left to do
    at.button(key="mm_back_list").click().run()
    assert finding.id not in list(at.dataframe[0].value["#"])


def test_delete_the_orphan_event_resolves_its_finding(app: App, synced: Services) -> None:
    finding = one(synced, "orphan_event")
    at = app("admin", page=MISMATCHES, finding=str(finding.id))
    at.button(key="mm_do_delete_events").click().run()
    at.button(key="mm_go").click().run()
    assert not at.exception
    assert "**Resolved**" in texts(at, "success")
    assert get_finding(synced, finding.id or 0).status == "resolved"


def test_a_refused_fix_shows_why_and_offers_the_other_action(
    app: App, synced: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    finding = one(synced, "paid_no_event")

    def slot_taken(svc: Services, finding_id: int, action: str, **_: object) -> remediate.FixResult:
        return remediate.FixResult(finding_id, action, False, "Nothing was created: the slot is taken now", "refund")

    # AppTest runs the page in this process: the page calls this stand-in (no Stripe or calendar change).
    monkeypatch.setattr(remediate, "run_action", slot_taken)
    at = app("manager", page=MISMATCHES, finding=str(finding.id))
    at.button(key="mm_do_create_events").click().run()
    at.button(key="mm_go").click().run()
    assert "did not complete — Nothing was created: the slot is taken now" in texts(at, "warning")
    at.button(key="mm_offer").click().run()
    assert at.radio(key=f"mm_in_{finding.id}_refund_amount").options == [
        "Everything still held",
        "What the cancellation policy allows now",
    ]
    assert "mm_go" in button_keys(at)
    assert get_finding(synced, finding.id or 0).status == "open"


def test_bulk_acknowledge_every_manual_event(app: App, synced: Services) -> None:
    targets = {f.id for f in open_findings(synced, codes=["manual_event"])}
    assert len(targets) == 2
    at = app("manager", page=MISMATCHES)
    at.selectbox(key="mm_bulk_code").set_value("manual_event").run()
    assert at.selectbox(key="mm_bulk_action").options == [ACTION_LABELS["delete_events"], ACTION_LABELS["acknowledge"]]
    at.selectbox(key="mm_bulk_action").set_value("acknowledge").run()
    at.button(key="mm_bulk_open").click().run()
    assert set(at.dataframe[-1].value["#"]) == targets  # the dialog lists what it will touch
    at.text_area(key="mm_bulk_in_manual_event_acknowledge_note").set_value("Staff bookings, agreed with the venue")
    at.run()
    at.button(key="mm_bulk_go").click().run()
    assert not at.exception
    assert "Acknowledge with a note: 2 of 2 done." in texts(at, "success")
    results = next(d.value for d in at.dataframe if "Result" in d.value.columns)
    assert set(results["#"]) == targets and set(results["Result"]) == {"✓ done"}
    assert all(get_finding(synced, i or 0).status == "acknowledged" for i in targets)


def test_an_unknown_finding_link_says_so(app: App, synced: Services) -> None:
    at = app("manager", page=MISMATCHES, finding="999999")
    assert "No finding #999999" in texts(at, "warning")


# ------------------------------------------------------------------------------------------------ bookings


def test_booking_detail_shows_the_joined_timeline_with_stripe_rows(app: App, synced: Services) -> None:
    finding = one(synced, "holiday_booking")
    at = app("finance", page="pages/frontdesk/bookings.py", ref=finding.booking_ref)
    timeline = at.table[0].value
    assert {"Stripe", "Calendar", "Room Desk", "Email"} >= set(sources(timeline)) >= {"Stripe", "Room Desk"}
    stripe = timeline[timeline["Source"] == "Stripe"]
    assert {"Payment started", "Payment succeeded"} <= set(stripe["What"])
    assert "Stripe and calendar rows are as of the last sync" in texts(at, "caption")
    # Our own rows keep their readable summary (money formatted), not the raw payload.
    ours = [d for d, src in zip(timeline["Details"], sources(timeline), strict=True) if src == "Room Desk"]
    assert any("$" in d for d in ours)

    [sources_filter] = [g for g in at.button_group if str(g.key).startswith(f"bk_sources_{finding.booking_id}_")]
    sources_filter.set_value(["Stripe"]).run()
    assert set(sources(at.table[0].value)) == {"Stripe"}


def test_fill_in_the_extras_through_the_rooms_form(app: App, synced: Services) -> None:
    finding = one(synced, "missing_extras")
    room = synced.catalogue.room(finding.room or "")
    at = app("manager", page=MISMATCHES, finding=str(finding.id))
    at.button(key="mm_do_fill_extras").click().run()
    prefix = f"mm_in_{finding.id}_fill_extras_x_"
    assert at.button(key="mm_go").disabled  # the room's questions are required
    at.text_input(key=f"{prefix}show_name").set_value("Harbour Voices")
    at.selectbox(key=f"{prefix}set_choice").set_value(room.extras[1].choices[0])
    at.run()
    at.button(key="mm_go").click().run()
    assert not at.exception
    assert "**Fill in the extras** — Saved the extras" in texts(at, "success")
    assert get_finding(synced, finding.id or 0).status == "resolved"
