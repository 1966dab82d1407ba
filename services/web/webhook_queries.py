"""Read models of the Stripe webhook deliveries: the failed ones the dashboard lists for a replay. No writes here
(services.web.webhooks receives, processes and replays them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import WebhookEvent
from services.core.context import Services


@dataclass(frozen=True)
class StoredEvent:
    """A stored delivery as the dashboard lists it."""

    id: int
    event_id: str
    type: str
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


def stored(row: WebhookEvent) -> StoredEvent:
    assert row.id is not None
    return StoredEvent(
        row.id, row.event_id, row.type, row.status, row.attempts, row.last_error, row.received_at, row.processed_at
    )


STUCK_AFTER = timedelta(minutes=10)  # a delivery still `received` this long after it arrived was cut off by a crash


def list_failed_events(svc: Services, *, limit: int = 200) -> list[StoredEvent]:
    """Deliveries whose processing failed, or that a crash left half-done, oldest first: what the replay button
    works through."""
    stuck_before = svc.now() - STUCK_AFTER
    with svc.read_session() as s:
        rows = s.exec(
            select(WebhookEvent)
            .where(
                sa.or_(
                    col(WebhookEvent.status) == "failed",
                    sa.and_(col(WebhookEvent.status) == "received", col(WebhookEvent.received_at) < stuck_before),
                )
            )
            .order_by(col(WebhookEvent.received_at), col(WebhookEvent.id))
            .limit(limit)
        )
        return [stored(r) for r in rows]
