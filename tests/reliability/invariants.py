"""The invariants a Room Desk installation must satisfy once every fault has cleared and the retry path has run.

`violations(svc)` reads our tables, the payments gateway and every room calendar, and returns one sentence per
broken invariant (an empty list when everything holds):

1. Every active day (CONFIRMED / IN_PROGRESS / COMPLETED leg) has exactly one live event of its booking, on its
   room's calendar, at its times, and the leg records that event's id.
2. No live event of ours belongs to a day that is not active: a refunded, cancelled, failed or expired booking (or
   a cancelled day of a booking that stands) has no event, and no event of ours names an unknown booking.
3. No two live events overlap in a room, the buffer included, unless they belong to one booking.
4. Money: per booking, what Stripe took minus what it refunded, over every PaymentIntent of the booking (its own and
   those of changes that cost more), equals our ledger — the booking's amount if our records say it was paid, plus
   the paid changes, minus its RefundRecords — and every Stripe refund of those payments has exactly one
   RefundRecord. The totals over every PaymentIntent agree too. A FAILED booking keeps no money; an active day is
   paid for and not refunded.
5. A booking's status is the one its legs give; every confirmed booking with a day still to come was sent exactly
   one confirmation email, and no email of one kind went twice to a booking.
6. A change's hold claims are active only while it waits for payment; a change given up or lapsed keeps no money.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    AuditLog,
    Booking,
    BookingInvoice,
    BookingLeg,
    BookingStatus,
    DamageDeposit,
    InvoiceState,
    RefundRecord,
    SlotClaim,
)
from services import booking as bk
from services.gateways.base import all_pages
from tests.reliability.stats import COUNTS

PAID_ACTIONS = ("booking.payment.succeeded", "booking.adopted")
OPEN_CHANGE = (AmendmentState.AWAITING_PAYMENT, AmendmentState.APPLYING)
_LIVE = "cancelled"


@dataclass(frozen=True)
class _Event:
    calendar_id: str
    id: str
    start: datetime
    end: datetime
    reference: str | None
    transparent: bool


def _parse(value: Any, svc: Any) -> datetime:
    text = str(value.get("dateTime") or value.get("date"))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=svc.settings.tz)


def live_events(svc: Any) -> list[_Event]:
    """Every live event on every room calendar (all pages)."""
    out: list[_Event] = []
    for room in svc.catalogue.rooms:
        token: str | None = None
        while True:
            page = svc.calendar.list_events(room.calendar_id, page_token=token)
            for ev in page.get("items") or []:
                if ev.get("status") == _LIVE:
                    continue
                private = (ev.get("extendedProperties") or {}).get("private") or {}
                out.append(
                    _Event(
                        room.calendar_id,
                        str(ev["id"]),
                        _parse(ev["start"], svc),
                        _parse(ev["end"], svc),
                        private.get("booking_id"),
                        ev.get("transparency") == "transparent",
                    )
                )
            token = page.get("nextPageToken")
            if not token:
                break
    return out


def _stripe_money(svc: Any) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Per PaymentIntent: what Stripe keeps (captured − refunded), and the ids of its refunds."""
    kept: dict[str, int] = {}
    refunds: dict[str, set[str]] = defaultdict(set)
    for pi in all_pages(lambda after: svc.payments.list_payment_intents(limit=100, starting_after=after)):
        if pi.get("status") != "succeeded":
            kept[pi["id"]] = 0
            continue
        full = svc.payments.retrieve_payment_intent(pi["id"])
        charge = full.get("latest_charge") or {}
        taken = int(charge.get("amount_captured", charge.get("amount", 0)) or 0)
        kept[pi["id"]] = taken - int(charge.get("amount_refunded", 0) or 0)
    for refund in all_pages(lambda after: svc.payments.list_refunds(limit=100, starting_after=after)):
        if refund.get("status") in ("succeeded", "pending"):
            refunds[str(refund.get("payment_intent"))].add(str(refund["id"]))
    return kept, refunds


