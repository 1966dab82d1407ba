"""Mismatches: the open findings between Stripe, the room calendars and Room Desk, one at a time or a whole code at
once. Select a finding → what it is, its money, its booking and the booking's joined timeline → one button per fix →
confirm in a dialog → the fix runs through the Desk (services.reconciliation.remediate), then a sync and a
reconciliation show it resolved. The dialogs are pages/reconcile/mismatch_fixes.py, one finding mismatch_detail.py.

`?finding=<id>` opens one finding (selecting a row puts it in the URL); `?code=<code>` filters the list (the Overview
links here that way). Dialogs open from session-state flags (`mm_action`, `mm_bulk`), never from a button's return
value, so their own buttons survive the rerun they cause (REFERENCE.md, AppTest and dialogs).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.reconcile import mismatch_detail
from pages.reconcile.mismatch_fixes import NOT_IN_BULK, bulk_dialog, meaning, open_bulk
from pages.ui import boot, labels, session, sync, widgets
from services.core.errors import NotFound
from services.reconciliation.findings import ACTION_LABELS, CODES, SEVERITY_ORDER, get_finding, open_findings

svc = boot.services()
session.require_role("mismatches")
ROOMS = {r.slug: r.name for r in svc.catalogue.rooms}


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
        sync.show_sync_outcome(outcome)
with status:
    last = sync.sync_status(svc)

# ---- filters -----------------------------------------------------------------------------------------------------
# `?code=` (from the Overview) sets the code filter once; the person can change it afterwards.
if (linked := st.query_params.get("code")) and st.session_state.get("mm_code_link") != linked:
    st.session_state["mm_code_link"] = linked
    st.session_state["mm_codes"] = [linked] if linked in CODES else []

f1, f2, f3, f4 = st.columns([2, 1.5, 1.1, 1.4])
codes = f1.multiselect("Finding", list(CODES), format_func=meaning, key="mm_codes", placeholder="Any finding")
severities = f2.pills(
    "Severity",
    list(SEVERITY_ORDER),
    selection_mode="multi",
    format_func=str.capitalize,
    key="mm_sev",
)
room = f3.selectbox("Room", [None, *ROOMS], format_func=lambda s: "All rooms" if s is None else ROOMS[s], key="mm_room")
statuses = f4.segmented_control(
    "Status",
    ["open", "acknowledged"],
    selection_mode="multi",
    default=["open"],
    format_func=str.capitalize,
    key="mm_status",
)
statuses = statuses or ["open"]

everything = open_findings(svc, include_acknowledged=True)
rows = [
    f
    for f in everything
    if f.status in statuses
    and (not codes or f.code in codes)
    and (not severities or f.severity in severities)
    and (room is None or f.room == room)
]

if rows:
    # Room and dates are in the summary; first seen and the rest are in the detail.
    table = pd.DataFrame(
        [
            {
                "#": f.id,
                "Severity": f.severity.capitalize(),
                "Finding": meaning(f.code),
                "Summary": f.summary,
                "At risk": labels.money(svc, f.amount_cents) if f.amount_cents else "—",
                "Booking": f.booking_ref or "—",
                "Status": f.status.capitalize(),
            }
            for f in rows
        ]
    )
    if statuses == ["open"]:
        table = table.drop(columns="Status")
    # The key follows the filters and the list itself: when a fix or a sync changes the list, the selection starts
    # over, so a remembered row number never points at another finding.
    picked = widgets.selectable_table(
        table,
        key=widgets.table_key("mm_table", codes, severities, room, statuses, [f.id for f in rows]),
        rows=len(rows),
        height=widgets.fit_height(len(table), 430),
        column_config={
            "#": st.column_config.NumberColumn(width=40, format="%d"),
            "Severity": st.column_config.TextColumn(width=70),
            "Finding": st.column_config.TextColumn(width=240),
            "Summary": st.column_config.TextColumn(width=400, help="Hover a cell to read it all"),
            "At risk": st.column_config.TextColumn(width=80),
            "Booking": st.column_config.TextColumn(width=90),
        },
    )
    st.caption(f"{len(rows)} finding(s), most severe first. Select a row to see it and fix it.")
    if picked is not None and st.query_params.get("finding") != str(rows[picked].id):
        st.query_params["finding"] = str(rows[picked].id)
elif last is None:
    st.info("No findings yet: they appear after the first sync.", icon=":material/sync:")
elif everything:
    st.info("No finding matches these filters. Clear a filter to see the others.", icon=":material/filter_alt_off:")
else:
    st.success("Nothing to fix: Stripe, the room calendars and Room Desk agree.", icon=":material/task_alt:")

# ---- bulk action -------------------------------------------------------------------------------------------------
open_counts: dict[str, int] = {}
for f in everything:
    if f.status == "open":
        open_counts[f.code] = open_counts.get(f.code, 0) + 1
bulk_done = st.session_state.get("mm_bulk_result")
if open_counts or bulk_done:
    with st.expander("Bulk action: one fix for every open finding of a kind", expanded=bool(bulk_done)):
        if bulk_done:
            results = bulk_done["results"]
            good = sum(r.ok for r in results)
            (st.success if good == len(results) else st.warning)(
                f"{ACTION_LABELS[bulk_done['action']]}: {good} of {len(results)} done."
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
            b2.selectbox("Fix", choices, format_func=lambda a: ACTION_LABELS.get(a, a), key="mm_bulk_action")
            b3.button("Review…", key="mm_bulk_open", on_click=open_bulk, width="stretch")

if (pending_bulk := st.session_state.get("mm_bulk")) and all(pending_bulk):
    code_, action_ = pending_bulk
    title = f"{ACTION_LABELS[action_]}: {meaning(code_)}"
    widgets.flag_dialog("mm_bulk", title, bulk_dialog, svc, code_, action_, width="large")

# ---- one finding -------------------------------------------------------------------------------------------------
wanted = st.query_params.get("finding")
if not wanted:
    st.stop()
try:
    finding = get_finding(svc, int(wanted))
except (ValueError, NotFound):
    st.warning(f"No finding #{wanted} (from the link).", icon=":material/link_off:")
    st.stop()
mismatch_detail.show(svc, finding)
