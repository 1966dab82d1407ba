"""Reconciliation: every finding code has a scenario that produces it and a near-miss that must not; matching records
how each event was linked; findings live across runs; sync is incremental and single-flight."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from models.tables import CalendarEventCache, Finding
from services import booking as bk
from services.ops.sandbox_load import load_dir
from services.reconciliation import cycle, detectors, findings, reconcile, sync

LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
WED, THU = date(2026, 3, 4), date(2026, 3, 5)


def run(svc: Any) -> dict[str, list[Finding]]:
    """Sync + reconcile; open findings by code."""
    sync.sync(svc)
    reconcile.reconcile(svc)
    out: dict[str, list[Finding]] = defaultdict(list)
    for f in findings.open_findings(svc):
        out[f.code].append(f)
    return dict(out)


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="webhook")
    return started


def manual(svc: Any, room: str, day: date, start: time, end: time, **extra: Any) -> None:
    tz = svc.settings.tz
    from datetime import datetime

    svc.calendar.insert_event(
        f"{room}@group.calendar.google.com",
        {
            "summary": "Staff",
            "start": {"dateTime": datetime.combine(day, start, tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.combine(day, end, tzinfo=tz).isoformat()},
            **extra,
        },
    )


# ------------------------------------------------------------------------------------------ clean data


def test_clean_data_has_no_findings(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request())
    paid(svc, booking_request(dates=[date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)], room="gallery"))
    sonic = booking_request(
        room="sonic-studio",
        agreement_version="2026-01",
        extras={"show_name": "Night Shift", "set_choice": "Podcast table"},
    )
    bk.sandbox_pay(svc, bk.start_booking(svc, sonic, actor="c").booking_id, actor="webhook")
    cancelled = paid(svc, booking_request(room="workshop"))
    bk.cancel_booking(svc, cancelled.booking_id, actor="frontdesk")
    unpaid = bk.start_booking(svc, booking_request(room="quiet-room"), actor="customer")
    assert unpaid.payment_intent
    assert run(svc) == {}


# ------------------------------------------------------------------------------------------ per code


def test_paid_no_event_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    svc.calendar.faults.fail("insert_event")
    svc.payments.faults.fail("refund")
    lost = paid(svc, booking_request())
    svc.calendar.faults.fail("insert_event")
    safe = paid(svc, booking_request(room="quiet-room"))  # same failure, but the auto-refund worked
    found = run(svc)
    assert [f.payment_intent for f in found["paid_no_event"]] == [lost.payment_intent]
    f = found["paid_no_event"][0]
    assert f.severity == "high" and f.amount_cents == lost.amount_cents and f.booking_ref == lost.reference
    assert f.actions[0] == "create_events" and f.dates == ["2026-03-04"]
    assert all(safe.payment_intent != x.payment_intent for fs in found.values() for x in fs)


def test_partial_multiday_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    days = [date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)]
    svc.calendar.faults.fail("insert_event", nth=3)
    svc.calendar.faults.fail("delete_event", times=10)
    svc.payments.faults.fail("refund")
    broken = paid(svc, booking_request(dates=days))
    svc.calendar.faults.clear()
    svc.payments.faults.clear()
    whole = paid(svc, booking_request(dates=days, room="gallery"))
    found = run(svc)
    (f,) = found["partial_multiday"]
    assert f.payment_intent == broken.payment_intent and "missing Wed 11 Mar" in f.summary
    assert len(f.event_ids) == 2
    assert whole.payment_intent not in {x.payment_intent for fs in found.values() for x in fs}


def test_orphan_event_after_a_refund_whose_delete_failed_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    orphan = paid(svc, booking_request())
    svc.calendar.faults.fail("delete_event")
    bk.cancel_booking(svc, orphan.booking_id, actor="frontdesk")
    tidy = paid(svc, booking_request(room="gallery"))
    bk.cancel_booking(svc, tidy.booking_id, actor="frontdesk")
    found = run(svc)
    (f,) = found["orphan_event"]
    assert f.payment_intent == orphan.payment_intent and "refunded" in f.summary and len(f.event_ids) == 1
    assert set(found) == {"orphan_event"}


def test_orphan_event_on_a_cancelled_day_of_a_multiday_booking(svc: Any, booking_request: Any) -> None:
    days = [date(2026, 3, 9), date(2026, 3, 10)]
    started = paid(svc, booking_request(dates=days))
    day_one = bk.cancellation_quote(svc, started.booking_id)[0][0]
    svc.calendar.faults.fail("delete_event")
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[day_one.id])
    (f,) = run(svc)["orphan_event"]
    assert "cancelled day(s) Mon 9 Mar" in f.summary


def test_double_booking_with_a_manual_event_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    booked = paid(svc, booking_request())  # Wed 10:00–12:00
    manual(svc, "boardroom", WED, time(12, 5), time(13))  # inside the 15-minute buffer
    manual(svc, "boardroom", WED, time(8), time(9, 45))  # exactly 15 minutes before: fine
    found = run(svc)
    (f,) = found["double_booking"]
    assert f.payment_intent == booked.payment_intent and "closer than 15 min" in f.summary
    assert len(found["manual_event"]) == 2  # both are still hand-made events on a bookable room


def test_manual_event_near_misses_transparent_and_past(svc: Any) -> None:
    manual(svc, "gallery", THU, time(9), time(10), transparency="transparent")
    manual(svc, "gallery", date(2026, 2, 25), time(9), time(10))  # already over
    manual(svc, "gallery", THU, time(13), time(14))
    (f,) = run(svc)["manual_event"]
    assert "Gallery Thu 5 Mar 13:00–14:00" in f.summary and f.actions == ["delete_events", "acknowledge"]


def test_stale_payment_after_n_minutes_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(channel="phone"), actor="frontdesk")
    svc.payments.confirm_payment_intent(started.payment_intent)
    svc.clock.advance(minutes=5)
    assert "stale_payment" not in run(svc)
    svc.clock.advance(minutes=11)
    (f,) = run(svc)["stale_payment"]
    assert f.payment_intent == started.payment_intent and "never processed" in f.summary
    assert f.actions[0] == "confirm_payment"


def test_dispute_open_shows_its_due_date(svc: Any, booking_request: Any) -> None:
    disputed = paid(svc, booking_request())
    paid(svc, booking_request(room="gallery"))
    svc.payments.open_dispute(disputed.payment_intent, due_in_days=7)
    (f,) = run(svc)["dispute_open"]
    assert f.payment_intent == disputed.payment_intent and "evidence due Mon 9 Mar" in f.summary


def test_missing_confirmation_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    silent = paid(svc, booking_request())
    paid(svc, booking_request(room="gallery"))
    (f,) = run(svc)["missing_confirmation"]
    assert f.payment_intent == silent.payment_intent and f.actions[0] == "resend_confirmation"


def test_missing_extras_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    bare = paid(svc, booking_request(room="sonic-studio", channel="phone"))
    paid(
        svc,
        booking_request(
            room="sonic-studio",
            dates=[THU],
            channel="phone",
            extras={"show_name": "Night Shift", "set_choice": "Voice-over booth"},
        ),
    )
    (f,) = run(svc)["missing_extras"]
    assert f.payment_intent == bare.payment_intent and "Podcast or show name" in f.summary


def test_holiday_booking_and_its_near_miss(make_services: Any, booking_request: Any) -> None:
    from tests.conftest import NOW

    svc = make_services(observe_holidays=False, now=NOW + timedelta(days=20))
    on_holiday = paid(svc, booking_request(dates=[date(2026, 4, 3)]))  # Good Friday
    paid(svc, booking_request(dates=[date(2026, 4, 2)]))
    svc.settings.__dict__["observe_holidays"] = True  # the venue now observes holidays
    svc.venue_cache.forget()
    (f,) = run(svc)["holiday_booking"]
    assert f.payment_intent == on_holiday.payment_intent and "Good Friday" in f.summary


def test_a_venue_that_does_not_observe_holidays_books_them_and_reconciliation_agrees(
    make_services: Any, booking_request: Any
) -> None:
    """OBSERVE_HOLIDAYS=false: Gate 1 takes Good Friday, so reconciliation must not call that booking a problem
    (it once asked the holiday table directly and flagged every such booking)."""
    from tests.conftest import NOW

    svc = make_services(observe_holidays=False, now=NOW + timedelta(days=20))
    good_friday = booking_request(dates=[date(2026, 4, 3)])
    assert bk.quote(svc, good_friday).reasons == []
    paid(svc, good_friday)
    assert run(svc).get("holiday_booking", []) == []
    svc.settings.__dict__["observe_holidays"] = True  # the same booking once the venue observes holidays
    svc.venue_cache.forget()
    assert "Fri 3 Apr: statutory holiday (Good Friday)" in bk.quote(svc, good_friday).reasons
    assert len(run(svc)["holiday_booking"]) == 1


def test_closure_added_after_booking_is_flagged(make_services: Any, booking_request: Any, tmp_path: Path) -> None:
    svc = make_services()
    closed = paid(svc, booking_request())
    rooms = tmp_path / "rooms.toml"
    rooms.write_text(svc.settings.rooms_file.read_text() + '\n[[closures]]\ndate = 2026-03-04\nreason = "Burst pipe"\n')
    reopened = make_services(data_dir=svc.settings.data_dir, rooms_file=rooms)
    reopened.clock = svc.clock
    (f,) = run(reopened)["holiday_booking"]
    assert f.payment_intent == closed.payment_intent and "Burst pipe" in f.summary


def test_refund_policy_mismatch_for_a_dashboard_refund_and_its_near_miss(svc: Any, booking_request: Any) -> None:
    generous = paid(svc, booking_request(dates=[date(2026, 3, 9)]))
    by_policy = paid(svc, booking_request(dates=[date(2026, 3, 9)], room="gallery"))
    svc.clock.advance(days=6)  # Sun 8 Mar: 25 h before the start → the policy refunds 50 %
    svc.payments.refund(
        generous.payment_intent, amount_cents=generous.amount_cents, reason="goodwill", idempotency_key="dashboard-1"
    )
    bk.cancel_booking(svc, by_policy.booking_id, actor="frontdesk")
    found = run(svc)
    (f,) = found["refund_policy_mismatch"]
    assert f.payment_intent == generous.payment_intent
    assert f.details["quote_cents"] == generous.amount_cents // 2


def test_amount_mismatch_for_a_local_booking(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    with svc.session() as s:
        from models.tables import Booking

        b = s.get(Booking, started.booking_id)
        b.pricing_snapshot = {**b.pricing_snapshot, "total_cents": started.amount_cents - 500}
    bk.sandbox_pay(svc, started.booking_id, actor="webhook")
    (f,) = run(svc)["amount_mismatch"]
    assert f.amount_cents == 500 and "charged $90.00, the price was $85.00" in f.summary


# ------------------------------------------------------------------------------------------ legacy data


def test_legacy_data_loaded_from_provider_json(svc: Any) -> None:
    report = load_dir(svc, LEGACY)
    assert report.problems == [] and report.stripe["payment_intent"] == 7 and sum(report.calendars.values()) == 5
    found = run(svc)
    codes = {code: sorted(f.payment_intent or f.event_ids[0] for f in fs) for code, fs in found.items()}
    assert codes == {
        "event_mismatch": ["pi_3LegacyWrongTime0003"],
        "amount_mismatch": ["pi_3LegacyOvercharge004"],
        "paid_no_event": ["pi_3LegacyOvercharge004"],
        "refund_no_event": ["pi_3LegacyRefunded00005"],
        "unparseable": ["legacy0broken0end0002", "pi_3LegacyBadDates0006"],
        "orphan_event": ["pi_3NeverSeenByStripe99"],
        # whole old bookings still ahead: the old system sent no confirmation, one sent by hand left no record
        "missing_confirmation": ["pi_3LegacyDescMatch0001", "pi_3LegacySlotMatch0002"],
    }
    # the gift-card payment carries no booking metadata: not a room booking, not a finding
    with svc.session() as s:
        methods = {e.event_id: (e.matched_pi, e.match_method) for e in s.exec(select(CalendarEventCache))}
    assert methods["legacy0desc0match0001"] == ("pi_3LegacyDescMatch0001", "description")
    assert methods["legacy0slot0match0001"] == ("pi_3LegacySlotMatch0002", "slot")
    assert methods["legacy0ghost0pay00001"] == (None, None)


def test_matching_prefers_private_properties(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request())
    run(svc)
    with svc.session() as s:
        (ev,) = list(s.exec(select(CalendarEventCache).where(CalendarEventCache.booking_id == started.reference)))
    assert (ev.matched_pi, ev.match_method) == (started.payment_intent, "private")


def test_bad_files_are_reported_not_fatal(svc: Any, tmp_path: Path) -> None:
    (tmp_path / "stripe").mkdir()
    (tmp_path / "calendar").mkdir()
    (tmp_path / "stripe" / "broken.json").write_text("{not json")
    (tmp_path / "stripe" / "odd.json").write_text('{"object": "list", "data": [{"object": "coupon", "id": "x"}]}')
    (tmp_path / "calendar" / "nobody@example.com.json").write_text('{"items": [{"summary": "no id"}]}')
    report = load_dir(svc, tmp_path)
    assert len(report.problems) == 4 and "broken.json: not readable JSON" in report.problems[0]


def test_every_finding_code_has_one_detector() -> None:
    assert list(detectors.DETECTORS) == list(findings.CODES)


# ------------------------------------------------------------------------------------------ lifecycle


def test_findings_resolve_by_themselves_and_keep_history(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    started = paid(svc, booking_request())
    (f,) = run(svc)["missing_confirmation"]
    assert reconcile.reconcile(svc).opened == 0  # seen again: still the same finding
    with svc.session() as s:
        from models.tables import EmailOutbox
        from services.notify import outbox

        row = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == started.booking_id)).one()
    assert row.id is not None and outbox.deliver(svc, row.id, now=svc.now())
    assert "missing_confirmation" not in run(svc)
    with svc.session() as s:
        old = s.get(Finding, f.id)
    assert old is not None and old.status == "resolved" and old.resolved_at == svc.now()


def test_acknowledged_findings_stay_acknowledged_with_the_note(svc: Any, booking_request: Any) -> None:
    manual(svc, "gallery", THU, time(13), time(14))
    (f,) = run(svc)["manual_event"]
    with pytest.raises(Exception, match="Write a note"):
        reconcile.acknowledge(svc, f.id, actor="manager@x", note=" ")
    reconcile.acknowledge(svc, f.id, actor="manager@x", note="Cleaners, agreed with the venue")
    assert "manual_event" not in run(svc)
    (ack,) = findings.open_findings(svc, include_acknowledged=True)
    assert (ack.status, ack.acknowledged_by, ack.note) == (
        "acknowledged",
        "manager@x",
        "Cleaners, agreed with the venue",
    )


def test_trend_records_each_run(svc: Any) -> None:
    manual(svc, "gallery", THU, time(13), time(14))
    run(svc)
    svc.clock.advance(hours=1)
    run(svc)
    points = findings.trend(svc)
    assert [(p["code"], p["open"]) for p in points] == [("manual_event", 1), ("manual_event", 1)]


# ------------------------------------------------------------------------------------------ sync


def test_sync_with_nothing_changed_costs_one_call_per_calendar_plus_one(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request())
    first = sync.sync(svc)
    assert first.stripe_objects > 0 and first.calendar_events == 1
    again = sync.sync(svc)
    assert (again.calls, again.stripe_objects, again.calendar_events) == (len(svc.catalogue.rooms) + 1, 0, 0)
    refunded = paid(svc, booking_request(room="gallery"))
    bk.cancel_booking(svc, refunded.booking_id, actor="frontdesk")
    changed = sync.sync(svc)
    assert changed.stripe_objects > 0 and changed.calendar_events == 1  # created then deleted: one change
    with svc.session() as s:
        from models.tables import StripeObjectCache

        refund = s.exec(select(StripeObjectCache).where(StripeObjectCache.object == "refund")).one()
        gone = s.exec(select(CalendarEventCache).where(CalendarEventCache.booking_id == refunded.reference)).one()
    assert refund.payment_intent == refunded.payment_intent and gone.status == "cancelled"


def test_expired_sync_token_falls_back_to_a_full_sync(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request())
    sync.sync(svc)
    svc.calendar.invalidate_sync_tokens()
    report = sync.sync(svc)
    assert len(report.full_resyncs) == len(svc.catalogue.rooms) and report.errors == []


def test_a_provider_outage_is_reported_and_the_rest_still_syncs(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request())
    svc.payments.faults.fail("list_events", times=5)
    report = sync.sync(svc)
    assert report.errors == ["Stripe: Stripe is unavailable (injected fault)"] and report.calendar_events == 1
    assert findings.last_sync(svc) is None  # not every source is current


def test_only_one_sync_at_a_time(svc: Any) -> None:
    with sync.job_lock(svc, "sync"), pytest.raises(sync.SyncBusy, match="already running"):
        sync.sync(svc)
    assert sync.sync(svc).errors == []  # the lock was released


def test_a_sync_lease_this_process_lost_is_taken_back_at_once(svc: Any) -> None:
    """The database went away mid-sync, so the lease was never released: the same process (the worker) syncs again
    on its next round instead of 15 minutes later; another process's lease is still respected."""
    import os
    import socket
    from datetime import UTC, datetime

    from models.tables import JobLock

    def leave_lease(holder: str) -> None:
        with svc.session() as s:
            s.merge(JobLock(name="sync", holder=holder, until=datetime.now(UTC) + timedelta(minutes=15)))

    leave_lease(f"{socket.gethostname()}:{os.getpid()}:12345")
    assert sync.sync(svc).errors == []
    leave_lease("another-host:1:12345")
    with pytest.raises(sync.SyncBusy, match="another-host"):
        sync.sync(svc)


