"""Emails & webhooks: what Room Desk owes the outside world and has not delivered yet.

Emails: the outbox (every customer email, sent or not) with counts by state, a filterable list, a preview of one
email, Retry now, and Send due emails now (what the worker does every round). Failed webhooks: Stripe events whose
processing failed, with Replay and Replay all. Every action runs through a service function with the signed-in
person as the audit trail's actor.

The tables' keys change after an action (`ob_gen`), so a selection never points at a row that has moved or gone.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import streamlit as st

from pages import _ui as ui
from services.core.errors import DomainError, GatewayError
from services.notify import outbox
from services.web import webhooks

log = logging.getLogger("roomdesk.ui.outbox")

ui.run_through_app()
svc = ui.services()
ui.require_role("outbox")
read_only = svc.settings.audit_mode
TZ = ui.tz_label(svc)

STATE_LABELS = {
    "queued": "Queued",
    "failed": "Failed, will retry",
    "needs_attention": "Needs attention",
    "sent": "Sent",
}
KIND_LABELS = {
    "confirmation": "Confirmation",
    "cancellation": "Cancellation",
    "refund": "Refund",
    "auto_refund": "Automatic refund",
    "pay_link": "Payment link",
}
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


def count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def generation() -> int:
    return int(st.session_state.get("ob_gen", 0))


def after_action() -> None:
    """Forget the tables' selections (the rows may have moved) and show the outcome on the next run."""
    st.session_state["ob_gen"] = generation() + 1
    st.rerun()


def selected(event: object, size: int) -> int | None:
    """The selected row of a single-row table of `size` rows, or None."""
    rows = event.selection.rows if event is not None else []  # type: ignore[attr-defined]
    return rows[0] if rows and rows[0] < size else None


# ------------------------------------------------------------------------------------------------ emails


def send_due() -> None:
    bar = st.progress(0.0, text="Sending due emails")
    with ui.reporting("Sending due emails"):
        report = ui.desk().send_due_emails(
            progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=f"Sending {m}"),
        )
        if report.sent == report.failed == 0:
            text, kind = "Nothing was due: every unsent email is waiting for its next try, or for you.", "info"
        else:
            text = f"{count(report.sent, 'email')} sent." + (
                f" {count(report.failed, 'email')} could not be sent this time: see the last error below."
                if report.failed
                else ""
            )
            kind = "warning" if report.failed else "success"
        st.session_state["ob_mail_outcome"] = (kind, text)
        after_action()
    bar.empty()


def retry(email_id: int) -> None:
    with ui.reporting("Retry"), st.spinner("Sending…"):
        after = ui.desk().retry_email(email_id)
        if after.status == "sent":
            outcome = ("success", f"Sent to {after.to}: “{after.subject}”.")
        elif after.needs_attention:
            outcome = ("error", f"The mail server refused it again: {after.last_error}. Fix the cause, then retry.")
        else:
            outcome = (
                "warning",
                f"Not sent: {after.last_error}. It will be tried again by itself at "
                f"{ui.venue(svc, after.next_attempt_at)} ({TZ}).",
            )
        st.session_state["ob_retried"] = (email_id, *outcome)
        after_action()


def retry_all(ids: list[int]) -> None:
    bar = st.progress(0.0, text="Retrying")
    sent = 0
    with ui.reporting("Retry all"):
        for i, email_id in enumerate(ids):
            bar.progress(i / len(ids), text=f"Retrying email {i + 1} of {len(ids)}")
            sent += ui.desk().retry_email(email_id).status == "sent"
        left = len(ids) - sent
        st.session_state["ob_mail_outcome"] = (
            "success" if not left else "warning",
            f"{sent} of {count(len(ids), 'email')} sent."
            + (f" {left} failed again: see the last error." if left else ""),
        )
        after_action()
    bar.empty()


# What decides the next step first (state, who, when it is tried again, why it failed); the rest further right.
EMAIL_COLUMNS = [
    "Status",
    "Kind",
    "Booking",
    "To",
    "Attempts",
    "Next attempt",
    "Last error",
    "Subject",
    "Created",
    "Sent",
]


def email_table(emails: list[outbox.OutboxEmail]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Status": STATE_LABELS.get(e.state, e.state),
                "Kind": kind_label(e.kind),
                "Booking": e.booking_reference or "—",
                "To": e.to,
                "Subject": e.subject,
                "Attempts": e.attempts,
                "Last error": e.last_error or "",
                "Created": ui.venue(svc, e.created_at),
                "Sent": ui.venue(svc, e.sent_at),
                "Next attempt": "Not by itself" if e.needs_attention else ui.venue(svc, e.next_attempt_at),
            }
            for e in emails
        ],
        columns=EMAIL_COLUMNS,
    )


def show(outcome: tuple[str, ...], where: Any = st) -> None:
    """(kind, text) as st.success / st.warning / …, in `where`."""
    kind, text = outcome
    getattr(where, kind)(text)


