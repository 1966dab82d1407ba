"""Demo data: about 150 bookings over the past 30 and next 60 days, made by driving the booking service, with
faults injected into the sandbox gateways so that every incident of seed 000 appears at least once; on request
(`years`, or more bookings than the present holds) years of a busy venue's past before them, written in bulk."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import random
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, partial
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from models.tables import (
    AUDIT_CHAIN_LOCK_KEY,
    AUDIT_GENESIS_HASH,
    AuditLog,
    BlockKind,
    Booking,
    BookingLeg,
    BookingStatus,
    Channel,
    ClaimKind,
    EmailOutbox,
    ExternalRef,
    LegState,
    OutboxStatus,
    RefundRecord,
    SlotClaim,
    WebhookEvent,
    WebhookStatus,
    audit_row_hash,
)
from services import booking as bk
from services.booking import invoices
from services.booking.store import REFERENCE_ALPHABET
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import DomainError
from services.gateways.faults import Faults
from services.notify import emails
from services.rules.availability import is_open, leg_windows, observed_holiday
from services.rules.deposits import terms_snapshot
from services.rules.pricing import Quote
from services.rules.refunds import LegRefund, bands_from_snapshot, policy_snapshot, refund_for_leg
from services.rules.tax import refund_split

log = logging.getLogger("roomdesk.demo")

FIRST = [
    "Ava",
    "Noah",
    "Maya",
    "Liam",
    "Chloe",
    "Ethan",
    "Priya",
    "Jonah",
    "Sofia",
    "Mateo",
    "Hana",
    "Owen",
    "Leila",
    "Arjun",
    "Grace",
    "Tomás",
    "Mei",
    "Isaac",
    "Nadia",
    "Felix",
    "Amara",
    "Kenji",
    "Zoe",
    "Diego",
]
LAST = [
    "Nguyen",
    "Patel",
    "Chen",
    "MacLeod",
    "Singh",
    "Dubois",
    "Okafor",
    "Kowalski",
    "Tanaka",
    "Haddad",
    "Fraser",
    "Moreau",
    "Kaur",
    "Larsen",
    "Ramirez",
    "O'Brien",
    "Wong",
    "Sato",
    "Novak",
    "Hughes",
]
ORGS = [
    "Tenants Union",
    "Film Co-op",
    "Carpenters Local",
    "Poetry Night",
    "Youth Climate",
    "Choir",
    "Startup Weekend",
    "Book Club",
    "Nurses Assoc.",
    "Design Guild",
    "Podcast Collective",
    "Chess Club",
]


class ManualClock:
    """A clock the seeder moves, so the service and the sandbox gateways agree on 'now' for past bookings."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class DemoReport:
    bookings: int = 0  # made by the saga in the present
    refused: int = 0
    incidents: dict[str, str] = field(default_factory=dict)  # incident → booking reference
    history: int = 0  # written in bulk in the years before
    history_days: int = 0

    def line(self) -> str:
        past = f" and {self.history} over the {self.history_days} days before" if self.history_days else ""
        return (
            f"{self.bookings} bookings{past}, {len(self.incidents)} incidents ({self.refused} refused attempts retried)"
        )


def _faults(gateway: Any) -> Faults:
    faults = getattr(gateway, "faults", None)
    if not isinstance(faults, Faults):
        raise DomainError("Demo data needs the sandbox gateways (PAYMENTS=sandbox, CALENDAR=sandbox)")
    return faults


def is_empty(svc: Services) -> bool:
    with svc.session() as s:
        has_booking = s.exec(select(Booking.id).limit(1)).first() is not None
    stores_empty = all(getattr(g, "is_empty", lambda: False)() for g in (svc.payments, svc.calendar))
    return not has_booking and stores_empty


@contextmanager
def _clock(svc: Services) -> Iterator[ManualClock]:
    original = svc.clock
    clock = ManualClock(svc.now())
    svc.clock = clock
    try:
        yield clock
    finally:
        svc.clock = original


