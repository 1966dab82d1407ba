"""Finance read models: the refunds report with its CSV and Excel exports, and revenue, refunds and room occupancy
for the charts. Reads only: pandas frames built from our tables and the Stripe cache; money stays integer cents
until an export or a page formats it.

The refunds report starts from our ledger (`RefundRecord`: who refunded, why, what the policy said) and is
cross-checked against every Stripe refund we know, from the sync cache or (`live=True`) from Stripe itself. A Stripe
refund we hold no record of still appears, once, flagged "not in our ledger"; a ledger row never appears twice. Each
refund is dated by Stripe's own time when Stripe is known to have it (the money left then), else by our record's,
and every date is a venue-local date: a refund at 23:30 in Vancouver on the 31st belongs to the 31st.

Tax: prices are net of tax and tax is added per day (services/rules/tax.py holds THE rounding rule: per line and per
rate, half up). A refund gives back its proportional share of its payment's tax, worked out once when it is recorded
(`RefundRecord.tax_cents`, tax.refund_split: refunds in parts add up to exactly the payment's tax); the report shows
that figure and the refund's net (amount − tax). A refund recorded before tax was charged shows 0. A Stripe refund
not in our ledger shows the share recording it now would give it (services.booking.refunds.refund_tax), 0 on a
payment that is not ours. Revenue is net of tax: payments − refunds − the tax collected (the GST owed: tax on the
payments, from `Booking.tax_cents` and a paid change's `Amendment.tax_cents`, less the tax the refunds gave back).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
from sqlmodel import col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    Booking,
    BookingLeg,
    RefundRecord,
    StripeObjectCache,
    SyncState,
)
from services.booking.availability import open_days
from services.booking.refunds import refund_tax
from services.core.context import Services
from services.core.errors import ValidationError

ORIGINS: dict[str, str] = {
    "amendment": "Change to booking",
    "auto_gate2": "Auto-refund at Gate 2",
    "cancellation": "Cancellation",
    "remediation": "Remediation",
    "stripe_dashboard": "Made in the Stripe dashboard",
}
# Stripe's own refund reasons (an enum), for refunds made outside Room Desk.
STRIPE_REASONS = {
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraudulent",
    "requested_by_customer": "Requested by the customer",
    "expired_uncaptured_charge": "Uncaptured charge expired",
}
# Stripe refunds that returned (or are returning) money; failed and canceled ones did not.
MONEY_RETURNED = frozenset({"succeeded", "pending", "requires_action"})
NOT_IN_LEDGER = "Not in our ledger"
T = TypeVar("T")
STRIPE_CURSOR = (
    "stripe:events"  # services.reconciliation.sync's cursor row: its last_ok_at is when the cache last matched Stripe
)

ROW_COLUMNS = [
    "refunded_at",  # venue time, timezone-aware
    "date",  # venue date
    "month",  # "2026-03", venue time
    "refund_id",
    "booking_ref",
    "booking_id",
    "room_slug",
    "room",
    "customer",
    "origin",  # code
    "origin_label",  # in words
    "reason",
    "amount_cents",  # what went back, tax included
    "tax_cents",  # the tax inside it
    "net_cents",  # amount − tax
    "currency",
    "policy_quote_cents",  # nullable
    "actor",
    "payment_intent",
    "in_ledger",
    "in_stripe",
    "check",  # "" when the ledger and Stripe agree, else what to look at
]
TOTAL_COLUMNS = ["key", "label", "currency", "refunds", "amount_cents", "tax_cents"]


# --------------------------------------------------------------------------------------------- dates


def venue_today(svc: Services) -> date:
    return svc.now().astimezone(svc.settings.tz).date()


def this_month(today: date) -> tuple[date, date]:
    """The first and last day of `today`'s month."""
    first = today.replace(day=1)
    return first, _next_month(first) - timedelta(days=1)


def last_month(today: date) -> tuple[date, date]:
    """The first and last day of the calendar month before `today`'s."""
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def last_three_months(today: date) -> tuple[date, date]:
    """`today`'s month and the two before it, whole."""
    first = today.replace(day=1)
    for _ in range(2):
        first = (first - timedelta(days=1)).replace(day=1)
    return first, this_month(today)[1]


