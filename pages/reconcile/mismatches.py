"""Mismatches: the open findings between Stripe, the room calendars and Room Desk, one at a time or a whole code at
once. Select a finding → what it is, its money, its booking and the booking's joined timeline → one button per fix →
confirm in a dialog → the fix runs through the Desk (services.reconciliation.remediate), then a sync and a
reconciliation show it resolved. The dialogs are pages/reconcile/mismatch_fixes.py, one finding mismatch_detail.py.

The page shows either the list or one finding, right under the filters: at 1366×768 a finding opened below the
table started off screen, and so did the outcome of its fix. `?finding=<id>` opens one finding (selecting a row puts
it in the URL; "All findings" or a changed filter goes back); `?code=<code>` filters the list (the Overview links
here that way). Dialogs open from session-state flags (`mm_action`, `mm_bulk`), never from a button's return value,
so their own buttons survive the rerun they cause (REFERENCE.md, AppTest and dialogs).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from models.tables import Finding
from pages.reconcile import mismatch_detail
from pages.reconcile.mismatch_fixes import NOT_IN_BULK, bulk_dialog, meaning, open_bulk
from pages.ui import boot, labels, session, sync, widgets
from services.core.errors import NotFound
from services.reconciliation.findings import (
    ACTION_LABELS,
    CODES,
    SEVERITY_ORDER,
    dispute_reasons,
    fixes_label,
    get_finding,
    open_findings,
    summary_text,
)

svc = boot.services()
session.require_role("mismatches")
ROOMS = {r.slug: r.name for r in svc.catalogue.rooms}

# Fixed widths that fit the content width at 1366 px with the sidebar open (no sideways scrolling); the summary
# wraps nowhere, hovering a cell shows all of it.
COLUMNS = {
    "#": st.column_config.NumberColumn(width=40, format="%d"),
    "Severity": st.column_config.TextColumn(width=68),
    "Finding": st.column_config.TextColumn(width=215),
    "Summary": st.column_config.TextColumn(width=360, help="Hover a cell to read it all"),
    "At risk": st.column_config.TextColumn(width=75),
    "Booking": st.column_config.TextColumn(width=92),
    "Status": st.column_config.TextColumn(width=95),
}


def open_finding(finding_id: int) -> None:
    st.query_params["finding"] = str(finding_id)


def back_to_list() -> None:
    """on_click / on_change: the list again, with no row selected (the table's selection would reopen the finding)."""
    st.query_params.pop("finding", None)
    widgets.next_generation("mm")


def filters() -> dict[str, Any]:
    """The list's filters, on every view of the page: changing one goes back to the list of what matches. `?code=`
    (from the Overview) sets the code filter once; the person can change it afterwards."""
    if (linked := st.query_params.get("code")) and st.session_state.get("mm_code_link") != linked:
        st.session_state["mm_code_link"] = linked
        st.session_state["mm_codes"] = [linked] if linked in CODES else []
    f1, f2, f3, f4 = st.columns([2, 1.5, 1.1, 1.4])
    codes = f1.multiselect(
        "Finding", list(CODES), format_func=meaning, key="mm_codes", placeholder="Any finding", on_change=back_to_list
    )
    severities = f2.pills(
        "Severity",
        list(SEVERITY_ORDER),
        selection_mode="multi",
        format_func=str.capitalize,
        key="mm_sev",
        on_change=back_to_list,
    )
    room = f3.selectbox(
        "Room",
        [None, *ROOMS],
        format_func=lambda s: "All rooms" if s is None else ROOMS[s],
        key="mm_room",
        on_change=back_to_list,
    )
    statuses = f4.segmented_control(
        "Status",
        ["open", "acknowledged"],
        selection_mode="multi",
        default=["open"],
        format_func=str.capitalize,
        key="mm_status",
        on_change=back_to_list,
    )
    return {"codes": codes, "severities": severities, "room": room, "statuses": statuses or ["open"]}


def matching(everything: list[Finding], chosen: dict[str, Any]) -> list[Finding]:
    codes, severities, room = chosen["codes"], chosen["severities"], chosen["room"]
    return [
        f
        for f in everything
        if f.status in chosen["statuses"]
        and (not codes or f.code in codes)
        and (not severities or f.severity in severities)
        and (room is None or f.room == room)
    ]


def finding_list(everything: list[Finding], chosen: dict[str, Any], last: Any) -> None:
    """The findings that match, to pick one from."""
    rows = matching(everything, chosen)
    if not rows:
        if last is None:
            st.info("No findings yet: they appear after the first sync.", icon=":material/sync:")
        elif everything:
            st.info(
                "No finding matches these filters. Clear a filter to see the others.", icon=":material/filter_alt_off:"
            )
        else:
            st.success("Nothing to fix: Stripe, the room calendars and Room Desk agree.", icon=":material/task_alt:")
        return
    reasons = dispute_reasons(svc)
    # Room and dates are in the summary; first seen and the rest are in the detail.
    table = pd.DataFrame(
        [
            {
                "#": f.id,
                "Severity": f.severity.capitalize(),
                "Finding": meaning(f.code),
                "Summary": summary_text(svc, f, reasons),
                "At risk": labels.money(svc, f.amount_cents) if f.amount_cents else "—",
                "Booking": f.booking_ref or "—",
                "Status": f.status.capitalize(),
            }
            for f in rows
        ]
    )
    if chosen["statuses"] == ["open"]:
        table = table.drop(columns="Status")
    ids = [f.id or 0 for f in rows]
    # The key follows the filters and the list itself: when a fix or a sync changes the list, the selection starts
    # over, so a remembered row number never points at another finding.
    picked = widgets.selectable_table(
        table,
        key=widgets.table_key("mm_table", widgets.generation("mm"), *chosen.values(), ids),
        rows=len(rows),
        height=widgets.fit_height(len(table), 430),
        column_config=COLUMNS,
        on_pick=lambda row: open_finding(ids[row]),
    )
    st.caption(f"{len(rows)} finding(s), most severe first. Select a row to see it and fix it.")
    if picked is not None:  # a selection the click's callback did not see (AppTest): open it now
        open_finding(ids[picked])
        st.rerun()


def bulk_action(everything: list[Finding], codes: list[str]) -> None:
    """One fix for every open finding of a kind, with what it did."""
    open_counts: dict[str, int] = {}
    for f in everything:
        if f.status == "open":
            open_counts[f.code] = open_counts.get(f.code, 0) + 1
    bulk_done = st.session_state.get("mm_bulk_result")
    if not (open_counts or bulk_done):
        return
    with st.expander("Bulk action: one fix for every open finding of a kind", expanded=bool(bulk_done)):
        if bulk_done:
            bulk_outcome(bulk_done)
        if open_counts:
            b1, b2, b3 = st.columns([2, 2, 1], vertical_alignment="bottom")
            kinds = sorted(open_counts, key=lambda c: (SEVERITY_ORDER.get(CODES[c][0], 9) if c in CODES else 9, c))
            bulk_code = b1.selectbox(
                "Finding",
                kinds,
                # Follows the list's filter when it names one kind (as the Overview's links do).
                index=kinds.index(codes[0]) if len(codes) == 1 and codes[0] in kinds else 0,
                format_func=lambda c: f"{meaning(c)} ({open_counts[c]} open)",
                key="mm_bulk_code",
            )
            choices = [a for a in CODES.get(bulk_code, ("", "", ("acknowledge",)))[2] if a not in NOT_IN_BULK]
            targets = [f for f in everything if f.status == "open" and f.code == bulk_code]
            b2.selectbox("Fix", choices, format_func=lambda a: fixes_label(svc, targets, a), key="mm_bulk_action")
            b3.button("Review…", key="mm_bulk_open", on_click=open_bulk, width="stretch")


def bulk_outcome(bulk_done: dict[str, Any]) -> None:
    results = bulk_done["results"]
    good = sum(r.ok for r in results)
    widgets.kept_outcome(
        "success" if good == len(results) else "warning",
        f"{ACTION_LABELS[bulk_done['action']]}: {good} of {len(results)} done.",
        forget="mm_bulk_result",
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": r.finding_id,
                    "Result": "✓ done" if r.ok else "✗ not done",
                    "Message": r.message,
                    "Try instead": ACTION_LABELS.get(r.offer or "", ""),
                }
                for r in results
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={"Message": st.column_config.TextColumn(width="large")},
    )
    if bulk_done["outcome"]:
        st.caption(bulk_done["outcome"].text())


