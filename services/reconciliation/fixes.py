"""What every one-click fix shares: the context it runs in, its plan, its result and its refusal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from models.tables import Booking, BookingLeg, Finding
from services.core.context import Services
from services.core.errors import DomainError
from services.rules.fmt import days_label

Amount = Literal["full", "policy", "difference"]


@dataclass
class FixResult:
    finding_id: int
    action: str
    ok: bool
    message: str  # one plain sentence for staff
    offer: str | None = None  # another action to offer instead (e.g. "refund" when the slot is taken)
    changed: bool = False  # something was written (Stripe, a calendar, mail, our records); False: nothing happened


class Refusal(DomainError):
    """The fix does not run: its condition no longer holds (or never did). Nothing was changed."""

    def __init__(self, message: str, offer: str | None = None) -> None:
        super().__init__(message)
        self.offer = offer


@dataclass(frozen=True)
class Options:
    """What the person clicking chose in the dialog."""

    note: str = ""
    reason: str = ""
    amount: Amount = "full"
    extras: dict[str, object] | None = None


@dataclass
class FixContext:
    """One fix of one finding: who clicks, when, and the booking the finding is about (None for a payment the old
    system made)."""

    svc: Services
    finding: Finding
    actor: str
    now: datetime
    opts: Options
    booking: Booking | None
    legs: list[BookingLeg] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Names the finding in idempotency keys: one fix per finding occurrence."""
        return f"fix{self.finding.id}"

    def offer(self, *candidates: str) -> str | None:
        """The first of these actions the finding offers."""
        return next((a for a in candidates if a in self.finding.actions), None)


@dataclass(frozen=True)
class Plan:
    """A fix worked out before it runs: the dialog shows `text`, the button runs `apply`."""

    text: str  # what applying will do, for the confirmation dialog
    apply: Callable[[], FixResult]


def slot_taken(conflicts: Sequence[str], ctx: FixContext) -> Refusal:
    """The refusal of a fix whose slot someone else holds now, offering the refund instead."""
    return Refusal(
        f"Nothing was created: the slot is taken now ({'; '.join(conflicts)}). Refund the customer instead?",
        offer=ctx.offer("refund", "cancel"),
    )


def days_text(days: Iterable[date]) -> str:
    """Days as a fix names them: at most 6, then '+N more'."""
    return days_label(days, limit=6)
