"""One booking's saga runs in one process at a time: a short compare-and-set lease on the booking row.

Every use case that changes a booking after its creation (confirm, cancel, expire, overrides, remediation, webhooks)
takes it through `lease()`, and a booking that is busy raises `BookingBusy` — one behaviour everywhere: the caller
says "try again in a minute" (the webhook answers 503 so Stripe retries)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from models.tables import Booking
from services.core.context import Services
from services.core.errors import BookingBusy

LEASE = timedelta(minutes=2)


def try_acquire(svc: Services, booking_id: int) -> bool:
    """Take the lease if nobody holds it (or theirs ran out). It runs on the wall clock, not the business `now`
    (which may be a demo's past or a test's fixed time)."""
    now = datetime.now(UTC)
    with svc.session() as s:
        res = s.execute(
            sa.update(Booking)
            .where(col(Booking.id) == booking_id)
            .where(sa.or_(col(Booking.lease_until).is_(None), col(Booking.lease_until) < now))
            .values(lease_until=now + LEASE)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


def release(svc: Services, booking_id: int) -> None:
    with svc.session() as s:
        s.execute(sa.update(Booking).where(col(Booking.id) == booking_id).values(lease_until=None))


@contextmanager
def lease(svc: Services, booking_id: int) -> Iterator[None]:
    """Hold the booking for the block; raises BookingBusy when another process holds it."""
    if not try_acquire(svc, booking_id):
        raise BookingBusy()
    try:
        yield
    finally:
        release(svc, booking_id)