def this_year(today: date) -> tuple[date, date]:
    return date(today.year, 1, 1), date(today.year, 12, 31)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _utc_window(date_from: date, date_to: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start of date_from, start of the day after date_to) in venue time, as UTC instants."""
    if date_from > date_to:
        raise ValidationError(f"The start date {date_from:%Y-%m-%d} is after the end date {date_to:%Y-%m-%d}")
    lo = datetime.combine(date_from, time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return lo, hi


def months_between(date_from: date, date_to: date) -> list[str]:
    """Every month the range touches, as 'YYYY-MM'."""
    out, m = [], date_from.replace(day=1)
    while m <= date_to:
        out.append(f"{m:%Y-%m}")
        m = _next_month(m)
    return out


# --------------------------------------------------------------------------------------------- stripe side


@dataclass(frozen=True)
class StripeRefund:
    """What the report needs of one Stripe refund, from the cache or from Stripe."""

    id: str
    amount_cents: int
    currency: str
    created: datetime | None
    payment_intent: str | None
    status: str
    reason: str
    metadata: dict[str, Any]

    @classmethod
    def from_cache(cls, row: StripeObjectCache) -> StripeRefund:
        return cls(
            id=row.id,
            amount_cents=int(row.amount or 0),
            currency=(row.currency or "").upper(),
            created=row.created,
            payment_intent=row.payment_intent,
            status=row.status or "",
            reason=row.reason or "",
            metadata=dict((row.data or {}).get("metadata") or {}),
        )

    @classmethod
    def from_stripe(cls, obj: dict[str, Any]) -> StripeRefund:
        pi = obj.get("payment_intent")
        meta = dict(obj.get("metadata") or {})
        created = obj.get("created")
        return cls(
            id=str(obj["id"]),
            amount_cents=int(obj.get("amount") or 0),
            currency=str(obj.get("currency") or "").upper(),
            created=datetime.fromtimestamp(created, UTC) if isinstance(created, (int, float)) else None,
            payment_intent=pi if isinstance(pi, str) else (pi or {}).get("id"),
            status=str(obj.get("status") or ""),
            reason=str(meta.get("reason") or obj.get("reason") or ""),
            metadata=meta,
        )


def _cached_refunds(svc: Services, lo: datetime, hi: datetime, also: Iterable[str]) -> dict[str, StripeRefund]:
    """Cached Stripe refunds created in [lo, hi), plus the ones named in `also` whenever they were created."""
    wanted = sorted(set(also))
    out: dict[str, StripeRefund] = {}
    with svc.read_session() as s:
        q = select(StripeObjectCache).where(
            StripeObjectCache.object == "refund",
            col(StripeObjectCache.created) >= lo,
            col(StripeObjectCache.created) < hi,
        )
        for row in s.exec(q):
            out[row.id] = StripeRefund.from_cache(row)
        for chunk in _chunks(wanted, 500):
            q = select(StripeObjectCache).where(
                StripeObjectCache.object == "refund", col(StripeObjectCache.id).in_(chunk)
            )
            for row in s.exec(q):
                out[row.id] = StripeRefund.from_cache(row)
    return out


def _live_refunds(svc: Services, lo: datetime, ledger: dict[str, RefundRecord]) -> dict[str, StripeRefund]:
    """Stripe's refunds, read from Stripe: every one created since `lo` (paged newest first, stopping there), plus
    those of the payments whose ledger rows are in the range but whose refunds Stripe made earlier (a webhook that
    recorded one late)."""
    out = _page_refunds(svc, stop=lo)
    unmatched = {r.booking_id for rid, r in ledger.items() if rid not in out}
    if unmatched:
        with svc.read_session() as s:
            pis = s.exec(select(Booking.payment_intent_id).where(col(Booking.id).in_(sorted(unmatched))))
            for pi in sorted(p for p in pis if p):
                out.update(_page_refunds(svc, payment_intent_id=pi))
    return out


def _page_refunds(
    svc: Services, *, stop: datetime | None = None, payment_intent_id: str | None = None
) -> dict[str, StripeRefund]:
    out: dict[str, StripeRefund] = {}
    after: str | None = None
    while True:
        page = svc.payments.list_refunds(payment_intent_id=payment_intent_id, limit=100, starting_after=after)
        data = page.get("data") or []
        for obj in data:
            refund = StripeRefund.from_stripe(obj)
            if stop is not None and refund.created is not None and refund.created < stop:
                return out
            out[refund.id] = refund
        if not page.get("has_more") or not data:
            return out
        after = str(data[-1]["id"])


def _chunks(items: Sequence[T], n: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


# --------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class RefundReport:
    """The rows of the refunds report and their totals. Every amount is integer cents."""

    date_from: date
    date_to: date
    currency: str  # the venue's currency (rows carry their own)
    venue_timezone: str
    rows: pd.DataFrame  # ROW_COLUMNS, oldest first
    by_origin: pd.DataFrame  # TOTAL_COLUMNS, every origin (zero when none)
    by_room: pd.DataFrame  # TOTAL_COLUMNS, largest first
    by_month: pd.DataFrame  # TOTAL_COLUMNS, every month of the range (zero when none)
    stripe_as_of: datetime | None  # when the cache last matched Stripe (None: never, or read live)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def total_cents(self) -> int:
        return int(self.rows["amount_cents"].sum()) if len(self.rows) else 0

    @property
    def tax_cents(self) -> int:
        """The tax the refunds gave back."""
        return int(self.rows["tax_cents"].sum()) if len(self.rows) else 0

    @property
    def net_cents(self) -> int:
        """What the refunds gave back net of tax."""
        return self.total_cents - self.tax_cents

    @property
    def not_in_ledger(self) -> int:
        return int((~self.rows["in_ledger"]).sum()) if len(self.rows) else 0

    @property
    def needs_a_look(self) -> int:
        return int((self.rows["check"] != "").sum()) if len(self.rows) else 0


def refund_report(
    svc: Services,
    date_from: date,
    date_to: date,
    *,
    rooms: Sequence[str] | None = None,
    origins: Sequence[str] | None = None,
    live: bool = False,
) -> RefundReport:
    """Every refund made between two venue dates (inclusive), from our ledger and Stripe, each exactly once."""
    tz = svc.settings.tz
    lo, hi = _utc_window(date_from, date_to, tz)
    with svc.read_session() as s:
        ledger = {r.refund_id: r for r in s.exec(_ledger_in(lo, hi))}
        as_of = None if live else _stripe_as_of(s)
    stripe = _live_refunds(svc, lo, ledger) if live else _cached_refunds(svc, lo, hi, ledger)
    # A Stripe refund dated inside the range whose ledger row is dated outside it (recorded late by a webhook).
    missing = [rid for rid in stripe if rid not in ledger]
    with svc.read_session() as s:
        for chunk in _chunks(missing, 500):
            late = s.exec(select(RefundRecord).where(col(RefundRecord.refund_id).in_(chunk)))
            ledger.update({r.refund_id: r for r in late})
        bookings = _bookings(s, ledger.values(), stripe.values())
        payments = _cached_payment_intents(s, [r.payment_intent for r in stripe.values() if r.payment_intent])
        unrecorded_tax = _unrecorded_tax(s, [r for rid, r in stripe.items() if rid not in ledger], bookings)

    out = []
    for rid in sorted(set(ledger) | set(stripe)):
        row = _row(svc, ledger.get(rid), stripe.get(rid), bookings, payments, as_of, live, unrecorded_tax)
        if row is not None and lo <= row["_utc"] < hi:
            out.append(row)
    rows = pd.DataFrame(out, columns=[*ROW_COLUMNS, "_utc"])
    if rooms:
        rows = rows[rows["room_slug"].isin(list(rooms))]
    if origins:
        rows = rows[rows["origin"].isin(list(origins))]
    rows = rows.sort_values(["_utc", "refund_id"]).drop(columns="_utc").reset_index(drop=True)
    rows = _typed(rows, tz)
    return summarise(rows, date_from, date_to, svc.settings.currency, svc.settings.venue_timezone, as_of)


def _ledger_in(lo: datetime, hi: datetime) -> Any:
    return select(RefundRecord).where(col(RefundRecord.created_at) >= lo, col(RefundRecord.created_at) < hi)


def _stripe_as_of(session: Any) -> datetime | None:
    state = session.get(SyncState, STRIPE_CURSOR)
    return state.last_ok_at if state is not None else None


def _bookings(session: Any, ledger: Iterable[RefundRecord], stripe: Iterable[StripeRefund]) -> dict[int | str, Booking]:
    """The bookings the refunds belong to, by id and by PaymentIntent."""
    ids = sorted({r.booking_id for r in ledger})
    pis = sorted({r.payment_intent for r in stripe if r.payment_intent})
    found: list[Booking] = []
    for chunk in _chunks(ids, 500):
        found += list(session.exec(select(Booking).where(col(Booking.id).in_(chunk))))
    for pchunk in _chunks(pis, 500):
        found += list(session.exec(select(Booking).where(col(Booking.payment_intent_id).in_(pchunk))))
    out: dict[int | str, Booking] = {}
    for b in found:
        assert b.id is not None
        out[b.id] = b
        if b.payment_intent_id:
            out[b.payment_intent_id] = b
    out.update(_bookings_of_changes(session, [p for p in pis if p not in out]))
    return out


def _bookings_of_changes(session: Any, pis: Sequence[str]) -> dict[str, Booking]:
    """The bookings that changes paid by these PaymentIntents belong to (a change that cost more has its own)."""
    out: dict[str, Booking] = {}
    for chunk in _chunks(sorted(set(pis)), 500):
        q = (
            select(Amendment.payment_intent_id, Booking)
            .join(Booking, col(Booking.id) == col(Amendment.booking_id))
            .where(col(Amendment.payment_intent_id).in_(chunk))
        )
        out.update({str(pi): b for pi, b in session.exec(q) if pi})
    return out


def _unrecorded_tax(
    session: Any, refunds: Iterable[StripeRefund], bookings: dict[int | str, Booking]
) -> dict[str, int]:
    """Refund id → the tax a Stripe refund our ledger lacks would give back if it were recorded now, for refunds of
    our bookings' payments (the old system's payments carried no tax of ours)."""
    out: dict[str, int] = {}
    for r in refunds:
        booking = bookings.get(r.payment_intent) if r.payment_intent else None
        if booking is not None and r.status in MONEY_RETURNED:
            out[r.id] = refund_tax(session, booking, r.payment_intent, r.amount_cents)
    return out


def _cached_payment_intents(session: Any, pis: Sequence[str]) -> dict[str, StripeObjectCache]:
    """PaymentIntents from the cache: who paid and for which room, for refunds of payments no booking of ours has
    (the old booking system's)."""
    out: dict[str, StripeObjectCache] = {}
    for chunk in _chunks(sorted(set(pis)), 500):
        q = select(StripeObjectCache).where(
            StripeObjectCache.object == "payment_intent", col(StripeObjectCache.id).in_(chunk)
        )
        out.update({r.id: r for r in session.exec(q)})
    return out


def _row(
    svc: Services,
    rec: RefundRecord | None,
    refund: StripeRefund | None,
    bookings: dict[int | str, Booking],
    payments: dict[str, StripeObjectCache],
    as_of: datetime | None,
    live: bool,
    unrecorded_tax: dict[str, int],
) -> dict[str, Any] | None:
    if rec is None and (refund is None or refund.status not in MONEY_RETURNED):
        return None  # a failed or canceled Stripe refund that we never counted: no money moved
    booking = bookings.get(rec.booking_id) if rec is not None else None
    if booking is None and refund is not None and refund.payment_intent:
        booking = bookings.get(refund.payment_intent)
    pi_row = payments.get(refund.payment_intent) if refund is not None and refund.payment_intent else None
    pi_meta = dict((pi_row.data or {}).get("metadata") or {}) if pi_row is not None else {}

    if rec is not None:
        origin, reason, actor = rec.origin, rec.reason, rec.actor
        amount, currency, tax = rec.amount_cents, rec.currency.upper(), rec.tax_cents
    else:
        assert refund is not None
        # Our own refund whose record was lost keeps the origin we wrote into its metadata; any other refund was
        # made outside Room Desk, which for a payment of ours means the Stripe dashboard.
        meta_origin = str(refund.metadata.get("origin") or "")
        origin = meta_origin if refund.metadata.get("booking_id") and meta_origin in ORIGINS else "stripe_dashboard"
        reason, actor = STRIPE_REASONS.get(refund.reason, refund.reason), "Stripe"
        amount, currency = refund.amount_cents, refund.currency or svc.settings.currency
        tax = unrecorded_tax.get(refund.id, 0)
    when = refund.created if refund is not None and refund.created is not None else rec.created_at if rec else None
    if when is None:
        return None
    local = when.astimezone(svc.settings.tz)
    room_slug = booking.room_slug if booking is not None else str(pi_row.room if pi_row and pi_row.room else "")
    return {
        "refunded_at": local,
        "date": local.date(),
        "month": f"{local:%Y-%m}",
        "refund_id": rec.refund_id if rec is not None else refund.id if refund else "",
        "booking_ref": booking.reference if booking is not None else str(pi_meta.get("booking_id") or ""),
        "booking_id": booking.id if booking is not None else None,
        "room_slug": room_slug,
        "room": _room_name(svc, room_slug),
        "customer": booking.customer_name
        if booking is not None
        else str(pi_meta.get("customer_name") or pi_meta.get("customer_email") or ""),
        "origin": origin,
        "origin_label": ORIGINS.get(origin, origin),
        "reason": reason,
        "amount_cents": int(amount),
        "tax_cents": int(tax),
        "net_cents": int(amount) - int(tax),
        "currency": currency,
        "policy_quote_cents": rec.policy_quote_cents if rec is not None else None,
        "actor": actor,
        # The payment the money went back to: a booking changed at a cost was paid (and is refunded) on more than one.
        "payment_intent": (rec.payment_intent_id if rec is not None else None)
        or (refund.payment_intent if refund is not None else None)
        or (booking.payment_intent_id if booking is not None else None)
        or "",
        "in_ledger": rec is not None,
        "in_stripe": refund is not None,
        "check": _check(rec, refund, as_of, live),
        "_utc": when.astimezone(UTC),
    }


def _check(rec: RefundRecord | None, refund: StripeRefund | None, as_of: datetime | None, live: bool) -> str:
    """What finance should look at for this refund, or '' when the ledger and Stripe agree."""
    if rec is None:
        return NOT_IN_LEDGER
    if refund is None:
        if not live and (as_of is None or rec.created_at >= as_of):
            return "Not synced from Stripe yet"
        return "Not found in Stripe"
    if refund.status not in MONEY_RETURNED:
        return f"Stripe says {refund.status}"
    if refund.amount_cents != rec.amount_cents:
        return f"Stripe has {refund.amount_cents / 100:.2f}"
    return ""


def _room_name(svc: Services, slug: str) -> str:
    if not slug:
        return "Unknown room"
    try:
        return svc.catalogue.room(slug).name
    except Exception:  # a room no longer in the catalogue (or an old system's name) still shows as written
        return slug


def _typed(rows: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    rows = rows.copy()
    rows["refunded_at"] = pd.to_datetime(rows["refunded_at"], utc=True).dt.tz_convert(tz)
    rows["booking_id"] = rows["booking_id"].astype("Int64")
    rows["policy_quote_cents"] = rows["policy_quote_cents"].astype("Int64")
    for money_column in ("amount_cents", "tax_cents", "net_cents"):
        rows[money_column] = rows[money_column].astype("int64")
    rows["in_ledger"] = rows["in_ledger"].astype(bool)
    rows["in_stripe"] = rows["in_stripe"].astype(bool)
    return rows


def summarise(
    rows: pd.DataFrame,
    date_from: date,
    date_to: date,
    currency: str,
    venue_timezone: str,
    stripe_as_of: datetime | None = None,
) -> RefundReport:
    """A report from its rows: totals by origin, room and month (pages rebuild one from cached rows this way)."""
    by_origin = _totals(rows, "origin", currency, ORIGINS)
    names = dict(zip(rows["room_slug"], rows["room"], strict=True))
    by_room = _totals(rows, "room_slug", currency, {})
    by_room["label"] = [names.get(k, k) for k in by_room["key"]]
    by_room = by_room.sort_values(["amount_cents", "label"], ascending=[False, True], ignore_index=True)
    months = {m: _month_label(m) for m in months_between(date_from, date_to)}
    by_month = _totals(rows, "month", currency, months)
    return RefundReport(date_from, date_to, currency, venue_timezone, rows, by_origin, by_room, by_month, stripe_as_of)


def _totals(rows: pd.DataFrame, key: str, currency: str, every: dict[str, str]) -> pd.DataFrame:
    """Count, cents and tax per key and currency; keys in `every` appear (in that order) even with nothing."""
    grouped = rows.groupby([key, "currency"], as_index=False).agg(
        refunds=("refund_id", "size"), amount_cents=("amount_cents", "sum"), tax_cents=("tax_cents", "sum")
    )
    seen = {(str(k), str(c)) for k, c in zip(grouped[key], grouped["currency"], strict=True)}
    extra = [
        {key: k, "currency": currency, "refunds": 0, "amount_cents": 0, "tax_cents": 0}
        for k in every
        if (k, currency) not in seen
    ]
    columns = [key, "currency", "refunds", "amount_cents", "tax_cents"]
    out = pd.concat([grouped, pd.DataFrame(extra, columns=columns)]).rename(columns={key: "key"})
    order = {k: i for i, k in enumerate(every)}
    out["rank"] = [order.get(str(k), len(order)) for k in out["key"]]
    out = out.sort_values(["rank", "key", "currency"], ignore_index=True)
    out["label"] = [every.get(str(k), str(k)) for k in out["key"]]
    out["refunds"] = out["refunds"].astype("int64")
    out["amount_cents"] = out["amount_cents"].astype("int64")
    out["tax_cents"] = out["tax_cents"].astype("int64")
    return out[TOTAL_COLUMNS]


def _long_day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _month_label(month: str) -> str:
    return f"{date.fromisoformat(month + '-01'):%b %Y}"


# --------------------------------------------------------------------------------------------- exports


@dataclass(frozen=True)
class _Col:
    key: str
    header: str
    kind: Literal["text", "money", "cents", "when", "date", "time"]
    width: int = 14


def _columns(report: RefundReport, *, for_csv: bool) -> list[_Col]:
    place = report.venue_timezone.rsplit("/", 1)[-1].replace("_", " ")
    when = (
        [_Col("date", "Date", "date", 12), _Col("refunded_at", f"Time ({place})", "time", 10)]
        if for_csv
        else [_Col("refunded_at", f"Refunded ({place} time)", "when", 20)]
    )
    amount = [
        _Col("amount_cents", "Amount", "money", 12),
        _Col("tax_cents", "Tax", "money", 10),
        _Col("net_cents", "Net of tax", "money", 12),
    ]
    quote = [_Col("policy_quote_cents", "Policy quote", "money", 13)]
    if for_csv:
        amount += [
            _Col("amount_cents", "Amount (cents)", "cents"),
            _Col("tax_cents", "Tax (cents)", "cents"),
            _Col("net_cents", "Net of tax (cents)", "cents"),
        ]
        quote.append(_Col("policy_quote_cents", "Policy quote (cents)", "cents"))
    return [
        *when,
        _Col("refund_id", "Refund", "text", 30),
        _Col("booking_ref", "Booking", "text", 11),
        _Col("room", "Room", "text", 14),
        _Col("customer", "Customer", "text", 22),
        _Col("origin_label", "Origin", "text", 28),
        _Col("reason", "Reason", "text", 36),
        *amount,
        _Col("currency", "Currency", "text", 9),
        *quote,
        _Col("actor", "By", "text", 22),
        _Col("payment_intent", "PaymentIntent", "text", 30),
        _Col("check", "Check", "text", 26),
    ]


def _decimal(cents: Any) -> str:
    if cents is None or pd.isna(cents):
        return ""
    c = int(cents)
    return f"{'-' if c < 0 else ''}{abs(c) // 100}.{abs(c) % 100:02d}"


def _safe_text(value: Any) -> str:
    """Text as written, except that a spreadsheet must never read a customer's name as a formula."""
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def refunds_csv(report: RefundReport) -> bytes:
    """The report's rows as UTF-8 CSV with a header row; amounts as decimal strings ('12.50') and in cents."""
    columns = _columns(report, for_csv=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([c.header for c in columns])
    for rec in report.rows.to_dict("records"):
        out = []
        for c in columns:
            value = rec[c.key]
            if c.kind == "money":
                out.append(_decimal(value))
            elif c.kind == "cents":
                out.append("" if value is None or pd.isna(value) else str(int(value)))
            elif c.kind == "date":
                out.append(f"{value:%Y-%m-%d}")
            elif c.kind == "time":
                out.append(f"{value:%H:%M}")
            else:
                out.append(_safe_text(value))
        writer.writerow(out)
    return buf.getvalue().encode("utf-8")


def currency_format(currency: str) -> str:
    """An Excel number format for amounts in `currency`: '$1,234.50', or '1,234.50 EUR'."""
    if currency.upper() in ("CAD", "USD"):
        return '"$"#,##0.00'
    return f'#,##0.00 "{currency.upper()}"'


DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
MONTH_FORMAT = "mmm yyyy"


def refunds_xlsx(report: RefundReport) -> bytes:
    """The report as an Excel workbook: a 'Refunds' sheet (one row per refund, real dates and amounts, frozen header,
    autofilter) and a 'Totals' sheet (by origin, room and month)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    bold = Font(bold=True)
    head_fill = PatternFill("solid", fgColor="E8F3F1")
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Refunds"
    columns = _columns(report, for_csv=False)
    for j, c in enumerate(columns, start=1):
        cell = ws.cell(row=1, column=j, value=c.header)
        cell.font, cell.fill = bold, head_fill
        cell.alignment = Alignment(vertical="center")
        ws.column_dimensions[get_column_letter(j)].width = c.width
    for i, rec in enumerate(report.rows.to_dict("records"), start=2):
        for j, c in enumerate(columns, start=1):
            value = rec[c.key]
            if c.kind == "money":
                cell = ws.cell(row=i, column=j, value=None if pd.isna(value) else int(value) / 100)
                cell.number_format = currency_format(str(rec["currency"]))
            elif c.kind == "when":
                # Excel has no time zones: the venue's wall-clock time, said in the header.
                cell = ws.cell(row=i, column=j, value=value.tz_localize(None).to_pydatetime())
                cell.number_format = DATETIME_FORMAT
            else:
                _text_cell(ws, i, j, value)
    last = get_column_letter(len(columns))
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{last}{len(report.rows) + 1}"
    ws.row_dimensions[1].height = 20

    _totals_sheet(wb.create_sheet("Totals"), report, bold, head_fill)
    wb.properties.title = f"Refunds {report.date_from:%Y-%m-%d} to {report.date_to:%Y-%m-%d}"
    wb.properties.creator = "Room Desk"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _text_cell(ws: Any, row: int, column: int, value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    cell = ws.cell(row=row, column=column, value=ILLEGAL_CHARACTERS_RE.sub("", text) or None)
    if cell.value is not None:
        cell.data_type = "s"  # never a formula, whatever the text starts with
    return cell


def _totals_sheet(ws: Any, report: RefundReport, bold: Any, head_fill: Any) -> None:
    from openpyxl.styles import Alignment, Font

    place = report.venue_timezone.rsplit("/", 1)[-1].replace("_", " ")
    money_fmt = currency_format(report.currency)
    ws["A1"] = f"Refunds {_long_day(report.date_from)} – {_long_day(report.date_to)} (dates in {place} time)"
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([])
    row = 3
    ws.cell(row=row, column=1, value="All refunds").font = bold
    ws.cell(row=row, column=3, value=report.count).font = bold
    for column, cents in ((4, report.total_cents), (5, report.tax_cents), (6, report.net_cents)):
        total = ws.cell(row=row, column=column, value=cents / 100)
        total.font, total.number_format = bold, money_fmt
    row += 2
    for title, frame, is_month in (
        ("By origin", report.by_origin, False),
        ("By room", report.by_room, False),
        ("By month", report.by_month, True),
    ):
        for j, header in enumerate((title, "Currency", "Refunds", "Amount", "Tax", "Net of tax"), start=1):
            cell = ws.cell(row=row, column=j, value=header)
            cell.font, cell.fill = bold, head_fill
        row += 1
        for rec in frame.to_dict("records"):
            if is_month:
                cell = ws.cell(row=row, column=1, value=datetime.fromisoformat(f"{rec['key']}-01"))
                cell.number_format = MONTH_FORMAT
                cell.alignment = Alignment(horizontal="left")
            else:
                _text_cell(ws, row, 1, rec["label"])
            ws.cell(row=row, column=2, value=rec["currency"])
            ws.cell(row=row, column=3, value=int(rec["refunds"]))
            amount, tax = int(rec["amount_cents"]), int(rec["tax_cents"])
            for column, cents in ((4, amount), (5, tax), (6, amount - tax)):
                ws.cell(row=row, column=column, value=cents / 100).number_format = currency_format(str(rec["currency"]))
            row += 1
        row += 1
    for letter, width in zip("ABCDEF", (32, 10, 10, 14, 12, 14), strict=True):
        ws.column_dimensions[letter].width = width


# --------------------------------------------------------------------------------------------- revenue


@dataclass(frozen=True)
class Revenue:
    """Money in and out over a date range, net of tax. Payments: Stripe charges that succeeded (from the cache), by
    the day they were paid, with the tax our ledger says is inside each; refunds: the refunds report's rows, by refund
    day, with theirs. Tax collected (the GST owed) = tax on payments − tax on refunds; net revenue = payments − refunds
    − tax collected. Integer cents."""

    # month ('2026-03'), label ('Mar 2026') / room_slug, room (largest payments first), then payments_cents,
    # refunds_cents (tax included), payments_tax_cents, refunds_tax_cents, tax_cents (collected), net_cents
    by_month: pd.DataFrame
    by_room: pd.DataFrame
    payments_cents: int  # tax included
    refunds_cents: int  # tax included
    payments_tax_cents: int
    refunds_tax_cents: int
    currency: str

    @property
    def tax_cents(self) -> int:
        """The tax collected: on the payments, less what the refunds gave back (what is owed to the tax office)."""
        return self.payments_tax_cents - self.refunds_tax_cents

    @property
    def net_cents(self) -> int:
        """Revenue net of tax: payments − refunds − the tax collected."""
        return self.payments_cents - self.refunds_cents - self.tax_cents


def payments_frame(svc: Services, date_from: date, date_to: date) -> pd.DataFrame:
    """Payments taken between two venue dates: one row per succeeded Stripe charge in the cache, with its room and
    the tax inside it (0 for a payment that is not ours)."""
    tz = svc.settings.tz
    lo, hi = _utc_window(date_from, date_to, tz)
    with svc.read_session() as s:
        charges = list(
            s.exec(
                select(StripeObjectCache).where(
                    StripeObjectCache.object == "charge",
                    StripeObjectCache.status == "succeeded",
                    col(StripeObjectCache.created) >= lo,
                    col(StripeObjectCache.created) < hi,
                )
            )
        )
        pis = sorted({c.payment_intent for c in charges if c.payment_intent})
        bookings: dict[str, Booking] = {}
        cached: dict[str, StripeObjectCache] = _cached_payment_intents(s, pis)
        for chunk in _chunks(pis, 500):
            for b in s.exec(select(Booking).where(col(Booking.payment_intent_id).in_(chunk))):
                bookings[str(b.payment_intent_id)] = b
        taxes = {pi: b.tax_cents for pi, b in bookings.items()}
        # A change that cost more is paid by a PaymentIntent of its own: revenue of its booking's (current) room.
        bookings.update(_bookings_of_changes(s, [p for p in pis if p not in bookings]))
        taxes.update(_change_taxes(s, [p for p in pis if p not in taxes]))
    out = []
    for c in charges:
        assert c.created is not None
        local = c.created.astimezone(tz)
        pi = c.payment_intent or ""
        booking = bookings.get(pi)
        pi_row = cached.get(pi)
        slug = booking.room_slug if booking else (pi_row.room if pi_row is not None else None) or ""
        amount = int(c.amount_received if c.amount_received is not None else c.amount or 0)
        out.append(
            {
                "paid_at": local,
                "month": f"{local:%Y-%m}",
                "room_slug": slug,
                "room": _room_name(svc, slug),
                "payment_intent": pi,
                "booking_ref": booking.reference if booking else "",
                "amount_cents": amount,
                "tax_cents": min(taxes.get(pi, 0), amount),
                "currency": (c.currency or svc.settings.currency).upper(),
            }
        )
    columns = [
        "paid_at",
        "month",
        "room_slug",
        "room",
        "payment_intent",
        "booking_ref",
        "amount_cents",
        "tax_cents",
        "currency",
    ]
    frame = pd.DataFrame(out, columns=columns)
    frame["amount_cents"] = frame["amount_cents"].astype("int64")
    frame["tax_cents"] = frame["tax_cents"].astype("int64")
    return frame.sort_values("paid_at", ignore_index=True)


def _change_taxes(session: Any, pis: Sequence[str]) -> dict[str, int]:
    """PaymentIntent → the tax inside the change to a booking it paid for."""
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(pis)), 500):
        q = select(Amendment.payment_intent_id, Amendment.tax_cents).where(col(Amendment.payment_intent_id).in_(chunk))
        out.update({str(pi): int(tax) for pi, tax in session.exec(q) if pi})
    return out


def revenue(svc: Services, date_from: date, date_to: date, *, report: RefundReport | None = None) -> Revenue:
    """Payments, refunds, tax collected and net revenue (net of tax) by month and by room (pass the range's refunds
    report if it is already built)."""
    paid = payments_frame(svc, date_from, date_to)
    refunds = (report or refund_report(svc, date_from, date_to)).rows

    def sums(frame: pd.DataFrame, key: str) -> None:
        for target, source, column in (
            ("payments_cents", paid, "amount_cents"),
            ("refunds_cents", refunds, "amount_cents"),
            ("payments_tax_cents", paid, "tax_cents"),
            ("refunds_tax_cents", refunds, "tax_cents"),
        ):
            frame[target] = frame[key].map(source.groupby(key)[column].sum()).fillna(0).astype("int64")
        frame["tax_cents"] = frame["payments_tax_cents"] - frame["refunds_tax_cents"]
        frame["net_cents"] = frame["payments_cents"] - frame["refunds_cents"] - frame["tax_cents"]

    months = months_between(date_from, date_to)
    by_month = pd.DataFrame({"month": months, "label": [_month_label(m) for m in months]})
    sums(by_month, "month")

    names = {**dict(zip(paid["room_slug"], paid["room"], strict=True))}
    names.update(dict(zip(refunds["room_slug"], refunds["room"], strict=True)))
    known = [r.slug for r in svc.catalogue.bookable_rooms]
    slugs = known + sorted(set(names) - set(known))
    by_room = pd.DataFrame({"room_slug": slugs, "room": [names.get(s) or _room_name(svc, s) for s in slugs]})
    sums(by_room, "room_slug")
    by_room = by_room.sort_values(["payments_cents", "room"], ascending=[False, True], ignore_index=True)
    return Revenue(
        by_month,
        by_room,
        int(paid["amount_cents"].sum()),
        int(refunds["amount_cents"].sum()),
        int(paid["tax_cents"].sum()),
        int(refunds["tax_cents"].sum()),
        svc.settings.currency,
    )


# --------------------------------------------------------------------------------------------- occupancy

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def occupancy(
    svc: Services, date_from: date, date_to: date, *, by: Literal["weekday", "week"] = "weekday"
) -> pd.DataFrame:
    """Booked hours / open hours per bookable room and weekday (or week, starting Monday), from the booked days
    (confirmed, in progress, completed) inside opening hours on the days the venue is open.

    Columns: room_slug, room, bucket (label), order, booked_hours, open_hours, occupancy (0–1, None without open
    hours)."""
    if date_from > date_to:
        raise ValidationError(f"The start date {date_from:%Y-%m-%d} is after the end date {date_to:%Y-%m-%d}")
    tz = svc.settings.tz
    days = open_days(svc, date_from, date_to)
    day_open = svc.policy.open_time
    day_close = svc.policy.close_time
    hours_a_day = _hours_between(day_open, day_close)
    rooms = list(svc.catalogue.bookable_rooms)

    def bucket(d: date) -> tuple[int, str]:
        if by == "weekday":
            return d.weekday(), WEEKDAYS[d.weekday()]
        monday = d - timedelta(days=d.weekday())
        return monday.toordinal(), f"{monday.day} {monday:%b}"

    open_hours: dict[tuple[str, int], float] = {}
    labels: dict[int, str] = {}
    for d in days:
        order, label = bucket(d)
        labels[order] = label
        for r in rooms:
            open_hours[(r.slug, order)] = open_hours.get((r.slug, order), 0.0) + hours_a_day
    booked: dict[tuple[str, int], float] = {}
    open_set = set(days)
    with svc.read_session() as s:
        q = (
            select(BookingLeg, Booking.room_slug)
            .join(Booking, col(Booking.id) == col(BookingLeg.booking_id))
            .where(
                col(BookingLeg.day) >= date_from,
                col(BookingLeg.day) <= date_to,
                col(BookingLeg.state).in_([str(st) for st in ACTIVE_LEG_STATES]),
            )
        )
        for leg, slug in s.exec(q):
            if leg.day not in open_set:
                continue
            start = max(leg.starts_at.astimezone(tz).time(), day_open)
            end = min(leg.ends_at.astimezone(tz).time(), day_close)
            if end > start:
                key = (slug, bucket(leg.day)[0])
                booked[key] = booked.get(key, 0.0) + _hours_between(start, end)
    out = []
    for r in rooms:
        for order in sorted(labels):
            hours = open_hours.get((r.slug, order), 0.0)
            used = booked.get((r.slug, order), 0.0)
            out.append(
                {
                    "room_slug": r.slug,
                    "room": r.name,
                    "bucket": labels[order],
                    "order": order,
                    "booked_hours": round(used, 2),
                    "open_hours": hours,
                    "occupancy": used / hours if hours else None,
                }
            )
    columns = ["room_slug", "room", "bucket", "order", "booked_hours", "open_hours", "occupancy"]
    return pd.DataFrame(out, columns=columns)


def _hours_between(start: time, end: time) -> float:
    return (end.hour * 60 + end.minute - start.hour * 60 - start.minute) / 60
