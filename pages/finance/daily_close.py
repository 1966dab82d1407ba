"""Daily close (finance, admin): a business day's Stripe balance transactions against our ledger (runbook 003 §11).

Pick a day (yesterday by default, venue time) and run the close: the result (passed / failed against the tolerance),
Stripe and ledger totals per category (gross, tax included: Stripe knows nothing of our tax), the day's tax from our
ledger (collected, given back, net, and net sales), and each differing item with its booking. Every run is kept:
the history lists them all, the newest run of a day being the day's result; select one to open it, rerun a day after
fixing its items, download any run as CSV. The comparison itself is services/finance/close.py (run through the Desk);
the runs are read back through services/finance/close_queries.py.
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, nav, session, widgets
from services.finance import close_queries as cq
from services.finance.close_queries import CloseResult
from services.rules.fmt import bps_label, day_label

if TYPE_CHECKING:
    from models.tables import DailyClose, DailyCloseItem

svc = boot.services()
session.require_role("daily_close")
TZ = labels.tz_label(svc)
TOLERANCE = svc.settings.close_tolerance_bps

STATUS = {
    "passed": ("Passed", "green", ":material/check_circle:"),
    "failed": ("Failed", "red", ":material/cancel:"),
    "error": ("Could not run", "orange", ":material/error:"),
}
PROBLEMS = {
    "missing_in_ledger": "Not in our ledger",
    "missing_in_stripe": "Not in Stripe",
    "amount_differs": "Amounts differ",
}
ITEM_COLUMNS = ["Category", "Problem", "Stripe id", "Booking", "Stripe", "Ledger", "Difference"]
EXPLAINED = 20  # items whose explanation is written out under the table; the CSV has every one


def tolerance_text(c: DailyClose) -> str:
    """The tolerance the run was judged by (a setting, so it may have changed since)."""
    return f"{c.tolerance_bps} bps ({bps_label(c.tolerance_bps)})"


@st.cache_data(show_spinner=False, max_entries=50)
def csv_bytes(database: str, close_id: int) -> bytes:
    """A stored close never changes, so its export is cached by database and id."""
    return cq.close_csv(svc, close_id)


def run(day: date) -> None:
    bar, report = widgets.progress_bar(f"Closing {day_label(day)}…", say=f"Closing {day_label(day)}: {{}}")
    with actions.reporting("Daily close"):
        result = actions.desk().run_close(day, progress=report)
        st.session_state["dc_shown"] = result.close.id
        widgets.next_generation("dc")  # the history's rows moved: forget its selection
        st.rerun()
    bar.empty()


def totals_table(c: DailyClose) -> pd.DataFrame:
    rows = []
    for category in (*cq.CATEGORIES, "other", "fee", "net"):
        t = (c.totals or {}).get(category)
        if not t:
            continue
        counts = ""
        if "stripe_count" in t:
            counts = f"{t['stripe_count']} / {t['ledger_count']}"
        rows.append(
            {
                "": cq.CATEGORY_LABELS[category],
                "Stripe": labels.money(svc, int(t["stripe"])),
                "Our ledger": labels.money(svc, int(t["ledger"])),
                "Difference": labels.money(svc, int(t["stripe"]) - int(t["ledger"])),
                "Count (Stripe / ledger)": counts,
            }
        )
    return pd.DataFrame(rows).set_index("")


def items_table(items: list[DailyCloseItem]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Category": cq.CATEGORY_LABELS.get(i.category, i.category),
                "Problem": PROBLEMS.get(i.problem, i.problem),
                "Stripe id": i.stripe_id or "",
                "Booking": nav.booking_link(i.booking_reference) if i.booking_reference else None,
                "Stripe": labels.money(svc, i.stripe_cents),
                "Ledger": labels.money(svc, i.ledger_cents),
                "Difference": labels.money(svc, i.difference_cents),
            }
            for i in items
        ],
        columns=ITEM_COLUMNS,
    )


def show_close(result: CloseResult, *, newest: bool) -> None:
    c, items = result.close, result.items
    label, color, icon = STATUS.get(c.status, (c.status, "gray", ":material/help:"))
    with st.container(border=True):
        head, actions = st.columns([3, 1], vertical_alignment="center")
        head.markdown(f"### {day_label(c.business_day)} {c.business_day.year}")
        with head:
            st.badge(label, color=color, icon=icon)  # type: ignore[arg-type]
        head.caption(
            f"Run {labels.venue(svc, c.run_at)} ({TZ}) by {c.run_by} · close #{c.id}"
            + ("" if newest else " · an earlier run: the day's result is its newest run")
        )
        if actions.button(
            "Rerun this day",
            icon=":material/refresh:",
            key="dc_rerun",
            width="stretch",
            help="Run the close again for this day (after fixing its items); the new run becomes the day's result",
        ):
            run(c.business_day)
        if c.status != "error":
            assert c.id is not None
            actions.download_button(
                "Download CSV",
                data=csv_bytes(svc.settings.sqlalchemy_url, c.id),
                file_name=f"daily-close-{c.business_day.isoformat()}-run{c.id}.csv",
                mime="text/csv",
                icon=":material/download:",
                width="stretch",
            )
        if c.status == "error":
            st.error(f"**Could not run.** {c.error} Run it again once Stripe answers.")
            return
        if not result.day_over:
            st.info(f"{day_label(c.business_day)} is not over yet: later payments and refunds are not in this run.")
        verdict = f"Variance {c.variance_bps} bps ({bps_label(c.variance_bps)}), tolerance {tolerance_text(c)}"
        if c.status == "passed" and not items:
            st.success(f"**Passed.** Stripe and our ledger agree on every item. {verdict}.")
        elif c.status == "passed":
            st.warning(
                f"**Passed, with {len(items)} difference(s) below the tolerance** — listed below; worth a look. "
                f"{verdict}."
            )
        else:
            st.error(
                f"**Failed.** {verdict}: payouts stay paused. Resolve the {len(items)} item(s) below — adjust our "
                "ledger or chase Stripe — then rerun the day."
            )
        t = c.totals or {}
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Variance", f"{c.variance_bps} bps", border=True, help=f"Tolerance {tolerance_text(c)}")
        m2.metric(
            "Stripe gross volume",
            labels.money(svc, c.stripe_cents),
            border=True,
            help="Charges + refunds + disputes + reversals, each counted positive; fees are not volume",
        )
        m3.metric("Differences", labels.money(svc, c.variance_cents), border=True, help="Sum of the items' differences")
        m4.metric(
            "Net payout (Stripe)",
            labels.money(svc, int(t.get("net", {}).get("stripe", 0))),
            border=True,
            help=f"Our ledger expects {labels.money(svc, int(t.get('net', {}).get('ledger', 0)))}",
        )
        show_tax(result)  # in the first screenful, under the headline figures
        st.markdown("**Stripe against our ledger**")
        st.table(totals_table(c))
        st.caption(
            f"Amounts include tax. Fees are expected from the schedule: "
            f"{t.get('fee_schedule', cq.fee_schedule_label(svc.settings))}."
        )
        st.markdown(f"**Differing items** ({len(items)})")
        if not items:
            st.caption("None.")
        else:
            st.dataframe(
                items_table(items),
                hide_index=True,
                width="stretch",
                column_config={"Booking": st.column_config.LinkColumn("Booking", display_text=r"ref=(.*)$")},
            )
            # The explanations are sentences: a table cell would cut them off.
            lines = [
                f"- `{i.stripe_id}`"
                + (f" · [{ref}]({nav.booking_link(ref)})" if (ref := i.booking_reference) else "")
                + f": {i.note}"
                for i in items[:EXPLAINED]
            ]
            if len(items) > EXPLAINED:
                lines.append(f"- … and {len(items) - EXPLAINED} more: every item is explained in the CSV.")
            st.markdown("\n".join(lines))


def show_tax(result: CloseResult) -> None:
    """The day's tax from our ledger: Stripe has no tax split, so these are ours alone."""
    st.markdown("**Tax** (from our ledger)")
    if result.tax is None:
        st.caption("This run is from before the close kept tax figures: rerun the day to see them.")
        return
    helps = {
        "on_payments": "The tax inside the day's payments (bookings and changes paid)",
        "on_refunds": "The tax the day's refunds gave back: each one's share of its payment's tax",
        "net": "Collected − given back: what the day adds to the GST owed",
        "net_sales": "Payments − refunds − net tax: the day's sales net of tax",
    }
    for holder, (key, cents) in zip(st.columns(len(cq.TAX_LABELS)), result.tax.items(), strict=True):
        holder.metric(cq.TAX_LABELS[key], labels.money(svc, cents), help=helps[key])


