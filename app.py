"""Room Desk staff dashboard: `streamlit run app.py`.

Streamlit re-executes this file on every rerun: it resolves who is signed in, builds the navigation for that role
(a page left out is unreachable, even by URL), creates the demo data on a sandbox's first start, then runs the page.
"""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui

st.set_page_config(page_title="Room Desk", page_icon=":material/meeting_room:", layout="wide")

PAGES = {
    key: st.Page(f"pages/{key}.py", title=title, icon=icon)  # URL paths: the file names (see ui.run_through_app)
    for key, title, icon in [
        # First allowed page = the landing page: managers, admins and finance start on the Overview (what is out of
        # step and how much money it puts at risk), front desk on Phone booking.
        ("overview", "Overview", ":material/monitoring:"),
        ("mismatches", "Mismatches", ":material/rule:"),
        ("phone_booking", "Phone booking", ":material/call:"),
        ("bookings", "Bookings", ":material/search:"),
        ("room_calendar", "Room calendar", ":material/calendar_month:"),
        ("refunds", "Refunds report", ":material/receipt_long:"),
        ("revenue", "Revenue & occupancy", ":material/bar_chart:"),
        ("approvals", "Refund approvals", ":material/approval:"),
        ("disputes", "Disputes", ":material/gavel:"),
        ("daily_close", "Daily close", ":material/account_balance:"),
        ("outbox", "Emails & webhooks", ":material/outgoing_mail:"),
        ("settings", "Settings", ":material/settings:"),
    ]
}

settings = ui.settings()
if settings.is_sandbox:
    ui.dev_role_default()
elif not ui.oidc_configured():
    # Live mode (real payments or calendars, audit mode included: it shows real customers' data) never runs without
    # staff sign-in.
    st.title("Room Desk")
    st.error(
        "**Room Desk will not start in live mode without staff sign-in.** Add an `[auth]` section (OIDC, e.g. Google "
        "Workspace) to `.streamlit/secrets.toml` and map each person's email to a role in `STAFF_ROLES` — see the "
        "README's *Going live*. Or run in sandbox mode (the default)."
    )
    st.stop()
role = ui.role()

# The navigation comes before anything slow (opening the database, the first start's demo data) so the sidebar
# shows this role's pages and nothing else as early as possible.
if role is None:
    # Signed out, every page's URL shows the sign-in page (hidden entries), so a deep link such as
    # /bookings?pi=… survives signing in: the rerun after it finds the real page at the same URL.
    nav = st.navigation(
        [st.Page("pages/sign_in.py", title="Sign in", icon=":material/login:", default=True)]
        + [st.Page("pages/sign_in.py", title="Sign in", url_path=key, visibility="hidden") for key in PAGES]
    )
else:
    allowed = [PAGES[key] for key in PAGES if role in ui.PAGE_ROLES[key]]

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

    nav = st.navigation([st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"), *allowed])

svc = ui.services()
ui.sandbox_banner(svc)
ui.wait_for_demo(svc)

if role is not None:
    with st.sidebar:
        st.markdown(f"Signed in as **{ui.ROLES[role]}**  \n`{ui.actor()}`")
        if ui.uses_oidc():
            st.button("Sign out", icon=":material/logout:", on_click=ui.sign_out, key="switch_role")
        else:
            st.button("Switch role", icon=":material/switch_account:", on_click=ui.sign_out, key="switch_role")

nav.run()
