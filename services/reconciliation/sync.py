"""Sync Stripe and the room calendars into the local cache, incrementally.

Stripe: the first run lists PaymentIntents, charges, refunds and disputes; later runs follow the events list from the
last event seen (newest first, so nothing changed = one call). Calendars: the first run lists each room calendar and
keeps its `nextSyncToken`; later runs ask only for changes (one call per calendar when nothing changed) and start
over when Google answers 410. One sync at a time across processes: a lease row in `job_lock`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import CalendarEventCache, JobLock, StripeObjectCache, SyncState
from services.core import audit
from services.core.context import Progress, Services
from services.core.errors import DomainError, GatewayError
from services.reconciliation.cache import named_link

log = logging.getLogger("roomdesk.sync")

PI_IN_TEXT = re.compile(r"\bpi_[A-Za-z0-9]{8,}\b")
EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
STRIPE_CURSOR = "stripe:events"
LEASE = timedelta(minutes=15)


class SyncBusy(DomainError):
    """Another process is syncing right now."""


@dataclass
class SyncReport:
    calls: int = 0
    stripe_objects: int = 0
    calendar_events: int = 0
    full_resyncs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # objects we could not read: reported, never fatal

    def line(self) -> str:
        text = (
            f"{self.calls} API call(s); {self.stripe_objects} Stripe object(s) and "
            f"{self.calendar_events} calendar event(s) updated"
        )
        if self.full_resyncs:
            text += f"; full sync of {', '.join(self.full_resyncs)}"
        if self.errors:
            text += f"; {len(self.errors)} problem(s): " + "; ".join(self.errors)
        if self.skipped:
            more = f" (+{len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            text += f"; {len(self.skipped)} unreadable object(s) skipped: " + "; ".join(self.skipped[:5]) + more
        return text


# --------------------------------------------------------------------------------------------- the lock


_ACTIVE: set[str] = set()  # the job leases this process holds right now


@contextmanager
def job_lock(svc: Services, name: str, *, lease: timedelta = LEASE) -> Iterator[str]:
    """Hold the named lease for the duration of the block, or raise SyncBusy. Works the same on both databases:
    an insert-or-compare-and-set on one row. Leases run on the wall clock, never a business `now`: processes must
    agree on when a lease ran out."""
    now = datetime.now(UTC)
    here = f"{socket.gethostname()}:{os.getpid()}:"
    holder = f"{here}{id(object())}"
    # A lease this very process took and no longer holds (its release was lost with the database, e.g. a worker
    # cut off mid-sync) is ours to take back at once, not 15 minutes later.
    ours_but_stale = col(JobLock.holder).startswith(here, autoescape=True)
    if _ACTIVE:
        ours_but_stale = sa.and_(ours_but_stale, col(JobLock.holder).not_in(sorted(_ACTIVE)))
    with svc.session() as s:
        if s.get(JobLock, name) is None:
            s.add(JobLock(name=name))
            try:
                s.flush()
            except sa.exc.IntegrityError:
                s.rollback()
    with svc.session() as s:
        taken = s.execute(
            sa.update(JobLock)
            .where(col(JobLock.name) == name)
            .where(sa.or_(col(JobLock.until).is_(None), col(JobLock.until) < now, ours_but_stale))
            .values(holder=holder, until=now + lease)
        )
        if not taken.rowcount:  # type: ignore[attr-defined]
            current = s.get(JobLock, name)
            raise SyncBusy(f"A {name} is already running (started by {current.holder if current else '?'})")
    _ACTIVE.add(holder)
    try:
        yield holder
    finally:
        _ACTIVE.discard(holder)
        with svc.session() as s:
            s.execute(
                sa.update(JobLock)
                .where(col(JobLock.name) == name, col(JobLock.holder) == holder)
                .values(holder=None, until=None)
            )


# --------------------------------------------------------------------------------------------- extraction (pure)


class Unreadable(ValueError):
    """A provider object whose fields are not what the provider would send (a hand-made or damaged file)."""


# Stripe's timestamps are Unix seconds; anything outside these years is not a real one.
_TS_MIN, _TS_MAX = datetime(1970, 1, 1, tzinfo=UTC).timestamp(), datetime(2200, 1, 1, tzinfo=UTC).timestamp()
_INT_LIMIT = 2**63 - 1  # what a BIGINT column holds


def _ts(value: Any, name: str = "created") -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _TS_MIN <= value <= _TS_MAX:
        raise Unreadable(f"{name} is not a Unix timestamp")
    return datetime.fromtimestamp(value, UTC)


def _int(value: Any, name: str) -> int | None:
    """An amount in cents as Stripe sends it: a whole number (or absent)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _INT_LIMIT:
        raise Unreadable(f"{name} is not a whole number of cents")
    return value