def history_table(runs: list[DailyClose]) -> pd.DataFrame:
    newest = cq.day_results(runs)
    return pd.DataFrame(
        [
            {
                "Day": f"{day_label(r.business_day)} {r.business_day.year}",
                "Status": STATUS.get(r.status, (r.status,))[0],
                "Variance (bps)": r.variance_bps if r.status != "error" else None,
                "Items": int((r.totals or {}).get("items", 0)),
                "Stripe gross": labels.money(svc, r.stripe_cents) if r.status != "error" else "—",
                "Day's result": "✓" if r.id in newest else "",
                "Run by": r.run_by,
                f"Run at ({TZ})": labels.venue(svc, r.run_at),
            }
            for r in runs
        ]
    )


# ------------------------------------------------------------------------------------------------ page

st.title("Daily close")
st.caption(
    "Stripe's balance transactions for one day (venue time) against what Room Desk recorded: payments processed, "
    f"refunds recorded, disputes known, and the fees the schedule expects. Above {TOLERANCE} bps "
    f"({bps_label(TOLERANCE)}) of the day's Stripe volume the close fails and lists each difference."
)

runs = cq.close_history(svc, limit=200)
history_key = f"dc_hist_{widgets.generation('dc')}"
picked = (st.session_state.get(history_key) or {}).get("selection", {}).get("rows", [])
if not picked:
    st.session_state.pop("dc_picked", None)  # so selecting the same row again opens it again
