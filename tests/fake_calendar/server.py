"""A fake Google Calendar API v3 + OAuth token endpoint on loopback, for the real google-api-python-client.

It speaks HTTP/1.1 with keep-alive (httplib2 reuses connections), answers errors in Google's JSON error shape, and
keeps Google's rules where the booking service depends on them:

* `POST /token`: JWT-bearer grant; the RS256 assertion is verified against the registered public key, `aud` must be
  Google's token URL and `scope` must include the calendar scope; a `sub` (domain-wide delegation) must be allowed.
  Answers a Bearer access token that every API call needs (401 otherwise).
* `calendar/v3/calendars/{id}` (get) and `.../events` insert / get / patch / delete / list, per-calendar ACL
  (no share → 404, read-only share + write → 403 requiredAccessLevel), base32hex ids 5–1024 long, 409 on an id that
  exists or existed, 410 on deleting twice, deleted events kept as `cancelled` (get returns them in full; lists return
  only `id`/`status`, which is all Google guarantees), list paging (`nextPageToken`; `nextSyncToken` on the last page
  only), sync tokens (changes since, deleted ones included; 400 with timeMin/timeMax/privateExtendedProperty/q/
  orderBy/updatedMin; 410 once expired), `privateExtendedProperty=k=v` (several: all must match).
* `POST /batch/calendar/v3`: multipart/mixed of `application/http` parts, each answered in a `response-<Content-ID>`
  part; at most 1,000 parts (Google's documented batch limit).
* Faults: `fail(...)` makes the next N requests matching a method / path pattern answer a status (409, 410, 429, 500,
  503, 403 rateLimitExceeded…) or drop the connection; `latency` sleeps on every HTTP round trip. Batch parts are
  matched one by one, so one part of a batch can fail alone.
* `log`: every HTTP round trip (and, flagged, every batch part), to count requests.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from tests.fake_calendar.keys import GrantRefused, verify_assertion

Json = dict[str, Any]

BATCH_PATH = "/batch/calendar/v3"
MAX_BATCH_PARTS = 1000
_EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_SERVER_FIELDS = frozenset(
    {"kind", "etag", "created", "updated", "htmlLink", "iCalUID", "sequence", "organizer", "creator"}
)
_NOT_WITH_SYNC_TOKEN = (
    "timeMin",
    "timeMax",
    "privateExtendedProperty",
    "sharedExtendedProperty",
    "q",
    "orderBy",
    "updatedMin",
    "iCalUID",
)
_ROUTE = re.compile(r"^/calendar/v3/calendars/(?P<cal>[^/]+)(?P<events>/events(?:/(?P<event>[^/]+))?)?$")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        )


@dataclass
class LoggedRequest:
    """One HTTP round trip (`in_batch=False`) or one part of a batch (`in_batch=True`)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    in_batch: bool = False
    parts: int = 0  # for a batch round trip: how many parts it carried
    principal: str | None = None


@dataclass
class _Fault:
    status: int
    method: str | None
    path: re.Pattern[str] | None
    remaining: int
    reason: str | None
    message: str | None
    drop: str | None  # "before" (nothing processed) or "after" (processed, answer lost)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or bool(self.path.search(path)))


@dataclass
class _Calendar:
    time_zone: str = "UTC"
    acl: dict[str, str] = field(default_factory=dict)  # principal → "reader" | "writer" | "owner"
    events: dict[str, Json] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)  # event id → sequence number of its latest write


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, domain: str = "global") -> None:
        super().__init__(message)
        self.response = google_error(status, reason, message, domain)


def google_error(status: int, reason: str, message: str, domain: str = "global") -> Response:
    """An error answer in the shape Google's JSON APIs use."""
    body = {
        "error": {
            "errors": [{"domain": domain, "reason": reason, "message": message}],
            "code": status,
            "message": message,
        }
    }
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'} if status == 401 else {}
    return Response.json(status, body, headers)


