"""Settings (admin): the venue configuration in force — rooms, extras questions, opening hours and booking rules,
refund and discount bands, closures and staff roles — edited one section at a time. Each section previews what its
Save changes (old → new) and why it cannot be saved yet; a Save writes the next version, audited field by field,
and every process takes it up within seconds. Bookings already made keep their own prices and policy. Then the
versions saved with the rooms.toml export, and the connections with a live check."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, session, widgets
from services.core.catalogue import Room
from services.core.errors import DomainError, ValidationError
from services.core.roles import ROLES
from services.core.venue_queries import export_toml, history, preview
from services.core.venue_state import VenueEdit, VenueState, discount_text, rule_value
from services.ops.health import modes
from services.rules.fmt import WEEKDAY_ABBREVIATIONS, day_label

svc = boot.services()
session.require_role("settings")
state: VenueState = svc.venue
s = state.settings
SAVED = "se_saved"  # (section, VenueSaved | DomainError) of the last Save, shown at the top until dismissed

SECTIONS = {
    "rooms": "Rooms",
    "extras": "Extras questions",
    "hours": "Hours & booking",
    "bands": "Refunds & discounts",
    "closures": "Closures",
    "roles": "Staff roles",
}


# --------------------------------------------------------------------------------------------- small conversions


def _plain(value: Any) -> Any:
    """A cell as plain Python: None for an empty cell (NaN, NA), numpy scalars unwrapped, text trimmed."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.strip() if isinstance(value, str) else value


def _cents(dollars: Any) -> int | None:
    value = _plain(dollars)
    if value is None:
        return None
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _iso_day(value: Any) -> str | None:
    """A date cell (a pandas Timestamp, a date, or text) as YYYY-MM-DD; None when empty."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value)[:10]


def _gen(section: str) -> int:
    return widgets.generation(f"se_{section}")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _editor(frame: pd.DataFrame, key: str, columns: Mapping[str, Any], **options: Any) -> pd.DataFrame:
    """A section's table: rows can be added and deleted; any edit puts away the last Save's outcome."""
    return st.data_editor(
        frame,
        key=key,
        on_change=_forget,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config=columns,
        **options,
    )


# --------------------------------------------------------------------------------------------- saving


def _save(section: str, edit: VenueEdit) -> None:
    """on_click: save the section; on success its editors start again from what is now in force."""
    note = str(st.session_state.get(f"se_note_{section}_{_gen(section)}", ""))
    actions.perform(SAVED, lambda: actions.desk().save_venue_config(edit, note=note), tag=section)
    if not isinstance(st.session_state[SAVED][1], DomainError):
        widgets.next_generation(f"se_{section}")


def _footer(section: str, edit: VenueEdit, label: str, *, hint: str = "") -> None:
    """What this section's Save would change (old → new), or why it cannot save yet; a note; the Save button — one
    row under the section, so the outcome of an edit is in view next to the button that saves it."""
    pv = preview(svc, edit)
    said, note, button = st.columns([5, 2, 1.5], vertical_alignment="bottom")
    with said:
        if pv.problems:
            st.error("**Fix before saving** —\n\n" + _bullets(pv.problems))
        elif pv.changes:
            st.info("**Saving will change** —\n\n" + _bullets(c.sentence for c in pv.changes))
        else:
            st.caption(f"Nothing changed yet.{' ' + hint if hint else ''}")
    note.text_input("Note (why)", key=f"se_note_{section}_{_gen(section)}", placeholder="e.g. 2027 prices")
    button.button(
        label,
        type="primary",
        icon=":material/save:",
        disabled=not pv.can_save,
        key=f"se_save_{section}",
        on_click=_save,
        args=(section, edit),
        width="stretch",
    )


def _outcome() -> None:
    """The last Save's outcome, at the top of the page (in view whichever section was saved)."""
    kept = st.session_state.get(SAVED)
    if not kept:
        return
    section, result = kept
    if isinstance(result, DomainError):
        box, close = st.columns([14, 1])
        with box:
            if isinstance(result, ValidationError):
                st.error(f"**{SECTIONS[section]} not saved** — please fix:\n\n" + _bullets(result.problems))
            else:
                actions.show_error(result, doing=f"{SECTIONS[section]} not saved")
        close.button("", icon=":material/close:", key="se_saved_dismiss", help="Dismiss", on_click=_forget)
        return
    lines = _bullets(c.sentence for c in result.changes)
    widgets.kept_outcome(
        "success",
        f"**Saved {SECTIONS[section].lower()} as version {result.version}** — in force now; bookings already made "
        f"keep their prices and policy.\n\n{lines}",
        forget=SAVED,
        icon=":material/check_circle:",
    )


