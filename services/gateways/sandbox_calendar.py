"""Sandbox Google Calendar: v3 Event JSON on per-room calendars, with Google's id, 409, sync-token and 410 rules.

State lives in `<store_dir>/calendar.sqlite3`. Deleted events are kept with status `cancelled`, as Google does, so a
deleted id can never be reused and incremental sync can report the deletion.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.core.errors import EventExists, GatewayError, NotFound
from services.gateways.base import Json
from services.gateways.faults import Faults
from services.gateways.sandbox_store import Record, SandboxStore, StoreTx, checked_now, random_id, utc_now

PROVIDER = "calendar"
PAGE_SIZE = 250
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")
# Fields the server owns: an insert or patch cannot set them.
_SERVER_FIELDS = frozenset(
    {"kind", "etag", "created", "updated", "htmlLink", "iCalUID", "sequence", "organizer", "creator"}
)
_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})


class SandboxCalendar:
    """A Google Calendar look-alike implementing `CalendarGateway`, with fault injection and sandbox-only helpers."""

    mode = "sandbox"

    def __init__(
        self, store_dir: Path, *, clock: Callable[[], datetime] | None = None, faults: Faults | None = None
    ) -> None:
        self.store = SandboxStore(Path(store_dir) / "calendar.sqlite3")
        self.clock: Callable[[], datetime] = clock or utc_now
        self.faults = faults if faults is not None else Faults()
        # Per calendar: (the store's fingerprint of it, its busy intervals, every event's interval or None).
        self._spans: dict[str, tuple[tuple[int, int], list[tuple[datetime, datetime, str]], dict[str, Any]]] = {}
        self._spans_lock = threading.Lock()

    # -- CalendarGateway -------------------------------------------------------------------------------------------

    def insert_event(self, calendar_id: str, event: Json) -> Json:
        """Insert the event (generating an id if it has none); an id that exists or existed raises EventExists."""
        op = "insert_event"
        event_id = str(event.get("id") or random_id("", 26, _BASE32HEX))
        self.faults.before(op, PROVIDER, calendar_id=calendar_id, event_id=event_id, event=event)
        _check_event_id(event_id)
        status = event.get("status", "confirmed")
        if status not in ("confirmed", "tentative"):
            raise _bad_request(f"An event cannot be inserted with status {status!r}")
        with self.store.transaction() as tx:
            if tx.get(_kind(calendar_id), event_id) is not None:
                raise EventExists(event_id)
            now = self._now()
            stored = {key: value for key, value in event.items() if key not in _SERVER_FIELDS}
            stored.update(
                kind="calendar#event",
                id=event_id,
                status=status,
                created=now,
                updated=now,
                sequence=0,
                iCalUID=f"{event_id}@google.com",
                htmlLink=_html_link(calendar_id, event_id),
                organizer={"email": calendar_id, "self": True},
                creator={"email": calendar_id, "self": True},
            )
            _interval(stored)  # refuses a missing or empty time range before anything is written
            stored["etag"] = _etag(stored)
            tx.put(_kind(calendar_id), event_id, stored)
        self.faults.after(op, PROVIDER, calendar_id=calendar_id, event_id=event_id, event=event)
        return stored

    def get_event(self, calendar_id: str, event_id: str) -> Json | None:
        """The event (a deleted one with status `cancelled`), or None if it never existed."""
        op = "get_event"
        self.faults.before(op, PROVIDER, calendar_id=calendar_id, event_id=event_id)
        with self.store.read() as tx:
            event = tx.get(_kind(calendar_id), event_id)
        self.faults.after(op, PROVIDER, calendar_id=calendar_id, event_id=event_id)
        return event

    def patch_event(self, calendar_id: str, event_id: str, patch: Json) -> Json:
        """Merge `patch` into the event (nested objects merged, None removes a key); NotFound if absent or deleted."""
        op = "patch_event"
        self.faults.before(op, PROVIDER, calendar_id=calendar_id, event_id=event_id, patch=patch)
        if patch.get("id", event_id) != event_id:
            raise _bad_request("An event's id cannot be changed")
        if patch.get("status", "confirmed") not in _STATUSES:
            raise _bad_request(f"Invalid event status {patch.get('status')!r}")
        with self.store.transaction() as tx:
            event = tx.get(_kind(calendar_id), event_id)
            if event is None or event.get("status") == "cancelled":
                raise NotFound(f"Calendar event {event_id} does not exist on {calendar_id}")
            _merge(event, {key: value for key, value in patch.items() if key not in _SERVER_FIELDS})
            _interval(event)
            event["sequence"] = int(event.get("sequence", 0)) + 1
            event["updated"] = self._now()
            event["etag"] = _etag(event)
            tx.put(_kind(calendar_id), event_id, event)
        self.faults.after(op, PROVIDER, calendar_id=calendar_id, event_id=event_id, patch=patch)
        return event

    def insert_events(self, calendar_id: str, events: list[Json]) -> list[Json | GatewayError]:
        """Insert several events as one batch: each succeeds or fails on its own (faults apply per event)."""
        out: list[Json | GatewayError] = []
        for event in events:
            try:
                out.append(self.insert_event(calendar_id, event))
            except GatewayError as exc:
                out.append(exc)
        return out

    def delete_events(self, calendar_id: str, event_ids: list[str]) -> list[GatewayError | None]:
        """Delete several events as one batch: None where gone, else the error (faults apply per event)."""
        out: list[GatewayError | None] = []
        for event_id in event_ids:
            try:
                self.delete_event(calendar_id, event_id)
                out.append(None)
            except GatewayError as exc:
                out.append(exc)
        return out

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Mark the event cancelled; deleting a deleted or unknown event is a no-op."""
        op = "delete_event"
        self.faults.before(op, PROVIDER, calendar_id=calendar_id, event_id=event_id)
        with self.store.transaction() as tx:
            event = tx.get(_kind(calendar_id), event_id)
            # Google answers 410 / 404 here; the contract is that adapters report both as done.
            if event is not None and event.get("status") != "cancelled":
                event["status"] = "cancelled"
                event["updated"] = self._now()
                event["etag"] = _etag(event)
                tx.put(_kind(calendar_id), event_id, event)
        self.faults.after(op, PROVIDER, calendar_id=calendar_id, event_id=event_id)

    def list_events(
        self,
        calendar_id: str,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        private_property: str | None = None,
        sync_token: str | None = None,
        page_token: str | None = None,
        show_deleted: bool = False,
        max_results: int = PAGE_SIZE,
    ) -> Json:
        """One page of events: a full listing ordered by start, or (with `sync_token`) every change since it."""
        op = "list_events"
        ctx: dict[str, Any] = {
            "calendar_id": calendar_id,
            "time_min": time_min,
            "time_max": time_max,
            "private_property": private_property,
            "sync_token": sync_token,
            "page_token": page_token,
            "show_deleted": show_deleted,
        }
        self.faults.before(op, PROVIDER, **ctx)
        if sync_token is not None and (time_min is not None or time_max is not None or private_property is not None):
            raise _bad_request("A sync token cannot be combined with timeMin, timeMax or privateExtendedProperty")
        if not 1 <= max_results <= 2500:
            raise _bad_request("maxResults must be between 1 and 2500")
        window = (_utc(time_min, "timeMin"), _utc(time_max, "timeMax"))
        prop = _parse_property(private_property)
        query = _fingerprint(calendar_id, window, prop, sync_token, show_deleted)
        with self.store.read() as tx:
            epoch = _epoch(tx)
            since = None if sync_token is None else _decode_sync_token(sync_token, calendar_id, epoch)
            page = None if page_token is None else _decode_page_token(page_token, query)
            snapshot = tx.current_seq() if page is None else int(page["snap"])
            if since is None:
                found = tx.records(_kind(calendar_id), **_may_overlap(window))
                records = _full_listing(found, window, prop, show_deleted, page)
            else:
                records = _changes(tx.records(_kind(calendar_id), since_seq=since), snapshot, page)
        items = [rec.data for rec in records[:max_results]]
        response: Json = {
            "kind": "calendar#events",
            "summary": calendar_id,
            "updated": self._now(),
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
            "items": items,
        }
        if len(records) > max_results:
            last = records[max_results - 1]
            cursor = [last.seq, last.id] if since is not None else [_start_key(last.data), last.id]
            response["nextPageToken"] = _encode({"q": query, "snap": snapshot, "after": cursor})
        else:
            response["nextSyncToken"] = _encode({"c": calendar_id, "s": snapshot, "e": epoch})
        response["etag"] = _etag(response)
        self.faults.after(op, PROVIDER, **ctx)
        return response

    def freebusy(self, calendar_ids: list[str], time_min: datetime, time_max: datetime) -> dict[str, list[Json]]:
        """Busy intervals (UTC, RFC 3339) of confirmed, opaque events overlapping [time_min, time_max), by calendar."""
        op = "freebusy"
        self.faults.before(op, PROVIDER, calendar_ids=calendar_ids, time_min=time_min, time_max=time_max)
        window = (_utc(time_min, "timeMin"), _utc(time_max, "timeMax"))
        busy: dict[str, list[Json]] = {}
        with self.store.read() as tx:
            for calendar_id in calendar_ids:
                intervals = [
                    (start, end, event_id)
                    for start, end, event_id in self._busy_spans(tx, calendar_id)
                    if _overlaps(start, end, window)
                ]
                intervals.sort()
                busy[calendar_id] = [
                    {"start": _rfc3339(start), "end": _rfc3339(end), "event_id": event_id}
                    for start, end, event_id in intervals
                ]
        self.faults.after(op, PROVIDER, calendar_ids=calendar_ids, time_min=time_min, time_max=time_max)
        return busy

    def _busy_spans(self, tx: StoreTx, calendar_id: str) -> list[tuple[datetime, datetime, str]]:
        """The calendar's busy intervals (confirmed, opaque events), kept per process and brought up to date from the
        events written since (the store's fingerprint of the calendar says when): a busy API asks for the same rooms'
        free/busy hundreds of times a second, and each event's JSON is read once, not on every ask."""
        kind = _kind(calendar_id)
        mark = tx.fingerprint(kind)
        with self._spans_lock:
            known = self._spans.get(kind)
        if known is not None and known[0] == mark:
            return known[1]
        spans: dict[str, tuple[datetime, datetime] | None] | None = None
        if known is not None and mark[1] > known[0][1]:  # events written since: read those alone
            spans = dict(known[2])
            spans.update((rec.id, _busy_span(rec.data)) for rec in tx.records(kind, since_seq=known[0][1]))
            if len(spans) != mark[0]:  # one was deleted meanwhile: read them all again
                spans = None
        if spans is None:
            spans = {rec.id: _busy_span(rec.data) for rec in tx.records(kind)}
        listed = [(span[0], span[1], event_id) for event_id, span in spans.items() if span is not None]
        with self._spans_lock:
            self._spans[kind] = (mark, listed, spans)
        return listed

    # -- sandbox only ----------------------------------------------------------------------------------------------

    def invalidate_sync_tokens(self) -> None:
        """Expire every sync token handed out so far: using one raises GatewayError(status=410)."""
        with self.store.transaction() as tx:
            tx.set_meta("sync_epoch", str(_epoch(tx) + 1))

    def load(self, calendar_id: str, events: Json | list[Json]) -> None:
        """Import Google events as they are, from an events.list response (`items`) or a list of events."""
        items = events.get("items", []) if isinstance(events, dict) else events
        with self.store.transaction() as tx:
            for event in items:
                if not isinstance(event.get("id"), str):
                    raise ValueError("every event needs a string id")
                tx.put(_kind(calendar_id), event["id"], {"kind": "calendar#event", **event})

    def is_empty(self) -> bool:
        """True when no calendar holds any event (deleted ones included)."""
        return self.store.is_empty()

    def reset(self) -> None:
        """Delete every event on every calendar and expire all sync tokens."""
        with self.store.transaction() as tx:
            tx.delete_all()
            tx.set_meta("sync_epoch", str(_epoch(tx) + 1))

    # -- internals -------------------------------------------------------------------------------------------------

    def _now(self) -> str:
        return _rfc3339(checked_now(self.clock), millis=True)


