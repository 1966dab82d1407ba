"""Customer emails through an outbox: a row is written first, then sent; a mail outage leaves it queued, never lost.

A row is `queued` (never tried), `sending` (claimed by one process, see deliver), `sent`, or `failed`. A failed row
with a `next_attempt_at` is retried from then on (transient errors: backoff, never giving up); a failed row without
one was refused for good (a 5xx such as "mailbox unknown") and needs a person: `retry_now` after fixing the cause.
`deliver_due` is what the worker runs. What the dashboard lists and counts is services.notify.queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import ACTIVE_LEG_STATES, Amendment, Booking, BookingLeg, EmailOutbox, LegState, OutboxStatus
from services.core import audit
from services.core.context import Services
from services.core.errors import GatewayError, NotFound
from services.gateways.base import OutgoingEmail
from services.notify import emails, queries
from services.rules.fmt import day_label

log = logging.getLogger("roomdesk.notify")

# After the 1st, 2nd, 3rd, 4th failed attempt; then every RETRY_EVERY for as long as the outage lasts.
RETRY_AFTER = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
RETRY_EVERY = timedelta(hours=4)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed send before the next try (quick for a blip, then steady)."""
    return RETRY_AFTER[attempts - 1] if 1 <= attempts <= len(RETRY_AFTER) else RETRY_EVERY


