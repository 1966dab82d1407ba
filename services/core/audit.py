"""The audit trail: one row per state change, written in the same transaction as the change.

The log is append-only (database triggers refuse UPDATE and DELETE) and hash-chained: each row stores the previous
row's hash and its own, computed on insert (models.tables._chain_audit_row). `verify_chain` walks the chain;
`chain_status` is the cached form (a full walk now and then, only the new rows in between), and `watch_chain` runs it
in a background thread once per process, so the dashboard shows the last result without ever waiting for a walk.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from models.db import read_only
from models.tables import AUDIT_GENESIS_HASH, AuditLog, Booking, audit_row_hash

if TYPE_CHECKING:
    from services.core.context import Services

log = logging.getLogger("roomdesk")


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    at: datetime,
    booking: Booking | None = None,
    payment_intent: str | None = None,
    **payload: Any,
) -> AuditLog:
    """Add an audit row (dotted action name, e.g. `booking.gate2.conflict`) and log a line carrying the booking
    reference and PaymentIntent id, so one payment's whole story can be followed in the logs."""
    pi = payment_intent or (booking.payment_intent_id if booking else None)
    row = AuditLog(
        at=at,
        actor=actor,
        action=action,
        booking_id=booking.id if booking else None,
        payment_intent=pi,
        payload=_jsonable(payload),
    )
    session.add(row)
    message = payload.get("message") or action
    log.info(
        "%s booking=%s pi=%s actor=%s",
        message,
        booking.reference if booking else "-",
        pi or "-",
        actor,
        extra={"action": action},
    )
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------------------------- chain verification