def preview(email: outbox.OutboxEmail, outcome: tuple[str, ...] | None) -> bool:
    """One email as the customer gets it, with what happened to it (and to the Retry now just pressed); True when
    Retry now was pressed."""
    with st.container(border=True):
        head, action = st.columns([4, 1], vertical_alignment="center")
        head.markdown(f"**{email.subject}**  \nTo {email.to} · {kind_label(email.kind)} · #{email.id}")
        if outcome:
            show(outcome)
        clicked = email.status != "sent" and action.button(
            "Retry now",
            icon=":material/send:",
            type="primary",
            key="ob_retry",
            width="stretch",
            disabled=read_only,
            help="Send it now, whatever its next try time; after a refusal, fix the cause first",
        )
        if email.status == "sent":
            st.markdown(f":green[:material/check_circle:] Sent {ui.venue(svc, email.sent_at)} ({TZ})")
        elif email.needs_attention:
            st.markdown(
                f":red[:material/error:] **Needs attention** — refused by the mail server: {email.last_error}. "
                "Not retried by itself: sent again as it is, it would be refused again. Check the address with the "
                "customer, or the mail settings with an admin, then press Retry now (it goes to the address the "
                "booking has then)."
            )
        elif email.status == "failed":
            st.markdown(
                f":orange[:material/schedule:] **Failed {count(email.attempts, 'time')}**, last: {email.last_error}. "
                f"Tried again by itself at {ui.venue(svc, email.next_attempt_at)} ({TZ})."
            )
        else:
            st.markdown(":blue[:material/hourglass_top:] Queued: not tried yet.")
        html_tab, text_tab = st.tabs(["As the customer sees it", "Plain text"])
        with html_tab:
            if email.html:
                st.html(email.html)  # sanitised (DOMPurify), no scripts
            else:
                st.caption("This email has no HTML part.")
        with text_tab:
            st.text(email.text)
    return clicked


def emails_section() -> None:
    if svc.mail.mode == "sandbox":
        st.info(
            "**Sandbox mail — no email really leaves Room Desk.** “Sent” means the sandbox mail gateway kept it; "
            "every email stays listed here, and you can read each one as the customer would.",
            icon=":material/science:",
        )
    counts = outbox.outbox_counts(svc)
    due = outbox.count_due(svc, now=svc.now())
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Queued", counts["queued"], border=True, help="Not tried yet: the worker sends them on its next round")
    m2.metric("Sent", counts["sent"], border=True)
    m3.metric(
        "Failed, will retry",
        counts["failed"],
        border=True,
        help="The mail server could not be reached: tried again after 1 min, 5 min, 15 min, 1 h, then every 4 h",
    )
    m4.metric(
        "Needs attention",
        counts["needs_attention"],
        border=True,
        help="Refused by the mail server (unknown mailbox, bad address…): not retried until someone fixes the "
        "cause and presses Retry now",
    )
    if counts["needs_attention"]:
        st.error(
            f"**{count(counts['needs_attention'], 'email')} {'needs' if counts['needs_attention'] == 1 else 'need'} "
            "attention**: refused by the mail server, so not retried by itself. Select it in the list to see why.",
            icon=":material/mark_email_unread:",
        )

    b1, b2, _ = st.columns([1, 1, 2])
    if b1.button(
        f"Send due emails now ({due})",
        icon=":material/outgoing_mail:",
        key="ob_send_due",
        width="stretch",
        disabled=read_only or not due,
        help="What the worker does every round: send every email whose time has come (queued, or failed with its "
        "next try reached). To send one before its time, select it and press Retry now.",
    ):
        send_due()
    unsent = outbox.list_outbox(svc, states=["failed", "needs_attention"])
    if b2.button(
        f"Retry all failed ({len(unsent)})",
        icon=":material/restart_alt:",
        key="ob_retry_all",
        width="stretch",
        disabled=read_only or not unsent,
        help="Send every failed email now, those that need attention included (after fixing a mail setting)",
    ):
        retry_all([e.id for e in reversed(unsent)])  # oldest first
    if read_only:
        st.caption("Audit mode is read-only: nothing can be sent from here.")
    notice = st.container()
    if outcome := st.session_state.pop("ob_mail_outcome", None):
        show(outcome, notice)
    # Retry now's outcome goes with the email in the preview, or up here when the filter now hides that email.
    retried: tuple[int, str, str] | None = st.session_state.pop("ob_retried", None)  # (email id, kind, text)
    retried_id = retried[0] if retried else None

    f1, f2, f3 = st.columns([2, 1, 1])
    states = f1.pills(
        "Status",
        list(STATE_LABELS),
        format_func=STATE_LABELS.get,
        selection_mode="multi",
        default=list(STATE_LABELS),
        key="ob_states",
    )
    kinds = f2.multiselect("Kind", list(KIND_LABELS), format_func=kind_label, key="ob_kinds", placeholder="All")
    search = f3.text_input("Search", key="ob_search", placeholder="Booking, address or subject")
    emails = outbox.list_outbox(svc, states=states or list(STATE_LABELS), search=search)
    if kinds:
        emails = [e for e in emails if e.kind in kinds]
    if not emails:
        if retried:
            show(retried[1:], notice)
        st.caption("No email matches the filter." if sum(counts.values()) else "No email has been queued yet.")
        return
    # After Retry now the same email stays selected wherever it moved (unless the filter now hides it).
    again = [i for i, e in enumerate(emails) if e.id == retried_id]
    event = st.dataframe(
        email_table(emails),
        hide_index=True,
        key=f"ob_emails_{generation()}",
        on_select="rerun",
        selection_mode="single-row",
        selection_default={"selection": {"rows": again}} if again else None,
        width="stretch",
        column_config={
            "Status": st.column_config.TextColumn(width=125),
            "Kind": st.column_config.TextColumn(width=110),
            "Booking": st.column_config.TextColumn(width=95),
            "To": st.column_config.TextColumn(width=200),
            "Attempts": st.column_config.NumberColumn(width=75, format="%d"),
            "Next attempt": st.column_config.TextColumn(width=120, help=f"When it is tried again by itself ({TZ})"),
            "Last error": st.column_config.TextColumn(width=240),
            "Subject": st.column_config.TextColumn(width=280),
            "Created": st.column_config.TextColumn(width=120),
            "Sent": st.column_config.TextColumn(width=120),
        },
    )
    st.caption(f"Newest first, times in {TZ}. Select a row to read the email and retry it.")
    row = selected(event, len(emails))
    if retried and (row is None or emails[row].id != retried_id):
        show(retried[1:], notice)
    if row is None:
        return
    with ui.reporting("Opening the email"):
        email = outbox.get_email(svc, emails[row].id)
        if preview(email, retried[1:] if retried and email.id == retried_id else None):
            retry(email.id)


