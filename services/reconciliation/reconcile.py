"""Findings from the cache: every mismatch between Stripe, the room calendars and our own records that seed 000's
incident playbooks describe, each with a stable code, a severity, a summary a manager understands and the actions
that fix it. A run loads the cache once (`cache`), runs every code's detector over it (`detectors`) and persists
what they found; it never calls the gateways.

Findings live across runs: a finding seen again stays open (or acknowledged); one no longer seen is resolved.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from models.tables import Booking, CalendarEventCache, Finding, FindingStatus, ReconcileRun
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound
from services.reconciliation.cache import CacheData, CachedEvent, copy_rows, load_cache, raw_rows
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
    data = load_cache(session, svc, now)
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
    # Reading the cache and running the detectors take a read-only snapshot (on SQLite: no write lock held while
    # the detectors run); what they found is written after, in one short transaction of set-based statements.
    with svc.read_session() as s:
        found, data = detect(svc, s, now)
    unique = _unique(found, data)
    with svc.session() as s:
        _save_matches(s, data.events)
        opened, resolved = _save_findings(s, unique, now)
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


def _unique(found: list[Detected], data: CacheData) -> dict[str, Detected]:
    """The run's findings by key, the first of each key kept, each naming the booking its payment paid for."""
    unique: dict[str, Detected] = {}
    for d in found:
        key = d.key
        if key in unique:
            continue
        if d.booking_id is None and d.payment_intent in data.bookings:
            b = data.bookings[d.payment_intent]
            d.booking_id, d.booking_ref = b.id, b.reference
        unique[key] = d
    return unique


# --------------------------------------------------------------------------------------------- writing

_F = Finding.__table__  # type: ignore[attr-defined]
_LIVE = ("open", "acknowledged")
# A live finding as stored: its id and key, its content's scalar columns (`_CONTENT`), then its four JSON columns
# (`_JSON`) as one JSON array text. JSON columns keep the text they were given (json.dumps on both databases), so a
# finding seen again compares with one encode of what was detected instead of four decodes of what is stored.
_STORED = (
    "SELECT id, key, severity, summary, payment_intent, booking_id, booking_ref, room, amount_cents, "
    "'[' || CAST(dates AS TEXT) || ', ' || CAST(event_ids AS TEXT) || ', ' || CAST(actions AS TEXT) || ', ' "
    "|| CAST(details AS TEXT) || ']' "
    "FROM finding WHERE status IN ('open', 'acknowledged') ORDER BY id"  # a key twice (never, but): the last
)
_encode = json.JSONEncoder().encode  # json.dumps' own encoder, without its per-call argument handling
# What a finding says, in the order of `_STORED` and `_values`.
_CONTENT = ("severity", "summary", "payment_intent", "booking_id", "booking_ref", "room", "amount_cents")
_JSON = ("dates", "event_ids", "actions", "details")
_NEW = ("key", "code", "status", "first_seen_at", "last_seen_at", *_CONTENT, *_JSON)


def _values(d: Detected) -> tuple[Any, ...]:
    """A detected finding's content columns (`_CONTENT`, then `_JSON`)."""
    return (
        d.severity,
        d.summary[:500],
        d.payment_intent,
        d.booking_id,
        d.booking_ref,
        d.room,
        d.amount_cents,
        d.dates,
        d.event_ids,
        d.actions,
        d.details,
    )


def _save_findings(session: Session, found: dict[str, Detected], now: datetime) -> tuple[int, int]:
    """Open the new findings, rewrite the ones seen again whose content changed, resolve the ones gone and mark
    every live one seen now; returns (opened, resolved). A run over 100,000 payments may carry tens of thousands of
    findings, most of them the same as last time: they are compared in memory and written in a few statements."""
    conn = session.connection()
    current = {row[1]: (row[0], row[2:]) for row in raw_rows(session, _STORED)}
    new: list[tuple[Any, ...]] = []
    changed: list[dict[str, Any]] = []
    for key, d in found.items():
        values = _values(d)
        stored = current.get(key)
        if stored is None:
            new.append((key, d.code, "open", now, now, *values))
        elif stored[1] != (*values[:7], _encode(values[7:])):
            changed.append({"_id": stored[0], **dict(zip((*_CONTENT, *_JSON), values, strict=True))})
    gone = [{"_id": row_id} for key, (row_id, _) in current.items() if key not in found]
    by_id = _F.c.id == sa.bindparam("_id")
    if gone:
        conn.execute(_F.update().where(by_id).values(status="resolved", resolved_at=now), gone)
    if changed:
        conn.execute(_F.update().where(by_id), changed)
    if new:
        copy_rows(conn, _F, _NEW, new)
    # Seen now: every finding still live (those just opened already say so).
    conn.execute(_F.update().where(_F.c.status.in_(_LIVE), _F.c.last_seen_at != now).values(last_seen_at=now))
    return len(new), len(gone)


_BULK_MATCHES = 2000  # changed links from which a temporary table beats one UPDATE per event


def _save_matches(session: Session, events: list[CachedEvent]) -> None:
    """Save each event's link to its PaymentIntent where this run's differs from the last: one statement per event
    when a few changed; through a temporary table when many did (a first run links every event)."""
    changed = [
        (e.calendar_id, e.event_id, e.new_pi, e.new_method)
        for e in events
        if e.new_pi != e.matched_pi or e.new_method != e.match_method
    ]
    if not changed:
        return
    conn = session.connection()
    ce = CalendarEventCache.__table__  # type: ignore[attr-defined]
    if len(changed) < _BULK_MATCHES:
        conn.execute(
            ce.update()
            .where(ce.c.calendar_id == sa.bindparam("cal"), ce.c.event_id == sa.bindparam("eid"))
            .values(matched_pi=sa.bindparam("pi"), match_method=sa.bindparam("method")),
            [{"cal": cal, "eid": eid, "pi": pi, "method": method} for cal, eid, pi, method in changed],
        )
        return
    links = sa.Table(
        "reconcile_links",
        sa.MetaData(),
        sa.Column("calendar_id", sa.String(255)),
        sa.Column("event_id", sa.String(1024)),
        sa.Column("matched_pi", sa.String(64)),
        sa.Column("match_method", sa.String(16)),
        prefixes=["TEMPORARY"],
    )
    links.create(conn)
    copy_rows(conn, links, ("calendar_id", "event_id", "matched_pi", "match_method"), changed)
    conn.execute(
        ce.update()
        .where(ce.c.calendar_id == links.c.calendar_id, ce.c.event_id == links.c.event_id)
        .values(matched_pi=links.c.matched_pi, match_method=links.c.match_method)
    )
    links.drop(conn)


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
