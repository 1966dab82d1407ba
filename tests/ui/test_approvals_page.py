"""Refunds above the policy through the dashboard: asked for in the Cancel dialog, approved on Refund approvals by a
manager and a finance person, executed at the second approval; front desk never sees the approvals page."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from services.booking import BookingRequest, StartResult, cancellation_quote, sandbox_pay, start_booking
from services.booking.queries import search_bookings
from services.core.context import Services
from services.finance import override_queries, overrides

from .conftest import APP, TIMEOUT, free_slot

App = Callable[..., AppTest]
REASON = "The customer's flight was cancelled by the airline"


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def strict_booking(svc: Services, name: str, skip: int = 0) -> StartResult:
    """A paid two-hour Boardroom booking ($90) sold under a policy that gives 50 % back until 30 days before, so its
    policy refund is $45 whatever today's date (the dashboard runs on the wall clock)."""
    strict = dataclasses.replace(svc, settings=svc.settings.model_copy(update={"refund_bands": [(720, 100), (0, 50)]}))
    slot = free_slot(svc, "boardroom", hours=2, skip=skip)
    email = name.lower().replace(" ", ".") + "@example.org"
    started = start_booking(
        strict,
        BookingRequest(slot.room, (slot.day,), slot.start, slot.end, name, email, channel="phone"),
        actor="frontdesk@sandbox",
    )
    assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    return started


def _leg_ids(svc: Services, started: StartResult) -> list[int]:
    return [leg.id for leg, _ in cancellation_quote(svc, started.booking_id) if leg.id is not None]


def refunds(svc: Services, started: StartResult) -> list[int]:
    return [r["amount"] for r in svc.payments.list_refunds(payment_intent_id=started.payment_intent)["data"]]


def ask_in_the_cancel_dialog(at: AppTest, dollars: float | None = None) -> None:
    at.button(key="bk_cancel_open").click().run()
    quote = at.dataframe[-1].value  # the dialog's per-day policy quote
    assert list(quote["Refund now"]) == ["$47.25"] and quote["Policy band"][0].startswith("50 %")  # GST included
    at.toggle(key="bk_override_on").set_value(True).run()
    [amount] = at.number_input
    assert amount.value == 94.5  # what is left to refund for the day ($90.00 + GST 5 %)
    if dollars is not None:
        amount.set_value(dollars)
    at.text_area(key="bk_override_reason").set_value(REASON).run()
    at.button(key="bk_override_go").click().run()
    assert not at.exception


def test_manager_asks_manager_and_finance_approve_and_it_executes(app: App, svc: Services) -> None:
    started = strict_booking(svc, "Olive Override")

    at = app("manager", page="pages/frontdesk/bookings.py", ref=started.reference)
    ask_in_the_cancel_dialog(at)
    assert "now waits for a manager's and a finance approval" in texts(at, "info")
    assert refunds(svc, started) == []
    assert search_bookings(svc, text=started.reference)[0]["status"] == "CONFIRMED"
    [mine] = override_queries.list_overrides(svc, booking_id=started.booking_id)
    [listed] = [d.value for d in at.dataframe if "Requested" in d.value.columns]  # "Refunds above the policy"
    assert list(listed["Status"]) == ["Waiting for manager and finance"] and list(listed["Requested"]) == ["$94.50"]

    queue = app("manager", page="pages/finance/approvals.py")
    card = texts(queue, "markdown")
    assert f"**#{mine.id} · [{started.reference}](/bookings?ref={started.reference})** · Boardroom" in card
    assert "Policy refund **$47.25** · requested **$94.50** · :orange[**+$47.25** over the policy]" in card
    assert "Manager: waiting · :orange[:material/hourglass_top:] Finance: waiting" in card
    assert "Asked by manager@sandbox" in texts(queue, "caption")
    queue.button(key=f"ap_approve_{mine.id}_manager").click().run()  # the requester may sign their own slot
    assert "Approved as manager. It now waits for the finance approval." in texts(queue, "info")
    again = queue.button(key=f"ap_approve_{mine.id}_manager")
    assert again.disabled and "You already approved" in str(again.help)
    assert refunds(svc, started) == []

    finance = app("finance", page="pages/finance/approvals.py")
    go = finance.button(key=f"ap_approve_{mine.id}_finance")
    assert go.label == "Approve and refund $94.50" and not go.disabled
    go.click().run()
    assert not finance.exception
    assert f"Override #{mine.id} executed: cancelled {started.reference}" in texts(finance, "success")
    assert refunds(svc, started) == [9450]
    assert search_bookings(svc, text=started.reference)[0]["status"] == "CANCELLED"
    assert not [b for b in finance.button if b.key and b.key.startswith(f"ap_approve_{mine.id}")]
    decided = finance.dataframe[0].value
    row = decided[decided["#"] == mine.id].iloc[0]
    assert (row["Outcome"], row["Refunded"], row["Approved by"]) == (
        "Executed",
        "$94.50",
        "manager@sandbox, finance@sandbox",
    )


def test_front_desk_asks_sees_it_waiting_and_withdraws_it(app: App, svc: Services) -> None:
    started = strict_booking(svc, "Fern Frontdesk", skip=1)
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=started.reference)
    ask_in_the_cancel_dialog(at, dollars=60.0)
    assert "refunding $60.00 for" in texts(at, "info")
    [mine] = override_queries.list_overrides(svc, booking_id=started.booking_id)
    at.button(key=f"bk_withdraw_{mine.id}").click().run()
    assert f"Override #{mine.id} withdrawn" in texts(at, "info")
    assert override_queries.list_overrides(svc, booking_id=started.booking_id)[0].row.status == "withdrawn"
    assert refunds(svc, started) == []


def test_finance_rejects_with_a_note(app: App, svc: Services) -> None:
    started = strict_booking(svc, "Rex Rejected", skip=2)
    asked = overrides.request_override(
        svc,
        started.booking_id,
        leg_ids=_leg_ids(svc, started),
        refund_cents=9000,
        reason=REASON,
        actor="manager@sandbox",
    )
    at = app("finance", page="pages/finance/approvals.py")
    at.button(key=f"ap_reject_{asked.override_id}").click().run()
    assert "Say why it is rejected" in texts(at, "error")  # no note: refused, still waiting
    at.text_input(key=f"ap_note_{asked.override_id}").set_value("The policy was read to the customer").run()
    at.button(key=f"ap_reject_{asked.override_id}").click().run()
    assert f"Override #{asked.override_id} rejected." in texts(at, "info")
    assert override_queries.list_overrides(svc, booking_id=started.booking_id)[0].row.status == "rejected"
    assert refunds(svc, started) == []


def test_front_desk_cannot_open_the_approvals_page(app: App, svc: Services) -> None:
    at = app("frontdesk")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/finance/approvals.py")
    # The page file run on its own, skipping the navigation: its own guard stops it.
    direct = AppTest.from_file(APP.replace("app.py", "pages/finance/approvals.py"), default_timeout=TIMEOUT)
    direct.session_state["role"] = "frontdesk"
    direct.run()
    assert "not available to Front desk" in texts(direct, "error")
    assert not direct.title and not direct.button
