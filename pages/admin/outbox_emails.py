"""The Emails tab of Emails & webhooks: the outbox (every customer email, sent or not) with counts by state, a
filterable list, a preview of one email as the customer gets it, Retry now, Retry all failed, and Send due emails now
(what the worker does every round). Reads through services.notify.queries; sends through the Desk."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import actions, labels, widgets
from services.core.context import Services
from services.notify import queries
from services.notify.queries import OutboxEmail
from services.rules.fmt import plural

STATE_LABELS = {
    "queued": "Queued",
    "failed": "Failed, will retry",
    "needs_attention": "Needs attention",
    "sent": "Sent",
    "withdrawn": "Withdrawn",
}
KIND_LABELS = {
    "confirmation": "Confirmation",
    "cancellation": "Cancellation",
    "refund": "Refund",
    "auto_refund": "Automatic refund",
    "pay_link": "Payment link",
}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


def after_action() -> None:
    """Forget the tables' selections (the rows may have moved) and show the outcome on the next run."""
    widgets.next_generation("ob")
    st.rerun()


def send_due() -> None:
    bar, progress = widgets.progress_bar("Sending due emails", say="Sending {}")
    with actions.reporting("Sending due emails"):
        report = actions.desk().send_due_emails(progress=progress)
        if report.sent == report.failed == 0:
            text, kind = "Nothing was due: every unsent email is waiting for its next try, or for you.", "info"
        else:
            text = f"{plural(report.sent, 'email')} sent." + (
                f" {plural(report.failed, 'email')} could not be sent this time: see the last error below."
                if report.failed
                else ""
            )
            kind = "warning" if report.failed else "success"
        st.session_state["ob_mail_outcome"] = (kind, text)
        after_action()
    bar.empty()


def retry(svc: Services, email_id: int) -> None:
    with actions.reporting("Retry"), st.spinner("Sending…"):
        after = actions.desk().retry_email(email_id)
        if after.status == "sent":
            outcome = ("success", f"Sent to {after.to}: “{after.subject}”.")
        elif after.needs_attention:
            outcome = ("error", f"The mail server refused it again: {after.last_error}. Fix the cause, then retry.")
        else:
            outcome = (
                "warning",
                f"Not sent: {after.last_error}. It will be tried again by itself at "
                f"{labels.venue(svc, after.next_attempt_at)} ({labels.tz_label(svc)}).",
            )
        st.session_state["ob_retried"] = (email_id, *outcome)
        after_action()


def retry_all(ids: list[int]) -> None:
    bar = st.progress(0.0, text="Retrying")
    sent = 0
    with actions.reporting("Retry all"):
        for i, email_id in enumerate(ids):
            bar.progress(i / len(ids), text=f"Retrying email {i + 1} of {len(ids)}")
            sent += actions.desk().retry_email(email_id).status == "sent"
        left = len(ids) - sent
        st.session_state["ob_mail_outcome"] = (
            "success" if not left else "warning",
            f"{sent} of {plural(len(ids), 'email')} sent."
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


def email_table(svc: Services, emails: list[OutboxEmail]) -> pd.DataFrame:
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
                "Created": labels.venue(svc, e.created_at),
                "Sent": labels.venue(svc, e.sent_at),
                "Next attempt": "Not by itself" if e.needs_attention else labels.venue(svc, e.next_attempt_at),
            }
            for e in emails
        ],
        columns=EMAIL_COLUMNS,
    )


