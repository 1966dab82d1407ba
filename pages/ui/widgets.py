"""The dashboard's repeated widgets: a table to pick one row from, a dialog opened from a session-state flag, a table
generation that forgets selections after an action, the period picker of the finance reports, and the form of a
room's extra questions, and "did you mean …?" under an email field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import streamlit as st

from pages.ui import labels
from services.rules.contact import suggest_email

if TYPE_CHECKING:
    from services.core.catalogue import Room

Period = Callable[[date], tuple[date, date]]
Progress = Callable[[float, str], None]


# ------------------------------------------------------------------------------------------------ tables


def table_key(prefix: str, *parts: Any) -> str:
    """A table key that follows what the table shows (its filters, its rows): a new result set starts with no row
    selected, so a remembered row number never points at another row."""
    digest = hashlib.sha1(json.dumps(parts, default=str).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{prefix}_{digest}"


def selectable_table(
    data: Any,
    *,
    key: str,
    rows: int,
    selectable: bool = True,
    keep: int | None = None,
    height: int | None = None,
    column_config: Mapping[str, Any] | None = None,
    on_pick: Callable[[int], None] | None = None,
) -> int | None:
    """A table of `rows` rows to select one of (a click reruns the page); the selected row's index, or None.
    `keep` selects a row at first (it stays selected after an action); `selectable=False` draws it inert.

    `on_pick(row)` runs before the rerun a click causes, so the page can already draw what was picked (e.g. at the
    top, instead of the table) in that rerun. AppTest sets a selection without calling it: the row is still
    returned."""
    options: dict[str, Any] = {
        "hide_index": True,
        "key": key,
        "selection_mode": "single-row",
        "selection_default": {"selection": {"rows": [keep]}} if keep is not None else None,
        "height": height if height is not None else "auto",
        "column_config": column_config,
    }
    if not selectable:
        st.dataframe(data, on_select="ignore", **options)
        return None
    callback: Any = "rerun" if on_pick is None else (lambda: _picked(key, rows, on_pick))
    picked = st.dataframe(data, on_select=callback, **options).selection.rows
    return picked[0] if picked and picked[0] < rows else None


def _picked(key: str, rows: int, on_pick: Callable[[int], None]) -> None:
    chosen = (st.session_state.get(key) or {}).get("selection", {}).get("rows") or []
    if chosen and chosen[0] < rows:
        on_pick(chosen[0])


def fit_height(rows: int, most: int) -> int:
    """A table's height for `rows` rows, at most `most` pixels (then it scrolls)."""
    return min(38 + 35 * rows, most)


def generation(name: str) -> int:
    """The current generation of a page's tables (part of their keys): a new one after an action forgets the
    selections, as the rows may have moved or gone."""
    return int(st.session_state.get(f"{name}_gen", 0))


def next_generation(name: str) -> None:
    st.session_state[f"{name}_gen"] = generation(name) + 1


# ------------------------------------------------------------------------------------------------ dialogs


def open_flag(key: str, value: Any = True, *, forget: tuple[str, ...] = ()) -> None:
    """on_click: raise the flag that opens a dialog (and drop the last outcomes in `forget`)."""
    st.session_state[key] = value
    for old in forget:
        st.session_state.pop(old, None)


def close_flag(key: str) -> None:
    st.session_state.pop(key, None)


def flag_dialog(
    key: str, title: str, body: Callable[..., None], *args: Any, width: Literal["small", "medium", "large"] = "medium"
) -> None:
    """Draw `body(*args)` as a dialog while the flag `key` is up; closing it lowers the flag.

    A dialog opened straight from `if st.button(...)` loses its own buttons' clicks: they rerun the page, where the
    opening button is False again (REFERENCE.md, AppTest and dialogs). A flag in session state survives that rerun."""
    if st.session_state.get(key) is None:
        return
    st.dialog(title, width=width, on_dismiss=lambda: close_flag(key))(body)(*args)


# ------------------------------------------------------------------------------------------------ finance periods


def period_picker(
    prefix: str, periods: Mapping[str, Period], today: date, *, default: str, where: tuple[Any, Any]
) -> tuple[date, date] | None:
    """'Period' buttons (Last month, This month…) in `where[0]` and the 'Dates' range they fill in, in `where[1]`;
    typing dates that match a period lights its button. The range, or None (and a hint) while only its first day is
    picked."""
    if f"{prefix}_range" not in st.session_state:
        show_period(prefix, periods, today, default)
    where[0].segmented_control(
        "Period", list(periods), key=f"{prefix}_period", on_change=_period_chosen, args=(prefix, periods, today)
    )
    picked = where[1].date_input(
        "Dates", key=f"{prefix}_range", format="YYYY-MM-DD", on_change=_range_typed, args=(prefix, periods, today)
    )
    return _range(picked)


