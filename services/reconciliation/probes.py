"""What Stripe and the room calendars say right now: a fix re-checks its finding here just before acting, since the
cache the finding was read from may be minutes old."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel import col, select

from models.tables import Booking, CalendarEventCache, Finding, RefundRecord
from services import booking as bk
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import NotFound
from services.gateways.base import Json, all_pages
from services.reconciliation.fixes import Refusal
from services.rules.availability import LegWindow, check_conflicts
from services.rules.fmt import money, span_label

EventKey = tuple[str, str]  # (calendar id, event id)


# --------------------------------------------------------------------------------------------- what Stripe says now


@dataclass(frozen=True)
class LivePayment:
    """A PaymentIntent as Stripe has it now, with what its latest charge received and refunded."""

    id: str
    status: str
    received: int
    refunded: int
    currency: str
    metadata: dict[str, str]

    @property
    def kept(self) -> int:
        """What Stripe still holds of it."""
        return max(self.received - self.refunded, 0)

    def money(self, cents: int) -> str:
        """Cents in this payment's currency, as staff read them."""
        return money(cents, self.currency)


def fetch_payment(svc: Services, pi_id: str | None) -> LivePayment | None:
    """The PaymentIntent as Stripe has it right now; None if Stripe does not know it."""
    if not pi_id:
        return None
    try:
        pi = svc.payments.retrieve_payment_intent(pi_id)
    except NotFound:
        return None
    charge = pi.get("latest_charge") or {}
    status = str(pi.get("status") or "unknown")
    received = int(charge.get("amount_captured", charge.get("amount", 0)) or 0) if status == "succeeded" else 0
    return LivePayment(
        pi_id,
        status,
        received,
        int(charge.get("amount_refunded", 0) or 0),
        str(pi.get("currency") or "cad").upper(),
        {str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
    )


def booking_kept(svc: Services, booking: Booking, first: LivePayment) -> int:
    """What Stripe still holds of everything the booking was paid: its own payment (`first`, already fetched) and
    the payments of its changes that cost more."""
    with svc.session() as s:
        others = [pi for pi, _ in bk.booking_payments(s, booking) if pi != first.id]
    return first.kept + sum(p.kept for pi in others if (p := fetch_payment(svc, pi)) is not None)


def unrecorded_refund(svc: Services, pay: LivePayment | None, key: str) -> Json | None:
    """A refund Stripe made with this fix's key that we never recorded: an earlier click refunded, then lost the
    answer (a timeout). Its retry must finish that click's work, not refuse because the money is already back."""
    if pay is None or not pay.refunded:
        return None
    refunds = all_pages(
        lambda after: svc.payments.list_refunds(payment_intent_id=pay.id, limit=100, starting_after=after)
    )
    ours = [r for r in refunds if (r.get("metadata") or {}).get("idempotency_key") == key]
    mine = next((r for r in ours if r.get("status") != "failed"), None)
    if mine is None:
        return None
    with svc.session() as s:
        recorded = s.exec(select(RefundRecord.id).where(RefundRecord.refund_id == mine["id"])).first()
    return None if recorded is not None else mine


def require_paid(pay: LivePayment | None, pi_id: str | None) -> LivePayment:
    """The payment, if it is paid and not fully refunded; otherwise refuse with what Stripe says."""
    if pay is None:
        raise Refusal(f"Stripe does not know payment {pi_id or '(none)'} — nothing to do")
    if pay.status != "succeeded":
        raise Refusal(f"Payment {pay.id} is {pay.status.replace('_', ' ')} in Stripe, not paid — nothing to do")
    if pay.kept <= 0:
        raise Refusal("Already refunded in Stripe — nothing to do")
    return pay


# --------------------------------------------------------------------------------------------- what the calendars say


def _when(part: Any, tz: Any) -> datetime:
    if not isinstance(part, dict):
        raise ValueError("no time")
    if part.get("dateTime"):
        moment = datetime.fromisoformat(str(part["dateTime"]).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return datetime.combine(date.fromisoformat(str(part["date"])), time(0), tzinfo=tz)


def event_span(ev: Json, svc: Services) -> tuple[datetime, datetime] | None:
    """An event's start and end (an all-day event from venue midnight); None when they cannot be read."""
    try:
        return _when(ev.get("start"), svc.settings.tz), _when(ev.get("end"), svc.settings.tz)
    except (ValueError, TypeError, KeyError):
        return None


def event_day(ev: Json, svc: Services) -> date | None:
    """The venue-local day an event starts on."""
    span = event_span(ev, svc)
    return span[0].astimezone(svc.settings.tz).date() if span else None


def event_label(svc: Services, key: EventKey, ev: Json) -> str:
    """'“Staff meeting”, Main Hall Thu 19 Mar 08:00–11:00'."""
    room = svc.catalogue.room_by_calendar(key[0])
    span = event_span(ev, svc)
    when = f" {span_label(span[0], span[1], svc.settings.tz)}" if span else ""
    return f"“{ev.get('summary') or '(no title)'}”, {room.name if room else key[0]}{when}"


def is_live(ev: Json | None) -> bool:
    """The event exists and is not cancelled."""
    return ev is not None and ev.get("status") != "cancelled"


def named_events(svc: Services, f: Finding) -> list[EventKey]:
    """The events a finding names, with their calendars (the finding keeps only ids; the cache knows where)."""
    if not f.event_ids:
        return []
    with svc.session() as s:
        rows = list(s.exec(select(CalendarEventCache).where(col(CalendarEventCache.event_id).in_(list(f.event_ids)))))
    found = {r.event_id: r.calendar_id for r in rows}
    fallback = svc.catalogue.room(f.room).calendar_id if f.room else None
    out = []
    for event_id in f.event_ids:
        calendar_id = found.get(event_id, fallback)
        if calendar_id:
            out.append((calendar_id, event_id))
    return out


def own_events(
    svc: Services, calendar_id: str, reference: str | None, pi_id: str | None, extra: Sequence[EventKey] = ()
) -> dict[EventKey, Json]:
    """Live events of one booking: by our private properties, plus any the finding names (the old system's)."""
    found: dict[EventKey, Json] = {}
    props = ([f"booking_id={reference}"] if reference else []) + ([f"payment_intent={pi_id}"] if pi_id else [])
    for prop in props:
        for ev in svc.calendar.list_events(calendar_id, private_property=prop).get("items") or []:
            if is_live(ev):
                found[(calendar_id, str(ev["id"]))] = ev
    for cal, eid in extra:
        if (cal, eid) not in found:
            ev = svc.calendar.get_event(cal, eid)
            if ev is not None and is_live(ev):
                found[(cal, eid)] = ev
    return found


def days_with_events(svc: Services, events: dict[EventKey, Json], calendar_id: str) -> dict[date, EventKey]:
    """The first of these events on each day, on one calendar."""
    out: dict[date, EventKey] = {}
    for key, ev in events.items():
        day = event_day(ev, svc)
        if key[0] == calendar_id and day is not None:
            out.setdefault(day, key)
    return out


def event_matches(svc: Services, key: EventKey, ev: Json, window: LegWindow, calendar_id: str) -> bool:
    """The event is on this calendar at exactly this day's times."""
    span = event_span(ev, svc)
    return key[0] == calendar_id and span is not None and span == (window.starts_at, window.ends_at)


def still_overlapping(svc: Services, keys: Sequence[EventKey]) -> bool:
    """Both events are still live and still overlap (or come closer than the buffer)."""
    spans = []
    for key in keys:
        ev = svc.calendar.get_event(*key)
        span = event_span(ev, svc) if ev is not None and is_live(ev) else None
        if span:
            spans.append(span)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    return len(spans) == 2 and spans[0][0] < spans[1][1] + buffer and spans[1][0] < spans[0][1] + buffer


def slot_conflicts(
    svc: Services, room: Room, windows: Sequence[LegWindow], *, own: set[str], booking_id: int | None, now: datetime
) -> list[str]:
    """Gate 2 again, just before acting: the calendar itself and live holds, ignoring the booking's own events."""
    start, end = bk.busy_span(windows, svc.policy.buffer_minutes)
    busy = [b for b in bk.calendar_busy(svc, room, start, end) if b.ref not in own]
    with svc.session() as s:
        busy += bk.claims_busy(s, room.slug, start, end, now, booking_id)
    return check_conflicts(windows, busy, svc.policy)
