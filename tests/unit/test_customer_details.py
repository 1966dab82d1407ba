"""Correcting a booking's customer details (issue 12): only what is given changes, held to a new booking's checks,
audited with before and after, refused on a booking that is over or busy, and the room calendars follow."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, EmailOutbox
from services import booking as bk
from services.booking.lease import release, try_acquire
from services.core.errors import BookingBusy, InvalidState, ValidationError
from services.web import customer

ACTOR = "dana@venue.example"
TWO_DAYS = (date(2026, 3, 9), date(2026, 3, 10))
SONIC_EXTRAS = {"show_name": "Night Shift", "set_choice": "Podcast table"}


def confirmed(svc: Any, booking_request: Any, **kw: Any) -> Any:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="customer").outcome == "confirmed"
    return started


def booking(svc: Any, booking_id: int) -> Booking:
    with svc.session() as s:
        found = s.get(Booking, booking_id)
        assert found is not None
        return found


def audit_rows(svc: Any, booking_id: int, action: str) -> list[dict[str, Any]]:
    with svc.session() as s:
        rows = s.exec(
            select(AuditLog).where(AuditLog.booking_id == booking_id, AuditLog.action == action).order_by(AuditLog.id)
        )
        return [{"actor": r.actor, **r.payload} for r in rows]


def live_events(svc: Any, reference: str, calendar_id: str = "boardroom@group.calendar.google.com") -> list[dict]:
    items = svc.calendar.list_events(calendar_id, private_property=f"booking_id={reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


@pytest.mark.parametrize(
    ("field", "value", "column", "stored"),
    [
        ("name", "  Ava Tran ", "customer_name", "Ava Tran"),
        ("email", " Ava@GMAIL.com", "customer_email", "ava@gmail.com"),
        ("phone", "604 555 0199", "customer_phone", "604 555 0199"),
        ("phone", "", "customer_phone", ""),
        ("party_size", 12, "party_size", 12),
        ("notes", "Needs the ramp at the side door", "notes", "Needs the ramp at the side door"),
    ],
)
def test_each_field_changes_alone_and_is_audited_with_before_and_after(
    svc: Any, booking_request: Any, field: str, value: Any, column: str, stored: Any
) -> None:
    started = bk.start_booking(svc, booking_request(channel="phone"), actor="customer")
    before = booking(svc, started.booking_id)

    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, **{field: value})

    after = booking(svc, started.booking_id)
    assert getattr(after, column) == stored
    others = [c for c in ("customer_name", "customer_email", "customer_phone", "party_size", "notes") if c != column]
    assert [getattr(after, c) for c in others] == [getattr(before, c) for c in others]
    assert result.changes == {field: (getattr(before, column), stored)}
    [row] = audit_rows(svc, started.booking_id, "booking.customer.updated")
    assert row["actor"] == ACTOR and row[field] == {"before": getattr(before, column), "after": stored}
    assert set(row) == {"actor", "message", field}


def test_extras_are_checked_against_the_rooms_form_then_saved(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(
        svc, booking_request(room="sonic-studio", channel="phone", party_size=3), actor="customer"
    )
    with pytest.raises(ValidationError) as err:
        bk.update_customer(svc, started.booking_id, actor=ACTOR, extras={"show_name": "", "set_choice": "Rave"})
    assert err.value.problems == [
        "Podcast or show name is required for the Sonic Studio",
        "Set choice must be one of: Podcast table, Band rehearsal, Voice-over booth",
    ]
    assert booking(svc, started.booking_id).extras == {}

    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, extras=SONIC_EXTRAS)
    assert booking(svc, started.booking_id).extras == {"show_name": "Night Shift", "set_choice": "Podcast table"}
    assert result.changes["extras"][0] == {}


def test_every_problem_is_listed_at_once_and_nothing_changes(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    with pytest.raises(ValidationError) as err:
        bk.update_customer(
            svc,
            started.booking_id,
            actor=ACTOR,
            name=" ",
            email="ava@gmail",
            phone="call me",
            party_size=15,
            notes="x" * 2001,
        )
    assert err.value.problems == [
        "Customer name is required",
        "A valid customer email is required: The part after the @-sign is not valid. It should have a period. "
        "Did you mean ava@gmail.com?",
        "Phone number looks wrong (digits, spaces, + - ( ) only)",
        "The Boardroom holds at most 14 people",
        "Notes are too long (2000 characters at most, 2001 given)",
    ]
    b = booking(svc, started.booking_id)
    assert (b.customer_name, b.customer_email, b.customer_phone) == ("Ava Nguyen", "ava@example.org", "604-555-0101")
    assert audit_rows(svc, started.booking_id, "booking.customer.updated") == []


def test_a_confirmed_booking_s_events_follow_and_the_confirmation_can_go_again(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=TWO_DAYS, customer_email="ava@gmial.com")
    mailed_before = len(svc.mail.messages(booking_id=started.booking_id))

    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, name="Ava Tran", email="ava@gmail.com")

    assert result.offer_resend and not result.pay_link_follows
    assert result.events_updated == list(TWO_DAYS) and result.problems == []
    events = live_events(svc, started.reference)
    assert len(events) == 2
    for event in events:
        assert "Customer: Ava Tran <ava@gmail.com> 604-555-0101" in event["description"]
        assert "gmial" not in event["description"]
        assert event["summary"] == f"Boardroom — Ava Tran ({started.reference})"
    [updated] = audit_rows(svc, started.booking_id, "booking.event.updated")
    assert updated["days"] == [d.isoformat() for d in TWO_DAYS] and updated["fields"] == ["description", "summary"]
    assert len(svc.mail.messages(booking_id=started.booking_id)) == mailed_before  # nothing sent by the correction

    to, sent = bk.resend_confirmation(svc, started.booking_id, actor=ACTOR)
    assert (to, sent) == ("ava@gmail.com", True)
    mail = svc.mail.messages(booking_id=started.booking_id)[0]  # newest first
    assert mail["kind"] == "confirmation" and mail["to"] == "ava@gmail.com"
    bk.resend_confirmation(svc, started.booking_id, actor=ACTOR)  # a second click: nothing more is sent
    assert len(svc.mail.messages(booking_id=started.booking_id)) == mailed_before + 1
    assert [r["to"] for r in audit_rows(svc, started.booking_id, "booking.confirmation.resent")] == [
        "ava@gmail.com"
    ] * 2


def test_while_awaiting_payment_the_next_pay_link_goes_to_the_new_address(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(channel="phone", customer_email="ava@gmial.com"), actor="t")
    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, email="ava@gmail.com")
    assert result.pay_link_follows and not result.offer_resend and result.events_updated == []

    customer.send_pay_link(svc, started.booking_id, actor=ACTOR)
    [mail] = svc.mail.messages(booking_id=started.booking_id)
    assert mail["kind"] == "pay_link" and mail["to"] == "ava@gmail.com"


def test_a_day_whose_event_cannot_be_updated_is_reported_and_the_details_are_kept(
    svc: Any, booking_request: Any
) -> None:
    started = confirmed(svc, booking_request, dates=TWO_DAYS)
    svc.calendar.faults.fail("patch_event", nth=2)

    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, phone="604-555-0199")

    assert booking(svc, started.booking_id).customer_phone == "604-555-0199"
    assert result.events_updated == [TWO_DAYS[0]]
    assert len(result.problems) == 1 and result.problems[0].startswith("Tue 10 Mar's event could not be updated")


def test_only_live_days_events_are_touched(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=TWO_DAYS)
    second = [leg for leg in _legs(svc, started.booking_id) if leg.day == TWO_DAYS[1]]
    bk.cancel_booking(svc, started.booking_id, actor=ACTOR, leg_ids=[second[0].id])

    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, name="Ava Tran")

    assert result.events_updated == [TWO_DAYS[0]] and result.problems == []


@pytest.mark.parametrize("how", ["cancelled", "expired"])
def test_a_booking_that_is_over_is_refused(svc: Any, booking_request: Any, how: str) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    if how == "cancelled":
        bk.cancel_booking(svc, started.booking_id, actor=ACTOR)
    else:
        svc.clock.advance(hours=1)
        bk.expire_holds(svc)
    with pytest.raises(InvalidState, match="its customer details can no longer be changed"):
        bk.update_customer(svc, started.booking_id, actor=ACTOR, email="ava@gmail.com")
    assert booking(svc, started.booking_id).customer_email == "ava@example.org"


def test_a_booking_another_process_holds_is_busy(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    assert try_acquire(svc, started.booking_id)  # the webhook, say, is confirming it right now
    with pytest.raises(BookingBusy):
        bk.update_customer(svc, started.booking_id, actor=ACTOR, email="ava@gmail.com")
    assert booking(svc, started.booking_id).customer_email == "ava@example.org"
    release(svc, started.booking_id)
    assert bk.update_customer(svc, started.booking_id, actor=ACTOR, email="ava@gmail.com").changed


def test_the_same_values_change_nothing_and_write_nothing(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    result = bk.update_customer(svc, started.booking_id, actor=ACTOR, name="Ava Nguyen", email="AVA@example.org")
    assert not result.changed and result.changes == {}
    assert audit_rows(svc, started.booking_id, "booking.customer.updated") == []


def test_long_notes_are_kept_whole_but_the_audit_row_keeps_a_bounded_part(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    notes = "Set-up: " + "chairs in a circle, " * 80
    bk.update_customer(svc, started.booking_id, actor=ACTOR, notes=notes)
    assert booking(svc, started.booking_id).notes == notes.strip()
    [row] = audit_rows(svc, started.booking_id, "booking.customer.updated")
    assert row["notes"]["before"] == ""
    assert row["notes"]["after"].endswith(f"… ({len(notes.strip())} characters)") and len(row["notes"]["after"]) < 160


def test_resending_needs_a_confirmed_booking(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    with pytest.raises(InvalidState, match="not confirmed"):
        bk.resend_confirmation(svc, started.booking_id, actor=ACTOR)
    with svc.session() as s:
        assert s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == started.booking_id)).all() == []


def test_a_new_booking_is_held_to_the_same_email_check(svc: Any, booking_request: Any) -> None:
    with pytest.raises(ValidationError) as err:
        bk.start_booking(svc, booking_request(customer_email="ava..nguyen@example.org"), actor="customer")
    assert err.value.problems == [
        "A valid customer email is required: An email address cannot have two periods in a row."
    ]
    details, problems = bk.check_request(
        booking_request(customer_email=" Ava@Example.ORG "), svc.catalogue.room("boardroom")
    )
    assert problems == [] and details.email == "ava@example.org"


def _legs(svc: Any, booking_id: int) -> list[Any]:
    with svc.session() as s:
        return bk.booking_legs(s, booking_id)


def test_saving_the_details_as_booked_changes_nothing(svc: Any, booking_request: Any) -> None:
    """A new booking stores the email as a correction would (normalised), so saving the form unchanged is no edit."""
    started = confirmed(svc, booking_request, customer_email=" Ava@XN--BCHER-KVA.de ")
    stored = booking(svc, started.booking_id).customer_email
    assert stored == "ava@bücher.de"
    result = bk.update_customer(svc, started.booking_id, actor="frontdesk", email=stored, name="Ava Nguyen")
    assert result.changes == {} and not result.offer_resend
    assert audit_rows(svc, started.booking_id, "booking.customer.updated") == []


def test_a_group_size_no_longer_known_can_be_cleared(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, party_size=8)
    assert bk.update_customer(svc, started.booking_id, actor="frontdesk", name="Ava Nguyen").changes == {}
    assert booking(svc, started.booking_id).party_size == 8  # not named: left as it is
    result = bk.update_customer(svc, started.booking_id, actor="frontdesk", party_size=None)
    assert result.changes == {"party_size": (8, None)} and booking(svc, started.booking_id).party_size is None


# ---- issue 13: hostile input is refused by field, on both databases, before the database sees it ------------------

NUL_CASES = [
    ({"customer_name": "Ava\x00Nguyen"}, "Customer name contains a control character"),
    ({"customer_email": "ava@example.org\x00"}, "Customer email contains a control character"),
    ({"customer_phone": "604\x00555 0101"}, "Phone number contains a control character"),
    ({"notes": "front door\x00"}, "Notes contain a control character"),
    ({"notes": "bell\x07"}, "Notes contain a control character"),
    ({"customer_name": "Ava\nNguyen"}, "Customer name contains a control character"),
    (
        {"room": "sonic-studio", "party_size": 3, "extras": {**SONIC_EXTRAS, "show_name": "Night\x00Shift"}},
        "Extras: show_name contains",
    ),
]


@pytest.mark.parametrize(("fields", "problem"), NUL_CASES)
def test_control_characters_are_refused_naming_the_field(
    make_services: Any, db_url: str, booking_request: Any, fields: dict[str, Any], problem: str
) -> None:
    svc = make_services(db_url)
    with pytest.raises(ValidationError) as err:
        bk.start_booking(svc, booking_request(**fields), actor="customer")
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
    with svc.session() as s:
        assert s.exec(select(Booking)).first() is None


def test_notes_keep_their_line_breaks_and_tabs(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url)
    started = bk.start_booking(svc, booking_request(notes="Line one\r\nLine\ttwo"), actor="customer")
    assert booking(svc, started.booking_id).notes == "Line one\r\nLine\ttwo"


def test_a_correction_with_a_nul_is_refused_and_nothing_changes(
    make_services: Any, db_url: str, booking_request: Any
) -> None:
    svc = make_services(db_url)
    started = confirmed(svc, booking_request)
    with pytest.raises(ValidationError, match="Customer name contains a control character"):
        bk.update_customer(svc, started.booking_id, actor=ACTOR, name="Ava\x00")
    with pytest.raises(ValidationError, match="Notes contain a control character"):
        bk.update_customer(svc, started.booking_id, actor=ACTOR, notes="\x00")
    assert booking(svc, started.booking_id).customer_name == "Ava Nguyen"


@pytest.mark.parametrize(
    "address",
    [
        "frontdesk,attacker@example.com",
        "a@example.org, b@example.org",
        "<a@example.org>",
        "Ava <a@example.org>",
        "a@example.org;b@example.org",
        "a@b@example.org",
    ],
)
def test_one_address_only(svc: Any, booking_request: Any, address: str) -> None:
    """Issue 13 #7: a list of addresses passed, and the confirmation's envelope went to two recipients."""
    with pytest.raises(ValidationError) as err:
        bk.start_booking(svc, booking_request(customer_email=address), actor="customer")
    one = "Customer email must be one address only (name@example.com), without a name, brackets or a list"
    assert err.value.problems == [one]
    _, problems = bk.check_customer("Ava", address, "", None, None, svc.catalogue.room("boardroom"), "web", None)
    assert problems == [one]
