"""A booking's joined timeline as staff read it: Stripe's events and the calendar's changes (from the last sync), our
audit trail and the emails, in one table with a filter by source. The Bookings and Mismatches pages show it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from pages.ui import labels
from services.booking.queries import booking_timeline

if TYPE_CHECKING:
    from services.core.context import Services

TIMELINE_SOURCES = ["Stripe", "Calendar", "Room Desk", "Email"]


def history_frame(svc: Services, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """timeline() as a table a person reads: venue time, room names for calendars."""
    out = []
    for row in rows:
        who = str(row.get("who") or "")
        if row["source"] == "Calendar" and (room := svc.catalogue.room_by_calendar(who)) is not None:
            who = room.name
        out.append(
            {
                # No-break spaces: a static table gives the details the room and would wrap these short columns.
                "When": labels.venue(svc, row["at"]).replace(" ", labels.NBSP),
                "Source": str(row["source"]).replace(" ", labels.NBSP),
                "What": str(row["what"]).removeprefix("booking."),
                "Who": who,
                # st.table renders Markdown: the details quote what customers typed (a name, notes), so as text.
                "Details": labels.literal(str(row.get("detail") or "")),
            }
        )
    return pd.DataFrame(out, columns=["When", "Source", "What", "Who", "Details"])


def timeline(svc: Services, booking_id: int) -> list[dict[str, Any]]:
    """The booking's joined timeline, our audit rows' payloads formatted (money, dates) as on the rest of the page."""
    return booking_timeline(svc, booking_id, describe=lambda payload: labels.audit_summary(svc, payload))


def show_history(svc: Services, booking_id: int, *, key: str) -> None:
    """The joined timeline with a filter by source (all shown at first), as a static table that wraps its text."""
    rows = timeline(svc, booking_id)
    present = [s for s in TIMELINE_SOURCES if any(r["source"] == s for r in rows)]
    shown = st.pills("Sources", present, selection_mode="multi", default=present, key=key, label_visibility="collapsed")
    frame = history_frame(svc, [r for r in rows if r["source"] in (shown or present)])
    if frame.empty:
        st.caption("Nothing recorded for this booking yet.")
        return
    st.table(frame, hide_index=True, border="horizontal")