# ------------------------------------------------------------------------------------------------ webhooks


def replay(events: list[webhooks.StoredEvent]) -> None:
    """Replay each event with a progress bar; keep one result line per event for the next run."""
    bar = st.progress(0.0, text="Replaying")
    results = []
    for i, e in enumerate(events):
        bar.progress(i / len(events), text=f"Replaying {i + 1} of {len(events)}: {e.event_id}")
        try:
            status = ui.desk().replay_webhook(e.id)
            ok = status != "failed"
            if ok:
                words = REPLAY_WORDS.get(status, status)
            else:
                again = next((f for f in webhooks.list_failed_events(svc) if f.id == e.id), None)
                words = f"{again.last_error if again else 'It failed again'}."
        except GatewayError as exc:
            ok, words = False, f"{exc.message}. Stripe sends it again by itself; or replay it later."
        except DomainError as exc:
            ok, words = False, f"{exc.message}."
        except Exception:
            log.exception("Replaying webhook event #%s failed", e.id)
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


def webhooks_section(failed: list[webhooks.StoredEvent]) -> None:
    st.caption(
        "Stripe told Room Desk about these events, but processing them failed (usually Stripe or a calendar could "
        "not be reached). Stripe sends an event again by itself for up to three days; Replay runs it now. Replaying "
        "is always safe: it brings the booking in line with what Stripe says now, never twice."
    )
    if results := st.session_state.pop("ob_replayed", None):
        good = sum(r["Outcome"] == "Done" for r in results)
        (st.success if good == len(results) else st.warning)(f"Replayed {len(results)}: {good} done.")
        st.table(pd.DataFrame(results), hide_index=True, border="horizontal")
    if not failed:
        st.success("No failed webhook: every event Stripe sent has been processed.", icon=":material/task_alt:")
        return
    table = pd.DataFrame(
        [
            {
                "Received": ui.venue(svc, e.received_at),
                "Event": EVENT_LABELS.get(e.type, e.type),
                "Type": e.type,
                "Event id": e.event_id,
                "Attempts": e.attempts,
                "Last error": e.last_error or "",
            }
            for e in failed
        ]
    )
    event = st.dataframe(
        table,
        hide_index=True,
        key=f"ob_hooks_{generation()}",
        on_select="rerun",
        selection_mode="single-row",
        width="stretch",
        column_config={"Last error": st.column_config.TextColumn(width="large")},
    )
    row = selected(event, len(failed))
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
    st.caption(f"Oldest first, times in {TZ}.")
    if one and row is not None:
        replay([failed[row]])
    elif every:
        replay(failed)


# ------------------------------------------------------------------------------------------------ page

st.title("Emails & webhooks")
failed_events = webhooks.list_failed_events(svc)
if failed_events:
    st.warning(
        f"**{count(len(failed_events), 'Stripe event')} could not be processed**: see *Failed webhooks*.",
        icon=":material/webhook:",
    )
# Fixed labels and a key: the browser stays on the tab in use across the reruns an action causes (a label that
# changes, such as a count, would make it a new widget and jump back to the first tab).
emails_tab, hooks_tab = st.tabs(["Emails", "Failed webhooks"], key="ob_tab")
with emails_tab:
    emails_section()
with hooks_tab:
    webhooks_section(failed_events)
