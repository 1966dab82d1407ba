"""The venue configuration edited on Settings (issue 14 §6): the highest saved version is in force in every process,
each save is validated like rooms.toml and the environment and audited field by field, and a booking already made
keeps its own prices and policy."""

from __future__ import annotations

import tomllib
from datetime import date, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from models.tables import AuditLog, BlockKind, Booking, BookingLeg, RoomBlock
from services import booking as bk
from services.core.catalogue import Catalogue, Venue, catalogue_toml, parse_catalogue
from services.core.errors import InvalidState, ValidationError
from services.core.venue import save_venue_config
from services.core.venue_queries import export_toml, history, preview
from services.core.venue_state import VenueEdit
from services.finance.receipts import booking_receipt_pdf
from tests.unit.test_receipts import pdf_text

ADMIN = "admin@venue.example"


def rooms_with(svc: Any, room: str, **changes: Any) -> tuple[dict[str, Any], ...]:
    """The rooms in force as rooms.toml rows, one of them changed."""
    rows = [r.model_dump(mode="json") for r in svc.venue.stored.rooms]
    for row in rows:
        if row["slug"] == room:
            row.update(changes)
    return tuple(rows)


def save(svc: Any, note: str = "", **sections: Any) -> Any:
    return save_venue_config(svc, VenueEdit(svc.venue.version, **sections), actor=ADMIN, note=note)


def paid(svc: Any, req: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, req, actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def settings_audit(svc: Any) -> list[AuditLog]:
    with svc.session() as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == "settings.changed").order_by(AuditLog.id)))


# --------------------------------------------------------------------------------------------- prices and bookings


def test_a_price_change_leaves_an_existing_booking_alone_and_prices_new_ones(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request())  # Boardroom, Wed 4 Mar 10:00–12:00 at $45/h
    receipt_before = pdf_text(booking_receipt_pdf(svc, started.booking_id)[1])
    ((_, refund_before),) = bk.cancellation_quote(svc, started.booking_id)
    assert started.amount_cents == 9000 and refund_before.refund_cents == 9000  # 49 h ahead: full refund

    saved = save(
        svc,
        note="2027 prices",
        rooms=rooms_with(svc, "boardroom", hourly_price_cents=5000),
        rules={"refund_bands": [[72, 100], [0, 0]]},
    )

    assert svc.catalogue.room("boardroom").hourly_price_cents == 5000 and saved.version == 1
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)))
    assert b is not None and b.amount_cents == 9000 and b.pricing_snapshot["hourly_cents"] == 4500
    assert [leg.price_cents for leg in legs] == [9000]
    # The refund follows the policy the booking was sold under (48 h → 100 %), not the new 72 h band.
    ((_, refund_after),) = bk.cancellation_quote(svc, started.booking_id)
    assert refund_after.refund_cents == 9000 and refund_after.percent == 100
    receipt_after = pdf_text(booking_receipt_pdf(svc, started.booking_id)[1])
    assert "$90.00" in receipt_after and "$100.00" not in receipt_after
    assert receipt_after.split("Issued")[1][40:] == receipt_before.split("Issued")[1][40:]
    # A new sale of the same slot is priced and sold under what is in force now.
    fresh = bk.quote(svc, booking_request(dates=(date(2026, 3, 5),)))
    assert fresh.quote.total_cents == 10000 and fresh.available
    new = paid(svc, booking_request(dates=(date(2026, 3, 5),), customer_email="bo@example.org"))
    with svc.session() as s:
        sold = s.get(Booking, new.booking_id)
    assert sold is not None and sold.amount_cents == 10000
    assert sold.policy_snapshot["bands"] == [[72, 100], [0, 0]] and sold.policy_snapshot["version"] != "2026-01"


