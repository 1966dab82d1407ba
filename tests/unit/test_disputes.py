"""Disputes on sandbox gateways: the signed charge.dispute.* webhooks keep a DisputeCase in step with Stripe, the
evidence pack (read back from its PDF with pypdf) holds what a bank needs, and the evidence reaches Stripe's text
fields once, before the due date, while the dispute still needs a response."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlmodel import select

from models.tables import AuditLog, BookingLeg, DisputeCase
from services.core.errors import InvalidState, ValidationError
from services.finance import dispute_queries, disputes
from services.finance.pdf import Document, Letterhead, latin1_safe, unicode_font
from services.web.api import create_app

from .test_webhooks import SECRET, deliver, paid_booking, stripe_events

NAME = "Łukasz O’Brien–Smith"
SUBMITTED_FIELDS = {
    "product_description",
    "service_date",
    "customer_name",
    "customer_email_address",
    "cancellation_policy_disclosure",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "uncategorized_text",
}


def pdf_text(data: bytes) -> str:
    """The PDF's text with runs of whitespace (line and cell breaks) as one space."""
    reader = PdfReader(io.BytesIO(data))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


@pytest.fixture
def dsvc(make_services: Any) -> Any:
    return make_services(stripe_webhook_secret=SECRET)


@pytest.fixture
def client(dsvc: Any) -> TestClient:
    return TestClient(create_app(dsvc, allowed_origins=[]), raise_server_exceptions=False)


def confirmed(svc: Any, client: TestClient, booking_request: Any, **kw: Any) -> Any:
    """A web booking the customer paid for, confirmed by Stripe's webhook (event made, confirmation emailed)."""
    kw.setdefault("terms_version", svc.settings.terms_version)
    started = paid_booking(svc, lambda: booking_request(**kw))
    assert deliver(client, stripe_events(svc, started.payment_intent)["payment_intent.succeeded"]).status_code == 200
    return started


def disputed(svc: Any, client: TestClient, booking_request: Any, **kw: Any) -> tuple[Any, dict[str, Any], int]:
    """A confirmed booking whose customer's bank opened a dispute, delivered to us by the signed webhook."""
    started = confirmed(svc, client, booking_request, **kw)
    dispute = svc.payments.open_dispute(started.payment_intent, reason="product_not_received", due_in_days=7)
    r = deliver(client, stripe_events(svc, started.payment_intent)["charge.dispute.created"])
    assert r.status_code == 200 and r.json()["status"] == "processed"
    return started, dispute, case_row(svc, dispute["id"]).id


def case_row(svc: Any, dispute_id: str) -> DisputeCase:
    with svc.session() as s:
        return s.exec(select(DisputeCase).where(DisputeCase.dispute_id == dispute_id)).one()


def stripe_dispute(svc: Any, dispute_id: str) -> dict[str, Any]:
    return next(d for d in svc.payments.list_disputes()["data"] if d["id"] == dispute_id)


def audit_actions(svc: Any, prefix: str = "booking.dispute") -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.action.startswith(prefix)).order_by(AuditLog.id))  # type: ignore[attr-defined]
        return [a.action for a in rows]


# --------------------------------------------------------------------------------------------------- in step


