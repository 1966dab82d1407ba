"""Google Calendar adapter: `CalendarGateway` on google-api-python-client + google-auth with a service account.

One code path for production and tests: the service is built offline from the discovery document that ships inside
googleapiclient; only `rootUrl` changes when `GOOGLE_API_ROOT` points at a Calendar-compatible test server (a
`client_options` endpoint would move ordinary calls but not batch requests, which follow `rootUrl`). Every request —
the token grant included — goes through one `httplib2.Http(proxy_info=None)`, since with a proxy variable set httplib2
otherwise fails even for 127.0.0.1.

Errors become `services.core.errors` exceptions with messages safe to show staff; the original is logged, never the key.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google_auth_httplib2
import googleapiclient
import httplib2
from google.auth.exceptions import GoogleAuthError, RefreshError
from google.auth.exceptions import TransportError as AuthTransportError
from google.oauth2 import service_account
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from services.core.errors import ConfigError, EventExists, GatewayError, NotFound, TimeoutFault
from services.core.settings import Settings
from services.gateways.base import Json

log = logging.getLogger(__name__)

PROVIDER = "calendar"
SCOPES = ["https://www.googleapis.com/auth/calendar"]
DISCOVERY_DOCUMENT = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "calendar.v3.json"
# Google accepts up to 1,000 calls per batch, but each call counts against the per-user quota (600/min): 50 keeps
# one batch well inside it, so a rate-limit burst stays small, and a whole 10-day booking still fits in one.
MAX_BATCH = 50
PAGE_SIZE = 250
DEFAULT_RETRIES = 4
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded", "usageLimits"})
# Whatever the SDK, google-auth or the socket layer may raise for one call.
_SDK_ERRORS: tuple[type[Exception], ...] = (HttpError, GoogleAuthError, httplib2.HttpLib2Error, OSError)


class _ServiceAccountCredentials(service_account.Credentials):
    """Service-account credentials without google-auth's Regional Access Boundary lookup.

    google-auth 2.62 calls `_maybe_start_regional_access_boundary_refresh` from `before_request` on every request;
    unless a recent answer is cached or a failure is cooling down (15 min, doubling), it starts a daemon thread that,
    for a service account without a subject, GETs
    `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/<email>/allowedLocations` with the access
    token, through our Http. The room calendars need no location boundary, the call would leave loopback in tests
    and adds an IAM dependency in production. There is no public switch in 2.62 (GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED
    is defined in `environment_vars` but read nowhere; only compute-engine credentials have `_rab_disabled`), so we
    answer the one question the library asks. `_make_copy` builds copies with `self.__class__`, so `with_subject` and
    `with_scopes` keep this."""

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        return False


@dataclass(frozen=True)
class _Call:
    """One API call of a batch: what to build from the `events()` resource, and what to name in errors."""

    calendar_id: str
    event_id: str | None
    build: Callable[[Any], Any]


class GoogleCalendar:
    """`CalendarGateway` on the Google Calendar API v3 (one event per booked day on each room's calendar)."""

    mode = "google"

    def __init__(
        self,
        settings: Settings,
        *,
        calendar_ids: list[str],
        num_retries: int = DEFAULT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.calendar_ids = list(calendar_ids)
        self._credentials = _load_credentials(settings)
        # Who the calendars must be shared with: the delegated user when acting as one, else the service account.
        self.principal: str = settings.google_delegated_subject or self._credentials.service_account_email
        self._document = _discovery_document(settings.google_api_root)
        self._timeout = settings.gateway_timeout_seconds
        self._tz = settings.tz
        self._num_retries = num_retries
        self._sleep = sleep
        # httplib2.Http is not thread-safe: each thread (Streamlit runs sessions on several) builds its own service.
        self._local = threading.local()
        self._reachable: set[str] = set()  # calendars a call has succeeded on: a 404 there means "no such event"

    # -- CalendarGateway -------------------------------------------------------------------------------------------

    def insert_event(self, calendar_id: str, event: Json) -> Json:
        """Insert the event under its own id; 409 (id exists or existed) raises EventExists."""
        event_id = str(event.get("id") or "")
        try:
            return dict(self._call(calendar_id, _insert(calendar_id, event)))
        except _SDK_ERRORS as exc:
            raise self._failure(exc, calendar_id, event_id=event_id) from exc

    def get_event(self, calendar_id: str, event_id: str) -> Json | None:
        """The event (Google returns deleted ones with status `cancelled`), or None if it never existed."""
        try:
            return dict(self._call(calendar_id, lambda events: events.get(calendarId=calendar_id, eventId=event_id)))
        except _SDK_ERRORS as exc:
            if _status(exc) == 404 and self._calendar_reachable(calendar_id):
                return None
            raise self._failure(exc, calendar_id, event_id=event_id) from exc

    def patch_event(self, calendar_id: str, event_id: str, patch: Json) -> Json:
        """Merge `patch` into the event; NotFound if it never existed or is deleted."""
        try:
            event = dict(
                self._call(
                    calendar_id,
                    lambda events: events.patch(
                        calendarId=calendar_id, eventId=event_id, body=patch, sendUpdates="none"
                    ),
                )
            )
        except _SDK_ERRORS as exc:
            if _status(exc) == 404 and self._calendar_reachable(calendar_id):
                raise NotFound(f"Calendar event {event_id} does not exist on {calendar_id}") from exc
            raise self._failure(exc, calendar_id, event_id=event_id) from exc
        # Google accepts a patch on a deleted event (that is how one is restored): the contract calls it NotFound.
        if event.get("status") == "cancelled" and patch.get("status") != "cancelled":
            raise NotFound(f"Calendar event {event_id} was deleted from {calendar_id}")
        return event

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Delete the event; already deleted (410) or never existing (404) counts as done."""
        try:
            self._call(calendar_id, _delete(calendar_id, event_id))
        except _SDK_ERRORS as exc:
            if self._gone(exc, calendar_id):
                return
            raise self._failure(exc, calendar_id, event_id=event_id) from exc

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
        """One page of events.list (recurring events expanded). An expired sync token raises GatewayError(410).

        Google refuses a sync token combined with timeMin/timeMax/privateExtendedProperty (400): the parameters go
        as given, so that answer reaches the caller as GatewayError(status=400)."""
        params: dict[str, Any] = {
            "calendarId": calendar_id,
            "singleEvents": True,  # the same on full and incremental listings, as Google asks of a sync
            "maxResults": max_results,
            "showDeleted": show_deleted,
            "timeMin": _rfc3339(time_min, "timeMin"),
            "timeMax": _rfc3339(time_max, "timeMax"),
            "privateExtendedProperty": private_property,
            "syncToken": sync_token,
            "pageToken": page_token,
        }
        try:
            return dict(self._call(calendar_id, lambda events: events.list(**params)))
        except _SDK_ERRORS as exc:
            raise self._failure(exc, calendar_id) from exc

    def insert_events(self, calendar_id: str, events: list[Json]) -> list[Json | GatewayError]:
        """Insert several events in one batch request (per 50); each part succeeds or fails on its own."""
        calls = [_Call(calendar_id, str(event.get("id") or ""), _insert(calendar_id, event)) for event in events]
        out: list[Json | GatewayError] = []
        for call, outcome in zip(calls, self._batch(calls), strict=True):
            if isinstance(outcome, Exception):
                out.append(self._failure(outcome, calendar_id, event_id=call.event_id))
            else:
                out.append(dict(outcome))
        return out

    def delete_events(self, calendar_id: str, event_ids: list[str]) -> list[GatewayError | None]:
        """Delete several events in one batch request (per 50): None where gone (404/410 count as done)."""
        calls = [_Call(calendar_id, event_id, _delete(calendar_id, event_id)) for event_id in event_ids]
        out: list[GatewayError | None] = []
        for call, outcome in zip(calls, self._batch(calls), strict=True):
            if isinstance(outcome, Exception) and not self._gone(outcome, calendar_id):
                out.append(self._failure(outcome, calendar_id, event_id=call.event_id))
            else:
                out.append(None)
        return out

    def freebusy(self, calendar_ids: list[str], time_min: datetime, time_max: datetime) -> dict[str, list[Json]]:
        """Busy intervals of confirmed/tentative, opaque events overlapping [time_min, time_max), by calendar.

        Built from events.list rather than freebusy.query: freebusy.query answers bare start/end pairs, and Gate 2
        must tell the booking's own events (by id) from everyone else's. events.list also sees transparency and
        status, and has no calendarExpansionMax limit. Cost: one call per calendar per 2,500 events."""
        busy: dict[str, list[Json]] = {}
        for calendar_id in calendar_ids:
            intervals: list[tuple[datetime, datetime, str]] = []
            page_token: str | None = None
            while True:
                page = self.list_events(
                    calendar_id, time_min=time_min, time_max=time_max, page_token=page_token, max_results=2500
                )
                for event in page.get("items") or []:
                    if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
                        continue
                    start, end = _moment(event.get("start"), self._tz), _moment(event.get("end"), self._tz)
                    if start is not None and end is not None and end > start:
                        intervals.append((start, end, str(event.get("id", ""))))
                page_token = page.get("nextPageToken")
                if not page_token:
                    break
            intervals.sort()
            busy[calendar_id] = [
                {"start": _utc_text(start), "end": _utc_text(end), "event_id": event_id}
                for start, end, event_id in intervals
            ]
        return busy

    # -- beyond the protocol ---------------------------------------------------------------------------------------

    def check_access(self) -> dict[str, str]:
        """For each configured room calendar the service account cannot see, the message to show staff."""
        problems: dict[str, str] = {}
        for calendar_id in self.calendar_ids:
            try:
                if not self._calendar_reachable(calendar_id):
                    problems[calendar_id] = self._not_shared(calendar_id, 404).message
            except GatewayError as exc:
                problems[calendar_id] = exc.message
        return problems

    # -- calls -----------------------------------------------------------------------------------------------------

    def _service(self) -> Any:
        service = getattr(self._local, "service", None)
        if service is None:
            http = google_auth_httplib2.AuthorizedHttp(
                self._credentials, http=httplib2.Http(timeout=self._timeout, proxy_info=None)
            )
            service = build_from_document(self._document, http=http)
            self._local.service = service
        return service

    def _execute(self, request: Any) -> Any:
        # googleapiclient's backoff (rand() * 2**n seconds) sleeps through this attribute; tests pass a recorder.
        request._sleep = self._sleep
        return request.execute(num_retries=self._num_retries)

    def _call(self, calendar_id: str, build: Callable[[Any], Any]) -> Any:
        """One request with `execute(num_retries=…)` (5xx, 429, 403 rate limits, connection errors)."""
        result = self._execute(build(self._service().events()))
        self._reachable.add(calendar_id)
        return result if result is not None else {}

    def _batch(self, calls: Sequence[_Call]) -> list[Any]:
        """Run the calls as batch requests of at most 50; per call, the response or the exception it met.

        Google never retries inside a batch: here a failed envelope (5xx, 429, connection error) resends its parts
        and a retriable part (5xx, 429, 403 rate limit) goes again alone in the next batch, with the same backoff
        as single calls. 409, 410 and 403 quotaExceeded are answers, never retried."""
        outcomes: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(self._num_retries + 1):
            if attempt:
                self._sleep(random.random() * 2**attempt)
            failed: list[int] = []
            for first in range(0, len(pending), MAX_BATCH):
                for index, outcome in self._send_batch(calls, pending[first : first + MAX_BATCH]).items():
                    outcomes[index] = outcome
                    if isinstance(outcome, Exception) and _retriable(outcome):
                        failed.append(index)
                    elif not isinstance(outcome, Exception):
                        self._reachable.add(calls[index].calendar_id)
            pending = failed
            if not pending:
                break
        return outcomes

    def _send_batch(self, calls: Sequence[_Call], chunk: list[int]) -> dict[int, Any]:
        service = self._service()
        answers: dict[int, Any] = {}

        def on_answer(request_id: str, response: Any, exception: Exception | None) -> None:
            answers[int(request_id)] = exception if exception is not None else (response or {})

        batch = service.new_batch_http_request(callback=on_answer)
        events = service.events()
        for index in chunk:
            batch.add(calls[index].build(events), request_id=str(index))
        try:
            batch.execute()
        except _SDK_ERRORS as exc:  # the envelope failed: every part shares its fate
            return dict.fromkeys(chunk, exc)
        lost = GatewayError("Google Calendar's batch answer left out a call", provider=PROVIDER, status=502)
        return {index: answers.get(index, lost) for index in chunk}

    def _calendar_reachable(self, calendar_id: str) -> bool:
        """Whether the service account can see the calendar (Google answers 404 for an unshared calendar and for
        an unknown event alike; calendars.get tells them apart, once per calendar)."""
        if calendar_id in self._reachable:
            return True
        try:
            self._execute(self._service().calendars().get(calendarId=calendar_id))
        except _SDK_ERRORS as exc:
            if _status(exc) in (403, 404):
                return False
            raise self._failure(exc, calendar_id) from exc
        self._reachable.add(calendar_id)
        return True

    def _gone(self, exc: Exception, calendar_id: str) -> bool:
        """A delete answered 410 (deleted before) or 404 on a calendar we can see (never existed)."""
        status = _status(exc)
        return status == 410 or (status == 404 and self._calendar_reachable(calendar_id))

    # -- errors ----------------------------------------------------------------------------------------------------

    def _failure(self, exc: Exception, calendar_id: str, *, event_id: str | None = None) -> GatewayError:
        """The staff-safe error for an SDK, auth or transport failure; the original goes to the log."""
        if isinstance(exc, GatewayError):
            return exc
        # 404/409/410 are answers the callers expect (and decide on); everything else is worth a warning.
        level = logging.INFO if _status(exc) in (404, 409, 410) else logging.WARNING
        log.log(level, "Google Calendar call on %s failed: %r", calendar_id, exc)
        if isinstance(exc, HttpError):
            return self._http_failure(exc, calendar_id, event_id)
        if isinstance(exc, RefreshError):
            code = _oauth_error(exc)
            hint = (
                " and that domain-wide delegation is granted for the calendar scope"
                if code == "unauthorized_client"
                else ""
            )
            return GatewayError(
                f"Google refused the service account's sign-in ({code}): check the key file{hint}",
                transient=bool(getattr(exc, "retryable", False)),
                provider=PROVIDER,
                status=401,
            )
        if isinstance(exc, TimeoutError):
            return TimeoutFault("Google Calendar did not answer in time", provider=PROVIDER)
        if isinstance(exc, (AuthTransportError, httplib2.HttpLib2Error, OSError, GoogleAuthError)):
            return GatewayError("Google Calendar could not be reached", transient=True, provider=PROVIDER)
        return GatewayError("Google Calendar failed unexpectedly", transient=True, provider=PROVIDER)

    def _http_failure(self, exc: HttpError, calendar_id: str, event_id: str | None) -> GatewayError:
        status, reason, message = _error_info(exc)
        if status == 409 and event_id:
            return EventExists(event_id)
        if status == 410:
            return GatewayError(
                "The calendar sync token has expired; a full sync is needed",
                transient=False,
                provider=PROVIDER,
                status=410,
            )
        if status == 403 and reason == "forbiddenForServiceAccounts":
            return GatewayError(
                "Google Calendar does not let a service account invite attendees without domain-wide delegation",
                transient=False,
                provider=PROVIDER,
                status=403,
            )
        if status == 404 or (status == 403 and reason not in _RATE_REASONS | _QUOTA_REASONS):
            return self._not_shared(calendar_id, status)
        if status == 403 and reason in _QUOTA_REASONS:
            return GatewayError(
                "Google Calendar's usage quota is used up; try again later",
                transient=True,
                provider=PROVIDER,
                status=403,
            )
        if status == 401:
            return GatewayError(
                "Google Calendar refused the service account's access token: check the key file",
                transient=False,
                provider=PROVIDER,
                status=401,
            )
        if status == 429 or status == 403:
            return GatewayError(
                "Google Calendar is rate-limiting requests; try again shortly",
                transient=True,
                provider=PROVIDER,
                status=status,
            )
        if status is not None and status >= 500:
            return GatewayError(
                f"Google Calendar is unavailable right now (HTTP {status}); try again shortly",
                transient=True,
                provider=PROVIDER,
                status=status,
            )
        return GatewayError(
            f"Google Calendar refused the request: {message or reason or 'HTTP ' + str(status)}",
            transient=False,
            provider=PROVIDER,
            status=status,
        )

    def _not_shared(self, calendar_id: str, status: int | None) -> GatewayError:
        return GatewayError(
            f"Google Calendar refused the service account — share the room calendar with {self.principal} "
            f"(calendar {calendar_id}, permission “Make changes to events”)",
            transient=False,
            provider=PROVIDER,
            status=status,
        )


# --------------------------------------------------------------------------------------------- helpers


def _load_credentials(settings: Settings) -> service_account.Credentials:
    path = settings.google_service_account_file
    if path is None:
        raise ConfigError("CALENDAR=google needs GOOGLE_SERVICE_ACCOUNT_FILE (the service account's JSON key)")
    try:
        credentials = _ServiceAccountCredentials.from_service_account_file(str(path), scopes=SCOPES)
    except OSError:
        raise ConfigError(f"The Google service-account key file {path} cannot be read") from None
    except (ValueError, KeyError, GoogleAuthError):
        # `from None`: the parser's own message could quote the file, and the file holds the private key.
        raise ConfigError(
            f"The file {path} is not a Google service-account key (JSON from the Cloud console)"
        ) from None
    if settings.google_delegated_subject:
        credentials = credentials.with_subject(settings.google_delegated_subject)
    return credentials


@functools.lru_cache(maxsize=4)
def _discovery_document(root: str | None) -> str:
    """The packaged calendar.v3 discovery document, with every root moved to `root` when one is given."""
    document = json.loads(DISCOVERY_DOCUMENT.read_text())
    if root:
        root = root.rstrip("/") + "/"
        document["rootUrl"] = root
        document["baseUrl"] = root + document["servicePath"]
        document.pop("mtlsRootUrl", None)  # never switch to an mTLS host behind the test server's back
    return json.dumps(document)


def _insert(calendar_id: str, event: Json) -> Callable[[Any], Any]:
    return lambda events: events.insert(calendarId=calendar_id, body=event, sendUpdates="none")


def _delete(calendar_id: str, event_id: str) -> Callable[[Any], Any]:
    return lambda events: events.delete(calendarId=calendar_id, eventId=event_id, sendUpdates="none")


def _status(exc: Exception) -> int | None:
    if isinstance(exc, HttpError):
        status = getattr(exc.resp, "status", None)
        return int(status) if status is not None else None
    if isinstance(exc, GatewayError):
        return exc.status
    return None


def _error_info(exc: HttpError) -> tuple[int | None, str, str]:
    """(HTTP status, Google's first error reason, Google's message)."""
    reason = message = ""
    try:
        error = json.loads(exc.content.decode("utf-8")).get("error") or {}
        message = str(error.get("message") or "")
        errors = error.get("errors") or []
        if errors:
            reason = str(errors[0].get("reason") or "")
    except (AttributeError, ValueError, TypeError):
        pass
    return _status(exc), reason, message


def _retriable(exc: Exception) -> bool:
    if isinstance(exc, HttpError):
        status, reason, _ = _error_info(exc)
        return status is not None and (status >= 500 or status == 429 or (status == 403 and reason in _RATE_REASONS))
    if isinstance(exc, GatewayError):
        return exc.transient
    return isinstance(exc, (ConnectionError, TimeoutError, httplib2.HttpLib2Error, AuthTransportError))


def _oauth_error(exc: RefreshError) -> str:
    """The OAuth error code (`invalid_grant`, `unauthorized_client`…) of a refused grant, nothing else."""
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return "no access token"


def _rfc3339(moment: datetime | None, name: str) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise GatewayError(f"{name} must include a time zone offset", transient=False, provider=PROVIDER, status=400)
    return _utc_text(moment)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: Any, tz: ZoneInfo) -> datetime | None:
    """An event's start or end as an aware UTC datetime; all-day dates begin at midnight in the venue's zone."""
    if not isinstance(value, dict):
        return None
    try:
        if value.get("dateTime"):
            moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo(str(value["timeZone"])) if value.get("timeZone") else tz)
            return moment.astimezone(UTC)
        if value.get("date"):
            return datetime.combine(date.fromisoformat(str(value["date"])), dtime(), tzinfo=tz).astimezone(UTC)
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return None