def test_rules_in_force_change_what_can_be_booked(svc: Any, booking_request: Any) -> None:
    assert bk.quote(svc, booking_request(start=time(8, 0), end=time(10, 0))).available
    save(svc, rules={"open_time": "09:00", "buffer_minutes": 30, "open_weekdays": [0, 1, 2, 3, 4, 5]})
    assert svc.policy.open_time == time(9, 0) and svc.policy.buffer_minutes == 30
    early = bk.quote(svc, booking_request(start=time(8, 0), end=time(10, 0)))
    assert not early.available and any("09:00" in r for r in early.reasons)
    assert bk.quote(svc, booking_request(dates=(date(2026, 3, 7),))).available  # a Saturday, open now


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"rooms": ("union-room", {"capacity": 0})}, "Union Room (union-room), capacity: should be greater than 0"),
        ({"rooms": ("boardroom", {"hourly_price_cents": 0})}, "Boardroom (boardroom), hourly price: must be more"),
        ({"rooms": ("gallery", {"min_hours": 12})}, "Gallery (gallery), minimum hours: should be less than"),
        ({"rooms": ("workshop", {"slug": "Work Shop"})}, "Workshop (Work Shop), slug: use lower-case letters"),
        ({"rooms": ("gallery", {"calendar_id": "main-hall@group.calendar.google.com"})}, "is used by two rooms"),
        ({"rules": {"buffer_minutes": -5}}, "Buffer between bookings: should be greater than or equal to 0"),
        ({"rules": {"open_time": "18:00"}}, "Opening hours: the closing time must be after the opening time"),
        ({"rules": {"open_time": "08:10"}}, "Opening hours: 08:10 is not on the 15-minute grid"),
        ({"rules": {"open_weekdays": [7]}}, "Open days: weekdays are 0 (Monday) to 6 (Sunday)"),
        ({"rules": {"refund_bands": [[48, 50], [24, 100]]}}, "Refund bands: cancelling 24 h before would refund more"),
        ({"rules": {"discount_bands": [[1, 10]]}}, "Multi-day discount: 1 days → 10 %"),
        ({"closures": ({"date": "2026-12-24", "reason": "a"}, {"date": "2026-12-24", "reason": "b"})}, "listed twice"),
        ({"staff_roles": {"not an email": "admin"}}, "Staff roles, not an email:"),
        ({"staff_roles": {"dana@venue.example": "owner", "ann@venue.example": "admin"}}, "unknown role 'owner'"),
        ({"staff_roles": {"dana@venue.example": "frontdesk"}}, "keep at least one admin"),
    ],
)
def test_a_bad_value_is_a_sentence_naming_the_room_or_rule_and_the_field(
    svc: Any, sections: dict[str, Any], expected: str
) -> None:
    if "rooms" in sections:
        slug, changes = sections["rooms"]
        sections = {"rooms": rooms_with(svc, slug, **changes)}
    with pytest.raises(ValidationError) as err:
        save(svc, **sections)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert svc.venue.version == 0 and not settings_audit(svc)  # nothing saved, nothing audited
    assert any(expected in p for p in preview(svc, VenueEdit(0, **sections)).problems)  # the page shows it first


def test_an_emptied_field_is_required_not_kept(svc: Any) -> None:
    rows = list(rooms_with(svc, "boardroom"))
    rows[1] = {k: v for k, v in rows[1].items() if k != "capacity"}
    with pytest.raises(ValidationError, match=r"Boardroom \(boardroom\), capacity: Field required"):
        save(svc, rooms=tuple(rows))


def test_nothing_to_save_and_a_stale_edit_are_refused(svc: Any) -> None:
    with pytest.raises(InvalidState, match="Nothing to save"):
        save(svc, rules={"buffer_minutes": 15})
    stale = VenueEdit(0, rules={"buffer_minutes": 20})
    save(svc, rules={"buffer_minutes": 25})
    with pytest.raises(InvalidState, match=f"saved by {ADMIN} meanwhile"):
        save_venue_config(svc, stale, actor=ADMIN)
    assert svc.policy.buffer_minutes == 25


# --------------------------------------------------------------------------------------------- audit and history


def test_one_audit_row_per_changed_field_with_old_and_new(svc: Any) -> None:
    save(
        svc,
        note="Spring",
        rooms=rooms_with(svc, "boardroom", hourly_price_cents=5000, capacity=16),
        rules={"buffer_minutes": 20},
    )
    rows = settings_audit(svc)
    assert [r.payload["message"] for r in rows] == [
        "Boardroom hourly price $45.00 → $50.00",
        "Boardroom capacity 14 → 16",
        "Buffer between bookings: 15 min → 20 min",
    ]
    assert rows[0].payload["field"] == "rooms.boardroom.hourly_price_cents"
    assert (rows[0].payload["old"], rows[0].payload["new"]) == ("$45.00", "$50.00")
    assert {r.actor for r in rows} == {ADMIN} and {r.payload["version"] for r in rows} == {1}
    (v1,) = history(svc)
    assert (v1.version, v1.actor, v1.note, len(v1.changes)) == (1, ADMIN, "Spring", 3)


