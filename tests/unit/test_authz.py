"""Who may do what: every dashboard action × every role, checked in the service layer before anything happens. That
the pages cannot go around it (they import no module that writes) is import-linter's `pages-read-only` contract in
pyproject.toml, checked by `lint-imports`."""

from __future__ import annotations

import inspect
from datetime import date
from typing import Any

import pytest
from sqlmodel import func, select

from models.tables import AuditLog
from services import authz
from services.authz import ACTIONS, DESK_ACTIONS, Desk, Staff
from services.booking.amend import Change
from services.core.errors import NotAllowed
from services.core.venue_state import VenueEdit

ROLES = ("frontdesk", "manager", "finance", "admin")

# What the venue asked for, written out independently of services/authz.py: method → roles that may use it.
DESK = {"frontdesk", "manager", "admin"}
MANAGE = {"manager", "admin"}
MONEY = {"manager", "finance", "admin"}
EXPECTED: dict[str, set[str]] = {
    "start_booking": DESK,
    "book_on_invoice": DESK,
    "record_payment": DESK,
    "send_pay_link": DESK,
    "cancel_booking": DESK,
    "update_customer": DESK,
    "resend_confirmation": DESK,
    "plan_change": DESK,
    "change_booking": DESK,
    "withdraw_change": DESK,
    "release_hold": DESK,
    "release_invoice": DESK,
    "extend_invoice": DESK,
    "record_change_payment": DESK,
    "request_override": DESK,
    "approve_override": MONEY,
    "reject_override": MONEY,
    "retry_override": MONEY,
    "withdraw_override": set(ROLES),
    "describe_fix": MANAGE,
    "run_remediation": MANAGE,
    "run_bulk_remediation": MANAGE,
    "sync_and_reconcile": MANAGE,
    "send_due_emails": MANAGE,
    "retry_email": MANAGE,
    "replay_webhook": MANAGE,
    "refresh_disputes": MONEY,
    "save_dispute_evidence": MONEY,
    "run_close": {"finance", "admin"},
    "check_connections": {"admin"},
    # room blocks and closures (issue 14 §5)
    "plan_block": MANAGE,
    "block_rooms": MANAGE,
    "release_block": MANAGE,
    # settings edited in the dashboard (issue 14 §6)
    "save_venue_config": {"admin"},
    # damage deposits (issue 15 §3)
    "place_deposit_hold": MONEY,
    "release_deposit": MONEY,
    "file_deposit_claim": set(ROLES),
    "approve_deposit_claim": MONEY,
    "reject_deposit_claim": MONEY,
    "retry_deposit_claim": MONEY,
    "withdraw_deposit_claim": set(ROLES),
}

# Arguments that get each call past its role check to the service, which then fails or succeeds on its own terms.
ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "start_booking": ((None,), {}),
    "book_on_invoice": ((None, None), {}),
    "record_payment": ((999_999,), {}),
    "send_pay_link": ((999_999,), {}),
    "cancel_booking": ((999_999,), {}),
    "update_customer": ((999_999,), {"email": "ava@gmail.com"}),
    "resend_confirmation": ((999_999,), {}),
    "plan_change": ((999_999, Change()), {}),
    "change_booking": ((999_999, Change()), {"expected_net_cents": 0}),
    "withdraw_change": ((999_999,), {}),
    "release_hold": ((999_999,), {}),
    "release_invoice": ((999_999,), {"reason": "no answer"}),
    "extend_invoice": ((999_999,), {"days": 7, "reason": "cheque sent"}),
    "record_change_payment": ((999_999,), {}),
    "request_override": ((999_999,), {"leg_ids": [1], "refund_cents": 100, "reason": "x"}),
    "approve_override": ((999_999,), {}),
    "reject_override": ((999_999,), {"note": "x"}),
    "retry_override": ((999_999,), {}),
    "withdraw_override": ((999_999,), {}),
    "describe_fix": ((999_999, "refund"), {}),
    "run_remediation": ((999_999, "refund"), {}),
    "run_bulk_remediation": (([999_999], "refund"), {}),
    "sync_and_reconcile": ((), {}),
    "send_due_emails": ((), {}),
    "retry_email": ((999_999,), {}),
    "replay_webhook": ((999_999,), {}),
    "refresh_disputes": ((), {}),
    "save_dispute_evidence": ((999_999,), {"submit": True}),
    "run_close": ((date(2026, 3, 1),), {}),
    "check_connections": ((), {}),
    # room blocks and closures (issue 14 §5)
    "plan_block": ((None,), {}),
    "block_rooms": ((None,), {}),
    "release_block": ((999_999,), {"reason": "Painting done"}),
    # settings edited in the dashboard (issue 14 §6)
    "save_venue_config": ((VenueEdit(base_version=0),), {}),
    # damage deposits (issue 15 §3)
    "place_deposit_hold": ((999_999,), {}),
    "release_deposit": ((999_999,), {"reason": "Room checked"}),
    "file_deposit_claim": ((999_999,), {"amount_cents": 100, "notes": "Mixer desk water damage"}),
    "approve_deposit_claim": ((999_999,), {}),
    "reject_deposit_claim": ((999_999,), {"note": "x"}),
    "retry_deposit_claim": ((999_999,), {}),
    "withdraw_deposit_claim": ((999_999,), {}),
}


