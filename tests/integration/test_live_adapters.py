"""PAYMENTS=stripe CALENDAR=google pointed at the local servers: the whole booking flow, a cancellation, a sync, and
every remediation run through the real SDKs over HTTP (localstripe behind its shim; the fake Calendar server).

Calendar failures are injected at the fake server (HTTP answers, batch parts); Stripe failures, which localstripe
cannot produce, by a thin test-only wrapper that raises before the real call (`Faulty`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services import booking as bk
from services.core.context import build_services
from services.gateways.faults import Faults
from services.reconciliation import findings as reconciliation_findings
from services.reconciliation import reconcile, remediate, sync
from services.rules.availability import holiday_name
from tests.fake_calendar import fake_calendar
from tests.integration.stripe_server import LocalStripe, localstripe, localstripe_server  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Faulty:
    """Test-only: the real Stripe adapter with `faults` in front of it (raises before the HTTP call)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.faults, self.mode = inner, Faults(), inner.mode

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.faults.before(name, "payments", **kwargs)
            result = attr(*args, **kwargs)
            self.faults.after(name, "payments", **kwargs)
            return result

        return call


@pytest.fixture
def live(tmp_path: Path, localstripe: LocalStripe) -> Iterator[Any]:  # noqa: F811
    from services.core.catalogue import load_catalogue
    from services.core.settings import PROJECT_ROOT, Settings

    rooms = load_catalogue(PROJECT_ROOT / "config" / "rooms.toml").rooms
    with fake_calendar(tmp_path, calendar_ids=[r.calendar_id for r in rooms]) as fake:
        settings = Settings(
            data_dir=tmp_path / "data",
            payments="stripe",
            stripe_secret_key="sk_test_roomdesk_local",
            stripe_api_base=localstripe.url,
            calendar="google",
            google_service_account_file=fake.key_file,
            google_api_root=fake.server.url,
            gateway_timeout_seconds=10.0,
        )
        svc = build_services(settings)
        svc.payments = Faulty(svc.payments)
        svc.fake = fake.server
        yield svc
        svc.engine.dispose()


def weekdays(svc: Any, n: int, *, start_in: int = 4) -> list[date]:
    """The next n open weekdays (no holidays or closures) from `start_in` days ahead."""
    out: list[date] = []
    d = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=start_in)
    while len(out) < n:
        if d.weekday() < 5 and not holiday_name(d, svc.policy) and d not in svc.catalogue.closure_map:
            out.append(d)
        d += timedelta(days=1)
    return out


def request(svc: Any, **kw: Any) -> bk.BookingRequest:
    from datetime import time

    kw.setdefault("room", "boardroom")
    kw.setdefault("dates", tuple(weekdays(svc, 1)))
    kw.setdefault("start", time(10))
    kw.setdefault("end", time(12))
    kw.setdefault("customer_name", "Live Test")
    kw.setdefault("customer_email", "live@example.org")
    kw["dates"] = tuple(kw["dates"])
    return bk.BookingRequest(**kw)


def pay(svc: Any, started: bk.StartResult) -> bk.ConfirmResult:
    """The customer pays (Stripe), then the webhook's work runs."""
    svc.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_visa")
    return bk.confirm_payment(svc, started.payment_intent)


