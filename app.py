"""Room Desk staff dashboard: `streamlit run app.py`.

Streamlit re-executes this file on every rerun: it resolves who is signed in, builds the navigation for that role
from pages/ui/nav.py (a screen left out is unreachable, even by URL), creates the demo data on a sandbox's first
start, then runs the screen. The screens' scripts are in pages/<job>/; pages/<url>.py are stand-ins for Streamlit's
old pages/ mode only (pages/ui/legacy.py says why).
"""

from __future__ import annotations

import streamlit as st

from pages.ui import boot, nav, session
from services.core.roles import ROLES

st.set_page_config(page_title="Room Desk", page_icon=":material/meeting_room:", layout="wide")

PAGES = {s.key: st.Page(s.script, title=s.title, icon=s.icon, url_path=s.key) for s in nav.SCREENS}

settings = boot.settings()
if settings.is_sandbox:
    session.dev_role_default()
elif not session.oidc_configured():
    # Live mode (real payments or calendars, audit mode included: it shows real customers' data) never runs without
    # staff sign-in.
    st.title("Room Desk")
    st.error(
        "**Room Desk will not start in live mode without staff sign-in.** Add an `[auth]` section (OIDC, e.g. Google "
        "Workspace) to `.streamlit/secrets.toml` and map each person's email to a role in `STAFF_ROLES` — see the "
        "README's *Going live*. Or run in sandbox mode (the default)."
    )
    st.stop()
role = session.role()

# The navigation comes before anything slow (opening the database, the first start's demo data) so the sidebar
# shows this role's pages and nothing else as early as possible.
if role is None:
    # Signed out, every page's URL shows the sign-in page (hidden entries), so a deep link such as
    # /bookings?pi=… survives signing in: the rerun after it finds the real page at the same URL.
    page = st.navigation(
        [st.Page(nav.SIGN_IN, title="Sign in", icon=":material/login:", default=True)]
        + [st.Page(nav.SIGN_IN, title="Sign in", url_path=key, visibility="hidden") for key in PAGES]
    )
else:
    allowed = [PAGES[s.key] for s in nav.SCREENS if nav.may_open(role, s.key)]

    def home() -> None:
        """'/' → the role's first page (or the booking a '/?pi=…' link names, the finding a '/?finding=…' link
        names). A hidden page is the default, not a real one: Streamlit serves the default page at '/' only, so
        /bookings would be "not found" for the roles whose first page it is."""
        asked = set(st.query_params)
        target = allowed[0]
        if "finding" in asked and PAGES["mismatches"] in allowed:
            target = PAGES["mismatches"]
        elif {"pi", "ref"} & asked and PAGES["bookings"] in allowed:
            target = PAGES["bookings"]
        st.switch_page(target, query_params=st.query_params.to_dict())

    page = st.navigation([st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"), *allowed])

svc = boot.services()
boot.sandbox_banner(svc)
boot.wait_for_demo(svc)

if role is not None:
    with st.sidebar:
        st.markdown(f"Signed in as **{ROLES[role]}**  \n`{session.actor()}`")
        if session.uses_oidc():
            st.button("Sign out", icon=":material/logout:", on_click=session.sign_out, key="switch_role")
        else:
            st.button("Switch role", icon=":material/switch_account:", on_click=session.sign_out, key="switch_role")

page.run()
