"""Sign in: live mode (audit mode included) with the venue's accounts (OIDC); the sandbox with a role picker (there
are no real accounts to protect)."""

from __future__ import annotations

import streamlit as st

from pages.ui import boot, session
from services.core.roles import ROLES

boot.services()
st.title("Room Desk")

if session.uses_oidc():
    # Live mode: staff sign in with the venue's accounts (OIDC, e.g. Google Workspace); the role comes from STAFF_ROLES.
    user = st.user
    if not user.get("is_logged_in", False):
        st.write("Sign in with your work account to use Room Desk.")
        if st.button("Sign in", type="primary", icon=":material/login:", key="sign_in_oidc"):
            st.login()
        st.stop()
    email = str(user.get("email") or "")
    st.error(
        f"You are signed in as **{email or 'an account without an email'}**, which has no role in Room Desk. "
        "Ask an admin to add your email on Settings → Staff roles (front desk, manager, finance or admin)."
    )
    if st.button("Sign out", icon=":material/logout:", key="sign_out_oidc"):
        st.logout()
    st.stop()
st.write("Choose the role to work as. Each role sees its own pages; you can switch at any time from the sidebar.")
with st.columns([1, 1])[0], st.form("sign_in"):
    choice = st.radio(
        "Role",
        list(ROLES),
        format_func=lambda r: {
            "frontdesk": "Front desk — phone bookings, look up and cancel bookings, room calendar",
            "manager": "Manager — mismatches between Stripe, calendars and bookings; everything front desk does",
            "finance": "Finance — overview of mismatches and money at risk, look up bookings and payments",
            "admin": "Admin — everything",
        }[r],
        key="sign_in_role",
    )
    if st.form_submit_button("Sign in", type="primary"):
        session.sign_in(choice)
        st.rerun()
