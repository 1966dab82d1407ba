"""Values in words as the dashboard shows them: services.rules.fmt bound to this venue's currency and time zone, the
booking statuses' labels and colours, and Markdown escaping."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.rules import fmt

if TYPE_CHECKING:
    from services.core.context import Services

NBSP = "\u00a0"  # keeps short table cells ("Tue 3 Mar 14:05") on one line

STATUS_LABELS = {
    "AWAITING_PAYMENT": ("Awaiting payment", "orange"),
    "CONFIRMED": ("Confirmed", "green"),
    "PARTLY_CANCELLED": ("Partly cancelled", "violet"),
    "COMPLETED": ("Completed", "blue"),
    "CANCELLED": ("Cancelled", "gray"),
    "EXPIRED": ("Expired", "gray"),
    "FAILED": ("Failed", "red"),
    "REFUNDED": ("Refunded", "blue"),
}


def money(svc: Services, cents: int | None) -> str:
    return "—" if cents is None else fmt.money(cents, svc.settings.currency)


def venue(svc: Services, moment: datetime | None, *, with_day: bool = True) -> str:
    """A stored UTC instant in venue time: 'Tue 3 Mar 14:05'."""
    return "—" if moment is None else fmt.moment_label(moment, svc.settings.tz, with_day=with_day)


def venue_from_epoch(svc: Services, seconds: int | None) -> str:
    return "—" if not seconds else venue(svc, datetime.fromtimestamp(int(seconds), tz=svc.settings.tz))


def tz_label(svc: Services) -> str:
    """'Vancouver time' — said next to every time so nobody wonders whose clock it is."""
    return fmt.zone_label(svc.settings.venue_timezone)


def ago(svc: Services, moment: datetime) -> str:
    """'3 min ago', from the services' clock (so the sandbox's clock too)."""
    return fmt.ago_label(moment, svc.now())


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, (status.replace("_", " ").capitalize(), "gray"))[0]


def status_color(status: str) -> str:
    return STATUS_LABELS.get(status, (status, "gray"))[1]


def audit_summary(svc: Services, payload: dict[str, Any]) -> str:
    """An audit payload as one readable line (its message, then the facts, money and dates formatted), cut to fit a
    table cell."""
    text = fmt.payload_text(payload, currency=svc.settings.currency, moment=lambda m: venue(svc, m))
    return text if len(text) <= 220 else text[:219] + "…"


def no_formula(text: str) -> str:
    """Text for st.markdown: two amounts on one line ("$90 … $81") would otherwise open a LaTeX formula."""
    return text.replace("$", "\\$")


def literal(text: str) -> str:
    """Typed text (staff's, or a customer's: names, notes, extras) shown as itself, never as Markdown or HTML: no
    link, no image fetched from elsewhere, no heading. Line breaks stay line breaks."""
    escaped = re.sub(r"([\\`*_{}\[\]()#+\-.!|>~<$=])", r"\\\1", text)
    return "  \n".join(escaped.splitlines())
