"""Starting up: the settings, the services (one per process, cached), the demo data a sandbox creates on its first
start, and the banner that says which mode this is.

A normal module, so its state (the seeding threads) lives once per process, unlike app.py, which Streamlit runs again
on every rerun.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import streamlit as st

from services.core.errors import DomainError

if TYPE_CHECKING:
    from services.core.context import Services
    from services.core.settings import Settings

log = logging.getLogger("roomdesk.ui")


def settings() -> Settings:
    """The settings, or a plain error and a stopped page when the environment holds a bad value."""
    from pydantic import ValidationError as SettingsError

    from services.core.settings import get_settings

    try:
        return get_settings()
    except SettingsError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        st.error(f"Room Desk cannot start, a setting is wrong — {problems}")
        st.stop()
        raise  # unreachable: st.stop() raises


@st.cache_resource(show_spinner="Opening the database…")
def get_services() -> Services:
    """One Services per process: the engine and gateways are shared by every session."""
    from services.core.context import build_services

    return build_services()


def services() -> Services:
    """The cached services, or a plain error and a stopped page when the configuration is wrong."""
    try:
        return get_services()
    except DomainError as exc:
        st.error(f"Room Desk cannot start: {exc.message}")
    except Exception:
        log.exception("Services could not be built")
        st.error("Room Desk cannot open its database. The details are in the server log.")
    st.stop()
    raise AssertionError("unreachable: st.stop() raises")


@dataclass
class DemoSeeding:
    """Demo data being created in a background thread, so a rerun or a second session never interrupts it halfway
    (a seeding run inside the script thread would stop at the next st.* call when the user clicks)."""

    fraction: float = 0.0
    message: str = "Starting"
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = max(0.0, min(fraction, 1.0)), message

    def run(self, svc: Services) -> None:
        from services.ops import demo

        try:
            demo.seed_demo(svc, progress=lambda f, m: self.progress(f * 0.9, m))
            # Open on a dashboard that already shows what is wrong: the first sync and reconciliation.
            self.progress(0.92, "syncing Stripe and the room calendars")
            demo.first_sync(svc)
            self.progress(1.0, "done")
        except Exception as exc:  # shown to staff; the traceback goes to the log
            log.exception("Demo data could not be created")
            self.error = getattr(exc, "message", None) or str(exc)
        finally:
            self.done.set()


_SEED_LOCK = threading.Lock()
_SEEDINGS: dict[str, DemoSeeding | None] = {}


def demo_seeding(svc: Services) -> DemoSeeding | None:
    """Start seeding an empty sandbox once per database, whichever session gets here first; None when not needed."""
    from services.ops import demo

    key = svc.settings.sqlalchemy_url
    with _SEED_LOCK:
        if key not in _SEEDINGS:
            seeding = None
            if svc.settings.is_sandbox and demo.is_empty(svc):
                seeding = DemoSeeding()
                threading.Thread(target=seeding.run, args=(svc,), name="demo-seed", daemon=True).start()
            _SEEDINGS[key] = seeding
        return _SEEDINGS[key]


def wait_for_demo(svc: Services) -> None:
    """On first launch, show the demo data being created (about 7 s) before any page renders."""
    seeding = demo_seeding(svc)
    if seeding is None:
        return
    if not seeding.done.is_set():
        bar = st.progress(0.0, text="First start: creating demo bookings…")
        while not seeding.done.wait(0.3):
            bar.progress(seeding.fraction, text=f"First start: creating demo bookings — {seeding.message}")
        bar.empty()
    if seeding.error:
        st.error(f"The demo data could not be created completely: {seeding.error}")


# A front-desk laptop is 1366×768: Streamlit's default 6rem above the page and its 2.75rem titles took ~260 px
# before the first field, and 5rem either side left tables 906 px. Less room around, smaller titles and the mode
# banners on one thin line keep what a person acts on, and its outcome, in the first screen, and tables unscrolled.
COMPACT_CSS = """
[data-testid="stMainBlockContainer"] { padding: 2.75rem 2rem 3rem 2rem; }
[data-testid="stMainBlockContainer"] h1 { font-size: 1.85rem; padding: 0.1rem 0 0.35rem 0; }
[data-testid="stHeader"] { height: 2.5rem; min-height: 2.5rem; }
.st-key-mode_banner [data-testid="stAlert"] > div { padding: 0.3rem 0.75rem; }
.st-key-mode_banner [data-testid="stAlertContainer"] { padding: 0.3rem 0.75rem; min-height: 0; }
.st-key-mode_banner p { font-size: 0.85rem; }
"""


def compact_layout() -> None:
    """The dashboard's spacing for a 1366×768 screen (COMPACT_CSS): a style-only st.html takes no room itself."""
    st.html(f"<style>{COMPACT_CSS}</style>")


def sandbox_banner(svc: Services) -> None:
    """Which mode this is, on one thin line above every page (and the compact layout: app.py calls this on every
    run, before the page)."""
    compact_layout()
    if not (svc.settings.is_sandbox or svc.settings.audit_mode):
        return
    with st.container(key="mode_banner"):
        if svc.settings.is_sandbox:
            st.warning(
                "**Sandbox — no real payments or calendars.** Test cards, test calendars, emails kept locally.",
                icon=":material/science:",
            )
        if svc.settings.audit_mode:
            st.info(
                "**Audit mode — read-only.** Live data from Stripe and the room calendars; no change is made anywhere.",
                icon=":material/visibility:",
            )
