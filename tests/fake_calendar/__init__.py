"""A fake Google Calendar (API v3 + OAuth token endpoint) that the real google-api-python-client reaches over HTTP on
loopback. See `server.py` for the rules it keeps and `keys.py` for the JWT grant.

    with fake_calendar(tmp_path) as fake:
        calendar = fake.gateway()          # services.gateways.google_calendar.GoogleCalendar
        calendar.insert_event(fake.calendar_ids[0], {...})
        assert fake.server.round_trips() == 1

Test modules wrap `fake_calendar` in a fixture of their own (importing a fixture into a module trips ruff's F811).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fake_calendar.keys import DEFAULT_CLIENT_EMAIL, TestKey, generate_key, write_key_file
from tests.fake_calendar.server import FakeCalendarServer, LoggedRequest

if TYPE_CHECKING:
    from services.core.settings import Settings
    from services.gateways.google_calendar import GoogleCalendar

__all__ = ["CALENDAR_IDS", "FakeCalendar", "FakeCalendarServer", "LoggedRequest", "fake_calendar"]

CALENDAR_IDS = ["boardroom@group.calendar.google.com", "workshop@group.calendar.google.com"]


@dataclass
class FakeCalendar:
    """A running fake server, a key file whose token_uri points at it, and factories for settings and gateways."""

    server: FakeCalendarServer
    key_file: Path
    key: TestKey
    client_email: str
    calendar_ids: list[str]
    data_dir: Path
    gateways: list[Any] = field(default_factory=list)

    @property
    def calendar_id(self) -> str:
        return self.calendar_ids[0]

    def settings(self, **overrides: Any) -> Settings:
        from services.core.settings import Settings

        overrides.setdefault("data_dir", self.data_dir)
        overrides.setdefault("calendar", "google")
        overrides.setdefault("google_service_account_file", self.key_file)
        overrides.setdefault("google_api_root", self.server.url)
        overrides.setdefault("gateway_timeout_seconds", 5.0)
        return Settings(**overrides)

    def gateway(self, *, sleep: Any = None, num_retries: int = 4, **settings: Any) -> GoogleCalendar:
        """A GoogleCalendar on this server; backoff sleeps are skipped unless `sleep` is given."""
        from services.gateways.google_calendar import GoogleCalendar

        gateway = GoogleCalendar(
            self.settings(**settings),
            calendar_ids=list(self.calendar_ids),
            num_retries=num_retries,
            sleep=sleep if sleep is not None else (lambda seconds: None),
        )
        self.gateways.append(gateway)
        return gateway


@contextmanager
def fake_calendar(
    tmp_path: Path,
    *,
    calendar_ids: list[str] | None = None,
    page_size: int = 250,
    client_email: str = DEFAULT_CLIENT_EMAIL,
    delegation_subjects: tuple[str, ...] = (),
) -> Iterator[FakeCalendar]:
    """Start the fake on a free loopback port with the calendars shared (writer) with a fresh-keyed service account,
    and write that account's key JSON (token_uri → the fake) under tmp_path."""
    server = FakeCalendarServer(page_size=page_size)
    key = generate_key("primary")
    server.register_service_account(client_email, key.public_pem, delegation_subjects=delegation_subjects)
    calendars = list(calendar_ids or CALENDAR_IDS)
    for calendar_id in calendars:
        server.share(calendar_id, client_email)
    with server.running():
        key_file = write_key_file(
            tmp_path / "service-account.json", key=key, token_uri=server.token_uri, client_email=client_email
        )
        yield FakeCalendar(server, key_file, key, client_email, calendars, tmp_path / "data")
