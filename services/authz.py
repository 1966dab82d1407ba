"""Who may do what: the staff roles, the action table, and `Desk`, the only way the dashboard changes anything.

Every dashboard action goes through a `Desk` built for the signed-in person: each method checks the person's role
against ACTIONS *before* it calls the service (so nothing happens, not even a read of Stripe, for someone without the
role), then names the person in the audit trail. The pages import no module that writes (import-linter's
`pages-read-only` contract in pyproject.toml), so hiding a button is never the only guard. The navigation per role
(pages/ui/nav.py) is the first guard, each page's own role check the second, and this the third.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services import booking
from services.booking import invoices
from services.booking.amend import Change, ChangePlan
from services.booking.change import ChangeResult
from services.booking.details import Keep
from services.booking.queries import invoice_of
from services.booking.requests import (
    BookingRequest,
    CancelResult,
    ConfirmResult,
    CustomerUpdate,
    InvoiceStart,
    InvoiceTerms,
    StartResult,
)
from services.core import venue
from services.core.context import Progress, Services
from services.core.errors import NotAllowed
from services.core.roles import ROLES
from services.core.venue_state import VenueEdit
from services.finance import close, deposits, disputes, overrides
from services.finance.close_queries import CloseResult
from services.notify import outbox
from services.notify.queries import OutboxEmail
from services.ops import health
from services.reconciliation import cycle, remediate, sync
from services.web import customer, webhooks

# The one error of the Desk's a page tells apart from the others: a sync already running is no failure, just a wait.
SyncBusy = sync.SyncBusy

_DESK = frozenset({"frontdesk", "manager", "admin"})  # take bookings and payments, cancel
_MANAGE = frozenset({"manager", "admin"})  # fix mismatches, sync, the outbox and webhooks
_MONEY = frozenset({"manager", "finance", "admin"})  # approvals, disputes
_EVERYONE = frozenset(ROLES)

# action → roles allowed. Services that need more (an override's two signatures, its requester) check that too.
ACTIONS: dict[str, frozenset[str]] = {
    "booking.create": _DESK,
    "booking.record_payment": _DESK,
    "booking.send_pay_link": _DESK,
    "booking.cancel": _DESK,
    "booking.edit": _DESK,
    "booking.change": _DESK,
    "hold.release": _DESK,
    "override.request": _DESK,
    "override.approve": _MONEY,
    "override.reject": _MONEY,
    "override.retry": _MONEY,
    "override.withdraw": _EVERYONE,
    "finding.fix": _MANAGE,
    "finding.acknowledge": _MANAGE,
    "sync.run": _MANAGE,
    "outbox.send": _MANAGE,
    "outbox.retry": _MANAGE,
    "webhook.replay": _MANAGE,
    "dispute.refresh": _MONEY,
    "dispute.draft": _MONEY,
    "dispute.submit": _MONEY,
    "close.run": frozenset({"finance", "admin"}),
    "settings.check_connections": frozenset({"admin"}),
    "settings.edit": frozenset({"admin"}),
    "block.create": _MANAGE,
    "block.release": _MANAGE,
    "deposit.hold": _MONEY,
    "deposit.release": _MONEY,
    "deposit.claim": _EVERYONE,
    "deposit.approve": _MONEY,
    "deposit.reject": _MONEY,
    "deposit.retry": _MONEY,
    "deposit.withdraw": _EVERYONE,
}

ACTION_WORDS = {
    "booking.create": "make bookings",
    "booking.record_payment": "record a payment",
    "booking.send_pay_link": "email pay links",
    "booking.cancel": "cancel bookings",
    "booking.edit": "correct a customer's details",
    "booking.change": "change a paid booking's days, times or room",
    "hold.release": "release unpaid holds",
    "override.request": "ask for a refund above the policy",
    "override.approve": "approve a refund above the policy",
    "override.reject": "reject a refund above the policy",
    "override.retry": "retry a refund above the policy",
    "override.withdraw": "withdraw a refund request",
    "finding.fix": "fix mismatches",
    "finding.acknowledge": "acknowledge mismatches",
    "sync.run": "run a sync",
    "outbox.send": "send the outbox's emails",
    "outbox.retry": "retry an email",
    "webhook.replay": "replay webhooks",
    "dispute.refresh": "refresh disputes from Stripe",
    "dispute.draft": "save dispute evidence",
    "dispute.submit": "submit dispute evidence",
    "close.run": "run the daily close",
    "settings.check_connections": "check the connections",
    "settings.edit": "change the venue's settings",
    "block.create": "block a room or close the venue",
    "block.release": "release a room block or closure",
    "deposit.hold": "place a damage deposit hold",
    "deposit.release": "release a damage deposit",
    "deposit.claim": "file a damage claim",
    "deposit.approve": "approve a damage claim",
    "deposit.reject": "reject a damage claim",
    "deposit.retry": "retry a damage claim",
    "deposit.withdraw": "withdraw a damage claim",
}


@dataclass(frozen=True)
class Staff:
    """A signed-in person: the email the audit trail names, and the role that decides what they may do."""

    email: str
    role: str


def allowed(role: str | None, action: str) -> bool:
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")
    return role in ACTIONS[action]


def require(staff: Staff | None, action: str) -> Staff:
    """The person, if their role may take `action`; otherwise NotAllowed saying who may."""
    if staff is not None and allowed(staff.role, action):
        return staff
    who = ROLES.get(staff.role, staff.role) if staff is not None else "Someone not signed in"
    may = " or ".join(ROLES[r].lower() for r in ROLES if r in ACTIONS[action])
    raise NotAllowed(f"{who} cannot {ACTION_WORDS[action]} (only {may} can)")


def role_for(email: str | None, staff_roles: dict[str, str]) -> str | None:
    """The role configured for a signed-in email (STAFF_ROLES), case-insensitive; None if the person has none."""
    if not email:
        return None
    wanted = email.strip().lower()
    for configured, role in staff_roles.items():
        if configured.strip().lower() == wanted and role in ROLES:
            return role
    return None


class Desk:
    """The dashboard's actions for one signed-in person. Each method checks the role first, then calls the one
    service function that does the work, with the person as the actor."""

    def __init__(self, svc: Services, staff: Staff | None) -> None:
        self.svc = svc
        self.staff = staff

    def _as(self, action: str) -> str:
        return require(self.staff, action).email

    # -- bookings ----------------------------------------------------------------------------------------------------

    def start_booking(self, req: BookingRequest) -> StartResult:
        actor = self._as("booking.create")
        return booking.start_booking(self.svc, req, actor=actor)

    def book_on_invoice(self, req: BookingRequest, terms: InvoiceTerms) -> InvoiceStart:
        """An organisation books on terms: the days held, the invoice made and sent by Stripe."""
        actor = self._as("booking.create")
        return invoices.book_on_invoice(self.svc, req, terms, actor=actor)

    def release_invoice(self, booking_id: int, *, reason: str) -> str:
        """Void the unpaid invoice and cancel its booking (its days are freed)."""
        actor = self._as("hold.release")
        return invoices.release_invoice(self.svc, booking_id, actor=actor, reason=reason)

    def extend_invoice(self, booking_id: int, *, days: int, reason: str) -> datetime:
        """Hold an unpaid invoice's days longer; returns the new due date."""
        actor = self._as("hold.release")
        return invoices.extend_invoice(self.svc, booking_id, days=days, actor=actor, reason=reason)

    def record_payment(self, booking_id: int) -> ConfirmResult:
        """Sandbox: the customer paid (a test card), then what the webhook would do."""
        actor = self._as("booking.record_payment")
        if invoice_of(self.svc, booking_id) is not None:  # held on invoice: the invoice is paid
            return invoices.sandbox_pay_invoice(self.svc, booking_id, actor=actor)
        done = booking.sandbox_pay(self.svc, booking_id, actor=actor)
        deposits.sandbox_deposit_card(self.svc, booking_id, actor=actor)  # a deposit room: the card saved for it too
        return done

    def send_pay_link(self, booking_id: int) -> tuple[str, bool]:
        actor = self._as("booking.send_pay_link")
        return customer.send_pay_link(self.svc, booking_id, actor=actor)

    def cancel_booking(
        self, booking_id: int, *, leg_ids: Sequence[int] | None = None, reason: str = ""
    ) -> CancelResult:
        actor = self._as("booking.cancel")
        return booking.cancel_booking(self.svc, booking_id, actor=actor, leg_ids=leg_ids, reason=reason)

    def update_customer(
        self,
        booking_id: int,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        party_size: int | Keep | None = Keep.KEEP,
        extras: dict[str, Any] | None = None,
        notes: str | None = None,
    ) -> CustomerUpdate:
        """Correct the customer's details (a mistyped email…); only the fields given change."""
        actor = self._as("booking.edit")
        return booking.update_customer(
            self.svc,
            booking_id,
            actor=actor,
            name=name,
            email=email,
            phone=phone,
            party_size=party_size,
            extras=extras,
            notes=notes,
        )

    def resend_confirmation(self, booking_id: int) -> tuple[str, bool]:
        """After a corrected email: the confirmation again, to the address the booking has now."""
        actor = self._as("booking.edit")
        return booking.resend_confirmation(self.svc, booking_id, actor=actor)

    # -- changes to a paid booking ----------------------------------------------------------------------------------

    def plan_change(self, booking_id: int, change: Change) -> ChangePlan:
        """What a change would do (reads only): checked like the change itself, so nobody sees a quote they may not
        act on."""
        self._as("booking.change")
        return booking.plan_change(self.svc, booking_id, change)

    def change_booking(
        self, booking_id: int, change: Change, *, expected_net_cents: int | None, reason: str = ""
    ) -> ChangeResult:
        """Make the change the person was shown: `expected_net_cents` is the difference on screen (QuoteChanged and
        nothing happens when it settles otherwise now). Staff change bookings on the phone: a higher price emails
        the customer a pay link."""
        actor = self._as("booking.change")
        return booking.change_booking(
            self.svc, booking_id, change, actor=actor, expected_net_cents=expected_net_cents, reason=reason
        )

    def release_hold(self, booking_id: int, *, kind: str = "booking") -> str:
        """Release an unpaid hold (a booking's, or a change's) at once; audited under the person's name."""
        actor = self._as("hold.release")
        return booking.release_unpaid_hold(self.svc, booking_id, kind=kind, actor=actor)

    def withdraw_change(self, booking_id: int) -> ChangeResult:
        actor = self._as("booking.change")
        return booking.withdraw_change(self.svc, booking_id, actor=actor)

    def record_change_payment(self, booking_id: int) -> ConfirmResult:
        """Sandbox: the customer paid the change's difference (a test card), then what the webhook would do."""
        actor = self._as("booking.record_payment")
        return booking.sandbox_pay_change(self.svc, booking_id, actor=actor)

    # -- refunds above the policy ------------------------------------------------------------------------------------

    def request_override(
        self, booking_id: int, *, leg_ids: Sequence[int], refund_cents: int, reason: str
    ) -> overrides.OverrideOutcome:
        actor = self._as("override.request")
        return overrides.request_override(
            self.svc, booking_id, leg_ids=leg_ids, refund_cents=refund_cents, reason=reason, actor=actor
        )

    def approve_override(self, override_id: int, *, slot: str | None = None) -> overrides.OverrideOutcome:
        staff = require(self.staff, "override.approve")
        return overrides.approve(self.svc, override_id, actor=staff.email, role=staff.role, slot=slot)

    def reject_override(self, override_id: int, *, note: str) -> overrides.OverrideOutcome:
        staff = require(self.staff, "override.reject")
        return overrides.reject(self.svc, override_id, actor=staff.email, role=staff.role, note=note)

    def retry_override(self, override_id: int) -> overrides.OverrideOutcome:
        staff = require(self.staff, "override.retry")
        return overrides.retry(self.svc, override_id, actor=staff.email, role=staff.role)

    def withdraw_override(self, override_id: int) -> overrides.OverrideOutcome:
        actor = self._as("override.withdraw")
        return overrides.withdraw(self.svc, override_id, actor=actor)

    # -- damage deposits (issue 15 §3) ---------------------------------------------------------------------------------

    def place_deposit_hold(self, booking_id: int) -> deposits.DepositOutcome:
        actor = self._as("deposit.hold")
        return deposits.place_hold_now(self.svc, booking_id, actor=actor)

    def release_deposit(self, booking_id: int, *, reason: str) -> deposits.DepositOutcome:
        actor = self._as("deposit.release")
        return deposits.release_deposit(self.svc, booking_id, actor=actor, reason=reason)

    def file_deposit_claim(
        self, booking_id: int, *, amount_cents: int, notes: str, photos: Sequence[str] = ()
    ) -> deposits.ClaimOutcome:
        actor = self._as("deposit.claim")
        return deposits.file_claim(
            self.svc, booking_id, amount_cents=amount_cents, notes=notes, photos=photos, actor=actor
        )

    def approve_deposit_claim(self, claim_id: int, *, slot: str | None = None) -> deposits.ClaimOutcome:
        staff = require(self.staff, "deposit.approve")
        return deposits.approve_claim(self.svc, claim_id, actor=staff.email, role=staff.role, slot=slot)

    def reject_deposit_claim(self, claim_id: int, *, note: str) -> deposits.ClaimOutcome:
        staff = require(self.staff, "deposit.reject")
        return deposits.reject_claim(self.svc, claim_id, actor=staff.email, role=staff.role, note=note)

    def retry_deposit_claim(self, claim_id: int) -> deposits.ClaimOutcome:
        staff = require(self.staff, "deposit.retry")
        return deposits.retry_claim(self.svc, claim_id, actor=staff.email, role=staff.role)

    def withdraw_deposit_claim(self, claim_id: int) -> deposits.ClaimOutcome:
        actor = self._as("deposit.withdraw")
        return deposits.withdraw_claim(self.svc, claim_id, actor=actor)

    # -- mismatches --------------------------------------------------------------------------------------------------

    def describe_fix(self, finding_id: int, action: str) -> str:
        """What the fix would do now, for its confirmation dialog: shown only to someone who may run it."""
        self._as("finding.acknowledge" if action == "acknowledge" else "finding.fix")
        return remediate.describe_action(self.svc, finding_id, action)

    def run_remediation(self, finding_id: int, action: str, **kwargs: Any) -> remediate.FixResult:
        actor = self._as("finding.acknowledge" if action == "acknowledge" else "finding.fix")
        return remediate.run_action(self.svc, finding_id, action, actor=actor, **kwargs)

    def run_bulk_remediation(
        self, finding_ids: list[int], action: str, *, progress: Progress | None = None, **kwargs: Any
    ) -> list[remediate.FixResult]:
        actor = self._as("finding.acknowledge" if action == "acknowledge" else "finding.fix")
        return remediate.run_bulk(self.svc, finding_ids, action, actor=actor, progress=progress, **kwargs)

    def sync_and_reconcile(self, *, progress: Progress | None = None) -> cycle.CycleReport:
        """The one sync → reconcile cycle the worker runs too. Raises SyncBusy while another process (the worker, a
        colleague) is syncing."""
        actor = self._as("sync.run")
        return cycle.run_cycle(self.svc, actor=actor, progress=progress)

    # -- emails and webhooks -----------------------------------------------------------------------------------------

    def send_due_emails(self, *, progress: Progress | None = None) -> outbox.DeliveryReport:
        actor = self._as("outbox.send")
        return outbox.deliver_due(self.svc, now=self.svc.now(), actor=actor, progress=progress)

    def retry_email(self, outbox_id: int) -> OutboxEmail:
        actor = self._as("outbox.retry")
        return outbox.retry_now(self.svc, outbox_id, actor=actor, now=self.svc.now())

    def replay_webhook(self, event_row_id: int) -> str:
        actor = self._as("webhook.replay")
        return webhooks.replay_event(self.svc, event_row_id, actor=actor)

    # -- disputes, close, settings -----------------------------------------------------------------------------------

    def refresh_disputes(self) -> disputes.RefreshReport:
        actor = self._as("dispute.refresh")
        return disputes.refresh_disputes(self.svc, actor=actor)

    def save_dispute_evidence(
        self, case_id: int, *, submit: bool, fields: dict[str, str] | None = None
    ) -> disputes.EvidenceResult:
        actor = self._as("dispute.submit" if submit else "dispute.draft")
        return disputes.save_evidence(self.svc, case_id, submit=submit, actor=actor, fields=fields)

    def run_close(self, business_day: date, *, progress: Progress | None = None) -> CloseResult:
        actor = self._as("close.run")
        return close.run_close(self.svc, business_day, actor=actor, progress=progress)

    def check_connections(self, *, progress: Progress | None = None) -> list[health.Check]:
        self._as("settings.check_connections")
        return health.check_connections(self.svc, progress=progress)

    # -- room blocks and closures (issue 14 §5) -----------------------------------------------------------------------

    def plan_block(self, req: booking.BlockRequest) -> booking.BlockPlan:
        """What blocking would take and whom it would get in the way of (reads only): shown only to someone who may
        block, so nobody studies a plan they cannot act on."""
        self._as("block.create")
        return booking.plan_block(self.svc, req)

    def block_rooms(self, req: booking.BlockRequest) -> booking.BlockResult:
        """Block the rooms (or close the venue) as planned: re-checked first, refused while bookings are in the way."""
        actor = self._as("block.create")
        return booking.create_block(self.svc, req, actor=actor)

    def release_block(self, block_id: int, *, reason: str) -> booking.BlockResult:
        actor = self._as("block.release")
        return booking.release_block(self.svc, block_id, actor=actor, reason=reason)

    # -- settings edited in the dashboard (issue 14 §6) ---------------------------------------------------------------

    def save_venue_config(self, edit: VenueEdit, *, note: str = "") -> venue.VenueSaved:
        """Save one Settings section as the next version of the venue configuration (audited field by field)."""
        actor = self._as("settings.edit")
        return venue.save_venue_config(self.svc, edit, actor=actor, note=note)


