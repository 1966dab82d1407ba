"""The damage deposit's customer emails (services.finance.deposits sends them): the hold placed, a claim filed, a
claim captured, the hold released. Text + HTML from the templates beside the other customer emails
(services/notify/templates/deposit_*.txt|html), queued through the outbox once per idempotency key:
`<REF>-deposit-held`, `<REF>-deposit-claim-<n>`, `<REF>-deposit-captured-<n>`, `<REF>-deposit-released`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlmodel import Session

from models.tables import Booking, BookingLeg, DamageDeposit, DepositClaim, EmailOutbox
from services.core.catalogue import Catalogue
from services.core.settings import Settings
from services.notify import outbox
from services.notify.emails import TEMPLATES, RenderedEmail, manage_url
from services.rules.fmt import day_label, moment_label, money

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # Claim notes are typed by staff and customer names by customers: the HTML escapes them.
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
KINDS = ("deposit_held", "deposit_claim", "deposit_captured", "deposit_released")


def render(
    kind: str,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    deposit: DamageDeposit,
    catalogue: Catalogue,
    settings: Settings,
    claim: DepositClaim | None = None,
    release_at: datetime | None = None,
) -> RenderedEmail:
    """One deposit email, from the stored rows (rendering again gives the same text)."""
    if kind not in KINDS:
        raise ValueError(f"unknown deposit email kind {kind!r}")
    if kind in ("deposit_claim", "deposit_captured") and claim is None:
        raise ValueError(f"a {kind!r} email needs the claim it is about")
    room = catalogue.room(booking.room_slug)
    cur = deposit.currency
    ctx: dict[str, Any] = {
        "name": booking.customer_name,
        "reference": booking.reference,
        "room": room,
        "venue": catalogue.venue,
        "days_text": ", ".join(day_label(d) for d in sorted({leg.day for leg in legs})) or "—",
        "amount": money(deposit.amount_cents, cur),
        "release_at": moment_label(release_at, settings.tz) if release_at else "after the claim window",
        "manage_url": manage_url(settings, booking),
        "claim": money(claim.amount_cents, cur) if claim else "",
        "notes": claim.notes if claim else "",
        "photos": len(claim.photos) if claim else 0,
        "rest": money(deposit.amount_cents - (claim.captured_cents or 0), cur)
        if claim and claim.captured_cents
        else "",
    }
    subject = {
        "deposit_held": f"Damage deposit of {ctx['amount']} held for your booking {booking.reference}",
        "deposit_claim": f"A damage claim on your booking {booking.reference}: {ctx['claim']}",
        "deposit_captured": f"Damage claim on your booking {booking.reference}: {ctx['claim']} taken",
        "deposit_released": f"Damage deposit released for your booking {booking.reference}",
    }[kind]
    return RenderedEmail(
        subject=subject,
        text=_env.get_template(f"{kind}.txt").render(ctx),
        html=_env.get_template(f"{kind}.html").render(ctx, subject=subject),
    )


# The four emails, each queued under its own key (a retry of the step that sends it never sends it twice).


def held(
    s: Session,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    deposit: DamageDeposit,
    catalogue: Catalogue,
    settings: Settings,
    release_at: datetime | None,
    now: datetime,
) -> EmailOutbox:
    mail = render(
        "deposit_held",
        booking=booking,
        legs=legs,
        deposit=deposit,
        catalogue=catalogue,
        settings=settings,
        release_at=release_at,
    )
    return outbox.queue(s, booking, kind="deposit_held", mail=mail, key=f"{booking.reference}-deposit-held", now=now)


def claim_filed(
    s: Session,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    deposit: DamageDeposit,
    claim: DepositClaim,
    catalogue: Catalogue,
    settings: Settings,
    now: datetime,
) -> EmailOutbox:
    mail = render(
        "deposit_claim",
        booking=booking,
        legs=legs,
        deposit=deposit,
        claim=claim,
        catalogue=catalogue,
        settings=settings,
    )
    key = f"{booking.reference}-deposit-claim-{claim.id}"
    return outbox.queue(s, booking, kind="deposit_claim", mail=mail, key=key, now=now)


def captured(
    s: Session,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    deposit: DamageDeposit,
    claim: DepositClaim,
    catalogue: Catalogue,
    settings: Settings,
    now: datetime,
) -> EmailOutbox:
    mail = render(
        "deposit_captured",
        booking=booking,
        legs=legs,
        deposit=deposit,
        claim=claim,
        catalogue=catalogue,
        settings=settings,
    )
    key = f"{booking.reference}-deposit-captured-{claim.id}"
    return outbox.queue(s, booking, kind="deposit_captured", mail=mail, key=key, now=now)


def released(
    s: Session,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    deposit: DamageDeposit,
    catalogue: Catalogue,
    settings: Settings,
    now: datetime,
) -> EmailOutbox:
    mail = render(
        "deposit_released", booking=booking, legs=legs, deposit=deposit, catalogue=catalogue, settings=settings
    )
    key = f"{booking.reference}-deposit-released"
    return outbox.queue(s, booking, kind="deposit_released", mail=mail, key=key, now=now)
