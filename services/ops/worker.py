"""The background worker: one round of the periodic jobs, run on a schedule that survives outages.

A round that fails (the database gone for a moment, a gateway down, a bug) is logged as one line and retried after
an exponential backoff; the worker never exits on its own. Each round is recorded in `worker_status` so the
Overview shows when the worker last succeeded (services.ops.health.worker_health reads it).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from models.tables import WorkerStatus
from services.core.context import Services
from services.core.errors import DomainError
from services.ops import liveness

log = logging.getLogger("roomdesk.worker")

NAME = "worker"


def run_round(svc: Services, *, actor: str = "worker") -> str:
    """One round of every periodic job; returns its summary line. Raises whatever stops the round."""
    from services.booking import advance_legs, expire_change_holds, expire_holds, repair_block_events
    from services.booking.holds import finish_paid
    from services.booking.invoices import invoice_round
    from services.finance.deposits import run_deposit_round
    from services.notify.outbox import deliver_due
    from services.notify.reminders import send_reminders
    from services.reconciliation.cycle import run_cycle
    from services.reconciliation.sync import SyncBusy

    # First: bookings paid while the process finishing them crashed are confirmed now, not when their hold runs out.
    finished = finish_paid(svc, actor=actor)
    expired = expire_holds(svc, actor=actor)
    # Changes whose hold ran out unpaid lapse; changes an outage left half made are finished.
    changes = expire_change_holds(svc, actor=actor)
    # Invoices paid or voided at Stripe whose webhook was missed are settled; those past due get their reminder.
    invoices = invoice_round(svc, actor=actor)
    advance_legs(svc, actor=actor)
    # Room blocks whose calendar events an outage kept back (or outlived their release) are put right.
    blocks = repair_block_events(svc, actor=actor)
    # Damage deposits: holds placed when due (and again before they lapse), released after the claim window.
    deposits = run_deposit_round(svc, svc.now(), actor=actor)
    reminders = send_reminders(svc, now=svc.now(), actor=actor)
    # Before the sync: a mail outage that has ended clears its "no confirmation sent" finding this round.
    mail = deliver_due(svc, now=svc.now(), actor=actor)
    line = f"paid {finished or '-'}; holds {expired or '-'}; changes {changes or '-'}; invoices {invoices or '-'}; "
    line += f"blocks {blocks or '-'}; "
    line += f"{deposits.line()}; {reminders.line()}; "
    line += f"{mail.line()}; "
    try:
        line += run_cycle(svc, actor=actor).line()
    except SyncBusy as exc:
        line += f"sync skipped: {exc.message}"
    return line


def describe_error(exc: BaseException) -> str:
    """One short line naming what went wrong, without the SQL parameters or payloads a traceback would carry
    (customer details, pay tokens)."""
    if isinstance(exc, DomainError):
        text = exc.message  # written to be shown to staff
    elif isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        # The driver's own first line ("connection refused…"); the statement and its parameters are left out, and
        # so is the DETAIL line where PostgreSQL repeats the offending values.
        first = str(exc.orig).strip().splitlines()
        return f"{exc.__class__.__name__} ({exc.orig.__class__.__name__}): {first[0] if first else ''}"[:300]
    elif isinstance(exc, sa.exc.SQLAlchemyError):
        text = "database error"
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
    return f"{exc.__class__.__name__}: {text}"[:300]


def record_round(svc: Services, at: datetime, *, summary: str = "", error: str | None = None) -> bool:
    """Note this round in worker_status. Never raises: with the database down the note is lost, not the worker."""
    try:
        with svc.session() as s:
            row = s.get(WorkerStatus, NAME)
            if row is None:
                row = WorkerStatus(name=NAME)
                s.add(row)
            row.last_round_at = at
            if error is None:
                row.last_ok_at = at
                row.failures_in_a_row = 0
                row.last_error = None
                row.summary = summary[:500]
            else:
                row.failures_in_a_row += 1
                row.last_error = error[:500]
        return True
    except Exception as exc:
        log.warning("worker status not recorded: %s", describe_error(exc))
        return False


@dataclass
class Backoff:
    """The pause before the next round: `every` after a success, doubling after each failure up to `cap`."""

    every: float
    cap: float
    failures: int = 0

    def succeeded(self) -> float:
        self.failures = 0
        return self.every

    def failed(self) -> float:
        self.failures += 1
        return min(self.every * 2**self.failures, max(self.cap, self.every))


def run(
    svc: Services,
    *,
    every: float,
    once: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
    health_port: int | None = None,
) -> int:
    """Run rounds until interrupted (or `once`, or `rounds` of them); a failed round waits longer, never stops it.
    Exit status with `once`: 0 the round succeeded, 1 it failed. With `health_port`, GET /healthz on loopback says
    whether this process's rounds succeed (services.ops.liveness)."""
    backoff = Backoff(every=every, cap=float(svc.settings.worker_backoff_max_seconds))
    # Stalled: no round finished in twice the longest pause between rounds, plus time for a slow round.
    alive = liveness.Liveness(stale_after=2 * max(every, backoff.cap) + 600)
    if health_port is not None:
        liveness.serve(alive, health_port)
    done = 0
    while True:
        # The business clock never needs the database; if even that fails, the round below fails the same way.
        try:
            at = svc.now()
        except Exception:
            at = datetime.now().astimezone()
        ok = True
        try:
            line = run_round(svc)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            ok = False
            error = describe_error(exc)
            delay = backoff.failed()
            print(
                f"{at:%Y-%m-%d %H:%M:%S} round failed ({backoff.failures} in a row, next try in {delay:g} s): {error}",
                file=sys.stderr,
                flush=True,
            )
            record_round(svc, at, error=error)
            alive.round_done(error=error)
        else:
            delay = backoff.succeeded()
            print(f"{at:%Y-%m-%d %H:%M:%S} {line}", flush=True)
            record_round(svc, at, summary=line)
            alive.round_done()
        done += 1
        if once:
            return 0 if ok else 1
        if rounds is not None and done >= rounds:
            return 0
        sleep(delay)
