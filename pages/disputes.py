"""Disputes: the chargebacks on our payments, the time left to answer each, and the evidence we answer with.

The list reads the DisputeCase rows the Stripe webhooks keep in step; the first visit in a session and "Refresh
from Stripe" also read Stripe's own list, for disputes no webhook told us about. Selecting a dispute shows the
evidence pack assembled from its booking, the text that goes to Stripe (editable while the dispute needs a
response), the PDF, Save draft to Stripe, and Submit evidence (once, after a confirmation). Every action runs
through services.finance.disputes with the signed-in person as the audit trail's actor.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages import _ui as ui
from services.core.errors import DomainError
from services.finance import disputes
from services.finance.disputes import DisputeSummary, EvidencePack
from services.finance.receipts import LEG_WORDS, leg_times, origin_words

ui.run_through_app()
svc = ui.services()
ui.require_role("disputes")
read_only = svc.settings.audit_mode
TZ = ui.tz_label(svc)
SOON_DAYS = 3
STATUS_COLORS = {
    "needs_response": "red",
    "warning_needs_response": "orange",
    "under_review": "blue",
    "warning_under_review": "blue",
    "won": "green",
    "lost": "gray",
    "warning_closed": "gray",
}


def md(text: str) -> str:
    """Text for st.markdown: two amounts on one line ("$90 … $81") would otherwise open a LaTeX formula."""
    return text.replace("$", "\\$")


def generation() -> int:
    return int(st.session_state.get("ds_gen", 0))


def after_action(case_id: int | None = None) -> None:
    """Forget the table's selection (rows may have moved), keep `case_id` selected, show the outcome next run."""
    st.session_state["ds_gen"] = generation() + 1
    st.session_state["ds_keep"] = case_id
    st.rerun()