# Desk method → the action it checks (for the tests that try every action with every role).
DESK_ACTIONS: dict[str, tuple[str, ...]] = {
    "start_booking": ("booking.create",),
    "book_on_invoice": ("booking.create",),
    "release_invoice": ("hold.release",),
    "extend_invoice": ("hold.release",),
    "record_payment": ("booking.record_payment",),
    "send_pay_link": ("booking.send_pay_link",),
    "cancel_booking": ("booking.cancel",),
    "update_customer": ("booking.edit",),
    "resend_confirmation": ("booking.edit",),
    "plan_change": ("booking.change",),
    "change_booking": ("booking.change",),
    "release_hold": ("hold.release",),
    "withdraw_change": ("booking.change",),
    "record_change_payment": ("booking.record_payment",),
    "request_override": ("override.request",),
    "approve_override": ("override.approve",),
    "reject_override": ("override.reject",),
    "retry_override": ("override.retry",),
    "withdraw_override": ("override.withdraw",),
    "describe_fix": ("finding.fix", "finding.acknowledge"),
    "run_remediation": ("finding.fix", "finding.acknowledge"),
    "run_bulk_remediation": ("finding.fix", "finding.acknowledge"),
    "sync_and_reconcile": ("sync.run",),
    "send_due_emails": ("outbox.send",),
    "retry_email": ("outbox.retry",),
    "replay_webhook": ("webhook.replay",),
    "refresh_disputes": ("dispute.refresh",),
    "save_dispute_evidence": ("dispute.draft", "dispute.submit"),
    "run_close": ("close.run",),
    "check_connections": ("settings.check_connections",),
    # room blocks and closures (issue 14 §5)
    "plan_block": ("block.create",),
    "block_rooms": ("block.create",),
    "release_block": ("block.release",),
    # settings edited in the dashboard (issue 14 §6)
    "save_venue_config": ("settings.edit",),
    # damage deposits (issue 15 §3)
    "place_deposit_hold": ("deposit.hold",),
    "release_deposit": ("deposit.release",),
    "file_deposit_claim": ("deposit.claim",),
    "approve_deposit_claim": ("deposit.approve",),
    "reject_deposit_claim": ("deposit.reject",),
    "retry_deposit_claim": ("deposit.retry",),
    "withdraw_deposit_claim": ("deposit.withdraw",),
}