def _storable(obj: dict[str, Any]) -> None:
    """The copy must go into a JSON column on both databases: no NaN/Infinity, no NUL, not absurdly deep."""
    try:
        text = json.dumps(obj, allow_nan=False)
    except ValueError:
        raise Unreadable("a number is NaN or infinite") from None
    except (TypeError, RecursionError) as exc:
        raise Unreadable(f"not storable JSON ({exc.__class__.__name__})") from None
    if "\\u0000" in text:
        raise Unreadable("contains a NUL character")


def stripe_columns(obj: dict[str, Any]) -> dict[str, Any]:
    """The columns the reconciler reads, pulled out of one Stripe object."""
    kind = obj.get("object")
    meta = obj.get("metadata") or {}
    if not isinstance(obj.get("id"), str) or not isinstance(meta, dict):
        raise Unreadable("no id, or metadata is not an object")
    cols: dict[str, Any] = {
        "id": obj["id"],
        "object": kind,
        "status": _clip(obj.get("status"), 32),
        "amount": _int(obj.get("amount"), "amount"),
        "currency": _clip(obj.get("currency") or None, 3),
        "created": _ts(obj.get("created")),
        "payment_intent": None,
        "amount_received": None,
        "amount_refunded": None,
        "booking_ref": None,
        "room": None,
        "booking_dates": None,
        "booking_time": None,
        "customer_email": None,
        "reason": None,
        "due_by": None,
    }
    if kind == "payment_intent":
        cols.update(
            payment_intent=obj["id"],
            amount_received=_int(obj.get("amount_received"), "amount_received"),
            booking_ref=_clip(meta.get("booking_id"), 32),
            room=_clip(meta.get("room"), 64),
            booking_dates=_clip(meta.get("booking_dates"), 500),
            booking_time=_clip(meta.get("booking_time"), 32),
            customer_email=_clip(meta.get("customer_email"), 254),
        )
    elif kind != "event":
        pi = obj.get("payment_intent")
        cols["payment_intent"] = pi if isinstance(pi, str) else pi.get("id") if isinstance(pi, dict) else None
    if kind == "event":  # kept for the booking timeline: status holds the event type
        data = obj.get("data")
        inner = (data.get("object") if isinstance(data, dict) else None) or {}
        if not isinstance(inner, dict):
            raise Unreadable("data.object is not an object")
        cols["status"] = _clip(obj.get("type"), 32)
        pi = inner.get("id") if inner.get("object") == "payment_intent" else inner.get("payment_intent")
        cols["payment_intent"] = pi if isinstance(pi, str) else None
        cols["amount"] = _int(inner.get("amount"), "amount")
    if kind == "charge":
        cols["amount_refunded"] = _int(obj.get("amount_refunded"), "amount_refunded")
        cols["amount_received"] = _int(obj.get("amount_captured", obj.get("amount")), "amount_captured")
    if kind == "refund":
        cols["reason"] = _clip(meta.get("reason") or obj.get("reason"), 500)
    if kind == "dispute":
        details = obj.get("evidence_details")
        cols["due_by"] = _ts(details.get("due_by") if isinstance(details, dict) else None, "due_by")
        cols["reason"] = _clip(obj.get("reason"), 500)
    return cols


def _clip(value: Any, n: int) -> str | None:
    return None if value is None else str(value)[:n]


