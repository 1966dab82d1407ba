"""Fill the sandbox gateways from files in the providers' own JSON formats, so a venue can audit its history (and
tests can replay real-shaped data) with sync + reconcile exactly as on live data.

    DIR/stripe/*.json             Stripe list objects ({"object": "list", "data": [...]}) or single objects:
                                  payment_intents, charges, refunds, disputes (events too)
    DIR/calendar/<calendar>.json  a Google Calendar events.list response for one room calendar
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.core.context import Services
from services.core.errors import ConfigError

STRIPE_KINDS = {"payment_intent", "charge", "refund", "dispute", "event"}


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


def _read(path: Path, report: LoadReport) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.problems.append(f"{path.name}: not readable JSON ({exc.__class__.__name__})")
        return None


def load_dir(svc: Services, directory: Path) -> LoadReport:
    """Load every file under `directory`; unreadable files and objects are reported, never fatal."""
    payments, calendar = svc.payments, svc.calendar
    if getattr(payments, "mode", "") != "sandbox" or getattr(calendar, "mode", "") != "sandbox":
        raise ConfigError("sandbox-load fills the sandbox gateways: run it with PAYMENTS=sandbox CALENDAR=sandbox")
    if not directory.is_dir():
        raise ConfigError(f"No such folder: {directory}")
    report = LoadReport()
    for path in sorted((directory / "stripe").glob("*.json")):
        doc = _read(path, report)
        if doc is None:
            continue
        items = doc.get("data") if isinstance(doc, dict) and doc.get("object") == "list" else doc
        items = items if isinstance(items, list) else [items]
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for i, obj in enumerate(items):
            kind = obj.get("object") if isinstance(obj, dict) else None
            if kind not in STRIPE_KINDS or not isinstance(obj.get("id"), str):
                report.problems.append(f"{path.name} item {i + 1}: not a Stripe payment object with an id")
                continue
            by_kind.setdefault(str(kind), []).append(obj)
        for kind, objs in by_kind.items():
            payments.load(kind, objs)  # type: ignore[attr-defined]
            report.stripe[kind] += len(objs)
    known = {r.calendar_id for r in svc.catalogue.rooms}
    for path in sorted((directory / "calendar").glob("*.json")):
        doc = _read(path, report)
        if doc is None:
            continue
        calendar_id = path.stem
        items = doc.get("items", []) if isinstance(doc, dict) else doc
        good = (
            [e for e in items if isinstance(e, dict) and isinstance(e.get("id"), str)]
            if isinstance(items, list)
            else []
        )
        if len(good) != (len(items) if isinstance(items, list) else 0) or not isinstance(items, list):
            report.problems.append(f"{path.name}: some events have no id and were skipped")
        if calendar_id not in known:
            report.problems.append(f"{path.name}: no room in the catalogue uses calendar {calendar_id}")
        calendar.load(calendar_id, good)  # type: ignore[attr-defined]
        report.calendars[calendar_id] += len(good)
    _forget_cursors(svc)
    return report


def _forget_cursors(svc: Services) -> None:
    """Loaded objects carry no change events: make the next sync a full one."""
    from sqlmodel import select

    from models.tables import SyncState

    with svc.session() as s:
        for state in s.exec(select(SyncState)):
            state.cursor = None
