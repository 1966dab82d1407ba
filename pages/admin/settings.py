"""Settings (admin): which mode each gateway is in, the venue rules in force, and a live check of every connection."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, session, widgets
from services.ops.health import modes
from services.rules.fmt import hhmm, weekdays_label
from services.rules.refunds import describe_bands

svc = boot.services()
session.require_role("settings")
s = svc.settings

st.title("Settings")
st.caption(
    "Set in environment variables or `.streamlit/secrets.toml` (see the README's *Going live*); restart to apply."
)

left, right = st.columns([1, 1], gap="large")
with left:
    st.subheader("Connections", anchor=False)
    st.dataframe(pd.DataFrame(modes(svc), columns=["Part", "Mode"]), hide_index=True, width="stretch")
    if st.button("Check connections", icon=":material/network_check:", type="primary"):
        bar, report = widgets.progress_bar("Checking…", say="Checking {}…")
        with actions.reporting("Checking the connections"):
            st.session_state["settings_checks"] = actions.desk().check_connections(progress=report)
        bar.empty()
    checks = st.session_state.get("settings_checks")
    if checks:
        bad = [c for c in checks if c.ok is False]
        if bad:
            st.error(f"{len(bad)} connection problem(s): fix them before taking live bookings.")
        else:
            st.success("Every connection works.")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Where": c.area,
                        "Check": c.name,
                        "Result": {True: "OK", False: "Problem", None: "Skipped"}[c.ok],
                        "Detail": c.detail,
                    }
                    for c in checks
                ]
            ),
            hide_index=True,
            width="stretch",
        )
with right:
    st.subheader("Venue rules", anchor=False)
    rules = [
        ("Opening hours", f"{hhmm(s.open_time)}–{hhmm(s.close_time)}, {weekdays_label(s.open_weekdays)}"),
        ("Buffer between bookings", f"{s.buffer_minutes} min"),
        ("Booking window", f"{s.min_notice_hours} h to {s.max_days_ahead} days ahead"),
        ("Days in one booking", f"at most {s.max_days_per_booking}"),
        ("Unpaid hold", f"web {s.hold_minutes} min, phone {s.phone_hold_minutes // 60} h"),
        ("Cancellation policy", describe_bands(svc.policy.refund_bands)),
        ("Multi-day discount", ", ".join(f"{p} % from {d} days" for d, p in s.discount_bands) or "none"),
        (
            "Statutory holidays",
            f"{s.holiday_country}-{s.holiday_subdivision}" if s.observe_holidays else "not observed",
        ),
        ("Time zone / currency", f"{s.venue_timezone} / {s.currency}"),
        ("Rooms file", s.rooms_file.name),
    ]
    # A static table wraps long values (the cancellation policy) instead of cutting them off.
    st.table(pd.DataFrame(rules, columns=["Rule", "Value"]).set_index("Rule"))
