"""Demo data: about 150 bookings over the past 30 and next 60 days, made by driving the booking service, with
faults injected into the sandbox gateways so that every incident of seed 000 appears at least once."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import select

from models.tables import BlockKind, Booking, LegState
from services import booking as bk
from services.booking import invoices
from services.core.context import Services
from services.core.errors import DomainError
from services.gateways.faults import Faults
from services.rules.availability import is_open, observed_holiday

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
    bookings: int = 0
    refused: int = 0
    incidents: dict[str, str] = field(default_factory=dict)  # incident → booking reference

    def line(self) -> str:
        return f"{self.bookings} bookings, {len(self.incidents)} incidents ({self.refused} refused attempts retried)"


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
    svc: Services, *, seed: int = 7, count: int = 150, progress: Callable[[float, str], None] | None = None
) -> DemoReport:
    """Fill an empty sandbox with realistic bookings and one of each incident. Deterministic for a given day."""
    rng = random.Random(seed)
    report = DemoReport()
    real_now = svc.now()
    today = real_now.astimezone(svc.settings.tz).date()
    rooms = list(svc.catalogue.bookable_rooms)
    progress = progress or (lambda _f, _m: None)
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
            if report.bookings % 10 == 0:
                progress(report.bookings / count, f"{report.bookings} bookings made")

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

        progress(0.8, "injecting incidents")

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
    progress(1.0, report.line())
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