def events_of(svc: Any, reference: str, room: str = "boardroom") -> list[dict]:
    cal = svc.catalogue.room(room).calendar_id
    items = svc.calendar.list_events(cal, private_property=f"booking_id={reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


def findings(svc: Any) -> dict[str, list[Any]]:
    sync.sync(svc)
    reconcile.reconcile(svc)
    out: dict[str, list[Any]] = {}
    for f in reconciliation_findings.open_findings(svc):
        out.setdefault(f.code, []).append(f)
    return out


def fix(svc: Any, code: str, action: str, **kw: Any) -> remediate.FixResult:
    """Run the finding's fix, then sync + reconcile: the finding is gone and nothing new appeared."""
    before = findings(svc)
    assert code in before, f"expected a {code} finding, got {sorted(before)}"
    result = remediate.run_action(svc, before[code][0].id, action, actor="manager@test", **kw)
    assert result.ok, result.message
    after = findings(svc)
    assert code not in after, after
    assert set(after) <= set(before), f"new findings after the fix: {set(after) - set(before)}"
    return result


# ------------------------------------------------------------------------------------------------ the flow


def test_booking_cancellation_and_sync_over_http(live: Any) -> None:
    svc = live
    days = weekdays(svc, 3)
    started = bk.start_booking(svc, request(svc, dates=days), actor="customer")
    pi = svc.payments.retrieve_payment_intent(started.payment_intent)
    assert pi["metadata"]["booking_id"] == started.reference and pi["amount"] == started.amount_cents
    svc.fake.log.clear()
    assert pay(svc, started).outcome == "confirmed"
    batches = [r for r in svc.fake.log if r.path.endswith("/batch/calendar/v3")]
    assert len(batches) == 1  # the three days' events went out in one batch request
    assert sorted(e["extendedProperties"]["private"]["booking_date"] for e in events_of(svc, started.reference)) == [
        d.isoformat() for d in days
    ]
    assert findings(svc) == {}
    # Cancel the last day (full refund at this notice), then the rest.
    last = bk.cancellation_quote(svc, started.booking_id)[-1][0]
    assert bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[last.id]).refund_cents > 0
    assert len(events_of(svc, started.reference)) == 2
    result = bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    charge = svc.payments.retrieve_payment_intent(started.payment_intent)["latest_charge"]
    assert charge["amount_refunded"] == started.amount_cents and result.problems == []
    assert events_of(svc, started.reference) == []
    assert findings(svc) == {}
    # A sync with nothing changed: one call per calendar plus one for Stripe.
    assert sync.sync(svc).calls == len(svc.catalogue.rooms) + 1


# ------------------------------------------------------------------------------------------------ remediations


def _paid_no_event(svc: Any) -> bk.StartResult:
    started = bk.start_booking(svc, request(svc), actor="customer")
    svc.fake.fail(403, method="POST", path=r".*/events", reason="forbidden")
    svc.payments.faults.fail("refund")
    assert pay(svc, started).outcome == "refund_failed"
    svc.payments.faults.clear()
    return started


def test_create_events_over_http(live: Any) -> None:
    started = _paid_no_event(live)
    fix(live, "paid_no_event", "create_events")
    assert len(events_of(live, started.reference)) == 1


def test_refund_over_http(live: Any) -> None:
    started = _paid_no_event(live)
    fix(live, "paid_no_event", "refund", reason="Slot lost", amount="full")
    assert live.payments.retrieve_payment_intent(started.payment_intent)["latest_charge"]["refunded"] is True


def test_cancel_partial_multiday_over_http(live: Any) -> None:
    started = bk.start_booking(live, request(live, dates=weekdays(live, 3)), actor="customer")
    live.fake.fail(403, method="POST", path=r".*/events", reason="forbidden", times=1)  # one batch part fails
    live.fake.fail(403, method="DELETE", reason="forbidden", times=10)
    live.payments.faults.fail("refund")
    pay(live, started)
    live.payments.faults.clear()
    live.fake._faults.clear()
    fix(live, "partial_multiday", "cancel")
    assert events_of(live, started.reference) == []


def test_delete_orphan_events_over_http(live: Any) -> None:
    started = bk.start_booking(live, request(live), actor="customer")
    pay(live, started)
    live.fake.fail(403, method="DELETE", reason="forbidden")
    assert bk.cancel_booking(live, started.booking_id, actor="frontdesk").problems
    fix(live, "orphan_event", "delete_events")
    assert events_of(live, started.reference) == []


def test_confirm_stale_payment_over_http(live: Any) -> None:
    started = bk.start_booking(live, request(live, channel="phone"), actor="frontdesk")
    live.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_visa")
    real = datetime.now(UTC)
    live.clock = lambda: real + timedelta(minutes=20)  # the webhook never came
    fix(live, "stale_payment", "confirm_payment")
    assert len(events_of(live, started.reference)) == 1


def test_resend_confirmation_over_http(live: Any) -> None:
    live.mail.faults.fail("send")
    started = bk.start_booking(live, request(live), actor="customer")
    pay(live, started)
    fix(live, "missing_confirmation", "resend_confirmation")


