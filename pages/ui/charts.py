"""How the rooms' time is drawn. The rooms × hours grid (rooms down, a day's opening hours or a week's days across,
each cell free / held / booked / blocked / event / closed in colour AND in words or an icon, a free cell a click away
from a phone booking), and below it on the Room calendar the timeline: one chart per day, each booking, hold,
hand-made or orphan event as a bar over a free (or closed) background, names written in the bars."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

import altair as alt
import pandas as pd
import streamlit as st

from pages.ui import nav
from services.booking.availability import closed_reasons
from services.booking.grid import Cell, CellState, Occupant, RoomGrid, describe
from services.rules.fmt import day_label, hhmm

if TYPE_CHECKING:
    from services.core.context import Services

KINDS = ["Free", "Booked", "Unpaid hold", "Blocked", "Manual event", "Orphan event", "Closed"]
KIND_COLORS = ["#e8f3f1", "#0f766e", "#f59e0b", "#3f3f46", "#7c3aed", "#dc2626", "#d4d4d8"]
KIND_HELP = {
    "Booked": "paid and on the calendar",
    "Unpaid hold": "waiting for the customer to pay; blocks the room until it expires",
    "Blocked": "taken out of sale by staff (maintenance, the venue's own use, a closure)",
    "Manual event": "added straight in Google Calendar, not by Room Desk",
    "Orphan event": "on the calendar but its booking is cancelled or failed: check it",
}


def kind_of(occupant: Occupant) -> str:
    """The timeline's word for what takes a room: an event of a booking that is no longer live is an orphan."""
    if occupant.state == CellState.EVENT:
        return "Orphan event" if occupant.reference else "Manual event"
    return {CellState.BOOKED: "Booked", CellState.HELD: "Unpaid hold"}.get(occupant.state, "Blocked")


def _hours(t: time | datetime) -> float:
    return t.hour + t.minute / 60


def timeline_frame(svc: Services, grid: RoomGrid) -> pd.DataFrame:
    """One row per bar: a 'Free'/'Closed' background per room and day, then what occupies each room, clipped to
    the opening hours."""
    open_h, close_h = _hours(svc.policy.open_time), _hours(svc.policy.close_time)
    names = {r.slug: r.name for r in grid.rooms}
    rows: list[dict[str, Any]] = []
    for d in grid.days:
        closed = next(iter(closed_reasons(svc, d)), None)
        for room in grid.rooms:
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
        for o in grid.on(d):
            start_h = max(_hours(o.starts_at), open_h) if o.starts_at.date() == d else open_h
            end_h = min(_hours(o.ends_at), close_h) if o.ends_at.date() == d else close_h
            if end_h <= start_h:
                continue
            rows.append(
                {
                    "day": day_label(d),
                    "room": names.get(o.room, o.room),
                    "kind": kind_of(o),
                    "start_h": start_h,
                    "end_h": end_h,
                    "when": f"{day_label(d)} {o.span}",
                    "who": o.label,
                    "reference": o.reference,
                    "label": o.label,
                }
            )
    return pd.DataFrame(rows)


