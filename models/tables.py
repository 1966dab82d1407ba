"""SQLModel tables. Times are stored in UTC and always come back timezone-aware; money is integer cents.

State columns are typed as their enums in Python and stored as plain strings (VARCHAR, no database enum type), so
migrations stay simple on both SQLite and PostgreSQL; a value outside the enum is refused on write.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from sqlmodel import JSON, Column, Field, SQLModel

from models.types import UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _state(enum: type[StrEnum], default: StrEnum, length: int, *, index: bool = False) -> Any:
    """A state column: the enum's members in Python, their values in a VARCHAR(length) column."""
    column_type = sa.Enum(
        enum,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )
    return Field(default=default, sa_column=Column(column_type, nullable=False, index=index))


def _json(default: dict[str, Any] | list[Any]) -> Any:
    return Field(default_factory=lambda: type(default)(), sa_column=Column(JSON, nullable=False))


class LegState(StrEnum):
    DRAFT = "DRAFT"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


# Which transitions a day-leg may make; anything else is a bug or a stale action and is refused.
LEG_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.DRAFT: frozenset({LegState.AWAITING_PAYMENT, LegState.CANCELLED, LegState.FAILED}),
    LegState.AWAITING_PAYMENT: frozenset({LegState.CONFIRMED, LegState.CANCELLED, LegState.FAILED}),
    LegState.CONFIRMED: frozenset(
        {LegState.IN_PROGRESS, LegState.COMPLETED, LegState.CANCELLED, LegState.REFUNDED, LegState.FAILED}
    ),
    LegState.IN_PROGRESS: frozenset({LegState.COMPLETED, LegState.REFUNDED}),
    LegState.COMPLETED: frozenset({LegState.REFUNDED}),
    LegState.CANCELLED: frozenset(),
    LegState.REFUNDED: frozenset(),
    LegState.FAILED: frozenset(),
}
ACTIVE_LEG_STATES = frozenset({LegState.CONFIRMED, LegState.IN_PROGRESS, LegState.COMPLETED})


class BookingStatus(StrEnum):
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    PARTLY_CANCELLED = "PARTLY_CANCELLED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class Channel(StrEnum):
    """How a booking was made."""

    WEB = "web"
    PHONE = "phone"


class ClaimKind(StrEnum):
    """A slot claim is an unpaid hold (expires), a booked day, or a room blocked by staff (maintenance, internal
    use, a closure)."""

    HOLD = "hold"
    BOOKED = "booked"
    BLOCK = "block"


class BlockKind(StrEnum):
    """Why staff took a room out of sale: maintenance, the venue's own use, or the venue closed."""

    MAINTENANCE = "maintenance"
    INTERNAL = "internal"
    CLOSURE = "closure"


