"""A hypothesis state machine over the whole system: bookings started on random rooms, days and times; payments
(good and declined cards); cancellations whole and partial; Stripe's webhooks delivered duplicated and out of order
(through services.web.webhooks or as signed POSTs to the API); holds expiring as the clock moves; and a random fault
armed for the calls of a step. After every step the faults are cleared and the retry path runs; then the invariants
must hold. Derandomized, so a run is reproducible."""

from __future__ import annotations

import hashlib
import hmac
import json
import time as wallclock
from datetime import date, time
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from services import booking as bk
from services.gateways.base import all_pages
from services.web import webhooks
from services.web.api import create_app
from tests.reliability.harness import WRITE_OPS, clear_faults, fresh_services, quietly, settle
from tests.reliability.invariants import violations
from tests.reliability.stats import COUNTS, FLOWS

SECRET = "whsec_reliability_state_machine"
ROOMS = ("boardroom", "quiet-room", "union-room")
DAYS = (date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 9), date(2026, 3, 10))


def faults(*ops: tuple[str, str]) -> st.SearchStrategy[Any]:
    """None, or a fault on one of the calls this step makes: (gateway, operation, mode, nth)."""
    return st.one_of(
        st.none(),
        st.sampled_from(ops).flatmap(
            lambda go: st.tuples(
                st.just(go[0]),
                st.just(go[1]),
                st.sampled_from(("before", "after", "timeout") if go[1] in WRITE_OPS else ("before",)),
                st.integers(1, 2),
            )
        ),
    )


PI = ("payments", "retrieve_payment_intent")
START_FAULTS = faults(("payments", "create_payment_intent"), ("calendar", "freebusy"))
PAY_FAULTS = faults(("payments", "confirm_payment_intent"))
CONFIRM_FAULTS = faults(
    ("payments", "confirm_payment_intent"),
    PI,
    ("calendar", "freebusy"),
    ("calendar", "insert_event"),
    ("calendar", "list_events"),
    ("mail", "send"),
)
CANCEL_FAULTS = faults(
    PI, ("payments", "refund"), ("payments", "cancel_payment_intent"), ("calendar", "delete_event"), ("mail", "send")
)
EXPIRE_FAULTS = faults(PI, ("payments", "cancel_payment_intent"), ("calendar", "insert_event"), ("mail", "send"))
CHANGE_FAULTS = faults(
    ("calendar", "freebusy"),
    ("calendar", "list_events"),
    ("calendar", "patch_event"),
    ("calendar", "insert_event"),
    ("calendar", "delete_event"),
    ("payments", "create_payment_intent"),
    ("payments", "refund"),
    ("mail", "send"),
)
PAY_CHANGE_FAULTS = faults(
    ("payments", "confirm_payment_intent"),
    PI,
    ("calendar", "freebusy"),
    ("calendar", "patch_event"),
    ("calendar", "insert_event"),
    ("payments", "refund"),
    ("mail", "send"),
)
CHANGE_KINDS = ("move", "later", "earlier", "shorter", "room", "drop", "add")