def seed_demo(
    svc: Services,
    *,
    seed: int = 7,
    count: int = 150,
    years: float | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> DemoReport:
    """Fill an empty sandbox with realistic bookings and one of each incident. Deterministic for a given day. Beyond
    what the present holds (WINDOW_MOST), or with `years`, the rest is a busy venue's past (see demo_span)."""
    rng = random.Random(seed)
    span = demo_span(count, years)
    report = DemoReport(history_days=span.history_days)
    real_now = svc.now()
    today = real_now.astimezone(svc.settings.tz).date()
    rooms = list(svc.catalogue.bookable_rooms)
    overall = progress or (lambda _f, _m: None)
    base = 0.0
    if span.history_days:
        base = 0.5
        last = today - timedelta(days=31)  # the present's past starts the day after
        report.history = seed_history(
            svc,
            count=span.history,
            first_day=last - timedelta(days=span.history_days - 1),
            last_day=last,
            seed=seed + 1,
            progress=lambda f, m: overall(base * f, m),
        )
    count = span.window

    def step(fraction: float, message: str) -> None:
        overall(base + (1 - base) * fraction, message)

    made: list[tuple[int, bk.StartResult]] = []

    def person() -> tuple[str, str, str]:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower()}.{last.lower().replace(chr(39), '')}@example.org".replace("á", "a")
        return f"{first} {last}", email, f"604-555-{rng.randint(1000, 9999)}"

    def request(room_slug: str, days: list[date], start: time, end: time, **kw: Any) -> bk.BookingRequest:
        name, email, phone = person()
        room = svc.catalogue.room(room_slug)
        extras: dict[str, Any] | None = None
        if room.extras and kw.pop("with_extras", True):
            choices = next(f.choices for f in room.extras if f.key == "set_choice")
            extras = {"show_name": f"{rng.choice(ORGS)} Radio", "set_choice": rng.choice(choices)}
            kw.setdefault("party_size", rng.randint(1, room.capacity))
        return bk.BookingRequest(
            room=room_slug,
            dates=tuple(days),
            start=start,
            end=end,
            customer_name=name,
            customer_email=email,
            customer_phone=phone,
            party_size=kw.pop("party_size", None),
            extras=extras,
            channel=kw.pop("channel", rng.choice(["web", "web", "web", "phone"])),
            agreement_version=svc.policy.refund_policy_version if room.agreement_required else None,
            notes=kw.pop("notes", ""),
        )

    def booked_at(first_day: date, start: time) -> datetime:
        begins = datetime.combine(first_day, start, tzinfo=svc.settings.tz).astimezone(UTC)
        lead = timedelta(days=rng.randint(2, 40), hours=rng.randint(0, 9), minutes=rng.choice([0, 15, 30, 45]))
        at = min(begins - lead, real_now - timedelta(minutes=rng.randint(5, 600)))
        return max(at, begins - timedelta(days=svc.policy.max_days_ahead - 1))

    def attempt(
        req: bk.BookingRequest, at: datetime, *, pay: bool = True, svc_: Services = svc
    ) -> bk.StartResult | None:
        clock.at = at
        try:
            started = bk.start_booking(svc_, req, actor="demo-seed" if req.channel == "web" else "frontdesk@demo")
        except DomainError:
            report.refused += 1
            return None
        report.bookings += 1
        if pay:
            clock.at = at + timedelta(minutes=rng.randint(1, 20))
            bk.sandbox_pay(svc_, started.booking_id, actor="stripe-webhook")
        return started

    def random_slot(room_slug: str) -> tuple[list[date], time, time]:
        room = svc.catalogue.room(room_slug)
        first = today + timedelta(days=rng.randint(-30, 58))
        n_days = 1 if rng.random() > 0.12 else rng.randint(2, 4)
        days: list[date] = []
        d = first
        while len(days) < n_days:
            if d.weekday() < 5:
                days.append(d)
            d += timedelta(days=1)
        min_h = max(1, int(room.min_hours + 0.99))
        hours = rng.randint(min_h, min(min_h + 3, 8))
        start_h = rng.randint(8, 17 - hours)
        start = time(start_h, rng.choice([0, 0, 30]) if start_h + hours < 17 else 0)
        end = (datetime.combine(today, start) + timedelta(hours=hours)).time()
        return days, start, end

    pay_faults, cal_faults, mail_faults = _faults(svc.payments), _faults(svc.calendar), _faults(svc.mail)
    with _clock(svc) as clock:
        # ---- ordinary traffic ------------------------------------------------------------------------------
        tries = 0
        while report.bookings < count - 12 and tries < count * 6:
            tries += 1
            room = rng.choice(rooms)
            days, start, end = random_slot(room.slug)
            if days[-1] > today + timedelta(days=svc.policy.max_days_ahead - 2):
                continue
            at = booked_at(days[0], start)
            pay = days[0] <= today or rng.random() > 0.06  # a few future bookings still wait for payment
            started = attempt(request(room.slug, days, start, end), at, pay=pay)
            if started:
                made.append((started.booking_id, started))
            if started and report.bookings % 10 == 0:
                step(report.bookings / count, f"{report.bookings} bookings made")

        # A handful of cancellations at different notice (the refund bands) and one expired web hold.
        future_paid = [m for m in made if _first_day(svc, m[0]) > today + timedelta(days=3)]
        for booking_id, _started in rng.sample(future_paid, k=min(6, len(future_paid))):
            clock.at = real_now - timedelta(hours=rng.randint(1, 30))
            try:
                bk.cancel_booking(svc, booking_id, actor="frontdesk@demo", reason="Customer asked to cancel")
            except DomainError as exc:
                log.info("demo cancel skipped: %s", exc.message)

        # Changes callers asked for: a day moved, a booking made longer (paid), one made longer and not paid yet.
        future_confirmed = [
            m for m in made if _first_day(svc, m[0]) > today + timedelta(days=3) and _status(svc, m[0]) == "CONFIRMED"
        ]
        candidates = rng.sample(future_confirmed, k=len(future_confirmed))
        for kind in ("move", "longer", "longer-unpaid"):
            while candidates:  # a booking whose neighbour leaves no room for it: the next one
                booking_id, _started = candidates.pop()
                clock.at = real_now - timedelta(hours=rng.randint(1, 20))
                try:
                    _demo_change(svc, rng, booking_id, kind=kind)
                    break
                except DomainError as exc:
                    log.info("demo change skipped: %s", exc.message)

        # Cancellations of past bookings, made days before they were due, so refunds spread over the past month
        # (finance's "last month" report and the daily closes have something to show).
        past_paid = [
            m
            for m in made
            if today - timedelta(days=30) <= _first_day(svc, m[0]) < today - timedelta(days=2)
            and _status(svc, m[0]) == "CONFIRMED"
        ]
        past_paid.sort(key=lambda m: _first_day(svc, m[0]))
        earliest, rest = past_paid[:4], past_paid[4:]  # the earliest ones put refunds into last month
        picked = earliest + rng.sample(rest, k=min(3, len(rest)))
        for booking_id, _started in picked[:6]:
            starts, created = _first_start_and_created(svc, booking_id)
            when = starts - timedelta(hours=rng.choice([30, 60, 72, 120, 240]))  # the 50 % and full-refund bands
            if when <= created + timedelta(hours=1):
                continue
            clock.at = when
            try:
                bk.cancel_booking(svc, booking_id, actor="frontdesk@demo", reason="Customer asked to cancel")
            except DomainError as exc:
                log.info("demo past cancel skipped: %s", exc.message)
        # A goodwill refund made by hand in the Stripe dashboard the day after a session; its webhook recorded it.
        if len(picked) > 6:
            booking_id, started = picked[6]
            starts, _created = _first_start_and_created(svc, booking_id)
            clock.at = starts + timedelta(days=1)
            _dashboard_refund(svc, started, reason="Goodwill: the projector failed during the session")

        step(0.8, "injecting incidents")

        # ---- incidents of seed 000 -------------------------------------------------------------------------
        def free_future(
            room_slug: str, hours: int = 2, offset: int = 10, n_days: int = 1
        ) -> tuple[list[date], time, time]:
            for extra in range(0, 40):
                first = today + timedelta(days=offset + extra)
                days: list[date] = []
                d = first
                while len(days) < n_days:
                    if is_open(d, svc.policy, svc.catalogue.closure_map):
                        days.append(d)
                    d += timedelta(days=1)
                for start_h in range(8, 17 - hours):
                    req = request(room_slug, days, time(start_h), time(start_h + hours))
                    clock.at = real_now - timedelta(hours=2)
                    if bk.quote(svc, req).available:
                        return days, time(start_h), time(start_h + hours)
            raise DomainError("no free slot found for a demo incident")

        def incident(name: str, started: bk.StartResult | None) -> None:
            if started:
                report.incidents[name] = started.reference

        # 1. Webhook never arrived: paid in Stripe, still waiting here, no event (incident #2). A phone booking,
        #    so its longer hold keeps it visible until someone (or the expiry job) deals with it.
        days, s, e = free_future("boardroom", offset=12)
        started = attempt(
            request("boardroom", days, s, e, channel="phone"), real_now - timedelta(minutes=40), pay=False
        )
        if started:
            clock.at = real_now - timedelta(minutes=25)
            svc.payments.confirm_payment_intent(started.payment_intent)
        incident("webhook_missed", started)

        # 2. Event creation failed and the auto-refund failed too: paid, no event, no refund.
        days, s, e = free_future("union-room", offset=14)
        cal_faults.fail("insert_event", times=1)
        pay_faults.fail("refund", times=1)
        incident("paid_no_event", attempt(request("union-room", days, s, e), real_now - timedelta(hours=5)))

        # 3. Gate 2 conflict: staff added a manual event while the customer was paying → auto-refund (#2).
        days, s, e = free_future("main-hall", hours=3, offset=16)
        started = attempt(request("main-hall", days, s, e), real_now - timedelta(hours=6), pay=False)
        if started:
            _manual_event(svc, "main-hall", days[0], s, e, "Staff: AV maintenance")
            clock.at = real_now - timedelta(hours=5, minutes=50)
            bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
        incident("gate2_auto_refund", started)

        # 4. Multi-day partial failure whose clean-up failed: day 3's event failed, deletes and refund failed.
        days, s, e = free_future("gallery", offset=20, n_days=3)
        cal_faults.fail("insert_event", nth=3, times=1)
        cal_faults.fail("delete_event", times=5)
        pay_faults.fail("refund", times=1)
        incident("partial_cleanup_failed", attempt(request("gallery", days, s, e), real_now - timedelta(days=1)))
        cal_faults.clear()
        pay_faults.clear()

        # 5. Refunded cancellation whose event deletion failed: orphan event left (#4 / #7).
        days, s, e = free_future("workshop", offset=25)
        started = attempt(request("workshop", days, s, e), real_now - timedelta(days=2))
        if started:
            clock.at = real_now - timedelta(days=1)
            cal_faults.fail("delete_event", times=1)
            bk.cancel_booking(svc, started.booking_id, actor="frontdesk@demo", reason="Customer asked to cancel")
            cal_faults.clear()
        incident("orphan_after_refund", started)

        # 6. A manual staff event double-booking a confirmed booking (#5).
        days, s, e = free_future("quiet-room", offset=9)
        started = attempt(request("quiet-room", days, s, e), real_now - timedelta(days=3))
        if started:
            _manual_event(
                svc,
                "quiet-room",
                days[0],
                s,
                (datetime.combine(days[0], s) + timedelta(hours=1)).time(),
                "Board meeting (added by hand)",
            )
        incident("manual_double_booking", started)

        # 7. A booking on a statutory holiday, made before the holiday rule existed (#6).
        holiday = next(
            (
                today + timedelta(days=i)
                for i in range(3, 58)
                if observed_holiday(today + timedelta(days=i), svc.policy) and (today + timedelta(days=i)).weekday() < 5
            ),
            None,
        )
        if holiday:
            legacy = replace(svc, settings=svc.settings.model_copy(update={"observe_holidays": False}))
            incident(
                "holiday_booking",
                attempt(request("boardroom", [holiday], time(10), time(12)), real_now - timedelta(days=4), svc_=legacy),
            )

        # 8. Sonic Studio phone booking saved without its extras (#9).
        days, s, e = free_future("sonic-studio", offset=11)
        incident(
            "sonic_missing_extras",
            attempt(
                request(
                    "sonic-studio",
                    days,
                    s,
                    e,
                    channel="phone",
                    with_extras=False,
                    notes="Caller will email the show details",
                ),
                real_now - timedelta(days=2),
            ),
        )

        # 9. Confirmed, but the confirmation email failed (#1 / #3).
        days, s, e = free_future("union-room", offset=18)
        mail_faults.fail("send", times=1)
        incident("confirmation_not_sent", attempt(request("union-room", days, s, e), real_now - timedelta(days=1)))
        mail_faults.clear()

        # 10. A chargeback on a past booking (#8).
        past = [
            m
            for m in made
            if _first_day(svc, m[0]) < today - timedelta(days=5) and _status(svc, m[0]) in ("CONFIRMED", "COMPLETED")
        ]
        if past:
            booking_id, started = past[0]
            clock.at = real_now - timedelta(days=1)
            open_dispute = getattr(svc.payments, "open_dispute")  # noqa: B009  (sandbox-only helper)
            open_dispute(started.payment_intent, reason="product_not_received")
            report.incidents["dispute"] = started.reference

        # 11. An unpaid web hold that expired.
        days, s, e = free_future("gallery", offset=30)
        started = attempt(request("gallery", days, s, e, channel="web"), real_now - timedelta(hours=3), pay=False)
        clock.at = real_now
        bk.expire_holds(svc, actor="system")
        incident("expired_hold", started)

        # 12. The right way to do what #5 did by hand: a manager blocks the Workshop for maintenance (a claim the
        #     booking flow respects and a marked event reconciliation knows is the venue's own).
        days, s, e = free_future("workshop", hours=3, offset=6)
        clock.at = real_now - timedelta(days=1)
        bk.create_block(
            svc,
            bk.BlockRequest(
                rooms=("workshop",),
                first_day=days[0],
                last_day=days[0],
                start=s,
                end=e,
                kind=BlockKind.MAINTENANCE,
                reason="Floor refinishing",
            ),
            actor="manager@demo",
        )

        # 13. Organisations paying by invoice (issue 15): one on net 14 waiting for its payment, one paid (confirmed
        #     by invoice.paid), and one whose net-7 invoice is well past due (an invoice_overdue finding).
        for n, (room_slug, offset, terms, booked_ago, paid) in enumerate(
            (("main-hall", 24, 14, 2, False), ("union-room", 26, 14, 6, True), ("gallery", 16, 7, 12, False))
        ):
            days, s, e = free_future(room_slug, hours=4, offset=offset)
            clock.at = real_now - timedelta(days=booked_ago)
            org = ORGS[n % len(ORGS)]
            try:
                on_terms = invoices.book_on_invoice(
                    svc,
                    request(room_slug, days, s, e, channel="phone"),
                    invoices.InvoiceTerms(
                        organisation=org,
                        contact_name="Accounts payable",
                        billing_email=f"ap{n}@{org.lower().replace(' ', '')[:20]}.example.org",
                        terms_days=terms,
                        po_number=f"PO-{2026_0100 + n}",
                    ),
                    actor="frontdesk@demo",
                )
            except DomainError as exc:  # a first day too close for terms: the demo goes on without it
                log.info("Demo invoice booking skipped: %s", exc.message)
                continue
            if paid:
                clock.at = real_now - timedelta(days=booked_ago - 3)
                invoices.sandbox_pay_invoice(svc, on_terms.booking_id, actor="stripe-webhook")
            report.incidents[f"invoice_{'paid' if paid else 'open'}_{n}"] = on_terms.reference

        clock.at = real_now
        invoices.invoice_round(svc, actor="worker")  # the overdue one has had its reminder
        bk.advance_legs(svc, actor="system")
    step(1.0, report.line())
    return report


