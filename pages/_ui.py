"""Small helpers shared by app.py and the pages: the cached services, roles, the sandbox banner, formatting, error
display and the room timeline chart. Pages stay thin: read widgets → call services → render with these.

Imported as `pages._ui` (a normal module, so its module-level state lives once per process, unlike app.py which
Streamlit re-executes on every rerun). The heavy imports (pandas, altair, the database layer) happen inside the
functions that need them: on a process's first run Streamlit shows the pages/ folder as navigation until app.py
calls st.navigation, and app.py imports this module before that call, so it must import fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import runpy
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from services import authz
from services.core.errors import DomainError, GatewayError, NotAvailable, ValidationError
from services.rules.fmt import day_label
from services.rules.fmt import money as _money

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

    from services.booking.queries import BookingDetail, ScheduleItem
    from services.core.catalogue import Room
    from services.core.context import Services
    from services.core.settings import Settings

log = logging.getLogger("roomdesk.ui")

# ------------------------------------------------------------------------------------------------ roles and pages

ROLES = authz.ROLES

# Which roles may open which page. app.py builds the navigation from this, and every page checks it again itself
# (require_role), so a page left out of the navigation is unreachable twice over.
PAGE_ROLES: dict[str, frozenset[str]] = {
    "overview": frozenset({"manager", "finance", "admin"}),
    "mismatches": frozenset({"manager", "admin"}),
    "phone_booking": frozenset({"frontdesk", "manager", "admin"}),
    "bookings": frozenset({"frontdesk", "manager", "finance", "admin"}),
    "room_calendar": frozenset({"frontdesk", "manager", "finance", "admin"}),
    "refunds": frozenset({"manager", "finance", "admin"}),
    "revenue": frozenset({"manager", "finance", "admin"}),
    "approvals": frozenset({"manager", "finance", "admin"}),
    "disputes": frozenset({"manager", "finance", "admin"}),
    "daily_close": frozenset({"finance", "admin"}),
    "outbox": frozenset({"manager", "admin"}),
    "settings": frozenset({"admin"}),
}
# Session-state key prefixes of the pages' widgets and results, cleared when someone signs out or switches role.
PAGE_STATE_PREFIXES = ("pb_", "bk_", "ov_", "mm_", "ob_", "ap_", "rf_", "rv_", "dc_", "ds_")
CAN_CANCEL = frozenset({"frontdesk", "manager", "admin"})
# Sync now refreshes the cache and the findings; it changes no booking, but finance only looks at the Overview.
CAN_SYNC = frozenset({"manager", "admin"})

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
    """Live mode (audit mode included) signs staff in with OIDC (st.login; the role comes from STAFF_ROLES); the
    sandbox keeps the role picker."""
    return not settings().is_sandbox


def role() -> str | None:
    if uses_oidc():
        user = st.user
        if not user.get("is_logged_in", False):
            return None
        return authz.role_for(str(user.get("email") or ""), settings().staff_roles)
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


def desk() -> authz.Desk:
    """Every change the dashboard makes goes through this: each action checks the person's role first."""
    return authz.Desk(services(), staff())


def require_role(page: str) -> str:
    """Stop the page with an error unless the signed-in role may see it (the navigation is the first guard)."""
    current = role()
    if current not in PAGE_ROLES[page]:
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


# ------------------------------------------------------------------------------------------------ pages


