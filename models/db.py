"""Engine, sessions and schema upgrades. SQLite (WAL) by default, PostgreSQL through DATABASE_URL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlmodel import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
WRITE_WAIT_S = 30.0  # how long a write waits for the lock (SQLite busy_timeout, and the process's writer queue)
READ_ONLY = "roomdesk_read_only"  # execution option of read-only sessions' connections (see make_engine)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine whose transactions serialise correctly: SQLite takes the write lock at BEGIN (IMMEDIATE) so two
    processes never deadlock on a read-then-write, and waits up to 30 s for it instead of failing. A database error
    never carries its statement's parameters (hide_parameters): they hold customers' details and pay tokens, and the
    error's text ends up in logs and tracebacks."""
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Connections are cheap on SQLite and reads no longer queue for the lock, so many are open at once (the API's
        # thread pool, a read inside a write): a pool too small would make a writer wait for a connection while
        # holding the write lock.
        if path and path != ":memory:":
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 40)
        engine = sa.create_engine(url, connect_args={"timeout": WRITE_WAIT_S, "check_same_thread": False}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT_S * 1000)}")
            _wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # A read-only session (read_session_scope) begins deferred: in WAL mode it reads a snapshot and never
            # waits for, nor holds, the write lock; query_only makes SQLite refuse any write in it. Every other
            # transaction takes the write lock up front.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("PRAGMA query_only=1")
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("PRAGMA query_only=0")
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def _wal(cur: Any) -> None:
    """Switch the database to WAL. On a new database file the switch needs the database to itself, and SQLite
    answers "database is locked" at once — without waiting out the busy timeout — while another process holds a
    lock (several processes starting together on an empty database, one of them migrating it): try again for up to
    30 s, as the busy timeout would."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


# pg_advisory_lock key of the schema upgrade (any constant; "roomdesk" in ASCII).
MIGRATION_LOCK = 0x726F6F6D6465736B


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to date (the app calls this on start). Processes starting at once take turns: on
    PostgreSQL under a session-level advisory lock held on the migrating connection (two API processes on an empty
    database once raced to create alembic_version), on SQLite under the write lock BEGIN IMMEDIATE takes. Whoever
    comes second finds the schema up to date."""
    cfg = alembic_config(engine)
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()


def read_only(engine: Engine) -> Engine:
    """The engine's read-only view (made once per engine): same pool, transactions that read only."""
    if engine.get_execution_options().get(READ_ONLY):
        return engine
    view: Engine | None = engine.__dict__.get("_roomdesk_read_only")
    if view is None:
        options: dict[str, Any] = {READ_ONLY: True}
        if engine.dialect.name == "postgresql":
            options["postgresql_readonly"] = True
        view = engine.execution_options(**options)
        engine.__dict__["_roomdesk_read_only"] = view
    return view


class ReadOnlySession(Session):
    """A session that only reads: any attempt to write in it fails before reaching the database (on SQLite its
    deferred transaction must never turn into a write, which could fail with "database is locked" at once)."""

    def flush(self, objects: Any = None) -> None:
        if self.new or self.dirty or self.deleted:
            raise RuntimeError("a read-only session cannot write: use Services.session() for a change")
        super().flush(objects)


@contextmanager
def read_session_scope(engine: Engine) -> Iterator[Session]:
    """One read-only transaction: a consistent snapshot of the database that takes no write lock (SQLite: a deferred
    BEGIN in WAL mode; PostgreSQL: a READ ONLY transaction). Closed at the end — its connection goes back to the pool
    rolled back — without expiring what was read: the rows stay usable after the block, as after a commit."""
    with ReadOnlySession(read_only(engine), expire_on_commit=False) as session:
        yield session


def writer_queue(engine: Engine) -> AbstractContextManager[Any]:
    """On SQLite, the process's queue for the write lock: its threads take turns here, woken the moment the one before
    commits, instead of each polling the database's lock (SQLite's busy handler sleeps up to 100 ms between tries,
    which is where a busy API's slowest requests used to wait). Re-entrant, so a thread never waits for itself.
    Other processes still meet at the database's lock. PostgreSQL locks rows, not the database: no queue."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    lock: threading.RLock | None = engine.__dict__.get("_roomdesk_writer_queue")
    if lock is None:
        lock = engine.__dict__.setdefault("_roomdesk_writer_queue", threading.RLock())
    return _queued(lock)


@contextmanager
def _queued(lock: threading.RLock) -> Iterator[None]:
    # As long as the database's own busy timeout, and the same error when it runs out.
    if not lock.acquire(timeout=WRITE_WAIT_S):
        raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
    try:
        yield
    finally:
        lock.release()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction that may write: commit on success, roll back on any error."""
    with writer_queue(engine), Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