def sign(payload: bytes) -> str:
    t = int(wallclock.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Venue(RuleBasedStateMachine):
    bookings = Bundle("bookings")

    def __init__(self) -> None:
        super().__init__()
        self.svc = fresh_services(stripe_webhook_secret=SECRET)
        self.client = TestClient(create_app(self.svc, allowed_origins=[]), raise_server_exceptions=False)
        self.fault: Any = None
        COUNTS["hypothesis examples run"] += 1
        FLOWS.add("stateful")

    def teardown(self) -> None:
        self.client.close()
        self.svc.engine.dispose()

    # ---------------------------------------------------------------------------------- helpers

    def arm(self, fault: Any) -> None:
        if fault is not None:
            gateway, op, mode, nth = fault
            getattr(self.svc, gateway).faults.fail(op, nth=nth, mode=mode)

    def step(self, fault: Any, fn: Any) -> Any:
        """Run one step with the fault armed; a domain error is an answer, anything else is a crash."""
        COUNTS["hypothesis steps run"] += 1
        self.arm(fault)
        result = quietly(fn)
        COUNTS["faults injected"] += clear_faults(self.svc)
        return result

    def deliver(self, picks: list[int], via_api: list[bool]) -> None:
        """Deliver some of Stripe's recorded events, in the order (and with the repeats) drawn."""
        events = all_pages(lambda after: self.svc.payments.list_events(limit=100, starting_after=after))
        if not events:
            return
        for i, api in zip(picks, via_api, strict=False):
            event = events[i % len(events)]
            if api:
                payload = json.dumps(event).encode()
                r = self.client.post(
                    "/api/webhooks/stripe",
                    content=payload,
                    headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
                )
                assert r.status_code in (200, 503), (r.status_code, r.text)
                assert "Traceback" not in r.text
            else:
                row_id, needs = webhooks.record_event(self.svc, event)
                if needs:
                    quietly(lambda row_id=row_id: webhooks.process_event(self.svc, row_id, actor="stripe-webhook"))

    # ---------------------------------------------------------------------------------- rules

    @initialize()
    def start_clean(self) -> None:
        assert violations(self.svc) == []

    @rule(
        target=bookings,
        room=st.sampled_from(ROOMS),
        days=st.lists(st.sampled_from(DAYS), min_size=1, max_size=2, unique=True),
        start=st.integers(8, 14),
        hours=st.integers(2, 3),
        phone=st.booleans(),
        fault=START_FAULTS,
    )
    def start_booking(self, room: str, days: list[date], start: int, hours: int, phone: bool, fault: Any) -> Any:
        request = bk.BookingRequest(
            room=room,
            dates=tuple(days),
            start=time(start),
            end=time(start + hours),
            customer_name="Prop Test",
            customer_email=f"prop{start}{hours}@example.org",
            channel="phone" if phone else "web",
        )
        started = self.step(fault, lambda: bk.start_booking(self.svc, request, actor="customer"))
        COUNTS["hypothesis bookings started"] += isinstance(started, bk.StartResult)
        return started.booking_id if isinstance(started, bk.StartResult) else None

    @rule(
        booking=bookings,
        card=st.sampled_from(["pm_card_visa", "pm_card_visa", "pm_card_chargeDeclined"]),
        picks=st.lists(st.integers(0, 50), max_size=6),
        via_api=st.lists(st.booleans(), min_size=6, max_size=6),
        fault=PAY_FAULTS,
    )
    def pay_and_deliver_webhooks(
        self, booking: int | None, card: str, picks: list[int], via_api: list[bool], fault: Any
    ) -> None:
        if booking is None:
            return
        with self.svc.session() as s:
            from models.tables import Booking

            pi = s.get(Booking, booking).payment_intent_id
        if pi:
            self.step(fault, lambda: self.svc.payments.confirm_payment_intent(pi, payment_method=card))
        self.step(None, lambda: self.deliver(picks, via_api))

    @rule(booking=bookings, fault=CONFIRM_FAULTS)
    def sandbox_pay(self, booking: int | None, fault: Any) -> None:
        if booking is not None:
            self.step(fault, lambda: bk.sandbox_pay(self.svc, booking, actor="stripe-webhook"))

    @rule(booking=consumes(bookings), fault=CANCEL_FAULTS)
    def cancel_whole(self, booking: int | None, fault: Any) -> None:
        if booking is not None:
            self.step(fault, lambda: bk.cancel_booking(self.svc, booking, actor="frontdesk"))

    @rule(booking=bookings, which=st.integers(0, 1), fault=CANCEL_FAULTS)
    def cancel_one_day(self, booking: int | None, which: int, fault: Any) -> None:
        if booking is None:
            return
        from tests.reliability.flows import leg_ids

        ids = leg_ids(self.svc, booking)
        self.step(
            fault, lambda: bk.cancel_booking(self.svc, booking, actor="frontdesk", leg_ids=[ids[which % len(ids)]])
        )

    @rule(
        booking=bookings,
        kind=st.sampled_from(CHANGE_KINDS),
        day=st.sampled_from(DAYS),
        room=st.sampled_from(ROOMS),
        web=st.booleans(),
        fault=CHANGE_FAULTS,
    )
    def change_booking(self, booking: int | None, kind: str, day: date, room: str, web: bool, fault: Any) -> None:
        """A caller (or the customer online) changes a booking: a day moved, times moved or cut, another room, a day
        dropped or added. Refused changes (rules, taken, not paid) are answers, not failures."""
        if booking is None:
            return
        change = self._change(booking, kind, day, room)
        if change is not None:
            channel = "web" if web else "phone"
            done = self.step(
                fault, lambda: bk.change_booking(self.svc, booking, change, actor="frontdesk", channel=channel)
            )
            if isinstance(done, bk.ChangeResult):
                COUNTS["changes made or held"] += 1

    def _change(self, booking: int, kind: str, day: date, room: str) -> bk.Change | None:
        from models.tables import LegState

        with self.svc.session() as s:
            legs = [leg for leg in bk.booking_legs(s, booking) if leg.state == LegState.CONFIRMED]
        if not legs:
            return None
        first = legs[0]
        tz = self.svc.settings.tz
        start, end = first.starts_at.astimezone(tz).time(), first.ends_at.astimezone(tz).time()
        shift = {"later": 1, "earlier": -1}.get(kind)
        if kind == "move":
            return bk.Change(moves={first.id: day}) if first.id is not None else None
        if shift is not None and start.hour + shift >= 9 and end.hour + shift <= 17:
            return bk.Change(times=(start.replace(hour=start.hour + shift), end.replace(hour=end.hour + shift)))
        if kind == "shorter" and end.hour - start.hour > 2:
            return bk.Change(times=(start, end.replace(hour=end.hour - 1)))
        if kind == "room":
            return bk.Change(room=room)
        if kind == "drop" and len(legs) > 1 and first.id is not None:
            return bk.Change(drop=frozenset({first.id}))
        if kind == "add":
            return bk.Change(add=(day,))
        return None

    @rule(
        booking=bookings,
        kind=st.sampled_from(("later", "room", "add", "move")),
        day=st.sampled_from(DAYS),
        room=st.sampled_from(ROOMS),
        fault=PAY_CHANGE_FAULTS,
    )
    def change_and_pay_at_once(self, booking: int | None, kind: str, day: date, room: str, fault: Any) -> None:
        """The customer pays for their change straight away (a confirmed booking is paid for first)."""
        if booking is None:
            return
        self.step(None, lambda: bk.sandbox_pay(self.svc, booking, actor="stripe-webhook"))
        change = self._change(booking, kind, day, room)
        if change is None:
            return
        held = self.step(None, lambda: bk.change_booking(self.svc, booking, change, actor="customer", channel="web"))
        COUNTS["changes made or held"] += isinstance(held, bk.ChangeResult)
        if isinstance(held, bk.ChangeResult) and held.outcome == "awaiting_payment":
            self.pay_for_a_change(booking, fault)

    @rule(booking=bookings, fault=PAY_CHANGE_FAULTS)
    def pay_for_a_change(self, booking: int | None, fault: Any) -> None:
        if booking is not None:
            done = self.step(fault, lambda: bk.sandbox_pay_change(self.svc, booking, actor="stripe-webhook"))
            if isinstance(done, bk.ConfirmResult) and done.outcome == "change_applied":
                COUNTS["changes paid"] += 1

    @rule(booking=bookings)
    def withdraw_a_change(self, booking: int | None) -> None:
        if booking is not None:
            self.step(None, lambda: bk.withdraw_change(self.svc, booking, actor="frontdesk"))

    @rule(minutes=st.integers(5, 90), fault=EXPIRE_FAULTS)
    def time_passes_and_holds_expire(self, minutes: int, fault: Any) -> None:
        self.svc.clock.advance(minutes=minutes)
        self.step(fault, lambda: bk.expire_holds(self.svc))
        self.step(fault, lambda: bk.expire_change_holds(self.svc))

    @rule(
        picks=st.lists(st.integers(0, 50), min_size=1, max_size=8),
        via_api=st.lists(st.booleans(), min_size=8, max_size=8),
    )
    def redeliver_out_of_order(self, picks: list[int], via_api: list[bool]) -> None:
        self.step(None, lambda: self.deliver(picks, via_api))

    # ---------------------------------------------------------------------------------- after every step

    @invariant()
    def invariants_hold_after_the_retry_path(self) -> None:
        problems = settle(self.svc, advance=False)
        found = violations(self.svc)
        assert not found, "\n".join(found + [f"(fix that did not work: {p})" for p in problems])


Venue.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=14,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestVenue = Venue.TestCase
