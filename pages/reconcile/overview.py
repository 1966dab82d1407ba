"""Overview: is anything out of step between Stripe, the room calendars and Room Desk, and how much money does it put
at risk? Open findings by code and severity, their trend, the last sync's age, and Sync now.

Everything here is read from the local cache and the findings table (fast); Sync now refreshes both.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from pages.ui import boot, labels, nav, session, sync, widgets
from services.ops.health import worker_health
from services.reconciliation.findings import CODES, SEVERITY_ORDER, open_findings, trend

svc = boot.services()
role = session.require_role("overview")
can_sync = session.may("sync.run")
can_fix = nav.may_open(role, "mismatches")
SEVERITIES = list(SEVERITY_ORDER)  # high, medium, low
SEVERITY_COLOR = alt.Color(
    "severity:N",
    scale=alt.Scale(domain=SEVERITIES, range=[sync.SEVERITY_HEX[s] for s in SEVERITIES]),
    legend=alt.Legend(title=None, orient="top", direction="horizontal"),
)

st.title("Overview")

# ---- freshness and Sync now --------------------------------------------------------------------------------------
status, button = st.columns([4, 1], vertical_alignment="center")
if can_sync and button.button("Sync now", type="primary", icon=":material/sync:", key="ov_sync", width="stretch"):
    # Runs before anything below reads the findings, so this same run shows the fresh numbers.
    outcome = sync.sync_and_reconcile()
    if outcome is not None:
        st.session_state["ov_outcome"] = outcome
with status:
    last = sync.sync_status(svc, can_sync=can_sync)
if (outcome := st.session_state.get("ov_outcome")) is not None:  # until dismissed
    widgets.kept_outcome(
        "warning" if outcome.errors else "success", outcome.text(), forget="ov_outcome", icon=":material/sync:"
    )
sync.audit_indicator(svc)

worker = worker_health(svc)  # its last error may quote anything: shown as text, never as Markdown
if worker.ok:
    st.caption(labels.literal(worker.text))
else:
    hint = "" if worker.failures_in_a_row else ": start it with `python -m services.ops.cli worker`."
    st.warning(labels.literal(worker.text) + hint, icon=":material/running_with_errors:")

# ---- what is open now --------------------------------------------------------------------------------------------
findings = open_findings(svc, include_acknowledged=True)
open_now = [f for f in findings if f.status == "open"]
if last is None and not findings:
    # Zeros would read as "all is well": before the first sync nothing has been compared yet.
    st.info(
        "The open findings, the money they put at risk and their trend appear here after the first sync.",
        icon=":material/monitoring:",
    )
    st.stop()

m1, m2, m3, m4 = st.columns(4)
m1.metric("Open findings", len(open_now), border=True)
m2.metric("High severity", sum(f.severity == "high" for f in open_now), border=True)
m3.metric(
    "Money at risk",
    labels.money(svc, sum(f.amount_cents for f in open_now)),
    border=True,
    help="What the open findings put at stake: paid but not on the calendar, disputed, charged differently…",
)
m4.metric(
    "Acknowledged",
    len(findings) - len(open_now),
    border=True,
    help="Looked at by a person and left as they are, with a note; not counted as open",
)


def by_code_chart(by_code: pd.DataFrame) -> alt.LayerChart:
    """One bar per code, coloured by severity, most severe first; the count at the end of each bar."""
    bars = alt.Chart(by_code).encode(
        x=alt.X("open:Q", title=None, axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y(
            "finding:N", sort=list(by_code["finding"]), title=None, axis=alt.Axis(labelLimit=300, labelFontSize=12)
        ),
        # No legend: the table under the charts names each code's severity, and the trend's legend sits beside.
        color=SEVERITY_COLOR.legend(None),
        tooltip=[
            alt.Tooltip("finding:N", title="Finding"),
            alt.Tooltip("code:N", title="Code"),
            alt.Tooltip("severity:N", title="Severity"),
            alt.Tooltip("open:Q", title="Open"),
        ],
    )
    text = bars.mark_text(align="left", dx=4, fontSize=12).encode(text="open:Q", color=alt.value("#3f3f46"))
    return (bars.mark_bar(cornerRadiusEnd=3, height=16) + text).properties(height=26 * len(by_code) + 40)


def trend_chart(points: list[dict[str, object]]) -> alt.Chart:
    """Open findings after each run, stacked by severity, in venue time."""
    raw = pd.DataFrame(points)
    raw["severity"] = [CODES[str(c)][0] if c in CODES else "low" for c in raw["code"]]
    per_run = raw.pivot_table(index="at", columns="severity", values="open", aggfunc="sum", fill_value=0)
    series = per_run.reindex(columns=SEVERITIES, fill_value=0).reset_index().melt(id_vars="at", value_name="open")
    # Venue wall-clock time, read as UTC by Vega-Lite (a utc scale): otherwise the chart would move every point
    # into the browser's own time zone.
    series["when"] = [at.astimezone(svc.settings.tz).replace(tzinfo=None) for at in series["at"]]
    series["label"] = [labels.venue(svc, at) for at in series["at"]]
    series["rank"] = series["severity"].map(SEVERITY_ORDER)
    # Labels that suit the span: times on the first day of use, days after a few.
    span = (raw["at"].max() - raw["at"].min()).total_seconds()
    fmt = "%H:%M" if span < 86400 else "%d %b %H:%M" if span < 4 * 86400 else "%d %b"
    return (
        alt.Chart(series.drop(columns="at"))
        .mark_area(opacity=0.85, interpolate="step-after", line=True)
        .encode(
            x=alt.X(
                "when:T",
                title=None,
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(labelAngle=0, labelOverlap=True, format=fmt, tickCount=6),
            ),
            y=alt.Y("open:Q", stack=True, title=None, axis=alt.Axis(tickMinStep=1, format="d")),
            color=SEVERITY_COLOR,
            order=alt.Order("rank:Q"),
            tooltip=[
                alt.Tooltip("label:N", title=f"Run ({labels.tz_label(svc)})"),
                alt.Tooltip("severity:N", title="Severity"),
                alt.Tooltip("open:Q", title="Open"),
            ],
        )
        .properties(height=260)
    )


if not open_now:
    st.success("Nothing needs attention: Stripe, the room calendars and Room Desk agree.", icon=":material/task_alt:")
    by_code = pd.DataFrame()
else:
    by_code = (
        pd.DataFrame([{"code": f.code, "severity": f.severity, "amount": f.amount_cents} for f in open_now])
        .groupby(["code", "severity"], as_index=False)
        .agg(open=("code", "size"), at_risk=("amount", "sum"))
    )
    by_code["rank"] = by_code["severity"].map(SEVERITY_ORDER)
    by_code = by_code.sort_values(["rank", "open", "code"], ascending=[True, False, True], ignore_index=True)
    by_code["finding"] = [CODES[c][1] if c in CODES else c for c in by_code["code"]]

left, right = st.columns(2, gap="large")
if not by_code.empty:
    with left:
        st.markdown("**Open findings by code**")
        st.altair_chart(by_code_chart(by_code), width="stretch")
with right:
    st.markdown("**Open findings over the last 30 days**")
    points = trend(svc, days=30)
    if len({p["at"] for p in points}) < 2:
        st.caption("The trend fills in as syncs run: it needs two reconciliation runs that found something.")
    else:
        st.altair_chart(trend_chart(points), width="stretch")
        st.caption(f"After each reconciliation run, stacked by severity ({labels.tz_label(svc)}).")

if not by_code.empty:
    table = pd.DataFrame(
        {
            "Severity": [s.capitalize() for s in by_code["severity"]],
            "Finding": by_code["finding"],
            "Code": by_code["code"],
            "Open": by_code["open"],
            "At risk": [labels.money(svc, int(c)) if c else "—" for c in by_code["at_risk"]],
        }
    )
    picked = widgets.selectable_table(table, key="ov_codes", rows=len(table), selectable=can_fix)
    if can_fix:
        st.caption("Select a row to work through those findings on the Mismatches page.")
        if picked is not None:
            st.session_state.pop("mm_code_link", None)  # Mismatches applies the link's filter again
            st.switch_page(nav.script("mismatches"), query_params={"code": str(by_code["code"][picked])})