def _manual_event(svc: Services, room_slug: str, day: date, start: time, end: time, summary: str) -> None:
    room = svc.catalogue.room(room_slug)
    tz = svc.settings.venue_timezone
    svc.calendar.insert_event(
        room.calendar_id,
        {
            "summary": summary,
            "description": "Added directly in Google Calendar",
            "start": {"dateTime": datetime.combine(day, start, tzinfo=svc.settings.tz).isoformat(), "timeZone": tz},
            "end": {"dateTime": datetime.combine(day, end, tzinfo=svc.settings.tz).isoformat(), "timeZone": tz},
        },
    )


def _demo_change(svc: Services, rng: random.Random, booking_id: int, *, kind: str) -> None:
    """One change a caller asked for: a day moved a day or two later, or the booking an hour longer (paid at once,
    or left waiting for the customer to pay)."""
    with svc.session() as s:
        legs = [leg for leg in bk.booking_legs(s, booking_id) if leg.state == LegState.CONFIRMED]
    first = legs[0]
    tz = svc.settings.tz
    if kind == "move":
        target = first.day + timedelta(days=rng.choice([1, 2, 7]))
        while target.weekday() >= 5 or target in {leg.day for leg in legs}:
            target += timedelta(days=1)
        change = bk.Change(moves={first.id: target} if first.id is not None else {})
    else:
        start, end = first.starts_at.astimezone(tz), first.ends_at.astimezone(tz)
        later = (end + timedelta(hours=1)).time() if end.hour < 16 else end.time()
        earlier = (start - timedelta(hours=1)).time() if later == end.time() else start.time()
        change = bk.Change(times=(earlier, later))
    done = bk.change_booking(svc, booking_id, change, actor="frontdesk@demo", reason="Caller asked by phone")
    if kind == "longer" and done.outcome == "awaiting_payment":
        bk.sandbox_pay_change(svc, booking_id, actor="stripe-webhook")