def violations(svc: Any, *, now: datetime | None = None) -> list[str]:
    """One sentence per broken invariant; empty when all hold."""
    now = now or svc.now()
    out: list[str] = []
    checked = 0
    with svc.session() as s:
        bookings = list(s.exec(select(Booking)))
        legs: dict[int, list[BookingLeg]] = defaultdict(list)
        for leg in s.exec(select(BookingLeg).order_by(col(BookingLeg.day))):
            legs[leg.booking_id].append(leg)
        records: dict[int, list[RefundRecord]] = defaultdict(list)
        for r in s.exec(select(RefundRecord)):
            records[r.booking_id].append(r)
        paid_ids = set(s.exec(select(AuditLog.booking_id).where(col(AuditLog.action).in_(PAID_ACTIONS))))
        changes: dict[int, list[Amendment]] = defaultdict(list)
        for a in s.exec(select(Amendment).order_by(col(Amendment.number))):
            changes[a.booking_id].append(a)
        open_claims = list(s.exec(select(SlotClaim).where(col(SlotClaim.active).is_(True))))
        deposits = list(s.exec(select(DamageDeposit)))
    events = live_events(svc)
    kept, stripe_refunds = _stripe_money(svc)
    by_ref: dict[str, list[_Event]] = defaultdict(list)
    for ev in events:
        if ev.reference:
            by_ref[ev.reference].append(ev)
    refs = {b.reference for b in bookings}
    mails = svc.mail.messages(limit=100_000)
    mail_count: Counter[tuple[Any, str]] = Counter((m.get("booking_id"), m.get("kind")) for m in mails)

    ledger_total = 0
    for b in bookings:
        assert b.id is not None
        name = f"{b.reference} ({b.status})"
        blegs = legs[b.id]
        own = list(by_ref.get(b.reference, []))
        # 1. each active day has exactly its event
        for leg in blegs:
            checked += 1
            if leg.state not in ACTIVE_LEG_STATES:
                continue
            mine = [
                e for e in own if e.calendar_id == leg.calendar_id and (e.start, e.end) == (leg.starts_at, leg.ends_at)
            ]
            if len(mine) != 1:
                out.append(f"{name}: active day {leg.day} has {len(mine)} live event(s) at its times, not exactly 1")
            elif leg.event_id != mine[0].id:
                out.append(f"{name}: day {leg.day} records event {leg.event_id}, but its live event is {mine[0].id}")
            for e in mine:
                own.remove(e)
        # 2. every other live event of this booking is a leftover
        for e in own:
            checked += 1
            out.append(
                f"{name}: live event {e.id} on {e.calendar_id} at {e.start:%Y-%m-%d %H:%M} belongs to no active day"
            )
        # 4. money, over every PaymentIntent of the booking (its own and those of changes that cost more)
        checked += 1
        pis = [b.payment_intent_id] if b.payment_intent_id else []
        pis += [a.payment_intent_id for a in changes[b.id] if a.payment_intent_id]
        pi = b.payment_intent_id
        # Our records say the booking was paid: the saga saw the payment succeed, it was adopted, or we refunded it.
        paid = b.id in paid_ids or b.confirmed_at is not None or bool(records[b.id])
        took = (b.amount_cents if paid else 0) + sum(a.net_cents for a in changes[b.id] if a.paid_at is not None)
        ledger = took - sum(r.amount_cents for r in records[b.id])
        ledger_total += ledger
        stripe = sum(kept.get(p, 0) for p in pis)
        if pis and ledger != stripe:
            out.append(
                f"{name}: Stripe keeps {stripe} cents of {', '.join(pis)}, our ledger says {ledger} "
                f"(paid {took}, {len(records[b.id])} refund record(s))"
            )
        if pis:
            ours = {r.refund_id for r in records[b.id]}
            theirs = set().union(*(stripe_refunds.get(p, set()) for p in pis))
            if ours != theirs:
                out.append(f"{name}: Stripe's refunds {sorted(theirs)} and our refund records {sorted(ours)} differ")
        for a in changes[b.id]:
            checked += 1
            if a.state in OPEN_CHANGE and a.hold_expires_at is None and a.state != AmendmentState.APPLYING:
                out.append(f"{name}: change {a.number} waits for payment without a hold")
            given_up = a.state in (AmendmentState.LAPSED, AmendmentState.WITHDRAWN) and a.paid_at is None
            if given_up and a.payment_intent_id and kept.get(a.payment_intent_id, 0):
                out.append(f"{name}: change {a.number} is {a.state}, yet Stripe keeps money for it")
        if b.status == BookingStatus.FAILED and stripe > 0:
            out.append(f"{name}: failed, yet Stripe keeps {stripe} cents of {pi}")
        active = [leg for leg in blegs if leg.state in ACTIVE_LEG_STATES]
        # Refunds no day carries (an overcharge given back, one recorded from Stripe) lower what the days must keep.
        loose = max(sum(r.amount_cents for r in records[b.id]) - sum(leg.refunded_cents for leg in blegs), 0)
        owed = sum(leg.price_cents - leg.refunded_cents for leg in active) - loose
        if active and pi and (stripe <= 0 or stripe < owed):
            out.append(f"{name}: {len(active)} active day(s) worth {owed} cents, but Stripe keeps only {stripe}")
        # 5. status and emails
        checked += 1
        if blegs:
            derived = bk.derive_status(blegs)
            allowed = {derived} | ({BookingStatus.EXPIRED} if derived == BookingStatus.CANCELLED else set())
            if b.status not in allowed:
                out.append(f"{name}: status disagrees with its days ({[leg.state for leg in blegs]} → {derived})")
        upcoming = [leg for leg in active if leg.ends_at > now]
        if b.status in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED) and upcoming:
            n = mail_count[(b.id, "confirmation")]
            if n != 1:
                out.append(f"{name}: {n} confirmation email(s) sent, not exactly 1")
        for (booking_id, kind), n in mail_count.items():
            if booking_id == b.id and n > 1 and kind in ("confirmation", "auto_refund"):
                out.append(f"{name}: {n} '{kind}' emails sent")

    for ref, evs in by_ref.items():
        checked += 1
        if ref not in refs and any(e.id.startswith("rd") for e in evs):
            out.append(f"{len(evs)} live event(s) name booking {ref}, which Room Desk does not have")

    # 3. no overlaps in a room, buffer included
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    by_cal: dict[str, list[_Event]] = defaultdict(list)
    for ev in events:
        if not ev.transparent:
            by_cal[ev.calendar_id].append(ev)
    for cal, evs in by_cal.items():
        evs.sort(key=lambda e: e.start)
        for i, a in enumerate(evs):
            for b_ev in evs[i + 1 :]:
                checked += 1
                if b_ev.start >= a.end + buffer:
                    break
                if a.reference and a.reference == b_ev.reference:
                    continue
                out.append(f"{cal}: events {a.id} and {b_ev.id} overlap (buffer {svc.policy.buffer_minutes} min)")

    # 4'. totals
    checked += 1
    known = {b.payment_intent_id for b in bookings if b.payment_intent_id}
    known |= {a.payment_intent_id for group in changes.values() for a in group if a.payment_intent_id}
    # 6. a change's hold claims live only while it waits for payment; a settled change holds nothing
    waiting = {a.id for group in changes.values() for a in group if a.state == AmendmentState.AWAITING_PAYMENT}
    for claim in open_claims:
        if claim.amendment_id is not None and claim.amendment_id not in waiting:
            out.append(
                f"change #{claim.amendment_id} is settled, yet still holds {claim.room_slug} at {claim.starts_at}"
            )
    # A damage deposit's holds are no booking's payment: what a claim took from one is the deposit's (the deposit
    # invariants, tests/reliability/deposit_flows.py, check each hold against its deposit).
    known |= {h["payment_intent"] for dep in deposits for h in dep.holds}
    ledger_total += sum(dep.captured_cents for dep in deposits)
    stripe_total = sum(kept.values())
    if stripe_total != ledger_total:
        out.append(f"In total Stripe keeps {stripe_total} cents, the ledger says {ledger_total}")
    for pi, v in sorted(kept.items()):
        if pi not in known and v:
            out.append(f"Stripe keeps {v} cents of {pi}, which no booking accounts for")

    checked += _invoices_and_tax(svc, bookings, legs, records, changes, open_claims, out)
    COUNTS["invariant checks"] += 1
    COUNTS["invariants evaluated"] += checked
    return out


