"""The cache as one reconciliation run reads it: payments, refunds, disputes and calendar events from the last sync,
with the booking rows they are checked against, every event linked to its PaymentIntent. Narrow columns, read once
per run and shared by every detector; never the gateways."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import (
    Amendment,
    Booking,
    BookingInvoice,
    BookingLeg,
    CalendarEventCache,
    DamageDeposit,
    EmailOutbox,
    InvoiceState,
    RefundOverride,
    RefundRecord,
    RoomBlock,
    StripeObjectCache,
)
from services.booking.blocks import BLOCK_PROPERTY
from services.core.context import Services
from services.finance.deposit_queries import failed_hold_rows

# Table columns for the wide, read-only selects of a run (typed as SQL columns, not model attributes).
_SO = StripeObjectCache.__table__.c  # type: ignore[attr-defined]
_EO = EmailOutbox.__table__.c  # type: ignore[attr-defined]
_CE = CalendarEventCache.__table__.c  # type: ignore[attr-defined]
_RB = RoomBlock.__table__.c  # type: ignore[attr-defined]


@dataclass(slots=True)
class CachedPayment:
    """A PaymentIntent with its booking metadata read; `problem` says why it is not a readable room booking."""

    id: str
    status: str | None
    amount: int
    received: int
    currency: str
    booking_ref: str | None
    room: str | None
    email: str | None
    stored_created: Any  # as the database gives it: read (`created`) only for the few payments a detector times
    refunded: int = 0
    charge_created: datetime | None = None
    dates: list[date] = field(default_factory=list)
    start: time | None = None
    end: time | None = None
    problem: str | None = None
    day_set: frozenset[date] = frozenset()  # `dates` as a set, shared like them (read-only)
    events: list[CachedEvent] | None = None  # the live events linked to it, by time (`_match`); None: not one

    @property
    def created(self) -> datetime | None:
        return _fast_ts(self.stored_created)


@dataclass(slots=True)
class CachedEvent:
    """A live calendar event; `new_pi` / `new_method` are this run's match, `matched_pi` / `match_method` the
    last run's (saved again only when they differ)."""

    calendar_id: str
    event_id: str
    starts_at: datetime | None
    ends_at: datetime | None
    booking_ref: str | None
    pi: str | None
    description_pi: str | None
    email: str | None
    transparent: bool
    unparseable: str | None
    summary: str
    matched_pi: str | None
    match_method: str | None
    new_pi: str | None = None
    new_method: str | None = None
    day: date | None = None  # venue-local start date and times, computed once on load
    t0: time | None = None
    t1: time | None = None
    block: str | None = None  # the RoomBlock its private property roomdesk_block names (the venue's own event)


class CachedRefund(NamedTuple):
    id: str
    amount: int
    created: datetime | None
    reason: str | None


class CachedDispute(NamedTuple):
    id: str
    payment_intent: str | None
    status: str | None
    due_by: datetime | None
    amount: int | None
    reason: str | None


@dataclass
class CacheData:
    """Everything one run reads, keyed the way the detectors look things up."""

    pis: dict[str, CachedPayment]
    refunds: dict[str, list[CachedRefund]]  # by PaymentIntent; succeeded or pending only
    disputes: list[CachedDispute]
    events: list[CachedEvent]
    bookings: dict[str, Booking]  # by its own (first) PaymentIntent
    changes: dict[str, Amendment]  # changes to a booking that had a PaymentIntent of their own, by that PaymentIntent
    by_id: dict[int, Booking]  # the same bookings, by id
    legs: dict[int, list[BookingLeg]]  # by booking id
    records: dict[str, RefundRecord]  # our refund ledger, by Stripe refund id
    approved: set[tuple[int, int | None, frozenset[int]]]  # executed overrides: (booking id, cents, leg ids)
    told: set[tuple[int | None, str]]  # emails sent: (booking id, kind)
    # The whole metadata of the old system's payments (no booking of ours) in rooms with an extras form: the extras
    # are only there. Read for those few payments alone; every other payment is read from its narrow columns.
    legacy_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    blocks: dict[str, str] = field(default_factory=dict)  # every room block: id → its state (active, released)
    # Bookings held on an unpaid invoice, with the invoice (they have no PaymentIntent yet).
    open_invoices: list[tuple[BookingInvoice, Booking]] = field(default_factory=list)
    # Damage deposits whose card hold failed, with their booking (services.finance.deposits).
    failed_deposits: list[tuple[DamageDeposit, Booking]] = field(default_factory=list)
    # The live events no payment is behind (after matching), in the order of `events`: the few the detectors of
    # hand-made and orphaned events look at.
    unpaid: list[CachedEvent] = field(default_factory=list)


