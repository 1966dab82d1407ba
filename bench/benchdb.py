"""What the bench scripts share: a throwaway PostgreSQL database for a run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def throwaway_database(url: str | None) -> Iterator[str | None]:
    """A new, empty PostgreSQL database next to the one in `url`, dropped afterwards (None: SQLite in DATA_DIR)."""
    if url is None:
        yield None
        return
    admin_url = sa.make_url(url)
    name = f"roomdesk_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
