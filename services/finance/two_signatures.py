"""Runbook 003's dual approval, for anything that moves money only on two signatures: one manager and one finance
person, two different people (an admin may give either). Refunds above the policy (services.finance.overrides) and
claims against a damage deposit (services.finance.deposits) share these rules; each names its own item in the
sentences (`what`: "override #4", "damage claim #2").

Reads only: who may sign which slot now, and why not. The compare-and-set that records a signature is
services.finance.overrides.sign_slot; the pages use `signing_problem` to disable a button the service would refuse.
"""

from __future__ import annotations

from typing import Protocol

from services.core.errors import DomainError, InvalidState, NotAllowed

SLOTS = ("manager", "finance")
APPROVER_ROLES = frozenset({"manager", "finance", "admin"})
ROLE_WORDS = {"frontdesk": "Front desk", "manager": "A manager", "finance": "Finance", "admin": "An admin"}


class Signable(Protocol):
    """A row that waits for the two signatures (RefundOverride, DepositClaim): `pending` until both are given."""

    @property
    def id(self) -> int | None: ...

    @property
    def status(self) -> str: ...

    @property
    def manager_approved_by(self) -> str | None: ...

    @property
    def finance_approved_by(self) -> str | None: ...


def person(actor: str) -> str:
    """The signed-in person taking a step; NotAllowed without one."""
    who = actor.strip()
    if not who:
        raise NotAllowed("Sign in first: every approval step is recorded under the name of the person taking it")
    return who


def same_person(a: str | None, b: str | None) -> bool:
    """The same email, whatever the case and spacing."""
    return bool(a and b and a.strip().lower() == b.strip().lower())


def check_approver(role: str, doing: str) -> None:
    """NotAllowed unless the role may decide (a manager, finance or an admin); `doing` is what they tried, in words
    ("approve a damage claim")."""
    if role not in APPROVER_ROLES:
        who = ROLE_WORDS.get(role, f"The role {role!r}")
        raise NotAllowed(f"{who} cannot {doing}: that is for a manager or finance")


def signer(row: Signable, slot: str) -> str | None:
    """Who signed the manager or the finance slot, if anyone."""
    return row.manager_approved_by if slot == "manager" else row.finance_approved_by


def open_slots(row: Signable, role: str) -> list[str]:
    """The unsigned slots this role may sign: its own, or either for an admin."""
    mine = [role] if role in SLOTS else list(SLOTS) if role == "admin" else []
    return [s for s in mine if signer(row, s) is None]


def completes(row: Signable, slot: str) -> bool:
    """Signing `slot` would be the second signature, which acts at once."""
    return all(signer(row, s) for s in SLOTS if s != slot)


def slot_for(row: Signable, actor: str, role: str, slot: str | None, *, what: str, doing: str, closed: str) -> str:
    """The slot this person signs now; NotAllowed or InvalidState saying why they cannot. `closed` is why the row no
    longer takes signatures, said when it is not pending."""
    actor = person(actor)
    check_approver(role, doing)
    if role in SLOTS and slot not in (None, role):
        raise NotAllowed(f"{ROLE_WORDS[role]} signs the {role} approval, not the {slot} one")
    if row.status != "pending":
        raise InvalidState(closed)
    for s in SLOTS:
        if same_person(signer(row, s), actor):
            raise NotAllowed(f"You already approved {what} (as {s}): the other approval must come from someone else")
    wanted = [slot] if slot else [role] if role in SLOTS else list(SLOTS)
    free = [s for s in wanted if signer(row, s) is None]
    if not free:
        taken = wanted[0]
        other = next(s for s in SLOTS if s != taken)
        raise InvalidState(
            f"The {taken} approval of {what} is already given (by {signer(row, taken)}); it waits for the {other} "
            "approval"
        )
    return free[0]


def signing_problem(
    row: Signable, *, actor: str, role: str, slot: str | None = None, what: str, doing: str, closed: str
) -> str | None:
    """Why this person, in this role, cannot sign now (None: they can)."""
    try:
        slot_for(row, actor, role, slot, what=what, doing=doing, closed=closed)
    except DomainError as exc:
        return exc.message
    return None


def waiting_text(row: Signable) -> str:
    """A pending row's state in words: whose approval it still waits for."""
    signed = [s for s in SLOTS if signer(row, s)]
    if not signed:
        return "Waiting for manager and finance"
    return f"Waiting for {next(s for s in SLOTS if s not in signed)} ({signed[0]} approved)"
