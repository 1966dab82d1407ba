"""How fresh the reconciliation is, and refreshing it: 'Synced 3 min ago', Sync now (a sync, then a reconciliation,
with a progress bar), and the audit trail's integrity check. The Overview and Mismatches pages show these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import streamlit as st

from pages.ui import actions, labels, widgets
from services.authz import SyncBusy
from services.core.errors import DomainError

if TYPE_CHECKING:
    from services.core.audit import ChainWatch
    from services.core.context import Services

SEVERITY_COLORS = {"high": "red", "medium": "orange", "low": "gray"}
SEVERITY_HEX = {"high": "#dc2626", "medium": "#f59e0b", "low": "#94a3b8"}


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
            f"**Synced {labels.ago(svc, last)}** ({labels.venue(svc, last)}), more than "
            f"{svc.settings.sync_stale_minutes} min ago: what is shown may be out of date. {todo}, or check that the "
            "worker is running.",
            icon=":material/sync_problem:",
        )
    else:
        st.markdown(f":green[:material/check_circle:] **Synced {labels.ago(svc, last)}** · {labels.venue(svc, last)}")
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


def sync_and_reconcile() -> SyncOutcome | None:
    """Sync Stripe and the calendars, then reconcile, with a progress bar; None (and a message) when it could not
    run. Both the Overview's Sync now and the Mismatches page after a fix use it."""
    bar, report_to = widgets.progress_bar("Syncing: Stripe")
    try:
        cycle = actions.desk().sync_and_reconcile(progress=report_to)
    except SyncBusy:
        bar.empty()
        st.info(
            "Another sync is running right now (the worker or a colleague). What you see is from the last one; "
            "try again in a minute.",
            icon=":material/hourglass_top:",
        )
        return None
    except DomainError as exc:
        bar.empty()
        actions.show_error(exc, doing="Sync")
        return None
    except Exception:
        bar.empty()
        actions.unexpected("Sync")
        return None
    bar.empty()
    report, run = cycle.sync, cycle.run
    return SyncOutcome(report.line(), list(report.errors), run.opened, run.resolved, run.open_total)


def audit_indicator(svc: Services) -> None:
    """The audit trail's integrity: each row is chained to the one before by a hash (services/core/audit.py); an edited
    or deleted row breaks the chain, and this says which. The check runs in the background (audit.watch_chain): this
    shows its last result and when it was checked, and never waits for a walk."""
    from services.core import audit

    watch = audit.watch_chain(svc)
    watch.nudge()  # the rows written since the last check, for the next view
    report = watch.latest()
    if watch.failed:  # what the check before it found, if any, still shows below
        st.warning("The audit trail could not be checked just now; the details are in the server log.")
    if report is None:
        if not watch.failed:
            _first_check(watch)
    elif report.ok:
        st.caption(
            f":material/verified_user: Audit trail intact · {report.rows:,} rows chained · checked "
            f"{labels.venue(svc, report.checked_at)}",
            help="Every change is recorded in an append-only audit log, each row chained to the previous one by a "
            "hash, and checked in the background: in full every 15 minutes, new rows as they come. Run "
            "`python -m services.ops.cli verify-audit` for a full check now.",
        )
    else:
        st.error(
            f"**The audit trail has been tampered with.** {report.line()} Tell an admin: rows of the audit log "
            f"were changed or deleted outside Room Desk. (Checked {labels.venue(svc, report.checked_at)}.)",
            icon=":material/gpp_bad:",
        )


@st.fragment(run_every=2)
def _first_check(watch: ChainWatch) -> None:
    """While the server's first check runs: say so, look again every 2 s (this alone reruns), and once it is done
    rerun the page, which then shows the result."""
    if watch.latest() is None and not watch.failed:
        st.caption(
            ":material/hourglass_top: Checking the audit trail… (the first check since the server started; the "
            "result shows here when it is done)"
        )
        return
    st.rerun()