VERIFY_BATCH = 5000


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the audit chain. `head_id`/`head_hash` are the last intact row, where a later check
    can start from (and what an operator may note down elsewhere, so that removing rows at the end shows too)."""

    ok: bool
    rows: int
    seconds: float
    checked_at: datetime
    broken_id: int | None = None
    reason: str = ""
    head_id: int | None = None
    head_hash: str = AUDIT_GENESIS_HASH

    def line(self) -> str:
        if self.ok:
            head = f"head row {self.head_id} {self.head_hash[:12]}" if self.head_id is not None else "empty log"
            return f"Audit chain intact: {self.rows:,} row(s) checked in {self.seconds:.2f} s; {head}"
        return f"Audit chain BROKEN at row {self.broken_id}: {self.reason} ({self.rows:,} row(s) intact before it)"


_AUDIT: sa.Table = AuditLog.__table__  # type: ignore[attr-defined]


def verify_chain(svc: Services, *, since: tuple[int, str] | None = None, pace: float = 0.0) -> ChainReport:
    """Walk the audit log in id order and report the first row whose content or link does not match. With `since`
    (a previous report's head id and hash) only rows after it are walked, after checking that row is unchanged.
    With `pace` > 0 it rests `pace` times as long as each batch took before reading the next one (see ChainWatch)."""
    started = time.perf_counter()
    id_col = _AUDIT.c.id
    head_id, head_hash, rows = None, AUDIT_GENESIS_HASH, 0

    def report(ok: bool, broken_id: int | None = None, reason: str = "") -> ChainReport:
        return ChainReport(ok, rows, time.perf_counter() - started, svc.now(), broken_id, reason, head_id, head_hash)

    if since is not None:
        head_id, head_hash = since
        # Read-only transactions (no write lock on SQLite), in batches so a long walk never holds one snapshot long.
        with read_only(svc.engine).begin() as conn:
            stored = conn.execute(sa.select(_AUDIT.c.row_hash).where(id_col == head_id)).scalar()
        if stored != head_hash:
            why = "was changed" if stored is not None else "is missing (deleted)"
            return report(False, head_id, f"row {head_id} {why} since it was last verified")
    while True:
        query = sa.select(_AUDIT).order_by(id_col).limit(VERIFY_BATCH)
        if head_id is not None:
            query = query.where(id_col > head_id)
        batch_started = time.perf_counter()
        with read_only(svc.engine).begin() as conn:
            batch = conn.execute(query).all()
        if not batch:
            return report(True)
        for r in batch:
            content = audit_row_hash(
                at=r.at,
                actor=r.actor,
                action=r.action,
                booking_id=r.booking_id,
                payment_intent=r.payment_intent,
                payload=r.payload,
                prev_hash=r.prev_hash,
            )
            if content != r.row_hash:
                return report(False, r.id, f"row {r.id} was changed")
            if r.prev_hash != head_hash:
                if head_id is None:
                    return report(False, r.id, "chain starts wrong: the first row does not point at the start")
                return report(False, r.id, f"a row before {r.id} is missing (deleted)")
            head_id, head_hash, rows = r.id, r.row_hash, rows + 1
        if pace > 0 and len(batch) == VERIFY_BATCH:
            time.sleep((time.perf_counter() - batch_started) * pace)


_status: dict[str, tuple[float, ChainReport]] = {}
_status_lock = threading.Lock()


def chain_status(svc: Services, *, full_every_s: float = 900.0, pace: float = 0.0) -> ChainReport:
    """Per process, a full walk at most every `full_every_s` seconds and in between only the rows appended since the
    last intact head. A broken chain is reported from cache until the next full walk. (`pace`: verify_chain's.)"""
    key = svc.engine.url.render_as_string(hide_password=False)
    with _status_lock:
        cached = _status.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < full_every_s:
            last = cached[1]
            if not last.ok:
                return last
            since = (last.head_id, last.head_hash) if last.head_id is not None else None
            new = verify_chain(svc, since=since, pace=pace)
            merged = replace(new, rows=last.rows + new.rows) if new.ok else new
            _status[key] = (cached[0], merged)
            return merged
        full = verify_chain(svc, pace=pace)
        _status[key] = (now, full)
        return full


class ChainWatch:
    """The audit chain checked in a background thread (chain_status: a full walk every `full_every_s`, the rows
    appended since the last check every `every_s` or when nudged), so a page shows the last result at once instead
    of waiting seconds for a walk of years of rows.

    The walk is Python (a hash per row) and holds the GIL: it rests `pace` times as long as each batch took, so the
    pages rendered meanwhile by the same process keep most of it; a full walk takes longer and nobody waits for it."""

    def __init__(self, svc: Services, *, full_every_s: float = 900.0, every_s: float = 60.0, pace: float = 3.0):
        self.svc, self.full_every_s, self.every_s, self.pace = svc, full_every_s, every_s, pace
        self._latest: ChainReport | None = None
        self._failed = False
        self._checked = 0.0  # time.monotonic() of the last finished check
        self._asked = self._done = 0  # checks asked for / the last one served (by number)
        self._full = self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="audit-chain-watch", daemon=True)
        self._thread.start()

    def latest(self) -> ChainReport | None:
        """The last finished check's report; None until the first one has finished."""
        return self._latest

    @property
    def failed(self) -> bool:
        """The last check could not run (the details are in the log); `latest` is then the one before it."""
        return self._failed

    def nudge(self, *, min_age_s: float = 5.0) -> None:
        """Ask for a check of the rows appended since the last one, unless one finished in the last `min_age_s`
        seconds; returns at once."""
        with self._cond:
            if self._done == self._asked and time.monotonic() - self._checked >= min_age_s:
                self._asked += 1
                self._cond.notify_all()

    def check(self, *, full: bool = False, timeout: float | None = None) -> ChainReport | None:
        """Ask for a check (a full walk with `full`) and wait up to `timeout` seconds for it (tests)."""
        with self._cond:
            self._asked += 1
            self._full = self._full or full
            ticket = self._asked
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done >= ticket, timeout=timeout)
            return self._latest

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                serving, full, self._full = self._asked, self._full, False
            try:
                report: ChainReport | None = chain_status(
                    self.svc, full_every_s=0.0 if full else self.full_every_s, pace=self.pace
                )
                failed = False
            except Exception:
                log.exception("Audit chain check failed")
                report, failed = self._latest, True
            with self._cond:
                self._latest, self._failed, self._checked, self._done = report, failed, time.monotonic(), serving
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._stopping or self._asked > self._done, timeout=self.every_s)


_watches: dict[str, ChainWatch] = {}
_watches_lock = threading.Lock()


def watch_chain(svc: Services) -> ChainWatch:
    """The process's background check of this database's audit chain, started by the first caller."""
    key = svc.engine.url.render_as_string(hide_password=False)
    with _watches_lock:
        watch = _watches.get(key)
        if watch is None:
            watch = _watches[key] = ChainWatch(svc)
        return watch


def stop_watching() -> None:
    """Stop every background check and forget its results (tests, between databases)."""
    with _watches_lock:
        watches = list(_watches.values())
        _watches.clear()
    for watch in watches:
        watch.stop()
    with _status_lock:
        _status.clear()