def refresh(*, quiet: bool = False) -> None:
    with st.spinner("Reading Stripe's disputes…"):
        try:
            report = ui.desk().refresh_disputes()
        except DomainError as exc:
            ui.show_error(exc, doing="Refresh from Stripe")
            return
    if not quiet:
        st.session_state["ds_outcome"] = ("success", f"Refreshed from Stripe: {report.line()}.")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def days_left(case: DisputeSummary) -> str:
    """'5 days', '1 day 7 h' or '7 h' inside the last SOON_DAYS days, 'Overdue', 'Overdue by 2 days'."""
    if case.days_left is None or case.evidence_due_by is None:
        return "—"
    if case.overdue:
        late = -case.days_left - 1  # whole days past the due time
        return "Overdue" + (f" by {plural(late, 'day')}" if late else "")
    if case.days_left >= SOON_DAYS:
        return plural(case.days_left, "day")
    hours = int((case.evidence_due_by - svc.now()).total_seconds() // 3600) % 24
    return " ".join(p for p in (plural(case.days_left, "day") if case.days_left else "", f"{hours} h") if p)


def cases_table(cases: list[DisputeSummary]) -> Any:
    frame = pd.DataFrame(
        [
            {
                # What decides the next step first (who, how much, by when); the long Stripe id last.
                "Booking": c.reference or "—",
                "Customer": c.customer or "Not a Room Desk booking",
                "Amount": ui.money(svc, c.amount_cents),
                "Reason": c.reason_words,
                "Status": c.status_words,
                "Evidence due": ui.venue(svc, c.evidence_due_by),
                "Days left": days_left(c),
                "Evidence": "Submitted" if c.evidence_submitted_at else ("Draft saved" if c.evidence else "—"),
                "Dispute": c.dispute_id,
            }
            for c in cases
        ]
    )

    def highlight(row: pd.Series) -> list[str]:
        case = cases[int(str(row.name))]
        colour = ""
        if case.overdue:
            colour = "background-color: #fee2e2; color: #991b1b; font-weight: 600"
        elif case.days_left is not None and case.days_left < SOON_DAYS:
            colour = "background-color: #ffedd5; color: #9a3412"
        return [colour if col in ("Days left", "Evidence due") else "" for col in row.index]

    return frame.style.apply(highlight, axis=1)


def metrics(cases: list[DisputeSummary]) -> None:
    waiting = [c for c in cases if c.needs_response]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Need a response", len(waiting), border=True, help="Open disputes whose evidence is not submitted yet")
    m2.metric(
        f"Due within {SOON_DAYS} days",
        sum(not c.overdue and c.days_left is not None and c.days_left < SOON_DAYS for c in waiting),
        border=True,
    )
    m3.metric("Overdue", sum(c.overdue for c in waiting), border=True, help="Past the evidence due date")
    m4.metric("Under review", sum(c.status.endswith("under_review") for c in cases), border=True)


# ------------------------------------------------------------------------------------------------ evidence


def field_key(case_id: int, name: str) -> str:
    return f"ds_f_{case_id}_{name}"


def edited_fields(case: DisputeSummary, pack: EvidencePack) -> dict[str, str]:
    """The evidence text as the text boxes hold it now (the saved draft, or the assembled text, until edited)."""
    start = case.evidence or pack.fields
    return {
        name: str(st.session_state.get(field_key(case.id, name), start.get(name, "")))
        for name in disputes.TEXT_FIELDS
        if name in start or st.session_state.get(field_key(case.id, name))
    }


def pdf_bytes(pack: EvidencePack, fields: dict[str, str]) -> bytes:
    try:
        return disputes.evidence_pdf(svc, pack, disputes.clean_fields(fields))
    except DomainError:  # edited into something Stripe would refuse: the PDF shows the assembled text instead
        return disputes.evidence_pdf(svc, pack)


def show_pack(case: DisputeSummary, pack: EvidencePack, editable: bool) -> None:
    b = pack.booking
    summary, booking_tab, policy_tab, money_tab, text_tab = st.tabs(
        ["Summary", "Booking & calendar", "Policy & emails", "Refunds & timeline", "Evidence text for Stripe"],
        key=f"ds_tabs_{case.id}",
    )
    with summary:
        st.markdown(md(pack.fields.get("uncategorized_text", "")))
    with booking_tab:
        pay = pack.payment
        st.markdown(
            md(
                f"**{b.reference}** · {pack.room_name} · **{b.customer_name}** · {b.customer_email}  \n"
                f"Booked {ui.venue(svc, b.created_at)} ({b.channel}) · "
                + (
                    f"paid {ui.money(svc, pay.received_cents)} by {pay.method}, {ui.venue(svc, pay.paid_at)}"
                    if pay
                    else "no payment found"
                )
            )
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Day": ui.days_label([leg.day]),
                        "Time": leg_times(svc, leg),
                        "Status": LEG_WORDS.get(leg.state, leg.state),  # type: ignore[call-overload]
                        "Price": ui.money(svc, leg.price_cents),
                    }
                    for leg in pack.legs
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        if pack.events:
            st.caption("Calendar events that reserved the room")
            st.dataframe(
                pd.DataFrame(
                    [
                        {"Day": e.day, "Event id": e.event_id, "Status": e.status, "When": e.when, "Title": e.summary}
                        for e in pack.events
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        else:
            st.warning("No calendar event was made for this booking.")
    with policy_tab:
        st.markdown(f"**Policy sold with the booking** ({pack.policy_version or '?'}): {pack.policy}")
        st.markdown(
            f"**Terms accepted:** version {b.terms_version}, {ui.venue(svc, b.terms_accepted_at)}"
            if b.terms_accepted_at
            else "**Terms accepted:** not recorded"
        )
        if b.agreement_accepted_at:
            st.markdown(f"**Room agreement:** version {b.agreement_version}, {ui.venue(svc, b.agreement_accepted_at)}")
        if pack.emails:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "Kind": e.kind.replace("_", " "),
                            "To": e.to,
                            "Subject": e.subject,
                            "Sent": ui.venue(svc, e.sent_at),
                        }
                        for e in pack.emails
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        else:
            st.caption("No email was sent about this booking.")
    with money_tab:
        if pack.refunds:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "When": ui.venue(svc, r.at),
                            "Why": origin_words(r.origin),
                            "Days": r.days,
                            "Amount": ui.money(svc, r.amount_cents),
                        }
                        for r in pack.refunds
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        else:
            st.caption("No refund has been made on this booking.")
        st.table(
            pd.DataFrame(
                [
                    {
                        "When": ui.venue(svc, r["at"]).replace(" ", ui.NBSP),
                        "Source": r["source"],
                        "What": str(r["what"]).removeprefix("booking."),
                        "Details": r.get("detail") or "",
                    }
                    for r in pack.timeline
                ],
                columns=["When", "Source", "What", "Details"],
            ),
            hide_index=True,
            border="horizontal",
        )
    with text_tab:
        start = case.evidence or pack.fields
        if case.evidence_submitted_at:
            note = "What was submitted to Stripe's evidence text fields."
        elif case.evidence:
            note = "The draft saved to Stripe's evidence text fields."
        else:
            note = "Assembled from the booking for Stripe's evidence text fields."
        st.caption(note + (" Edit it before saving a draft or submitting." if editable else ""))
        for name in disputes.TEXT_FIELDS:
            if name not in start:
                continue
            st.text_area(
                f"{disputes.FIELD_LABELS[name]} (`{name}`)",
                value=start[name],
                key=field_key(case.id, name),
                disabled=not editable,
                height=68 if len(start[name]) < 100 else 150,
            )


def close_dialog() -> None:
    st.session_state.pop("ds_submit_for", None)


@st.dialog("Submit evidence to Stripe", width="large", on_dismiss=close_dialog)
def submit_dialog(case: DisputeSummary, fields: dict[str, str]) -> None:
    st.markdown(
        md(
            f"Dispute **{case.dispute_id}** on booking **{case.reference}**, {ui.money(svc, case.amount_cents)} "
            f"({case.reason_words.lower()}). Evidence due {ui.venue(svc, case.evidence_due_by)} ({TZ})."
        )
    )
    st.warning(
        "**This can be done only once.** Stripe passes the evidence to the cardholder's bank; nothing can be added "
        "or changed afterwards. The bank's decision can take two months or more; the status here follows Stripe.",
        icon=":material/gavel:",
    )
    st.caption(f"{len(fields)} text fields: " + ", ".join(disputes.FIELD_LABELS[k].lower() for k in fields))
    c1, c2 = st.columns(2)
    go = c1.button("Submit now", type="primary", icon=":material/send:", key="ds_submit_go", width="stretch")
    if c2.button("Not yet", key="ds_submit_cancel", width="stretch"):
        close_dialog()
        st.rerun()
    if go:
        try:
            result = ui.desk().save_dispute_evidence(case.id, submit=True, fields=fields)
        except DomainError as exc:
            ui.show_error(exc, doing="Not submitted")
            return
        close_dialog()
        st.session_state["ds_outcome"] = (
            "success",
            f"Evidence for {case.dispute_id} submitted to Stripe: the dispute is now "
            f"{result.case.status_words.lower()}. PDF SHA-256 {result.pdf_sha256[:16]}…",
        )
        after_action(case.id)


def save_draft(case: DisputeSummary, fields: dict[str, str]) -> None:
    with ui.reporting("Save draft to Stripe"), st.spinner("Saving the draft to Stripe…"):
        result = ui.desk().save_dispute_evidence(case.id, submit=False, fields=fields)
        st.session_state["ds_outcome"] = (
            "success",
            f"Draft saved to Stripe ({len(result.fields)} fields). Nothing is sent to the bank until you submit.",
        )
        after_action(case.id)


def detail(case: DisputeSummary) -> None:
    st.divider()
    head, badge = st.columns([5, 1], vertical_alignment="center")
    head.subheader(f"{case.dispute_id} · {case.reference or 'no booking'}", anchor=False)
    with badge:
        st.badge(case.status_words, color=STATUS_COLORS.get(case.status, "gray"))  # type: ignore[arg-type]
    st.markdown(
        md(
            f"{ui.money(svc, case.amount_cents)} disputed · {case.reason_words} · opened "
            f"{ui.venue(svc, case.opened_at)} · evidence due **{ui.venue(svc, case.evidence_due_by)}** ({TZ})"
            + (f" · {days_left(case).lower()} left" if case.days_left is not None and not case.overdue else "")
        )
    )
    if case.evidence_submitted_at:
        st.success(
            f"Evidence submitted {ui.venue(svc, case.evidence_submitted_at)} by {case.evidence_submitted_by}. The "
            "bank decides; the status here follows Stripe."
            + (f" PDF SHA-256 `{case.evidence_pdf_sha256}`." if case.evidence_pdf_sha256 else ""),
            icon=":material/task_alt:",
        )
    elif case.overdue:
        st.error(
            "The evidence due date has passed: Stripe no longer accepts evidence for this dispute.",
            icon=":material/event_busy:",
        )
    elif not case.needs_response:
        st.info(f"{case.status_words}: nothing more can be sent for this dispute.", icon=":material/info:")
    if case.booking_id is None:
        st.info(
            "This dispute is not on a Room Desk booking (another system took the payment): answer it in the Stripe "
            "dashboard.",
            icon=":material/link_off:",
        )
        return
    pack: EvidencePack | None = None
    with ui.reporting("Assembling the evidence"):
        pack = disputes.assemble_evidence(svc, case.id)
    if pack is None:
        return
    can_respond = case.needs_response and not case.overdue and not read_only
    fields = edited_fields(case, pack)
    a1, a2, a3, a4 = st.columns(4)
    a1.download_button(
        "Download evidence PDF",
        data=lambda: pdf_bytes(pack, fields),
        file_name=pack.filename,
        mime="application/pdf",
        icon=":material/picture_as_pdf:",
        key=f"ds_pdf_{case.id}",
        width="stretch",
        on_click="ignore",
    )
    draft = a2.button(
        "Save draft to Stripe",
        icon=":material/save:",
        key="ds_draft",
        width="stretch",
        disabled=not can_respond,
        help="Stripe keeps the text with the dispute; nothing goes to the bank yet. Save as often as you like.",
    )
    if a3.button(
        "Submit evidence…",
        icon=":material/send:",
        type="primary",
        key="ds_submit",
        width="stretch",
        disabled=not can_respond,
        help="Sends the evidence to the bank through Stripe. Only once.",
    ):
        st.session_state["ds_submit_for"] = case.id
    if read_only:
        a4.caption("Audit mode is read-only: nothing can be sent to Stripe.")
    if draft:
        save_draft(case, fields)
    show_pack(case, pack, editable=can_respond)
    if st.session_state.get("ds_submit_for") == case.id and can_respond:
        submit_dialog(case, fields)


# ------------------------------------------------------------------------------------------------ page

st.title("Disputes")
st.caption(
    "Chargebacks on our payments. Stripe decides each status and tells Room Desk through its webhooks; answer each "
    "dispute needing a response before its evidence due date, with the evidence assembled from the booking."
)
top1, _ = st.columns([1, 3], vertical_alignment="center")
if top1.button("Refresh from Stripe", icon=":material/sync:", key="ds_refresh", width="stretch"):
    refresh()
    after_action()
elif not st.session_state.get("ds_refreshed"):
    # Once per session: a dispute whose webhook never came (or came before Room Desk was connected) still shows.
    refresh(quiet=True)
st.session_state["ds_refreshed"] = True
if outcome := st.session_state.pop("ds_outcome", None):
    getattr(st, outcome[0])(outcome[1])

cases = disputes.list_cases(svc)
if not cases:
    st.success("No dispute: no customer's bank has disputed a payment.", icon=":material/task_alt:")
    st.stop()
metrics(cases)
keep = st.session_state.get("ds_keep")
again = [i for i, c in enumerate(cases) if c.id == keep]
event = st.dataframe(
    cases_table(cases),
    hide_index=True,
    key=f"ds_cases_{generation()}",
    on_select="rerun",
    selection_mode="single-row",
    selection_default={"selection": {"rows": again}} if again else None,
    width="stretch",
    column_config={
        "Booking": st.column_config.TextColumn(width=88),
        "Customer": st.column_config.TextColumn(width=120),
        "Amount": st.column_config.TextColumn(width=75),
        "Reason": st.column_config.TextColumn(width=165),
        "Status": st.column_config.TextColumn(width=125),
        "Evidence due": st.column_config.TextColumn(width=115, help=f"In {TZ}"),
        "Days left": st.column_config.TextColumn(width=130),
        "Evidence": st.column_config.TextColumn(width=95, help="Evidence sent to Stripe: a draft, or submitted"),
        "Dispute": st.column_config.TextColumn(width=220, help="Stripe's dispute id"),
    },
)
st.caption(f"Needing a response first, soonest due first; times in {TZ}. Select a dispute to see its evidence.")
rows = event.selection.rows if event is not None else []  # type: ignore[attr-defined]
if rows and rows[0] < len(cases):
    detail(disputes.get_case(svc, cases[rows[0]].id))