def run_through_app() -> None:
    """Make sure this page runs inside app.py (banner, role, navigation). Every page calls this first.

    Until a process's first st.navigation call, Streamlit treats pages/ as an old-style pages folder: the first
    request for /bookings after a start runs pages/bookings.py on its own, without app.py (AppTest starts every run
    that way). Then run app.py here, in this same run so no click is lost; it draws the navigation and runs this
    page again, this time through app.py. (URL paths that differ from the file names would avoid this but make
    the old mode pop up "Page not found" on that first request: app.py keeps the default paths, the file names.)
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if not PagesManager.uses_pages_directory:
        return
    ctx = get_script_run_ctx()
    main = ctx.pages_manager.main_script_path if ctx else None
    if not main or Path(main).resolve().parent.name == "pages":  # a page run as the main script: nothing to wrap
        return
    runpy.run_path(str(main), run_name="__main__")
    st.stop()


def booking_link(reference: str) -> str:
    """A link (relative to the app) that opens one booking on the Bookings page."""
    return f"/bookings?ref={reference}"


# ------------------------------------------------------------------------------------------------ services


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


def sandbox_banner(svc: Services) -> None:
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


# ------------------------------------------------------------------------------------------------ formatting


def money(svc: Services, cents: int | None) -> str:
    return "—" if cents is None else _money(cents, svc.settings.currency)


def venue(svc: Services, moment: datetime | None, *, with_day: bool = True) -> str:
    """A stored UTC instant in venue time: 'Tue 3 Mar 14:05'."""
    if moment is None:
        return "—"
    local = moment.astimezone(svc.settings.tz)
    return f"{day_label(local.date())} {local:%H:%M}" if with_day else f"{local:%H:%M}"


def venue_from_epoch(svc: Services, seconds: int | None) -> str:
    if not seconds:
        return "—"
    return venue(svc, datetime.fromtimestamp(int(seconds), tz=svc.settings.tz))


def tz_label(svc: Services) -> str:
    """'Vancouver time' — said next to every time so nobody wonders whose clock it is."""
    return svc.settings.venue_timezone.rsplit("/", 1)[-1].replace("_", " ") + " time"


def days_label(days: Sequence[date]) -> str:
    return ", ".join(day_label(d) for d in sorted(days)) or "—"


def hours_label(minutes: int) -> str:
    h, m = divmod(max(minutes, 0), 60)
    return f"{h} h" + (f" {m:02d} min" if m else "")


STATUS_LABELS = {
    "AWAITING_PAYMENT": ("Awaiting payment", "orange"),
    "CONFIRMED": ("Confirmed", "green"),
    "PARTLY_CANCELLED": ("Partly cancelled", "violet"),
    "COMPLETED": ("Completed", "blue"),
    "CANCELLED": ("Cancelled", "gray"),
    "EXPIRED": ("Expired", "gray"),
    "FAILED": ("Failed", "red"),
    "REFUNDED": ("Refunded", "blue"),
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, (status.replace("_", " ").capitalize(), "gray"))[0]


def status_badge(status: str) -> None:
    label, color = STATUS_LABELS.get(status, (status, "gray"))
    st.badge(label, color=color)  # type: ignore[arg-type]


# Payload keys that add nothing a person reads (the calendar is the room's; ids are on the Days table).
AUDIT_SKIP = {"message", "calendar_id", "channel"}


def _fact(svc: Services, key: str, value: Any) -> str:
    if (key == "amount" or key.endswith("_cents")) and isinstance(value, int):
        return money(svc, value)
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        with contextlib.suppress(ValueError):
            return venue(svc, datetime.fromisoformat(value))
    if isinstance(value, str) and len(value) == 10 and value[4:5] == "-":
        with contextlib.suppress(ValueError):
            return day_label(date.fromisoformat(value))
    if isinstance(value, list):
        return ", ".join(_fact(svc, key, v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{_fact(svc, '', k)}: {_fact(svc, key, v)}" for k, v in value.items())
    return str(value)


def audit_summary(svc: Services, payload: dict[str, Any]) -> str:
    """The audit payload as one readable line: its message first, then the other facts, money and dates formatted."""
    parts = [str(payload["message"])] if payload.get("message") else []
    for key, value in payload.items():
        if key in AUDIT_SKIP or value in (None, "", [], {}):
            continue
        parts.append(f"{key.removesuffix('_cents').replace('_', ' ')}: {_fact(svc, key, value)}")
    text = " · ".join(parts)
    return text if len(text) <= 220 else text[:219] + "…"


# ------------------------------------------------------------------------------------------------ errors


def show_error(exc: DomainError, *, doing: str = "") -> None:
    """A service error in plain words (never a stack trace): every reason as a list item."""
    head = f"{doing}: " if doing else ""
    if isinstance(exc, NotAvailable):
        st.error(f"{head}this can't be booked —\n\n" + "\n".join(f"- {r}" for r in exc.reasons))
    elif isinstance(exc, ValidationError):
        st.error(f"{head}please fix —\n\n" + "\n".join(f"- {p}" for p in exc.problems))
    elif isinstance(exc, GatewayError):
        who = {"payments": "Stripe", "calendar": "Google Calendar", "mail": "The mail server"}.get(
            exc.provider, "An outside service"
        )
        retry = " Try again in a minute." if exc.transient else ""
        st.error(f"{head}{who} did not complete the request: {exc.message}.{retry}")
    else:
        st.error(f"{head}{exc.message}")


@contextmanager
def reporting(doing: str) -> Iterator[None]:
    """Run a service call and show any failure in plain words; unexpected errors go to the log, not the page."""
    try:
        yield
    except DomainError as exc:
        show_error(exc, doing=doing)
    except Exception:
        log.exception("%s failed", doing)
        st.error(f"{doing} failed unexpectedly. Nothing more is shown here; the details are in the server log.")


# ------------------------------------------------------------------------------------------------ forms


def extras_inputs(room: Room, key_prefix: str, *, disabled: bool = False, placeholder: str = "Not known yet") -> None:
    """One input per question of the room's extras form, under `key_prefix + field key` in session state (phone
    booking asks them of a caller, Mismatches fills in what a booking lacks)."""
    for f in room.extras:
        key = f"{key_prefix}{f.key}"
        if f.kind == "int":
            st.number_input(
                f.label,
                min_value=f.min,
                max_value=f.max,
                value=None,
                step=1,
                key=key,
                disabled=disabled,
                placeholder=placeholder,
            )
        elif f.kind == "choice":
            st.selectbox(f.label, f.choices, index=None, key=key, disabled=disabled, placeholder=placeholder)
        else:
            st.text_input(f.label, key=key, disabled=disabled, placeholder=placeholder)


def extras_values(room: Room, key_prefix: str) -> dict[str, Any]:
    """What extras_inputs holds now, blanks left out."""
    values = {f.key: st.session_state.get(f"{key_prefix}{f.key}") for f in room.extras}
    return {k: v for k, v in values.items() if v is not None and str(v).strip() != ""}


# ------------------------------------------------------------------------------------------------ booking timeline

TIMELINE_SOURCES = ["Stripe", "Calendar", "Room Desk", "Email"]
NBSP = "\u00a0"


def history_frame(svc: Services, detail: BookingDetail, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """queries.booking_timeline as a table a person reads: venue time, room names for calendars, and our audit rows'
    payloads formatted (money, dates) as on the rest of the page."""
    import pandas as pd

    # booking_timeline gives an audit row's payload as raw "key: value" text; the same rows are in the detail
    # (same order, same instants), so pair them up to show the formatted summary instead.
    summaries: dict[tuple[datetime, str], list[str]] = {}
    for a in detail.audit:
        summaries.setdefault((a.at, a.action), []).append(audit_summary(svc, a.payload or {}))
    out = []
    for row in rows:
        text, who = str(row.get("detail") or ""), str(row.get("who") or "")
        if row["source"] == "Room Desk" and (queue := summaries.get((row["at"], row["what"]))):
            text = queue.pop(0)
        if row["source"] == "Calendar" and (room := svc.catalogue.room_by_calendar(who)) is not None:
            who = room.name
        out.append(
            {
                # No-break spaces: a static table gives the details the room and would wrap these short columns.
                "When": venue(svc, row["at"]).replace(" ", NBSP),
                "Source": str(row["source"]).replace(" ", NBSP),
                "What": str(row["what"]).removeprefix("booking."),
                "Who": who,
                "Details": text,
            }
        )
    return pd.DataFrame(out, columns=["When", "Source", "What", "Who", "Details"])


def show_history(svc: Services, detail: BookingDetail, rows: Sequence[dict[str, Any]], *, key: str) -> None:
    """The joined timeline with a filter by source (all shown at first), as a static table that wraps its text."""
    present = [s for s in TIMELINE_SOURCES if any(r["source"] == s for r in rows)]
    shown = st.pills("Sources", present, selection_mode="multi", default=present, key=key, label_visibility="collapsed")
    frame = history_frame(svc, detail, [r for r in rows if r["source"] in (shown or present)])
    if frame.empty:
        st.caption("Nothing recorded for this booking yet.")
        return
    st.table(frame, hide_index=True, border="horizontal")


# ------------------------------------------------------------------------------------------------ sync and findings

SEVERITY_COLORS = {"high": "red", "medium": "orange", "low": "gray"}
SEVERITY_HEX = {"high": "#dc2626", "medium": "#f59e0b", "low": "#94a3b8"}


def ago(svc: Services, moment: datetime) -> str:
    """'just now', '3 min ago', '5 h ago', '2 days ago' (from the services' clock, so the sandbox's clock too)."""
    minutes = int((svc.now() - moment).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // (24 * 60)} days ago"


def sync_status(svc: Services, *, can_sync: bool = True) -> datetime | None:
    """'Synced 3 min ago', or a warning when the cache is older than settings.sync_stale_minutes or was never filled:
    every number on the reconciliation pages is only as fresh as the last sync. Returns the last sync's time."""
    from services.reconciliation.findings import last_sync

    last = last_sync(svc)
    todo = "Press **Sync now**" if can_sync else "Ask a manager to sync"
    if last is None:
        st.warning(
            "**Never synced**: Room Desk has not read Stripe and the room calendars yet, so no mismatch can show. "
            f"{todo}, or run the worker (`python -m services.ops.cli worker`).",
            icon=":material/sync_problem:",
        )
    elif svc.now() - last > timedelta(minutes=svc.settings.sync_stale_minutes):
        st.warning(
            f"**Synced {ago(svc, last)}** ({venue(svc, last)}), more than {svc.settings.sync_stale_minutes} min ago: "
            f"what is shown may be out of date. {todo}, or check that the worker is running.",
            icon=":material/sync_problem:",
        )
    else:
        st.markdown(f":green[:material/check_circle:] **Synced {ago(svc, last)}** · {venue(svc, last)}")
    return last


