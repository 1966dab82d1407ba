"""sandbox-load with hostile files: everything is checked before anything is written, each bad object is reported
with its file and position and left out, and nothing that got into the sandbox can stop later syncs, reconciliations
or worker rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from models.tables import StripeObjectCache
from services.core.errors import ConfigError
from services.ops import cli, worker
from services.ops.sandbox_load import load_dir
from services.reconciliation import reconcile, sync

CALENDAR = "boardroom@group.calendar.google.com"


def pi(n: int, **fields: Any) -> dict[str, Any]:
    obj = {
        "id": f"pi_load{n:04d}abcdefgh",
        "object": "payment_intent",
        "amount": 9000,
        "amount_received": 9000,
        "currency": "cad",
        "status": "succeeded",
        "created": 1772470000,
        "metadata": {},
    }
    return {**obj, **fields}


def folder(tmp_path: Path, stripe: dict[str, str], calendar: dict[str, str] | None = None) -> Path:
    root = tmp_path / "load"
    (root / "stripe").mkdir(parents=True)
    (root / "calendar").mkdir()
    for name, text in stripe.items():
        (root / "stripe" / name).write_text(text)
    for name, text in (calendar or {}).items():
        (root / "calendar" / name).write_text(text)
    return root


def cached(svc: Any) -> set[str]:
    with svc.session() as s:
        return {row.id for row in s.exec(select(StripeObjectCache))}


def test_hostile_files_are_reported_and_the_sound_objects_load(svc: Any, tmp_path: Path) -> None:
    good = pi(1)
    bad = [
        pi(2, amount=float("inf")),  # 1e999 in the file
        pi(3, created="now"),
        pi(4, created=1e300),
        pi(5, amount="12.50"),
        pi(6, amount_received=True),
        pi(7, metadata={"booking_id": "RD\u0000X"}),
        pi(8, metadata="not an object"),
        {"object": "payment_intent", "amount": 1},  # no id
        {"id": "ev_1", "object": "event", "type": "payment_intent.succeeded", "data": {"object": "pi_x"}},
    ]
    text = json.dumps({"object": "list", "data": [good, *bad]}).replace("Infinity", "1e999")
    root = folder(
        tmp_path,
        {
            "payment_intents.json": text,
            "deep.json": "[" * 100_000 + "]" * 100_000,  # RecursionError in the JSON parser
            "nested.json": json.dumps(pi(9, metadata={"a": _nest(40)})),
            "latin1.json": '{"id": "pi_\xe9"}'.encode("latin-1").decode("latin-1"),
        },
        {
            f"{CALENDAR}.json": json.dumps(
                {
                    "items": [
                        {"id": "okevent1", "start": {"dateTime": "tomorrow"}, "end": {"dateTime": "later"}},
                        {"id": "farevent", "start": {"date": "9999-12-31"}, "end": {"date": "9999-12-31"}},
                        {"summary": "no id"},
                        "a string",
                    ]
                }
            )
        },
    )
    (root / "stripe" / "latin1.json").write_bytes(b'{"id": "pi_\xe9"}')

    report = load_dir(svc, root)

    assert report.stripe == {"payment_intent": 1} and report.calendars == {CALENDAR: 1}
    problems = "\n".join(report.problems)
    for i in range(2, len(bad) + 2):
        assert f"payment_intents.json item {i}:" in problems
    assert "payment_intents.json item 2: a number is NaN or infinite" in problems
    assert "payment_intents.json item 3: created is not a Unix timestamp" in problems
    assert "payment_intents.json item 5: amount is not a whole number of cents" in problems
    assert "payment_intents.json item 7: contains a NUL character" in problems
    assert "deep.json: not readable JSON (RecursionError)" in problems
    assert "nested.json: nested deeper than 32 levels" in problems
    assert "latin1.json: not readable JSON (UnicodeDecodeError)" in problems
    assert f"{CALENDAR}.json event 2: start time outside the years" in problems
    assert f"{CALENDAR}.json event 3: no id" in problems and f"{CALENDAR}.json event 4: no id" in problems

    # Nothing left out poisons what follows; the event with unreadable times is a finding, as on a live calendar.
    report2 = sync.sync(svc)
    assert report2.errors == [] and cached(svc) == {good["id"]}
    assert reconcile.reconcile(svc).open_by_code.get("unparseable") == 1
    worker.run_round(svc)


def _nest(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_refused_load_writes_nothing(svc: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="No such folder"):
        load_dir(svc, tmp_path / "missing")
    assert svc.payments.is_empty() and svc.calendar.is_empty()


def test_nothing_is_written_before_every_file_is_checked(
    svc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that blows up the checks (here: the last one read) leaves the sandbox as it was."""
    import services.ops.sandbox_load as sl

    root = folder(tmp_path, {"a.json": json.dumps(pi(1))}, {f"{CALENDAR}.json": json.dumps({"items": []})})

    def boom(_ev: Any) -> str | None:
        raise MemoryError

    (root / "calendar" / f"{CALENDAR}.json").write_text(json.dumps({"items": [{"id": "e1"}]}))
    monkeypatch.setattr(sl, "_event_problem", boom)
    with pytest.raises(MemoryError):
        load_dir(svc, root)
    assert svc.payments.is_empty() and svc.calendar.is_empty()


def test_the_command_reports_problems_with_exit_status_1(
    svc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import get_settings

    root = folder(tmp_path, {"a.json": json.dumps([pi(1), pi(2, created="now")]), "b.json": "[" * 50_000})
    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    get_settings.cache_clear()
    try:
        assert cli.main(["sandbox-load", str(root)]) == 1
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert out.out.startswith("Loaded 1 payment_intent(s); 2 problem(s): a.json item 2: created is not a Unix")
    assert "Traceback" not in out.err


def test_a_damaged_object_already_in_the_sandbox_is_skipped_by_every_sync(svc: Any) -> None:
    """Loaded before the checks existed (or written by hand): the sync skips and reports it, the rest is synced."""
    svc.payments.load("refund", [{"id": "re_bad", "object": "refund", "amount": "lots", "created": 1772470000}])
    svc.payments.load("payment_intent", [pi(1)])
    report = sync.sync(svc)
    assert any(line.startswith("re_bad: amount is not a whole number") for line in report.skipped)
    assert "1 unreadable object(s) skipped" in report.line() and report.errors == []
    assert cached(svc) == {pi(1)["id"]}
    assert sync.sync(svc).errors == []  # the next (incremental) sync runs as usual
    reconcile.reconcile(svc)
    worker.run_round(svc)


def test_a_damaged_object_in_the_store_is_skipped_and_stops_neither_the_calendars_nor_the_worker(svc: Any) -> None:
    svc.payments.load("payment_intent", [pi(1, created="now")])  # already in the store: the sandbox lists it anyway
    svc.calendar.insert_event(
        CALENDAR,
        {
            "id": "staffevent1",
            "start": {"dateTime": "2026-03-09T10:00:00-07:00"},
            "end": {"dateTime": "2026-03-09T11:00:00-07:00"},
        },
    )
    report = sync.sync(svc)
    assert report.errors == [] and report.calendar_events == 1
    assert len(report.skipped) == 1 and "created" in report.skipped[0]
    assert "open finding" in worker.run_round(svc)  # the next round runs to the end
