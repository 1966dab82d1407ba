"""The Mismatches page's fix dialogs: one fix for one finding (`mm_action` flag), or one fix for every open finding
of a code (`mm_bulk` flag). Each shows what the fix will do now (the Desk's describe_fix), asks what it needs (a
note, a reason, an amount, the missing room details), and runs it through the Desk; the page then syncs and
reconciles so the finding shows resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from pages.ui import actions, widgets
from services.core.errors import DomainError
from services.reconciliation.findings import CODES, fix_label, fixes_label, open_findings

if TYPE_CHECKING:
    from models.tables import Finding
    from services.core.context import Services

# Fixes that need an answer per booking cannot run for a whole code at once.
NOT_IN_BULK = {"fill_extras"}


def meaning(code: str) -> str:
    return CODES[code][1] if code in CODES else code.replace("_", " ")


def open_action(finding_id: int, action: str) -> None:
    widgets.open_flag("mm_action", (finding_id, action), forget=("mm_fix",))


def open_bulk() -> None:
    wanted = (st.session_state.get("mm_bulk_code"), st.session_state.get("mm_bulk_action"))
    widgets.open_flag("mm_bulk", wanted, forget=("mm_bulk_result",))


NOTE_HINTS = {
    "acknowledge": "Why this is fine as it is",
    "extend_invoice": "What the organisation said (e.g. cheque posted on Monday)",
    "release_invoice": "Why the days are released (e.g. no answer to two reminders)",
}


def action_inputs(
    svc: Services, action: str, code: str, room_slug: str | None, key: str
) -> tuple[dict[str, Any], list[str]]:
    """The inputs an action needs, drawn in the dialog: (keyword arguments for the fix, what is still missing)."""
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    noted = ("acknowledge", "delete_hand_added", "extend_invoice", "release_invoice")
    if action in noted or (action == "delete_events" and code == "manual_event"):
        note = st.text_area(
            "Note",
            key=f"{key}_note",
            height=80,
            placeholder=NOTE_HINTS.get(action, "Why the event can go"),
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
        widgets.extras_inputs(room, f"{key}_x_", placeholder="")
        extras = widgets.extras_values(room, f"{key}_x_")
        kwargs["extras"] = extras
        missing += room.validate_extras(extras)[1]
    return kwargs, missing


def _go_back(flag: str) -> None:
    widgets.close_flag(flag)
    st.rerun()


def action_dialog(svc: Services, f: Finding, action: str) -> None:
    assert f.id is not None
    with actions.reporting("Preparing the fix"):
        st.markdown(actions.desk().describe_fix(f.id, action))
    key = f"mm_in_{f.id}_{action}"
    kwargs, missing = action_inputs(svc, action, f.code, f.room, key)
    if missing:
        st.caption("Still needed: " + "; ".join(missing) + ".")
    # The same words as the button that opened this dialog: what the fix will do to this finding.
    label = fix_label(svc, f, action)
    c1, c2 = st.columns(2)
    go = c1.button(label, type="primary", disabled=bool(missing), key="mm_go", width="stretch")
    if c2.button("Back", key="mm_back", width="stretch"):
        _go_back("mm_action")
    if go:
        try:
            result = actions.desk().run_remediation(f.id, action, **kwargs)
        except DomainError as exc:
            actions.show_error(exc, doing="Not done")
            return
        except Exception:
            actions.unexpected("The fix")
            return
        st.session_state["mm_fix"] = {"finding": f.id, "result": result, "outcome": None, "label": label}
        # An acknowledgement changes nothing outside Room Desk: no need to read Stripe and the calendars again.
        st.session_state["mm_resync"] = action != "acknowledge"
        _go_back("mm_action")


def bulk_dialog(svc: Services, code: str, action: str) -> None:
    targets = open_findings(svc, codes=[code])
    label = fixes_label(svc, targets, action)
    st.markdown(f"**{label}** for **{len(targets)}** open finding(s): {meaning(code)}.")
    if not targets:
        st.info("Nothing left open for this code.")
        return
    with actions.reporting("Preparing the fixes"):
        work = actions.desk()
        st.dataframe(
            pd.DataFrame(
                [
                    {"#": t.id, "Finding": t.summary, "What happens": work.describe_fix(t.id or 0, action)}
                    for t in targets[:200]
                ]
            ),
            hide_index=True,
            height=widgets.fit_height(len(targets), 280),
            column_config={
                "#": st.column_config.NumberColumn(width=50, format="%d"),
                "Finding": st.column_config.TextColumn(width="large"),
            },
        )
    kwargs, missing = action_inputs(svc, action, code, None, f"mm_bulk_in_{code}_{action}")
    if missing:
        st.caption("Still needed: " + "; ".join(missing) + ".")
    c1, c2 = st.columns(2)
    go = c1.button(
        f"{label} ({len(targets)})",
        type="primary",
        disabled=bool(missing),
        key="mm_bulk_go",
        width="stretch",
    )
    if c2.button("Back", key="mm_bulk_back", width="stretch"):
        _go_back("mm_bulk")
    if go:
        _, report = widgets.progress_bar("Starting")
        try:
            results = actions.desk().run_bulk_remediation(
                [t.id for t in targets if t.id is not None], action, progress=report, **kwargs
            )
        except DomainError as exc:
            actions.show_error(exc, doing="Not done")
            return
        except Exception:
            actions.unexpected("The fixes")
            return
        st.session_state["mm_bulk_result"] = {"code": code, "action": action, "results": results, "outcome": None}
        st.session_state["mm_resync"] = action != "acknowledge"
        _go_back("mm_bulk")