def _bullets(lines: Iterable[str]) -> str:
    """Sentences as a Markdown list, each shown as typed (room names, reasons; "$" never opens a formula)."""
    return "\n".join(f"- {labels.literal(line)}" for line in lines)


def _forget() -> None:
    st.session_state.pop(SAVED, None)


# --------------------------------------------------------------------------------------------- sections


ROOM_COLUMNS = {
    "slug": st.column_config.TextColumn("Slug", required=True, help="The room's id in links and bookings: a-z, 0-9, -"),
    "name": st.column_config.TextColumn("Name", required=True),
    "price": st.column_config.NumberColumn("Price / h", format="$%.2f", step=0.01, required=True),
    "capacity": st.column_config.NumberColumn("Capacity", step=1, format="%d", required=True),
    "min_hours": st.column_config.NumberColumn("Min hours", step=0.25, format="%g", required=True),
    "deposit": st.column_config.NumberColumn(
        "Deposit",
        format="$%.2f",
        step=0.01,
        min_value=0,
        help="Damage deposit held on the customer's card (0: none). When it is held and released: rooms.toml",
    ),
    "discount_eligible": st.column_config.CheckboxColumn("Discount", default=False, help="Multi-day discount applies"),
    "bookable": st.column_config.CheckboxColumn("Bookable", default=True, help="Untick to stop selling the room"),
    # Calendar id and description are long: medium columns keep most of the table inside 1366 px (the description
    # scrolls into view; click a cell to read it whole while editing).
    "calendar_id": st.column_config.TextColumn(
        "Calendar id",
        required=True,
        width="medium",
        help="The room's Google Calendar (share it with the service account)",
    ),
    "description": st.column_config.TextColumn("Description", width="medium"),
    "was": None,  # the room a row started as (hidden): new rows have none
}


def _room_frame(rooms: tuple[Room, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "slug": r.slug,
                "name": r.name,
                "price": r.hourly_price_cents / 100,
                "capacity": r.capacity,
                "min_hours": r.min_hours,
                "deposit": r.deposit_cents / 100,
                "discount_eligible": r.discount_eligible,
                "bookable": r.bookable,
                "calendar_id": r.calendar_id,
                "description": r.description,
                "was": r.slug,
            }
            for r in rooms
        ]
    )


def _rooms_from(frame: pd.DataFrame, rooms: tuple[Room, ...]) -> tuple[dict[str, Any], ...]:
    """The edited table as rooms.toml rows: each existing room keeps what the table does not show (its extras, its
    agreement, its deposit's hold and claim hours); an emptied cell stays empty, so the check says the field is
    required (an emptied deposit is none)."""
    by_slug = {r.slug: r for r in rooms}
    out = []
    for row in _records(frame):
        was = by_slug.get(str(row.pop("was") or ""))
        merged: dict[str, Any] = was.model_dump(mode="json") if was else {}
        row["hourly_price_cents"] = _cents(row.pop("price"))
        row["deposit_cents"] = _cents(row.pop("deposit"))
        for key, value in row.items():
            if value is None or (value == "" and key != "description"):
                merged.pop(key, None)
            else:
                merged[key] = value
        out.append(merged)
    return tuple(out)


def rooms_section() -> None:
    st.caption(
        "Add a room on the last row; untick **Bookable** to stop selling one (a room with bookings cannot be "
        "removed). New prices apply to new bookings only."
    )
    rooms = state.stored.rooms
    edited = _editor(
        _room_frame(rooms),
        f"se_rooms_{_gen('rooms')}",
        ROOM_COLUMNS,
        height=widgets.fit_height(len(rooms) + 1, 360),
    )
    _footer(
        "rooms",
        VenueEdit(state.version, rooms=_rooms_from(edited, rooms)),
        "Save rooms",
        hint="Bookings already made keep their prices and policy whatever is saved.",
    )