def timeline_chart(
    svc: Services,
    frame: pd.DataFrame,
    day: date,
    *,
    labels: bool = False,
    legend: bool = True,
    titled: bool = True,
) -> alt.LayerChart | alt.FacetChart:
    """One day: rooms as rows, opening hours on x; colours say free / booked / hold / blocked / manual / orphan /
    closed.

    x is hours as a number (8.0–17.0) rather than a timestamp: Vega-Lite would shift timestamps into the browser's
    time zone, and these are venue-time wall-clock hours already. The chart takes the container's width."""
    import altair as alt

    open_h, close_h = _hours(svc.policy.open_time), _hours(svc.policy.close_time)
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
            labelColor="#52525b",
        ),
    )
    # The legend names only what needs naming (free and closed speak for themselves) so it fits a half-page chart.
    color = alt.Color(
        "kind:N",
        scale=alt.Scale(domain=KINDS, range=KIND_COLORS),
        legend=alt.Legend(
            title=None, orient="top", direction="horizontal", symbolType="square", labelFontSize=12, values=KINDS[1:6]
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
    base = alt.Chart(frame[frame["day"] == label])
    background = (
        base.transform_filter("datum.kind == 'Free' || datum.kind == 'Closed'")
        .mark_bar(height=row_px - 6)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    busy = (
        base.transform_filter("datum.kind != 'Free' && datum.kind != 'Closed'")
        .mark_bar(height=row_px - 6, cornerRadius=3, stroke="white", strokeWidth=1)
        .encode(x=x, x2="end_h:Q", y=y, color=color, tooltip=tooltip)
    )
    layers: list[Any] = [background, busy]
    if labels:
        # Write the name inside each bar, cut to what fits: `width` is the chart's live width (it follows the
        # page), about 6.5 px a character.
        hours = close_h - open_h
        layers.append(
            base.transform_filter("datum.kind != 'Free' && datum.kind != 'Closed'")
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


def show_timeline(svc: Services, frame: pd.DataFrame, days: Sequence[date], *, labels: bool = False) -> None:
    """One chart per day, stacked (a week is 'faceted' by hand: Vega-Lite facets cannot follow the page width)."""
    for i, day in enumerate(days):
        # A single day is titled by the page already.
        chart = timeline_chart(svc, frame, day, labels=labels, legend=i == 0, titled=len(days) > 1)
        st.altair_chart(chart, width="stretch")


# ------------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Look:
    """A state as a cell shows it: a word and an icon (readable without colour), and its colours."""

    word: str
    icon: str
    background: str
    text: str
    border: str


LOOKS: dict[CellState, Look] = {
    CellState.FREE: Look("Free", ":material/add_circle:", "#dcfce7", "#14532d", "#4ade80"),
    CellState.HELD: Look("Held", ":material/hourglass_top:", "#fef3c7", "#78350f", "#f59e0b"),
    CellState.BOOKED: Look("Booked", ":material/person:", "#0f766e", "#ffffff", "#0f766e"),
    CellState.EVENT: Look("Event", ":material/event:", "#ede9fe", "#4c1d95", "#8b5cf6"),
    CellState.BLOCKED: Look("Blocked", ":material/block:", "#3f3f46", "#ffffff", "#3f3f46"),
    CellState.CLOSED: Look("Closed", ":material/door_front:", "#e4e4e7", "#3f3f46", "#a1a1aa"),
    CellState.UNBOOKABLE: Look("Not bookable", "", "#fafafa", "#71717a", "#e4e4e7"),
}
LEGEND_HELP = {
    CellState.FREE: "a booking can start here: click to start a phone booking",
    CellState.HELD: "an unpaid hold: taken until it is paid or lapses",
    CellState.BOOKED: "a paid booking",
    CellState.EVENT: "an event on the room's calendar that Room Desk did not make",
    CellState.BLOCKED: "taken out of sale by staff (maintenance, the venue's own use)",
    CellState.CLOSED: "the venue is closed (weekday, holiday or closure)",
    CellState.UNBOOKABLE: "nothing there, but not bookable now (past, within the notice, or too short a gap)",
}


@dataclass(frozen=True)
class Asked:
    """The caller's request, outlined on the grid: its room, days and hours."""

    room: str
    days: frozenset[date]
    start: time
    end: time

    def covers(self, cell: Cell, *, whole_day: bool) -> bool:
        if cell.room != self.room or cell.day not in self.days:
            return False
        return whole_day or (cell.starts_at.time() < self.end and self.start < cell.ends_at.time())


def link_params(cell: Cell) -> dict[str, str]:
    """The Phone booking URL's query for a booking offered by `cell` (/phone_booking?room=…&day=…&start=…&end=…)."""
    assert cell.book_at is not None and cell.book_end is not None
    return {"room": cell.room, "day": cell.day.isoformat(), "start": hhmm(cell.book_at), "end": hhmm(cell.book_end)}


# Every cell sits in an element keyed `rg_<page>_<state>[_req]_<room>_<column>`: Streamlit puts the key in a class,
# so the state picks the colours and `_req` outlines the caller's request.
CELL = '[class*="st-key-rg_"]'
GRID_CSS = f"""
{CELL} :is(button, a) {{
  min-height: 2.1rem; width: 100%; justify-content: center; padding: 0 .2rem; border-radius: .3rem;
  opacity: 1 !important; gap: .2rem;
}}
{CELL} :is(button, a) p {{ font-size: .8rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
{CELL} button:disabled {{ cursor: default; }}
{CELL} a:hover, {CELL} button:not(:disabled):hover {{ filter: brightness(.93); text-decoration: none; }}
{CELL}[class*="_req_"] :is(button, a) {{ outline: 2px dashed #1d4ed8; outline-offset: 1px; }}
.rg-head {{ font-size: .75rem; color: #52525b; text-align: center; white-space: nowrap; overflow: hidden; }}
.rg-room {{ font-size: .8rem; line-height: 2.1rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
.rg-asked {{ font-weight: 700; color: #1d4ed8; }}
.rg-legend {{ display: flex; flex-wrap: wrap; gap: .3rem; font-size: .75rem; line-height: 1.4; }}
.rg-chip {{ border: 1px solid; border-radius: .3rem; padding: 0 .35rem; display: inline-flex; gap: .2rem; }}
.rg-icon {{ font-family: 'Material Symbols Rounded'; font-size: .95rem; line-height: 1.4; }}
"""


def _grid_css() -> None:
    """The grid's looks; each state's colours come from LOOKS."""
    states = "".join(
        f'{CELL}[class*="_{state.value}_"] :is(button, a) {{ background: {look.background} !important; '
        f"color: {look.text} !important; border: 1px solid {look.border} !important; }}\n"
        for state, look in LOOKS.items()
    )
    st.html(f"<style>{GRID_CSS}{states}</style>")


def grid_legend() -> None:
    """One line naming each state with its icon, in the cells' own colours, each with what it means on hover."""
    chips = "".join(
        f'<span class="rg-chip" title="{LEGEND_HELP[state]}" style="background:{look.background};color:{look.text};'
        f'border-color:{look.border}">{_symbol(look.icon)}{look.word}</span>'
        for state, look in LOOKS.items()
    )
    st.html(f'<div class="rg-legend">{chips}</div>')


def _symbol(icon: str) -> str:
    """A ':material/name:' icon as the Material Symbols glyph Streamlit's own icons use (the font is loaded)."""
    name = icon.removeprefix(":material/").removesuffix(":")
    return f'<span class="rg-icon">{name}</span>' if name else ""


def show_grid(
    svc: Services,
    grid: RoomGrid,
    *,
    ns: str,
    day: date | None = None,
    pick: Callable[[Cell], None] | None = None,
    link: bool = False,
    asked: Asked | None = None,
    compact: bool = False,
) -> None:
    """Rooms down; `day`'s opening hours across (or, without `day`, the grid's days). A cell a booking can start in
    is a button calling `pick(cell)`, or with `link` a link to Phone booking prefilled there; the others say what is
    there on hover. `compact` (a half-page column) draws icons only."""
    _grid_css()
    whole_day = day is None
    columns: list[Any] = list(grid.days) if whole_day else list(grid.hours)
    spec = [1.5 if compact else 1.3] + [1.0] * len(columns)
    with st.container(gap="xxsmall", key=f"{ns}_box"):
        head = st.columns(spec, gap="xxsmall", vertical_alignment="bottom")
        for col, value in zip(head[1:], columns, strict=True):
            text = day_label(value) if whole_day else (f"{value:%H}" if compact else hhmm(value))
            col.html(f'<div class="rg-head">{text}</div>')
        for room in grid.rooms:
            row = st.columns(spec, gap="xxsmall", vertical_alignment="center")
            bold = asked is not None and asked.room == room.slug
            row[0].html(
                f'<div class="rg-room">{"<b>" if bold else ""}{html.escape(room.name)}{"</b>" if bold else ""}</div>'
            )
            for i, (col, value) in enumerate(zip(row[1:], columns, strict=True)):
                cell = grid.day_cell(room.slug, value) if whole_day else grid.cell(room.slug, day or value, value)
                with col:
                    _draw_cell(
                        cell, f"{ns}_{i}", pick=pick, link=link, asked=asked, compact=compact, whole_day=whole_day
                    )


def _draw_cell(
    cell: Cell,
    key: str,
    *,
    pick: Callable[[Cell], None] | None,
    link: bool,
    asked: Asked | None,
    compact: bool,
    whole_day: bool,
) -> None:
    look = LOOKS[cell.state]
    req = "_req" if asked is not None and asked.covers(cell, whole_day=whole_day) else ""
    ns, column = key.rsplit("_", 1)
    key = f"{ns}_{cell.state.value}{req}_{cell.room}_{column}"
    label = _cell_label(cell, look, compact=compact, whole_day=whole_day)
    # Compact cells are an icon alone, except a week's free day: its icon and the hours left.
    icon = look.icon if look.icon and (not compact or (whole_day and cell.state == CellState.FREE)) else None
    tip = describe(cell) or LEGEND_HELP[cell.state].capitalize()
    if cell.bookable and cell.book_at is not None:
        tip += f"\n\nClick: a booking {hhmm(cell.book_at)}–{hhmm(cell.book_end or cell.book_at)}"
        if link:
            with st.container(key=key):
                st.page_link(
                    nav.script("phone_booking"),
                    label=label,
                    icon=icon,
                    help=tip,
                    query_params=link_params(cell),
                    width="stretch",
                )
            return
        if pick is not None:
            st.button(
                label,
                key=key,
                icon=icon,
                help=tip,
                on_click=pick,
                args=(cell,),
                width="stretch",
            )
            return
    st.button(label, key=key, icon=icon, help=tip, disabled=True, width="stretch")


def _cell_label(cell: Cell, look: Look, *, compact: bool, whole_day: bool) -> str:
    """The words in a cell: its state, and where it helps the free time (a week's day) or a start (a part-free hour)."""
    if cell.state == CellState.UNBOOKABLE:
        return "–" if compact else (cell.note or look.word)
    if compact:
        if whole_day and cell.state == CellState.FREE:
            return f"{cell.free_minutes / 60:g} h"
        return f"{look.icon}!" if cell.clash else look.icon
    if whole_day and cell.state == CellState.FREE:
        if len(cell.free) == 1 and cell.starts_at.time() == cell.free[0][0] and cell.ends_at.time() == cell.free[0][1]:
            return "Free all day"
        return f"{cell.free_minutes / 60:g} h free"
    if cell.clash:
        return f"{look.word} · clash"
    if cell.bookable and cell.state != CellState.FREE and cell.book_at is not None:
        return f"{look.word} · {hhmm(cell.book_at)}"
    return look.word