def queue(
    session: Session,
    booking: Booking,
    *,
    kind: str,
    mail: emails.RenderedEmail,
    key: str,
    now: datetime,
    to: str | None = None,
) -> EmailOutbox:
    """Add an email to the outbox once per idempotency key; to the booking's customer unless `to` says otherwise
    (an invoice's billing contact)."""
    existing = session.exec(select(EmailOutbox).where(EmailOutbox.idempotency_key == key)).first()
    if existing:
        return existing
    row = EmailOutbox(
        booking_id=booking.id,
        kind=kind,
        to=to or booking.customer_email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        idempotency_key=key,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


# While one process sends an email the row is `sending`; if that process dies mid-send, the row is due again after
# this long (the email may then go out twice, which beats never).
SEND_LEASE = timedelta(minutes=10)


def deliver(svc: Services, outbox_id: int, *, now: datetime, actor: str = "system") -> bool:
    """Send one outbox email now; records the outcome on the row and in the audit log. True when it is sent (by this
    call or, a moment earlier, by another process). A confirmation goes out with the .ics of the booked days as
    they stand when sent (a service account cannot invite attendees, so the file is how the customer gets them).

    No database transaction is open while the mail server is talked to (on SQLite a transaction holds the whole
    database's write lock): the email is claimed in one short transaction, sent, and the outcome recorded in a
    second one."""
    return _send(svc, outbox_id, now=now, actor=actor) in ("sent", "taken-sent")


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Not sent, and not being sent by another process right now (a `sending` row past its lease is fair game)."""
    status, next_at = col(EmailOutbox.status), col(EmailOutbox.next_attempt_at)
    return sa.and_(status != "sent", sa.or_(status != "sending", next_at.is_(None), next_at <= now))


def _send(
    svc: Services, outbox_id: int, *, now: datetime, actor: str, due_only: bool = False
) -> Literal["sent", "failed", "withdrawn", "taken", "taken-sent"]:
    """Claim (compare-and-set on `attempts` → `sending`), send outside any transaction, record the outcome. Two
    processes (the request that queued the email and the worker, or two workers) never both send it."""
    with svc.session() as s:
        row = s.get(EmailOutbox, outbox_id)
        if row is None:
            raise NotFound(f"No email #{outbox_id} in the outbox")
        if row.status == "sent":
            return "taken-sent"
        if row.kind == "reminder" and (moot := _reminder_moot(s, row, now)):
            # Queued while the day was booked, then held up (a mail outage) until the day was cancelled or began:
            # it must not go out. Kept as withdrawn, with the reason, so the outbox still shows what happened.
            if row.status != OutboxStatus.WITHDRAWN:
                booking = s.get(Booking, row.booking_id) if row.booking_id else None
                row.status, row.next_attempt_at = OutboxStatus.WITHDRAWN, None
                row.last_error = f"Not sent: {moot}"
                audit.record(s, "email.reminder.withdrawn", actor=actor, at=now, booking=booking, reason=moot)
            return "withdrawn"
        claim = (
            sa.update(EmailOutbox)
            .where(col(EmailOutbox.id) == outbox_id)
            .where(col(EmailOutbox.attempts) == row.attempts)
            .where(_claimable(now))
            .values(attempts=row.attempts + 1, status="sending", next_attempt_at=now + SEND_LEASE)
            .execution_options(synchronize_session=False)
        )
        if due_only:
            claim = claim.where(queries.due(now))
        if not s.execute(claim).rowcount:  # type: ignore[attr-defined]
            return "taken"
        s.refresh(row)
        attempt = row.attempts
        booking = s.get(Booking, row.booking_id) if row.booking_id else None
        attachments = []
        if row.kind == "confirmation" and booking is not None:
            legs = [
                leg
                for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id))
                if leg.state in ACTIVE_LEG_STATES
            ]
            attachments.append(emails.calendar_attachment(booking, legs, svc.catalogue))
        elif row.kind == "changed" and booking is not None:  # the updated .ics: the booking as it is now
            legs = [
                leg
                for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id))
                if leg.state in ACTIVE_LEG_STATES
            ]
            change = s.exec(
                select(Amendment).where(
                    Amendment.booking_id == booking.id, Amendment.number == emails.change_number(row.idempotency_key)
                )
            ).first()
            note = emails.ChangeNote(
                number=change.number if change else 1, lines=(), removed_days=emails.removed_days(change)
            )
            attachments.append(emails.calendar_attachment(booking, legs, svc.catalogue, note))
        email = OutgoingEmail(
            to=row.to,
            subject=row.subject,
            text=row.text,
            html=row.html,
            kind=row.kind,
            booking_id=row.booking_id,
            idempotency_key=row.idempotency_key,
            attachments=attachments,
        )
    error: str | None = None
    transient = False
    message_id = None
    try:
        message_id = svc.mail.send(email)
    except GatewayError as exc:
        error, transient = exc.message, exc.transient
    except Exception:
        # Not a mail server's answer but a fault of ours: whether the email left is unknown, so it is not retried
        # automatically (it could go out twice); staff see it under "needs attention".
        log.exception("Sending email #%s crashed", outbox_id)
        error = "Unexpected error while sending (details in the server log); it may or may not have left"
    with svc.session() as s:
        row = s.get(EmailOutbox, outbox_id)
        assert row is not None
        if row.attempts != attempt or row.status != "sending":
            # Our lease ran out and another process took the email over; its outcome stands.
            log.warning("Email #%s: outcome of attempt %s arrived after the lease; not recorded", outbox_id, attempt)
            return "taken"
        booking = s.get(Booking, row.booking_id) if row.booking_id else None
        if error is not None:
            return _failed(s, row, booking, error, transient=transient, now=now, actor=actor)
        row.message_id = message_id
        row.status = OutboxStatus.SENT
        row.sent_at = now
        row.last_error = None
        row.next_attempt_at = None
        if booking is not None and row.kind == "confirmation":
            booking.confirmation_sent_at = now
        audit.record(s, f"email.{row.kind}.sent", actor=actor, at=now, booking=booking, to=row.to)
        return "sent"


def _reminder_moot(session: Session, row: EmailOutbox, now: datetime) -> str | None:
    """Why a reminder must not go out any more (its day was cancelled or refunded, or has begun — by the clock too:
    `send-mail` retries without moving days to in-progress); None if it may."""
    day = emails.reminder_day(row.idempotency_key)
    if day is None or row.booking_id is None:
        return None
    leg = session.exec(select(BookingLeg).where(BookingLeg.booking_id == row.booking_id, BookingLeg.day == day)).first()
    if leg is not None and leg.state == LegState.CONFIRMED and leg.starts_at > now:
        return None
    if leg is not None and leg.state in ACTIVE_LEG_STATES:
        return f"{day_label(day)} has begun"
    return f"{day_label(day)} is no longer booked"


def _failed(
    session: Session,
    row: EmailOutbox,
    booking: Booking | None,
    error: str,
    *,
    transient: bool,
    now: datetime,
    actor: str,
) -> Literal["failed"]:
    """Record a failed attempt. A transient error is retried until it goes through; a refusal (bad address, 5xx)
    would only be refused again, so it waits for a person (the dashboard's Retry now)."""
    row.status = OutboxStatus.FAILED
    row.last_error = error[:500]
    row.next_attempt_at = now + backoff(row.attempts) if transient else None
    audit.record(
        session,
        f"email.{row.kind}.failed",
        actor=actor,
        at=now,
        booking=booking,
        error=error,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        message=f"{_kind_label(row.kind)} email failed" + ("; will try again" if transient else "; needs attention"),
    )
    return "failed"


def _kind_label(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


# --------------------------------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class DeliveryReport:
    """One deliver_due run: what went out, what failed this time, and what is left unsent after it."""

    sent: int = 0
    failed: int = 0
    still_queued: int = 0  # unsent, will be tried again automatically (now or at its next attempt time)
    needs_attention: int = 0  # refused for good: waits for staff

    def line(self) -> str:
        return f"emails {self.sent} sent, {self.failed} failed, {self.still_queued} waiting" + (
            f", {self.needs_attention} need attention" if self.needs_attention else ""
        )


def deliver_due(
    svc: Services,
    *,
    now: datetime,
    actor: str = "worker",
    limit: int = 100,
    progress: Callable[[float, str], None] | None = None,
) -> DeliveryReport:
    """Send every email that is due, oldest first, each in its own transaction. Safe to run in several processes
    at once: each email is claimed before it is sent (see _send). Audit mode sends nothing (read-only)."""
    oldest_due = (
        select(EmailOutbox.id)
        .where(queries.due(now))
        .order_by(col(EmailOutbox.created_at), col(EmailOutbox.id))
        .limit(limit)
    )
    with svc.session() as s:
        ids = [] if svc.settings.audit_mode else [row_id for row_id in s.exec(oldest_due) if row_id is not None]
    sent = failed = 0
    for i, row_id in enumerate(ids):
        if progress:
            progress(i / len(ids), f"email {i + 1} of {len(ids)}")
        try:
            # Claimed only if still due: another worker may have sent it since the list was made.
            outcome = _send(svc, row_id, now=now, actor=actor, due_only=True)
        except Exception:
            # The database, most likely: nothing was committed past the claim, so the email is due again once its
            # lease runs out. One email's trouble must not hold up the others.
            log.exception("Email #%s could not be delivered", row_id)
            failed += 1
            continue
        sent += outcome == "sent"
        failed += outcome == "failed"
    if progress and ids:
        progress(1.0, "done")
    return DeliveryReport(
        sent, failed, queries.count(svc, queries.waiting()), queries.count(svc, queries.needs_attention())
    )


def retry_now(svc: Services, outbox_id: int, *, actor: str, now: datetime) -> queries.OutboxEmail:
    """Staff's Retry now: send one unsent email at once, whatever its retry time (also one refused for good, once
    the cause is fixed). A booking's corrected address is used. Returns the email as it stands afterwards."""
    with svc.session() as s:
        row = s.get(EmailOutbox, outbox_id)
        if row is None:
            raise NotFound(f"No email #{outbox_id} in the outbox")
        if row.status != "sent":
            booking = s.get(Booking, row.booking_id) if row.booking_id else None
            changed = bool(booking and booking.customer_email and booking.customer_email != row.to)
            audit.record(
                s,
                f"email.{row.kind}.retry",
                actor=actor,
                at=now,
                booking=booking,
                to=booking.customer_email if changed and booking else row.to,
                previous_to=row.to if changed else None,
                attempts=row.attempts,
                message=f"{_kind_label(row.kind)} email: retry now",
            )
            if changed and booking is not None:
                row.to = booking.customer_email
            resend = True
        else:
            resend = False
    if resend:
        _send(svc, outbox_id, now=now, actor=actor)
    return queries.get_email(svc, outbox_id)
