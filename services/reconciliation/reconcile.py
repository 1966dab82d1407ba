"""Findings from the cache: every mismatch between Stripe, the room calendars and our own records that seed 000's
incident playbooks describe, each with a stable code, a severity, a summary a manager understands and the actions
that fix it. Runs read narrow columns from the cache and the booking tables, never the gateways.

Findings live across runs: a finding seen again stays open (or acknowledged); one no longer seen is resolved.
"""

from __future__ import annotations

import gc
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Booking,
    BookingLeg,
    CalendarEventCache,
    EmailOutbox,
    Finding,
    ReconcileRun,
    RefundOverride,
    RefundRecord,
    StripeObjectCache,
)
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound
from services.reconciliation.findings import CODES
from services.rules.availability import closure_reason
from services.rules.fmt import day_label, days_label, money
from services.rules.pricing import price
from services.rules.refunds import bands_from_snapshot, refund_for_leg

log = logging.getLogger("roomdesk.reconcile")
_days = partial(days_label, limit=4)  # a finding names at most 4 days, then '+N more'

# Table columns for the wide, read-only selects of a run (typed as SQL columns, not model attributes).
SO = StripeObjectCache.__table__.c  # type: ignore[attr-defined]
CE = CalendarEventCache.__table__.c  # type: ignore[attr-defined]
EO = EmailOutbox.__table__.c  # type: ignore[attr-defined]

OPEN_DISPUTE = {"needs_response", "warning_needs_response", "under_review", "warning_under_review"}
REFUND_TOLD_KINDS = {"auto_refund", "cancellation", "refund"}


@dataclass
class Detected:
    code: str
    subject: str  # what the finding is about (pi, event, pair…): with the code, the key across runs
    summary: str
    payment_intent: str | None = None
    booking_id: int | None = None
    booking_ref: str | None = None
    room: str | None = None
    dates: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    amount_cents: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.code}:{self.subject}"

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    @property
    def actions(self) -> list[str]:
        return list(CODES[self.code][2])


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


# --------------------------------------------------------------------------------------------- reading


@dataclass(slots=True)
class _Pi:
    id: str
    status: str | None
    amount: int
    received: int
    currency: str
    booking_ref: str | None
    room: str | None
    dates_raw: str | None
    time_raw: str | None
    email: str | None
    created: datetime | None
    refunded: int = 0
    charge_created: datetime | None = None
    dates: list[date] = field(default_factory=list)
    start: time | None = None
    end: time | None = None
    problem: str | None = None


@dataclass(slots=True)
class _Ev:
    calendar_id: str
    event_id: str
    starts_at: datetime | None
    ends_at: datetime | None
    booking_ref: str | None
    pi: str | None
    booking_date: str | None
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


