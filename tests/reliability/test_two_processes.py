"""Two processes confirm, redeliver webhooks, cancel, expire and sync the same bookings at once on PostgreSQL: nothing
is lost and nothing is duplicated — each booking is confirmed once with one event per day and one confirmation
email, the sync cache has one row per object, Stripe's refunds and our RefundRecords match one to one, and the
invariants hold."""

from __future__ import annotations

import multiprocessing as mp
import time as wallclock
from collections import Counter
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from models.tables import AuditLog, Booking, CalendarEventCache, RefundRecord, StripeObjectCache
from services import booking as bk
from services.core.errors import DomainError, GatewayError
from services.gateways.base import all_pages
from services.reconciliation import reconcile, sync
from services.web import webhooks
from tests.conftest import NOW
from tests.reliability.flows import request
from tests.reliability.invariants import violations
from tests.reliability.stats import COUNTS, FLOWS

pytestmark = pytest.mark.postgres

DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))


def _retry(fn: Any, attempts: int = 60) -> Any:
    """A busy lease (the other process has the booking) is retried; any other domain error is an answer."""
    for _ in range(attempts):
        try:
            return fn()
        except sync.SyncBusy:
            wallclock.sleep(0.05)
        except GatewayError as exc:
            if "being processed" not in exc.message:
                return exc
            wallclock.sleep(0.05)
        except DomainError as exc:
            return exc
    return "gave up"


def _worker(args: tuple[str, str, int, Any, list[str], list[int]]) -> list[str]:
    data_dir, db_url, index, barrier, pis, to_cancel = args
    from services.core.context import build_services
    from services.core.settings import Settings
    from tests.conftest import Clock

    svc = build_services(Settings(data_dir=Path(data_dir), database_url=db_url), migrate=False)
    svc.clock = Clock(NOW + timedelta(minutes=40))
    order = pis if index == 0 else list(reversed(pis))
    log: list[str] = []
    barrier.wait(timeout=60)
    try:
        for round_ in range(2):
            for pi in order:
                log.append(f"confirm {pi}: {_retry(lambda pi=pi: bk.confirm_payment(svc, pi))}")
            events = all_pages(lambda after: svc.payments.list_events(limit=100, starting_after=after))
            for event in events if index == 0 else list(reversed(events)):
                row_id, needs = webhooks.record_event(svc, event)
                if needs:
                    _retry(lambda row_id=row_id: webhooks.process_event(svc, row_id, actor=f"proc-{index}"))
            for booking_id in to_cancel:
                log.append(f"cancel {booking_id}: {_retry(lambda b=booking_id: bk.cancel_booking(svc, b, actor='fd'))}")
            log.append(f"expire: {_retry(lambda: bk.expire_holds(svc))}")
            log.append(f"sync: {_retry(lambda: sync.sync(svc).line())}")
            log.append(f"reconcile: {_retry(lambda: reconcile.reconcile(svc).open_by_code)}")
    finally:
        svc.engine.dispose()
    return log


def test_two_processes_confirm_cancel_and_sync_the_same_bookings(pg_url: str, make_services: Any) -> None:
    FLOWS.add("two processes (PostgreSQL)")
    svc = make_services(pg_url)
    rooms = ("boardroom", "union-room", "workshop", "quiet-room", "gallery")
    started = [
        bk.start_booking(
            svc,
            request(
                room=room,
                dates=DAYS[: 1 + i % 3],
                start=time(9 + i % 3),
                end=time(11 + i % 3),
                customer_email=f"guest{i}@example.org",
            ),
            actor="customer",
        )
        for i, room in enumerate(rooms)
    ]
    # One more whose slot staff take before it is processed: Gate 2 refunds it (once, whoever gets there first).
    loser = bk.start_booking(svc, request(room="main-hall", start=time(10), end=time(13)), actor="customer")
    svc.calendar.insert_event(
        svc.catalogue.room("main-hall").calendar_id,
        {
            "summary": "Staff",
            "start": {"dateTime": f"{DAYS[0]}T11:00:00-07:00"},
            "end": {"dateTime": f"{DAYS[0]}T12:00:00-07:00"},
        },
    )
    # One unpaid web hold that lapses while they work (their clock is 40 minutes on: every web hold has lapsed, so
    # expire_holds races confirm_payment for the paid ones too).
    lapsing = bk.start_booking(svc, request(room="quiet-room", start=time(14), end=time(15)), actor="customer")
    for s in [*started, loser]:
        svc.payments.confirm_payment_intent(s.payment_intent)
    # The first booking is also cancelled by both processes (once confirmed).
    pis = [s.payment_intent for s in [*started, loser]]
    svc.engine.dispose()

    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        args = [(str(svc.settings.data_dir), pg_url, i, barrier, pis, [started[0].booking_id]) for i in range(2)]
        with ctx.Pool(2) as pool:
            logs = pool.map(_worker, args)
    COUNTS["concurrent processes"] += 2

    sync.sync(svc)
    reconcile.reconcile(svc)
    with svc.session() as s:
        confirmed = Counter(
            b for b in s.exec(select(AuditLog.booking_id).where(AuditLog.action == "booking.confirmed"))
        )
        created = Counter(
            (row.booking_id, row.payload.get("day"))
            for row in s.exec(select(AuditLog).where(AuditLog.action == "booking.event.created"))
        )
        records = list(s.exec(select(RefundRecord)))
        cached_events = [
            (r.calendar_id, r.event_id) for r in s.exec(select(CalendarEventCache)) if r.status != "cancelled"
        ]
        cached_stripe = list(s.exec(select(StripeObjectCache.id)))
    # Each paid booking confirmed exactly once (the Gate 2 loser never), each day's event created once.
    assert {b: n for b, n in confirmed.items()} == {s.booking_id: 1 for s in started}, (confirmed, logs)
    assert all(n == 1 for n in created.values()), created
    # One confirmation email per confirmed booking, one refund email for the loser.
    mails = Counter((m["booking_id"], m["kind"]) for m in svc.mail.messages(limit=10_000))
    assert all(mails[(s.booking_id, "confirmation")] == 1 for s in started), mails
    assert mails[(loser.booking_id, "auto_refund")] == 1, mails
    # Refunds: Stripe's and ours match one to one (the cancellation and the Gate 2 refund, once each).
    stripe_refunds = all_pages(lambda after: svc.payments.list_refunds(limit=100, starting_after=after))
    assert sorted(r["id"] for r in stripe_refunds) == sorted(r.refund_id for r in records)
    assert len(records) == 2 and len({r.refund_id for r in records}) == 2, records
    # The sync cache: one row per object on both sides.
    live = [
        (room.calendar_id, e["id"])
        for room in svc.catalogue.rooms
        for e in svc.calendar.list_events(room.calendar_id)["items"]
    ]
    assert sorted(cached_events) == sorted(live) and len(set(cached_events)) == len(cached_events)
    assert len(cached_stripe) == len(set(cached_stripe))
    # The lapsed hold was released once.
    with svc.session() as s:
        expired = s.exec(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.booking_id == lapsing.booking_id, AuditLog.action == "booking.hold.expired")
        ).one()
        status = s.get(Booking, lapsing.booking_id).status
    assert (expired, status) == (1, "EXPIRED")
    assert violations(svc) == []