@dataclass
class SyncOutcome:
    line: str  # what the sync read (SyncReport.line())
    errors: list[str]
    opened: int
    resolved: int
    open_total: int

    def text(self) -> str:
        return (
            f"Synced: {self.line}. {self.opened} new finding(s), {self.resolved} resolved; {self.open_total} open now."
        )


def audit_indicator(svc: Services) -> None:
    """The audit trail's integrity: each row is chained to the one before by a hash (services/core/audit.py); an edited
    or deleted row breaks the chain, and this says which."""
    from services.core import audit

    try:
        report = audit.chain_status(svc)
    except Exception:
        log.exception("Audit chain check failed")
        st.warning("The audit trail could not be checked just now; the details are in the server log.")
        return
    if report.ok:
        st.caption(
            f":material/verified_user: Audit trail intact · {report.rows:,} rows chained · checked "
            f"{venue(svc, report.checked_at)}",
            help="Every change is recorded in an append-only audit log, each row chained to the previous one by a "
            "hash. Run `python -m services.ops.cli verify-audit` for a full check.",
        )
    else:
        st.error(
            f"**The audit trail has been tampered with.** {report.line()} Tell an admin: rows of the audit log "
            "were changed or deleted outside Room Desk.",
            icon=":material/gpp_bad:",
        )