def load_cache(session: Session, svc: Services, now: datetime | None = None) -> CacheData:
    """Read the cache and the booking tables once, and link every event to its PaymentIntent (`now`: the run's time,
    which decides whose days are still ahead)."""
    data, unlinked = _load(session, svc, now or svc.now())
    _match(data, svc, unlinked)
    data.unpaid = [ev for ev in unlinked if not ev.new_pi]
    return data


# --------------------------------------------------------------------------------------------- reading


def raw_rows(session: Session, sql: str) -> list[tuple[Any, ...]]:
    """Rows straight from the driver: the big reads of a run skip SQLAlchemy's per-row processing."""
    dbapi = session.connection().connection
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def copy_rows(conn: sa.Connection, table: sa.Table, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Many rows into a table at the driver's speed (COPY on PostgreSQL, executemany on SQLite): each value is
    converted by its column's type as SQLAlchemy would, without SQLAlchemy's per-row statement handling."""
    dialect = conn.dialect
    processors = [
        (i, p) for i, n in enumerate(names) if (p := table.c[n].type.dialect_impl(dialect).bind_processor(dialect))
    ]
    if processors:
        converted: list[list[Any]] = []
        last: dict[int, tuple[Any, Any]] = {}  # by column: the value before and after, of the row before
        for row in rows:
            values = list(row)
            for i, process in processors:
                before = values[i]
                seen = last.get(i)
                if seen is not None and seen[0] is before:  # the same object (a run's time): converted once
                    values[i] = seen[1]
                else:
                    values[i] = process(before)
                    last[i] = (before, values[i])
            converted.append(values)
        rows = converted
    columns = ", ".join(names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect.name == "postgresql":
            with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' for _ in names)})", rows)
    finally:
        cursor.close()


_Span = tuple[datetime | None, datetime | None, date | None, time | None, time | None]


def _span(starts: Any, ends: Any, tz: tzinfo) -> _Span:
    """A stored event's start and end: the UTC instants, then (when both are there) its venue-local start date and
    start and end times of day."""
    s, e = _fast_ts(starts), _fast_ts(ends)
    if s is None or e is None:
        return s, e, None, None, None
    local = s.astimezone(tz)
    return s, e, local.date(), local.time(), e.astimezone(tz).time()


def _utc_text(session: Session, column: str) -> str:
    """A timestamp column, for the big reads, as the naive UTC text SQLite stores: from PostgreSQL the driver would
    build a datetime in the session's time zone for every row (the ISO DateStyle it requires gives this text)."""
    if session.connection().dialect.name == "postgresql":
        return f"CAST({column} AT TIME ZONE 'UTC' AS TEXT)"
    return column


def _fast_ts(value: Any) -> datetime | None:
    """Read a stored UTC timestamp without SQLAlchemy's per-row processors (the hot path of a run): the naive UTC
    text SQLite stores (or `_utc_text` reads from PostgreSQL), or a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")  # stored as naive UTC text; 7x faster than .replace()
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")


_DATES_MEMO: dict[str, list[date]] = {}
_TIME_MEMO: dict[str, tuple[time, time]] = {}


def _dates(text: str) -> list[date]:
    """The days a `booking_dates` value names, sorted and without repeats. Many payments name the same days: the
    answer is shared between them (read-only, like every list a run loads)."""
    hit = _DATES_MEMO.get(text)
    if hit is None:
        hit = sorted({date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()})
        if not hit:
            raise ValueError("no booking_dates")
        if len(_DATES_MEMO) > 50_000:
            _DATES_MEMO.clear()
        _DATES_MEMO[text] = hit
    return hit


def _time_range(text: str) -> tuple[time, time]:
    hit = _TIME_MEMO.get(text)
    if hit is None:
        start_s, end_s = text.split("-")
        hit = (time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip()))
        if len(_TIME_MEMO) < 10_000:
            _TIME_MEMO[text] = hit
    return hit


_Meta = tuple[list[date], time | None, time | None, str | None, frozenset[date]]
_META_MEMO: dict[tuple[str | None, str | None], _Meta] = {}


def _meta(dates_raw: str | None, time_raw: str | None) -> _Meta:
    """The days, times and problem (if any) a payment's `booking_dates` and `booking_time` say. Payments share them
    (every room and slot of a day): each pair is read once, the answer shared (read-only, like every list a run
    loads)."""
    key = (dates_raw, time_raw)
    hit = _META_MEMO.get(key)
    if hit is None:
        days: list[date] = []
        start = end = None
        problem = None
        try:
            days = _dates(dates_raw or "")
            start, end = _time_range(time_raw or "")
            if end <= start:
                raise ValueError("booking_time ends before it starts")
        except ValueError as exc:
            problem = f"metadata unreadable: {exc}"
        hit = (days, start, end, problem, frozenset(days))
        if len(_META_MEMO) > 50_000:
            _META_MEMO.clear()
        _META_MEMO[key] = hit
    return hit


def _read_from_bookings(
    pis: dict[str, CachedPayment], bookings: dict[str, Booking], legs: dict[int, list[BookingLeg]]
) -> None:
    """A payment Stripe made for one of our bookings without our metadata — the PaymentIntent that paid an invoice
    carries none of the invoice's — is read from the booking it paid (room, days, times, customer), not taken for
    a payment that is not a booking."""
    for pi_id, b in bookings.items():
        p = pis.get(pi_id)
        if p is None or p.problem != "not a booking" or b.id is None:
            continue
        p.booking_ref, p.room, p.email = b.reference, b.room_slug, b.customer_email
        p.dates = sorted({leg.day for leg in legs.get(b.id, [])})
        p.day_set = frozenset(p.dates)
        p.start, p.end = time.fromisoformat(b.start_time), time.fromisoformat(b.end_time)
        p.problem = None if p.dates else "metadata unreadable: the booking has no days"


def _load(session: Session, svc: Services, now: datetime) -> tuple[CacheData, list[CachedEvent]]:
    rooms = {r.slug for r in svc.catalogue.rooms}
    pis: dict[str, CachedPayment] = {}
    pi_rows = raw_rows(
        session,
        "SELECT id, status, amount, amount_received, currency, booking_ref, room, booking_dates, booking_time, "
        f"customer_email, {_utc_text(session, 'created')} FROM stripe_object WHERE object = 'payment_intent'",
    )
    # A change that cost more was paid by a PaymentIntent of its own: its metadata names the booking and the room, not
    # the days (the booking's days are its legs), so it is never read as a booking of its own.
    changes = {
        a.payment_intent_id: a
        for a in session.exec(select(Amendment).where(col(Amendment.payment_intent_id).is_not(None)))
        if a.payment_intent_id
    }
    none: _Meta = ([], None, None, None, frozenset())
    not_a_booking: _Meta = ([], None, None, "not a booking", frozenset())
    for pi_id, status, amount, received, currency, ref, room, dates, times, email, created in pi_rows:
        # A payment with none of the booking metadata is not a room booking and is left alone.
        if pi_id in changes:
            meta = none
        elif not (room or dates or times or ref):
            meta = not_a_booking
        elif room not in rooms:
            meta = ([], None, None, f"metadata unreadable: unknown room {room!r}", frozenset())
        else:
            meta = _META_MEMO.get((dates, times)) or _meta(dates, times)
        pis[pi_id] = CachedPayment(
            pi_id,
            status,
            amount or 0,
            received or 0,
            currency.upper() if currency else "",
            ref,
            room,
            email.lower() if email else None,
            created,
            0,
            None,
            meta[0] if meta[0] else [],
            meta[1],
            meta[2],
            meta[3],
            meta[4],
        )
    for pi_id, refunded, created in session.execute(
        sa.select(_SO.payment_intent, _SO.amount_refunded, _SO.created).where(_SO.object == "charge")
    ):
        if pi_id in pis:
            pis[pi_id].refunded = max(pis[pi_id].refunded, refunded or 0)
            pis[pi_id].charge_created = created
    refunds: dict[str, list[CachedRefund]] = defaultdict(list)
    for rid, pi_id, amount, created, reason, status in session.execute(
        sa.select(
            _SO.id,
            _SO.payment_intent,
            _SO.amount,
            _SO.created,
            _SO.reason,
            _SO.status,
        ).where(_SO.object == "refund")
    ):
        if status in (None, "succeeded", "pending"):
            refunds[pi_id].append(CachedRefund(rid, amount or 0, created, reason))
    for pi_id, items in refunds.items():  # a refund list may be fresher than its charge
        if pi_id in pis:
            pis[pi_id].refunded = max(pis[pi_id].refunded, sum(r.amount for r in items))
    disputes = [
        CachedDispute(*row)
        for row in session.execute(
            sa.select(
                _SO.id,
                _SO.payment_intent,
                _SO.status,
                _SO.due_by,
                _SO.amount,
                _SO.reason,
            ).where(_SO.object == "dispute")
        )
    ]
    tz = svc.settings.tz
    events = []
    rows = raw_rows(
        session,
        f"SELECT calendar_id, event_id, {_utc_text(session, 'starts_at')}, {_utc_text(session, 'ends_at')}, "
        "booking_id, payment_intent, description_pi, description_email, transparent, unparseable, summary, "
        "matched_pi, match_method FROM calendar_event WHERE status != 'cancelled'",
    )
    # Events share their times (every room, every day at the same hours): each stored start and end is read and put
    # in the venue's time zone once per run. An event naming a payment we have by its id is linked to it here, in
    # the one pass over the events; `_match` links the rest (`unlinked`).
    spans: dict[tuple[Any, Any], _Span] = {}
    unlinked: list[CachedEvent] = []
    for cal, eid, starts, ends, ref, pi, desc_pi, email, transparent, unparseable, summary, m_pi, m_how in rows:
        span = spans.get((starts, ends))
        if span is None:
            span = spans[(starts, ends)] = _span(starts, ends, tz)
        paid = pis.get(pi) if pi else None
        ev = CachedEvent(
            cal,
            eid,
            span[0],
            span[1],
            ref,
            pi,
            desc_pi,
            email,
            bool(transparent),
            unparseable,
            summary,
            m_pi,
            m_how,
            pi if paid else None,
            "private" if paid else None,
            span[2],
            span[3],
            span[4],
        )
        events.append(ev)
        if paid is None:
            unlinked.append(ev)
        elif paid.events is None:
            paid.events = [ev]
        else:
            paid.events.append(ev)
    _read_blocks(session, events)
    bookings = {
        b.payment_intent_id: b
        for b in session.exec(select(Booking).where(col(Booking.payment_intent_id).is_not(None)))
        if b.payment_intent_id
    }
    legs: dict[int, list[BookingLeg]] = defaultdict(list)
    for leg in session.exec(select(BookingLeg)):
        legs[leg.booking_id].append(leg)
    _read_from_bookings(pis, bookings, legs)
    records = {r.refund_id: r for r in session.exec(select(RefundRecord))}
    # Refunds above the policy that a manager and a finance person approved (services/finance/overrides.py): the
    # difference from the policy's quote is intended, not a mismatch.
    approved = {
        (o.booking_id, o.refunded_cents, frozenset(o.leg_ids))
        for o in session.exec(select(RefundOverride).where(RefundOverride.status == "executed"))
    }
    told = {
        (bid, kind) for bid, kind in session.execute(sa.select(_EO.booking_id, _EO.kind).where(_EO.status == "sent"))
    }
    data = CacheData(
        legacy_meta=_legacy_metadata(session, svc, pis, bookings, changes, now),
        blocks={str(i): str(state) for i, state in session.execute(sa.select(_RB.id, _RB.state))},
        open_invoices=[
            (inv, b)
            for inv, b in session.exec(
                select(BookingInvoice, Booking)
                .join(Booking, col(Booking.id) == col(BookingInvoice.booking_id))
                .where(BookingInvoice.state == InvoiceState.OPEN)
                .order_by(col(BookingInvoice.due_at))
            )
        ],
        failed_deposits=failed_hold_rows(session),
        pis=pis,
        refunds=refunds,
        disputes=disputes,
        events=events,
        bookings=bookings,
        changes=changes,
        by_id={b.id: b for b in bookings.values() if b.id is not None},
        legs=legs,
        records=records,
        approved=approved,
        told=told,
    )
    return data, unlinked


def _read_blocks(session: Session, events: list[CachedEvent]) -> None:
    """Note the block each of the venue's own block events names (private property roomdesk_block). Only events
    that name no payment can be one, so only their documents are read."""
    rows = session.execute(
        sa.select(_CE.calendar_id, _CE.event_id, _CE.data).where(
            _CE.status != "cancelled",
            _CE.payment_intent.is_(None),
            _CE.booking_id.is_(None),
            _CE.description_pi.is_(None),
        )
    )
    found: dict[tuple[str, str], str] = {}
    for calendar_id, event_id, data in rows:
        props = data.get("extendedProperties") if isinstance(data, dict) else None
        private = props.get("private") if isinstance(props, dict) else None
        block = private.get(BLOCK_PROPERTY) if isinstance(private, dict) else None
        if block:
            found[(calendar_id, event_id)] = str(block)[:64]
    if found:
        for ev in events:
            ev.block = found.get((ev.calendar_id, ev.event_id))


def _legacy_metadata(
    session: Session,
    svc: Services,
    pis: dict[str, CachedPayment],
    bookings: dict[str, Booking],
    changes: dict[str, Amendment],
    now: datetime,
) -> dict[str, dict[str, str]]:
    """The metadata of readable payments with no booking of ours in a room that asks extras, by PaymentIntent."""
    rooms = {r.slug for r in svc.catalogue.rooms if r.extras}
    ours = bookings.keys() | changes.keys()
    # Extras matter for days still ahead only (a day before yesterday's UTC date is over in any timezone).
    since = now.date() - timedelta(days=1)
    wanted = [
        p.id
        for p in pis.values()
        if p.room in rooms and p.status == "succeeded" and not p.problem and p.dates and p.dates[-1] >= since
    ]
    wanted = [pi_id for pi_id in wanted if pi_id not in ours]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
        # By primary key alone: with the kind of object in the WHERE clause too, SQLite walks that index instead,
        # every payment once per chunk.
        for pi_id, kind, data in session.execute(
            sa.select(_SO.id, _SO.object, _SO.data).where(_SO.id.in_(wanted[i : i + 500]))
        ):
            if kind != "payment_intent":
                continue
            meta = (data or {}).get("metadata") if isinstance(data, dict) else None
            if isinstance(meta, dict):
                out[pi_id] = {str(k): str(v) for k, v in meta.items() if isinstance(v, str | int | float)}
    return out


# --------------------------------------------------------------------------------------------- matching


def _match(data: CacheData, svc: Services, unlinked: list[CachedEvent]) -> None:
    """Link each event `_load` left unlinked to its PaymentIntent (it linked those naming one we have in their
    private properties): by the booking reference in those, then a pi_ id in the description (events the old system
    made), then room + date + time + customer email; and put each payment's events in order (`CachedPayment.events`)."""
    pis = data.pis
    by_ref: dict[str, str] | None = None  # built for the first event that needs it (most name their payment)
    unnamed = False  # some event names no payment at all: only then is matching by slot worth its index
    waiting: list[CachedEvent] = []  # events only a slot can match
    linked: list[CachedEvent] = []
    for ev in unlinked:
        if ev.booking_ref and ev.booking_ref in (by_ref := by_ref if by_ref is not None else _by_ref(data)):
            ev.new_pi, ev.new_method = by_ref[ev.booking_ref], "private"
            linked.append(ev)
        elif ev.description_pi and ev.description_pi in pis:
            ev.new_pi, ev.new_method = ev.description_pi, "description"
            linked.append(ev)
        elif ev.email:
            unnamed = unnamed or not (ev.pi or ev.booking_ref or ev.description_pi)
            if ev.starts_at and ev.ends_at:
                waiting.append(ev)
    if unnamed and waiting:
        tz = svc.settings.tz
        slots = _by_slot(data, svc)
        for ev in waiting:
            assert ev.starts_at and ev.ends_at and ev.email
            s, e = ev.starts_at.astimezone(tz), ev.ends_at.astimezone(tz)
            hit = slots.get((ev.calendar_id, s.date(), f"{s:%H:%M}-{e:%H:%M}", ev.email))
            if hit:
                ev.new_pi, ev.new_method = hit, "slot"
                linked.append(ev)
    for ev in linked:
        assert ev.new_pi
        p = pis[ev.new_pi]
        if p.events is None:
            p.events = [ev]
        else:
            p.events.append(ev)
    # A payment's events by time, whatever order the database returns rows in (on PostgreSQL it changes as rows are
    # rewritten): the findings that list them read the same from one run to the next. Most payments have one or two
    # events on different days: a pair is put in order without a sort.
    for p in pis.values():
        evs = p.events
        if evs is None or len(evs) == 1:
            continue
        if len(evs) == 2:
            a, b = evs
            if a.starts_at is not None and b.starts_at is not None and a.starts_at != b.starts_at:
                if b.starts_at < a.starts_at:
                    evs.reverse()
                continue
        evs.sort(key=_event_order)


def named_link(payment_intent: str | None, description_pi: str | None) -> tuple[str | None, str | None]:
    """The link `_match` gives an event that names its payment, when Stripe has that payment: by its private
    properties, else by a pi_ id in its description; (None, None) for an event that names none."""
    if payment_intent:
        return payment_intent, "private"
    if description_pi:
        return description_pi, "description"
    return None, None


def _event_order(ev: CachedEvent) -> tuple[datetime, str, str]:
    return ev.starts_at or _NO_TIME, ev.calendar_id, ev.event_id


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _by_slot(data: CacheData, svc: Services) -> dict[tuple[str, date, str, str], str]:
    """PaymentIntents by room calendar, day, times and customer email: an index over every payment's days, for the
    events the old system made without naming their payment."""
    by_slot: dict[tuple[str, date, str, str], str] = {}
    for p in data.pis.values():
        if p.problem or not p.email or p.start is None or p.end is None:
            continue
        cal = svc.catalogue.room(p.room or "").calendar_id
        for d in p.dates:
            by_slot[(cal, d, f"{p.start:%H:%M}-{p.end:%H:%M}", p.email)] = p.id
    return by_slot


def _by_ref(data: CacheData) -> dict[str, str]:
    """PaymentIntents by booking reference. A booking's reference names its own payment; a change's payment carries
    it too, but never owns its events."""
    return {p.booking_ref: p.id for p in data.pis.values() if p.booking_ref and p.id not in data.changes}