class FakeCalendarServer:
    """The fake Google: state, faults and the request log. `start()` serves it on 127.0.0.1 in a thread."""

    def __init__(self, *, page_size: int = 250) -> None:
        self._lock = threading.RLock()
        self.page_size = page_size
        self.latency = 0.0
        self.log: list[LoggedRequest] = []
        self.calendars: dict[str, _Calendar] = {}
        self._faults: list[_Fault] = []
        self._accounts: dict[str, str] = {}  # client_email → public key PEM
        self._delegation: dict[str, set[str]] = {}  # client_email → subjects it may act as
        self._tokens: dict[str, str] = {}  # access token → principal
        self._sync_tokens: dict[str, tuple[str, int, int]] = {}  # token → (calendar, snapshot seq, epoch)
        self._page_tokens: dict[str, tuple[str, list[Json], int, bool]] = {}  # → (query, rest, snapshot, is_sync)
        self._seq = 0
        self._epoch = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ----------------------------------------------------------------------------------------------------

    def register_service_account(
        self, client_email: str, public_key_pem: str, *, delegation_subjects: tuple[str, ...] = ()
    ) -> None:
        """Accept JWT grants from this account, signed with the matching private key."""
        with self._lock:
            self._accounts[client_email] = public_key_pem
            self._delegation[client_email] = set(delegation_subjects)

    def share(self, calendar_id: str, principal: str, role: str = "writer", *, time_zone: str = "UTC") -> None:
        """Share (and create if needed) a calendar with a service account or user."""
        with self._lock:
            calendar = self.calendars.setdefault(calendar_id, _Calendar(time_zone=time_zone))
            calendar.acl[principal] = role

    def unshare(self, calendar_id: str, principal: str) -> None:
        with self._lock:
            self.calendars[calendar_id].acl.pop(principal, None)

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        reason: str | None = None,
        message: str | None = None,
        drop: str | None = None,
    ) -> None:
        """The next `times` requests (or batch parts) matching `method` and the regex `path` answer `status`.

        `drop="before"` closes the connection without processing or answering; `drop="after"` processes the
        request and then closes the connection (the answer is lost). Drops apply to whole round trips only."""
        if drop not in (None, "before", "after"):
            raise ValueError("drop is 'before' or 'after'")
        with self._lock:
            self._faults.append(
                _Fault(status, method, re.compile(path) if path else None, times, reason, message, drop)
            )

    def expire_sync_tokens(self) -> None:
        """Every sync token handed out so far answers 410 (Google does this when a token is too old)."""
        with self._lock:
            self._epoch += 1

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far answers 401 (as when it expires early or is revoked)."""
        with self._lock:
            self._tokens.clear()

    # -- inspection ------------------------------------------------------------------------------------------------

    def round_trips(self, *, include_token: bool = False) -> int:
        """HTTP round trips received (a batch counts once); token requests only if asked."""
        with self._lock:
            return sum(1 for r in self.log if not r.in_batch and (include_token or r.path != "/token"))

    def api_calls(self) -> list[LoggedRequest]:
        """Every calendar API call: plain requests and batch parts (not the batch envelopes, not tokens)."""
        with self._lock:
            return [r for r in self.log if r.path not in ("/token", BATCH_PATH)]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def stored(self, calendar_id: str, event_id: str) -> Json | None:
        with self._lock:
            event = self.calendars.get(calendar_id, _Calendar()).events.get(event_id)
            return None if event is None else json.loads(json.dumps(event))

    # -- serving ---------------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on a free loopback port; returns the root URL (`http://127.0.0.1:<port>/`)."""
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-calendar", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @contextmanager
    def running(self) -> Iterator[FakeCalendarServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # -- request handling ------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[Response | None, bool]:
        """Answer one HTTP round trip; the flag says to close the connection without answering."""
        if self.latency:
            time.sleep(self.latency)
        path = urllib.parse.urlsplit(target).path
        fault = self._take_fault(method, path)
        entry = LoggedRequest(method, path, urllib.parse.parse_qs(urllib.parse.urlsplit(target).query), 0)
        with self._lock:
            self.log.append(entry)
        if fault is not None and fault.drop == "before":
            entry.status = -1
            return None, True
        if fault is not None and fault.drop is None:
            response = _fault_response(fault)
        elif path == "/token" and method == "POST":
            response = self._token(body)
        elif path == BATCH_PATH and method == "POST":
            response = self._batch(headers, body, entry)
        else:
            response = self._api(method, target, headers, body, entry)
        entry.status = response.status
        if fault is not None and fault.drop == "after":
            entry.status = -1
            return None, True
        return response, False

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _token(self, body: bytes) -> Response:
        form = urllib.parse.parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return Response.json(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
        try:
            with self._lock:
                keys = dict(self._accounts)
            claims = verify_assertion(form.get("assertion", [""])[0], keys)
            principal = str(claims["iss"])
            subject = claims.get("sub")
            if subject is not None:
                with self._lock:
                    allowed = subject in self._delegation.get(principal, set())
                if not allowed:
                    raise GrantRefused(
                        401,
                        "unauthorized_client",
                        "Client is unauthorized to retrieve access tokens using this method, or client not "
                        "authorized for any of the scopes requested.",
                    )
                principal = str(subject)
        except GrantRefused as exc:
            return Response.json(exc.status, {"error": exc.error, "error_description": exc.description})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = principal
        return Response.json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _principal(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self._lock:
            return self._tokens.get(auth[len("Bearer ") :].strip())

    def _batch(self, headers: dict[str, str], body: bytes, entry: LoggedRequest) -> Response:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/mixed"):
            return google_error(400, "badRequest", "Batch requests must be multipart/mixed")
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        parts = message.get_payload()
        if not isinstance(parts, list) or not parts:
            return google_error(400, "badRequest", "Empty batch request")
        entry.parts = len(parts)
        if len(parts) > MAX_BATCH_PARTS:
            return google_error(400, "badRequest", f"A batch request may hold at most {MAX_BATCH_PARTS} calls")
        boundary = "batch_" + secrets.token_hex(12)
        out: list[bytes] = []
        for part in parts:
            if not isinstance(part, email.message.Message):
                return google_error(400, "badRequest", "Malformed batch request")
            content_id = str(part.get("Content-ID", "")).strip()
            inner = part.get_payload(decode=False)
            if isinstance(inner, list):
                return google_error(400, "badRequest", "Nested multipart is not supported")
            method, target, inner_headers, inner_body = _parse_http_part(str(inner))
            # A part without its own Authorization uses the envelope's, as Google does.
            inner_headers.setdefault("authorization", headers.get("authorization", ""))
            part_path = urllib.parse.urlsplit(target).path
            fault = self._take_fault(method, part_path)
            part_entry = LoggedRequest(
                method, part_path, urllib.parse.parse_qs(urllib.parse.urlsplit(target).query), 0, in_batch=True
            )
            with self._lock:
                self.log.append(part_entry)
            if fault is not None:
                response = _fault_response(fault)
            else:
                response = self._api(method, target, inner_headers, inner_body, part_entry)
            part_entry.status = response.status
            answer_id = "<response-" + content_id[1:] if content_id.startswith("<") else "response-" + content_id
            phrase = HTTPStatus(response.status).phrase
            head = f"HTTP/1.1 {response.status} {phrase}\r\n"
            for key, value in response.headers.items():
                head += f"{key}: {value}\r\n"
            head += f"Content-Length: {len(response.body)}\r\n\r\n"
            out.append(
                (f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {answer_id}\r\n\r\n" + head).encode()
                + response.body
                + b"\r\n"
            )
        out.append(f"--{boundary}--\r\n".encode())
        return Response(200, b"".join(out), {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    def _api(self, method: str, target: str, headers: dict[str, str], body: bytes, entry: LoggedRequest) -> Response:
        split = urllib.parse.urlsplit(target)
        match = _ROUTE.match(split.path)
        if match is None:
            return google_error(404, "notFound", "Not Found")
        principal = self._principal(headers)
        entry.principal = principal
        if principal is None:
            return google_error(401, "authError", "Invalid Credentials")
        calendar_id = urllib.parse.unquote(match["cal"])
        event_id = None if match["event"] is None else urllib.parse.unquote(match["event"])
        is_events = match["events"] is not None
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            with self._lock:
                calendar = self.calendars.get(calendar_id)
                role = None if calendar is None else calendar.acl.get(principal)
                if calendar is None or role is None:
                    raise _ApiError(404, "notFound", "Not Found")
                if method not in ("GET",) and role == "reader":
                    raise _ApiError(403, "requiredAccessLevel", "You need to have writer access to this calendar.")
                if not is_events:
                    if method != "GET":
                        raise _ApiError(405, "methodNotAllowed", "Method not allowed")
                    return Response.json(
                        200,
                        {
                            "kind": "calendar#calendar",
                            "id": calendar_id,
                            "summary": calendar_id,
                            "timeZone": calendar.time_zone,
                            "etag": '"1"',
                        },
                    )
                payload = _json_body(body) if method in ("POST", "PATCH", "PUT") else {}
                if event_id is None and method == "POST":
                    return Response.json(200, self._insert(calendar_id, calendar, payload, principal))
                if event_id is None and method == "GET":
                    return Response.json(200, self._list(calendar_id, calendar, query))
                if event_id is not None and method == "GET":
                    return Response.json(200, self._get(calendar, event_id))
                if event_id is not None and method == "PATCH":
                    return Response.json(200, self._patch(calendar, event_id, payload))
                if event_id is not None and method == "DELETE":
                    self._delete(calendar, event_id)
                    return Response(204)
                raise _ApiError(405, "methodNotAllowed", "Method not allowed")
        except _ApiError as exc:
            return exc.response

    # -- events ----------------------------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _write(self, calendar: _Calendar, event: Json) -> None:
        seq = self._next_seq()
        event["updated"] = _now()
        event["etag"] = f'"{seq:016d}"'
        calendar.events[event["id"]] = event
        calendar.seq[event["id"]] = seq

    def _insert(self, calendar_id: str, calendar: _Calendar, payload: Json, principal: str) -> Json:
        event_id = payload.get("id")
        if event_id is None:
            event_id = "".join(secrets.choice(_BASE32HEX) for _ in range(26))
        if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
            raise _ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in calendar.events:
            raise _ApiError(409, "duplicate", "The requested identifier already exists.")
        event = {key: value for key, value in payload.items() if key not in _SERVER_FIELDS}
        status = event.get("status", "confirmed")
        if status not in ("confirmed", "tentative"):
            raise _ApiError(400, "invalid", "Invalid event status.")
        _interval(event, calendar.time_zone)
        now = _now()
        event.update(
            kind="calendar#event",
            id=event_id,
            status=status,
            created=now,
            sequence=0,
            iCalUID=f"{event_id}@google.com",
            htmlLink=f"https://www.google.com/calendar/event?eid={event_id}",
            creator={"email": principal},
            organizer={"email": calendar_id, "self": True},
        )
        self._write(calendar, event)
        return event

    def _get(self, calendar: _Calendar, event_id: str) -> Json:
        event = calendar.events.get(event_id)
        if event is None:
            raise _ApiError(404, "notFound", "Not Found")
        return event  # deleted events too, in full, with status "cancelled"

    def _patch(self, calendar: _Calendar, event_id: str, payload: Json) -> Json:
        event = calendar.events.get(event_id)
        if event is None:
            raise _ApiError(404, "notFound", "Not Found")
        if payload.get("id", event_id) != event_id:
            raise _ApiError(400, "invalid", "Invalid resource id value.")
        # Google lets a deleted event be patched (setting status "confirmed" restores it): so does the fake.
        updated = json.loads(json.dumps(event))
        _merge(updated, {key: value for key, value in payload.items() if key not in _SERVER_FIELDS})
        if updated.get("status") not in ("confirmed", "tentative", "cancelled"):
            raise _ApiError(400, "invalid", "Invalid event status.")
        if updated["status"] != "cancelled":
            _interval(updated, calendar.time_zone)
        updated["sequence"] = int(updated.get("sequence", 0)) + 1
        self._write(calendar, updated)
        return updated

    def _delete(self, calendar: _Calendar, event_id: str) -> None:
        event = calendar.events.get(event_id)
        if event is None:
            raise _ApiError(404, "notFound", "Not Found")
        if event.get("status") == "cancelled":
            raise _ApiError(410, "deleted", "Resource has been deleted")
        event = dict(event, status="cancelled")
        self._write(calendar, event)

    def _list(self, calendar_id: str, calendar: _Calendar, query: dict[str, list[str]]) -> Json:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        max_results = int(one("maxResults") or self.page_size)
        if not 1 <= max_results <= 2500:
            raise _ApiError(400, "invalid", "Invalid value for maxResults")
        sync_token = one("syncToken")
        page_token = one("pageToken")
        if sync_token is not None:
            clashing = [name for name in _NOT_WITH_SYNC_TOKEN if name in query]
            if clashing:
                raise _ApiError(400, "invalid", f"Sync token cannot be combined with {', '.join(clashing)}.")
        fingerprint = json.dumps(
            {k: v for k, v in sorted(query.items()) if k not in ("pageToken", "maxResults", "alt")}
            | {"c": [calendar_id]}
        )
        if page_token is not None:
            stored = self._page_tokens.get(page_token)
            if stored is None or stored[0] != fingerprint:
                raise _ApiError(400, "invalid", "Invalid page token value.")
            _, rest, snapshot, is_sync = stored
        elif sync_token is not None:
            since = self._sync_tokens.get(sync_token)
            if since is None:
                raise _ApiError(400, "invalid", "Invalid sync token value.")
            token_calendar, since_seq, epoch = since
            if token_calendar != calendar_id or epoch != self._epoch:
                raise _ApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
            snapshot, is_sync = self._seq, True
            changed = [eid for eid, seq in calendar.seq.items() if since_seq < seq <= snapshot]
            changed.sort(key=lambda eid: calendar.seq[eid])
            rest = [_listed(calendar.events[eid]) for eid in changed]
        else:
            snapshot, is_sync = self._seq, False
            rest = self._full_listing(calendar, query)
        items, rest = rest[:max_results], rest[max_results:]
        response: Json = {
            "kind": "calendar#events",
            "etag": f'"{snapshot:016d}"',
            "summary": calendar_id,
            "updated": _now(),
            "timeZone": calendar.time_zone,
            "accessRole": "writer",
            "defaultReminders": [],
            "items": items,
        }
        if rest:
            token = "page-" + secrets.token_urlsafe(12)
            self._page_tokens[token] = (fingerprint, rest, snapshot, is_sync)
            response["nextPageToken"] = token
        else:
            token = "sync-" + secrets.token_urlsafe(12)
            self._sync_tokens[token] = (calendar_id, snapshot, self._epoch)
            response["nextSyncToken"] = token
        return response

    def _full_listing(self, calendar: _Calendar, query: dict[str, list[str]]) -> list[Json]:
        show_deleted = (query.get("showDeleted") or ["false"])[-1] == "true"
        window = (_query_time(query, "timeMin"), _query_time(query, "timeMax"))
        props = []
        for raw in query.get("privateExtendedProperty", []):
            key, sep, value = raw.partition("=")
            if not sep or not key:
                raise _ApiError(400, "invalid", "Invalid privateExtendedProperty value: use propertyName=value.")
            props.append((key, value))
        selected: list[tuple[datetime, str, Json]] = []
        for event in calendar.events.values():
            cancelled = event.get("status") == "cancelled"
            if cancelled and not show_deleted:
                continue
            private = (event.get("extendedProperties") or {}).get("private") or {}
            if any(private.get(key) != value for key, value in props):
                continue
            start, end = _interval(event, calendar.time_zone)
            if window[0] is not None and end <= window[0]:
                continue
            if window[1] is not None and start >= window[1]:
                continue
            selected.append((start, event["id"], _listed(event)))
        selected.sort(key=lambda row: (row[0], row[1]))
        return [row[2] for row in selected]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to each answer.
    disable_nagle_algorithm = True
    fake: FakeCalendarServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        response, drop = self.fake.handle(self.command, self.path, headers, body)
        if drop or response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is `fake.log`


def _fault_response(fault: _Fault) -> Response:
    defaults = {
        403: ("rateLimitExceeded", "Rate Limit Exceeded", "usageLimits"),
        409: ("duplicate", "The requested identifier already exists.", "global"),
        410: ("deleted", "Resource has been deleted", "global"),
        429: ("rateLimitExceeded", "Rate Limit Exceeded", "usageLimits"),
        500: ("backendError", "Backend Error", "global"),
        503: ("backendError", "Backend Error", "global"),
    }
    reason, message, domain = defaults.get(fault.status, ("injected", "Injected fault", "global"))
    return google_error(fault.status, fault.reason or reason, fault.message or message, domain)


def _parse_http_part(text: str) -> tuple[str, str, dict[str, str], bytes]:
    """An `application/http` batch part: request line, headers, blank line, body."""
    text = text.lstrip("\r\n")
    request_line, _, rest = text.partition("\n")
    method, target, _version = request_line.strip().split(" ", 2)
    head, _, body = rest.replace("\r\n", "\n").partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return method, target, headers, body.encode()


def _json_body(body: bytes) -> Json:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise _ApiError(400, "parseError", "Parse Error") from exc
    if not isinstance(data, dict):
        raise _ApiError(400, "parseError", "Parse Error")
    return data


def _listed(event: Json) -> Json:
    """How an event appears in a list: deleted events carry only what Google guarantees."""
    if event.get("status") == "cancelled":
        return {"kind": "calendar#event", "etag": event.get("etag"), "id": event["id"], "status": "cancelled"}
    return json.loads(json.dumps(event))


def _interval(event: Json, time_zone: str) -> tuple[datetime, datetime]:
    start = _event_time(event.get("start"), "start", time_zone)
    end = _event_time(event.get("end"), "end", time_zone)
    if end <= start:
        raise _ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
    return start, end


def _event_time(value: Any, which: str, time_zone: str) -> datetime:
    if not isinstance(value, dict) or not (value.get("dateTime") or value.get("date")):
        raise _ApiError(400, "required", f"Missing {which} time.")
    try:
        if value.get("dateTime"):
            moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                zone = value.get("timeZone")
                if not zone:
                    raise _ApiError(400, "invalid", f"Missing time zone definition for {which} time.")
                moment = moment.replace(tzinfo=ZoneInfo(str(zone)))
            return moment.astimezone(UTC)
        return datetime.combine(date.fromisoformat(str(value["date"])), dtime(), tzinfo=ZoneInfo(time_zone))
    except ValueError as exc:
        raise _ApiError(400, "invalid", f"Invalid {which} time.") from exc


def _query_time(query: dict[str, list[str]], name: str) -> datetime | None:
    values = query.get(name)
    if not values:
        return None
    try:
        moment = datetime.fromisoformat(values[-1].replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _ApiError(400, "badRequest", f"Bad Request: {name} must be an RFC3339 timestamp with a time zone offset")
    return moment.astimezone(UTC)


def _merge(target: Json, patch: Json) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
