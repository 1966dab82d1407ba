"""Issue 14 §2 through AppTest: a fix's button, its dialog and what it does say the same thing; a dispute says what the
customer told their bank and links to its page on Disputes; a fix's outcome and the rows it made stay in view; a
booking's timeline reads as sentences and its header lists only the days still booked."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, time, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from models.tables import Finding
from services.booking import BookingRequest, StartResult, cancel_booking, quote, sandbox_pay, start_booking
from services.booking.queries import booking_detail
from services.core.context import Services
from services.reconciliation import reconcile
from services.reconciliation.findings import dispute_id, dispute_reasons, get_finding, open_findings
from services.reconciliation.sync import sync
from services.rules.fmt import day_label

App = Callable[..., AppTest]
MISMATCHES = "pages/reconcile/mismatches.py"
BOOKINGS = "pages/frontdesk/bookings.py"
RAW_CODE = re.compile(r"\b[a-z]+(?:_[a-z]+)*\.[a-z_]+\b")  # hold.created, payment_intent.succeeded…


def texts(at: AppTest, *kinds: str) -> str:
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def refresh(svc: Services) -> None:
    sync(svc, actor="test")
    reconcile.reconcile(svc, actor="test")


def one(svc: Services, code: str, booking_id: int | None = None) -> Finding:
    found = [f for f in open_findings(svc, codes=[code]) if booking_id is None or f.booking_id == booking_id]
    assert found, f"no open {code} finding"
    return found[0]


def two_free_days(svc: Services, room: str, start: time, end: time) -> tuple[date, date]:
    """Two consecutive weekdays, at least three days ahead, when `room` is free `start`–`end` on both."""
    day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=3)
    for _ in range(60):
        day += timedelta(days=1)
        pair = (day, day + timedelta(days=1))
        if pair[1].weekday() < 5 and quote(svc, BookingRequest(room, pair, start, end, "x", "x@example.org")).available:
            return pair
    raise AssertionError("no two free days in the sandbox")


def two_day_booking(svc: Services, email: str, room: str = "workshop") -> StartResult:
    days = two_free_days(svc, room, time(9), time(11))
    started = start_booking(
        svc,
        BookingRequest(room, days, time(9), time(11), "Tess Twoday", email, channel="phone"),
        actor="frontdesk@sandbox",
    )
    assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    return started


@pytest.fixture(scope="module")
def synced(svc: Services) -> Services:
    refresh(svc)
    return svc


def open_finding(app: App, finding: Finding) -> AppTest:
    at = app("manager", page=MISMATCHES, finding=str(finding.id))
    assert not at.exception
    return at


def fix_buttons(at: AppTest) -> dict[str, str]:
    return {str(b.key).removeprefix("mm_do_"): b.label for b in at.button if str(b.key).startswith("mm_do_")}


# ------------------------------------------------------------------------------------------------ partial_multiday


def test_a_never_confirmed_multiday_booking_is_refunded_in_full_as_its_button_and_dialog_say(
    app: App, synced: Services
) -> None:
    finding = one(synced, "partial_multiday")  # the demo's: day 3's event failed, then its clean-up and refund
    booking_id = finding.booking_id or 0
    assert booking_detail(synced, booking_id, live=False).booking.status == "FAILED"
    at = open_finding(app, finding)
    label = fix_buttons(at)["cancel"]
    assert label == "Refund it all and delete its events"  # not "policy refund": there is no policy to apply here

    at.button(key="mm_do_cancel").click().run()
    dialog = texts(at, "markdown")
    assert f"refund all of it, delete its {len(finding.event_ids)} events" in dialog
    assert "policy" not in dialog.lower()
    assert at.button(key="mm_go").label == label

    at.button(key="mm_go").click().run()
    assert not at.exception
    assert f"**{label}** — Refunded ${finding.amount_cents / 100:,.2f}" in texts(at, "success")
    detail = booking_detail(synced, booking_id)
    assert detail.refunded_cents == finding.amount_cents == detail.received_cents  # all of it, not a policy share
    assert not [leg for leg in detail.legs if detail.calendar_state(leg) == "left_over"]  # its events are gone
    assert get_finding(synced, finding.id or 0).status == "resolved"


def test_a_confirmed_multiday_booking_missing_a_day_is_cancelled_with_the_policy_refund_its_button_names(
    app: App, synced: Services
) -> None:
    started = two_day_booking(synced, "tess.policy@example.org")
    legs = booking_detail(synced, started.booking_id, live=False).legs
    room = synced.catalogue.room("workshop")
    synced.calendar.delete_event(room.calendar_id, legs[1].event_id or "")
    refresh(synced)
    finding = one(synced, "partial_multiday", started.booking_id)
    at = open_finding(app, finding)
    label = fix_buttons(at)["cancel"]
    assert label == "Cancel with the policy refund"

    at.button(key="mm_do_cancel").click().run()
    dialog = texts(at, "markdown")
    assert "with the policy refund of $" in dialog
    assert at.button(key="mm_go").label == label
    at.button(key="mm_go").click().run()
    assert not at.exception
    detail = booking_detail(synced, started.booking_id, live=False)
    assert {leg.state for leg in detail.legs} == {"CANCELLED"}
    quoted = re.search(r"with the policy refund of (\$[\d,.]+)", dialog)
    assert quoted and f"refunded {quoted.group(1)}" in texts(at, "success")  # what the dialog quoted is what went back


# ------------------------------------------------------------------------------------------------ dispute_open


def test_a_dispute_says_the_customers_reason_in_words_and_opens_on_disputes(app: App, synced: Services) -> None:
    finding = one(synced, "dispute_open")
    dispute = dispute_id(finding)
    reason = dispute_reasons(synced)[dispute or ""]
    assert reason == "product_not_received"  # the demo's
    at = open_finding(app, finding)
    page = texts(at, "markdown")
    assert "Customer says they did not get the room they paid for" in page
    assert reason not in page  # Stripe's code is not what staff read
    answer = at.button(key="mm_answer_dispute")
    assert answer.label == "Answer it on Disputes" and answer.proto.type == "primary"  # first among the fixes

    listed = app("manager", page=MISMATCHES)
    summaries = list(listed.dataframe[0].value["Summary"])
    assert any("Customer says they did not get the room they paid for" in s for s in summaries)
    assert not any(reason in s for s in summaries)

    answer.click().run()
    assert at.title[0].value == "Disputes" and at.query_params["dispute"] == dispute
    assert f"{dispute} · {finding.booking_ref}" in texts(at, "subheader")  # that dispute, opened

    linked = app("finance", page="pages/finance/disputes.py", dispute=dispute)  # the link itself, as finance
    assert not linked.exception
    assert f"{dispute} · {finding.booking_ref}" in texts(linked, "subheader")


# ------------------------------------------------------------------------------------------------ after a fix


def test_a_fix_outcome_stays_until_dismissed_and_its_rows_are_not_hidden(app: App, synced: Services) -> None:
    finding = one(synced, "paid_no_event")
    assert not finding.event_ids
    at = open_finding(app, finding)
    sources = f"mm_sources_{finding.id}_"
    [group] = [g for g in at.button_group if str(g.key).startswith(sources)]
    group.set_value(["Stripe"]).run()  # looking at Stripe's rows only, before the fix
    assert set(at.table[0].value["Source"]) == {"Stripe"}

    at.button(key="mm_do_create_events").click().run()
    at.button(key="mm_go").click().run()
    assert not at.exception
    assert "**Create the missing events** — Created 1 event" in texts(at, "success")
    timeline = at.table[0].value
    what = list(timeline["What"])
    assert any(w.startswith("Calendar event created for ") for w in what)  # the fix's own rows show
    assert any(w == "Fix on Mismatches: create the missing events" for w in what)
    assert "Events now: 1 of 1 booked day" in texts(at, "markdown")  # not "none"

    at.run()  # any later rerun: the outcome stays …
    assert "Created 1 event" in texts(at, "success")
    at.button(key="mm_fix_dismiss").click().run()  # … until dismissed
    assert "Created 1 event" not in texts(at, "success")


# ------------------------------------------------------------------------------------------------ bookings


def test_a_bookings_timeline_reads_as_sentences(app: App, synced: Services) -> None:
    started = two_day_booking(synced, "tess.sentences@example.org", room="boardroom")
    legs = booking_detail(synced, started.booking_id, live=False).legs
    cancel_booking(synced, started.booking_id, actor="frontdesk@sandbox", leg_ids=[legs[1].id or 0], reason="Ill")
    refresh(synced)
    for reference in (started.reference, one(synced, "dispute_open").booking_ref):
        at = app("manager", page=BOOKINGS, ref=reference)
        what = [str(w) for w in at.table[0].value["What"]]
        assert what and not [w for w in what if RAW_CODE.search(w)], what
        assert not [w for w in what if w.startswith("booking.")]
    assert any(w.startswith("Slot held until ") for w in what)


def test_the_header_lists_only_the_days_still_booked(app: App, synced: Services) -> None:
    started = two_day_booking(synced, "tess.header@example.org", room="gallery")
    first, second = booking_detail(synced, started.booking_id, live=False).legs
    cancel_booking(synced, started.booking_id, actor="frontdesk@sandbox", leg_ids=[second.id or 0], reason="Ill")
    at = app("frontdesk", page=BOOKINGS, ref=started.reference)
    [line] = [c.value for c in at.caption if "Vancouver time" in str(c.value) and "booking by" in str(c.value)]
    booked, _, rest = str(line).partition(" · ")
    assert booked == day_label(first.day)
    assert rest.startswith(f"cancelled: ~~{day_label(second.day)}~~")


def test_selecting_a_booking_shows_it_instead_of_the_list_and_back_returns(
    app: App, synced: Services, paid_booking: StartResult
) -> None:
    at = app("frontdesk", page=BOOKINGS)
    at.text_input(key="bk_text").set_value(paid_booking.reference).run()
    table = at.dataframe[0]
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.query_params["ref"] == paid_booking.reference
    assert at.subheader[0].value.startswith(paid_booking.reference)  # the booking comes first under the search
    assert not [d for d in at.dataframe if "Reference" in d.value.columns]

    at.button(key="bk_back").click().run()
    assert "ref" not in at.query_params
    assert list(at.dataframe[0].value["Reference"]) == [paid_booking.reference]  # the list, nothing selected
    assert not at.subheader

    at.query_params["ref"] = paid_booking.reference
    at.run()
    at.text_input(key="bk_text").set_value("someone else").run()  # a new search goes back to the list
    assert "ref" not in at.query_params and not at.subheader