def preview(svc: Services, email: OutboxEmail, outcome: tuple[str, str] | None) -> bool:
    """One email as the customer gets it, with what happened to it (and to the Retry now just pressed); True when
    Retry now was pressed."""
    with st.container(border=True):
        head, action = st.columns([4, 1], vertical_alignment="center")
        head.markdown(
            f"**{labels.literal(email.subject)}**  \n"
            f"To {labels.literal(email.to)} · {kind_label(email.kind)} · #{email.id}"
        )
        if outcome:
            widgets.show_outcome(*outcome)
        clicked = email.status != "sent" and action.button(
            "Retry now",
            icon=":material/send:",
            type="primary",
            key="ob_retry",
            width="stretch",
            disabled=svc.settings.audit_mode,
            help="Send it now, whatever its next try time; after a refusal, fix the cause first",
        )
        if email.status == "sent":
            st.markdown(
                f":green[:material/check_circle:] Sent {labels.venue(svc, email.sent_at)} ({labels.tz_label(svc)})"
            )
        elif email.needs_attention:
            st.markdown(
                f":red[:material/error:] **Needs attention** — refused by the mail server: {email.last_error}. "
                "Not retried by itself: sent again as it is, it would be refused again. Check the address with the "
                "customer, or the mail settings with an admin, then press Retry now (it goes to the address the "
                "booking has then)."
            )
        elif email.status == "failed":
            st.markdown(
                f":orange[:material/schedule:] **Failed {plural(email.attempts, 'time')}**, last: {email.last_error}. "
                f"Tried again by itself at {labels.venue(svc, email.next_attempt_at)} ({labels.tz_label(svc)})."
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


def emails_section(svc: Services) -> None:
    read_only, tz = svc.settings.audit_mode, labels.tz_label(svc)
    if svc.mail.mode == "sandbox":
        st.info(
            "**Sandbox mail — no email really leaves Room Desk.** “Sent” means the sandbox mail gateway kept it; "
            "every email stays listed here, and you can read each one as the customer would.",
            icon=":material/science:",
        )
    counts = queries.outbox_counts(svc)
    due = queries.count_due(svc, now=svc.now())
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
            f"**{plural(counts['needs_attention'], 'email')} {'needs' if counts['needs_attention'] == 1 else 'need'} "
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
    unsent = queries.list_outbox(svc, states=["failed", "needs_attention"])
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
    if outcome := st.session_state.get("ob_mail_outcome"):
        widgets.kept_outcome(outcome[0], outcome[1], forget="ob_mail_outcome", where=notice)
    # Retry now's outcome goes with the email in the preview, or up here when the filter now hides that email.
    retried: tuple[int, str, str] | None = st.session_state.pop("ob_retried", None)  # (email id, kind, text)
    retried_id = retried[0] if retried else None

    f1, f2, f3 = st.columns([3, 1, 1])  # room for all five status pills at 1366 px
    states = f1.pills(
        "Status",
        list(STATE_LABELS),
        format_func=lambda state: STATE_LABELS[state],
        selection_mode="multi",
        default=list(STATE_LABELS),
        key="ob_states",
    )
    kinds = f2.multiselect("Kind", list(KIND_LABELS), format_func=kind_label, key="ob_kinds", placeholder="All")
    search = f3.text_input("Search", key="ob_search", placeholder="Booking, address or subject")
    # Every state (the default, or none picked) is no filter at all: the list then walks the outbox's (created_at, id)
    # index newest first, where a filter on each state made the database collect and sort years of rows.
    every = not states or set(states) >= set(STATE_LABELS)
    emails = queries.list_outbox(svc, states=None if every else states, kinds=kinds, search=search)
    if not emails:
        if retried:
            widgets.show_outcome(*retried[1:], notice)
        st.caption("No email matches the filter." if sum(counts.values()) else "No email has been queued yet.")
        return
    # After Retry now the same email stays selected wherever it moved (unless the filter now hides it).
    again = next((i for i, e in enumerate(emails) if e.id == retried_id), None)
    row = widgets.selectable_table(
        email_table(svc, emails),
        key=f"ob_emails_{widgets.generation('ob')}",
        rows=len(emails),
        keep=again,
        column_config={
            "Status": st.column_config.TextColumn(width=125),
            "Kind": st.column_config.TextColumn(width=110),
            "Booking": st.column_config.TextColumn(width=95),
            "To": st.column_config.TextColumn(width=200),
            "Attempts": st.column_config.NumberColumn(width=75, format="%d"),
            "Next attempt": st.column_config.TextColumn(width=120, help=f"When it is tried again by itself ({tz})"),
            "Last error": st.column_config.TextColumn(width=240),
            "Subject": st.column_config.TextColumn(width=280),
            "Created": st.column_config.TextColumn(width=120),
            "Sent": st.column_config.TextColumn(width=120),
        },
    )
    st.caption(f"Newest first, times in {tz}. Select a row to read the email and retry it.")
    if retried and (row is None or emails[row].id != retried_id):
        widgets.show_outcome(*retried[1:], notice)
    if row is None:
        return
    with actions.reporting("Opening the email"):
        email = queries.get_email(svc, emails[row].id)
        if preview(svc, email, retried[1:] if retried and email.id == retried_id else None):
            retry(svc, email.id)