def _event_time(part: Any, tz: Any) -> datetime:
    if not isinstance(part, dict):
        raise ValueError("missing")
    if part.get("dateTime"):
        dt = datetime.fromisoformat(str(part["dateTime"]).replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(UTC)
    if part.get("date"):  # an all-day event blocks the whole venue day
        return datetime.combine(date.fromisoformat(part["date"]), time(0), tzinfo=tz).astimezone(UTC)
    raise ValueError("no dateTime or date")


def event_columns(calendar_id: str, ev: dict[str, Any], tz: Any) -> dict[str, Any]:
    """The columns matching and reconciliation read, pulled out of one Google Calendar event."""
    private = ((ev.get("extendedProperties") or {}).get("private")) or {}
    description = str(ev.get("description") or "")
    pi_match = PI_IN_TEXT.search(description)
    email_match = EMAIL_IN_TEXT.search(description)
    cols: dict[str, Any] = {
        "calendar_id": calendar_id,
        "event_id": str(ev.get("id", ""))[:1024],
        "status": str(ev.get("status") or "confirmed")[:16],
        "summary": str(ev.get("summary") or "")[:1000],
        "booking_id": _clip(private.get("booking_id"), 32),
        "payment_intent": _clip(private.get("payment_intent"), 64),
        "booking_date": _clip(private.get("booking_date"), 10),
        "description_pi": pi_match.group(0)[:64] if pi_match else None,
        "description_email": email_match.group(0).lower()[:254] if email_match else None,
        "transparent": ev.get("transparency") == "transparent",
        "unparseable": None,
        "starts_at": None,
        "ends_at": None,
        "updated": None,
    }
    if cols["status"] != "cancelled":
        try:
            cols["starts_at"] = _event_time(ev.get("start"), tz)
            cols["ends_at"] = _event_time(ev.get("end"), tz)
            if cols["ends_at"] <= cols["starts_at"]:
                raise ValueError("ends before it starts")
        except (ValueError, TypeError, OverflowError) as exc:
            cols["starts_at"] = cols["ends_at"] = None
            cols["unparseable"] = f"start/end unreadable ({exc})"[:300]
    try:
        if ev.get("updated"):
            cols["updated"] = datetime.fromisoformat(str(ev["updated"]).replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    return cols


# --------------------------------------------------------------------------------------------- upserts


def check_stripe_object(obj: Any) -> dict[str, Any]:
    """The cache columns of a Stripe object the cache can hold; raises Unreadable (saying why) for one it cannot."""
    if not isinstance(obj, dict):
        raise Unreadable("not an object")
    _storable(obj)
    return stripe_columns(obj)


def _upsert_stripe(session: Session, obj: Any, now: datetime, report: SyncReport | None = None) -> bool:
    """Copy one Stripe object into the cache; one we cannot read is skipped and reported (False), so a damaged
    object never stops a sync, a reconciliation or the worker."""
    try:
        cols = check_stripe_object(obj)
    except Unreadable as exc:
        name = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else "?"
        log.warning("sync: skipped Stripe object %s: %s", str(name)[:80], exc)
        if report is not None:
            report.skipped.append(f"{str(name)[:80]}: {exc}")
        return False
    row = session.get(StripeObjectCache, cols["id"])
    if row is None:
        row = StripeObjectCache(id=cols["id"], object=cols["object"], data={}, synced_at=now)
        session.add(row)
    for k, v in cols.items():
        setattr(row, k, v)
    row.data = obj
    row.synced_at = now
    return True


def _upsert_event(session: Session, calendar_id: str, ev: dict[str, Any], tz: Any, now: datetime) -> None:
    cols = event_columns(calendar_id, ev, tz)
    if not cols["event_id"]:
        return
    row = session.get(CalendarEventCache, (calendar_id, cols["event_id"]))
    if row is None:
        row = CalendarEventCache(calendar_id=calendar_id, event_id=cols["event_id"], data={}, synced_at=now)
        session.add(row)
    for k, v in cols.items():
        setattr(row, k, v)
    if row.matched_pi is None and row.match_method is None and cols["status"] != "cancelled":
        # The link a reconciliation run makes for an event naming its payment, written with the event: a first run
        # after a full sync then has only the links it concludes otherwise to write (it corrects every one).
        row.matched_pi, row.match_method = named_link(cols["payment_intent"], cols["description_pi"])
    row.data = ev
    row.synced_at = now


def _state(session: Session, source: str) -> SyncState:
    st = session.get(SyncState, source)
    if st is None:
        st = SyncState(source=source)
        session.add(st)
    return st


# --------------------------------------------------------------------------------------------- stripe


def _page_all(fetch: Callable[..., dict[str, Any]], report: SyncReport, **kw: Any) -> Iterator[dict[str, Any]]:
    starting_after: str | None = None
    while True:
        report.calls += 1
        page = fetch(limit=100, starting_after=starting_after, **kw)
        data = page.get("data") or []
        yield from data
        if not page.get("has_more") or not data:
            return
        starting_after = data[-1]["id"]


def _sync_stripe(svc: Services, report: SyncReport, now: datetime) -> None:
    pay = svc.payments
    with svc.session() as s:
        cursor = _state(s, STRIPE_CURSOR).cursor
    if cursor is not None:
        fresh: list[dict[str, Any]] = []
        found = cursor == ""  # the account had no events at the full sync: every event since is new
        for ev in _page_all(pay.list_events, report):
            if ev["id"] == cursor:
                found = True
                break
            fresh.append(ev)
        if found:
            _apply_stripe_events(svc, list(reversed(fresh)), report, now)
            _refresh_changed_here(svc, report, now, {str(e.get("id")) for e in fresh})
            if fresh:
                with svc.session() as s:
                    _state(s, STRIPE_CURSOR).cursor = fresh[0]["id"]
            return
        report.full_resyncs.append("Stripe")  # the cursor fell out of Stripe's 30-day event window
    # Full: note the newest event first, so changes made while listing are picked up next time.
    report.calls += 1
    head = (pay.list_events(limit=1).get("data") or [{}])[0].get("id", "")
    count = 0
    with svc.session() as s:
        # Stripe keeps events 30 days; those still there feed the booking timeline.
        for fetch in (pay.list_payment_intents, pay.list_charges, pay.list_refunds, pay.list_disputes, pay.list_events):
            for obj in _page_all(fetch, report):
                count += _upsert_stripe(s, obj, now, report)
        st = _state(s, STRIPE_CURSOR)
        st.cursor = head
    report.stripe_objects += count


def _record_disputes(svc: Services, actor: str, now: datetime) -> None:
    """Keep the Disputes page's cases in step with the disputes sync copied (a missed webhook must not hide one).
    record_dispute changes nothing and writes no audit row for a dispute that did not change."""
    from services.finance import disputes

    with svc.session() as s:
        copies = [row.data for row in s.exec(select(StripeObjectCache).where(StripeObjectCache.object == "dispute"))]
    for dispute in copies:
        disputes.record_dispute(svc, dispute, actor=actor, now=now)


def _refresh_changed_here(svc: Services, report: SyncReport, now: datetime, _seen: set[str]) -> None:
    """Re-fetch the payments our own actions touched since the last Stripe sync (a refund or cancel made from here):
    the events list may not carry every change (charge.refund.updated arrives late; some Stripe-compatible servers
    send no refund events), and a fix must show as fixed on the next run. Costs nothing when nothing changed here."""
    from models.tables import Amendment, Booking

    with svc.session() as s:
        since = _state(s, STRIPE_CURSOR).last_ok_at
        if since is None:
            return
        touched = list(
            s.exec(
                select(Booking.id, Booking.payment_intent_id).where(
                    col(Booking.updated_at) > since, col(Booking.payment_intent_id).is_not(None)
                )
            )
        )
        pis = [pi for _, pi in touched if pi]
        # A booking paid by more than one PaymentIntent (changes that cost more) is refunded on each of them; a
        # change's own payment moves (paid, cancelled, refunded) without the booking row changing.
        ids = [booking_id for booking_id, _ in touched]
        changed = s.exec(
            select(Amendment.payment_intent_id).where(
                col(Amendment.payment_intent_id).is_not(None),
                sa.or_(col(Amendment.booking_id).in_(ids), col(Amendment.updated_at) > since),
            )
        )
        pis += sorted({pi for pi in changed if pi} - set(pis))
    for pi in pis:
        report.calls += 1
        fresh = svc.payments.retrieve_payment_intent(pi)
        charge = fresh.get("latest_charge")
        with svc.session() as s:
            copy = {**fresh, "latest_charge": charge.get("id") if isinstance(charge, dict) else charge}
            _upsert_stripe(s, copy, now, report)
            if isinstance(charge, dict):
                _upsert_stripe(s, charge, now, report)
            for refund in _page_all(svc.payments.list_refunds, report, payment_intent_id=pi):
                report.stripe_objects += _upsert_stripe(s, refund, now, report)
        report.stripe_objects += 1


def _apply_stripe_events(svc: Services, events: list[dict[str, Any]], report: SyncReport, now: datetime) -> None:
    refetch: set[str] = set()
    with svc.session() as s:
        for ev in events:
            if not _upsert_stripe(s, ev, now, report):
                continue
            obj = (ev.get("data") or {}).get("object") or {}
            if obj.get("object") in ("payment_intent", "charge", "refund", "dispute") and obj.get("id"):
                report.stripe_objects += _upsert_stripe(s, obj, now, report)
            if ev.get("type") in ("charge.refunded", "charge.refund.updated") and obj.get("payment_intent"):
                refetch.add(str(obj["payment_intent"]))
    for pi in sorted(refetch):  # refund objects are not in a charge event: ask for this payment's refunds
        with svc.session() as s:
            for refund in _page_all(svc.payments.list_refunds, report, payment_intent_id=pi):
                report.stripe_objects += _upsert_stripe(s, refund, now, report)


# --------------------------------------------------------------------------------------------- calendars


def _sync_calendar(svc: Services, calendar_id: str, report: SyncReport, now: datetime) -> None:
    source = f"calendar:{calendar_id}"
    tz = svc.settings.tz
    with svc.session() as s:
        token = _state(s, source).cursor
    if token:
        try:
            changed, new_token = _list_calendar(svc, calendar_id, report, sync_token=token)
        except GatewayError as exc:
            if exc.status != 410:
                raise
            token = None
            report.full_resyncs.append(calendar_id)
        else:
            with svc.session() as s:
                for ev in changed:
                    _upsert_event(s, calendar_id, ev, tz, now)
                _state(s, source).cursor = new_token
            report.calendar_events += len(changed)
            return
    items, new_token = _list_calendar(svc, calendar_id, report, sync_token=None)
    seen = {str(ev.get("id")) for ev in items}
    with svc.session() as s:
        for ev in items:
            _upsert_event(s, calendar_id, ev, tz, now)
        # A full listing omits deleted events: whatever the cache still holds beyond it is gone.
        s.execute(
            sa.update(CalendarEventCache)
            .where(col(CalendarEventCache.calendar_id) == calendar_id)
            .where(col(CalendarEventCache.event_id).not_in(seen) if seen else sa.true())
            .where(col(CalendarEventCache.status) != "cancelled")
            .values(status="cancelled", synced_at=now)
        )
        _state(s, source).cursor = new_token
    report.calendar_events += len(items)


def _list_calendar(
    svc: Services, calendar_id: str, report: SyncReport, *, sync_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    items: list[dict[str, Any]] = []
    page_token: str | None = None
    while True:
        report.calls += 1
        page = svc.calendar.list_events(calendar_id, sync_token=sync_token, page_token=page_token)
        items.extend(page.get("items") or [])
        page_token = page.get("nextPageToken")
        if not page_token:
            return items, page.get("nextSyncToken")


# --------------------------------------------------------------------------------------------- entry point

# What a listing raises on objects no provider would send; a database fault is none of these and still stops the run.
_DAMAGED = (ValueError, TypeError, KeyError, OverflowError, RecursionError)


def sync(
    svc: Services, *, actor: str = "system", now: datetime | None = None, progress: Progress | None = None
) -> SyncReport:
    """Bring the cache up to date with Stripe and every room calendar. Raises SyncBusy if another sync runs."""
    now = now or svc.now()
    progress = progress or (lambda _f, _m: None)
    report = SyncReport()
    calendars = [r.calendar_id for r in svc.catalogue.rooms]
    with job_lock(svc, "sync"):
        steps = 1 + len(calendars)
        progress(0.0, "Stripe")
        try:
            _sync_stripe(svc, report, now)
            _mark(svc, STRIPE_CURSOR, now, None)
            _record_disputes(svc, actor, now)
        except GatewayError as exc:
            report.errors.append(f"Stripe: {exc.message}")
            _mark(svc, STRIPE_CURSOR, now, exc.message)
        except _DAMAGED as exc:
            # Data the gateway itself could not list (a damaged sandbox object): the calendars still sync.
            message = f"unreadable data ({exc.__class__.__name__})"
            log.warning("sync: Stripe: %s", message)
            report.errors.append(f"Stripe: {message}")
            _mark(svc, STRIPE_CURSOR, now, message)
        for i, calendar_id in enumerate(calendars, start=1):
            room = svc.catalogue.room_by_calendar(calendar_id)
            progress(i / steps, room.name if room else calendar_id)
            try:
                _sync_calendar(svc, calendar_id, report, now)
                _mark(svc, f"calendar:{calendar_id}", now, None)
            except GatewayError as exc:
                report.errors.append(f"{room.name if room else calendar_id}: {exc.message}")
                _mark(svc, f"calendar:{calendar_id}", now, exc.message)
            except _DAMAGED as exc:
                message = f"unreadable data ({exc.__class__.__name__})"
                log.warning("sync: %s: %s", calendar_id, message)
                report.errors.append(f"{room.name if room else calendar_id}: {message}")
                _mark(svc, f"calendar:{calendar_id}", now, message)
        with svc.session() as s:
            audit.record(
                s,
                "sync.completed",
                actor=actor,
                at=now,
                calls=report.calls,
                stripe_objects=report.stripe_objects,
                calendar_events=report.calendar_events,
                full=report.full_resyncs,
                errors=report.errors,
            )
        progress(1.0, report.line())
    log.info("sync: %s", report.line())
    return report


def _mark(svc: Services, source: str, now: datetime, error: str | None) -> None:
    with svc.session() as s:
        st = _state(s, source)
        st.last_run_at = now
        if error is None:
            st.last_ok_at = now
        st.last_error = error[:500] if error else None
