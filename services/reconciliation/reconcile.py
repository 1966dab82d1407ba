"""Findings from the cache: every mismatch between Stripe, the room calendars and our own records that seed 000's
incident playbooks describe, each with a stable code, a severity, a summary a manager understands and the actions
that fix it. A run loads the cache once (`cache`), runs every code's detector over it (`detectors`) and persists
what they found; it never calls the gateways.

Findings live across runs: a finding seen again stays open (or acknowledged); one no longer seen is resolved.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import Booking, CalendarEventCache, Finding, FindingStatus, ReconcileRun, Severity
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound
from services.reconciliation.cache import CacheData, CachedEvent, load_cache
from services.reconciliation.detectors import DETECTORS, Detected, Snapshot

log = logging.getLogger("roomdesk.reconcile")


@dataclass
class RunReport:
    run_id: int
    open_by_code: dict[str, int]
    opened: int
    resolved: int
    seconds: float

    @property
    def open_total(self) -> int:
        return sum(self.open_by_code.values())


def detect(svc: Services, session: Session, now: datetime) -> tuple[list[Detected], CacheData]:
    """Every finding the cache shows right now: each code's detector over the one loaded cache (pure reading;
    persisting is `reconcile`'s job)."""
    data = load_cache(session, svc)
    snap = Snapshot(svc, data, now)
    return [d for detector in DETECTORS.values() for d in detector(snap)], data


# --------------------------------------------------------------------------------------------- persisting


def reconcile(svc: Services, *, actor: str = "system", now: datetime | None = None) -> RunReport:
    """Detect, then open new findings, refresh the ones still seen and resolve the ones gone. Audited."""
    started = time.perf_counter()
    now = now or svc.now()
    # A run builds a few hundred thousand short-lived rows and no reference cycles; the cyclic collector would
    # rescan the growing heap again and again (runs grew quadratically), so it pauses for the run.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _reconcile(svc, actor, now, started)
    finally:
        if gc_was_enabled:
            gc.enable()


def _reconcile(svc: Services, actor: str, now: datetime, started: float) -> RunReport:
    with svc.session() as s:
        found, data = detect(svc, s, now)
        _save_matches(s, data.events)
        current = {f.key: f for f in s.exec(select(Finding).where(col(Finding.status).in_(["open", "acknowledged"])))}
        seen: set[str] = set()
        opened = resolved = 0
        for d in found:
            if d.key in seen:
                continue
            if d.booking_id is None and d.payment_intent in data.bookings:
                b = data.bookings[d.payment_intent]
                d.booking_id, d.booking_ref = b.id, b.reference
            seen.add(d.key)
            row = current.get(d.key)
            if row is None:
                row = Finding(
                    key=d.key,
                    code=d.code,
                    severity=Severity(d.severity),
                    status=FindingStatus.OPEN,
                    first_seen_at=now,
                    last_seen_at=now,
                    summary=d.summary[:500],
                )
                s.add(row)
                opened += 1
            _fill(row, d, now)
        for key, row in current.items():
            if key not in seen:
                row.status, row.resolved_at = FindingStatus.RESOLVED, now
                resolved += 1
        s.flush()
        open_by_code: dict[str, int] = defaultdict(int)
        for code, n in s.execute(
            sa.select(col(Finding.code), sa.func.count())
            .where(col(Finding.status) == "open")
            .group_by(col(Finding.code))
        ):
            open_by_code[code] = n
        run = ReconcileRun(
            started_at=now,
            finished_at=now,
            actor=actor,
            open_by_code=dict(open_by_code),
            opened=opened,
            resolved=resolved,
        )
        s.add(run)
        s.flush()
        if opened or resolved:
            audit.record(
                s, "reconcile.run", actor=actor, at=now, opened=opened, resolved=resolved, open=dict(open_by_code)
            )
        run_id = run.id or 0
    return RunReport(run_id, dict(open_by_code), opened, resolved, time.perf_counter() - started)


def _fill(row: Finding, d: Detected, now: datetime) -> None:
    row.severity = Severity(d.severity)
    row.summary = d.summary[:500]
    row.payment_intent = d.payment_intent
    row.booking_id = d.booking_id
    row.booking_ref = d.booking_ref
    row.room = d.room
    row.dates = d.dates
    row.event_ids = d.event_ids
    row.actions = d.actions
    row.amount_cents = d.amount_cents
    row.details = d.details
    row.last_seen_at = now


def _save_matches(session: Session, events: list[CachedEvent]) -> None:
    changed = [e for e in events if (e.new_pi, e.new_method) != (e.matched_pi, e.match_method)]
    if not changed:
        return
    table = CalendarEventCache.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        table.update()
        .where(table.c.calendar_id == sa.bindparam("cal"), table.c.event_id == sa.bindparam("eid"))
        .values(matched_pi=sa.bindparam("pi"), match_method=sa.bindparam("method")),
        [{"cal": e.calendar_id, "eid": e.event_id, "pi": e.new_pi, "method": e.new_method} for e in changed],
    )


# --------------------------------------------------------------------------------------------- acknowledging


def acknowledge(svc: Services, finding_id: int, *, actor: str, note: str, now: datetime | None = None) -> Finding:
    """A person has looked at the finding and says why it may stay: it leaves the open list, with the note."""
    now = now or svc.now()
    if not note.strip():
        raise InvalidState("Write a note saying why this finding can be left as it is")
    with svc.session() as s:
        row = s.get(Finding, finding_id)
        if row is None:
            raise NotFound(f"No finding #{finding_id}")
        if row.status != "open":
            raise InvalidState(f"This finding is already {row.status}")
        row.status, row.acknowledged_by, row.acknowledged_at = FindingStatus.ACKNOWLEDGED, actor, now
        row.note = note.strip()[:1000]
        booking = s.get(Booking, row.booking_id) if row.booking_id else None
        audit.record(
            s,
            "finding.acknowledged",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=row.payment_intent,
            finding=row.key,
            note=row.note,
        )
    return row