def show_period(prefix: str, periods: Mapping[str, Period], today: date, name: str) -> None:
    """Select a period (also an on_click callback: 'Show this month')."""
    st.session_state[f"{prefix}_period"] = name
    _period_chosen(prefix, periods, today)


def _period_chosen(prefix: str, periods: Mapping[str, Period], today: date) -> None:
    chosen = st.session_state.get(f"{prefix}_period")
    if isinstance(chosen, str) and chosen in periods:
        st.session_state[f"{prefix}_range"] = periods[chosen](today)


def _range_typed(prefix: str, periods: Mapping[str, Period], today: date) -> None:
    picked = tuple(st.session_state.get(f"{prefix}_range") or ())
    st.session_state[f"{prefix}_period"] = next((name for name, span in periods.items() if span(today) == picked), None)


def _range(picked: Any) -> tuple[date, date] | None:
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick the last day of the range too.", icon=":material/date_range:")
        return None
    return picked[0], picked[1]


# ------------------------------------------------------------------------------------------------ small pieces


def progress_bar(text: str, *, say: str = "{}", share: float = 1.0) -> tuple[Any, Progress]:
    """A progress bar reading `text`, and the Progress callback a service reports through: the fraction kept within
    0–1 and scaled to `share` of the bar (the rest for what follows), each message shown through `say`."""
    bar = st.progress(0.0, text=text)

    def report(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0) * share, text=say.format(message)[:120])

    return bar, report


def status_badge(status: str) -> None:
    st.badge(labels.status_label(status), color=labels.status_color(status))  # type: ignore[arg-type]


def show_outcome(kind: str, text: str, where: Any = st) -> None:
    """A kept outcome, ('success' | 'info' | 'warning' | 'error', text), as that kind of message in `where`."""
    getattr(where, kind)(text)


def kept_outcome(
    kind: str, text: str, *, forget: str, icon: str | None = None, where: Any = None, toast: str | None = None
) -> Any:
    """What an action did, kept in session state under `forget` until the person dismisses it (✕ next to it): an
    outcome that vanished on the next click would be missed. Drawn in `where` (a container near the top of the
    page, by default here); `toast` also pops up once, seen wherever the page is scrolled (for a button far down the
    page). Returns the message's column, for more under it."""
    if toast and st.session_state.get(f"{forget}_toasted") != toast:
        st.session_state[f"{forget}_toasted"] = toast
        st.toast(toast, icon=icon)
    box, close = (where or st).columns([14, 1], vertical_alignment="top")
    getattr(box, kind)(text, icon=icon)
    close.button("", icon=":material/close:", key=f"{forget}_dismiss", help="Dismiss", on_click=_forget, args=(forget,))
    return box


def _forget(key: str) -> None:
    st.session_state.pop(key, None)
    st.session_state.pop(f"{key}_toasted", None)


def extras_inputs(room: Room, key_prefix: str, *, disabled: bool = False, placeholder: str = "Not known yet") -> None:
    """One input per question of the room's extras form, under `key_prefix + field key` in session state (phone
    booking asks them of a caller, Mismatches fills in what a booking lacks)."""
    for f in room.extras:
        key = f"{key_prefix}{f.key}"
        if f.kind == "int":
            st.number_input(
                f.label,
                min_value=f.min,
                max_value=f.max,
                value=None,
                step=1,
                key=key,
                disabled=disabled,
                placeholder=placeholder,
            )
        elif f.kind == "choice":
            st.selectbox(f.label, f.choices, index=None, key=key, disabled=disabled, placeholder=placeholder)
        else:
            st.text_input(f.label, key=key, disabled=disabled, placeholder=placeholder)


def extras_values(room: Room, key_prefix: str) -> dict[str, Any]:
    """What extras_inputs holds now, blanks left out."""
    values = {f.key: st.session_state.get(f"{key_prefix}{f.key}") for f in room.extras}
    return {k: v for k, v in values.items() if v is not None and str(v).strip() != ""}


def email_suggestion(key: str, *, disabled: bool = False) -> None:
    """Under the email field `key`: "Did you mean ava@gmail.com?" when what is typed looks mistyped (issue 12), with a
    button that puts the suggestion in the field. Nothing when it looks right."""
    better = suggest_email(str(st.session_state.get(key) or ""))
    if better is None:
        return
    # The address as code (every character shows, no mail link) on a line of its own: it fits a narrow column.
    st.warning(f"Did you mean this address?  \n`{better}`", icon=":material/spellcheck:")
    st.button(
        f"Use {better}",
        key=f"{key}_use_suggestion",
        icon=":material/check:",
        disabled=disabled,
        on_click=_use_suggestion,
        args=(key, better),
    )


def _use_suggestion(key: str, better: str) -> None:
    st.session_state[key] = better