def _first_start_and_created(svc: Services, booking_id: int) -> tuple[datetime, datetime]:
    with svc.session() as s:
        legs = bk.booking_legs(s, booking_id)
        b = s.get(Booking, booking_id)
        assert b is not None
        return legs[0].starts_at, b.created_at


def _dashboard_refund(svc: Services, started: bk.StartResult, *, reason: str) -> None:
    """Refund a quarter of a payment as a person would in Stripe's dashboard, then deliver the charge.refunded
    webhook Stripe sends for it (recorded once, origin "made in the Stripe dashboard")."""
    from services.web import webhooks

    svc.payments.refund(
        started.payment_intent,
        amount_cents=started.amount_cents // 4,
        reason=reason,
        idempotency_key=f"demo-dashboard-{started.reference}",
    )
    list_events = getattr(svc.payments, "list_events")  # noqa: B009  (the sandbox filters by type)
    events = list_events(limit=100, type="charge.refunded")["data"]
    event = next(e for e in events if e["data"]["object"].get("payment_intent") == started.payment_intent)
    row_id, _new = webhooks.record_event(svc, event)
    webhooks.process_event(svc, row_id, actor="stripe-webhook")


def _first_day(svc: Services, booking_id: int) -> date:
    with svc.session() as s:
        legs = bk.booking_legs(s, booking_id)
    return legs[0].day


def _status(svc: Services, booking_id: int) -> str:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        return b.status if b else ""


def first_sync(svc: Services) -> None:
    """Sync the freshly seeded sandbox into the cache and reconcile, so the first screen shows the incidents."""
    from services.reconciliation import cycle

    cycle.run_cycle(svc, actor="demo-seed")


# ------------------------------------------------------------------------------------------------ years of history
#
# A busy venue's past, written in bulk. The booking saga costs 0.1 s and more a booking (gateway calls, emails and
# audit rows, one transaction each; more as the calendars fill): most of an hour for years of data. The past is
# settled, so it needs none of the saga's gates, but what the app reads of it must be what the saga, the worker and
# staff would have left: bookings and days priced by the pricing rule, claims, PaymentIntents, charges and refunds in
# the sandbox Stripe store, an event per day on the room's calendar, the emails, the webhook deliveries, refund
# records, and the audit rows of every step, in time order and hash-chained with the same `audit_row_hash` the ORM
# hook uses (Core inserts do not run that hook).

WINDOW_DAYS = 90  # the saga-made present: 30 days back, 60 ahead
WINDOW_MOST = 450  # what the present holds at a busy venue's pace (about 1.3 booked days per room and opening day)
BUSY_PER_YEAR = 1850  # bookings a busy venue takes in a year: three years ≈ 5,500 past bookings and 450 now
_BATCH = 2000
_TRIES = 40  # places tried for a booking before it is made shorter or left out
_ROUND = timedelta(minutes=1)  # the worker's round: when it notices a day began, ended or a hold ran out
_ROOM_WEIGHT = {"quiet-room": 1.4, "boardroom": 1.2, "main-hall": 0.7}  # the others 1
_STAFF = ("frontdesk@demo", "frontdesk@demo", "manager@demo")
_ID_CHARS = string.ascii_letters + string.digits
_CANCEL_REASON = "Customer asked to cancel"


@dataclass(frozen=True)
class DemoSpan:
    """A demo of `count` bookings: `window` made by the saga in the present, the rest written in bulk over the
    `history_days` before it."""

    count: int
    window: int
    history_days: int

    @property
    def history(self) -> int:
        return self.count - self.window


def demo_span(count: int, years: float | None = None) -> DemoSpan:
    """With `years` None the past is as long as the count needs at a busy venue's pace (none up to WINDOW_MOST);
    with `years` the count is spread evenly over that many years and the present."""
    if count < 1:
        raise DomainError("A demo needs at least one booking")
    if years is None:
        if count <= WINDOW_MOST:
            return DemoSpan(count, count, 0)
        return DemoSpan(count, WINDOW_MOST, math.ceil((count - WINDOW_MOST) * 365 / BUSY_PER_YEAR))
    if years < 0:
        raise DomainError("The demo's past cannot be a negative number of years")
    days = round(years * 365)
    if days == 0:
        if count > WINDOW_MOST:
            raise DomainError(f"{count} bookings do not fit in the present {WINDOW_DAYS} days: give some years of past")
        return DemoSpan(count, count, 0)
    share = round(count * WINDOW_DAYS / (WINDOW_DAYS + days))
    return DemoSpan(count, min(count, WINDOW_MOST, max(share, min(count, 40))), days)


@dataclass
class _Past:
    """One past booking as it happened: what was sold, when it was paid (None: the web hold lapsed unpaid), and the
    days cancelled (legs[cancel_from:] at cancel_at, with each day's policy refund)."""

    booking: Booking
    legs: list[BookingLeg]
    booked_at: datetime
    paid_at: datetime | None
    cancel_at: datetime | None = None
    cancel_from: int = 0
    refunds: list[tuple[BookingLeg, LegRefund]] = field(default_factory=list)
    refund_id: str = ""
    stripe: dict[str, dict[str, Any]] = field(default_factory=dict)  # payment_intent, charge, refund

    @property
    def refund_cents(self) -> int:
        return sum(q.refund_cents for _, q in self.refunds)


