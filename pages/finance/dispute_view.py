"""One dispute on the Disputes page: its state, the evidence pack in tabs (the booking and its calendar events, the
policy and emails, refunds and the timeline, the text for Stripe, editable while the dispute needs a response), the
PDF, Save draft to Stripe, and Submit evidence (once, after the confirmation dialog of the `ds_submit_for` flag)."""

from __future__ import annotations

import streamlit as st

from pages.finance import dispute_pack
from pages.ui import actions, labels, widgets
from services.core.context import Services
from services.core.errors import DomainError
from services.finance import dispute_queries as dq
from services.finance.dispute_queries import DisputeSummary, EvidencePack
from services.rules.fmt import plural

FLAG = "ds_submit_for"
STATUS_COLORS = {
    "needs_response": "red",
    "warning_needs_response": "orange",
    "under_review": "blue",
    "warning_under_review": "blue",
    "won": "green",
    "lost": "gray",
    "warning_closed": "gray",
}


def days_left(svc: Services, case: DisputeSummary) -> str:
    """'5 days', '1 day 7 h' or '7 h' inside the last SOON_DAYS days, 'Overdue', 'Overdue by 2 days'."""
    if case.days_left is None or case.time_left is None:
        return "—"
    if case.overdue:
        late = -case.days_left - 1  # whole days past the due time
        return "Overdue" + (f" by {plural(late, 'day')}" if late else "")
    if not case.due_soon:
        return plural(case.days_left, "day")
    hours = int(case.time_left.total_seconds() // 3600) % 24
    return " ".join(p for p in (plural(case.days_left, "day") if case.days_left else "", f"{hours} h") if p)


def after_action(case_id: int | None = None) -> None:
    """Forget the table's selection (rows may have moved), keep `case_id` selected, show the outcome next run."""
    widgets.next_generation("ds")
    st.session_state["ds_keep"] = case_id
    st.rerun()


def edited_fields(case: DisputeSummary, pack: EvidencePack) -> dict[str, str]:
    """The evidence text as the text boxes hold it now (the saved draft, or the assembled text, until edited)."""
    start = case.evidence or pack.fields
    return {
        name: str(st.session_state.get(dispute_pack.field_key(case.id, name), start.get(name, "")))
        for name in dq.TEXT_FIELDS
        if name in start or st.session_state.get(dispute_pack.field_key(case.id, name))
    }


def pdf_bytes(svc: Services, pack: EvidencePack, fields: dict[str, str]) -> bytes:
    try:
        return dq.evidence_pdf(svc, pack, dq.clean_fields(fields))
    except DomainError:  # edited into something Stripe would refuse: the PDF shows the assembled text instead
        return dq.evidence_pdf(svc, pack)


def submit_dialog(svc: Services, case: DisputeSummary, fields: dict[str, str]) -> None:
    st.markdown(
        labels.no_formula(
            f"Dispute **{case.dispute_id}** on booking **{case.reference}**, {labels.money(svc, case.amount_cents)} "
            f"({case.reason_words.lower()}). Evidence due {labels.venue(svc, case.evidence_due_by)} "
            f"({labels.tz_label(svc)})."
        )
    )
    st.warning(
        "**This can be done only once.** Stripe passes the evidence to the cardholder's bank; nothing can be added "
        "or changed afterwards. The bank's decision can take two months or more; the status here follows Stripe.",
        icon=":material/gavel:",
    )
    st.caption(f"{len(fields)} text fields: " + ", ".join(dq.FIELD_LABELS[k].lower() for k in fields))
    c1, c2 = st.columns(2)
    go = c1.button("Submit now", type="primary", icon=":material/send:", key="ds_submit_go", width="stretch")
    if c2.button("Not yet", key="ds_submit_cancel", width="stretch"):
        widgets.close_flag(FLAG)
        st.rerun()
    if go:
        try:
            result = actions.desk().save_dispute_evidence(case.id, submit=True, fields=fields)
        except DomainError as exc:
            actions.show_error(exc, doing="Not submitted")
            return
        widgets.close_flag(FLAG)
        st.session_state["ds_outcome"] = (
            "success",
            f"Evidence for {case.dispute_id} submitted to Stripe: the dispute is now "
            f"{result.case.status_words.lower()}. PDF SHA-256 {result.pdf_sha256[:16]}…",
        )
        after_action(case.id)


def save_draft(case: DisputeSummary, fields: dict[str, str]) -> None:
    with actions.reporting("Save draft to Stripe"), st.spinner("Saving the draft to Stripe…"):
        result = actions.desk().save_dispute_evidence(case.id, submit=False, fields=fields)
        st.session_state["ds_outcome"] = (
            "success",
            f"Draft saved to Stripe ({len(result.fields)} fields). Nothing is sent to the bank until you submit.",
        )
        after_action(case.id)


def detail(svc: Services, case: DisputeSummary) -> None:
    st.divider()
    head, badge = st.columns([5, 1], vertical_alignment="center")
    head.subheader(f"{case.dispute_id} · {case.reference or 'no booking'}", anchor=False)
    with badge:
        st.badge(case.status_words, color=STATUS_COLORS.get(case.status, "gray"))  # type: ignore[arg-type]
    st.markdown(
        labels.no_formula(
            f"{labels.money(svc, case.amount_cents)} disputed · {case.reason_words} · opened "
            f"{labels.venue(svc, case.opened_at)} · evidence due **{labels.venue(svc, case.evidence_due_by)}** "
            f"({labels.tz_label(svc)})"
            + (f" · {days_left(svc, case).lower()} left" if case.days_left is not None and not case.overdue else "")
        )
    )
    if case.evidence_submitted_at:
        st.success(
            f"Evidence submitted {labels.venue(svc, case.evidence_submitted_at)} by {case.evidence_submitted_by}. The "
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
    with actions.reporting("Assembling the evidence"):
        pack = dq.assemble_evidence(svc, case.id)
    if pack is None:
        return
    read_only = svc.settings.audit_mode
    can_respond = case.can_respond and not read_only
    fields = edited_fields(case, pack)
    a1, a2, a3, a4 = st.columns(4)
    a1.download_button(
        "Download evidence PDF",
        data=lambda: pdf_bytes(svc, pack, fields),
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
        widgets.open_flag(FLAG, case.id)
    if read_only:
        a4.caption("Audit mode is read-only: nothing can be sent to Stripe.")
    if draft:
        save_draft(case, fields)
    dispute_pack.show_pack(svc, case, pack, editable=can_respond)
    if st.session_state.get(FLAG) == case.id and can_respond:
        widgets.flag_dialog(FLAG, "Submit evidence to Stripe", submit_dialog, svc, case, fields, width="large")
