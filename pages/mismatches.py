"""Mismatches: the open findings between Stripe, the room calendars and Room Desk, one at a time or a whole code at
once. Select a finding → what it is, its money, its booking and the booking's joined timeline → one button per fix →
confirm in a dialog → the fix runs through services.reconciliation.remediate, then a sync and a reconciliation show
it resolved.

`?finding=<id>` opens one finding (selecting a row puts it in the URL); `?code=<code>` filters the list (the Overview
links here that way). Dialogs open from session-state flags (`mm_action`, `mm_bulk`), never from a button's return
value, so their own buttons survive the rerun they cause (REFERENCE.md, AppTest and dialogs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from models.tables import Finding
from pages import _ui as ui
from services.booking.queries import booking_detail, booking_timeline
from services.core.errors import DomainError, NotFound
from services.reconciliation import remediate
from services.reconciliation.findings import ACTION_LABELS, CODES, SEVERITY_ORDER, get_finding, open_findings
from services.rules.fmt import day_label

log = logging.getLogger("roomdesk.ui.mismatches")

ui.run_through_app()
svc = ui.services()
ui.require_role("mismatches")
ROOMS = {r.slug: r.name for r in svc.catalogue.rooms}
# Fixes that need an answer per booking cannot run for a whole code at once.
NOT_IN_BULK = {"fill_extras"}


def meaning(code: str) -> str:
    return CODES[code][1] if code in CODES else code.replace("_", " ")


def days(dates: list[str]) -> str:
    labels = [day_label(date.fromisoformat(d)) for d in dates[:3]]
    return ", ".join(labels) + (f" +{len(dates) - 3}" if len(dates) > 3 else "") if labels else "—"


# ------------------------------------------------------------------------------------------------ actions


def _open_action(finding_id: int, action: str) -> None:
    st.session_state["mm_action"] = (finding_id, action)
    st.session_state.pop("mm_fix", None)


def _close_action() -> None:
    st.session_state.pop("mm_action", None)


def _open_bulk() -> None:
    st.session_state["mm_bulk"] = (st.session_state.get("mm_bulk_code"), st.session_state.get("mm_bulk_action"))
    st.session_state.pop("mm_bulk_result", None)


def _close_bulk() -> None:
    st.session_state.pop("mm_bulk", None)


def action_inputs(action: str, code: str, room_slug: str | None, key: str) -> tuple[dict[str, Any], list[str]]:
    """The inputs an action needs, drawn in the dialog: (keyword arguments for run_action, what is still missing)."""
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    if action == "acknowledge" or (action == "delete_events" and code == "manual_event"):
        note = st.text_area(
            "Note",
            key=f"{key}_note",
            height=80,
            placeholder="Why this is fine as it is" if action == "acknowledge" else "Why the event can go",
            help="Kept with the finding and in the audit trail.",
        )
        kwargs["note"] = note
        if not note.strip():
            missing.append("a note")
    if action in ("refund", "cancel", "cancel_full_refund"):
        kwargs["reason"] = st.text_input(
            "Reason",
            key=f"{key}_reason",
            placeholder="Optional: Room Desk writes one that fits the finding",
            help="Kept in the audit trail and on the refund in Stripe.",
        )
    if action == "refund":
        amounts = {
            "full": "Everything still held",
            "policy": "What the cancellation policy allows now",
        }
        if code == "amount_mismatch":
            amounts["difference"] = "Just what was charged above the price"
        kwargs["amount"] = st.radio("How much", list(amounts), format_func=amounts.get, key=f"{key}_amount")
    if action == "fill_extras" and room_slug:
        room = svc.catalogue.room(room_slug)
        ui.extras_inputs(room, f"{key}_x_", placeholder="")
        extras = ui.extras_values(room, f"{key}_x_")
        kwargs["extras"] = extras
        missing += room.validate_extras(extras)[1]
    return kwargs, missing


def action_dialog(f: Finding, action: str) -> None:
    assert f.id is not None
    with ui.reporting("Preparing the fix"):
        st.markdown(remediate.describe_action(svc, f.id, action))
    key = f"mm_in_{f.id}_{action}"
    kwargs, missing = action_inputs(action, f.code, f.room, key)
    if missing:
        st.caption("Still needed: " + "; ".join(missing) + ".")
    c1, c2 = st.columns(2)
    go = c1.button(ACTION_LABELS[action], type="primary", disabled=bool(missing), key="mm_go", width="stretch")
    if c2.button("Back", key="mm_back", width="stretch"):
        _close_action()
        st.rerun()
    if go:
        try:
            result = ui.desk().run_remediation(f.id, action, **kwargs)
        except DomainError as exc:
            ui.show_error(exc, doing="Not done")
            return
        except Exception:
            log.exception("%s on finding %s failed", action, f.id)
            st.error("The fix failed unexpectedly. Nothing more is shown here; the details are in the server log.")
            return
        st.session_state["mm_fix"] = {"finding": f.id, "result": result, "outcome": None}
        # An acknowledgement changes nothing outside Room Desk: no need to read Stripe and the calendars again.
        st.session_state["mm_resync"] = action != "acknowledge"
        _close_action()
        st.rerun()


def bulk_dialog(code: str, action: str) -> None:
    targets = open_findings(svc, codes=[code])
    st.markdown(f"**{ACTION_LABELS[action]}** for **{len(targets)}** open finding(s): {meaning(code)}.")
    if not targets:
        st.info("Nothing left open for this code.")
        return
    with ui.reporting("Preparing the fixes"):
        st.dataframe(
            pd.DataFrame(
                [
                    {"#": t.id, "Finding": t.summary, "What happens": remediate.describe_action(svc, t.id or 0, action)}
                    for t in targets[:200]
                ]
            ),
            hide_index=True,
            height=min(38 + 35 * len(targets), 280),
            column_config={
                "#": st.column_config.NumberColumn(width=50, format="%d"),
                "Finding": st.column_config.TextColumn(width="large"),
            },
        )
    kwargs, missing = action_inputs(action, code, None, f"mm_bulk_in_{code}_{action}")
    if missing:
        st.caption("Still needed: " + "; ".join(missing) + ".")
    c1, c2 = st.columns(2)
    go = c1.button(
        f"{ACTION_LABELS[action]} ({len(targets)})",
        type="primary",
        disabled=bool(missing),
        key="mm_bulk_go",
        width="stretch",
    )
    if c2.button("Back", key="mm_bulk_back", width="stretch"):
        _close_bulk()
        st.rerun()
    if go:
        bar = st.progress(0.0, text="Starting")
        try:
            results = ui.desk().run_bulk_remediation(
                [t.id for t in targets if t.id is not None],
                action,
                progress=lambda frac, msg: bar.progress(min(max(frac, 0.0), 1.0), text=str(msg)[:120]),
                **kwargs,
            )
        except DomainError as exc:
            ui.show_error(exc, doing="Not done")
            return
        except Exception:
            log.exception("bulk %s on %s failed", action, code)
            st.error("The fixes failed unexpectedly. Nothing more is shown here; the details are in the server log.")
            return
        st.session_state["mm_bulk_result"] = {"code": code, "action": action, "results": results, "outcome": None}
        st.session_state["mm_resync"] = action != "acknowledge"
        _close_bulk()
        st.rerun()


# ------------------------------------------------------------------------------------------------ page

st.title("Mismatches")

status, button = st.columns([4, 1], vertical_alignment="center")
sync_clicked = button.button("Sync now", type="primary", icon=":material/sync:", key="mm_sync", width="stretch")
if sync_clicked or st.session_state.pop("mm_resync", False):
    # After a fix, or asked for: read Stripe and the calendars again and reconcile, so what the fix changed shows
    # here (the fixed finding resolves) before anything below reads the findings.
    outcome = ui.sync_and_reconcile(svc)
    for pending in ("mm_fix", "mm_bulk_result"):
        if not sync_clicked and (done := st.session_state.get(pending)) and done["outcome"] is None:
            done["outcome"] = outcome or False
    if sync_clicked and outcome is not None:
        ui.show_sync_outcome(outcome)
with status:
    last = ui.sync_status(svc)

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
                "At risk": ui.money(svc, f.amount_cents) if f.amount_cents else "—",
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
    digest = hashlib.sha1(
        json.dumps([codes, severities, room, statuses, [f.id for f in rows]]).encode(), usedforsecurity=False
    ).hexdigest()[:10]
    event = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"mm_table_{digest}",
        height=min(38 + 35 * len(table), 430),
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
    picked = event.selection.rows if event is not None else []
    if picked and st.query_params.get("finding") != str(rows[picked[0]].id):
        st.query_params["finding"] = str(rows[picked[0]].id)
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
            b2.selectbox("Fix", choices, format_func=ACTION_LABELS.get, key="mm_bulk_action")
            b3.button("Review…", key="mm_bulk_open", on_click=_open_bulk, width="stretch")

if (pending_bulk := st.session_state.get("mm_bulk")) and all(pending_bulk):
    code_, action_ = pending_bulk
    st.dialog(f"{ACTION_LABELS[action_]}: {meaning(code_)}", width="large", on_dismiss=_close_bulk)(bulk_dialog)(
        code_, action_
    )

# ---- one finding -------------------------------------------------------------------------------------------------
wanted = st.query_params.get("finding")
if not wanted:
    st.stop()
try:
    finding = get_finding(svc, int(wanted))
except (ValueError, NotFound):
    st.warning(f"No finding #{wanted} (from the link).", icon=":material/link_off:")
    st.stop()
assert finding.id is not None

st.divider()
st.subheader(f"#{finding.id} · {meaning(finding.code)}", anchor=False)
b1, b2, b3, _ = st.columns([1, 1, 2, 6])
with b1:
    st.badge(finding.severity.capitalize(), color=ui.SEVERITY_COLORS.get(finding.severity, "gray"))  # type: ignore[arg-type]
with b2:
    st.badge(
        finding.status.capitalize(),
        color={"open": "red", "acknowledged": "blue", "resolved": "green"}.get(finding.status, "gray"),  # type: ignore[arg-type]
    )
b3.markdown(f"`{finding.code}`")
st.markdown(finding.summary)

# The outcome of the last fix on this finding (shown once the dialog has closed and the sync has run).
fix = st.session_state.get("mm_fix")
if fix and fix["finding"] == finding.id:
    result = fix["result"]
    label = ACTION_LABELS.get(result.action, result.action)
    if result.ok:
        st.success(f"**{label}** — {result.message}", icon=":material/check_circle:")
    else:
        st.warning(f"**{label}** did not complete — {result.message}", icon=":material/warning:")
        if result.offer and finding.status != "resolved":
            st.button(
                f"{ACTION_LABELS.get(result.offer, result.offer)}…",
                key="mm_offer",
                on_click=_open_action,
                args=(finding.id, result.offer),
            )
    if fix["outcome"]:
        st.caption(fix["outcome"].text())
if finding.status == "resolved":
    st.success(
        f"**Resolved** {ui.venue(svc, finding.resolved_at)}: the last sync no longer sees this mismatch.",
        icon=":material/task_alt:",
    )
elif finding.status == "acknowledged":
    st.info(
        f"**Acknowledged** by {finding.acknowledged_by} {ui.venue(svc, finding.acknowledged_at)}: {finding.note}",
        icon=":material/done:",
    )

c1, c2, c3 = st.columns(3)
with c1:
    st.markdown("**Payment**")
    st.markdown(f"PaymentIntent `{finding.payment_intent}`" if finding.payment_intent else "No payment")
    st.markdown(f"At risk: **{ui.money(svc, finding.amount_cents)}**" if finding.amount_cents else "No money at risk")
with c2:
    st.markdown("**Booking**")
    if finding.booking_id and finding.booking_ref:
        st.page_link(
            "pages/bookings.py",
            label=f"Open booking {finding.booking_ref}",
            icon=":material/open_in_new:",
            query_params={"ref": finding.booking_ref},
        )
    else:
        st.markdown(f"{finding.booking_ref} (not in Room Desk)" if finding.booking_ref else "No booking behind it")
    st.markdown(f"{ROOMS.get(finding.room or '', finding.room or 'No room')} · {days(finding.dates)}")
with c3:
    st.markdown("**Seen**")
    st.markdown(
        f"First {ui.venue(svc, finding.first_seen_at)} · last {ui.venue(svc, finding.last_seen_at)} "
        f"({ui.tz_label(svc)})"
    )
    st.markdown("Events: " + (", ".join(f"`{e}`" for e in finding.event_ids) if finding.event_ids else "none"))

# ---- fixes -------------------------------------------------------------------------------------------------------
if finding.status == "resolved":
    st.caption("Nothing left to do here.")
else:
    actions = list(finding.actions or CODES.get(finding.code, ("", "", ()))[2])
    if finding.status == "acknowledged":
        actions = [a for a in actions if a != "acknowledge"]
    st.markdown("**Fix it**")
    cols = st.columns(max(len(actions), 1) + 1)
    for i, action in enumerate(actions):
        cols[i].button(
            ACTION_LABELS.get(action, action),
            key=f"mm_do_{action}",
            type="primary" if i == 0 and action != "acknowledge" else "secondary",
            on_click=_open_action,
            args=(finding.id, action),
            width="stretch",
        )
if (pending := st.session_state.get("mm_action")) and pending[0] == finding.id:
    st.dialog(ACTION_LABELS.get(pending[1], pending[1]), width="medium", on_dismiss=_close_action)(action_dialog)(
        finding, pending[1]
    )

# ---- the booking's story -----------------------------------------------------------------------------------------
if finding.booking_id:
    st.markdown(f"#### Booking timeline ({ui.tz_label(svc)})")
    with ui.reporting("Loading the timeline"):
        detail = booking_detail(svc, finding.booking_id, live=False)
        ui.show_history(svc, detail, booking_timeline(svc, finding.booking_id), key=f"mm_sources_{finding.id}")
