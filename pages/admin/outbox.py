"""Emails & webhooks: what Room Desk owes the outside world and has not delivered yet.

Emails (pages/admin/outbox_emails.py): the outbox with counts by state, a filterable list, a preview of one email,
Retry now, and Send due emails now. Failed webhooks (pages/admin/outbox_webhooks.py): Stripe events whose processing
failed, with Replay and Replay all. Every action runs through the Desk with the signed-in person as the audit trail's
actor.

The tables' keys change after an action (`ob_gen`), so a selection never points at a row that has moved or gone.
"""

from __future__ import annotations

import streamlit as st

from pages.admin.outbox_emails import emails_section
from pages.admin.outbox_webhooks import webhooks_section
from pages.ui import boot, session
from services.rules.fmt import plural
from services.web.webhook_queries import list_failed_events

svc = boot.services()
session.require_role("outbox")

st.title("Emails & webhooks")
failed_events = list_failed_events(svc)
if failed_events:
    st.warning(
        f"**{plural(len(failed_events), 'Stripe event')} could not be processed**: see *Failed webhooks*.",
        icon=":material/webhook:",
    )
# Fixed labels and a key: the browser stays on the tab in use across the reruns an action causes (a label that
# changes, such as a count, would make it a new widget and jump back to the first tab).
emails_tab, hooks_tab = st.tabs(["Emails", "Failed webhooks"], key="ob_tab")
with emails_tab:
    emails_section(svc)
with hooks_tab:
    webhooks_section(svc, failed_events)