def sync_and_reconcile(svc: Services) -> SyncOutcome | None:
    """Sync Stripe and the calendars, then reconcile, with a progress bar; None (and a message) when it could not
    run. Both the Overview's Sync now and the Mismatches page after a fix use it."""
    from services.reconciliation import sync

    bar = st.progress(0.0, text="Syncing: Stripe")
    work = desk()
    try:
        report = work.sync(progress=lambda f, m: bar.progress(min(f, 1.0) * 0.9, text=f"Syncing: {m}"[:120]))
        bar.progress(0.95, text="Looking for mismatches")
        run = work.reconcile()
    except sync.SyncBusy:
        bar.empty()
        st.info(
            "Another sync is running right now (the worker or a colleague). What you see is from the last one; "
            "try again in a minute.",
            icon=":material/hourglass_top:",
        )
        return None
    except DomainError as exc:
        bar.empty()
        show_error(exc, doing="Sync")
        return None
    except Exception:
        bar.empty()
        log.exception("Sync failed")
        st.error("Sync failed unexpectedly. Nothing more is shown here; the details are in the server log.")
        return None
    bar.empty()
    return SyncOutcome(report.line(), list(report.errors), run.opened, run.resolved, run.open_total)


def show_sync_outcome(outcome: SyncOutcome) -> None:
    (st.warning if outcome.errors else st.success)(outcome.text(), icon=":material/sync:")


# ------------------------------------------------------------------------------------------------ room timeline

KINDS = ["Free", "Booked", "Unpaid hold", "Manual event", "Orphan event", "Closed"]
KIND_COLORS = ["#e8f3f1", "#0f766e", "#f59e0b", "#7c3aed", "#dc2626", "#d4d4d8"]
KIND_OF = {"booked": "Booked", "hold": "Unpaid hold", "manual": "Manual event", "orphan": "Orphan event"}
KIND_HELP = {
    "Booked": "paid and on the calendar",
    "Unpaid hold": "waiting for the customer to pay; blocks the room until it expires",
    "Manual event": "added straight in Google Calendar, not by Room Desk",
    "Orphan event": "on the calendar but its booking is cancelled or failed: check it",
}


