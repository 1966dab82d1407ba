"""The service container: settings, catalogue, database and gateways, built once per process and passed to every
service function (cosmicpython's unit-of-work idea, kept small).

`catalogue`, `policy` and `staff_roles` are the venue configuration in force (services.core.venue_state): the newest
version admins saved on Settings, or the seed (the rooms file and the environment) until one is; every process sees
a new version within a couple of seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.db import make_engine, read_session_scope, session_scope, upgrade
from services.core.catalogue import Catalogue, Room, load_catalogue
from services.core.settings import Settings, get_settings
from services.core.venue_state import VenueCache, VenueState
from services.gateways.base import CalendarGateway, MailGateway, PaymentsGateway
from services.rules.policy import Policy
from services.rules.tax import TaxPolicy


def system_clock() -> datetime:
    return datetime.now(UTC)


# How a long use case reports progress to its caller (a dashboard bar, a CLI line): fraction done, what it does now.
Progress = Callable[[float, str], None]


@dataclass
class Services:
    settings: Settings  # the environment's; the venue rules in force are `policy` (and `venue.settings`)
    seed_catalogue: Catalogue  # the rooms file: in force until a version is saved on Settings
    engine: Engine
    payments: PaymentsGateway
    calendar: CalendarGateway
    mail: MailGateway
    clock: Callable[[], datetime] = field(default=system_clock)
    venue_cache: VenueCache = field(init=False, default_factory=VenueCache, repr=False, compare=False)

    def now(self) -> datetime:
        return self.clock()

    @property
    def venue(self) -> VenueState:
        """The venue configuration in force (checked against the database at most every couple of seconds)."""
        return self.venue_cache.current(self.engine, self.settings, self.seed_catalogue)

    @property
    def catalogue(self) -> Catalogue:
        """Rooms, prices, capacity, extras and closures in force (closure blocks included)."""
        return self.venue.catalogue

    @catalogue.setter
    def catalogue(self, seed: Catalogue) -> None:
        """Replace the seed (tests do; a saved version still wins over it)."""
        self.seed_catalogue = seed
        self.venue_cache.forget()

    @property
    def policy(self) -> Policy:
        """The venue rules in force: opening hours, buffer, booking window, refund and discount bands."""
        return self.venue.policy

    @property
    def tax(self) -> TaxPolicy:
        """The tax rates new sales are taxed at and the venue's GST/HST registration number (a booking keeps the
        rates it was sold at in its tax snapshot)."""
        return self.settings.tax_policy()

    @property
    def staff_roles(self) -> dict[str, str]:
        """Signed-in email → role: saved on Settings, or STAFF_ROLES until a version is saved."""
        return dict(self.venue.staff_roles)

    def seed_room(self, slug: str) -> Room:
        """The room as the rooms file has it: the price list the old system's payments and the bookings made before
        Settings were sold at. The room in force when the file does not have it (added on Settings)."""
        return next((r for r in self.seed_catalogue.rooms if r.slug == slug), None) or self.catalogue.room(slug)

    def reload_venue(self) -> None:
        """Look for a new configuration at the next read (this process just saved one, or closed the venue)."""
        self.venue_cache.invalidate()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction that may write (on SQLite it holds the write lock from its start: keep it short)."""
        with session_scope(self.engine) as s:
            yield s

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only transaction for pages and API reads: a consistent snapshot that never waits for a writer nor
        makes one wait. Writing in it raises."""
        with read_session_scope(self.engine) as s:
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
