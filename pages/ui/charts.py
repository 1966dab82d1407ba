"""The room timeline: one chart per day, rooms as rows, opening hours across, each booking, hold, hand-made or orphan
event as a bar over a free (or closed) background. Phone booking draws the caller's request over it as a dashed
outline; the Room calendar writes the names in the bars."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import altair as alt
import pandas as pd
import streamlit as st

from services.booking.availability import closed_reasons
from services.rules.fmt import day_label

if TYPE_CHECKING:
    from services.booking.queries import ScheduleItem
    from services.core.context import Services

KINDS = ["Free", "Booked", "Unpaid hold", "Manual event", "Orphan event", "Closed"]
KIND_COLORS = ["#e8f3f1", "#0f766e", "#f59e0b", "#7c3aed", "#dc2626", "#d4d4d8"]
KIND_OF = {"booked": "Booked", "hold": "Unpaid hold", "manual": "Manual event", "orphan": "Orphan event"}
KIND_HELP = {
    "Booked": "paid and on the calendar",
    "Unpaid hold": "waiting for the customer to pay; blocks the room until it expires",
    "Manual event": "added straight in Google Calendar, not by Room Desk",
    "Orphan event": "on the calendar but its booking is cancelled or failed: check it",
}


def _hours(t: time | datetime) -> float:
    return t.hour + t.minute / 60


def timeline_frame(svc: Services, items: Sequence[ScheduleItem], days: Sequence[date]) -> pd.DataFrame:
    """One row per bar: a 'Free'/'Closed' background per room and day, then what occupies each room."""
    open_h, close_h = _hours(svc.settings.open_time), _hours(svc.settings.close_time)
    rows: list[dict[str, Any]] = []
    for d in days:
        closed = next(iter(closed_reasons(svc, d)), None)
        for room in svc.catalogue.rooms:
            rows.append(
                {
                    "day": day_label(d),
                    "room": room.name,
                    "kind": "Closed" if closed else "Free",
                    "start_h": open_h,
                    "end_h": close_h,
                    "when": f"{day_label(d)}, open hours",
                    "who": closed or "Free",
                    "reference": "",
                    "label": "",
                }
            )
    wanted = set(days)
    for it in items:
        if it.day not in wanted:
            continue
        start_h, end_h = max(_hours(it.start), open_h), min(_hours(it.end), close_h)
        if it.end.date() > it.day:  # runs past midnight: clip at closing
            end_h = close_h
        if end_h <= start_h:
            continue
        rows.append(
            {
                "day": day_label(it.day),
                "room": it.room_name,
                "kind": KIND_OF.get(it.kind, it.kind),
                "start_h": start_h,
                "end_h": end_h,
                "when": f"{day_label(it.day)} {it.start:%H:%M}–{it.end:%H:%M}",
                "who": it.label,
                "reference": it.reference,
                "label": it.label,
            }
        )
    return pd.DataFrame(rows)


def timeline_chart(
    svc: Services,
    frame: pd.DataFrame,
    day: date,
    *,
    request: pd.DataFrame | None = None,
    labels: bool = False,
    legend: bool = True,
    highlight: str = "",
    titled: bool = True,
) -> alt.LayerChart | alt.FacetChart:
    """One day: rooms as rows, opening hours on x; colours say free / booked / hold / manual / orphan / closed.

    x is hours as a number (8.0–17.0) rather than a timestamp: Vega-Lite would shift timestamps into the browser's
    time zone, and these are venue-time wall-clock hours already. The chart takes the container's width."""
    import altair as alt

    open_h, close_h = _hours(svc.settings.open_time), _hours(svc.settings.close_time)
    rooms = [r.name for r in svc.catalogue.rooms]
    row_px = 24
    ticks = list(range(int(open_h), int(close_h) + 1))
    x = alt.X(
        "start_h:Q",
        scale=alt.Scale(domain=[open_h, close_h], nice=False),
        title=None,
        axis=alt.Axis(
            values=ticks,
            labelExpr="(datum.value < 10 ? '0' : '') + datum.value + ':00'",
            grid=True,
            gridColor="#ffffff",
            gridWidth=2,
            orient="top",
            labelFontSize=11,
        ),
    )
    bold = f"datum.value == {json.dumps(highlight)} ? 'bold' : 'normal'"
    y = alt.Y(
        "room:N",
        sort=rooms,
        title=None,
        scale=alt.Scale(domain=rooms),
        axis=alt.Axis(
            labelLimit=140,
            labelFontSize=12,
            ticks=False,
            domain=False,
            labelFontWeight=alt.expr(bold),
            labelColor=alt.expr(f"datum.value == {json.dumps(highlight)} ? '#1d4ed8' : '#52525b'"),
        ),
    )
    # The legend names only what needs naming (free and closed speak for themselves) so it fits a half-page chart.
    color = alt.Color(
        "kind:N",
        scale=alt.Scale(domain=KINDS, range=KIND_COLORS),
        legend=alt.Legend(
            title=None, orient="top", direction="horizontal", symbolType="square", labelFontSize=12, values=KINDS[1:5]
        )
        if legend
        else None,
    )
    tooltip = [
        alt.Tooltip("room:N", title="Room"),
        alt.Tooltip("when:N", title="When"),
        alt.Tooltip("who:N", title="Who / what"),
        alt.Tooltip("reference:N", title="Reference"),
        alt.Tooltip("kind:N", title="Kind"),
    ]
    label = day_label(day)
    data = frame[frame["day"] == label].assign(layer="bar")
    if request is not None and not request.empty:
        data = pd.concat([data, request[request["day"] == label].assign(layer="request")], ignore_index=True)
    base = alt.Chart(data)
    background = (
        base.transform_filter("datum.kind == 'Free' || datum.kind == 'Closed'")
        .mark_bar(height=row_px - 6)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    busy = (
        base.transform_filter("datum.layer == 'bar' && datum.kind != 'Free' && datum.kind != 'Closed'")
        .mark_bar(height=row_px - 6, cornerRadius=3, stroke="white", strokeWidth=1)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    layers: list[Any] = [background, busy]
    if request is not None and not request.empty:
        layers.append(
            base.transform_filter("datum.layer == 'request'")
            .mark_bar(
                height=row_px - 2, fill="#2563eb", fillOpacity=0.18, stroke="#1d4ed8", strokeWidth=2, strokeDash=[5, 3]
            )
            .encode(x=x, x2="end_h:Q", y=y, tooltip=tooltip)
        )
    if labels:
        # Write the name inside each bar, cut to what fits: `width` is the chart's live width (it follows the
        # page), about 6.5 px a character.
        hours = close_h - open_h
        layers.append(
            base.transform_filter("datum.layer == 'bar' && datum.kind != 'Free' && datum.kind != 'Closed'")
            .transform_calculate(fit=f"floor(((datum.end_h - datum.start_h) * width / {hours} - 10) / 6.5)")
            .transform_calculate(
                text="datum.fit < 4 ? '' : (length(datum.label) <= datum.fit ? datum.label : "
                "slice(datum.label, 0, datum.fit - 1) + '…')"
            )
            .mark_text(align="left", baseline="middle", dx=5, color="white", fontSize=11, fontWeight="bold")
            .encode(x=x, y=y, text="text:N", tooltip=tooltip)
        )
    closed = frame[(frame["day"] == label) & (frame["kind"] == "Closed")]["who"]
    title = label + (f" — {closed.iloc[0]}" if not closed.empty else "")
    # fit-x: follow the page's width, but keep a fixed height per room row (plain "fit" squeezes the rows to make
    # room for the title, legend and axis).
    chart = alt.layer(*layers).properties(
        width="container", height=row_px * len(rooms), autosize=alt.AutoSizeParams(type="fit-x", contains="padding")
    )
    if titled:
        chart = chart.properties(
            title=alt.TitleParams(title, anchor="start", fontSize=14, color="#1f2933" if closed.empty else "#71717a")
        )
    return chart


def show_timeline(
    svc: Services,
    frame: pd.DataFrame,
    days: Sequence[date],
    *,
    request: pd.DataFrame | None = None,
    labels: bool = False,
    highlight: str = "",
) -> None:
    """One chart per day, stacked (a week is 'faceted' by hand: Vega-Lite facets cannot follow the page width)."""
    for i, day in enumerate(days):
        # A single day is titled by the page already.
        chart = timeline_chart(
            svc, frame, day, request=request, labels=labels, legend=i == 0, highlight=highlight, titled=len(days) > 1
        )
        st.altair_chart(chart, width="stretch")