EXTRA_COLUMNS = {
    "key": st.column_config.TextColumn("Key", required=True, help="a-z, 0-9 and _ (e.g. show_name)"),
    "label": st.column_config.TextColumn("Question", required=True, width="medium"),
    "kind": st.column_config.SelectboxColumn(
        "Answer", options=["text", "int", "choice"], default="text", required=True
    ),
    "required": st.column_config.CheckboxColumn("Required", default=True),
    "choices": st.column_config.TextColumn("Choices", help="For a choice: the options, separated by commas"),
    "min": st.column_config.NumberColumn("Min", step=1, format="%d", help="For a number: the smallest answer"),
    "max": st.column_config.NumberColumn("Max", step=1, format="%d", help="For a number: the largest answer"),
}


def _extras_frame(room: Room) -> pd.DataFrame:
    rows = [
        {
            "key": q.key,
            "label": q.label,
            "kind": q.kind,
            "required": q.required,
            "choices": ", ".join(q.choices),
            "min": q.min,
            "max": q.max,
        }
        for q in room.extras
    ]
    frame = pd.DataFrame(rows, columns=list(EXTRA_COLUMNS))
    return frame.astype({"key": str, "label": str, "kind": str, "required": bool, "choices": str, "min": "Int64"})


def _questions_from(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in _records(frame):
        choices = [c.strip() for c in str(row.pop("choices") or "").split(",") if c.strip()]
        question = {k: v for k, v in row.items() if v is not None}
        if choices:
            question["choices"] = choices
        for bound in ("min", "max"):
            if isinstance(question.get(bound), float):
                question[bound] = int(question[bound])
        out.append(question)
    return out


def extras_section() -> None:
    rooms = state.stored.rooms
    pick_col, help_col = st.columns([1, 2], vertical_alignment="bottom")
    slugs = [r.slug for r in rooms]
    first = next((i for i, r in enumerate(rooms) if r.extras), 0)  # open on a room that asks something
    slug = pick_col.selectbox(
        "Room", slugs, index=first, format_func=lambda x: state.stored.room(x).name, key="se_extras_room"
    )
    help_col.caption(
        "The questions the booking form asks for this room (phone booking and the customer's page). Party size is "
        "asked of every booking: do not ask it here."
    )
    room = state.stored.room(str(slug))
    edited = _editor(_extras_frame(room), f"se_extras_{room.slug}_{_gen('extras')}", EXTRA_COLUMNS)
    rows = [r.model_dump(mode="json") for r in rooms]
    for r in rows:
        if r["slug"] == room.slug:
            r["extras"] = _questions_from(edited)
    _footer(
        "extras",
        VenueEdit(state.version, rooms=tuple(rows)),
        "Save questions",
        hint="Bookings made keep the answers they were given.",
    )


def hours_section() -> None:
    step = s.slot_minutes * 60
    a, b, c = st.columns([1, 1, 2])
    opens: time = a.time_input(
        "Opens at", value=s.open_time, step=step, key=f"se_open_{_gen('hours')}", on_change=_forget
    )
    closes: time = b.time_input(
        "Closes at", value=s.close_time, step=step, key=f"se_close_{_gen('hours')}", on_change=_forget
    )
    days = c.multiselect(
        "Open days",
        list(range(7)),
        default=s.open_weekdays,
        format_func=lambda d: WEEKDAY_ABBREVIATIONS[d],
        key=f"se_days_{_gen('hours')}",
        on_change=_forget,
    )
    d, e, f, g = st.columns(4)
    numbers = {
        "buffer_minutes": d.number_input(
            "Buffer between bookings (min)",
            0,
            240,
            s.buffer_minutes,
            step=5,
            key=f"se_buffer_{_gen('hours')}",
            on_change=_forget,
        ),
        "min_notice_hours": e.number_input(
            "Minimum notice (hours)",
            0,
            24 * 60,
            s.min_notice_hours,
            key=f"se_notice_{_gen('hours')}",
            on_change=_forget,
        ),
        "max_days_ahead": f.number_input(
            "Furthest ahead (days)", 1, 3650, s.max_days_ahead, key=f"se_ahead_{_gen('hours')}", on_change=_forget
        ),
        "max_days_per_booking": g.number_input(
            "Days in one booking",
            1,
            366,
            s.max_days_per_booking,
            key=f"se_perbooking_{_gen('hours')}",
            on_change=_forget,
        ),
    }
    rules: dict[str, Any] = {
        "open_time": opens.strftime("%H:%M") if opens else None,
        "close_time": closes.strftime("%H:%M") if closes else None,
        "open_weekdays": list(days),
        **numbers,
    }
    _footer("hours", VenueEdit(state.version, rules=rules), "Save hours", hint="Bookings already made stay as booked.")


def _band_editor(rows: list[tuple[int, int]], names: tuple[str, str], key: str, helps: tuple[str, str]) -> list[Any]:
    frame = pd.DataFrame(rows, columns=list(names)).astype("Int64")
    columns = {
        n: st.column_config.NumberColumn(n, step=1, format="%d", required=True, help=h)
        for n, h in zip(names, helps, strict=True)
    }
    edited = _editor(frame, key, columns)
    return [[r[names[0]], r[names[1]]] for r in _records(edited)]


def bands_section() -> None:
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Cancellation refund per day**")
        refunds = _band_editor(
            s.refund_bands,
            ("Hours before the day", "Refund %"),
            f"se_refunds_{_gen('bands')}",
            ("Cancelled at least this long before the day starts…", "…refunds this share of the day's price"),
        )
        st.caption(f"Now: {rule_value(s, 'refund_bands')} Sold as policy version {s.refund_policy_version}.")
    with right:
        st.markdown("**Multi-day discount** (rooms marked Discount)")
        discounts = _band_editor(
            s.discount_bands,
            ("From days", "% off"),
            f"se_discounts_{_gen('bands')}",
            ("Bookings of at least this many days…", "…get this much off every day"),
        )
        st.caption(f"Now: {discount_text(s.discount_bands)}.")
    rules = {"refund_bands": refunds, "discount_bands": discounts}
    _footer(
        "bands",
        VenueEdit(state.version, rules=rules),
        "Save bands",
        hint="Bookings already made keep their prices and policy whatever is saved.",
    )


def closures_section() -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        frame = pd.DataFrame(
            [{"date": c.date, "reason": c.reason} for c in state.stored.closures], columns=["date", "reason"]
        ).astype({"date": "datetime64[s]", "reason": str})
        edited = _editor(
            frame,
            f"se_closures_{_gen('closures')}",
            {
                "date": st.column_config.DateColumn("Date", format="ddd D MMM YYYY", required=True),
                "reason": st.column_config.TextColumn("Reason (customers see it)", required=True, width="large"),
            },
        )
    with right:
        st.caption("Days the whole venue is closed: nothing can be booked on them, online or by phone.")
        if state.block_closures:
            st.markdown(
                "**Closed by a closure block** (Block a room; release it there):\n\n"
                + "\n".join(
                    f"- {day_label(c.date)} {c.date.year} — {labels.literal(c.reason)}" for c in state.block_closures
                )
            )
    closures = tuple({"date": _iso_day(r.get("date")), "reason": r.get("reason") or ""} for r in _records(edited))
    _footer(
        "closures",
        VenueEdit(state.version, closures=closures),
        "Save closures",
        hint="A day with bookings cannot be closed here: move or cancel them first.",
    )


def roles_section() -> None:
    by_label = {v: k for k, v in ROLES.items()}
    frame = pd.DataFrame(
        [{"email": e, "role": ROLES.get(r, r)} for e, r in sorted(state.staff_roles.items())], columns=["email", "role"]
    ).astype(str)
    left, right = st.columns([3, 2], gap="large")
    with left:
        edited = _editor(
            frame,
            f"se_roles_{_gen('roles')}",
            {
                "email": st.column_config.TextColumn("Work email", required=True, width="large"),
                "role": st.column_config.SelectboxColumn("Role", options=list(ROLES.values()), required=True),
            },
        )
    with right:
        origin = "STAFF_ROLES (the environment) until a version is saved" if state.is_seed else "saved on Settings"
        st.caption(
            f"Who may sign in (live mode) and with which role — {origin}. Once saved here, these roles replace "
            "STAFF_ROLES. An email not listed reaches no page; keep at least one admin."
        )
    roles = {str(r.get("email") or ""): by_label.get(str(r.get("role")), str(r.get("role"))) for r in _records(edited)}
    _footer("roles", VenueEdit(state.version, staff_roles=roles), "Save roles")


def versions_section() -> None:
    rows = history(svc)
    left, right = st.columns([3, 1], vertical_alignment="top")
    with right:
        st.download_button(
            "Download rooms.toml",
            export_toml(svc).encode(),
            file_name=f"rooms-v{state.version}.toml",
            mime="application/toml",
            icon=":material/download:",
            width="stretch",
        )
        st.caption(
            "The configuration in force in rooms.toml's format (the venue rules as comments): a backup, or "
            "ROOMS_FILE for a new install."
        )
    with left:
        if not rows:
            st.info("Nothing saved yet: config/rooms.toml and the environment are in force (the first-run seed).")
            return
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Version": r.version,
                        "Saved": labels.venue(svc, r.saved_at),
                        "By": r.actor,
                        "Note": r.note,
                        "Changed": " · ".join(r.changes),
                    }
                    for r in rows
                ]
            ),
            hide_index=True,
            width="stretch",
            height=widgets.fit_height(len(rows), 420),
            column_config={"Changed": st.column_config.TextColumn(width="large")},
        )