def test_rooms_added_removed_and_closures_are_each_one_row(svc: Any) -> None:
    rows = [r for r in rooms_with(svc, "gallery") if r["slug"] != "quiet-room"]
    rows.append(
        {
            "slug": "podcast-booth",
            "name": "Podcast Booth",
            "calendar_id": "podcast-booth@group.calendar.google.com",
            "hourly_price_cents": 3000,
            "capacity": 4,
        }
    )
    save(svc, rooms=tuple(rows), closures=({"date": "2026-12-26", "reason": "Boxing Day"},))
    said = [r.payload["message"] for r in settings_audit(svc)]
    assert said == [
        "Room added: Podcast Booth (podcast-booth), $30.00 an hour, up to 4",
        "Room removed: Quiet Room (quiet-room)",
        "Closure removed: Thu 24 Dec 2026 (Christmas Eve closure)",
        "Closure added: Sat 26 Dec 2026 — Boxing Day",
        "Closure removed: Thu 31 Dec 2026 (New Year's Eve closure)",
    ]
    assert svc.catalogue.closure_map == {date(2026, 12, 26): "Boxing Day"}


def test_a_new_room_can_be_booked_at_once_on_its_own_calendar(svc: Any, booking_request: Any) -> None:
    calendar = "podcast-booth@group.calendar.google.com"
    row = {"slug": "podcast-booth", "name": "Podcast Booth", "calendar_id": calendar, "hourly_price_cents": 3000}
    save(svc, rooms=(*rooms_with(svc, "gallery"), {**row, "capacity": 4}))
    started = paid(svc, booking_request(room="podcast-booth", party_size=3))
    assert started.amount_cents == 6000
    page = svc.calendar.list_events(calendar, time_min=svc.now(), time_max=svc.now() + timedelta(days=5))
    assert [e["extendedProperties"]["private"]["booking_id"] for e in page["items"]] == [started.reference]


# --------------------------------------------------------------------------------------------- rooms in use


def test_a_room_with_bookings_cannot_be_removed_only_made_not_bookable(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request())
    rows = tuple(r for r in rooms_with(svc, "boardroom") if r["slug"] != "boardroom")
    with pytest.raises(ValidationError, match="Boardroom has 1 booking: it cannot be removed — untick Bookable"):
        save(svc, rooms=rows)
    save(svc, rooms=rooms_with(svc, "boardroom", bookable=False))
    refused = bk.quote(svc, booking_request(dates=(date(2026, 3, 5),)))
    assert "The Boardroom is not open for booking" in refused.reasons


def test_a_calendar_id_cannot_change_under_future_bookings(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request())
    moved = rooms_with(svc, "boardroom", calendar_id="boardroom-2@group.calendar.google.com")
    with pytest.raises(ValidationError, match=r"Boardroom: the calendar id cannot change while 1 day from Wed 4 Mar"):
        save(svc, rooms=moved)
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert save(svc, rooms=moved).version == 1  # nothing to come on the old calendar: it may move


def test_a_booked_day_cannot_become_a_closure(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request())
    closing = ({"date": "2026-03-04", "reason": "Floors waxed"},)
    with pytest.raises(ValidationError, match=rf"Closures: Wed 4 Mar 2026 has bookings \({started.reference}\)"):
        save(svc, closures=closing)
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    save(svc, closures=closing)
    assert svc.catalogue.closure_map == {date(2026, 3, 4): "Floors waxed"}


# --------------------------------------------------------------------------------------------- every process


