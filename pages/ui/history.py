"""A booking's joined timeline as staff read it: Stripe's events and the calendar's changes (from the last sync), our
audit trail and the emails, in one table with a filter by source. The Bookings and Mismatches pages show it.

Each row says what happened as a sentence ("Slot held until Fri 4 Dec 14:30"), never as an action code
(services.rules.audit_words)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from pages.ui import labels
from services.booking.queries import booking_timeline
from services.reconciliation.findings import ACTION_LABELS
from services.rules import audit_words

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
                "What": str(row["what"]),
                "Who": who,
                # st.table renders Markdown: the details quote what customers typed (a name, notes), so as text.
                "Details": labels.literal(str(row.get("detail") or "")),
            }
        )
    return pd.DataFrame(out, columns=["When", "Source", "What", "Who", "Details"])


def sentence(svc: Services, action: str, payload: dict[str, Any]) -> str:
    """An audit row as the sentence the timeline shows: money in the venue's currency, instants in venue time."""
    return audit_words.sentence(
        action,
        payload,
        currency=svc.settings.currency,
        moment=lambda m: labels.venue(svc, m),
        fix_words=ACTION_LABELS,
    )


def timeline(svc: Services, booking_id: int) -> list[dict[str, Any]]:
    """The booking's joined timeline: what each row was as a sentence, its payload's facts formatted (money, dates)
    as on the rest of the page."""
    return booking_timeline(
        svc,
        booking_id,
        describe=lambda payload: labels.audit_summary(svc, payload),
        word=lambda action, payload: sentence(svc, action, payload),
    )


def show_history(svc: Services, booking_id: int, *, key: str) -> None:
    """The joined timeline with a filter by source (all shown at first), as a static table that wraps its text.

    The filter's key counts the rows: when a fix (or anything else) adds rows — the calendar events it created, the
    email it sent, its own audit row — the filter starts again with every source shown, so what the fix made is
    never hidden by a choice made before it existed."""
    rows = timeline(svc, booking_id)
    present = [s for s in TIMELINE_SOURCES if any(r["source"] == s for r in rows)]
    shown = st.pills(
        "Sources",
        present,
        selection_mode="multi",
        default=present,
        key=f"{key}_{len(rows)}",
        label_visibility="collapsed",
    )
    frame = history_frame(svc, [r for r in rows if r["source"] in (shown or present)])
    if frame.empty:
        st.caption("Nothing recorded for this booking yet.")
        return
    st.table(frame, hide_index=True, border="horizontal")