class BlockState(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"


class OutboxStatus(StrEnum):
    """An email in the outbox: waiting, being sent (claimed by one sender), sent, failed (retried when due), or
    withdrawn (a reminder whose day was cancelled or began before it could go: never sent, nothing to do)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class WebhookStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class OverrideStatus(StrEnum):
    """A refund above the policy: pending → approved (one signature) → executed or failed; or rejected, withdrawn."""

    PENDING = "pending"
    APPROVED = "approved"
    EXECUTED = "executed"
    FAILED = "failed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class AmendmentState(StrEnum):
    """A change to a paid booking (services/booking/amend.py).

    awaiting_payment: it costs more; the new shape is held and the difference waits to be paid (the booking stands as
    it was). applying: settled (paid, or nothing to pay); the days, claims, events, refund and email are being brought
    to the new shape, resumable after a crash. applied: done. lapsed: the hold ran out unpaid; withdrawn: given up
    before payment; failed: paid, but the room was taken meanwhile, so the difference went back. In those three the
    booking is exactly as it was."""

    AWAITING_PAYMENT = "awaiting_payment"
    APPLYING = "applying"
    APPLIED = "applied"
    LAPSED = "lapsed"
    WITHDRAWN = "withdrawn"
    FAILED = "failed"


class CloseStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"


class Booking(SQLModel, table=True):
    """One customer booking of one room on one or more days, paid by one PaymentIntent."""

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=16, unique=True, index=True)
    room_slug: str = Field(max_length=64, index=True)
    status: BookingStatus = _state(BookingStatus, BookingStatus.AWAITING_PAYMENT, 24, index=True)
    channel: Channel = _state(Channel, Channel.WEB, 16)
    start_time: str = Field(max_length=5)  # venue time HH:MM, the same every day
    end_time: str = Field(max_length=5)
    customer_name: str = Field(max_length=200)
    customer_email: str = Field(max_length=254, index=True)
    customer_phone: str = Field(default="", max_length=40)
    party_size: int | None = None
    notes: str = Field(default="", max_length=2000)
    extras: dict[str, Any] = _json({})
    amount_cents: int = 0  # what its first PaymentIntent charges, tax included
    discount_cents: int = 0
    tax_cents: int = 0  # the tax inside amount_cents
    currency: str = Field(default="CAD", max_length=3)
    # The tax rates it was sold at (services.rules.tax.TaxPolicy.snapshot); {} = sold without tax.
    tax_snapshot: dict[str, Any] = _json({})
    pricing_snapshot: dict[str, Any] = _json({})
    policy_snapshot: dict[str, Any] = _json({})
    payment_intent_id: str | None = Field(default=None, max_length=64, unique=True, index=True)
    hold_expires_at: datetime | None = _ts(nullable=True, index=True)
    confirmed_at: datetime | None = _ts(nullable=True)
    confirmation_sent_at: datetime | None = _ts(nullable=True)
    agreement_version: str | None = Field(default=None, max_length=32)
    agreement_accepted_at: datetime | None = _ts(nullable=True)
    # The cancellation policy and terms the customer accepted (on the booking page or the pay page), and when.
    terms_version: str | None = Field(default=None, max_length=32)
    terms_accepted_at: datetime | None = _ts(nullable=True)
    # Secret part of the customer's pay / confirmation links (/pay/<reference>?k=<token>).
    pay_token: str | None = Field(default=None, max_length=64)
    created_by: str = Field(default="customer", max_length=254)
    # Who asked, for web holds: a keyed hash of the client's address (never the address itself), so the number of
    # unpaid holds one client may have can be limited.
    client_key: str | None = Field(default=None, max_length=64, index=True)
    # While one process confirms or cancels the booking it holds this lease; others back off (see booking.py).
    lease_until: datetime | None = _ts(nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Amendment(SQLModel, table=True):
    """One change to a paid booking (move, times, room, add or drop days): the plan as settled, the money it moved and
    the PaymentIntent that paid a higher total. Booking.amount_cents stays what its first PaymentIntent took; what a
    booking has been paid in all is that plus the charges of its applied amendments."""

    __table_args__ = (sa.UniqueConstraint("booking_id", "number", name="uq_amendment_number"),)

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    number: int  # 1, 2, … per booking: part of every key its external writes use
    state: AmendmentState = _state(AmendmentState, AmendmentState.APPLYING, 24, index=True)
    room_from: str = Field(max_length=64)
    room_to: str = Field(max_length=64)
    # Day by day: {"leg_id", "old": {"day", "start", "end"} | None, "new": … | None, "price_cents", "charge_cents",
    # "refund_cents", "band"}; and the lines people read ("Wed 4 Mar 09:00–12:00 → Thu 5 Mar 09:00–13:00").
    plan: list[Any] = _json([])
    summary: list[Any] = _json([])
    charge_cents: int = 0  # what the days added or made dearer cost
    refund_cents: int = 0  # what the days dropped, shortened or made cheaper give back (policy applied)
    net_cents: int = 0  # charge − refund: > 0 paid with payment_intent_id, < 0 refunded on the booking's payments
    tax_cents: int = 0  # the tax inside net_cents when it is charged (> 0)
    payment_intent_id: str | None = Field(default=None, max_length=64, unique=True, index=True)
    paid_at: datetime | None = _ts(nullable=True)
    hold_expires_at: datetime | None = _ts(nullable=True, index=True)
    # Steps of `applying` already done (claims, events, refund, email), so a retry after a crash picks up after them.
    done: list[Any] = _json([])
    reason: str = Field(default="", max_length=500)
    actor: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    applied_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class BookingLeg(SQLModel, table=True):
    """One booked day of a booking, with its own state, price, refund and calendar event."""

    __tablename__ = "booking_leg"
    __table_args__ = (sa.UniqueConstraint("booking_id", "day", name="uq_leg_booking_day"),)

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    day: date = Field(index=True)
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    state: LegState = _state(LegState, LegState.DRAFT, 24, index=True)
    price_cents: int = 0  # what the day costs, tax included
    tax_cents: int = 0  # the tax inside price_cents
    refunded_cents: int = 0
    calendar_id: str = Field(max_length=255)
    event_id: str | None = Field(default=None, max_length=1024)
    event_attempt: int = 0  # bumps when an event must be re-created: Google refuses a deleted event's id
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class InvoiceState(StrEnum):
    """A booking's invoice as Stripe has it: being made (draft), sent and payable (open), paid, or void."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class BookingInvoice(SQLModel, table=True):
    """A booking an organisation pays by invoice on terms (Stripe Invoicing, send_invoice): its days are held, with
    no expiry, until the invoice is paid (invoice.paid confirms the booking as a card payment would), voided (the
    booking is cancelled) or staff release it. Past `due_at` the billing contact is reminded once; past the grace
    period staff get an invoice_overdue finding to extend or release."""

    __tablename__ = "booking_invoice"

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", unique=True, index=True)
    state: InvoiceState = _state(InvoiceState, InvoiceState.DRAFT, 16, index=True)
    invoice_id: str | None = Field(default=None, max_length=64, unique=True, index=True)
    number: str | None = Field(default=None, max_length=64)
    hosted_url: str | None = Field(default=None, max_length=1000)
    organisation: str = Field(max_length=200)
    contact_name: str = Field(max_length=200)
    billing_email: str = Field(max_length=254)
    po_number: str = Field(default="", max_length=60)
    terms_days: int
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    reminded_at: datetime | None = _ts(nullable=True)
    payment_intent_id: str | None = Field(default=None, max_length=64, index=True)
    paid_at: datetime | None = _ts(nullable=True)
    voided_at: datetime | None = _ts(nullable=True)
    actor: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class RoomBlock(SQLModel, table=True):
    """Staff took one or more rooms out of sale for a range of days (whole opening days, or the same hours each day):
    maintenance, the venue's own use, or a closure. It claims its slots like a booking (SlotClaim.block_id, so the
    database refuses an overlap with a booking) and puts one marked event per room and day on the room's calendar
    (private property roomdesk_block=<id>), so reconciliation knows it is the venue's own and not a hand-added
    event. Released, its claims go and its events are deleted; the row stays for the audit trail."""

    __tablename__ = "room_block"

    id: int | None = Field(default=None, primary_key=True)
    kind: BlockKind = _state(BlockKind, BlockKind.MAINTENANCE, 16, index=True)
    state: BlockState = _state(BlockState, BlockState.ACTIVE, 16, index=True)
    rooms: list[Any] = _json([])  # room slugs
    first_day: date = Field(index=True)  # venue dates, inclusive
    last_day: date = Field(index=True)
    start_time: str | None = Field(default=None, max_length=5)  # venue time HH:MM each day; None = the whole day
    end_time: str | None = Field(default=None, max_length=5)
    reason: str = Field(max_length=500)
    # One entry per room and day: {"room", "day", "calendar_id", "event_id", "starts_at", "ends_at"}.
    events: list[Any] = _json([])
    actor: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    released_at: datetime | None = _ts(nullable=True)
    released_by: str | None = Field(default=None, max_length=254)
    release_reason: str = Field(default="", max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class VenueConfig(SQLModel, table=True):
    """One saved version of what admins edit on Settings: the room catalogue (rooms, prices, capacity, minimum hours,
    extras, closures), the venue rules (opening hours, buffer, booking window, refund bands…) and staff roles. The
    highest version is in force; config/rooms.toml and the environment are the first-run seed. Bookings keep their own
    price and policy snapshots, so a new version never changes a booking already made."""

    __tablename__ = "venue_config"

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    catalogue: dict[str, Any] = _json({})
    rules: dict[str, Any] = _json({})
    staff_roles: dict[str, Any] = _json({})
    note: str = Field(default="", max_length=500)
    actor: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class SlotClaim(SQLModel, table=True):
    """A room's time taken by a hold (unpaid, expires), a booked day or a staff block. The database refuses two
    active claims on one room whose [starts_at, block_until) ranges overlap (block_until = end + buffer) unless both
    belong to one booking (a change holding its new shape next to the days it replaces) or one block: a PostgreSQL
    exclusion constraint, a SQLite trigger (see migrations 0001, 0007 and 0009)."""

    __tablename__ = "slot_claim"

    id: int | None = Field(default=None, primary_key=True)
    # A claim belongs to a booking, or (booking_id None) to a room block staff made (block_id).
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    block_id: int | None = Field(default=None, foreign_key="room_block.id", index=True)
    # A booked or held day; or, with amendment_id instead, a day a change to the booking holds until it is paid.
    leg_id: int | None = Field(default=None, foreign_key="booking_leg.id", unique=True)
    amendment_id: int | None = Field(default=None, foreign_key="amendment.id", index=True)
    room_slug: str = Field(max_length=64)
    starts_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ends_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    block_until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    kind: ClaimKind = _state(ClaimKind, ClaimKind.HOLD, 8)
    expires_at: datetime | None = _ts(nullable=True)
    active: bool = Field(default=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class ExternalRef(SQLModel, table=True):
    """Provider + external id → booking: webhooks, compensation and reconciliation all resolve through it."""

    __tablename__ = "external_ref"
    __table_args__ = (sa.UniqueConstraint("provider", "kind", "external_id", name="uq_external_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)  # stripe | google
    kind: str = Field(max_length=24)  # payment_intent | refund | event
    external_id: str = Field(max_length=1100)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    leg_id: int | None = Field(default=None, foreign_key="booking_leg.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class RefundRecord(SQLModel, table=True):
    """Money returned for a booking, with why (origin) and what the policy said at the time."""

    __tablename__ = "refund_record"

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    refund_id: str = Field(max_length=64, unique=True)
    # The payment it went back on; None: the booking's first PaymentIntent (rows from before amendments).
    payment_intent_id: str | None = Field(default=None, max_length=64, index=True)
    # The Stripe idempotency key it was made with (ours only): a retry finds the parts of a split refund already made.
    idempotency_key: str | None = Field(default=None, max_length=200)
    amount_cents: int
    tax_cents: int = 0  # the tax this refund gives back (its share of the payment's tax; tax.refund_split)
    currency: str = Field(default="CAD", max_length=3)
    origin: str = Field(max_length=24, index=True)  # auto_gate2 | cancellation | remediation | stripe_dashboard
    reason: str = Field(default="", max_length=500)
    policy_quote_cents: int | None = None
    leg_ids: list[int] = _json([])
    actor: str = Field(default="system", max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))


class AuditLog(SQLModel, table=True):
    """Append-only: every state change writes one row in the same transaction."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))
    actor: str = Field(max_length=254)
    action: str = Field(max_length=80, index=True)
    booking_id: int | None = Field(default=None, index=True)
    payment_intent: str | None = Field(default=None, max_length=64, index=True)
    payload: dict[str, Any] = _json({})
    # Hash chain (hex sha256): filled on insert by `_chain_audit_row` below, whoever adds the row.
    prev_hash: str = Field(default="", max_length=64)
    row_hash: str = Field(default="", max_length=64)

    def compute_hash(self) -> str:
        """sha256 of the row's content and the previous row's hash; changing either changes this."""
        return audit_row_hash(
            at=self.at,
            actor=self.actor,
            action=self.action,
            booking_id=self.booking_id,
            payment_intent=self.payment_intent,
            payload=self.payload,
            prev_hash=self.prev_hash,
        )


# The first row's prev_hash. Part of the stored contract, like the canonical form below.
AUDIT_GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key serialising audit appends on PostgreSQL ("RDAU"); SQLite writers are serial already.
AUDIT_CHAIN_LOCK_KEY = 0x52444155
_AUDIT_HEAD = "roomdesk.audit_head"


def audit_row_hash(
    *,
    at: datetime,
    actor: str,
    action: str,
    booking_id: int | None,
    payment_intent: str | None,
    payload: Any,
    prev_hash: str,
) -> str:
    """The canonical form (sorted-key JSON, UTC ISO time with microseconds) is a stored contract: old rows are
    verified with it, so it may only change together with a migration that re-chains."""
    if at.tzinfo is None:
        raise ValueError("naive datetime refused: store timezone-aware times")
    doc = {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "booking_id": booking_id,
        "payment_intent": payment_intent,
        "payload": payload,
        "prev_hash": prev_hash,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@sa.event.listens_for(AuditLog, "before_insert")
def _chain_audit_row(_mapper: Any, connection: sa.Connection, target: AuditLog) -> None:
    """Link each new row to the head of the chain, inside the inserting transaction. On PostgreSQL a
    transaction-scoped advisory lock, held until commit, keeps two writers from reading the same head; rows of one
    flush chain to each other in insert order (which is id order)."""
    session = sa.orm.object_session(target)
    info = session.info if session is not None else {}
    head = info.get(_AUDIT_HEAD)
    if head is None:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_CHAIN_LOCK_KEY)))
        table: sa.Table = AuditLog.__table__  # type: ignore[attr-defined]
        last = sa.select(table.c.row_hash).order_by(table.c.id.desc()).limit(1)
        head = connection.execute(last).scalar() or AUDIT_GENESIS_HASH
    # Hash what will be read back: the JSON column turns e.g. integer keys into strings.
    target.payload = json.loads(json.dumps(target.payload))
    target.prev_hash = head
    target.row_hash = target.compute_hash()
    info[_AUDIT_HEAD] = target.row_hash


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _forget_audit_head(session: sa.orm.Session, _context: Any, _instances: Any) -> None:
    # Each flush reads the head afresh (a failed flush must not leave a head that was never stored).
    session.info.pop(_AUDIT_HEAD, None)


class WorkerStatus(SQLModel, table=True):
    """The background worker's last rounds, one row per worker name: when a round last succeeded, the last failure
    and how many failed in a row (the Overview shows it; a worker that stopped succeeding is visible)."""

    __tablename__ = "worker_status"

    name: str = Field(primary_key=True, max_length=64)
    last_round_at: datetime | None = _ts(nullable=True)
    last_ok_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=500)
    failures_in_a_row: int = 0
    summary: str = Field(default="", max_length=500)


class EmailOutbox(SQLModel, table=True):
    """Every email we mean to send, kept until sent, so a mail outage loses nothing."""

    __tablename__ = "email_outbox"
    # For the outbox page on years of mail: the counts by state and what is due read (status, next_attempt_at)
    # alone; the list (newest first, 500 at a time, of all kinds or of one) walks an index in its order instead of
    # sorting every row.
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key", name="uq_email_idem"),
        sa.Index("ix_email_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_email_outbox_created_at_id", "created_at", "id"),
        sa.Index("ix_email_outbox_kind_created_at_id", "kind", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=32)  # confirmation | cancellation | refund | auto_refund | pay_link
    to: str = Field(max_length=254)
    subject: str = Field(max_length=300)
    text: str = Field(sa_column=Column(sa.Text, nullable=False))
    html: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    idempotency_key: str = Field(max_length=200)
    status: OutboxStatus = _state(OutboxStatus, OutboxStatus.QUEUED, 12)  # indexed with next_attempt_at
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    message_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = _ts(nullable=True)
    # A failed send is retried from this time on (backoff); null = now.
    next_attempt_at: datetime | None = _ts(nullable=True, index=True)


class StripeObjectCache(SQLModel, table=True):
    """Local copy of Stripe objects (payment intents, charges, refunds, disputes), filled by sync. The columns the
    reconciler compares are pulled out of the JSON at sync time so a run reads narrow rows, not documents."""

    __tablename__ = "stripe_object"

    id: str = Field(primary_key=True, max_length=64)
    object: str = Field(max_length=32, index=True)
    payment_intent: str | None = Field(default=None, max_length=64, index=True)
    status: str | None = Field(default=None, max_length=32)
    amount: int | None = None
    amount_received: int | None = None
    amount_refunded: int | None = None  # charges
    currency: str | None = Field(default=None, max_length=3)
    # PaymentIntent metadata (what the booking flow writes)
    booking_ref: str | None = Field(default=None, max_length=32, index=True)
    room: str | None = Field(default=None, max_length=64)
    booking_dates: str | None = Field(default=None, max_length=500)
    booking_time: str | None = Field(default=None, max_length=32)
    customer_email: str | None = Field(default=None, max_length=254)
    # Refund: why; Dispute: when evidence is due
    reason: str | None = Field(default=None, max_length=500)
    due_by: datetime | None = _ts(nullable=True)
    created: datetime | None = _ts(nullable=True)
    data: dict[str, Any] = _json({})
    synced_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class CalendarEventCache(SQLModel, table=True):
    """Local copy of room-calendar events, filled by sync, with what matching needs pulled out of the JSON."""

    __tablename__ = "calendar_event"

    calendar_id: str = Field(primary_key=True, max_length=255)
    event_id: str = Field(primary_key=True, max_length=1024)
    status: str = Field(default="confirmed", max_length=16)
    summary: str = Field(default="", max_length=1000)
    starts_at: datetime | None = _ts(nullable=True, index=True)
    ends_at: datetime | None = _ts(nullable=True)
    booking_id: str | None = Field(default=None, max_length=32, index=True)  # extendedProperties.private
    payment_intent: str | None = Field(default=None, max_length=64, index=True)  # extendedProperties.private
    booking_date: str | None = Field(default=None, max_length=10)  # extendedProperties.private
    description_pi: str | None = Field(default=None, max_length=64)  # a pi_… found in the description
    description_email: str | None = Field(default=None, max_length=254)  # an email found in the description
    transparent: bool = False
    unparseable: str | None = Field(default=None, max_length=300)
    # Set by reconciliation: which PaymentIntent the event belongs to, and how that was decided.
    matched_pi: str | None = Field(default=None, max_length=64, index=True)
    match_method: str | None = Field(default=None, max_length=16)  # private | description | slot
    data: dict[str, Any] = _json({})
    updated: datetime | None = _ts(nullable=True)
    synced_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class SyncState(SQLModel, table=True):
    """Cursor per source (a calendar's sync token, Stripe's last event) and when it last ran."""

    __tablename__ = "sync_state"

    source: str = Field(primary_key=True, max_length=300)
    cursor: str | None = Field(default=None, max_length=2000)
    last_run_at: datetime | None = _ts(nullable=True)
    last_ok_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=500)


class JobLock(SQLModel, table=True):
    """A lease that lets one process at a time run a job (sync), on SQLite and PostgreSQL alike."""

    __tablename__ = "job_lock"

    name: str = Field(primary_key=True, max_length=64)
    holder: str | None = Field(default=None, max_length=200)
    until: datetime | None = _ts(nullable=True)


class ReconcileRun(SQLModel, table=True):
    """One reconciliation run: when, how long, and how many findings of each code were open after it."""

    __tablename__ = "reconcile_run"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    finished_at: datetime | None = _ts(nullable=True)
    actor: str = Field(default="system", max_length=254)
    open_by_code: dict[str, Any] = _json({})
    opened: int = 0
    resolved: int = 0


class Finding(SQLModel, table=True):
    """A mismatch between Stripe, the calendars and our records. One row per occurrence: open → resolved (by a
    later run) or acknowledged (by a person, with a note). Resolved rows stay as history."""

    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, index=True)  # code + subject: stable across runs
    code: str = Field(max_length=40, index=True)
    severity: Severity = _state(Severity, Severity.LOW, 8)
    status: FindingStatus = _state(FindingStatus, FindingStatus.OPEN, 16, index=True)
    booking_id: int | None = Field(default=None, index=True)
    booking_ref: str | None = Field(default=None, max_length=32)
    payment_intent: str | None = Field(default=None, max_length=64, index=True)
    room: str | None = Field(default=None, max_length=64)
    dates: list[str] = _json([])
    event_ids: list[str] = _json([])
    summary: str = Field(max_length=500)
    actions: list[str] = _json([])
    amount_cents: int = 0  # money at risk
    details: dict[str, Any] = _json({})
    first_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = _ts(nullable=True)
    acknowledged_by: str | None = Field(default=None, max_length=254)
    acknowledged_at: datetime | None = _ts(nullable=True)
    note: str | None = Field(default=None, max_length=1000)


class WebhookEvent(SQLModel, table=True):
    """Every webhook delivery we accepted, stored before it is processed: the unique (provider, event_id) makes a
    redelivery a no-op, and a failed row keeps what the dashboard needs to replay it."""

    __tablename__ = "webhook_event"
    __table_args__ = (sa.UniqueConstraint("provider", "event_id", name="uq_webhook_event"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)  # stripe
    event_id: str = Field(max_length=255)
    type: str = Field(max_length=80, index=True)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    processed_at: datetime | None = _ts(nullable=True)
    status: WebhookStatus = _state(WebhookStatus, WebhookStatus.RECEIVED, 12, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    payload: dict[str, Any] = _json({})


class RefundOverride(SQLModel, table=True):
    """A cancellation refund above what the policy gives: requested by staff, executed only once one manager and one
    finance person (two different people) have approved it. Runbook 003's dual approval."""

    __tablename__ = "refund_override"

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    leg_ids: list[int] = _json([])  # the days cancelled with this refund
    policy_refund_cents: int  # what the policy gives for those days
    requested_refund_cents: int  # what staff ask for (above the policy)
    currency: str = Field(default="CAD", max_length=3)
    reason: str = Field(max_length=500)
    # pending | approved (both signatures, executing) | executed | failed | rejected | withdrawn
    status: OverrideStatus = _state(OverrideStatus, OverrideStatus.PENDING, 12, index=True)
    requested_by: str = Field(max_length=254)
    requested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    manager_approved_by: str | None = Field(default=None, max_length=254)
    manager_approved_at: datetime | None = _ts(nullable=True)
    finance_approved_by: str | None = Field(default=None, max_length=254)
    finance_approved_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = Field(default=None, max_length=254)  # who rejected or withdrew it
    decided_at: datetime | None = _ts(nullable=True)
    decision_note: str | None = Field(default=None, max_length=500)
    executed_at: datetime | None = _ts(nullable=True)
    refunded_cents: int | None = None
    error: str | None = Field(default=None, max_length=500)


class DisputeCase(SQLModel, table=True):
    """A Stripe dispute (chargeback) on one of our payments, as the webhooks and syncs report it, with the evidence
    we submitted."""

    __tablename__ = "dispute_case"

    id: int | None = Field(default=None, primary_key=True)
    dispute_id: str = Field(max_length=64, unique=True, index=True)
    booking_id: int | None = Field(default=None, index=True)
    payment_intent_id: str | None = Field(default=None, max_length=64, index=True)
    charge_id: str | None = Field(default=None, max_length=64)
    amount_cents: int = 0
    currency: str = Field(default="CAD", max_length=3)
    reason: str = Field(default="", max_length=64)
    status: str = Field(default="needs_response", max_length=32, index=True)  # Stripe's dispute status
    evidence_due_by: datetime | None = _ts(nullable=True, index=True)
    opened_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)
    evidence_submitted_at: datetime | None = _ts(nullable=True)
    evidence_submitted_by: str | None = Field(default=None, max_length=254)
    evidence: dict[str, Any] = _json({})  # the fields sent to Stripe
    evidence_pdf_sha256: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class DailyClose(SQLModel, table=True):
    """One run of the daily close for a business day: Stripe's balance transactions against our ledger. Reruns add
    rows; the newest per day is the day's result."""

    __tablename__ = "daily_close"

    id: int | None = Field(default=None, primary_key=True)
    business_day: date = Field(index=True)
    status: CloseStatus = _state(CloseStatus, CloseStatus.ERROR, 12, index=True)
    run_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    run_by: str = Field(max_length=254)
    currency: str = Field(default="CAD", max_length=3)
    stripe_cents: int = 0  # gross volume Stripe reports for the day (charges + refunds + disputes, absolute)
    ledger_cents: int = 0  # the same from our ledger
    variance_cents: int = 0  # sum of absolute differences per item
    variance_bps: int = 0
    tolerance_bps: int = 50
    totals: dict[str, Any] = _json({})  # per category (charge, refund, fee, dispute): stripe, ledger, net
    error: str | None = Field(default=None, max_length=500)


class DailyCloseItem(SQLModel, table=True):
    """One difference found by a daily close."""

    __tablename__ = "daily_close_item"

    id: int | None = Field(default=None, primary_key=True)
    close_id: int = Field(foreign_key="daily_close.id", index=True)
    category: str = Field(max_length=16)  # charge | refund | dispute | fee
    problem: str = Field(max_length=32)  # missing_in_ledger | missing_in_stripe | amount_differs
    stripe_id: str | None = Field(default=None, max_length=64)
    booking_id: int | None = None
    booking_reference: str | None = Field(default=None, max_length=16)
    stripe_cents: int = 0
    ledger_cents: int = 0
    difference_cents: int = 0
    note: str = Field(default="", max_length=500)


class DepositState(StrEnum):
    """A damage deposit (services/finance/deposits.py): card_needed (the customer's card is asked for) → card_saved (a
    hold is placed shortly before the first day) → held (re-held before a card authorisation lapses) → released after
    the claim window, or captured by an approved claim. hold_failed: the card was declined, or none was saved in time
    (staff see it; a hold placed earlier may still stand). cancelled: closed before anything was held."""

    CARD_NEEDED = "card_needed"
    CARD_SAVED = "card_saved"
    HELD = "held"
    HOLD_FAILED = "hold_failed"
    CAPTURED = "captured"
    RELEASED = "released"
    CANCELLED = "cancelled"


class ClaimStatus(StrEnum):
    """A claim against a deposit: pending → approved (both signatures, capturing) → captured or failed; or rejected,
    withdrawn (the hold is then released when the claim window ends)."""

    PENDING = "pending"
    APPROVED = "approved"
    CAPTURED = "captured"
    FAILED = "failed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class DamageDeposit(SQLModel, table=True):
    """A booking's damage deposit: the terms its room asked when it was booked, the customer's saved card (a Stripe
    Customer and an off-session SetupIntent), and the card holds placed on it (manual-capture PaymentIntents, each
    also an ExternalRef of kind `deposit_hold`). `payment_intent_id` is the hold standing (or the last one); `holds`
    lists every hold with when it was placed and released, so one a crash left standing is released later."""

    __tablename__ = "damage_deposit"

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", unique=True, index=True)
    state: DepositState = _state(DepositState, DepositState.CARD_NEEDED, 16, index=True)
    amount_cents: int
    currency: str = Field(default="CAD", max_length=3)
    hold_hours_before: int = 48
    claim_window_hours: int = 72
    customer_id: str | None = Field(default=None, max_length=64)
    # The SetupIntent the customer saves a card with; a new one (setup_attempt + 1) after a card is declined.
    setup_intent_id: str | None = Field(default=None, max_length=64, index=True)
    setup_client_secret: str | None = Field(default=None, max_length=200)
    setup_attempt: int = 1
    payment_method: str | None = Field(default=None, max_length=64)
    card_saved_at: datetime | None = _ts(nullable=True)
    payment_intent_id: str | None = Field(default=None, max_length=64, unique=True, index=True)
    held_at: datetime | None = _ts(nullable=True)  # when the standing hold was placed (it lapses 7 days later)
    hold_attempt: int = 1  # part of the next hold's idempotency key: a declined attempt's key is spent
    # Every hold: {"payment_intent", "placed_at", "released_at", "captured_cents"}.
    holds: list[Any] = _json([])
    captured_cents: int = 0
    captured_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)
    failed_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class DepositClaim(SQLModel, table=True):
    """A claim against a damage deposit (notes and the photos' file names as evidence), captured from the hold only
    once one manager and one finance person (two different people) have approved it — the same two signatures as a
    refund above the policy (services.finance.overrides)."""

    __tablename__ = "deposit_claim"

    id: int | None = Field(default=None, primary_key=True)
    deposit_id: int = Field(foreign_key="damage_deposit.id", index=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    amount_cents: int
    currency: str = Field(default="CAD", max_length=3)
    notes: str = Field(max_length=2000)
    photos: list[Any] = _json([])  # file names
    status: ClaimStatus = _state(ClaimStatus, ClaimStatus.PENDING, 12, index=True)
    requested_by: str = Field(max_length=254)
    requested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    manager_approved_by: str | None = Field(default=None, max_length=254)
    manager_approved_at: datetime | None = _ts(nullable=True)
    finance_approved_by: str | None = Field(default=None, max_length=254)
    finance_approved_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = Field(default=None, max_length=254)
    decided_at: datetime | None = _ts(nullable=True)
    decision_note: str | None = Field(default=None, max_length=500)
    captured_cents: int | None = None
    captured_at: datetime | None = _ts(nullable=True)
    error: str | None = Field(default=None, max_length=500)