def test_another_process_sees_a_new_version_within_its_refresh(make_services: Any, db_url: str) -> None:
    writer = make_services(db_url)
    reader = make_services(db_url, data_dir=writer.settings.data_dir)
    ticks = [0.0]
    reader.venue_cache.monotonic = lambda: ticks[0]
    assert reader.catalogue.room("boardroom").hourly_price_cents == 4500
    save(writer, rooms=rooms_with(writer, "boardroom", hourly_price_cents=5200), rules={"max_days_ahead": 90})
    assert writer.catalogue.room("boardroom").hourly_price_cents == 5200  # the saving process: at once
    ticks[0] = 1.0
    assert reader.catalogue.room("boardroom").hourly_price_cents == 4500  # not asked again within 2 s
    ticks[0] = 2.5
    assert reader.catalogue.room("boardroom").hourly_price_cents == 5200
    assert reader.policy.max_days_ahead == 90 and reader.venue.version == 1


def test_a_closure_block_closes_the_day_for_quotes(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url)
    day = date(2026, 3, 4)
    assert bk.quote(svc, booking_request(dates=(day,))).available
    with svc.session() as s:
        s.add(
            RoomBlock(
                kind=BlockKind.CLOSURE,
                rooms=["boardroom"],
                first_day=day,
                last_day=day + timedelta(days=1),
                reason="Burst pipe",
                actor=ADMIN,
            )
        )
    svc.reload_venue()
    assert svc.catalogue.closure_map[day] == "Burst pipe" and day + timedelta(days=1) in svc.catalogue.closure_map
    refused = bk.quote(svc, booking_request(dates=(day,)))
    assert not refused.available and any("Burst pipe" in r for r in refused.reasons)
    assert date(2026, 3, 4) not in {c.date for c in svc.venue.stored.closures}  # not a catalogue closure to edit


def test_the_database_away_keeps_what_was_in_force(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    save(svc, rooms=rooms_with(svc, "boardroom", hourly_price_cents=5100))
    assert svc.catalogue.room("boardroom").hourly_price_cents == 5100

    def away() -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(svc.engine, "raw_connection", away)
    svc.reload_venue()
    assert svc.catalogue.room("boardroom").hourly_price_cents == 5100  # a warning in the log, the last state kept


# --------------------------------------------------------------------------------------------- staff roles


def test_staff_roles_come_from_the_environment_until_saved_then_from_settings(make_services: Any) -> None:
    svc = make_services(staff_roles={"dana@venue.example": "frontdesk", "ann@venue.example": "admin"})
    assert svc.staff_roles == {"dana@venue.example": "frontdesk", "ann@venue.example": "admin"}
    save(svc, staff_roles={"Dana@Venue.Example": "manager", "ann@venue.example": "admin"})
    assert svc.staff_roles == {"dana@venue.example": "manager", "ann@venue.example": "admin"}
    assert [r.payload["message"] for r in settings_audit(svc)] == [
        "Staff role of dana@venue.example Front desk → Manager"
    ]
    # A later save of another section keeps the saved roles, whatever STAFF_ROLES says.
    save(svc, rules={"buffer_minutes": 20})
    assert svc.staff_roles["dana@venue.example"] == "manager"


# --------------------------------------------------------------------------------------------- export


def test_the_export_round_trips_through_load_catalogue(svc: Any) -> None:
    save(svc, rooms=rooms_with(svc, "boardroom", hourly_price_cents=5000, description='Say "hi"\\ \ttab'))
    text = export_toml(svc)
    assert parse_catalogue(tomllib.loads(text)) == svc.venue.stored
    assert "#   BUFFER_MINUTES=15" in text and "#   REFUND_BANDS=[[48,100],[24,50],[0,0]]" in text
    assert "version 1" in text.splitlines()[0]


@given(
    name=st.text(min_size=1, max_size=40),
    text=st.text(max_size=80),
    choices=st.lists(st.text(max_size=10), max_size=3),
)
def test_the_writer_keeps_any_text(name: str, text: str, choices: list[str]) -> None:
    cat = Catalogue.model_validate(
        {
            "venue": Venue(name=name, address=text).model_dump(),
            "rooms": [
                {
                    "slug": "r",
                    "name": name,
                    "calendar_id": "cal@x",
                    "hourly_price_cents": 1,
                    "capacity": 1,
                    "min_hours": 0.25,
                    "description": text,
                    "extras": [{"key": "k", "label": "L", "kind": "choice", "choices": choices or ["a"]}],
                }
            ],
            "closures": [{"date": "2026-01-01", "reason": text}],
        }
    )
    assert parse_catalogue(tomllib.loads(catalogue_toml(cat, header=text))) == cat
