"""Read models of the outbox: what the dashboard lists and counts, and the clauses that say which emails are due,
waiting or need a person (services.notify.outbox, the writer, sends by the same clauses). No writes here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import Booking, EmailOutbox
from services.core.context import Services
from services.core.errors import NotFound


def due(now: datetime) -> sa.ColumnElement[bool]:
    """Never tried and not deferred, or failed for a transient reason with its retry time reached."""
    next_at = col(EmailOutbox.next_attempt_at)
    return sa.or_(
        sa.and_(col(EmailOutbox.status) == "queued", sa.or_(next_at.is_(None), next_at <= now)),
        sa.and_(col(EmailOutbox.status).in_(("failed", "sending")), next_at.is_not(None), next_at <= now),
    )


def waiting() -> sa.ColumnElement[bool]:
    """Not sent yet and still to be tried by itself (now or at its next attempt time)."""
    return sa.or_(
        col(EmailOutbox.status).in_(("queued", "sending")),
        sa.and_(col(EmailOutbox.status) == "failed", col(EmailOutbox.next_attempt_at).is_not(None)),
    )


def needs_attention() -> sa.ColumnElement[bool]:
    """Refused for good: failed with no automatic retry left."""
    return sa.and_(col(EmailOutbox.status) == "failed", col(EmailOutbox.next_attempt_at).is_(None))


def count(svc: Services, where: sa.ColumnElement[bool]) -> int:
    """How many outbox rows match `where` (one of the clauses above)."""
    with svc.read_session() as s:
        return int(s.exec(select(sa.func.count()).select_from(EmailOutbox).where(where)).one())


def count_due(svc: Services, *, now: datetime) -> int:
    """How many emails deliver_due would send now."""
    return count(svc, due(now))


@dataclass(frozen=True)
class OutboxEmail:
    """An outbox row as the dashboard lists it."""

    id: int
    status: str  # queued | sent | failed
    kind: str
    booking_reference: str | None
    to: str
    subject: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    text: str = ""
    html: str | None = None

    @property
    def needs_attention(self) -> bool:
        """Failed with no automatic retry left: a person has to look."""
        return self.status == "failed" and self.next_attempt_at is None

    @property
    def state(self) -> str:
        """queued | sent | failed (will retry) | needs_attention."""
        if self.status == "sending":
            return "queued"
        return "needs_attention" if self.needs_attention else self.status


OUTBOX_STATES = ("queued", "failed", "needs_attention", "sent", "withdrawn")


# OutboxEmail's fields up to next_attempt_at, in order: what list_outbox reads.
_LISTED = (
    col(EmailOutbox.id),
    col(EmailOutbox.status),
    col(EmailOutbox.kind),
    col(Booking.reference),
    col(EmailOutbox.to),
    col(EmailOutbox.subject),
    col(EmailOutbox.attempts),
    col(EmailOutbox.last_error),
    col(EmailOutbox.created_at),
    col(EmailOutbox.sent_at),
    col(EmailOutbox.next_attempt_at),
)


def _email(row: EmailOutbox, reference: str | None) -> OutboxEmail:
    assert row.id is not None
    return OutboxEmail(
        row.id,
        row.status,
        row.kind,
        reference,
        row.to,
        row.subject,
        row.attempts,
        row.last_error,
        row.created_at,
        row.sent_at,
        row.next_attempt_at,
        row.text,
        row.html,
    )


def outbox_counts(svc: Services) -> dict[str, int]:
    """How many emails are in each state (OUTBOX_STATES), for the dashboard's counters."""
    state = sa.case(
        (needs_attention(), "needs_attention"),
        (col(EmailOutbox.status) == "sending", "queued"),  # mid-send for a moment: still waiting, as far as staff see
        else_=col(EmailOutbox.status),
    )
    with svc.read_session() as s:
        found = dict(s.exec(select(state, sa.func.count()).group_by(state)).all())
    return {name: int(found.get(name, 0)) for name in OUTBOX_STATES}


def list_outbox(
    svc: Services,
    *,
    states: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    search: str = "",
    limit: int = 500,
) -> list[OutboxEmail]:
    """Emails newest first, without their bodies, optionally in some states (OUTBOX_STATES), of some kinds and
    matching `search` (booking reference, address or subject, any case)."""
    # The listed columns only: the bodies (years of emails are tens of megabytes) stay in the database.
    query = sa.select(*_LISTED).join(Booking, col(Booking.id) == col(EmailOutbox.booking_id), isouter=True)
    if kinds:
        query = query.where(col(EmailOutbox.kind).in_(list(kinds)))
    if states is not None:
        wanted: list[sa.ColumnElement[bool]] = []
        if "queued" in states:
            wanted.append(col(EmailOutbox.status).in_(("queued", "sending")))
        if "sent" in states:
            wanted.append(col(EmailOutbox.status) == "sent")
        if "failed" in states:
            wanted.append(sa.and_(col(EmailOutbox.status) == "failed", col(EmailOutbox.next_attempt_at).is_not(None)))
        if "needs_attention" in states:
            wanted.append(needs_attention())
        if "withdrawn" in states:
            wanted.append(col(EmailOutbox.status) == "withdrawn")
        query = query.where(sa.or_(sa.false(), *wanted))
    if term := search.strip():
        like = f"%{term.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(col(Booking.reference)).like(like),
                sa.func.lower(col(EmailOutbox.to)).like(like),
                sa.func.lower(col(EmailOutbox.subject)).like(like),
            )
        )
    query = query.order_by(col(EmailOutbox.created_at).desc(), col(EmailOutbox.id).desc()).limit(limit)
    with svc.read_session() as s:
        return [OutboxEmail(*row) for row in s.execute(query)]


def get_email(svc: Services, outbox_id: int) -> OutboxEmail:
    """One email with its text and HTML, for the preview."""
    with svc.read_session() as s:
        row = s.get(EmailOutbox, outbox_id)
        if row is None:
            raise NotFound(f"No email #{outbox_id} in the outbox")
        booking = s.get(Booking, row.booking_id) if row.booking_id else None
        return _email(row, booking.reference if booking else None)