def _kind(calendar_id: str) -> str:
    return f"event:{calendar_id}"


# Which stored events may overlap a time window, judged by SQLite on the stored JSON as Google's index serves a
# timeMin/timeMax query: a listing of one week parses that week's events, not every event the calendar ever had. A
# day's margin each side covers times written without an offset (read in the event's own time zone); an event whose
# times SQLite cannot read is kept. _full_listing and freebusy then decide exactly, as before.
_START_UTC = "coalesce(datetime(json_extract(data, '$.start.dateTime')), datetime(json_extract(data, '$.start.date')))"
_END_UTC = "coalesce(datetime(json_extract(data, '$.end.dateTime')), datetime(json_extract(data, '$.end.date')))"


def _may_overlap(window: tuple[datetime | None, datetime | None]) -> dict[str, Any]:
    low, high = window
    where, params = [], []
    if low is not None:
        where.append(f"({_END_UTC} IS NULL OR {_END_UTC} > datetime(?, '-1 day'))")
        params.append(low.strftime("%Y-%m-%d %H:%M:%S"))
    if high is not None:
        where.append(f"({_START_UTC} IS NULL OR {_START_UTC} < datetime(?, '+1 day'))")
        params.append(high.strftime("%Y-%m-%d %H:%M:%S"))
    return {"where": " AND ".join(where), "params": params}


