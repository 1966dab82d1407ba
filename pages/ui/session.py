"""Who is signed in: OIDC (st.login) in live mode, the role picker in the sandbox; the role decides the screens
(nav.SCREENS) and what the Desk lets the person do (services.authz)."""

from __future__ import annotations

import os

import streamlit as st

from pages.ui import boot, nav
from services import authz
from services.core.roles import ROLES

# Session-state key prefixes of the pages' widgets and results, cleared when someone signs out or switches role.
PAGE_STATE_PREFIXES = ("pb_", "bk_", "ov_", "mm_", "ob_", "ap_", "rf_", "rv_", "dc_", "ds_", "se_", "bl_", "dp_")

# The browser tests and scripts/shoot.py start the app with this variable to skip the sandbox role picker
# (tests/e2e/harness.py ROLE_ENV). Honoured in sandbox mode only.
DEV_ROLE_ENV = "ROOMDESK_DEV_ROLE"


def oidc_configured() -> bool:
    """An [auth] section in .streamlit/secrets.toml: Streamlit's OIDC sign-in (st.login) can run."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def uses_oidc() -> bool:
    """Live mode (audit mode included) signs staff in with OIDC (st.login; the role comes from the staff roles saved
    on Settings, STAFF_ROLES until then); the sandbox keeps the role picker."""
    return not boot.settings().is_sandbox


def role() -> str | None:
    if uses_oidc():
        user = st.user
        if not user.get("is_logged_in", False):
            return None
        # The staff roles saved on Settings (STAFF_ROLES until a version is saved): services.core.venue.
        return authz.role_for(str(user.get("email") or ""), boot.services().staff_roles)
    value = st.session_state.get("role")
    return value if value in ROLES else None


def staff() -> authz.Staff | None:
    """The signed-in person: their email (the role's name @sandbox without OIDC) and role."""
    current = role()
    if current is None:
        return None
    email = str(st.user.get("email")).strip().lower() if uses_oidc() else f"{current}@sandbox"
    return authz.Staff(email, current)


def actor() -> str:
    """Who the audit trail names: the signed-in email, or 'frontdesk@sandbox' with the sandbox's role picker."""
    person = staff()
    return person.email if person else "anonymous@sandbox"


def may(action: str) -> bool:
    """The signed-in role may take this Desk action (services.authz.ACTIONS): whether to offer its button at all."""
    return authz.allowed(role(), action)


def require_role(key: str) -> str:
    """Stop the page with an error unless the signed-in role may open this screen (the navigation is the first
    guard)."""
    current = role()
    if not nav.may_open(current, key):
        who = ROLES.get(current or "", "nobody")
        st.error(f"This page is not available to {who}. Use the pages in the sidebar, or switch role.")
        st.stop()
    assert current is not None
    return current


def sign_in(new_role: str) -> None:
    st.session_state["role"] = new_role


def sign_out() -> None:
    # Forget the booking in progress too: the next person must not act on someone else's half-finished work.
    for key in list(st.session_state.keys()):
        if key == "role" or str(key).startswith(PAGE_STATE_PREFIXES):
            del st.session_state[key]
    st.session_state["dev_role_used"] = True
    if uses_oidc():
        st.logout()


def dev_role_default() -> None:
    """Sandbox only: take the role from ROOMDESK_DEV_ROLE once per session (tests and screenshots)."""
    if st.session_state.get("dev_role_used"):
        return
    st.session_state["dev_role_used"] = True
    wanted = os.environ.get(DEV_ROLE_ENV, "").strip().lower().replace(" ", "").replace("-", "")
    if wanted in ROLES and role() is None:
        sign_in(wanted)