def connections_section() -> None:
    left, right = st.columns([1, 1], gap="large")
    with left:
        # The button and its outcome first, the modes under them: the result of a check is in view where it was asked.
        if st.button("Check connections", icon=":material/network_check:", type="primary"):
            bar, report = widgets.progress_bar("Checking…", say="Checking {}…")
            with actions.reporting("Checking the connections"):
                st.session_state["settings_checks"] = actions.desk().check_connections(progress=report)
            bar.empty()
        checks = st.session_state.get("settings_checks")
        if checks:
            bad = [c for c in checks if c.ok is False]
            if bad:
                st.error(f"{len(bad)} connection problem(s): fix them before taking live bookings.")
            else:
                st.success("Every connection works.")
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "Where": c.area,
                            "Check": c.name,
                            "Result": {True: "OK", False: "Problem", None: "Skipped"}[c.ok],
                            "Detail": c.detail,
                        }
                        for c in checks
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        st.dataframe(pd.DataFrame(modes(svc), columns=["Part", "Mode"]), hide_index=True, width="stretch")
    with right:
        rules = [
            (
                "Opening hours",
                f"{rule_value(s, 'open_time')}–{rule_value(s, 'close_time')}, {rule_value(s, 'open_weekdays')}",
            ),
            ("Buffer between bookings", rule_value(s, "buffer_minutes")),
            ("Booking window", f"{s.min_notice_hours} h to {s.max_days_ahead} days ahead"),
            ("Days in one booking", f"at most {s.max_days_per_booking}"),
            ("Unpaid hold", f"web {s.hold_minutes} min, phone {s.phone_hold_minutes // 60} h"),
            ("Cancellation policy", rule_value(s, "refund_bands")),
            ("Multi-day discount", discount_text(s.discount_bands)),
            (
                "Statutory holidays",
                f"{s.holiday_country}-{s.holiday_subdivision}" if s.observe_holidays else "not observed",
            ),
            ("Time zone / currency", f"{s.venue_timezone} / {s.currency}"),
        ]
        # A static table wraps long values (the cancellation policy) instead of cutting them off.
        st.table(pd.DataFrame(rules, columns=["Rule in force", "Value"]).set_index("Rule in force"))


# --------------------------------------------------------------------------------------------- the page

st.title("Settings")
if state.is_seed:
    st.caption(
        f"In force: the first-run seed — `{s.rooms_file.name}` and the environment. Saving any section writes "
        "version 1, which every process (dashboard, API, worker) uses from then on."
    )
else:
    note = f" — “{state.note}”" if state.note else ""
    st.caption(f"In force: version {state.version}, saved by {state.saved_by}{note}. Every process uses it.")
_outcome()

SECTION_VIEWS: Mapping[str, Callable[[], None]] = {
    "Rooms": rooms_section,
    "Extras questions": extras_section,
    "Hours & booking": hours_section,
    "Refunds & discounts": bands_section,
    "Closures": closures_section,
    "Staff roles": roles_section,
    "Versions & export": versions_section,
    "Connections": connections_section,
}
for tab, view in zip(st.tabs(list(SECTION_VIEWS)), SECTION_VIEWS.values(), strict=True):
    with tab:
        view()
