"""Fill the sandbox gateways from files in the providers' own JSON formats, so a venue can audit its history (and
tests can replay real-shaped data) with sync + reconcile exactly as on live data.

    DIR/stripe/*.json             Stripe list objects ({"object": "list", "data": [...]}) or single objects:
                                  payment_intents, charges, refunds, disputes (events too)
    DIR/calendar/<calendar>.json  a Google Calendar events.list response for one room calendar

Every file is read and every object checked before anything is written. A file that cannot be read (not JSON, not
UTF-8, nested too deep) is reported and skipped as a whole; an object Stripe or Google would never send (no id, an
amount that is not a whole number of cents, a timestamp such as "now" or 1e999, NaN, a NUL character) is reported
with its file and position and skipped; the rest is loaded. Calendar events whose times merely cannot be read are
loaded: reconciliation reports them as `unparseable`, as it would for a live calendar. Nothing is written when the
load is refused (wrong gateway mode, no such folder).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from services.core.context import Services
from services.core.errors import ConfigError
from services.reconciliation.sync import Unreadable, check_stripe_object

STRIPE_KINDS = {"payment_intent", "charge", "refund", "dispute", "event"}
MAX_DEPTH = 32  # Stripe's deepest objects (an event holding a PaymentIntent with its charge) nest about 8 levels
MAX_FILE_BYTES = 256 * 1024 * 1024
_YEARS = (1900, 2200)  # a calendar time outside these is a damaged file, not a booking


@dataclass
class LoadReport:
    stripe: Counter[str] = field(default_factory=Counter)
    calendars: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{n} {kind}(s)" for kind, n in sorted(self.stripe.items())]
        parts += [f"{n} event(s) on {cal}" for cal, n in sorted(self.calendars.items())]
        text = "Loaded " + (", ".join(parts) or "nothing")
        if self.problems:
            text += f"; {len(self.problems)} problem(s): " + "; ".join(self.problems)
        return text


def _depth(doc: Any) -> int:
    """How deep the document nests (iteratively: a hostile file must not exhaust the stack here either)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            todo.extend((v, level + 1) for v in value)
    return deepest


def _read(path: Path, report: LoadReport) -> Any:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            report.problems.append(f"{path.name}: larger than {MAX_FILE_BYTES // 2**20} MB, skipped")
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        report.problems.append(f"{path.name}: not readable JSON ({exc.__class__.__name__})")
        return None
    if _depth(doc) > MAX_DEPTH:
        report.problems.append(f"{path.name}: nested deeper than {MAX_DEPTH} levels, skipped")
        return None
    return doc


def _stripe_problem(obj: Any) -> str | None:
    """Why this object cannot be loaded, or None."""
    kind = obj.get("object") if isinstance(obj, dict) else None
    if kind not in STRIPE_KINDS or not isinstance(obj.get("id"), str) or not obj["id"]:
        return "not a Stripe payment object with an id"
    if len(obj["id"]) > 255:
        return "id longer than 255 characters"
    parts = [obj]
    if isinstance(obj.get("latest_charge"), dict):
        parts.append(obj["latest_charge"])  # stored as a charge of its own
    data = obj.get("data")
    inner = data.get("object") if kind == "event" and isinstance(data, dict) else None
    if isinstance(inner, dict) and inner.get("object") in STRIPE_KINDS:
        parts.append(inner)  # the sync copies an event's object too
    for part in parts:
        if part is not obj and not isinstance(part.get("id"), str):
            return "an embedded object has no id"
        try:
            check_stripe_object(part)
        except Unreadable as exc:
            return str(exc)
    return None


def _event_problem(ev: Any) -> str | None:
    """Why this calendar event cannot be loaded, or None. Times that do not parse are kept (an `unparseable`
    finding later); times that parse to an impossible year are not."""
    if not isinstance(ev, dict) or not isinstance(ev.get("id"), str) or not ev["id"]:
        return "no id"
    if len(ev["id"]) > 1024:
        return "id longer than 1024 characters"
    try:
        text = json.dumps(ev, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return "not storable JSON (NaN or Infinity)"
    if "\\u0000" in text:
        return "contains a NUL character"
    for which in ("start", "end"):
        part = ev.get(which)
        if not isinstance(part, dict):
            continue
        try:
            if isinstance(part.get("dateTime"), str):
                moment = datetime.fromisoformat(part["dateTime"].replace("Z", "+00:00"))
                year = (moment.astimezone(UTC) if moment.tzinfo else moment).year
            elif isinstance(part.get("date"), str):
                year = date.fromisoformat(part["date"]).year
            else:
                continue
        except ValueError:
            continue  # unreadable: loaded, and reported by reconciliation
        except OverflowError:
            year = 0
        if not _YEARS[0] <= year <= _YEARS[1]:
            return f"{which} time outside the years {_YEARS[0]}–{_YEARS[1]}"
    return None


def load_dir(svc: Services, directory: Path) -> LoadReport:
    """Read and check every file under `directory`, then load what is sound; every file or object left out is a
    problem in the report, never an exception."""
    payments, calendar = svc.payments, svc.calendar
    if getattr(payments, "mode", "") != "sandbox" or getattr(calendar, "mode", "") != "sandbox":
        raise ConfigError("sandbox-load fills the sandbox gateways: run it with PAYMENTS=sandbox CALENDAR=sandbox")
    if not directory.is_dir():
        raise ConfigError(f"No such folder: {directory}")
    report = LoadReport()

    # 1. Read and check everything; nothing is written yet.
    stripe_batches: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((directory / "stripe").glob("*.json")):
        doc = _read(path, report)
        if doc is None:
            continue
        items = doc.get("data") if isinstance(doc, dict) and doc.get("object") == "list" else doc
        items = items if isinstance(items, list) else [items]
        for i, obj in enumerate(items):
            problem = _stripe_problem(obj)
            if problem is not None:
                report.problems.append(f"{path.name} item {i + 1}: {problem}")
                continue
            stripe_batches.setdefault(str(obj["object"]), []).append(obj)
    known = {r.calendar_id for r in svc.catalogue.rooms}
    calendar_batches: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((directory / "calendar").glob("*.json")):
        doc = _read(path, report)
        if doc is None:
            continue
        calendar_id = path.stem
        items = doc.get("items", []) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            report.problems.append(f"{path.name}: no list of events, skipped")
            continue
        good = calendar_batches.setdefault(calendar_id, [])
        for i, ev in enumerate(items):
            problem = _event_problem(ev)
            if problem is not None:
                report.problems.append(f"{path.name} event {i + 1}: {problem}")
            else:
                good.append(ev)
        if calendar_id not in known:
            report.problems.append(f"{path.name}: no room in the catalogue uses calendar {calendar_id}")

    # 2. Write what passed: each gateway's load checks nothing that step 1 has not already checked.
    for kind, objs in sorted(stripe_batches.items()):
        payments.load(kind, objs)  # type: ignore[attr-defined]
        report.stripe[kind] += len(objs)
    for calendar_id, events in sorted(calendar_batches.items()):
        if not events:
            continue
        calendar.load(calendar_id, events)  # type: ignore[attr-defined]
        report.calendars[calendar_id] += len(events)
    _forget_cursors(svc)
    return report


def _forget_cursors(svc: Services) -> None:
    """Loaded objects carry no change events: make the next sync a full one."""
    from sqlmodel import select

    from models.tables import SyncState

    with svc.session() as s:
        for state in s.exec(select(SyncState)):
            state.cursor = None
