"""Gateway selection and audit mode: the settings choose sandbox or real adapters; audit mode reads live and
refuses every write before it leaves the process; the connection checks say what is wrong."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services import booking as bk
from services.core.errors import ConfigError, GatewayError
from services.ops import health
from services.reconciliation import reconcile, sync


def test_sandbox_connections_all_pass(svc: Any) -> None:
    checks = health.check_connections(svc)
    assert all(c.ok is not False for c in checks)
    assert sum(c.name == "Calendar writable" and c.ok for c in checks) == 7
    assert dict(health.modes(svc))["Stripe secret key"] == "not set"


def test_a_calendar_that_cannot_be_written_is_named(svc: Any) -> None:
    svc.calendar.faults.fail("insert_event", match=lambda ctx: ctx["calendar_id"].startswith("gallery"))
    bad = [c for c in health.check_connections(svc) if c.ok is False]
    assert [(c.area, c.name) for c in bad] == [("Gallery", "Calendar writable")]


def test_audit_mode_reads_but_never_writes(make_services: Any, booking_request: Any, tmp_path: Path) -> None:
    live = make_services(data_dir=tmp_path / "d")
    started = bk.start_booking(live, booking_request(), actor="customer")
    bk.sandbox_pay(live, started.booking_id, actor="webhook")
    audit = make_services(data_dir=tmp_path / "d", audit_mode=True)
    audit.clock = live.clock
    assert audit.payments.mode.endswith("(read-only)") and audit.calendar.mode.endswith("(read-only)")
    assert sync.sync(audit).errors == []
    assert reconcile.reconcile(audit).open_total == 0
    with pytest.raises(GatewayError, match="Audit mode: Room Desk is read-only"):
        bk.start_booking(audit, booking_request(dates=[date(2026, 3, 5)]), actor="x")
    with pytest.raises(GatewayError, match="read-only"):
        bk.cancel_booking(audit, started.booking_id, actor="x")
    # nothing changed outside
    assert live.payments.retrieve_payment_intent(started.payment_intent)["latest_charge"]["amount_refunded"] == 0
    checks = {(c.area, c.name): c for c in health.check_connections(audit)}
    assert checks[("Boardroom", "Calendar writable")].ok is None


def test_real_adapters_need_their_keys(make_services: Any) -> None:
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        make_services(payments="stripe")
    with pytest.raises(ConfigError, match="GOOGLE_SERVICE_ACCOUNT_FILE"):
        make_services(calendar="google")


def test_smtp_mail_is_chosen_by_settings(make_services: Any) -> None:
    with pytest.raises(ConfigError, match="SMTP_HOST and MAIL_FROM"):
        make_services(mail="smtp")
    svc = make_services(
        mail="smtp",
        smtp_host="127.0.0.1",
        smtp_port=2525,
        mail_from="Venue <b@venue.example>",
        smtp_password="s3cret-pass",
    )
    assert svc.mail.mode == "smtp" and "s3cret-pass" not in repr(svc.mail)