@dataclass
class _Rows:
    """The rows of the past, table by table; the emails are rendered as they are inserted."""

    audit: list[tuple[datetime, int, str, str, int | None, str | None, dict[str, Any]]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    refs: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    mails: list[tuple[dict[str, Any], Callable[[], emails.RenderedEmail]]] = field(default_factory=list)

    def log(self, at: datetime, actor: str, action: str, b: Booking, pi: str | None, **payload: Any) -> None:
        # The sequence number keeps one booking's rows of the same instant in the order the saga writes them.
        self.audit.append((at, len(self.audit), actor, action, b.id, pi, payload))

    def ref(self, provider: str, kind: str, external_id: str, b: Booking, leg_id: int | None, at: datetime) -> None:
        self.refs.append(
            {"provider": provider, "kind": kind, "external_id": external_id, "booking_id": b.id, "leg_id": leg_id,
             "created_at": at}
        )  # fmt: skip

    def email(self, b: Booking, kind: str, key: str, at: datetime, render: Callable[[], emails.RenderedEmail]) -> None:
        row = {
            "booking_id": b.id, "kind": kind, "to": b.customer_email, "idempotency_key": key,
            "status": OutboxStatus.SENT, "attempts": 1, "last_error": None, "message_id": None, "created_at": at,
            "sent_at": at, "next_attempt_at": None,
        }  # fmt: skip
        self.mails.append((row, render))

    def webhook(self, event_id: str, kind: str, obj: dict[str, Any], at: datetime) -> None:
        payload = {
            "id": event_id, "object": "event", "type": kind, "created": int(at.timestamp()),
            "data": {"object": json.loads(json.dumps(obj))}, "livemode": False, "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
        }  # fmt: skip
        self.webhooks.append(
            {"provider": "stripe", "event_id": event_id, "type": kind, "received_at": at, "processed_at": at,
             "status": WebhookStatus.PROCESSED, "attempts": 1, "last_error": None, "payload": payload}
        )  # fmt: skip

    def tables(self, message_id: Callable[[], str]) -> Iterator[tuple[sa.Table, list[dict[str, Any]]]]:
        for model, rows in ((SlotClaim, self.claims), (ExternalRef, self.refs), (RefundRecord, self.refunds),
                            (WebhookEvent, self.webhooks)):  # fmt: skip
            for start in range(0, len(rows), _BATCH):
                yield _table(model), rows[start : start + _BATCH]
        for start in range(0, len(self.mails), _BATCH):
            batch = []
            for row, render in self.mails[start : start + _BATCH]:
                mail = render()
                batch.append({**row, "subject": mail.subject, "text": mail.text, "html": mail.html,
                              "message_id": message_id()})  # fmt: skip
            yield _table(EmailOutbox), batch


def _table(model: type[SQLModel]) -> sa.Table:
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    return table


def _columns(obj: SQLModel) -> dict[str, Any]:
    """An unsaved row's column values, for a Core insert (the database assigns the id)."""
    return {c.key: getattr(obj, c.key) for c in _table(type(obj)).columns if c.key != "id"}


@cache
def _status_of(states: tuple[LegState, ...]) -> BookingStatus:
    return bk.derive_status([BookingLeg.model_construct(state=state) for state in states])


def _copy(leg: BookingLeg, state: LegState) -> BookingLeg:
    return BookingLeg(**{**leg.model_dump(), "state": state})


def _rfc3339(moment: datetime) -> str:
    """Google's form of a time (milliseconds, Z)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _History:
    """Plans the past booking by booking, each on free sessions of its room's days, then writes it all at once."""

    def __init__(self, svc: Services, rng: random.Random, first_day: date, last_day: date) -> None:
        self.svc, self.rng = svc, rng
        self.policy = svc.policy
        self.rooms = list(svc.catalogue.bookable_rooms)
        self.weights = [_ROOM_WEIGHT.get(r.slug, 1.0) for r in self.rooms]
        closures = svc.catalogue.closure_map
        every = (first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1))
        self.days = [d for d in every if is_open(d, self.policy, closures)]
        self.open_days = set(self.days)
        self.sessions = {r.slug: self._sessions(r) for r in self.rooms}
        self.free: dict[tuple[str, date], list[bool]] = {}
        self.refs: set[str] = set()
        self.past: list[_Past] = []

    def _sessions(self, room: Room) -> list[tuple[int, int]]:
        """A room's day as back-to-back sessions of its minimum length (at least an hour), the buffer between."""
        unit = max(60, math.ceil(room.min_hours * 4) * 15)
        opens = self.policy.open_time.hour * 60 + self.policy.open_time.minute
        closes = self.policy.close_time.hour * 60 + self.policy.close_time.minute
        out: list[tuple[int, int]] = []
        start = opens
        while start + unit <= closes:
            out.append((start, start + unit))
            start += unit + self.policy.buffer_minutes
        return out

    # -- planning ----------------------------------------------------------------------------------------------------

    def plan(self, count: int, progress: Callable[[float], None]) -> int:
        """Place `count` bookings: first how many days each has, then the longest placed first (a weekly series needs
        the same free session on eight days; single days fill the gaps), each given a few tries before it is booked
        as one day instead. Returns how many fit."""
        shapes = sorted((self._shape() for _ in range(count)), reverse=True)
        for n, shape in enumerate(shapes, 1):
            placed = any(self._place(*shape) for _ in range(_TRIES))
            if not placed and shape[0] > 1:
                any(self._place(1, "day") for _ in range(_TRIES))
            if n % 250 == 0:
                progress(n / count)
        self.past.sort(key=lambda p: (p.booked_at, p.booking.reference))
        return len(self.past)

    def _shape(self) -> tuple[int, str]:
        """How many days a booking has and how they follow each other."""
        rng, cap = self.rng, self.policy.max_days_per_booking
        kind = rng.random()
        if kind < 0.4:
            return 1, "day"
        if kind < 0.65:  # a run of opening days: a course, a conference
            return min(rng.randint(2, 5), cap), "run"
        return min(rng.randint(3, 8), cap), "weekly"  # the same weekday every week: a class, a club

    def _days(self, n: int, kind: str) -> list[date]:
        days = self.days
        first = self.rng.randrange(len(days))
        if kind != "weekly":
            return days[first : first + n] if first + n <= len(days) else []
        out: list[date] = []
        d = days[first]
        while len(out) < n and d <= days[-1]:
            if d in self.open_days:  # a week the venue is closed is skipped
                out.append(d)
            d += timedelta(days=7)
        return out if len(out) == n else []

    def _place(self, n: int, kind: str) -> bool:
        rng = self.rng
        room = rng.choices(self.rooms, self.weights)[0]
        days = self._days(n, kind)
        sessions = self.sessions[room.slug]
        if not days or not sessions:
            return False
        span = 2 if len(sessions) > 1 and rng.random() < 0.08 else 1  # now and then a double session
        first = rng.randrange(len(sessions) - span + 1)
        taken = range(first, first + span)
        if any(not (self.free.get((room.slug, d)) or [True] * len(sessions))[i] for d in days for i in taken):
            return False
        start = time(sessions[first][0] // 60, sessions[first][0] % 60)
        end = time(sessions[first + span - 1][1] // 60, sessions[first + span - 1][1] % 60)
        # Booked one to 45 days ahead, at any waking hour, within the booking window for the last day.
        lead = max(1, min(45, self.policy.max_days_ahead - 2 - (days[-1] - days[0]).days))
        booked_at = (
            datetime.combine(days[0], time(12), tzinfo=self.svc.settings.tz)
            - timedelta(days=rng.randint(1, lead), hours=rng.randint(-9, 4), minutes=rng.choice(range(0, 60, 5)))
        ).astimezone(UTC)
        req = self._request(room, days, start, end, "web" if rng.random() < 0.7 else "phone")
        result = bk.quote(self.svc, req, now=booked_at, check_calendar=False)  # the rules as at the booking
        if result.reasons:
            return False
        for d in days:
            free = self.free.setdefault((room.slug, d), [True] * len(sessions))
            for i in taken:
                free[i] = False
        self.past.append(self._sold(room, req, result.quote, booked_at))
        return True

    def _request(self, room: Room, days: list[date], start: time, end: time, channel: str) -> bk.BookingRequest:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        extras: dict[str, Any] | None = None
        if room.extras:
            choices = next(f.choices for f in room.extras if f.key == "set_choice")
            extras = {"show_name": f"{rng.choice(ORGS)} Radio", "set_choice": rng.choice(choices)}
        return bk.BookingRequest(
            room=room.slug,
            dates=tuple(days),
            start=start,
            end=end,
            customer_name=f"{first} {last}",
            customer_email=f"{first.lower()}.{last.lower().replace(chr(39), '')}@example.org".replace("á", "a"),
            customer_phone=f"604-555-{rng.randint(1000, 9999)}",
            party_size=rng.randint(1, room.capacity) if extras else None,
            extras=extras,
            channel=channel,
            agreement_version=self.policy.refund_policy_version if room.agreement_required else None,
            terms_version=self.svc.settings.terms_version,
        )

    def _id(self, prefix: str, n: int = 24) -> str:
        return prefix + "".join(self.rng.choice(_ID_CHARS) for _ in range(n))

    def _reference(self) -> str:
        while (ref := "RD" + "".join(self.rng.choice(REFERENCE_ALPHABET) for _ in range(6))) in self.refs:
            pass
        self.refs.add(ref)
        return ref

    def _sold(self, room: Room, req: bk.BookingRequest, quote: Quote, booked_at: datetime) -> _Past:
        rng, settings = self.rng, self.svc.settings
        web = req.channel == "web"
        lapsed = web and rng.random() < 0.03
        # Web customers pay within minutes; a phone caller pays from the emailed link within the day.
        paid_at = None if lapsed else booked_at + timedelta(minutes=rng.randint(2, 12) if web else rng.randint(20, 900))
        booking = Booking(
            reference=self._reference(),
            room_slug=room.slug,
            status=BookingStatus.CONFIRMED,
            channel=Channel(req.channel),
            start_time=f"{req.start:%H:%M}",
            end_time=f"{req.end:%H:%M}",
            customer_name=req.customer_name,
            customer_email=req.customer_email,
            customer_phone=req.customer_phone,
            party_size=req.party_size,
            extras=req.extras or {},
            amount_cents=quote.total_cents,
            discount_cents=quote.discount_cents,
            tax_cents=quote.tax_cents,
            tax_snapshot=quote.tax_snapshot,
            currency=settings.currency,
            pricing_snapshot={
                **quote.snapshot(),
                "discount_bands": [list(band) for band in self.policy.discount_bands],
                "discount_eligible": room.discount_eligible,
                **terms_snapshot(None),  # sold before the venue took damage deposits
            },
            policy_snapshot=policy_snapshot(self.policy),
            payment_intent_id=self._id("pi_"),
            agreement_version=req.agreement_version,
            agreement_accepted_at=booked_at if req.agreement_version else None,
            # Web customers accept the terms on the booking page, callers on the pay page before paying.
            terms_version=req.terms_version if web or paid_at else None,
            terms_accepted_at=booked_at if web else paid_at and paid_at - _ROUND,
            pay_token=self._id("", 24),
            created_by="customer" if web else rng.choice(_STAFF),
            created_at=booked_at,
            updated_at=booked_at,
        )
        prices = {leg.day: leg for leg in quote.legs}
        legs = [
            BookingLeg(
                booking_id=0,  # set once the booking is inserted
                day=w.day,
                starts_at=w.starts_at,
                ends_at=w.ends_at,
                state=LegState.CONFIRMED,
                price_cents=prices[w.day].total_cents,
                tax_cents=prices[w.day].tax_cents,
                calendar_id=room.calendar_id,
                event_id=bk.event_id_for(booking.reference, w.day) if paid_at else None,
                updated_at=paid_at or booked_at,
            )
            for w in leg_windows(req.slot(), self.policy)
        ]
        past = _Past(booking, legs, booked_at, paid_at)
        if paid_at is not None:
            booking.confirmed_at = booking.confirmation_sent_at = paid_at
            roll = rng.random()
            if roll < 0.065:  # the whole booking cancelled, at some notice
                self._cancel(past, 0)
            elif roll < 0.1 and len(legs) > 2:  # the last days of a run or a series
                self._cancel(past, len(legs) - rng.randint(1, 2))
        return past

    def _cancel(self, past: _Past, cancel_from: int) -> None:
        assert past.paid_at is not None
        earliest = past.paid_at + timedelta(hours=1)
        if cancel_from:  # after the last day still held has ended
            earliest = max(earliest, past.legs[cancel_from - 1].ends_at + timedelta(hours=1))
        minutes = int((past.legs[cancel_from].starts_at - earliest).total_seconds() // 60) - 120
        if minutes < 60:
            return
        at = earliest + timedelta(minutes=self.rng.randint(0, minutes))
        bands = bands_from_snapshot(past.booking.policy_snapshot)
        past.cancel_at, past.cancel_from = at, cancel_from
        past.refunds = [
            (leg, refund_for_leg(leg_start=leg.starts_at, paid_cents=leg.price_cents, already_refunded_cents=0,
                                 bands=bands, now=at))
            for leg in past.legs[cancel_from:]
        ]  # fmt: skip
        if past.refund_cents:
            past.refund_id = self._id("re_")

    # -- writing -----------------------------------------------------------------------------------------------------

    def write(self, progress: Callable[[float], None]) -> None:
        self._settle()
        self._stripe_objects()
        self._calendar_events()
        progress(0.3)
        with self.svc.session() as s:
            self._insert_bookings(s)
            progress(0.45)
            rows = _Rows()
            for past in self.past:
                self._rows_of(past, rows)
            for table, batch in rows.tables(lambda: self._id("msg_")):
                s.execute(sa.insert(table), batch)
            progress(0.8)
            _insert_audit(s, rows.audit)
        progress(1.0)

    def _hold(self, b: Booking) -> timedelta:
        settings = self.svc.settings
        return timedelta(
            minutes=settings.web_hold_start_minutes if b.channel == Channel.WEB else settings.phone_hold_minutes
        )

    def _settle(self) -> None:
        """Each booking's final state: a lapsed hold, cancelled days with their refunds, days over, its status."""
        for past in self.past:
            b = past.booking
            if past.paid_at is None:
                for leg in past.legs:
                    leg.state, leg.updated_at = LegState.CANCELLED, past.booked_at + self._hold(b) + _ROUND
                b.status = BookingStatus.EXPIRED
            else:
                refunds = {id(leg): q.refund_cents for leg, q in past.refunds}
                for leg in past.legs:
                    if id(leg) in refunds and past.cancel_at is not None:
                        leg.state, leg.refunded_cents, leg.updated_at = (
                            LegState.CANCELLED, refunds[id(leg)], past.cancel_at
                        )  # fmt: skip
                    else:
                        leg.state, leg.updated_at = LegState.COMPLETED, leg.ends_at + _ROUND
                b.status = bk.derive_status(past.legs)
            b.updated_at = max(leg.updated_at for leg in past.legs)

    def _stripe_objects(self) -> None:
        """Each booking's PaymentIntent, charge and refund as Stripe keeps them. No events: Stripe lists only the last
        30 days' (the deliveries we received are in webhook_event)."""
        for past in self.past:
            b = past.booking
            metadata = {
                "room": b.room_slug,
                "booking_dates": ",".join(leg.day.isoformat() for leg in past.legs),
                "booking_time": f"{b.start_time}-{b.end_time}",
                "customer_name": b.customer_name[:200],
                "customer_email": b.customer_email,
                "customer_phone": b.customer_phone,
                "booking_id": b.reference,
            }
            pi: dict[str, Any] = {
                "id": b.payment_intent_id, "object": "payment_intent", "amount": b.amount_cents,
                "amount_capturable": 0, "amount_received": 0, "capture_method": "automatic",
                "currency": b.currency.lower(), "status": "requires_payment_method", "metadata": metadata,
                "client_secret": f"{b.payment_intent_id}_secret_{self._id('', 25)}",
                "created": int(past.booked_at.timestamp()), "canceled_at": None, "cancellation_reason": None,
                "last_payment_error": None, "latest_charge": None, "livemode": False, "next_action": None,
                "payment_method": None, "payment_method_types": ["card"],
            }  # fmt: skip
            past.stripe["payment_intent"] = pi
            if past.paid_at is None:
                pi.update(status="canceled", canceled_at=int((past.booked_at + self._hold(b) + _ROUND).timestamp()))
                continue
            charge_id = self._id("ch_")
            pi.update(status="succeeded", amount_received=b.amount_cents, latest_charge=charge_id,
                      payment_method="pm_card_visa")  # fmt: skip
            past.stripe["charge"] = {
                "id": charge_id, "object": "charge", "amount": b.amount_cents, "amount_captured": b.amount_cents,
                "amount_refunded": 0, "balance_transaction": self._id("txn_"),
                "billing_details": {"address": None, "email": None, "name": None, "phone": None}, "captured": True,
                "created": int(past.paid_at.timestamp()), "currency": b.currency.lower(), "disputed": False,
                "livemode": False, "metadata": dict(metadata), "paid": True, "payment_intent": b.payment_intent_id,
                "payment_method": "pm_card_visa",
                "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
                "refunded": False, "status": "succeeded",
            }  # fmt: skip
            if past.refund_id and past.cancel_at is not None:
                past.stripe["refund"] = {
                    "id": past.refund_id, "object": "refund", "amount": past.refund_cents,
                    "balance_transaction": self._id("txn_"), "charge": charge_id,
                    "created": int(past.cancel_at.timestamp()), "currency": b.currency.lower(),
                    # The idempotency key names the cancelled days' ids: filled in once they have them.
                    "metadata": {"booking_id": b.reference, "origin": "cancellation", "reason": _CANCEL_REASON},
                    "payment_intent": b.payment_intent_id, "reason": "requested_by_customer", "status": "succeeded",
                }  # fmt: skip

    def _calendar_events(self) -> None:
        """One event per paid day on the room's calendar, as Google returns it; a cancelled day's event deleted."""
        by_calendar: dict[str, list[dict[str, Any]]] = {}
        for past in self.past:
            if past.paid_at is None:
                continue
            for leg in past.legs:
                assert leg.event_id is not None
                event = bk.event_body(self.svc, past.booking, leg, leg.event_id)
                eid = base64.urlsafe_b64encode(f"{leg.event_id} {leg.calendar_id}".encode()).decode().rstrip("=")
                event.update(
                    kind="calendar#event", status="confirmed", created=_rfc3339(past.paid_at),
                    updated=_rfc3339(past.paid_at), sequence=0, iCalUID=f"{leg.event_id}@google.com",
                    htmlLink=f"https://www.google.com/calendar/event?eid={eid}",
                    organizer={"email": leg.calendar_id, "self": True},
                    creator={"email": leg.calendar_id, "self": True},
                )  # fmt: skip
                if leg.state == LegState.CANCELLED and past.cancel_at is not None:
                    event.update(status="cancelled", updated=_rfc3339(past.cancel_at))
                digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
                event["etag"] = f'"{int(digest[:15], 16)}"'
                by_calendar.setdefault(leg.calendar_id, []).append(event)
        load = getattr(self.svc.calendar, "load")  # noqa: B009  (the sandbox's import, as sandbox_load uses it)
        for calendar_id, events in by_calendar.items():
            load(calendar_id, events)

    def _insert_bookings(self, s: Session) -> None:
        """Bookings and their days (the ids the other rows point at), then Stripe's side, whose refunds carry
        idempotency keys made of the days' ids."""
        for start in range(0, len(self.past), _BATCH):
            chunk = self.past[start : start + _BATCH]
            bookings = _table(Booking)
            ids = s.execute(
                sa.insert(bookings).returning(bookings.c.id, sort_by_parameter_order=True),
                [_columns(p.booking) for p in chunk],
            ).scalars()
            for past, booking_id in zip(chunk, ids, strict=True):
                past.booking.id = booking_id
                for leg in past.legs:
                    leg.booking_id = booking_id
            legs = [leg for p in chunk for leg in p.legs]
            table = _table(BookingLeg)
            leg_ids = s.execute(
                sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), [_columns(leg) for leg in legs]
            ).scalars()
            for leg, leg_id in zip(legs, leg_ids, strict=True):
                leg.id = leg_id
        for past in self.past:
            if "refund" in past.stripe:
                past.stripe["refund"]["metadata"]["idempotency_key"] = self._refund_key(past)
                past.stripe["charge"].update(
                    amount_refunded=past.refund_cents, refunded=past.refund_cents >= past.booking.amount_cents
                )
        load = getattr(self.svc.payments, "load")  # noqa: B009  (the sandbox's import, as sandbox_load uses it)
        for kind in ("payment_intent", "charge", "refund"):
            load(kind, [p.stripe[kind] for p in self.past if kind in p.stripe])

    def _refund_key(self, past: _Past) -> str:
        return bk.cancel_refund_key(past.booking.reference, [leg.id for leg, _ in past.refunds if leg.id is not None])

    def _rows_of(self, past: _Past, rows: _Rows) -> None:
        """Every row the saga, the worker and staff wrote for this booking, with its audit trail."""
        svc, b, legs = self.svc, past.booking, past.legs
        assert b.id is not None
        pi = b.payment_intent_id
        web = b.channel == Channel.WEB
        hold_ends = past.booked_at + self._hold(b)
        dates = [leg.day.isoformat() for leg in legs]
        rows.log(past.booked_at, b.created_by, "booking.hold.created", b, None, dates=dates,
                 time=f"{b.start_time}-{b.end_time}", amount_cents=b.amount_cents, channel=b.channel.value,
                 expires_at=hold_ends.isoformat())  # fmt: skip
        if web:
            rows.log(past.booked_at, b.created_by, "booking.terms.accepted", b, None, version=b.terms_version)
        rows.log(past.booked_at, b.created_by, "booking.payment_intent.created", b, pi, amount_cents=b.amount_cents)
        rows.ref("stripe", "payment_intent", str(pi), b, None, past.booked_at)
        buffer = timedelta(minutes=self.policy.buffer_minutes)
        for leg in legs:
            rows.claims.append(
                {"booking_id": b.id, "block_id": None, "leg_id": leg.id, "amendment_id": None,
                 "room_slug": b.room_slug, "starts_at": leg.starts_at, "ends_at": leg.ends_at,
                 "block_until": leg.ends_at + buffer, "created_at": past.booked_at,
                 **({"kind": ClaimKind.BOOKED, "expires_at": None, "active": leg.state != LegState.CANCELLED}
                    if past.paid_at else {"kind": ClaimKind.HOLD, "expires_at": hold_ends, "active": False})}
            )  # fmt: skip
        if past.paid_at is None:  # left on the pay page: the worker lets the hold go and cancels the payment
            rows.log(hold_ends + _ROUND, "worker", "booking.hold.expired", b, pi,
                     message="Unpaid hold released and its PaymentIntent cancelled")  # fmt: skip
            return
        paid = past.paid_at
        if web:  # reached the payment step: the short web hold becomes the full one
            reached = past.booked_at + _ROUND
            rows.log(reached, "customer", "booking.hold.extended", b, pi, before=hold_ends.isoformat(),
                     expires_at=(reached + timedelta(minutes=svc.settings.hold_minutes)).isoformat())  # fmt: skip
        else:
            rows.log(paid - _ROUND, "customer", "booking.terms.accepted", b, pi, version=b.terms_version,
                     via="pay page")  # fmt: skip
        rows.webhook(self._id("evt_"), "payment_intent.succeeded", past.stripe["payment_intent"], paid)
        rows.log(paid, "stripe-webhook", "booking.payment.succeeded", b, pi, amount=b.amount_cents)
        for leg in legs:
            rows.ref("google", "event", f"{leg.calendar_id}/{leg.event_id}", b, leg.id, paid)
            rows.log(paid, "stripe-webhook", "booking.event.created", b, pi, day=leg.day.isoformat(),
                     event_id=leg.event_id, calendar_id=leg.calendar_id)  # fmt: skip
        rows.log(paid, "stripe-webhook", "booking.confirmed", b, pi, days=dates, message="Booking confirmed")
        booked = [_copy(leg, LegState.CONFIRMED) for leg in legs]
        rows.email(b, "confirmation", f"{b.reference}-confirmation", paid,
                   lambda: emails.confirmation(svc.catalogue, svc.settings, b, booked))  # fmt: skip
        rows.log(paid, "stripe-webhook", "email.confirmation.sent", b, pi, to=b.customer_email)

        # What happened next, in time order: reminders, the cancellation, the worker moving days on.
        steps: list[tuple[datetime, int, str, int]] = []
        ahead = timedelta(hours=svc.settings.reminder_hours)
        for n, leg in enumerate(legs):
            due = leg.starts_at - ahead + _ROUND
            if due > paid and (leg.state != LegState.CANCELLED or (past.cancel_at and due < past.cancel_at)):
                steps.append((due, n, "remind", n))
            if leg.state == LegState.COMPLETED:
                steps += [(leg.starts_at + _ROUND, n, "start", n), (leg.ends_at + _ROUND, n, "end", n)]
        if past.cancel_at is not None:
            steps.append((past.cancel_at, -1, "cancel", past.cancel_from))
        states = [LegState.CONFIRMED] * len(legs)
        for at, _order, step, n in sorted(steps):
            if step == "remind":
                leg = legs[n]
                render = partial(emails.reminder, svc.catalogue, svc.settings, b, booked[n])
                rows.email(b, "reminder", emails.reminder_key(b.reference, leg.day), at, render)
                rows.log(at, "worker", "booking.reminder.queued", b, pi, day=leg.day.isoformat(), to=b.customer_email)
                rows.log(at, "worker", "email.reminder.sent", b, pi, to=b.customer_email)
            elif step == "cancel":
                states[n:] = [LegState.CANCELLED] * (len(legs) - n)
                self._cancelled(past, rows)
            else:
                states[n] = LegState.IN_PROGRESS if step == "start" else LegState.COMPLETED
                rows.log(at, "worker", "booking.legs.advanced", b, pi, status=_status_of(tuple(states)).value)

    def _cancelled(self, past: _Past, rows: _Rows) -> None:
        svc, b = self.svc, past.booking
        assert past.cancel_at is not None
        at, pi, actor = past.cancel_at, b.payment_intent_id, self.rng.choice(_STAFF)
        days = [leg for leg, _ in past.refunds]
        total, tax = past.refund_cents, 0
        if past.refund_id:
            key = self._refund_key(past)
            _net, tax = refund_split(total, b.amount_cents, b.tax_cents)
            rows.refunds.append(
                {"booking_id": b.id, "refund_id": past.refund_id, "payment_intent_id": pi, "idempotency_key": key,
                 "amount_cents": total, "tax_cents": tax, "currency": b.currency, "origin": "cancellation",
                 "reason": _CANCEL_REASON, "policy_quote_cents": total, "leg_ids": [leg.id for leg in days],
                 "actor": actor, "created_at": at}
            )  # fmt: skip
            rows.ref("stripe", "refund", past.refund_id, b, None, at)
            rows.log(at, actor, "booking.refund.cancellation", b, pi, refund_id=past.refund_id, amount_cents=total,
                     tax_cents=tax, reason=_CANCEL_REASON)  # fmt: skip
            rows.webhook(self._id("evt_"), "charge.refunded", past.stripe["charge"], at + _ROUND)
        rows.log(at, actor, "booking.cancelled", b, pi, days=[leg.day.isoformat() for leg in days], refund_cents=total,
                 reason=_CANCEL_REASON, quotes={str(leg.day): q.band for leg, q in past.refunds},
                 policy_refund_cents=None)  # fmt: skip
        ids = "-".join(str(leg.id) for leg in days)
        gone = [_copy(leg, LegState.CANCELLED) for leg in days]
        rows.email(b, "cancellation", f"{b.reference}-cancel-{ids}", at,
                   lambda: emails.cancellation(svc.catalogue, svc.settings, b, gone, total,
                                               refund_tax_cents=tax if total else 0))  # fmt: skip
        for leg in days:
            rows.log(at, actor, "booking.event.deleted", b, pi, event_id=leg.event_id, calendar_id=leg.calendar_id)
        rows.log(at, actor, "email.cancellation.sent", b, pi, to=b.customer_email)


def _insert_audit(
    s: Session, entries: list[tuple[datetime, int, str, str, int | None, str | None, dict[str, Any]]]
) -> None:
    """Append the audit rows in time order, each chained to the one before (as models.tables._chain_audit_row does
    for rows added through the ORM, under the same lock on PostgreSQL)."""
    table = _table(AuditLog)
    if s.get_bind().dialect.name == "postgresql":
        s.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_CHAIN_LOCK_KEY)))
    head = s.execute(sa.select(table.c.row_hash).order_by(table.c.id.desc()).limit(1)).scalar() or AUDIT_GENESIS_HASH
    entries.sort(key=lambda e: (e[0], e[1]))
    for start in range(0, len(entries), _BATCH * 5):
        batch = []
        for at, _seq, actor, action, booking_id, pi, payload in entries[start : start + _BATCH * 5]:
            payload = json.loads(json.dumps(payload))  # what the JSON column gives back
            row = {"at": at, "actor": actor, "action": action, "booking_id": booking_id, "payment_intent": pi,
                   "payload": payload, "prev_hash": head}  # fmt: skip
            head = row["row_hash"] = audit_row_hash(**row)
            batch.append(row)
        s.execute(sa.insert(table), batch)


def seed_history(
    svc: Services,
    *,
    count: int,
    first_day: date,
    last_day: date,
    seed: int = 11,
    progress: Callable[[float, str], None] | None = None,
) -> int:
    """Write `count` past bookings of a busy venue between `first_day` and `last_day` (venue dates), as the saga, the
    worker and staff would have left them; returns how many fit (fewer when the venue is full)."""
    progress = progress or (lambda _f, _m: None)
    history = _History(svc, random.Random(seed), first_day, last_day)
    made = history.plan(count, lambda f: progress(0.4 * f, f"{int(f * count)} past bookings planned"))
    history.write(lambda f: progress(0.4 + 0.6 * f, f"writing {made} past bookings"))
    return made
