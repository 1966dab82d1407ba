"""One sync → reconcile cycle: bring the cache up to date with Stripe and the room calendars, then look for
mismatches in it. The worker runs one per round, `cli reconcile --sync` one on demand, the dashboard's Sync now one
per click."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core.context import Progress, Services
from services.reconciliation.reconcile import RunReport, reconcile
from services.reconciliation.sync import SyncReport, sync

# The sync's API calls are the slow part of a cycle: they fill 90 % of the progress, the reconciliation the rest.
_SYNC_SHARE = 0.9


@dataclass
class CycleReport:
    """What one cycle did: the sync's report and the reconciliation run's."""

    sync: SyncReport
    run: RunReport

    def line(self) -> str:
        """'12 API call(s); … updated; 3 open finding(s) (+1/-2)'."""
        run = self.run
        return f"{self.sync.line()}; {run.open_total} open finding(s) (+{run.opened}/-{run.resolved})"


def run_cycle(
    svc: Services, *, actor: str = "system", now: datetime | None = None, progress: Progress | None = None
) -> CycleReport:
    """Sync, then reconcile, both audited under `actor`. Raises SyncBusy (and reconciles nothing) while another
    process syncs. A sync that could not reach a source still reconciles: its errors are in the report."""
    report = progress or (lambda _f, _m: None)
    synced = sync(svc, actor=actor, now=now, progress=lambda f, m: report(min(f, 1.0) * _SYNC_SHARE, f"Syncing: {m}"))
    report(0.95, "Looking for mismatches")
    run = reconcile(svc, actor=actor, now=now)
    report(1.0, f"{run.open_total} open finding(s)")
    return CycleReport(synced, run)