elif picked[0] < len(runs) and st.session_state.get("dc_picked") != runs[picked[0]].id:
    # A history row was just selected: open that run, on its day.
    chosen = runs[picked[0]]
    st.session_state["dc_picked"] = st.session_state["dc_shown"] = chosen.id
    st.session_state["dc_day"] = chosen.business_day

today = svc.now().astimezone(svc.settings.tz).date()
if (linked := st.query_params.get("day")) and st.session_state.get("dc_day_link") != linked:
    # /daily_close?day=2026-03-01 opens that day (a link from the command line's output or a colleague).
    st.session_state["dc_day_link"] = linked
    with contextlib.suppress(ValueError):
        st.session_state["dc_day"] = min(date.fromisoformat(linked), today)
if "dc_day" not in st.session_state:
    st.session_state["dc_day"] = cq.default_business_day(svc)
c1, c2, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
day = c1.date_input("Business day", max_value=today, key="dc_day", format="YYYY-MM-DD")
if c2.button("Run close", type="primary", icon=":material/play_arrow:", width="stretch"):
    run(day)

shown_id = st.session_state.get("dc_shown")
shown = next((r for r in runs if r.id == shown_id and r.business_day == day), None) or next(
    (r for r in runs if r.business_day == day), None
)
if shown is None:
    st.info(f"{day_label(day)} has not been closed yet. Press **Run close**.", icon=":material/info:")
else:
    assert shown.id is not None
    with actions.reporting("Opening the close"):
        day_newest = next(r for r in runs if r.business_day == day)
        show_close(cq.get_close(svc, shown.id), newest=shown.id == day_newest.id)

st.subheader("History", anchor=False)
if not runs:
    st.caption("No close has been run yet.")
else:
    st.caption("Every run, newest first. Select one to open it above; a day's newest run is its result.")
    st.dataframe(
        history_table(runs),
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=history_key,
    )