def _full_listing(
    records: list[Record],
    window: tuple[datetime | None, datetime | None],
    prop: tuple[str, str] | None,
    show_deleted: bool,
    page: Json | None,
) -> list[Record]:
    selected = []
    for rec in records:
        event = rec.data
        if event.get("status") == "cancelled" and not show_deleted:
            continue
        if prop is not None:
            private = (event.get("extendedProperties") or {}).get("private") or {}
            if private.get(prop[0]) != prop[1]:
                continue
        if window != (None, None) and not _overlaps(*_interval(event), window):
            continue
        selected.append(rec)
    selected.sort(key=lambda rec: (_start_key(rec.data), rec.id))
    if page is not None:
        after = (str(page["after"][0]), str(page["after"][1]))
        selected = [rec for rec in selected if (_start_key(rec.data), rec.id) > after]
    return selected


def _changes(records: list[Record], snapshot: int, page: Json | None) -> list[Record]:
    # Changes after the snapshot belong to the next sync, so a page never shows an event twice in one pass.
    after = -1 if page is None else int(page["after"][0])
    selected = [rec for rec in records if after < rec.seq <= snapshot]
    selected.sort(key=lambda rec: rec.seq)
    return selected


def _start_key(event: Json) -> str:
    """A sortable UTC form of the event's start."""
    try:
        return _interval(event)[0].isoformat(timespec="microseconds")  # fixed width: sorts as text
    except GatewayError:
        return ""  # events imported with `load` may lack times; list them first rather than fail the listing