def _invoices_and_tax(
    svc: Any,
    bookings: list[Booking],
    legs: dict[int, list[BookingLeg]],
    records: dict[int, list[RefundRecord]],
    changes: dict[int, list[Amendment]],
    open_claims: list[SlotClaim],
    out: list[str],
) -> int:
    """7. A booking held on invoice agrees with Stripe's invoice: open ↔ waiting for payment with its days held (no
    expiry); paid ↔ the payment that paid it is the booking's; void ↔ nothing held. No invoice is left payable for a
    booking that failed or was cancelled. 8. Tax: no refund gives back more tax than it is, nor a booking's refunds
    more tax than its payments carried."""
    checked = 0
    with svc.session() as s:
        rows = {r.booking_id: r for r in s.exec(select(BookingInvoice))}
    by_id = {b.id: b for b in bookings}
    held = defaultdict(list)
    for claim in open_claims:
        if claim.booking_id is not None:
            held[claim.booking_id].append(claim)
    for booking_id, row in rows.items():
        checked += 1
        b = by_id[booking_id]
        name = f"{b.reference} ({b.status}, invoice {row.state})"
        live = svc.payments.retrieve_invoice(row.invoice_id)["status"] if row.invoice_id else None
        waiting = [leg for leg in legs[booking_id] if leg.state == "AWAITING_PAYMENT"]
        if row.state == InvoiceState.OPEN:
            if b.status != BookingStatus.AWAITING_PAYMENT or live != "open":
                out.append(f"{name}: the invoice is open with us and {live} at Stripe")
            if len(held[booking_id]) != len(waiting) or any(c.expires_at is not None for c in held[booking_id]):
                out.append(f"{name}: {len(waiting)} day(s) wait for the invoice, {len(held[booking_id])} held")
        elif row.state == InvoiceState.PAID:
            if b.payment_intent_id is None or b.payment_intent_id != row.payment_intent_id:
                out.append(f"{name}: paid, but the booking's payment is {b.payment_intent_id}")
        elif live == "open":
            out.append(f"{name}: Stripe's invoice is still payable")
        if row.state != InvoiceState.OPEN and waiting:
            out.append(f"{name}: {len(waiting)} day(s) still wait for an invoice that is {row.state}")
    for b in bookings:
        assert b.id is not None
        checked += 1
        paid_tax = b.tax_cents + sum(a.tax_cents for a in changes[b.id] if a.paid_at is not None)
        given = sum(r.tax_cents for r in records[b.id])
        if any(r.tax_cents > r.amount_cents or r.tax_cents < 0 for r in records[b.id]):
            out.append(f"{b.reference}: a refund gives back more tax than it is")
        if given > paid_tax:
            out.append(f"{b.reference}: refunds give back {given} cents of tax, its payments carried {paid_tax}")
        if any(leg.tax_cents > leg.price_cents for leg in legs[b.id]):
            out.append(f"{b.reference}: a day's tax is more than its price")
    return checked


def assert_invariants(svc: Any, context: str = "") -> None:
    found = violations(svc)
    assert not found, (context + "\n" if context else "") + "\n".join(found)