def desk_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(Desk, inspect.isfunction) if not name.startswith("_")]


def audit_rows(svc: Any) -> int:
    with svc.session() as s:
        return int(s.exec(select(func.count()).select_from(AuditLog)).one())


def calls(svc: Any) -> int:
    return sum(sum(g.faults.calls.values()) for g in (svc.payments, svc.calendar, svc.mail))


def test_every_desk_method_is_in_the_tables() -> None:
    assert sorted(desk_methods()) == sorted(DESK_ACTIONS) == sorted(EXPECTED) == sorted(ARGS)
    assert {a for actions in DESK_ACTIONS.values() for a in actions} == set(ACTIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_every_action_with_every_role(svc: Any, method: str, role: str) -> None:
    args, kwargs = ARGS[method]
    desk = Desk(svc, Staff(f"{role}@venue.example", role))
    before = (audit_rows(svc), calls(svc))
    try:
        getattr(desk, method)(*args, **kwargs)
        raised: Exception | None = None
    except Exception as exc:  # the service's own refusal (no such booking…) once past the role check
        raised = exc
    if role in EXPECTED[method]:
        assert not isinstance(raised, NotAllowed), f"{role} refused {method}: {raised}"
    else:
        assert isinstance(raised, NotAllowed), f"{role} was let through {method} ({raised!r})"
        assert authz.ROLES[role] in raised.message and "only" in raised.message
        assert (audit_rows(svc), calls(svc)) == before  # refused before anything: no audit row, no gateway call


def test_acknowledging_and_fixing_are_separate_actions(svc: Any) -> None:
    finance = Desk(svc, Staff("fin@venue.example", "finance"))
    for action in ("acknowledge", "refund"):
        with pytest.raises(NotAllowed):
            finance.run_remediation(1, action, note="x")


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_nobody_signed_in_can_do_nothing(svc: Any, method: str) -> None:
    args, kwargs = ARGS[method]
    with pytest.raises(NotAllowed, match="Someone not signed in cannot"):
        getattr(Desk(svc, None), method)(*args, **kwargs)


def test_an_unknown_role_is_refused_everything(svc: Any) -> None:
    with pytest.raises(NotAllowed):
        Desk(svc, Staff("x@venue.example", "owner")).cancel_booking(1)


def test_the_person_is_the_actor_in_the_audit_trail(svc: Any, booking_request: Any) -> None:
    desk = Desk(svc, Staff("dana@venue.example", "frontdesk"))
    started = desk.start_booking(booking_request(channel="phone"))
    desk.record_payment(started.booking_id)
    with svc.session() as s:
        actors = {a.actor for a in s.exec(select(AuditLog).where(AuditLog.booking_id == started.booking_id))}
    assert "dana@venue.example" in actors and not {a for a in actors if a.endswith("@sandbox")}


def test_roles_come_from_staff_roles_by_email_any_case() -> None:
    roles = {"dana@venue.example": "frontdesk", "fin@venue.example": "finance"}
    assert authz.role_for("Dana@Venue.Example ", roles) == "frontdesk"
    assert authz.role_for("fin@venue.example", roles) == "finance"
    assert authz.role_for("stranger@venue.example", roles) is None
    assert authz.role_for("", roles) is None and authz.role_for(None, roles) is None


def test_front_desk_corrects_a_customers_email_and_finance_may_not(svc: Any, booking_request: Any) -> None:
    started = Desk(svc, Staff("dana@venue.example", "frontdesk")).start_booking(
        booking_request(channel="phone", customer_email="ava@gmial.com")
    )
    with pytest.raises(NotAllowed, match=r"Finance cannot correct a customer's details \(only front desk"):
        Desk(svc, Staff("fin@venue.example", "finance")).update_customer(started.booking_id, email="ava@gmail.com")
    result = Desk(svc, Staff("dana@venue.example", "frontdesk")).update_customer(
        started.booking_id, email="ava@gmail.com"
    )
    assert result.changes == {"email": ("ava@gmial.com", "ava@gmail.com")}
    with svc.session() as s:
        row = s.exec(select(AuditLog).where(AuditLog.action == "booking.customer.updated")).one()
    assert row.actor == "dana@venue.example"