def test_fill_extras_patches_the_events_over_http(live: Any) -> None:
    started = bk.start_booking(live, request(live, room="sonic-studio", channel="phone"), actor="frontdesk")
    pay(live, started)
    extras = {"show_name": "Night Shift", "set_choice": "Podcast table"}
    fix(live, "missing_extras", "fill_extras", extras=extras)
    (event,) = events_of(live, started.reference, room="sonic-studio")
    assert "Night Shift" in event["description"]


def test_recreate_mismatched_event_over_http(live: Any) -> None:
    started = bk.start_booking(live, request(live), actor="customer")
    pay(live, started)
    (event,) = events_of(live, started.reference)
    moved = {
        k: {**event[k], "dateTime": event[k]["dateTime"].replace("T10:", "T13:").replace("T12:", "T15:")}
        for k in ("start", "end")
    }
    live.calendar.patch_event(live.catalogue.room("boardroom").calendar_id, event["id"], moved)
    fix(live, "event_mismatch", "recreate_events")
    (event,) = events_of(live, started.reference)
    assert "T10:00:00" in event["start"]["dateTime"]


def test_manual_event_deleted_and_acknowledged_over_http(live: Any) -> None:
    day = weekdays(live, 1)[0]
    tz = live.settings.tz
    from datetime import time

    def staff_event(hour: int) -> None:
        live.calendar.insert_event(
            live.catalogue.room("gallery").calendar_id,
            {
                "summary": "Staff",
                "start": {"dateTime": datetime.combine(day, time(hour), tzinfo=tz).isoformat()},
                "end": {"dateTime": datetime.combine(day, time(hour + 1), tzinfo=tz).isoformat()},
            },
        )

    staff_event(9)
    fix(live, "manual_event", "delete_events", note="Moved to the internal calendar")
    staff_event(14)
    fix(live, "manual_event", "acknowledge", note="Cleaners, agreed")


def test_cancel_full_refund_on_a_holiday_over_http(live: Any) -> None:
    day = weekdays(live, 1)[0]
    started = bk.start_booking(live, request(live, dates=[day]), actor="customer")
    pay(live, started)
    live.catalogue = live.catalogue.model_copy(
        update={"closures": (*live.catalogue.closures, type(live.catalogue.closures[0])(date=day, reason="Flood"))}
    )
    fix(live, "holiday_booking", "cancel_full_refund")
    charge = live.payments.retrieve_payment_intent(started.payment_intent)["latest_charge"]
    assert charge["amount_refunded"] == started.amount_cents


def test_refund_notice_for_an_old_system_refund_over_http(live: Any) -> None:
    day = weekdays(live, 1)[0]
    pi = live.payments.create_payment_intent(
        amount_cents=9000,
        currency="cad",
        metadata={
            "room": "boardroom",
            "booking_dates": day.isoformat(),
            "booking_time": "10:00-12:00",
            "customer_name": "Old System",
            "customer_email": "old@example.org",
        },
        idempotency_key="legacy-1",
    )
    live.payments.confirm_payment_intent(pi["id"], payment_method="pm_card_visa")
    live.payments.refund(pi["id"], amount_cents=9000, reason="Gate 2 conflict", idempotency_key="legacy-1-refund")
    fix(live, "refund_no_event", "send_refund_notice")
    assert [m["kind"] for m in live.mail.messages()] == ["refund"] or live.mail.messages()


def test_settings_connection_checks_over_http(live: Any) -> None:
    from services.ops import health

    checks = health.check_connections(live)
    assert [(c.area, c.name) for c in checks if c.ok is False] == [("Stripe", "Webhook secret")]  # not set here
    assert sum(c.name == "Calendar writable" and c.ok is True for c in checks) == 7
    # A calendar no longer shared with the service account is named, with what to do.
    live.fake.unshare(live.catalogue.room("gallery").calendar_id, "room-desk@room-desk-test.iam.gserviceaccount.com")
    bad = {(c.area, c.name): c.detail for c in health.check_connections(live) if c.ok is False}
    assert "share the room calendar" in bad[("Gallery", "Calendar readable")]
