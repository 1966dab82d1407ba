"""Reminder emails: one per booked day, `REMINDER_HOURS` before it, with the link to the customer's manage page.

Which days are due is the pure rule in services.rules.reminders; this module reads the candidates (booked days
starting within the window), leaves out those whose reminder is already in the outbox, and queues and sends the rest.
Each reminder's outbox idempotency key is the booking's reference and the day, so a day is reminded once whatever
runs how often (the worker every round, `send-reminders` by hand, two workers at once). A reminder queued during a
mail outage is not sent if its day is cancelled before the outage ends (see outbox).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import Booking, BookingLeg, EmailOutbox, LegState
from services.core import audit
from services.core.context import Services
from services.notify import emails, outbox
from services.rules.reminders import ReminderCandidate, due_reminders

log = logging.getLogger("roomdesk.notify")


@dataclass(frozen=True)
class DueReminder:
    booking_id: int
    leg_id: int
    reference: str
    day: date
    starts_at: datetime
    to: str

    @property
    def key(self) -> str:
        return emails.reminder_key(self.reference, self.day)


@dataclass(frozen=True)
class ReminderReport:
    """One send_reminders run: reminders sent now, those queued that the outbox will try again, and those that could
    not be composed (tried again next round)."""

    sent: list[DueReminder] = field(default_factory=list)
    queued: list[DueReminder] = field(default_factory=list)
    failed: list[DueReminder] = field(default_factory=list)

    def line(self) -> str:
        text = f"reminders {len(self.sent)} sent" + (f", {len(self.queued)} queued to retry" if self.queued else "")
        return text + (f", {len(self.failed)} could not be composed (see the log)" if self.failed else "")


def due(svc: Services, *, now: datetime) -> list[DueReminder]:
    """The booked days whose reminder is due at `now` and not yet in the outbox, earliest first."""
    hours = svc.settings.reminder_hours
    window = (
        select(BookingLeg, Booking)
        .join(Booking, col(Booking.id) == col(BookingLeg.booking_id))
        .where(col(BookingLeg.state) == LegState.CONFIRMED)
        .where(col(BookingLeg.starts_at) > now, col(BookingLeg.starts_at) <= now + timedelta(hours=hours))
    )
    with svc.session() as s:
        rows = {leg.id: (leg, b) for leg, b in s.exec(window) if leg.id is not None}
        candidates = [
            ReminderCandidate(key=leg_id, starts_at=leg.starts_at, booked_at=b.created_at)
            for leg_id, (leg, b) in rows.items()
        ]
        found = []
        for c in due_reminders(candidates, now, hours):
            leg, b = rows[c.key]
            assert b.id is not None
            found.append(DueReminder(b.id, c.key, b.reference, leg.day, leg.starts_at, b.customer_email))
        keys = [r.key for r in found]
        queued = set(s.exec(select(EmailOutbox.idempotency_key).where(col(EmailOutbox.idempotency_key).in_(keys))))
    return [r for r in found if r.key not in queued]


def send_reminders(svc: Services, *, now: datetime, actor: str = "worker") -> ReminderReport:
    """Queue and send every due reminder, each in its own transaction. Audit mode sends nothing (read-only)."""
    if svc.settings.audit_mode:
        return ReminderReport()
    sent: list[DueReminder] = []
    queued: list[DueReminder] = []
    skipped: list[DueReminder] = []
    for r in due(svc, now=now):
        try:
            row_id = _queue(svc, r, now=now, actor=actor)
        except sa.exc.IntegrityError:  # another process queued this very reminder a moment ago: it sends it
            continue
        except Exception:
            # One reminder that cannot be composed (its room left the catalogue…) must not stop the others, nor the
            # worker's round after it (due emails, sync, reconciliation): logged, tried again next round.
            log.exception("Reminder for %s on %s could not be queued", r.reference, r.day)
            skipped.append(r)
            continue
        if row_id is None:
            continue
        (sent if outbox.deliver(svc, row_id, now=now, actor=actor) else queued).append(r)
    if queued:
        log.warning("%s reminder(s) could not be sent now; the outbox tries again", len(queued))
    return ReminderReport(sent, queued, skipped)


def _queue(svc: Services, r: DueReminder, *, now: datetime, actor: str) -> int | None:
    """Put one reminder in the outbox (once per key); None when its day was cancelled since the list was made."""
    with svc.session() as s:
        b, leg = s.get(Booking, r.booking_id), s.get(BookingLeg, r.leg_id)
        if b is None or leg is None or leg.state != LegState.CONFIRMED:
            return None
        mail = emails.reminder(svc.catalogue, svc.settings, b, leg)
        row = outbox.queue(s, b, kind="reminder", mail=mail, key=r.key, now=now)
        audit.record(s, "booking.reminder.queued", actor=actor, at=now, booking=b, day=leg.day, to=b.customer_email)
        return row.id