def _raw(session: Session, sql: str) -> list[tuple[Any, ...]]:
    """Rows straight from the driver: the two big reads of a run skip SQLAlchemy's per-row processing."""
    dbapi = session.connection().connection
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _fast_ts(value: Any) -> datetime | None:
    """Read a stored UTC timestamp without SQLAlchemy's per-row processors (the hot path of a run): SQLite gives the
    text we wrote, PostgreSQL a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")  # stored as naive UTC text; 7x faster than .replace()
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")


_DATE_MEMO: dict[str, date] = {}
_TIME_MEMO: dict[str, tuple[time, time]] = {}


def _iso_date(text: str) -> date:
    d = _DATE_MEMO.get(text)
    if d is None:
        if len(_DATE_MEMO) > 50_000:
            _DATE_MEMO.clear()
        d = _DATE_MEMO[text] = date.fromisoformat(text)
    return d


def _time_range(text: str) -> tuple[time, time]:
    hit = _TIME_MEMO.get(text)
    if hit is None:
        start_s, end_s = text.split("-")
        hit = (time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip()))
        if len(_TIME_MEMO) < 10_000:
            _TIME_MEMO[text] = hit
    return hit


def _parse_meta(p: _Pi, rooms: set[str]) -> None:
    """Read booking metadata; a payment with none of it is not a room booking and is left alone."""
    if not (p.room or p.dates_raw or p.time_raw or p.booking_ref):
        p.problem = "not a booking"
        return
    try:
        if p.room not in rooms:
            raise ValueError(f"unknown room {p.room!r}")
        p.dates = sorted({_iso_date(d.strip()) for d in (p.dates_raw or "").split(",") if d.strip()})
        if not p.dates:
            raise ValueError("no booking_dates")
        p.start, p.end = _time_range(p.time_raw or "")
        if p.end <= p.start:
            raise ValueError("booking_time ends before it starts")
    except ValueError as exc:
        p.problem = f"metadata unreadable: {exc}"


def _load(session: Session, svc: Services) -> dict[str, Any]:
    rooms = {r.slug for r in svc.catalogue.rooms}
    pis: dict[str, _Pi] = {}
    pi_rows = _raw(
        session,
        "SELECT id, status, amount, amount_received, currency, booking_ref, room, booking_dates, booking_time, "
        "customer_email, created FROM stripe_object WHERE object = 'payment_intent'",
    )
    for row in pi_rows:
        p = _Pi(
            row[0],
            row[1],
            row[2] or 0,
            row[3] or 0,
            (row[4] or "").upper(),
            row[5],
            row[6],
            row[7],
            row[8],
            (row[9] or "").lower() or None,
            _fast_ts(row[10]),
        )
        _parse_meta(p, rooms)
        pis[p.id] = p
    for pi_id, refunded, created in session.execute(
        sa.select(SO.payment_intent, SO.amount_refunded, SO.created).where(SO.object == "charge")
    ):
        if pi_id in pis:
            pis[pi_id].refunded = max(pis[pi_id].refunded, refunded or 0)
            pis[pi_id].charge_created = created
    refunds: dict[str, list[tuple[str, int, datetime | None, str | None]]] = defaultdict(list)
    for rid, pi_id, amount, created, reason, status in session.execute(
        sa.select(
            SO.id,
            SO.payment_intent,
            SO.amount,
            SO.created,
            SO.reason,
            SO.status,
        ).where(SO.object == "refund")
    ):
        if status in (None, "succeeded", "pending"):
            refunds[pi_id].append((rid, amount or 0, created, reason))
    for pi_id, items in refunds.items():  # a refund list may be fresher than its charge
        if pi_id in pis:
            pis[pi_id].refunded = max(pis[pi_id].refunded, sum(a for _, a, _, _ in items))
    disputes = list(
        session.execute(
            sa.select(
                SO.id,
                SO.payment_intent,
                SO.status,
                SO.due_by,
                SO.amount,
                SO.reason,
            ).where(SO.object == "dispute")
        )
    )
    tz = svc.settings.tz
    events = []
    event_rows = _raw(
        session,
        "SELECT calendar_id, event_id, starts_at, ends_at, booking_id, payment_intent, booking_date, description_pi, "
        "description_email, transparent, unparseable, summary, matched_pi, match_method "
        "FROM calendar_event WHERE status != 'cancelled'",
    )
    for row in event_rows:
        ev = _Ev(*row)
        ev.transparent = bool(ev.transparent)
        ev.starts_at, ev.ends_at = _fast_ts(ev.starts_at), _fast_ts(ev.ends_at)
        if ev.starts_at is not None and ev.ends_at is not None:
            s_local, e_local = ev.starts_at.astimezone(tz), ev.ends_at.astimezone(tz)
            ev.day, ev.t0, ev.t1 = s_local.date(), s_local.time(), e_local.time()
        events.append(ev)
    bookings = {
        b.payment_intent_id: b for b in session.exec(select(Booking).where(col(Booking.payment_intent_id).is_not(None)))
    }
    legs: dict[int, list[BookingLeg]] = defaultdict(list)
    for leg in session.exec(select(BookingLeg)):
        legs[leg.booking_id].append(leg)
    records = {r.refund_id: r for r in session.exec(select(RefundRecord))}
    # Refunds above the policy that a manager and a finance person approved (services/finance/overrides.py): the
    # difference from the policy's quote is intended, not a mismatch.
    approved = {
        (o.booking_id, o.refunded_cents, frozenset(o.leg_ids))
        for o in session.exec(select(RefundOverride).where(RefundOverride.status == "executed"))
    }
    told = {(bid, kind) for bid, kind in session.execute(sa.select(EO.booking_id, EO.kind).where(EO.status == "sent"))}
    return {
        "pis": pis,
        "refunds": refunds,
        "disputes": disputes,
        "events": events,
        "bookings": bookings,
        "legs": legs,
        "records": records,
        "approved": approved,
        "told": told,
    }


# --------------------------------------------------------------------------------------------- matching


def _match(data: dict[str, Any], svc: Services) -> None:
    """Link each event to its PaymentIntent: private properties first, then a pi_ id in the description (events the
    old system made), then room + date + time + customer email."""
    pis: dict[str, _Pi] = data["pis"]
    by_ref = {p.booking_ref: p.id for p in pis.values() if p.booking_ref}
    tz = svc.settings.tz
    by_slot: dict[tuple[str, date, str, str], str] = {}
    # Matching by slot costs an index over every payment's days: build it only when some event needs it.
    if any(not (ev.pi or ev.booking_ref or ev.description_pi) and ev.email for ev in data["events"]):
        for p in pis.values():
            if p.problem or not p.email or p.start is None or p.end is None:
                continue
            cal = svc.catalogue.room(p.room or "").calendar_id
            for d in p.dates:
                by_slot[(cal, d, f"{p.start:%H:%M}-{p.end:%H:%M}", p.email)] = p.id
    for ev in data["events"]:
        if ev.pi and ev.pi in pis:
            ev.new_pi, ev.new_method = ev.pi, "private"
        elif ev.booking_ref and ev.booking_ref in by_ref:
            ev.new_pi, ev.new_method = by_ref[ev.booking_ref], "private"
        elif ev.description_pi and ev.description_pi in pis:
            ev.new_pi, ev.new_method = ev.description_pi, "description"
        elif ev.email and ev.starts_at and ev.ends_at:
            s, e = ev.starts_at.astimezone(tz), ev.ends_at.astimezone(tz)
            hit = by_slot.get((ev.calendar_id, s.date(), f"{s:%H:%M}-{e:%H:%M}", ev.email))
            if hit:
                ev.new_pi, ev.new_method = hit, "slot"


# --------------------------------------------------------------------------------------------- detection


def detect(svc: Services, session: Session, now: datetime) -> tuple[list[Detected], dict[str, Any]]:
    """Every finding the cache shows right now (pure reading; persisting is `reconcile`'s job)."""
    data = _load(session, svc)
    _match(data, svc)
    out: list[Detected] = []
    tz = svc.settings.tz
    policy = svc.policy
    closures = svc.catalogue.closure_map
    buffer = timedelta(minutes=policy.buffer_minutes)
    pis: dict[str, _Pi] = data["pis"]
    stale_after = timedelta(minutes=svc.settings.stale_payment_minutes)

    rooms = {r.slug: r for r in svc.catalogue.rooms}
    price_memo: dict[tuple[Any, ...], int] = {}
    events_by_pi: dict[str, list[_Ev]] = defaultdict(list)
    for ev in data["events"]:
        if ev.new_pi:
            events_by_pi[ev.new_pi].append(ev)

    def local_day(ev: _Ev) -> date | None:
        return ev.day

    def who(p: _Pi) -> str:  # built only for a finding: most payments are clean
        return f"{rooms[p.room or ''].name}, {_days(p.dates)} {p.start:%H:%M}–{p.end:%H:%M}"

    for p in pis.values():
        booking: Booking | None = data["bookings"].get(p.id)
        common: dict[str, Any] = {
            "payment_intent": p.id,
            "booking_id": booking.id if booking else None,
            "booking_ref": booking.reference if booking else p.booking_ref,
            "room": p.room,
        }
        evs = events_by_pi.get(p.id, [])
        if p.problem == "not a booking" and not evs:
            continue
        if p.problem:
            out.append(
                Detected(
                    "unparseable",
                    p.id,
                    f"Payment {p.id}: {p.problem}",
                    **common,
                    event_ids=[e.event_id for e in evs],
                    details={"metadata_problem": p.problem},
                )
            )
            continue
        dates = [d.isoformat() for d in p.dates]
        legs = data["legs"].get(booking.id, []) if booking and booking.id else []
        active_days = {leg.day for leg in legs if leg.state in ACTIVE_LEG_STATES}
        event_days = {local_day(e) for e in evs if not e.unparseable}
        received = p.received if p.status == "succeeded" else 0
        kept = received - p.refunded
        fully_refunded = received > 0 and kept <= 0

        if p.status == "succeeded" and booking is not None and booking.status == "AWAITING_PAYMENT":
            paid_at = p.charge_created or p.created
            if paid_at is None or paid_at <= now - stale_after:
                out.append(
                    Detected(
                        "stale_payment",
                        p.id,
                        f"{who(p)}: paid {_ago(paid_at, now)} but never processed "
                        "(webhook missed) — no event, no confirmation",
                        **common,
                        dates=dates,
                        amount_cents=kept,
                        event_ids=[e.event_id for e in evs],
                    )
                )
            continue

        if p.status == "succeeded" and kept > 0:
            if booking is not None and booking.status in ("CONFIRMED", "PARTLY_CANCELLED", "COMPLETED"):
                expected = active_days
            elif booking is not None and booking.status in ("CANCELLED", "EXPIRED", "REFUNDED"):
                expected = set()
            else:
                expected = set(p.dates)
            have = expected & event_days
            if booking is not None and booking.status == "FAILED" and expected and have == expected:
                # Marked failed, money kept, yet every day is on the calendar (a fix created the events and lost
                # the answer): the booking must be restored (create_events notes the events) or refunded.
                out.append(
                    Detected(
                        "paid_no_event",
                        p.id,
                        f"{who(p)}: {money(kept, p.currency)} paid and kept, its days are on the calendar, but the "
                        "booking is marked failed",
                        **common,
                        dates=dates,
                        amount_cents=kept,
                    )
                )
            elif expected and not have:
                out.append(
                    Detected(
                        "paid_no_event",
                        p.id,
                        f"{who(p)}: {money(kept, p.currency)} paid, not refunded, and no calendar event for any day",
                        **common,
                        dates=dates,
                        amount_cents=kept,
                    )
                )
            elif expected - have:
                missing = sorted(expected - have)
                out.append(
                    Detected(
                        "partial_multiday",
                        p.id,
                        f"{who(p)}: {len(have)} of {len(expected)} days on the calendar; missing {_days(missing)}",
                        **common,
                        dates=dates,
                        amount_cents=kept,
                        event_ids=[e.event_id for e in evs],
                        details={"missing": [d.isoformat() for d in missing]},
                    )
                )
            orphans = [e for e in evs if local_day(e) not in expected and not e.unparseable]
            if booking is not None and orphans:  # events left on days that were cancelled
                out.append(
                    Detected(
                        "orphan_event",
                        f"{p.id}:days",
                        f"{who(p)}: {len(orphans)} event(s) left on "
                        f"cancelled day(s) {_days({d for e in orphans if (d := local_day(e))})}",
                        **common,
                        dates=dates,
                        event_ids=[e.event_id for e in orphans],
                    )
                )
        elif evs and (
            fully_refunded
            or p.status in ("canceled", "requires_payment_method")
            or (booking is not None and booking.status in ("FAILED", "CANCELLED", "EXPIRED", "REFUNDED"))
        ):
            state = "refunded" if fully_refunded else (p.status or "unpaid")
            out.append(
                Detected(
                    "orphan_event",
                    p.id,
                    f"{who(p)}: payment {state} but {len(evs)} event(s) still on the calendar (clean-up failed)",
                    **common,
                    dates=dates,
                    event_ids=[e.event_id for e in evs],
                )
            )
        elif fully_refunded and not evs:
            told = booking is not None and any((booking.id, k) in data["told"] for k in REFUND_TOLD_KINDS)
            if not told:
                out.append(
                    Detected(
                        "refund_no_event",
                        p.id,
                        f"{who(p)}: refunded in full, no event — the safety net worked; tell the customer",
                        **common,
                        dates=dates,
                    )
                )

        # Events that do not say what the payment says.
        cal = rooms[p.room or ""].calendar_id
        wrong = [
            e
            for e in evs
            if e.day is not None and (e.calendar_id != cal or e.day not in p.dates or (e.t0, e.t1) != (p.start, p.end))
        ]
        if wrong and p.status == "succeeded" and kept > 0:
            out.append(
                Detected(
                    "event_mismatch",
                    p.id,
                    f"{who(p)}: {len(wrong)} event(s) at a different room, date or time than the payment",
                    **common,
                    dates=dates,
                    event_ids=[e.event_id for e in wrong],
                )
            )

        # Money: charged vs the price at booking time; refunds vs the policy quote at cancellation time.
        if p.status == "succeeded":
            expected_amount = _expected_amount(svc, p, booking, policy, price_memo)
            # Overcharged: flagged while Stripe still keeps more than the price (a refund of the difference, or a
            # cancellation, settles it). Undercharged: flagged until someone looks, unless the money went back.
            over = expected_amount is not None and p.received > expected_amount and kept > expected_amount
            under = expected_amount is not None and p.received < expected_amount and p.refunded == 0
            if expected_amount is not None and (over or under):
                out.append(
                    Detected(
                        "amount_mismatch",
                        p.id,
                        f"{who(p)}: charged {money(p.received, p.currency)}, the "
                        f"price was {money(expected_amount, p.currency)}",
                        **common,
                        dates=dates,
                        amount_cents=abs(p.received - expected_amount),
                        details={"expected_cents": expected_amount, "charged_cents": p.received},
                    )
                )
            for rid, amount, created, _reason in data["refunds"].get(p.id, []):
                record = data["records"].get(rid)
                if record is not None and (record.booking_id, amount, frozenset(record.leg_ids)) in data["approved"]:
                    continue
                quote = _policy_quote(record, booking, legs, created, policy)
                if quote is not None and quote != amount:
                    out.append(
                        Detected(
                            "refund_policy_mismatch",
                            rid,
                            f"{who(p)}: refunded {money(amount, p.currency)}, "
                            f"the policy said {money(quote, p.currency)}",
                            **common,
                            dates=dates,
                            amount_cents=abs(amount - quote),
                            details={"refund_id": rid, "quote_cents": quote, "refunded_cents": amount},
                        )
                    )

        if booking is not None and booking.status in ("CONFIRMED", "PARTLY_CANCELLED"):
            upcoming = sorted(leg.day for leg in legs if leg.state in ACTIVE_LEG_STATES and leg.ends_at > now)
            if upcoming and booking.confirmation_sent_at is None:
                out.append(
                    Detected(
                        "missing_confirmation",
                        p.id,
                        f"{who(p)}: confirmed, but the customer has no confirmation email",
                        **common,
                        dates=dates,
                    )
                )
            room = svc.catalogue.room(booking.room_slug)
            if upcoming and room.extras:
                _, problems = room.validate_extras(booking.extras)
                if problems:
                    out.append(
                        Detected(
                            "missing_extras",
                            p.id,
                            f"{who(p)}: {room.name} booking without its extras "
                            f"({', '.join(f.label for f in room.extras if f.key not in booking.extras)})",
                            **common,
                            dates=dates,
                        )
                    )
            closed = [(d, closure_reason(d, policy, closures)) for d in upcoming]
            closed = [(d, why) for d, why in closed if why]
            if closed:
                out.append(
                    Detected(
                        "holiday_booking",
                        p.id,
                        f"{who(p)}: booked on " + ", ".join(f"{day_label(d)} ({why})" for d, why in closed),
                        **common,
                        dates=dates,
                        amount_cents=sum(leg.price_cents for leg in legs if leg.day in {d for d, _ in closed}),
                    )
                )

    for dp_id, pi_id, status, due_by, amount, reason in data["disputes"]:
        if status in OPEN_DISPUTE:
            dp = pis.get(pi_id)
            b = data["bookings"].get(pi_id)
            due = f"evidence due {day_label(due_by.astimezone(tz).date())}" if due_by else "no due date"
            out.append(
                Detected(
                    "dispute_open",
                    dp_id,
                    f"Dispute ({reason or 'no reason'}) on {money(amount or 0, dp.currency if dp else 'CAD')}: {due}",
                    payment_intent=pi_id,
                    booking_id=b.id if b else None,
                    booking_ref=b.reference if b else (dp.booking_ref if dp else None),
                    room=dp.room if dp else None,
                    dates=[d.isoformat() for d in dp.dates] if dp else [],
                    amount_cents=amount or 0,
                    details={"due_by": due_by.isoformat() if due_by else None, "status": status},
                )
            )

    # Event-level findings: unreadable events, events with no payment, overlaps.
    bookable = {r.calendar_id: r for r in svc.catalogue.rooms if r.bookable}
    live_by_cal: dict[str, list[_Ev]] = defaultdict(list)
    for ev in data["events"]:
        ev_room = bookable.get(ev.calendar_id)
        if ev.unparseable:
            out.append(
                Detected(
                    "unparseable",
                    f"{ev.calendar_id}/{ev.event_id}",
                    f"Event “{ev.summary or '(no title)'}"
                    f"” on {ev_room.name if ev_room else ev.calendar_id}: {ev.unparseable}",
                    room=ev_room.slug if ev_room else None,
                    event_ids=[ev.event_id],
                )
            )
            continue
        if not ev.starts_at or not ev.ends_at or ev.transparent:
            continue
        live_by_cal[ev.calendar_id].append(ev)
        if ev.new_pi or ev_room is None:
            continue
        s_local, e_local = ev.starts_at.astimezone(tz), ev.ends_at.astimezone(tz)
        when = f"{day_label(s_local.date())} {s_local:%H:%M}–{e_local:%H:%M}"
        if ev.pi or ev.booking_ref:
            out.append(
                Detected(
                    "orphan_event",
                    f"{ev.calendar_id}/{ev.event_id}",
                    f"{ev_room.name} {when}: event of payment {ev.pi or ev.booking_ref}, which Stripe does not know",
                    room=ev_room.slug,
                    payment_intent=ev.pi,
                    booking_ref=ev.booking_ref,
                    event_ids=[ev.event_id],
                    dates=[ev.starts_at.astimezone(tz).date().isoformat()],
                )
            )
        elif ev.ends_at > now:
            out.append(
                Detected(
                    "manual_event",
                    f"{ev.calendar_id}/{ev.event_id}",
                    f"{ev_room.name} {when}: “{ev.summary or '(no title)'}” added by hand, no payment behind it",
                    room=ev_room.slug,
                    event_ids=[ev.event_id],
                    dates=[ev.starts_at.astimezone(tz).date().isoformat()],
                )
            )
    for cal, evs in live_by_cal.items():
        cal_room = bookable.get(cal)
        if cal_room is None:
            continue
        evs.sort(key=lambda e: e.starts_at or now)
        for i, a in enumerate(evs):
            assert a.starts_at and a.ends_at
            for j in range(i + 1, len(evs)):  # by index: a slice copy per event made this loop quadratic
                b = evs[j]
                assert b.starts_at and b.ends_at
                if b.starts_at >= a.ends_at + buffer:
                    break
                if a.new_pi and a.new_pi == b.new_pi:
                    continue  # one payment's own events (a duplicate is an event_mismatch matter)
                if b.ends_at <= now:
                    continue
                s = a.starts_at.astimezone(tz)
                gap = "overlap" if b.starts_at < a.ends_at else f"are closer than {policy.buffer_minutes} min"
                pis_involved = [x for x in (a.new_pi, b.new_pi) if x]
                out.append(
                    Detected(
                        "double_booking",
                        "|".join(sorted([a.event_id, b.event_id])),
                        f"{cal_room.name} {day_label(s.date())}: “{a.summary}” and “{b.summary}” {gap}",
                        room=cal_room.slug,
                        payment_intent=pis_involved[0] if pis_involved else None,
                        event_ids=[a.event_id, b.event_id],
                        dates=[s.date().isoformat()],
                        details={"payment_intents": pis_involved},
                    )
                )
    return out, data


def _expected_amount(
    svc: Services, p: _Pi, booking: Booking | None, policy: Any, memo: dict[tuple[Any, ...], int]
) -> int | None:
    if booking is not None:
        total = booking.pricing_snapshot.get("total_cents")
        return int(total) if isinstance(total, int) else booking.amount_cents
    if p.start is None or p.end is None:
        return None
    key = (p.room, len(p.dates), p.start, p.end)
    if key in memo:
        return memo[key]
    room = svc.catalogue.room(p.room or "")
    minutes = (p.end.hour * 60 + p.end.minute) - (p.start.hour * 60 + p.start.minute)
    # A payment the old system took: today's catalogue is the best record of the price it used.
    memo[key] = price(
        room_slug=room.slug,
        hourly_cents=room.hourly_price_cents,
        discount_eligible=room.discount_eligible,
        dates=p.dates,
        minutes_per_day=minutes,
        policy=policy,
    ).total_cents
    return memo[key]


def _policy_quote(
    record: RefundRecord | None, booking: Booking | None, legs: list[BookingLeg], created: datetime | None, policy: Any
) -> int | None:
    if record is not None:
        return record.policy_quote_cents
    if booking is None or created is None:
        return None
    # Refunded in the Stripe dashboard: compare with cancelling every day that was active, at that moment.
    bands = bands_from_snapshot(booking.policy_snapshot) if booking.policy_snapshot else policy.refund_bands
    return sum(
        refund_for_leg(
            leg_start=leg.starts_at, paid_cents=leg.price_cents, already_refunded_cents=0, bands=bands, now=created
        ).refund_cents
        for leg in legs
    )


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "some time ago"
    minutes = int((now - at).total_seconds() // 60)
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"


# --------------------------------------------------------------------------------------------- persisting


def reconcile(svc: Services, *, actor: str = "system", now: datetime | None = None) -> RunReport:
    """Detect, then open new findings, refresh the ones still seen and resolve the ones gone. Audited."""
    import time as _time

    started = _time.perf_counter()
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
    import time as _time

    with svc.session() as s:
        found, data = detect(svc, s, now)
        _save_matches(s, data["events"])
        current = {f.key: f for f in s.exec(select(Finding).where(col(Finding.status).in_(["open", "acknowledged"])))}
        seen: set[str] = set()
        opened = resolved = 0
        for d in found:
            if d.key in seen:
                continue
            if d.booking_id is None and d.payment_intent in data["bookings"]:
                b = data["bookings"][d.payment_intent]
                d.booking_id, d.booking_ref = b.id, b.reference
            seen.add(d.key)
            row = current.get(d.key)
            if row is None:
                row = Finding(
                    key=d.key,
                    code=d.code,
                    severity=d.severity,
                    status="open",
                    first_seen_at=now,
                    last_seen_at=now,
                    summary=d.summary[:500],
                )
                s.add(row)
                opened += 1
            _fill(row, d, now)
        for key, row in current.items():
            if key not in seen:
                row.status, row.resolved_at = "resolved", now
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
    return RunReport(run_id, dict(open_by_code), opened, resolved, _time.perf_counter() - started)


def _fill(row: Finding, d: Detected, now: datetime) -> None:
    row.severity = d.severity
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


def _save_matches(session: Session, events: list[_Ev]) -> None:
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
        row.status, row.acknowledged_by, row.acknowledged_at, row.note = "acknowledged", actor, now, note.strip()[:1000]
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