def wanted_finding() -> Finding | None:
    """The finding `?finding=` names, or None (with a warning for one that does not exist)."""
    wanted = st.query_params.get("finding")
    if not wanted:
        return None
    try:
        return get_finding(svc, int(wanted))
    except (ValueError, NotFound):
        st.warning(f"No finding #{wanted} (from the link).", icon=":material/link_off:")
        return None


# ------------------------------------------------------------------------------------------------ page

st.title("Mismatches")

status, button = st.columns([4, 1], vertical_alignment="center")
sync_clicked = button.button("Sync now", type="primary", icon=":material/sync:", key="mm_sync", width="stretch")
if sync_clicked or st.session_state.pop("mm_resync", False):
    # After a fix, or asked for: read Stripe and the calendars again and reconcile, so what the fix changed shows
    # here (the fixed finding resolves) before anything below reads the findings.
    outcome = sync.sync_and_reconcile()
    for pending in ("mm_fix", "mm_bulk_result"):
        if not sync_clicked and (done := st.session_state.get(pending)) and done["outcome"] is None:
            done["outcome"] = outcome or False
    if sync_clicked and outcome is not None:
        st.session_state["mm_synced"] = ("warning" if outcome.errors else "success", outcome.text())
with status:
    last = sync.sync_status(svc)
if synced := st.session_state.get("mm_synced"):  # what Sync now read, until dismissed
    widgets.kept_outcome(*synced, forget="mm_synced", icon=":material/sync:")

chosen = filters()
everything = open_findings(svc, include_acknowledged=True)
if (finding := wanted_finding()) is not None:
    mismatch_detail.show(svc, finding, on_back=back_to_list)
else:
    finding_list(everything, chosen, last)
    bulk_action(everything, chosen["codes"])

if (pending_bulk := st.session_state.get("mm_bulk")) and all(pending_bulk):
    code_, action_ = pending_bulk
    title = f"{fixes_label(svc, open_findings(svc, codes=[code_]), action_)}: {meaning(code_)}"
    widgets.flag_dialog("mm_bulk", title, bulk_dialog, svc, code_, action_, width="large")