def test_the_created_webhook_records_the_dispute_with_its_due_date_and_booking(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started, dispute, _ = disputed(dsvc, client, booking_request)
    row = case_row(dsvc, dispute["id"])
    assert row.booking_id == started.booking_id and row.payment_intent_id == started.payment_intent
    assert (row.status, row.reason, row.amount_cents, row.currency) == (
        "needs_response",
        "product_not_received",
        9000,
        "CAD",
    )
    assert row.evidence_due_by == dsvc.now() + timedelta(days=7)
    (listed,) = dispute_queries.list_cases(dsvc)
    assert (listed.reference, listed.days_left, listed.overdue, listed.needs_response) == (
        started.reference,
        7,
        False,
        True,
    )
    # A redelivery, and an update that changes nothing, leave one case and one audit row.
    deliver(client, stripe_events(dsvc, started.payment_intent)["charge.dispute.created"])
    assert disputes.refresh_disputes(dsvc, actor="finance@sandbox") == disputes.RefreshReport(1, 0, 0)
    assert audit_actions(dsvc) == ["booking.dispute.opened"]


def test_overdue_is_flagged_in_the_list(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    disputed(dsvc, client, booking_request)
    dsvc.clock.advance(days=6, hours=12)
    assert [(c.days_left, c.overdue) for c in dispute_queries.list_cases(dsvc)] == [(0, False)]
    dsvc.clock.advance(days=1)
    assert [(c.days_left, c.overdue) for c in dispute_queries.list_cases(dsvc)] == [(-1, True)]


def test_refresh_finds_a_dispute_no_webhook_told_us_about(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = confirmed(dsvc, client, booking_request)
    dispute = dsvc.payments.open_dispute(started.payment_intent, reason="fraudulent")
    assert dispute_queries.list_cases(dsvc) == []
    assert disputes.refresh_disputes(dsvc, actor="finance@sandbox") == disputes.RefreshReport(1, 1, 0)
    (listed,) = dispute_queries.list_cases(dsvc)
    assert (listed.dispute_id, listed.booking_id, listed.reason_words) == (
        dispute["id"],
        started.booking_id,
        "Fraudulent charge",
    )
    assert disputes.refresh_disputes(dsvc, actor="finance@sandbox") == disputes.RefreshReport(1, 0, 0)


def test_sync_records_a_dispute_whose_webhook_was_missed(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    from services.reconciliation import sync

    started = confirmed(dsvc, client, booking_request)
    dispute = dsvc.payments.open_dispute(started.payment_intent, reason="fraudulent")
    sync.sync(dsvc, actor="worker")
    (listed,) = dispute_queries.list_cases(dsvc)
    assert (listed.dispute_id, listed.booking_id) == (dispute["id"], started.booking_id)
    dsvc.payments.close_dispute(dispute["id"], won=True)
    sync.sync(dsvc, actor="worker")
    assert case_row(dsvc, dispute["id"]).status == "won"
    opened = audit_actions(dsvc).count("booking.dispute.opened")
    sync.sync(dsvc, actor="worker")  # nothing changed: no new audit rows
    assert audit_actions(dsvc).count("booking.dispute.opened") == opened == 1


@pytest.mark.parametrize(("won", "status"), [(True, "won"), (False, "lost")])
def test_the_closed_webhook_moves_the_case_to_won_or_lost(
    dsvc: Any, client: TestClient, booking_request: Any, won: bool, status: str
) -> None:
    started, dispute, case_id = disputed(dsvc, client, booking_request)
    disputes.save_evidence(dsvc, case_id, submit=True, actor="finance@sandbox")
    deliver(client, stripe_events(dsvc, started.payment_intent)["charge.dispute.updated"])
    dsvc.clock.advance(days=20)
    dsvc.payments.close_dispute(dispute["id"], won=won)
    assert deliver(client, stripe_events(dsvc, started.payment_intent)["charge.dispute.closed"]).status_code == 200
    row = case_row(dsvc, dispute["id"])
    assert (row.status, row.closed_at) == (status, dsvc.now())
    assert audit_actions(dsvc) == [
        "booking.dispute.opened",
        "booking.dispute.evidence.submitted",
        "booking.dispute.closed",
    ]
    assert dispute_queries.get_case(dsvc, case_id).status_words == status.capitalize()


# --------------------------------------------------------------------------------------------------- the pack


def test_the_evidence_pack_pdf_holds_what_a_bank_needs(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    started, dispute, case_id = disputed(
        dsvc, client, booking_request, dates=(date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))
    )
    with dsvc.session() as s:
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)))
    name, data = dispute_queries.evidence_pdf_file(dsvc, case_id)
    text = pdf_text(data)
    assert name == f"dispute-{dispute['id']}-{started.reference}.pdf"
    for expected in [
        started.reference,
        dispute["id"],
        "Boardroom",
        "Mon 9 Mar 2026",
        "Tue 10 Mar 2026",
        "Wed 11 Mar 2026",
        "10:00–12:00",
        "Full refund 48 h or more before; 50 % 24–48 h before; no refund under 24 h.",  # the policy sold with it
        f"version {dsvc.settings.terms_version}",
        "Booking confirmed: Boardroom",  # the confirmation email's subject
        "ava@example.org",
        "$243.00",
        "Visa •••• 4242",
        *[leg.event_id for leg in legs],
    ]:
        assert (expected if unicode_font() else latin1_safe(expected)) in text, expected
    assert "dispute.opened" not in text  # the dispute's own story is no evidence about the service


def test_the_fields_say_what_was_sold_when_and_under_which_policy(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started, _, case_id = disputed(dsvc, client, booking_request)
    fields = dispute_queries.assemble_evidence(dsvc, case_id).fields
    assert set(fields) == SUBMITTED_FIELDS
    assert fields["service_date"] == "2026-03-04 10:00–12:00"
    assert (fields["customer_name"], fields["customer_email_address"]) == ("Ava Nguyen", "ava@example.org")
    assert "Boardroom at Labour Temple" in fields["product_description"]
    assert "accepted the cancellation policy and terms (version 2026-01)" in fields["cancellation_policy_disclosure"]
    assert "Full refund 48 h or more before" in fields["refund_policy_disclosure"]
    assert "never asked to cancel" in fields["refund_refusal_explanation"]
    assert started.reference in fields["uncategorized_text"]


def test_evidence_never_claims_an_acceptance_the_record_does_not_show(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    """A phone booking paid by link without the terms being accepted on record: the evidence names the policy but
    says nowhere that the customer accepted it, in the fields or the PDF."""
    _, _, case_id = disputed(dsvc, client, booking_request, terms_version=None, channel="phone")
    pack = dispute_queries.assemble_evidence(dsvc, case_id)
    assert "accepted" not in " ".join(pack.fields.values())
    assert "the venue's cancellation policy (version" in pack.fields["refund_refusal_explanation"]
    text = pdf_text(dispute_queries.evidence_pdf(dsvc, pack))
    assert "Terms accepted —" in text and "customer accepted" not in text


def test_a_non_latin1_name_does_not_break_the_pdf(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    _, _, case_id = disputed(dsvc, client, booking_request, customer_name=NAME)
    text = pdf_text(dispute_queries.evidence_pdf_file(dsvc, case_id)[1])
    assert (NAME if unicode_font() else latin1_safe(NAME)) in text
    # Without the embedded font the core font's Latin-1 still prints the name, mapped.
    doc = Document(
        "Évidence – test", letterhead=Letterhead("Café “Ł”"), generated_at=dsvc.now(), embed_unicode_font=False
    )
    doc.paragraph(f"{NAME} paid 5 € → ok")
    doc.table(["Name"], [[NAME]], (1,))
    assert "Lukasz O'Brien-Smith paid 5 EUR -> ok" in pdf_text(doc.output())
    assert latin1_safe("Zoë Müller – “Ørsted”") == 'Zoë Müller - "Ørsted"'


# --------------------------------------------------------------------------------------------------- submit


def test_submitting_sends_exactly_the_fields_and_moves_to_under_review(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    result = disputes.save_evidence(dsvc, case_id, submit=True, actor="fay.finance@venue")
    sent = stripe_dispute(dsvc, dispute["id"])
    assert sent["evidence"] == result.fields and set(sent["evidence"]) == SUBMITTED_FIELDS
    assert (sent["status"], sent["evidence_details"]["submission_count"]) == ("under_review", 1)
    row = case_row(dsvc, dispute["id"])
    assert (row.status, row.evidence_submitted_at, row.evidence_submitted_by) == (
        "under_review",
        dsvc.now(),
        "fay.finance@venue",
    )
    assert row.evidence == result.fields and re.fullmatch(r"[0-9a-f]{64}", row.evidence_pdf_sha256 or "")
    assert not result.case.needs_response and result.case.days_left is None
    with dsvc.session() as s:
        logged = s.exec(select(AuditLog).where(AuditLog.action == "booking.dispute.evidence.submitted")).one()
    assert logged.actor == "fay.finance@venue" and logged.payload["pdf_sha256"] == row.evidence_pdf_sha256


def test_a_draft_goes_to_stripe_without_submitting_then_edited_fields_are_submitted(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    draft = disputes.save_evidence(dsvc, case_id, submit=False, actor="fay.finance@venue")
    sent = stripe_dispute(dsvc, dispute["id"])
    assert (sent["status"], sent["evidence_details"]["submission_count"]) == ("needs_response", 0)
    assert sent["evidence"] == draft.fields and case_row(dsvc, dispute["id"]).evidence_submitted_at is None
    edited = {**draft.fields, "uncategorized_text": "The customer used the room; see the calendar."}
    disputes.save_evidence(dsvc, case_id, submit=True, actor="fay.finance@venue", fields=edited)
    assert stripe_dispute(dsvc, dispute["id"])["evidence"]["uncategorized_text"] == edited["uncategorized_text"]
    assert case_row(dsvc, dispute["id"]).evidence == edited


def test_submitting_twice_is_refused(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    disputes.save_evidence(dsvc, case_id, submit=True, actor="fay.finance@venue")
    for submit in (True, False):
        with pytest.raises(InvalidState, match=r"already submitted \(.*by fay\.finance@venue\)"):
            disputes.save_evidence(dsvc, case_id, submit=submit, actor="max.manager@venue")
    assert stripe_dispute(dsvc, dispute["id"])["evidence_details"]["submission_count"] == 1
    assert audit_actions(dsvc, "booking.dispute.evidence") == ["booking.dispute.evidence.submitted"]


def test_after_the_due_date_evidence_is_refused(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    dsvc.clock.advance(days=7, seconds=1)
    for submit in (True, False):
        with pytest.raises(InvalidState, match="deadline has passed"):
            disputes.save_evidence(dsvc, case_id, submit=submit, actor="fay.finance@venue")
    sent = stripe_dispute(dsvc, dispute["id"])
    assert sent["evidence"] == {} and sent["status"] == "needs_response"
    assert case_row(dsvc, dispute["id"]).evidence == {}


def test_the_precondition_is_checked_against_stripe_just_before_submitting(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    """Our copy still says needs_response, but the bank decided meanwhile and no webhook has arrived yet."""
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    dsvc.payments.close_dispute(dispute["id"], won=False)
    with pytest.raises(InvalidState, match="is lost: Stripe takes evidence only while a dispute needs a response"):
        disputes.save_evidence(dsvc, case_id, submit=True, actor="fay.finance@venue")
    assert case_row(dsvc, dispute["id"]).status == "lost"


def test_evidence_submitted_in_the_stripe_dashboard_is_recorded_and_not_sent_again(
    dsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started, dispute, case_id = disputed(dsvc, client, booking_request)
    dsvc.payments.submit_dispute_evidence(dispute["id"], {"uncategorized_text": "From the dashboard"}, True)
    deliver(client, stripe_events(dsvc, started.payment_intent)["charge.dispute.updated"])
    row = case_row(dsvc, dispute["id"])
    assert (row.status, row.evidence_submitted_by) == ("under_review", disputes.SUBMITTED_IN_STRIPE)
    assert row.evidence == {"uncategorized_text": "From the dashboard"}
    with pytest.raises(InvalidState, match="already submitted"):
        disputes.save_evidence(dsvc, case_id, submit=True, actor="fay.finance@venue")


def test_edited_fields_are_checked(dsvc: Any, client: TestClient, booking_request: Any) -> None:
    _, dispute, case_id = disputed(dsvc, client, booking_request)
    with pytest.raises(ValidationError, match="'receipt' is not an evidence field"):
        disputes.save_evidence(dsvc, case_id, submit=True, actor="f", fields={"receipt": "file_123"})
    with pytest.raises(ValidationError, match="nothing to send"):
        disputes.save_evidence(dsvc, case_id, submit=True, actor="f", fields={"uncategorized_text": "  "})
    assert stripe_dispute(dsvc, dispute["id"])["status"] == "needs_response"
