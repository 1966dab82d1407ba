"""The damage-deposit flows the fault matrix runs (test_deposit_faults.py) and the invariants a deposit must satisfy
once every fault has cleared and the retry path has run.

Flows: the card asked for once paid (the worker's round, for a booking nobody started it for), the card saved, the
hold placed when due, held again before it lapses, released after the claim window, released when the booking is
cancelled, a declined card, and a claim's capture at its second approval. Each action is what production runs (the
worker's round, the customer's card save, the approval) and may run again.

`deposit_violations(svc)`, one sentence per broken invariant:

1. Every deposit PaymentIntent Stripe holds or took (not a declined attempt) is one of its deposit's recorded holds.
2. A deposit `held` has exactly its current hold standing at Stripe; a closed one (released, captured, cancelled)
   or one waiting for a card has none; a failed one at most its current (earlier) hold.
3. Each recorded hold agrees with Stripe: released ↔ cancelled, captured ↔ succeeded for the amount recorded,
   neither ↔ still `requires_capture`.
4. Money: what Stripe took from deposit holds is what the deposits and their claims say was captured; a captured
   deposit has one captured claim, a cancelled one never held anything.
5. No deposit email went out twice for one booking (held, released) or one claim (claim, captured).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, time, timedelta
from typing import Any

from sqlmodel import select

from models.tables import BookingLeg, DamageDeposit, DepositClaim
from services import booking as bk
from services.finance import deposits as dp
from services.gateways.base import all_pages
from tests.reliability.flows import Ctx, Flow, confirmed
from tests.reliability.harness import SONIC_EXTRAS
from tests.reliability.invariants import violations

THU = date(2026, 3, 12)
LONG = tuple(THU + timedelta(days=i) for i in (0, 1, 4, 5, 6))  # six days from the first to the last
MANAGER, FINANCE = "mia.manager@venue.example", "fred.finance@venue.example"


def _studio(svc: Any, *, dates: tuple[date, ...] = (THU,), card: str | None = "pm_card_visa") -> Ctx:
    ctx = confirmed(
        svc, room="sonic-studio", dates=dates, start=time(10), end=time(12), extras=SONIC_EXTRAS, agreement_version="v1"
    )
    if card:
        dp.start_deposit(svc, ctx["booking_id"])
        dp.sandbox_save_card(svc, ctx["booking_id"], payment_method=card)
    return ctx


def _span(svc: Any, booking_id: int) -> tuple[Any, Any]:
    with svc.session() as s:
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id)))
    return min(leg.starts_at for leg in legs), max(leg.ends_at for leg in legs)


def _at_hold_time(svc: Any, ctx: Ctx) -> Ctx:
    first, _ = _span(svc, ctx["booking_id"])
    svc.clock.at = first - timedelta(hours=48)
    return ctx


def _held(svc: Any, **kw: Any) -> Ctx:
    ctx = _at_hold_time(svc, _studio(svc, **kw))
    assert dp.run_deposit_round(svc).done == {"held": 1}
    return ctx


def _round(svc: Any, ctx: Ctx) -> Any:
    return dp.run_deposit_round(svc)


def _save_card(svc: Any, ctx: Ctx) -> Any:
    if dp.start_deposit(svc, ctx["booking_id"]) is not None:  # None: a card is saved already
        dp.sandbox_save_card(svc, ctx["booking_id"])


def _rehold_setup(svc: Any) -> Ctx:
    ctx = _held(svc, dates=LONG)
    with svc.session() as s:
        dep = s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == ctx["booking_id"])).one()
        assert dep.held_at is not None
        svc.clock.at = dep.held_at + timedelta(days=6, hours=12)
    return ctx


def _release_setup(svc: Any) -> Ctx:
    ctx = _held(svc)
    _, last = _span(svc, ctx["booking_id"])
    svc.clock.at = last + timedelta(hours=72)
    return ctx


def _cancelled_setup(svc: Any) -> Ctx:
    ctx = _held(svc)
    bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk@venue.example", reason="Customer changed plans")
    return ctx


def _claim_setup(svc: Any) -> Ctx:
    ctx = _held(svc)
    _, last = _span(svc, ctx["booking_id"])
    svc.clock.at = last + timedelta(hours=1)
    filed = dp.file_claim(
        svc,
        ctx["booking_id"],
        amount_cents=7_500,
        notes="Mixer desk fader snapped off",
        photos=["fader.jpg"],
        actor="frontdesk@venue.example",
    )
    dp.approve_claim(svc, filed.claim_id, actor=MANAGER, role="manager")
    return {**ctx, "claim_id": filed.claim_id}


def _second_approval(svc: Any, ctx: Ctx) -> Any:
    """The finance approval that captures; on the retry path, the approver's Retry of a capture that failed."""
    with svc.session() as s:
        claim = s.get(DepositClaim, ctx["claim_id"])
        assert claim is not None
        status = claim.status
    if status == "pending":
        return dp.approve_claim(svc, ctx["claim_id"], actor=FINANCE, role="finance")
    if status in ("approved", "failed"):
        return dp.retry_claim(svc, ctx["claim_id"], actor=FINANCE, role="finance")
    return None


