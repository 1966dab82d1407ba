"""Bad input never crashes anything: schemathesis drives the API from its own OpenAPI schema (in process, over
ASGI) with valid and invalid requests — no 5xx, no stack trace in any answer; a malformed room catalogue is a
ConfigError naming the room and the field; malformed PaymentIntent metadata and calendar events loaded into the
sandbox come out of sync + reconcile as `unparseable` findings, never as an exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.core.catalogue import load_catalogue
from services.core.errors import ConfigError
from services.core.settings import PROJECT_ROOT
from services.ops.sandbox_load import load_dir
from services.reconciliation import findings, reconcile, sync
from services.web.api import create_app
from tests.reliability.harness import fresh_services
from tests.reliability.stats import COUNTS, FLOWS

SECRET = "whsec_reliability_bad_input"
_svc = fresh_services(stripe_webhook_secret=SECRET)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_svc, allowed_origins=[]))


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_generated_request_without_a_server_error(case: Any) -> None:
    FLOWS.add("api (schemathesis)")
    COUNTS["API requests (schemathesis)"] += 1
    response = case.call()
    body = response.text
    assert response.status_code < 500, f"{case.method} {case.formatted_path} → {response.status_code}: {body[:300]}"
    assert "Traceback" not in body and 'File "' not in body, body[:500]


# --------------------------------------------------------------------------------------------- room catalogue

ROOMS = (PROJECT_ROOT / "config" / "rooms.toml").read_text()
GOOD_ROOM = """
[[rooms]]
slug = "{slug}"
name = "Test Room"
calendar_id = "test@group.calendar.google.com"
hourly_price_cents = {price}
capacity = {capacity}
min_hours = {min_hours}
"""
BAD_ROOMS = {
    "negative price": (dict(slug="test-room", price=-5, capacity=10, min_hours=1), "hourly_price_cents"),
    "price as text": (dict(slug="test-room", price='"ten"', capacity=10, min_hours=1), "hourly_price_cents"),
    "zero capacity": (dict(slug="test-room", price=1000, capacity=0, min_hours=1), "capacity"),
    "min hours too long": (dict(slug="test-room", price=1000, capacity=10, min_hours=12), "min_hours"),
    "bad slug": (dict(slug="Test Room!", price=1000, capacity=10, min_hours=1), "slug"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROOMS))
def test_a_malformed_room_is_a_config_error_naming_the_room_and_field(case: str, tmp_path: Path) -> None:
    values, field = BAD_ROOMS[case]
    path = tmp_path / "rooms.toml"
    path.write_text(ROOMS + GOOD_ROOM.format(**values))
    with pytest.raises(ConfigError) as raised:
        load_catalogue(path)
    message = raised.value.message
    assert field in message, message
    assert "Test Room" in message or values["slug"] in message or "room" in message.lower(), message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    "text",
    [
        "[[rooms]\nslug = 'x'",  # not TOML
        "rooms = 3",
        "[[rooms]]\nslug = 'a'\n",  # missing fields
        ROOMS + ROOMS,  # every room twice
        ROOMS.replace("hourly_price_cents = 4500", "hourly_price_cents = 4500\nsurprise = 1"),
        ROOMS.replace('kind = "choice"', 'kind = "choice"\n  choices = []', 1),
    ],
    ids=["not-toml", "rooms-not-a-table", "missing-fields", "duplicate-rooms", "unknown-field", "empty-choices"],
)
def test_a_malformed_catalogue_never_crashes(text: str, tmp_path: Path) -> None:
    path = tmp_path / "rooms.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_catalogue(path)
    assert raised.value.message and "Traceback" not in raised.value.message


# --------------------------------------------------------------------------------------------- sandbox data

BAD_METADATA = [
    {"room": "boardroom", "booking_dates": "2026-13-45", "booking_time": "10:00-12:00"},
    {"room": "boardroom", "booking_dates": "2026-03-09", "booking_time": "noon"},
    {"room": "boardroom", "booking_dates": "2026-03-09", "booking_time": "12:00-10:00"},
    {"room": "the-moon", "booking_dates": "2026-03-09", "booking_time": "10:00-12:00"},
    {"room": "boardroom", "booking_dates": ",,,", "booking_time": "10:00-12:00"},
    {"room": "boardroom", "booking_dates": "2026-03-09", "booking_time": "10:00-12:00-14:00"},
    {"booking_id": "RDNOTHING"},
]
BAD_EVENTS = [
    {"id": "bad0001", "summary": "No times"},
    {"id": "bad0002", "summary": "Garbage time", "start": {"dateTime": "tomorrow"}, "end": {"dateTime": "later"}},
    {
        "id": "bad0003",
        "summary": "Backwards",
        "start": {"dateTime": "2026-03-09T12:00:00-07:00"},
        "end": {"dateTime": "2026-03-09T10:00:00-07:00"},
    },
    {"id": "bad0004", "summary": "Bad date", "start": {"date": "2026-02-30"}, "end": {"date": "2026-03-01"}},
    {"id": "bad0005", "summary": "Start is a string", "start": "2026-03-09", "end": "2026-03-10"},
]


def _pi(i: int, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"pi_badmeta{i:04d}abcdefgh",
        "object": "payment_intent",
        "amount": 9000,
        "amount_received": 9000,
        "currency": "cad",
        "status": "succeeded",
        "metadata": metadata,
        "created": 1772470000,
        "latest_charge": None,
    }


def test_malformed_payment_metadata_and_events_become_unparseable_findings(tmp_path: Path) -> None:
    FLOWS.add("sandbox load + reconcile")
    svc = fresh_services()
    data = tmp_path / "load"
    (data / "stripe").mkdir(parents=True)
    (data / "calendar").mkdir()
    (data / "stripe" / "payment_intents.json").write_text(
        json.dumps({"object": "list", "data": [_pi(i, m) for i, m in enumerate(BAD_METADATA)]})
    )
    (data / "stripe" / "broken.json").write_text("{not json")
    (data / "calendar" / "boardroom@group.calendar.google.com.json").write_text(json.dumps({"items": BAD_EVENTS}))
    report = load_dir(svc, data)
    assert report.stripe["payment_intent"] == len(BAD_METADATA) and report.problems  # the broken file is reported

    sync.sync(svc)
    run = reconcile.reconcile(svc)

    found = findings.open_findings(svc, codes=["unparseable"])
    subjects = {f.key.split(":", 1)[1] for f in found}
    for i, metadata in enumerate(BAD_METADATA[:-1]):
        assert f"pi_badmeta{i:04d}abcdefgh" in subjects, (metadata, sorted(subjects))
    for event in BAD_EVENTS:
        assert f"boardroom@group.calendar.google.com/{event['id']}" in subjects, (event, sorted(subjects))
    assert run.open_by_code.get("unparseable", 0) == len(found)
    svc.engine.dispose()