def test_one_cycle_syncs_then_reconciles_reporting_progress(svc: Any) -> None:
    from models.tables import AuditLog, ReconcileRun

    manual(svc, "gallery", THU, time(13), time(14))
    steps: list[tuple[float, str]] = []
    report = cycle.run_cycle(svc, actor="manager@x", progress=lambda f, m: steps.append((f, m)))
    assert report.sync.calendar_events == 1 and report.sync.errors == []
    assert (report.run.open_by_code, report.run.opened) == ({"manual_event": 1}, 1)
    assert report.line().endswith("; 1 open finding(s) (+1/-0)")
    assert steps[0] == (0.0, "Syncing: Stripe") and steps[-1] == (1.0, "1 open finding(s)")
    assert (0.95, "Looking for mismatches") in steps
    assert [f for f, _ in steps] == sorted(f for f, _ in steps) and max(f for f, _ in steps[:-2]) <= 0.9
    with svc.session() as s:
        audited = [
            (a.action, a.actor)
            for a in s.exec(select(AuditLog).order_by(col(AuditLog.id)))
            if a.action in ("sync.completed", "reconcile.run")
        ]
    assert audited == [("sync.completed", "manager@x"), ("reconcile.run", "manager@x")]
    # While another process syncs, a cycle does nothing: no sync and no reconciliation run.
    with sync.job_lock(svc, "sync"), pytest.raises(sync.SyncBusy):
        cycle.run_cycle(svc)
    with svc.session() as s:
        assert len(list(s.exec(select(ReconcileRun)))) == 1


def test_cli_reconcile_json(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "ROOMDESK_SECRETS_FILE": str(tmp_path / "x")}
    loaded = subprocess.run(
        [sys.executable, "-m", "services.ops.cli", "sandbox-load", str(LEGACY)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert loaded.stdout.startswith("Loaded ")
    out = subprocess.run(
        [sys.executable, "-m", "services.ops.cli", "reconcile", "--sync", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    findings = json.loads(out.stdout)
    assert {f["code"] for f in findings} >= {"event_mismatch", "amount_mismatch", "unparseable", "orphan_event"}
    for f in findings:
        assert {
            "code",
            "severity",
            "booking_id",
            "payment_intent",
            "room",
            "dates",
            "event_ids",
            "summary",
            "actions",
        } <= set(f)
