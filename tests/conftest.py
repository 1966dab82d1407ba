"""Shared fixtures: loopback-only network guard, clean settings, databases (SQLite and PostgreSQL), and a factory
for a complete service container on sandbox gateways with a fixed clock."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Monday 2 March 2026, 09:00 in Vancouver: a weekday morning a week before the DST change.
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
# A Streamlit [auth] (OIDC) section for AppTests of live-mode sign-in; never contacted (a closed loopback port).
OIDC_TEST_AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret-not-real",
    "client_id": "roomdesk-test.apps.example",
    "client_secret": "test-client-secret-not-real",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    # Tests never read a developer's real secrets or environment.
    from services.core.settings import Settings

    setting_env = {name.upper() for name in Settings.model_fields}  # every setting, whatever is added later
    for key in list(os.environ):
        if key.upper() in setting_env:
            del os.environ[key]
    os.environ["ROOMDESK_SECRETS_FILE"] = str(ROOT / "tests" / "no-secrets.toml")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


# --------------------------------------------------------------------------------------------- network guard

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOOPBACK_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost"}


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Name lookups count too: a DNS query for a public host leaves the machine even if no connect follows."""
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOOPBACK_NAMES:
        try:
            if not ipaddress.ip_address(name).is_loopback:
                raise OSError(f"test tried to resolve non-loopback address {name}")
        except ValueError:
            raise OSError(f"test tried to resolve non-loopback host {name!r}") from None
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host in ("localhost",):
            return
        raise OSError(f"test tried to reach non-loopback host {host!r}") from None
    if not ip.is_loopback:
        raise OSError(f"test tried to reach non-loopback address {host}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Any test that opens a socket to a non-loopback address fails."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


# --------------------------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server on loopback. Missing server = failed run, never a skip."""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is required for the integration tests and is not reachable at "
            f"{PG_ADMIN_URL.split('@')[-1]}: {exc}",
            pytrace=False,
        )
    return PG_ADMIN_URL


def _sqlalchemy_pg_url(url: str, dbname: str) -> str:
    base = url.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + dbname


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    import psycopg

    name = f"roomdesk_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _sqlalchemy_pg_url(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roomdesk.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


# --------------------------------------------------------------------------------------------- services


class Clock:
    """A clock tests move by hand."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        from datetime import timedelta

        self.at = self.at + timedelta(**delta)
        return self.at


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: a Services container on sandbox gateways under tmp_path, with a hand-moved clock."""
    from services.core.context import build_services
    from services.core.settings import Settings

    built: list[Any] = []

    def factory(
        db_url: str | None = None, *, now: datetime = NOW, data_dir: Path | None = None, **overrides: Any
    ) -> Any:
        # Most tests are about booking mechanics and were written with pre-tax amounts: they run as a venue not
        # registered for GST would (no tax). Tests about tax pass tax_rates (see tests/tax_settings.py).
        overrides.setdefault("tax_rates", [])
        settings = Settings(data_dir=data_dir or tmp_path / "data", database_url=db_url, **overrides)
        svc = build_services(settings)
        svc.clock = Clock(now)
        built.append(svc)
        return svc

    yield factory
    for svc in built:
        svc.engine.dispose()


@pytest.fixture
def svc(make_services: Callable[..., Any]) -> Any:
    """Services on SQLite (the embedded default)."""
    return make_services()


@pytest.fixture
def booking_request() -> Callable[..., Any]:
    """Factory for a valid BookingRequest (indico-style: override what the test is about)."""
    from services.booking import BookingRequest

    def factory(**kw: Any) -> BookingRequest:
        kw.setdefault("room", "boardroom")
        kw.setdefault("dates", (date(2026, 3, 4),))
        kw.setdefault("start", time(10, 0))
        kw.setdefault("end", time(12, 0))
        kw.setdefault("customer_name", "Ava Nguyen")
        kw.setdefault("customer_email", "ava@example.org")
        kw.setdefault("customer_phone", "604-555-0101")
        kw["dates"] = tuple(kw["dates"])
        return BookingRequest(**kw)

    return factory