def closed_reason(svc: Services, day: date) -> str | None:
    """Why the venue is shut on `day` (weekend, statutory holiday, closure), or None when it is open."""
    from services.rules.availability import holiday_name

    if day.weekday() not in svc.settings.open_weekdays:
        return "Closed: weekend" if day.weekday() >= 5 else f"Closed on {day:%A}s"
    if svc.settings.observe_holidays and (name := holiday_name(day, svc.policy)):
        return f"Closed: {name}"
    reason = svc.catalogue.closure_map.get(day)
    return f"Closed: {reason}" if reason else None


def _hours(t: time | datetime) -> float:
    return t.hour + t.minute / 60


def timeline_frame(svc: Services, items: Sequence[ScheduleItem], days: Sequence[date]) -> pd.DataFrame:
    """One row per bar: a 'Free'/'Closed' background per room and day, then what occupies each room."""
    import pandas as pd

    open_h, close_h = _hours(svc.settings.open_time), _hours(svc.settings.close_time)
    rows: list[dict[str, Any]] = []
    for d in days:
        closed = closed_reason(svc, d)
        for room in svc.catalogue.rooms:
            rows.append(
                {
                    "day": day_label(d),
                    "room": room.name,
                    "kind": "Closed" if closed else "Free",
                    "start_h": open_h,
                    "end_h": close_h,
                    "when": f"{day_label(d)}, open hours",
                    "who": closed or "Free",
                    "reference": "",
                    "label": "",
                }
            )
    wanted = set(days)
    for it in items:
        if it.day not in wanted:
            continue
        start_h, end_h = max(_hours(it.start), open_h), min(_hours(it.end), close_h)
        if it.end.date() > it.day:  # runs past midnight: clip at closing
            end_h = close_h
        if end_h <= start_h:
            continue
        rows.append(
            {
                "day": day_label(it.day),
                "room": it.room_name,
                "kind": KIND_OF.get(it.kind, it.kind),
                "start_h": start_h,
                "end_h": end_h,
                "when": f"{day_label(it.day)} {it.start:%H:%M}–{it.end:%H:%M}",
                "who": it.label,
                "reference": it.reference,
                "label": it.label,
            }
        )
    return pd.DataFrame(rows)