DEPOSIT_FLOWS = {
    f.name: f
    for f in [
        Flow("deposit.card_asked", lambda s: _studio(s, card=None), _round),
        Flow("deposit.card_saved", lambda s: _studio(s, card=None), _save_card),
        Flow("deposit.hold", lambda s: _at_hold_time(s, _studio(s)), _round),
        Flow("deposit.rehold", _rehold_setup, _round),
        Flow("deposit.release", _release_setup, _round),
        Flow("deposit.cancelled_booking", _cancelled_setup, _round),
        Flow("deposit.declined", lambda s: _at_hold_time(s, _studio(s, card="pm_card_chargeCustomerFail")), _round),
        Flow("deposit.claim_capture", _claim_setup, _second_approval),
    ]
}
# Where each flow's deposit ends once the retry path has run: a fault delays a step, it never changes its outcome.
END_STATE = {
    "deposit.card_asked": "card_needed",
    "deposit.card_saved": "card_saved",
    "deposit.hold": "held",
    "deposit.rehold": "held",
    "deposit.release": "released",
    "deposit.cancelled_booking": "released",
    "deposit.declined": "hold_failed",
    "deposit.claim_capture": "captured",
}


def deposit_violations(svc: Any) -> list[str]:
    """One sentence per broken deposit invariant; empty when all hold."""
    out: list[str] = []
    with svc.session() as s:
        deps = list(s.exec(select(DamageDeposit)))
        claims = list(s.exec(select(DepositClaim)))
    stripe = {
        pi["id"]: pi
        for pi in all_pages(lambda after: svc.payments.list_payment_intents(limit=100, starting_after=after))
        if (pi.get("metadata") or {}).get("purpose") == dp.PURPOSE
    }
    recorded = {h["payment_intent"]: dep for dep in deps for h in dep.holds}
    # 1.
    for pi_id, pi in stripe.items():
        if pi["status"] != "requires_payment_method" and pi_id not in recorded:
            out.append(f"Stripe has deposit hold {pi_id} ({pi['status']}) that no deposit records")
    for dep in deps:
        name = f"deposit of booking #{dep.booking_id} ({dep.state})"
        standing = {
            h["payment_intent"]
            for h in dep.holds
            if stripe.get(h["payment_intent"], {}).get("status") == "requires_capture"
        }
        # 2.
        if dep.state == "held" and standing != {dep.payment_intent_id}:
            out.append(f"{name}: holds standing at Stripe {sorted(standing)}, not just {dep.payment_intent_id}")
        if dep.state in ("released", "captured", "cancelled", "card_needed", "card_saved") and standing:
            out.append(f"{name}: holds still standing at Stripe {sorted(standing)}")
        if dep.state == "hold_failed" and standing - {dep.payment_intent_id}:
            out.append(f"{name}: stale holds standing at Stripe {sorted(standing)}")
        # 3.
        for h in dep.holds:
            pi = stripe.get(h["payment_intent"])
            if pi is None:
                out.append(f"{name}: recorded hold {h['payment_intent']} is unknown to Stripe")
                continue
            want = "succeeded" if h.get("captured_cents") is not None else "canceled" if h.get("released_at") else None
            if want is None and pi["status"] != "requires_capture":
                out.append(f"{name}: hold {pi['id']} is {pi['status']} at Stripe but recorded as standing")
            elif want is not None and pi["status"] != want:
                out.append(f"{name}: hold {pi['id']} is {pi['status']} at Stripe, recorded as {want}")
            if want == "succeeded" and pi.get("amount_received") != h["captured_cents"]:
                out.append(
                    f"{name}: Stripe took {pi.get('amount_received')} of {pi['id']}, recorded {h['captured_cents']}"
                )
        # 4.
        mine = [c for c in claims if c.deposit_id == dep.id and c.status == "captured"]
        if dep.state == "captured" and (len(mine) != 1 or mine[0].captured_cents != dep.captured_cents):
            out.append(
                f"{name}: captured {dep.captured_cents} but its captured claims are {[c.captured_cents for c in mine]}"
            )
        if dep.state == "cancelled" and dep.holds:
            out.append(f"{name}: cancelled, yet {len(dep.holds)} hold(s) were placed")
    taken = sum(int(pi.get("amount_received") or 0) for pi in stripe.values())
    ours = sum(dep.captured_cents for dep in deps)
    if taken != ours or ours != sum(c.captured_cents or 0 for c in claims if c.status == "captured"):
        out.append(f"Stripe took {taken} cents from deposit holds, the deposits say {ours}")
    # 5.
    sent = Counter((m.get("booking_id"), m.get("kind"), m.get("subject")) for m in svc.mail.messages(limit=100_000))
    for (booking_id, kind, subject), n in sent.items():
        if str(kind).startswith("deposit") and n > 1:
            out.append(f"booking #{booking_id}: the '{kind}' email '{subject}' went out {n} times")
    return out


def booking_violations(svc: Any) -> list[str]:
    """The booking invariants (invariants.violations), less the two lines about money held by damage deposits, which
    deposit_violations checks: invariants.py counts every PaymentIntent as a booking's payment until it is told
    about deposit holds (a patch for it is with this flow's report)."""
    with svc.session() as s:
        deps = list(s.exec(select(DamageDeposit)))
    pis = {h["payment_intent"] for dep in deps for h in dep.holds}
    captured = sum(dep.captured_cents for dep in deps)
    out = []
    for line in violations(svc):
        if any(pi in line for pi in pis):
            continue
        total = re.match(r"In total Stripe keeps (-?\d+) cents, the ledger says (-?\d+)", line)
        if total and int(total[1]) - int(total[2]) == captured:
            continue
        out.append(line)
    return out
