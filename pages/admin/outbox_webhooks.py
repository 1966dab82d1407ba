"""The Failed webhooks tab of Emails & webhooks: the Stripe events whose processing failed, with Replay (the selected
one) and Replay all, each through the Desk, with one result line per event afterwards."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.admin.outbox_emails import after_action
from pages.ui import actions, labels, widgets
from services.core.context import Services
from services.core.errors import DomainError, GatewayError
from services.web.webhook_queries import StoredEvent, list_failed_events

EVENT_LABELS = {
    "payment_intent.succeeded": "Payment succeeded",
    "payment_intent.payment_failed": "Payment failed",
    "payment_intent.canceled": "Payment cancelled",
    "charge.refunded": "Refund",
    "charge.dispute.created": "Dispute opened",
    "charge.dispute.closed": "Dispute closed",
}
REPLAY_WORDS = {
    "processed": "The booking now matches what Stripe says.",
    "ignored": "Nothing to do: the event is not about a Room Desk booking, or the booking had already moved on.",
}


def replay(svc: Services, events: list[StoredEvent]) -> None:
    """Replay each event with a progress bar; keep one result line per event for the next run."""
    bar = st.progress(0.0, text="Replaying")
    results = []
    for i, e in enumerate(events):
        bar.progress(i / len(events), text=f"Replaying {i + 1} of {len(events)}: {e.event_id}")
        try:
            status = actions.desk().replay_webhook(e.id)
            ok = status != "failed"
            if ok:
                words = REPLAY_WORDS.get(status, status)
            else:
                again = next((f for f in list_failed_events(svc) if f.id == e.id), None)
                words = f"{again.last_error if again else 'It failed again'}."
        except GatewayError as exc:
            ok, words = False, f"{exc.message}. Stripe sends it again by itself; or replay it later."
        except DomainError as exc:
            ok, words = False, f"{exc.message}."
        except Exception:
            actions.log.exception("Replaying webhook event #%s failed", e.id)
            ok, words = False, "Failed unexpectedly; the details are in the server log."
        results.append(
            {
                "Outcome": "Done" if ok else "Not done",
                "Event": EVENT_LABELS.get(e.type, e.type),
                "Event id": e.event_id,
                "Result": words,
            }
        )
    bar.empty()
    st.session_state["ob_replayed"] = results
    after_action()


def webhooks_section(svc: Services, failed: list[StoredEvent]) -> None:
    read_only = svc.settings.audit_mode
    st.caption(
        "Stripe told Room Desk about these events, but processing them failed (usually Stripe or a calendar could "
        "not be reached). Stripe sends an event again by itself for up to three days; Replay runs it now. Replaying "
        "is always safe: it brings the booking in line with what Stripe says now, never twice."
    )
    if results := st.session_state.get("ob_replayed"):
        good = sum(r["Outcome"] == "Done" for r in results)
        box = widgets.kept_outcome(
            "success" if good == len(results) else "warning",
            f"Replayed {len(results)}: {good} done.",
            forget="ob_replayed",
        )
        box.table(pd.DataFrame(results), hide_index=True, border="horizontal")
    if not failed:
        st.success("No failed webhook: every event Stripe sent has been processed.", icon=":material/task_alt:")
        return
    table = pd.DataFrame(
        [
            {
                "Received": labels.venue(svc, e.received_at),
                "Event": EVENT_LABELS.get(e.type, e.type),
                "Type": e.type,
                "Event id": e.event_id,
                "Attempts": e.attempts,
                "Last error": e.last_error or "",
            }
            for e in failed
        ]
    )
    row = widgets.selectable_table(
        table,
        key=f"ob_hooks_{widgets.generation('ob')}",
        rows=len(failed),
        column_config={"Last error": st.column_config.TextColumn(width="large")},
    )
    c1, c2, _ = st.columns([1, 1, 2])
    one = c1.button(
        "Replay" + (f" {failed[row].event_id[-8:]}" if row is not None else ""),
        icon=":material/replay:",
        type="primary",
        key="ob_replay",
        width="stretch",
        disabled=read_only or row is None,
        help="Select an event in the table first",
    )
    every = c2.button(
        f"Replay all ({len(failed)})",
        icon=":material/replay:",
        key="ob_replay_all",
        width="stretch",
        disabled=read_only,
    )
    st.caption(f"Oldest first, times in {labels.tz_label(svc)}.")
    if one and row is not None:
        replay(svc, [failed[row]])
    elif every:
        replay(svc, failed)
