"""Daily close (runbook 003 §11): for one business day, Stripe's balance transactions against our own ledger.

**Business day**: a calendar day in venue time (VENUE_TIMEZONE), i.e. the UTC window [local midnight, next local
midnight): 23 or 25 hours on the days the clocks change. Web customers pay at weekends too, so every calendar day
has a close.

**Stripe's side**: every balance transaction created in the window, by `reporting_category` — `charge`, `refund`,
`dispute` (the chargeback debit), `dispute_reversal` (a won dispute's money back) — and each one's `fee`. Payouts and
transfers only move the balance to the bank and are left out; any other category is listed as an item.

**Our ledger** is what our own tables say happened, never a copy of Stripe, so money Stripe moved that Room Desk never
recorded shows up as a difference:

- payments: a booking whose payment Room Desk processed — the audit row `booking.payment.succeeded`, written in the
  same transaction as the processing (webhook, pay page, remediation), or `booking.adopted` for a payment taken over
  from the old system — for the booking's `amount_cents`. A booking still awaiting payment has taken no money in our
  books, whatever Stripe says (a missed webhook). A change to a booking that cost more is paid by a PaymentIntent of
  its own: it counts once the change is recorded as paid (`Amendment.paid_at`, for its `net_cents`), even if the
  change could not be made afterwards (its refund is then a refund like any other).
- refunds: `RefundRecord` rows, by Stripe refund id, on whichever of the booking's payments they were made. A
  refund made in the Stripe dashboard whose webhook never came is `missing_in_ledger`; a record whose refund Stripe
  does not have is `missing_in_stripe`.
- disputes: a chargeback is the bank's act, so we only ever learn of it from Stripe. Our knowledge is, in order:
  the `DisputeCase` row; else the webhook's `booking.dispute.opened` / `closed` audit rows; else the dispute as the
  last sync copied it, linked to our payment. A dispute nobody has received or synced is `missing_in_ledger`. A
  dispute won (status `won`) also expects its reversal.
- fees: we record none, so they are expected from the fee schedule in settings (CARD_FEE_BPS + CARD_FEE_FIXED_CENTS:
  2.9 % + 30 ¢ per charge, rounded half to even like the sandbox; DISPUTE_FEE_CENTS 15.00 per dispute, given back
  with a won dispute; refunds carry none). A Stripe fee that is not the schedule's for its own amount is a `fee`
  item; the ledger's fee total is the schedule applied to the ledger's amounts.

**Matching**, item by item: a Stripe charge ↔ our payment by PaymentIntent (the charge's PaymentIntent from the sync
cache, else from Stripe's charge list), a refund ↔ RefundRecord by refund id, a dispute (and its reversal) ↔ our
dispute by dispute id. A Stripe transaction of the day matches our record whenever we recorded it (a payment
processed the next morning still matches). A ledger entry dated to the day that Stripe does not show that day is
looked up in Stripe: found on another day it belongs to that day's close; not found, it is `missing_in_stripe`.
Problems: `missing_in_ledger`, `missing_in_stripe`, `amount_differs`. Amounts are magnitudes (a 25.00 refund is
2500) and `difference = Stripe − ledger`.

**Tax**: Stripe knows nothing of our tax split, so the comparison above is of gross amounts, tax included. From our
ledger alone the close also reports, for the entries that take part in the day's close (`totals["tax"]`): the tax
collected on payments (`Booking.tax_cents`; a paid change's `Amendment.tax_cents`), the tax given back on refunds
(`RefundRecord.tax_cents`, each refund's proportional share, services/rules/tax.py), the net tax (collected − given
back: what the day adds to the GST owed) and net sales (payments − refunds − net tax: the day's sales net of tax).
Disputes and fees are not sales and stay out of these figures. A close run before this was added has no `tax` entry.

**Variance**: Σ |difference| over the items, in basis points of the day's gross Stripe volume — Σ |amount| of the
day's balance transactions (charges, refunds, disputes, reversals; fees are not volume):
`variance_bps = round(10000 × Σ|difference| / gross)`. A day on which only our ledger moved money is measured
against the ledger's gross instead (100 % off); a day without activity is 0 bps and passes. Passed when
`variance_bps ≤ CLOSE_TOLERANCE_BPS` (50 = 0.5 %), failed above; the items are kept either way.

Every run is a new `DailyClose` row with its items, written in one transaction with its audit row; the newest run of
a day is the day's result, the older ones its history. A Stripe failure stores a row with status `error` and the
message, and nothing half-compared. Reading the runs back (history, one run, its CSV) is services.finance.close_queries.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any

from sqlmodel import Session, and_, col, or_, select

from models.tables import (
    Amendment,
    AuditLog,
    Booking,
    CloseStatus,
    DailyClose,
    DailyCloseItem,
    DamageDeposit,
    DisputeCase,
    RefundRecord,
    StripeObjectCache,
)
from services.core import audit
from services.core.context import Progress, Services
from services.core.errors import DomainError, NotFound, ValidationError
from services.core.settings import Settings
from services.finance.close_queries import CATEGORIES, CloseResult, fee_schedule_label

# Re-exported for services/ops/cli.py, which reads them from here.
from services.gateways.base import Json
from services.rules.fmt import money

log = logging.getLogger("roomdesk.finance.close")


# Signs of each category in the net payout (magnitudes are stored).
SIGN = {"charge": 1, "refund": -1, "dispute": -1, "dispute_reversal": 1}
# Money moved between the Stripe balance and the bank: not sales, so not part of a close.
BALANCE_MOVES = frozenset({"payout", "payout_reversal", "transfer", "transfer_reversal", "topup", "topup_reversal"})
PAID_ACTIONS = ("booking.payment.succeeded", "booking.adopted")
DISPUTE_ACTIONS = ("booking.dispute.opened", "booking.dispute.closed")
MONEYLESS_DISPUTES = ("warning_needs_response", "warning_under_review", "warning_closed")  # inquiries
# How far before the day to look for a transaction's charge / refund / dispute in Stripe's lists.
SCAN_MARGIN = timedelta(hours=1)


@dataclass
class _Entry:
    """One money movement on one side: a Stripe balance transaction, or a record of ours."""

    category: str  # charge | refund | dispute | dispute_reversal | other
    key: str  # what both sides share: the PaymentIntent (charges), refund id, dispute id
    amount: int  # magnitude in cents (signed for `other`)
    at: datetime | None = None
    fee: int = 0
    booking_id: int | None = None
    reference: str | None = None
    source: str = ""  # Stripe's object id (ch_, re_, dp_) or where our record lives
    booking_status: str | None = None  # for a Stripe entry we lack: what our booking says instead
    payment_intent: str | None = None  # a refund's payment (a booking changed at a cost has more than one)
    change: int | None = None  # the number of the change to the booking this payment paid for
    tax: int = 0  # ours only: the tax inside a payment or a refund


@dataclass
class _Comparison:
    items: list[DailyCloseItem]
    totals: dict[str, Any]
    stripe_gross: int
    ledger_gross: int


# --------------------------------------------------------------------------------------------------- days and fees


def day_window(business_day: date, settings: Settings) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a venue-time calendar day."""
    start = datetime.combine(business_day, time(0), tzinfo=settings.tz)
    end = datetime.combine(business_day + timedelta(days=1), time(0), tzinfo=settings.tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def expected_fee(category: str, amount_cents: int, settings: Settings) -> int:
    """What the fee schedule says Stripe takes on one transaction of `category` (magnitude `amount_cents`)."""
    if category == "charge":
        return round(Fraction(amount_cents * settings.card_fee_bps, 10_000)) + settings.card_fee_fixed_cents
    if category == "dispute":
        return settings.dispute_fee_cents
    if category == "dispute_reversal":
        return -settings.dispute_fee_cents
    return 0


# --------------------------------------------------------------------------------------------------- the run


def run_close(
    svc: Services,
    business_day: date,
    *,
    actor: str,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> CloseResult:
    """Compare the day's Stripe balance transactions with our ledger and store the result as a new close."""
    now = now or svc.now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    report = progress or (lambda _f, _m: None)
    start, end = day_window(business_day, svc.settings)
    if start > now:
        raise ValidationError(f"{business_day.isoformat()} has not started yet in venue time: nothing to close")
    tolerance = svc.settings.close_tolerance_bps
    try:
        report(0.02, "reading Stripe's balance transactions")
        stripe = _stripe_entries(svc, start, end, report)
        report(0.6, "reading our ledger")
        comparison = _compare(svc, stripe, start, end, report)
    except DomainError as exc:
        log.warning("Daily close for %s could not read Stripe: %s", business_day, exc.message)
        return _store_error(svc, business_day, actor=actor, now=now, tolerance=tolerance, message=exc.message)

    report(0.95, "saving the result")
    variance = sum(abs(i.difference_cents) for i in comparison.items)
    base = comparison.stripe_gross or comparison.ledger_gross
    bps = 0 if variance == 0 else (10_000 if base == 0 else (20_000 * variance + base) // (2 * base))
    status = CloseStatus.PASSED if bps <= tolerance else CloseStatus.FAILED
    comparison.totals["window"] = {"start": start.isoformat(), "end": end.isoformat(), "complete": end <= now}
    comparison.totals["fee_schedule"] = fee_schedule_label(svc.settings)
    comparison.totals["items"] = len(comparison.items)
    with svc.session() as s:
        close = DailyClose(
            business_day=business_day,
            status=status,
            run_at=now,
            run_by=actor,
            currency=svc.settings.currency,
            stripe_cents=comparison.stripe_gross,
            ledger_cents=comparison.ledger_gross,
            variance_cents=variance,
            variance_bps=bps,
            tolerance_bps=tolerance,
            totals=comparison.totals,
        )
        s.add(close)
        s.flush()
        assert close.id is not None
        for item in comparison.items:
            item.close_id = close.id
            s.add(item)
        audit.record(
            s,
            f"finance.close.{status}",
            actor=actor,
            at=now,
            close_id=close.id,
            business_day=business_day,
            variance_bps=bps,
            tolerance_bps=tolerance,
            items=len(comparison.items),
            stripe_cents=comparison.stripe_gross,
            message=f"Daily close {business_day.isoformat()} {status}: {bps} bps",
        )
        s.flush()
        items = list(comparison.items)
    report(1.0, f"{status}: {bps} bps")
    return CloseResult(close, items)


def _store_error(
    svc: Services, business_day: date, *, actor: str, now: datetime, tolerance: int, message: str
) -> CloseResult:
    text = f"Stripe could not be read, so nothing was compared: {message}"[:500]
    with svc.session() as s:
        close = DailyClose(
            business_day=business_day,
            status=CloseStatus.ERROR,
            run_at=now,
            run_by=actor,
            currency=svc.settings.currency,
            tolerance_bps=tolerance,
            error=text,
        )
        s.add(close)
        s.flush()
        audit.record(
            s,
            "finance.close.error",
            actor=actor,
            at=now,
            close_id=close.id,
            business_day=business_day,
            error=message,
            message=f"Daily close {business_day.isoformat()} could not run",
        )
    return CloseResult(close, [])


# --------------------------------------------------------------------------------------------------- Stripe's side


def _pages(fetch: Callable[[str | None], Json]) -> Iterator[list[Json]]:
    after: str | None = None
    while True:
        page = fetch(after)
        data = page.get("data") or []
        yield data
        if not page.get("has_more") or not data:
            return
        after = data[-1]["id"]


def _stripe_entries(svc: Services, start: datetime, end: datetime, report: Progress) -> list[_Entry]:
    """The day's balance transactions as entries, charges keyed by their PaymentIntent."""
    txns: list[Json] = []
    for page in _pages(
        lambda after: svc.payments.list_balance_transactions(
            created_gte=start, created_lt=end, limit=100, starting_after=after
        )
    ):
        txns.extend(page)
        report(min(0.02 + len(txns) / 2000, 0.4), f"read {len(txns)} balance transactions")
    entries: dict[tuple[str, str], _Entry] = {}
    charges: dict[str, _Entry] = {}
    for t in txns:
        category = str(t.get("reporting_category") or t.get("type") or "")
        if category in BALANCE_MOVES:
            continue
        amount, source = int(t.get("amount") or 0), str(t.get("source") or t.get("id"))
        at = datetime.fromtimestamp(int(t.get("created") or 0), UTC)
        if category not in CATEGORIES:
            category, key, source = "other", str(t.get("id")), f"{category or 'unknown'} transaction {t.get('id')}"
        else:
            key, amount = source, abs(amount)
        entry = entries.setdefault((category, key), _Entry(category, key, 0, at=at, source=source))
        entry.amount += amount
        entry.fee += int(t.get("fee") or 0)
        if category == "charge":
            charges[source] = entry
    report(0.45, "finding each charge's payment")
    pi_of = _charge_payment_intents(svc, set(charges), start)
    for charge_id, entry in charges.items():
        entry.key = pi_of.get(charge_id) or charge_id  # a charge we cannot place matches nothing: missing_in_ledger
    return list(entries.values())


def _cached(svc: Services, kind: str, ids: Iterable[str]) -> dict[str, StripeObjectCache]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with svc.session() as s:
        rows = s.exec(
            select(StripeObjectCache).where(StripeObjectCache.object == kind, col(StripeObjectCache.id).in_(wanted))
        )
        return {r.id: r for r in rows}


def _scan(fetch: Callable[..., Json], wanted: set[str], since: datetime) -> dict[str, Json]:
    """Page a newest-first Stripe list until every wanted id is found or the list is older than `since`."""
    found: dict[str, Json] = {}
    if not wanted:
        return found
    floor = int((since - SCAN_MARGIN).timestamp())
    for page in _pages(lambda after: fetch(limit=100, starting_after=after)):
        for obj in page:
            if obj.get("id") in wanted:
                found[obj["id"]] = obj
        if len(found) == len(wanted) or (page and int(page[-1].get("created") or 0) < floor):
            break
    return found


def _charge_payment_intents(svc: Services, charge_ids: set[str], since: datetime) -> dict[str, str]:
    """charge id → PaymentIntent id: from the sync cache, else from Stripe's charge list."""
    out = {cid: row.payment_intent for cid, row in _cached(svc, "charge", charge_ids).items() if row.payment_intent}
    for cid, charge in _scan(svc.payments.list_charges, charge_ids - set(out), since).items():
        if isinstance(charge.get("payment_intent"), str):
            out[cid] = charge["payment_intent"]
    return out


# --------------------------------------------------------------------------------------------------- our ledger


def _in(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at < end


def _ledger_payments(s: Session, pis: set[str], start: datetime, end: datetime) -> dict[str, _Entry]:
    """Payments we processed: for the given PaymentIntents whenever recorded, and any recorded in the window."""
    dated = s.exec(
        select(AuditLog.payment_intent).where(
            col(AuditLog.action).in_(PAID_ACTIONS), AuditLog.at >= start, AuditLog.at < end
        )
    )
    wanted = sorted(pis | {pi for pi in dated if pi})
    out: dict[str, _Entry] = _ledger_change_payments(s, pis, start, end)
    out.update(_ledger_deposit_captures(s, pis, start, end))
    if not wanted:
        return out
    first: dict[str, datetime] = {}
    for pi, at in s.exec(
        select(AuditLog.payment_intent, AuditLog.at).where(
            col(AuditLog.action).in_(PAID_ACTIONS), col(AuditLog.payment_intent).in_(wanted)
        )
    ):
        if pi and (pi not in first or at < first[pi]):
            first[pi] = at
    for b in s.exec(select(Booking).where(col(Booking.payment_intent_id).in_(sorted(first)))):
        assert b.payment_intent_id is not None
        out[b.payment_intent_id] = _Entry(
            "charge",
            b.payment_intent_id,
            b.amount_cents,
            at=first[b.payment_intent_id],
            booking_id=b.id,
            reference=b.reference,
            source=f"booking {b.reference}",
            tax=b.tax_cents,
        )
    return out


def _ledger_deposit_captures(s: Session, pis: set[str], start: datetime, end: datetime) -> dict[str, _Entry]:
    """Damage claims taken from a deposit hold (services.finance.deposits): for the given PaymentIntents whenever
    captured, and any captured in the window. A hold that was released moved no money and is in no close."""
    rows = s.exec(
        select(DamageDeposit, Booking)
        .join(Booking, col(Booking.id) == col(DamageDeposit.booking_id))
        .where(
            col(DamageDeposit.captured_at).is_not(None),
            or_(
                col(DamageDeposit.payment_intent_id).in_(sorted(pis)),
                and_(col(DamageDeposit.captured_at) >= start, col(DamageDeposit.captured_at) < end),
            ),
        )
    )
    return {
        dep.payment_intent_id: _Entry(
            "charge",
            dep.payment_intent_id,
            dep.captured_cents,
            at=dep.captured_at,
            booking_id=b.id,
            reference=b.reference,
            source=f"damage deposit of booking {b.reference}",
        )
        for dep, b in rows
        if dep.payment_intent_id
    }


def _ledger_change_payments(s: Session, pis: set[str], start: datetime, end: datetime) -> dict[str, _Entry]:
    """Changes to bookings paid by a PaymentIntent of their own: for the given PaymentIntents whenever paid, and any
    paid in the window."""
    rows = s.exec(
        select(Amendment, Booking)
        .join(Booking, col(Booking.id) == col(Amendment.booking_id))
        .where(
            col(Amendment.payment_intent_id).is_not(None),
            col(Amendment.paid_at).is_not(None),
            or_(
                col(Amendment.payment_intent_id).in_(sorted(pis)),
                and_(col(Amendment.paid_at) >= start, col(Amendment.paid_at) < end),
            ),
        )
    )
    out: dict[str, _Entry] = {}
    for a, b in rows:
        assert a.payment_intent_id is not None
        out[a.payment_intent_id] = _Entry(
            "charge",
            a.payment_intent_id,
            a.net_cents,
            at=a.paid_at,
            booking_id=b.id,
            reference=b.reference,
            source=f"change {a.number} of booking {b.reference}",
            change=a.number,
            tax=a.tax_cents,
        )
    return out


def _ledger_refunds(s: Session, ids: set[str], start: datetime, end: datetime) -> dict[str, _Entry]:
    rows = s.exec(
        select(RefundRecord).where(
            or_(
                col(RefundRecord.refund_id).in_(sorted(ids)),
                and_(col(RefundRecord.created_at) >= start, col(RefundRecord.created_at) < end),
            )
        )
    )
    return {
        r.refund_id: _Entry(
            "refund",
            r.refund_id,
            r.amount_cents,
            at=r.created_at,
            booking_id=r.booking_id,
            source="refund record",
            payment_intent=r.payment_intent_id,
            tax=r.tax_cents,
        )
        for r in rows
    }


@dataclass
class _Dispute:
    dispute_id: str
    amount: int
    status: str
    opened_at: datetime | None
    closed_at: datetime | None
    payment_intent: str | None
    booking_id: int | None
    source: str


def _ledger_disputes(s: Session, ids: set[str], start: datetime, end: datetime) -> dict[tuple[str, str], _Entry]:
    """Our knowledge of disputes (DisputeCase, else the webhook's audit rows, else the synced copy) as a dispute
    entry and, for a won one, its reversal."""
    known: dict[str, _Dispute] = {}
    # Weakest first, each stronger source overwriting: the synced copy, the webhook's rows, the dispute case.
    cached = s.exec(
        select(StripeObjectCache).where(
            StripeObjectCache.object == "dispute",
            or_(
                col(StripeObjectCache.id).in_(sorted(ids)),
                and_(col(StripeObjectCache.created) >= start, col(StripeObjectCache.created) < end),
            ),
        )
    )
    for c in cached:
        if c.payment_intent is None:
            continue  # not linked to a payment of ours; matched below only if a booking has it
        known[c.id] = _Dispute(
            c.id, int(c.amount or 0), c.status or "", c.created, c.created, c.payment_intent, None, "the last sync"
        )
    rows = s.exec(select(AuditLog).where(col(AuditLog.action).in_(DISPUTE_ACTIONS)).order_by(col(AuditLog.at)))
    for a in rows:
        payload = a.payload or {}
        dispute_id = str(payload.get("dispute_id") or "")
        if not dispute_id:
            continue
        earlier = known.get(dispute_id)
        opened = earlier.opened_at if earlier is not None and earlier.source == "webhook" else a.at
        amount = int(payload.get("amount_cents") or 0)
        status = str(payload.get("status") or "")
        known[dispute_id] = _Dispute(
            dispute_id, amount, status, opened, a.at, a.payment_intent, a.booking_id, "webhook"
        )
    for case in s.exec(select(DisputeCase)):
        known[case.dispute_id] = _Dispute(
            case.dispute_id,
            case.amount_cents,
            case.status,
            case.opened_at,
            case.closed_at or case.updated_at,
            case.payment_intent_id,
            case.booking_id,
            "dispute case",
        )
    # Only bookings of ours: a synced dispute on someone else's payment is not in our books.
    pis = {d.payment_intent for d in known.values() if d.payment_intent}
    ours = {pi: b.id for pi, (b, _) in _owners(s, pis).items()}
    out: dict[tuple[str, str], _Entry] = {}
    for d in known.values():
        booking_id = d.booking_id or ours.get(d.payment_intent or "")
        if booking_id is None or d.status in MONEYLESS_DISPUTES:
            continue
        entry = _Entry("dispute", d.dispute_id, d.amount, at=d.opened_at, booking_id=booking_id, source=d.source)
        if d.dispute_id in ids or _in(d.opened_at, start, end):
            out[("dispute", d.dispute_id)] = entry
        if d.status == "won" and (d.dispute_id in ids or _in(d.closed_at, start, end)):
            reversal = _Entry(
                "dispute_reversal", d.dispute_id, d.amount, at=d.closed_at, booking_id=booking_id, source=d.source
            )
            out[("dispute_reversal", d.dispute_id)] = reversal
    return out


def _ledger_entries(
    svc: Services, stripe: list[_Entry], start: datetime, end: datetime
) -> dict[tuple[str, str], _Entry]:
    keys: dict[str, set[str]] = defaultdict(set)
    for e in stripe:
        keys[e.category].add(e.key)
    with svc.session() as s:
        out: dict[tuple[str, str], _Entry] = {}
        out.update({("charge", k): e for k, e in _ledger_payments(s, keys["charge"], start, end).items()})
        out.update({("refund", k): e for k, e in _ledger_refunds(s, keys["refund"], start, end).items()})
        out.update(_ledger_disputes(s, keys["dispute"] | keys["dispute_reversal"], start, end))
    return out


def _label_bookings(svc: Services, entries: Iterable[_Entry]) -> None:
    """Fill in the booking reference of every entry that knows its booking."""
    entries = list(entries)
    ids = {e.booking_id for e in entries if e.booking_id is not None}
    if not ids:
        return
    with svc.session() as s:
        refs = {b.id: b.reference for b in s.exec(select(Booking).where(col(Booking.id).in_(sorted(ids))))}
    for e in entries:
        if e.booking_id is not None and e.reference is None:
            e.reference = refs.get(e.booking_id)


def _owners(s: Session, pis: Iterable[str]) -> dict[str, tuple[Booking, Amendment | None]]:
    """PaymentIntent → the booking it paid for, with the change it paid for when it is a change's own payment."""
    wanted = sorted({p for p in pis if p})
    if not wanted:
        return {}
    out: dict[str, tuple[Booking, Amendment | None]] = {
        b.payment_intent_id: (b, None)
        for b in s.exec(select(Booking).where(col(Booking.payment_intent_id).in_(wanted)))
        if b.payment_intent_id
    }
    for a, b in s.exec(
        select(Amendment, Booking)
        .join(Booking, col(Booking.id) == col(Amendment.booking_id))
        .where(col(Amendment.payment_intent_id).in_(wanted))
    ):
        if a.payment_intent_id:
            out[a.payment_intent_id] = (b, a)
    return out


def _bookings_by_pi(svc: Services, pis: Iterable[str]) -> dict[str, tuple[Booking, Amendment | None]]:
    with svc.session() as s:
        return _owners(s, pis)


# --------------------------------------------------------------------------------------------------- comparison


def _compare(svc: Services, stripe: list[_Entry], start: datetime, end: datetime, report: Progress) -> _Comparison:
    settings = svc.settings
    cur = settings.currency
    ledger = _ledger_entries(svc, stripe, start, end)
    report(0.7, "matching item by item")
    _place_unrecorded(svc, stripe, ledger, start)
    items: list[DailyCloseItem] = []
    used: list[_Entry] = []  # ledger entries taking part in this day's close

    def item(category: str, problem: str, e: _Entry, stripe_cents: int, ledger_cents: int, note: str) -> None:
        items.append(
            DailyCloseItem(
                close_id=0,
                category=category,
                problem=problem,
                stripe_id=e.key[:64],
                booking_id=e.booking_id,
                booking_reference=e.reference,
                stripe_cents=stripe_cents,
                ledger_cents=ledger_cents,
                difference_cents=stripe_cents - ledger_cents,
                note=note[:500],
            )
        )

    for e in stripe:
        ours = ledger.get((e.category, e.key))
        if ours is not None:
            used.append(ours)
            e.booking_id, e.reference = ours.booking_id, ours.reference or e.reference
        if e.category == "other":
            note = f"Stripe {e.source} of {money(e.amount, cur)}: not a charge, refund or dispute Room Desk records"
            item("other", "missing_in_ledger", e, e.amount, 0, note)
            continue
        if ours is None:
            item(e.category, "missing_in_ledger", e, e.amount, 0, _unrecorded_note(e, cur))
        elif ours.amount != e.amount:
            note = f"Stripe {money(e.amount, cur)}, Room Desk {money(ours.amount, cur)} ({ours.source})"
            item(e.category, "amount_differs", e, e.amount, ours.amount, note)
        fee = expected_fee(e.category, e.amount, settings)
        if e.fee != fee:
            note = (
                f"Stripe's fee {money(e.fee, cur)} on {money(e.amount, cur)}; the schedule "
                f"({fee_schedule_label(settings)}) gives {money(fee, cur)}"
            )
            item("fee", "amount_differs", e, e.fee, fee, note)

    seen = {(e.category, e.key) for e in stripe}
    missing = [o for k, o in ledger.items() if k not in seen and _in(o.at, start, end)]
    elsewhere = _found_on_other_days(svc, missing, start, end) if missing else set()
    _label_bookings(svc, [*ledger.values(), *stripe])
    for o in missing:
        if (o.category, o.key) in elsewhere:
            continue  # Stripe has it on another day: that day's close compares it
        used.append(o)
        note = f"Room Desk recorded {money(o.amount, cur)} ({o.source}); Stripe has no such {o.category}"
        if o.category == "charge":
            note = f"Room Desk recorded this payment of {money(o.amount, cur)}; Stripe shows no successful charge"
        item(o.category, "missing_in_stripe", o, 0, o.amount, note)

    totals = _totals(settings, stripe, used)
    stripe_gross = sum(abs(e.amount) for e in stripe)
    ledger_gross = sum(abs(o.amount) for o in used)
    items.sort(key=lambda i: (-abs(i.difference_cents), i.category, i.stripe_id or ""))
    return _Comparison(items, totals, stripe_gross, ledger_gross)


def _place_unrecorded(
    svc: Services, stripe: list[_Entry], ledger: dict[tuple[str, str], _Entry], since: datetime
) -> None:
    """Name the booking of each Stripe transaction our ledger lacks (from its PaymentIntent), so the item says whose
    money it is."""
    lacking = [e for e in stripe if (e.category, e.key) not in ledger and e.category in CATEGORIES]
    pi_of: dict[str, str | None] = {e.key: e.key for e in lacking if e.category == "charge"}
    for category, kind, fetch in (
        ("refund", "refund", svc.payments.list_refunds),
        ("dispute", "dispute", svc.payments.list_disputes),
    ):
        ids = {e.key for e in lacking if e.category in (category, f"{category}_reversal")}
        cached = {k: r.payment_intent for k, r in _cached(svc, kind, ids).items() if r.payment_intent}
        pi_of.update(cached)
        for oid, obj in _scan(fetch, ids - set(cached), since).items():
            pi_of[oid] = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None
    bookings = _bookings_by_pi(svc, [p for p in pi_of.values() if p])
    for e in lacking:
        pi = pi_of.get(e.key)
        owner = bookings.get(pi or "")
        e.source = f"{e.source} · {pi}" if pi and pi != e.key else e.source
        if owner is not None:
            b, change = owner
            e.booking_id, e.reference, e.booking_status = b.id, b.reference, b.status
            e.change = change.number if change is not None else None


def _unrecorded_note(e: _Entry, cur: str) -> str:
    if e.category == "charge":
        if e.reference is None:
            return f"Stripe charged {money(e.amount, cur)} ({e.source}) for a payment that is not a Room Desk booking"
        if e.change is not None:
            return (
                f"Stripe charged {money(e.amount, cur)} for change {e.change} of booking {e.reference}, which Room "
                "Desk has not recorded as paid: the webhook was missed (Mismatches → Process the payment now)"
            )
        if e.booking_status == "AWAITING_PAYMENT":
            return (
                f"Stripe charged {money(e.amount, cur)} but booking {e.reference} still awaits payment in Room Desk: "
                "the webhook was missed (Mismatches → Process the payment now)"
            )
        return f"Stripe charged {money(e.amount, cur)}; Room Desk never recorded booking {e.reference} as paid"
    if e.category == "refund":
        whose = f"booking {e.reference}" if e.reference else "a payment that is not a Room Desk booking"
        return (
            f"Refund of {money(e.amount, cur)} on {whose} made in Stripe and never recorded in Room Desk "
            "(a dashboard refund whose webhook was missed?)"
        )
    whose = f"booking {e.reference}" if e.reference else "a payment that is not a Room Desk booking"
    what = "Dispute" if e.category == "dispute" else "Won dispute's reversal"
    return f"{what} of {money(e.amount, cur)} on {whose} that Room Desk has not recorded (no webhook, no sync yet)"


def _refunds_of(svc: Services, payment_intent_id: str) -> list[Json]:
    def fetch(after: str | None) -> Json:
        return svc.payments.list_refunds(payment_intent_id=payment_intent_id, limit=100, starting_after=after)

    return [r for page in _pages(fetch) for r in page]


def _found_on_other_days(svc: Services, entries: list[_Entry], start: datetime, end: datetime) -> set[tuple[str, str]]:
    """Which of our entries Stripe has, but outside the window: they belong to another day's close."""
    out: set[tuple[str, str]] = set()
    lo, hi = int(start.timestamp()), int(end.timestamp())

    def elsewhere(created: Any) -> bool:
        return created is not None and not lo <= int(created) < hi

    booking_pi: dict[int, str] = {}
    ids = {o.booking_id for o in entries if o.booking_id is not None}
    if ids:
        with svc.session() as s:
            booking_pi = {
                b.id: b.payment_intent_id
                for b in s.exec(select(Booking).where(col(Booking.id).in_(sorted(ids))))
                if b.id is not None and b.payment_intent_id
            }
    disputes: dict[str, Json] | None = None
    for o in entries:
        if o.category == "charge":
            try:
                pi = svc.payments.retrieve_payment_intent(o.key)
            except NotFound:
                continue
            charge = pi.get("latest_charge")
            if pi.get("status") == "succeeded" and isinstance(charge, dict) and elsewhere(charge.get("created")):
                out.add((o.category, o.key))
        elif o.category == "refund":
            pi_id = o.payment_intent or booking_pi.get(o.booking_id or 0)
            if not pi_id:
                continue
            for r in _refunds_of(svc, pi_id):
                if r.get("id") == o.key and r.get("status") in ("succeeded", "pending") and elsewhere(r.get("created")):
                    out.add((o.category, o.key))
        else:
            if disputes is None:
                disputes = {
                    d["id"]: d
                    for page in _pages(lambda after: svc.payments.list_disputes(limit=100, starting_after=after))
                    for d in page
                }
            d = disputes.get(o.key)
            if d is None or str(d.get("status")) in MONEYLESS_DISPUTES:
                continue
            if (o.category == "dispute" or d.get("status") == "won") and elsewhere(d.get("created")):
                out.add((o.category, o.key))
    return out


def _totals(settings: Settings, stripe: list[_Entry], ledger: list[_Entry]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for category in (*CATEGORIES, "other"):
        s_items = [e for e in stripe if e.category == category]
        l_items = [o for o in ledger if o.category == category]
        if category == "other" and not s_items:
            continue
        totals[category] = {
            "stripe": sum(e.amount for e in s_items),
            "ledger": sum(o.amount for o in l_items),
            "stripe_count": len(s_items),
            "ledger_count": len(l_items),
        }
    stripe_fee = sum(e.fee for e in stripe)
    ledger_fee = sum(expected_fee(o.category, o.amount, settings) for o in ledger)
    totals["fee"] = {"stripe": stripe_fee, "ledger": ledger_fee}

    def net(entries: list[_Entry], fees: int) -> int:
        return sum(e.amount if e.category == "other" else SIGN[e.category] * e.amount for e in entries) - fees

    totals["net"] = {"stripe": net(stripe, stripe_fee), "ledger": net(ledger, ledger_fee)}
    totals["tax"] = _tax_totals(ledger)
    return totals


def _tax_totals(ledger: Iterable[_Entry]) -> dict[str, int]:
    """The day's tax from our ledger: collected on payments, given back on refunds, net, and net sales."""
    entries = list(ledger)
    paid = sum(e.amount for e in entries if e.category == "charge")
    refunded = sum(e.amount for e in entries if e.category == "refund")
    on_payments = sum(e.tax for e in entries if e.category == "charge")
    on_refunds = sum(e.tax for e in entries if e.category == "refund")
    net_tax = on_payments - on_refunds
    return {
        "on_payments": on_payments,
        "on_refunds": on_refunds,
        "net": net_tax,
        "net_sales": paid - refunded - net_tax,
    }
