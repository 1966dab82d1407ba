"""Reconciliation on both databases: a sync lease held by one process keeps another out, and the findings engine
reads the same answers from SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, time
from pathlib import Path
from typing import Any

from services import booking as bk
from services.reconciliation import findings, reconcile, sync


def _try_sync(args: tuple[str, str]) -> str:
    data_dir, db_url = args
    from services.core.context import build_services
    from services.core.settings import Settings

    svc = build_services(Settings(data_dir=Path(data_dir), database_url=db_url), migrate=False)
    try:
        return sync.sync(svc).line()
    except sync.SyncBusy as exc:
        return "busy: " + exc.message
    finally:
        svc.engine.dispose()


def test_one_sync_at_a_time_across_processes(db_url: str, make_services: Any) -> None:
    svc = make_services(db_url)
    ctx = mp.get_context("fork")
    args = (str(svc.settings.data_dir), db_url)
    with sync.job_lock(svc, "sync"), ctx.Pool(1) as pool:
        assert pool.apply(_try_sync, (args,)).startswith("busy: A sync is already running")
    with ctx.Pool(1) as pool:
        assert "API call(s)" in pool.apply(_try_sync, (args,))


def test_findings_on_this_database(db_url: str, make_services: Any, booking_request: Any) -> None:
    svc = make_services(db_url)
    svc.mail.faults.fail("send")
    silent = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, silent.booking_id, actor="webhook")
    tz = svc.settings.tz
    from datetime import datetime

    svc.calendar.insert_event(
        "boardroom@group.calendar.google.com",
        {
            "summary": "Staff",
            "start": {"dateTime": datetime.combine(date(2026, 3, 4), time(11), tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.combine(date(2026, 3, 4), time(13), tzinfo=tz).isoformat()},
        },
    )
    sync.sync(svc)
    run = reconcile.reconcile(svc)
    assert run.open_by_code == {"missing_confirmation": 1, "double_booking": 1, "manual_event": 1}
    assert reconcile.reconcile(svc).opened == 0
    (double,) = findings.open_findings(svc, codes=["double_booking"])
    assert double.booking_ref == silent.reference and double.payment_intent == silent.payment_intent
