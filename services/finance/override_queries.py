"""Read models of the refunds above the policy (services.finance.overrides writes them): the queue and the history,
each override's state in words, and the signing rules — who may sign which slot now, the two-signature rules shared
with damage claims (services.finance.two_signatures) in an override's words — that the writer enforces and the page
uses to disable a button that would be refused. No writes here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlmodel import col, select

from models.tables import Booking, BookingLeg, RefundOverride
from services.core.context import Services
from services.core.errors import DomainError
from services.finance import two_signatures as ts
from services.finance.two_signatures import APPROVER_ROLES, ROLE_WORDS, SLOTS, person, same_person, signer

__all__ = ["APPROVER_ROLES", "ROLE_WORDS", "SLOTS", "person", "same_person", "signer"]
# Still needs someone: waiting for signatures, executing, or failed (an approver retries or rejects it).
OPEN = ("pending", "approved", "failed")
DONE = ("executed", "rejected", "withdrawn")
MAX_TEXT = 500


@dataclass(frozen=True)
class OverrideView:
    """An override with what the queue shows next to it: the booking's reference, room and days."""

    row: RefundOverride
    reference: str
    room_name: str
    days: list[date]

    @property
    def id(self) -> int:
        assert self.row.id is not None
        return self.row.id

    @property
    def extra_cents(self) -> int:
        """How much more than the policy is asked for."""
        return self.row.requested_refund_cents - self.row.policy_refund_cents

    def signer(self, slot: str) -> str | None:
        return signer(self.row, slot)

    def completes(self, slot: str) -> bool:
        """Signing `slot` would be the second signature, which executes the override at once."""
        return ts.completes(self.row, slot)


def check_approver(role: str, doing: str) -> None:
    """NotAllowed unless the role may decide on overrides (a manager, finance or an admin)."""
    ts.check_approver(role, f"{doing} a refund above the policy")


def status_sentence(row: RefundOverride) -> str:
    """Why an override no longer takes signatures or decisions."""
    return {
        "approved": f"Override #{row.id} has both approvals and is being executed",
        "executed": f"Override #{row.id} was already executed: nothing to do",
        "failed": f"Override #{row.id} has both approvals but failed ({row.error}); retry or reject it",
        "rejected": f"Override #{row.id} was rejected by {row.decided_by}",
        "withdrawn": f"Override #{row.id} was withdrawn by {row.decided_by}",
    }.get(row.status, f"Override #{row.id} is {row.status}")


# --------------------------------------------------------------------------------------------------- sign


def signing_problem(row: RefundOverride, *, actor: str, role: str, slot: str | None = None) -> str | None:
    """Why this person, in this role, cannot sign now (None: they can). The page disables its buttons with it."""
    try:
        slot_for(row, actor, role, slot)
    except DomainError as exc:
        return exc.message
    return None


def open_slots(row: RefundOverride, role: str) -> list[str]:
    """The unsigned slots this role may sign: its own, or either for an admin."""
    return ts.open_slots(row, role)


def slot_for(row: RefundOverride, actor: str, role: str, slot: str | None) -> str:
    """The slot this person signs now; NotAllowed or InvalidState saying why they cannot."""
    return ts.slot_for(
        row,
        actor,
        role,
        slot,
        what=f"override #{row.id}",
        doing="approve a refund above the policy",
        closed=status_sentence(row),
    )


def status_text(row: RefundOverride) -> str:
    """The override's state in plain words, for tables."""
    if row.status == "pending":
        return ts.waiting_text(row)
    return {
        "approved": "Approved, executing",
        "executed": "Executed",
        "failed": f"Failed: {row.error}",
        "rejected": f"Rejected by {row.decided_by}",
        "withdrawn": f"Withdrawn by {row.decided_by}",
    }.get(row.status, row.status) + (f": {row.decision_note}" if row.decision_note else "")


def list_overrides(
    svc: Services, *, booking_id: int | None = None, statuses: Sequence[str] | None = None, limit: int = 200
) -> list[OverrideView]:
    """Overrides (newest request first) with their booking's reference, room and days."""
    with svc.read_session() as s:
        q = select(RefundOverride, Booking).join(Booking, col(Booking.id) == RefundOverride.booking_id)
        if booking_id is not None:
            q = q.where(RefundOverride.booking_id == booking_id)
        if statuses is not None:
            q = q.where(col(RefundOverride.status).in_(list(statuses)))
        pairs = list(s.exec(q.order_by(col(RefundOverride.requested_at).desc(), col(RefundOverride.id).desc())))
        pairs = pairs[:limit]
        ids = {i for row, _ in pairs for i in row.leg_ids}
        days = {leg.id: leg.day for leg in s.exec(select(BookingLeg).where(col(BookingLeg.id).in_(ids)))} if ids else {}
    out = []
    for row, booking in pairs:
        try:
            room = svc.catalogue.room(booking.room_slug).name
        except DomainError:
            room = booking.room_slug
        out.append(OverrideView(row, booking.reference, room, sorted(days[i] for i in row.leg_ids if i in days)))
    return out


def can_withdraw(row: RefundOverride, actor: str) -> bool:
    """Only the person who asked may take the request back, while it is still undecided."""
    return row.status in ("pending", "failed") and same_person(row.requested_by, actor)


def open_on_days(svc: Services, booking_id: int, leg_ids: Sequence[int]) -> list[OverrideView]:
    """The booking's undecided overrides sharing any of these days: cancelling the days by the policy would make
    them fail."""
    wanted = set(leg_ids)
    return [v for v in list_overrides(svc, booking_id=booking_id, statuses=OPEN) if wanted & set(v.row.leg_ids)]


def list_pending(svc: Services) -> list[OverrideView]:
    """The queue: overrides that still need someone (signatures, or a retry/reject after a failure), oldest first."""
    return list(reversed(list_overrides(svc, statuses=OPEN)))
