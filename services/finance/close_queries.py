"""Read models of the daily close (services.finance.close runs it): the stored runs, one run with its items, its CSV
export, and the labels and day arithmetic both sides share. No writes here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import col, select

from models.tables import DailyClose, DailyCloseItem
from services.core.context import Services
from services.core.errors import NotFound
from services.core.settings import Settings
from services.rules.fmt import money

CATEGORIES = ("charge", "refund", "dispute", "dispute_reversal")
CATEGORY_LABELS = {
    "charge": "Charges",
    "refund": "Refunds",
    "dispute": "Disputes",
    "dispute_reversal": "Dispute reversals",
    "other": "Other Stripe transactions",
    "fee": "Fees",
    "net": "Net payout",
}
# The day's tax from our ledger (services.finance.close stores them in DailyClose.totals["tax"]), in this order.
TAX_LABELS = {
    "on_payments": "Tax collected on payments",
    "on_refunds": "Tax given back on refunds",
    "net": "Net tax",
    "net_sales": "Net sales (net of tax)",
}


@dataclass(frozen=True)
class CloseResult:
    """A stored close and its items (what run_close returns and the page shows)."""

    close: DailyClose
    items: list[DailyCloseItem]

    @property
    def passed(self) -> bool:
        return self.close.status == "passed"

    @property
    def tax(self) -> dict[str, int] | None:
        """The day's tax figures from our ledger (TAX_LABELS' keys), or None for a run from before they were kept
        (or one that could not run)."""
        figures = (self.close.totals or {}).get("tax")
        return {k: int(figures.get(k, 0)) for k in TAX_LABELS} if isinstance(figures, dict) else None

    @property
    def day_over(self) -> bool:
        """The business day had ended when the close ran (a close of today leaves out what comes later)."""
        return bool((self.close.totals or {}).get("window", {}).get("complete", True))


def default_business_day(svc: Services, now: datetime | None = None) -> date:
    """Yesterday in venue time: the day a close normally runs for."""
    return (now or svc.now()).astimezone(svc.settings.tz).date() - timedelta(days=1)


def fee_schedule_label(settings: Settings) -> str:
    """'2.9 % + 0.30 per charge, 15.00 per dispute'."""
    percent = f"{settings.card_fee_bps / 100:g}"
    return (
        f"{percent} % + {money(settings.card_fee_fixed_cents, settings.currency)} per charge, "
        f"{money(settings.dispute_fee_cents, settings.currency)} per dispute"
    )


# --------------------------------------------------------------------------------------------------- reading


def close_history(svc: Services, *, limit: int = 100, business_day: date | None = None) -> list[DailyClose]:
    """Past closes, newest run first (optionally of one day)."""
    with svc.read_session() as s:
        query = select(DailyClose)
        if business_day is not None:
            query = query.where(DailyClose.business_day == business_day)
        return list(s.exec(query.order_by(col(DailyClose.run_at).desc(), col(DailyClose.id).desc()).limit(limit)))


def day_results(runs: Sequence[DailyClose]) -> set[int]:
    """The ids of the runs that are their day's result: each day's newest run (`runs` newest first)."""
    newest: dict[date, int] = {}
    for r in runs:
        if r.id is not None:
            newest.setdefault(r.business_day, r.id)
    return set(newest.values())


def latest_close(svc: Services, business_day: date) -> DailyClose | None:
    """The day's result: its newest run, or None if it was never closed."""
    runs = close_history(svc, limit=1, business_day=business_day)
    return runs[0] if runs else None


def get_close(svc: Services, close_id: int) -> CloseResult:
    """One stored close with its items, largest difference first."""
    with svc.read_session() as s:
        close = s.get(DailyClose, close_id)
        if close is None:
            raise NotFound(f"No daily close #{close_id}")
        items = list(s.exec(select(DailyCloseItem).where(DailyCloseItem.close_id == close_id)))
    items.sort(key=lambda i: (-abs(i.difference_cents), i.category, i.stripe_id or "", i.id or 0))
    return CloseResult(close, items)


CSV_COLUMNS = [
    "record",
    "business_day",
    "status",
    "category",
    "problem",
    "stripe_id",
    "booking_reference",
    "stripe",
    "ledger",
    "difference",
    "currency",
    "note",
]


def _decimal(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def close_csv(svc: Services, close_id: int) -> bytes:
    """One close as CSV (UTF-8 with a BOM, for spreadsheets): a `close` row (gross volumes, variance), a `total`
    row per category, a `tax` row per tax figure (our ledger's only: Stripe knows nothing of tax), then an `item`
    row per difference. Amounts in currency units, e.g. 120.00."""
    result = get_close(svc, close_id)
    c = result.close
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"business_day": c.business_day.isoformat(), "status": c.status, "currency": c.currency}
    summary = (
        f"variance {c.variance_bps} bps, tolerance {c.tolerance_bps} bps; run by {c.run_by} at {c.run_at.isoformat()}"
    )
    writer.writerow(
        {
            **base,
            "record": "close",
            "stripe": _decimal(c.stripe_cents),
            "ledger": _decimal(c.ledger_cents),
            "difference": _decimal(c.variance_cents),
            "note": c.error or summary,
        }
    )
    for category in (*CATEGORIES, "other", "fee", "net"):
        t = (c.totals or {}).get(category)
        if not t:
            continue
        writer.writerow(
            {
                **base,
                "record": "total",
                "category": category,
                "stripe": _decimal(int(t["stripe"])),
                "ledger": _decimal(int(t["ledger"])),
                "difference": _decimal(int(t["stripe"]) - int(t["ledger"])),
                "note": CATEGORY_LABELS[category],
            }
        )
    for key, cents in (result.tax or {}).items():
        writer.writerow({**base, "record": "tax", "category": key, "ledger": _decimal(cents), "note": TAX_LABELS[key]})
    for i in result.items:
        writer.writerow(
            {
                **base,
                "record": "item",
                "category": i.category,
                "problem": i.problem,
                "stripe_id": i.stripe_id or "",
                "booking_reference": i.booking_reference or "",
                "stripe": _decimal(i.stripe_cents),
                "ledger": _decimal(i.ledger_cents),
                "difference": _decimal(i.difference_cents),
                "note": i.note,
            }
        )
    return out.getvalue().encode("utf-8-sig")
