"""The audit trail: one row per state change, written in the same transaction as the change."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import Session

from models.tables import AuditLog, Booking

log = logging.getLogger("roomdesk")


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    at: datetime,
    booking: Booking | None = None,
    payment_intent: str | None = None,
    **payload: Any,
) -> AuditLog:
    """Add an audit row (dotted action name, e.g. `booking.gate2.conflict`) and log a line carrying the booking
    reference and PaymentIntent id, so one payment's whole story can be followed in the logs."""
    pi = payment_intent or (booking.payment_intent_id if booking else None)
    row = AuditLog(
        at=at,
        actor=actor,
        action=action,
        booking_id=booking.id if booking else None,
        payment_intent=pi,
        payload=_jsonable(payload),
    )
    session.add(row)
    message = payload.get("message") or action
    log.info(
        "%s booking=%s pi=%s actor=%s",
        message,
        booking.reference if booking else "-",
        pi or "-",
        actor,
        extra={"action": action},
    )
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
