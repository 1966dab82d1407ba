"""The service container: settings, catalogue, database and gateways, built once per process and passed to every
service function (cosmicpython's unit-of-work idea, kept small)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.db import make_engine, session_scope, upgrade
from services.core.catalogue import Catalogue, load_catalogue
from services.core.settings import Settings, get_settings
from services.gateways.base import CalendarGateway, MailGateway, PaymentsGateway
from services.rules.policy import Policy


def system_clock() -> datetime:
    return datetime.now(UTC)


# How a long use case reports progress to its caller (a dashboard bar, a CLI line): fraction done, what it does now.
Progress = Callable[[float, str], None]


@dataclass
class Services:
    settings: Settings
    catalogue: Catalogue
    engine: Engine
    payments: PaymentsGateway
    calendar: CalendarGateway
    mail: MailGateway
    clock: Callable[[], datetime] = field(default=system_clock)

    def now(self) -> datetime:
        return self.clock()

    @property
    def policy(self) -> Policy:
        return self.settings.policy()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.engine) as s:
            yield s


def build_services(settings: Settings | None = None, *, migrate: bool = True) -> Services:
    """Everything a process needs, on the gateways the settings choose (sandbox by default)."""
    from services.gateways.factory import build_gateways

    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalogue = load_catalogue(settings.rooms_file)
    engine = make_engine(settings.sqlalchemy_url)
    if migrate:
        upgrade(engine)
    holder: dict[str, Services] = {}
    payments, calendar, mail = build_gateways(
        settings, clock=lambda: holder["s"].now(), calendar_ids=[r.calendar_id for r in catalogue.rooms]
    )
    services = Services(settings, catalogue, engine, payments, calendar, mail)
    holder["s"] = services
    return services