def timeline_chart(
    svc: Services,
    frame: pd.DataFrame,
    day: date,
    *,
    request: pd.DataFrame | None = None,
    labels: bool = False,
    legend: bool = True,
    highlight: str = "",
    titled: bool = True,
) -> alt.LayerChart:
    """One day: rooms as rows, opening hours on x; colours say free / booked / hold / manual / orphan / closed.

    x is hours as a number (8.0–17.0) rather than a timestamp: Vega-Lite would shift timestamps into the browser's
    time zone, and these are venue-time wall-clock hours already. The chart takes the container's width."""
    import altair as alt
    import pandas as pd

    open_h, close_h = _hours(svc.settings.open_time), _hours(svc.settings.close_time)
    rooms = [r.name for r in svc.catalogue.rooms]
    row_px = 24
    ticks = list(range(int(open_h), int(close_h) + 1))
    x = alt.X(
        "start_h:Q",
        scale=alt.Scale(domain=[open_h, close_h], nice=False),
        title=None,
        axis=alt.Axis(
            values=ticks,
            labelExpr="(datum.value < 10 ? '0' : '') + datum.value + ':00'",
            grid=True,
            gridColor="#ffffff",
            gridWidth=2,
            orient="top",
            labelFontSize=11,
        ),
    )
    bold = f"datum.value == {json.dumps(highlight)} ? 'bold' : 'normal'"
    y = alt.Y(
        "room:N",
        sort=rooms,
        title=None,
        scale=alt.Scale(domain=rooms),
        axis=alt.Axis(
            labelLimit=140,
            labelFontSize=12,
            ticks=False,
            domain=False,
            labelFontWeight=alt.expr(bold),
            labelColor=alt.expr(f"datum.value == {json.dumps(highlight)} ? '#1d4ed8' : '#52525b'"),
        ),
    )
    # The legend names only what needs naming (free and closed speak for themselves) so it fits a half-page chart.
    color = alt.Color(
        "kind:N",
        scale=alt.Scale(domain=KINDS, range=KIND_COLORS),
        legend=alt.Legend(
            title=None, orient="top", direction="horizontal", symbolType="square", labelFontSize=12, values=KINDS[1:5]
        )
        if legend
        else None,
    )
    tooltip = [
        alt.Tooltip("room:N", title="Room"),
        alt.Tooltip("when:N", title="When"),
        alt.Tooltip("who:N", title="Who / what"),
        alt.Tooltip("reference:N", title="Reference"),
        alt.Tooltip("kind:N", title="Kind"),
    ]
    label = day_label(day)
    data = frame[frame["day"] == label].assign(layer="bar")
    if request is not None and not request.empty:
        data = pd.concat([data, request[request["day"] == label].assign(layer="request")], ignore_index=True)
    base = alt.Chart(data)
    background = (
        base.transform_filter("datum.kind == 'Free' || datum.kind == 'Closed'")
        .mark_bar(height=row_px - 6)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    busy = (
        base.transform_filter("datum.layer == 'bar' && datum.kind != 'Free' && datum.kind != 'Closed'")
        .mark_bar(height=row_px - 6, cornerRadius=3, stroke="white", strokeWidth=1)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    layers: list[Any] = [background, busy]
    if request is not None and not request.empty:
        layers.append(
            base.transform_filter("datum.layer == 'request'")
            .mark_bar(
                height=row_px - 2, fill="#2563eb", fillOpacity=0.18, stroke="#1d4ed8", strokeWidth=2, strokeDash=[5, 3]
            )
            .encode(x=x, x2="end_h:Q", y=y, tooltip=tooltip)
        )
    if labels:
        # Write the name inside each bar, cut to what fits: `width` is the chart's live width (it follows the
        # page), about 6.5 px a character.
        hours = close_h - open_h
        layers.append(
            base.transform_filter("datum.layer == 'bar' && datum.kind != 'Free' && datum.kind != 'Closed'")
            .transform_calculate(fit=f"floor(((datum.end_h - datum.start_h) * width / {hours} - 10) / 6.5)")
            .transform_calculate(
                text="datum.fit < 4 ? '' : (length(datum.label) <= datum.fit ? datum.label : "
                "slice(datum.label, 0, datum.fit - 1) + '…')"
            )
            .mark_text(align="left", baseline="middle", dx=5, color="white", fontSize=11, fontWeight="bold")
            .encode(x=x, y=y, text="text:N", tooltip=tooltip)
        )
    closed = frame[(frame["day"] == label) & (frame["kind"] == "Closed")]["who"]
    title = label + (f" — {closed.iloc[0]}" if not closed.empty else "")
    # fit-x: follow the page's width, but keep a fixed height per room row (plain "fit" squeezes the rows to make
    # room for the title, legend and axis).
    chart = alt.layer(*layers).properties(
        width="container", height=row_px * len(rooms), autosize=alt.AutoSizeParams(type="fit-x", contains="padding")
    )
    if titled:
        chart = chart.properties(
            title=alt.TitleParams(title, anchor="start", fontSize=14, color="#1f2933" if closed.empty else "#71717a")
        )
    return chart


def show_timeline(
    svc: Services,
    frame: pd.DataFrame,
    days: Sequence[date],
    *,
    request: pd.DataFrame | None = None,
    labels: bool = False,
    highlight: str = "",
) -> None:
    """One chart per day, stacked (a week is 'faceted' by hand: Vega-Lite facets cannot follow the page width)."""
    for i, day in enumerate(days):
        # A single day is titled by the page already.
        chart = timeline_chart(
            svc, frame, day, request=request, labels=labels, legend=i == 0, highlight=highlight, titled=len(days) > 1
        )
        st.altair_chart(chart, width="stretch")


def free_hours(svc: Services, items: Sequence[ScheduleItem], days: Sequence[date]) -> dict[str, float]:
    """Unoccupied opening hours per room over `days` (closed days count as none)."""
    open_h, close_h = _hours(svc.settings.open_time), _hours(svc.settings.close_time)
    out: dict[str, float] = {}
    for room in svc.catalogue.rooms:
        total = 0.0
        for d in days:
            if closed_reason(svc, d):
                continue
            spans = sorted(
                (max(_hours(i.start), open_h), min(_hours(i.end), close_h))
                for i in items
                if i.day == d and i.room_slug == room.slug
            )
            busy, cursor = 0.0, open_h
            for s, e in spans:
                s = max(s, cursor)
                if e > s:
                    busy += e - s
                    cursor = e
            total += (close_h - open_h) - busy
        out[room.name] = total
    return out