def _interval(event: Json) -> tuple[datetime, datetime]:
    start = _event_time(event.get("start"), "start")
    end = _event_time(event.get("end"), "end")
    if end <= start:
        raise _bad_request("The specified time range is empty: an event must end after it starts")
    return start, end


def _event_time(value: Any, which: str) -> datetime:
    if not isinstance(value, dict) or not (value.get("dateTime") or value.get("date")):
        raise _bad_request(f"Missing {which} time")
    try:
        if value.get("dateTime"):
            moment = datetime.fromisoformat(str(value["dateTime"]))
            if moment.tzinfo is None:
                # Like Google, a dateTime without offset is read in the event's own timeZone.
                if not value.get("timeZone"):
                    raise _bad_request(f"The {which} time needs a UTC offset or a timeZone")
                moment = moment.replace(tzinfo=ZoneInfo(str(value["timeZone"])))
            return moment.astimezone(UTC)
        # All-day events: the sandbox's calendars are in UTC.
        return datetime.combine(date.fromisoformat(str(value["date"])), time(), tzinfo=UTC)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise _bad_request(f"Invalid {which} time {value!r}") from exc


def _busy_span(event: Json) -> tuple[datetime, datetime] | None:
    """When the event makes its calendar busy (confirmed and opaque), its interval; None when it does not."""
    if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
        return None
    return _interval(event)


def _overlaps(start: datetime, end: datetime, window: tuple[datetime | None, datetime | None]) -> bool:
    low, high = window
    return (low is None or end > low) and (high is None or start < high)


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _bad_request(f"{name} must include a time zone offset")
    return moment.astimezone(UTC)


def _rfc3339(moment: datetime, *, millis: bool = False) -> str:
    moment = moment.astimezone(UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_property(private_property: str | None) -> tuple[str, str] | None:
    if private_property is None:
        return None
    key, sep, value = private_property.partition("=")
    if not sep or not key:
        raise _bad_request("privateExtendedProperty must look like key=value")
    return key, value


def _check_event_id(event_id: str) -> None:
    if not _EVENT_ID.fullmatch(event_id):
        raise _bad_request(f"Invalid event id {event_id!r}: use 5 to 1024 characters from a-v and 0-9 (base32hex)")


def _merge(target: Json, patch: Json) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))  # no aliasing between the caller's patch and our copy


def _epoch(tx: StoreTx) -> int:
    return int(tx.get_meta("sync_epoch") or 0)


def _decode_sync_token(token: str, calendar_id: str, epoch: int) -> int:
    data = _decode(token, "sync token")
    if not isinstance(data.get("s"), int):
        raise _bad_request("Invalid sync token")
    if data.get("c") != calendar_id or data.get("e") != epoch:
        raise GatewayError(
            "The calendar sync token has expired; a full sync is needed", transient=False, provider=PROVIDER, status=410
        )
    return int(data["s"])


def _decode_page_token(token: str, query: str) -> Json:
    data = _decode(token, "page token")
    after = data.get("after")
    if not isinstance(data.get("snap"), int) or not isinstance(after, list) or len(after) != 2:
        raise _bad_request("Invalid page token")
    if data.get("q") != query:
        raise _bad_request("The page token belongs to a different query")
    return data


def _encode(data: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(token: str, what: str) -> Json:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _bad_request(f"Invalid {what}") from exc
    if not isinstance(data, dict):
        raise _bad_request(f"Invalid {what}")
    return data


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _etag(obj: Json) -> str:
    body = {key: value for key, value in obj.items() if key != "etag"}
    return f'"{int(_fingerprint(body), 16)}"'


def _html_link(calendar_id: str, event_id: str) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def _bad_request(message: str) -> GatewayError:
    return GatewayError(message, transient=False, provider=PROVIDER, status=400)
