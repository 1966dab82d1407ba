"""A dispute's evidence pack in tabs, as the Disputes page shows it under the selected dispute: the summary, the
booking and its calendar events, the policy and the emails, the refunds and the timeline, and the text for Stripe
(editable while the dispute needs a response)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import history, labels
from services.core.context import Services
from services.finance import dispute_queries as dq
from services.finance.dispute_queries import DisputeSummary, EvidencePack
from services.finance.receipts import LEG_WORDS, leg_times, origin_words
from services.rules.fmt import day_label


def field_key(case_id: int, name: str) -> str:
    return f"ds_f_{case_id}_{name}"


def show_pack(svc: Services, case: DisputeSummary, pack: EvidencePack, editable: bool) -> None:
    b = pack.booking
    summary, booking_tab, policy_tab, money_tab, text_tab = st.tabs(
        ["Summary", "Booking & calendar", "Policy & emails", "Refunds & timeline", "Evidence text for Stripe"],
        key=f"ds_tabs_{case.id}",
    )
    with summary:
        st.markdown(labels.no_formula(pack.fields.get("uncategorized_text", "")))
    with booking_tab:
        pay = pack.payment
        st.markdown(
            labels.no_formula(
                f"**{b.reference}** · {pack.room_name} · **{labels.literal(b.customer_name)}** · "
                f"{labels.literal(b.customer_email)}  \n"
                f"Booked {labels.venue(svc, b.created_at)} ({b.channel}) · "
                + (
                    f"paid {labels.money(svc, pay.received_cents)} by {pay.method}, {labels.venue(svc, pay.paid_at)}"
                    if pay
                    else "no payment found"
                )
            )
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Day": day_label(leg.day),
                        "Time": leg_times(svc, leg),
                        "Status": LEG_WORDS.get(leg.state, leg.state),
                        "Price": labels.money(svc, leg.price_cents),
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
            f"**Terms accepted:** version {b.terms_version}, {labels.venue(svc, b.terms_accepted_at)}"
            if b.terms_accepted_at
            else "**Terms accepted:** not recorded"
        )
        if b.agreement_accepted_at:
            st.markdown(
                f"**Room agreement:** version {b.agreement_version}, {labels.venue(svc, b.agreement_accepted_at)}"
            )
        if pack.emails:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "Kind": e.kind.replace("_", " "),
                            "To": e.to,
                            "Subject": e.subject,
                            "Sent": labels.venue(svc, e.sent_at),
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
                            "When": labels.venue(svc, r.at),
                            "Why": origin_words(r.origin),
                            "Days": r.days,
                            "Amount": labels.money(svc, r.amount_cents),
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
                        "When": labels.venue(svc, r["at"]).replace(" ", labels.NBSP),
                        "Source": r["source"],
                        # Our own rows as sentences, as on the booking's timeline (the facts are in Details).
                        "What": history.sentence(svc, str(r["code"]), {})
                        if r["source"] == "Room Desk" and r.get("code")
                        else str(r["what"]),
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
        for name in dq.TEXT_FIELDS:
            if name not in start:
                continue
            st.text_area(
                f"{dq.FIELD_LABELS[name]} (`{name}`)",
                value=start[name],
                key=field_key(case.id, name),
                disabled=not editable,
                height=68 if len(start[name]) < 100 else 150,
            )
