"""Streamlit's old multipage mode, and the one step Room Desk takes about it.

Streamlit 1.67 treats a folder named `pages` next to the entry script as a v1 "pages directory" until the process's
first st.navigation call (streamlit/runtime/pages_manager.py sets the flag once per process;
scriptrunner/script_runner.py `_mpa_v1` then runs pages/*.py itself, skipping __init__.py). The client fixed the
layout, so the folder keeps its name; the screens' own scripts live in subpackages (pages/<job>/…), which that mode
never runs. Only the very first request after a start (or several at once) can arrive in that mode. A deep link such
as /bookings?ref=… then needs a pages/bookings.py to resolve to — without one Streamlit answers "Page not found" and
runs app.py's main page instead — so each screen's URL has a two-line stand-in, pages/<url>.py, that calls
`hand_over()`: run app.py in this same run (banner, role, st.navigation, which leaves the old mode for good and runs
the screen the URL names), then stop. Nothing else ever runs those files: app.py's navigation points at the
subpackages. No Streamlit internals are touched.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parents[2] / "app.py"


def hand_over() -> None:
    """Run app.py now, in place of the stand-in page Streamlit's old mode picked, then end this run."""
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
