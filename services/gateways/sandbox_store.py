"""A tiny persistent JSON document store on SQLite, playing the remote service's database for a sandbox gateway.

Each sandbox gateway keeps its own file (e.g. `DATA_DIR/sandbox/stripe.sqlite3`), apart from the app's database, so
the app can only reach sandbox state through the gateway, as with the real provider. Many processes and threads may
use one file at once: every operation opens its own connection (nothing is shared across threads or a fork), the file
is in WAL mode so readers never block the writer, and writes run in `BEGIN IMMEDIATE` transactions that wait up to
30 s for the write lock.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Json = dict[str, Any]

BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    ord  INTEGER NOT NULL,   -- seq of the first write: creation order
    seq  INTEGER NOT NULL,   -- seq of the latest write: change order
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS objects_kind_ord ON objects (kind, ord);
CREATE INDEX IF NOT EXISTS objects_kind_seq ON objects (kind, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    response    TEXT,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', '0');
"""


@dataclass(frozen=True)
class Record:
    """One stored object with its creation order and last-change sequence number."""

    kind: str
    id: str
    ord: int
    seq: int
    data: Json


@dataclass(frozen=True)
class IdempotentResult:
    """What an idempotency key was first used for."""

    kind: str
    id: str
    fingerprint: str
    response: Json | None


class StoreTx:
    """Operations inside one transaction; obtained from `SandboxStore.transaction()` or `SandboxStore.read()`."""

    def __init__(self, conn: sqlite3.Connection, *, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    def get(self, kind: str, id: str) -> Json | None:
        """The object, or None."""
        row = self._conn.execute("SELECT data FROM objects WHERE kind = ? AND id = ?", (kind, id)).fetchone()
        return None if row is None else _loads(row[0])

    def record(self, kind: str, id: str) -> Record | None:
        """The object with its sequence numbers, or None."""
        row = self._conn.execute(
            "SELECT kind, id, ord, seq, data FROM objects WHERE kind = ? AND id = ?", (kind, id)
        ).fetchone()
        return None if row is None else _record(row)

    def put(self, kind: str, id: str, data: Json) -> int:
        """Insert or replace the object; returns the new global sequence number it was written at."""
        seq = self.next_seq()
        self._conn.execute(
            "INSERT INTO objects (kind, id, ord, seq, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET seq = excluded.seq, data = excluded.data",
            (kind, id, seq, seq, json.dumps(data, separators=(",", ":"), sort_keys=True)),
        )
        return seq

    def records(
        self, kind: str, *, since_seq: int | None = None, where: str = "", params: Sequence[Any] = ()
    ) -> list[Record]:
        """All objects of `kind` in creation order (only those written after `since_seq` if given). `where` narrows
        them by an SQL condition on the stored JSON (`data`), as the provider's own indexes would: a gateway's query
        that reads a few objects of many need not parse them all."""
        sql, args = "SELECT kind, id, ord, seq, data FROM objects WHERE kind = ?", list[Any]([kind])
        if since_seq is not None:
            sql, args = sql + " AND seq > ?", [*args, since_seq]
        if where:
            sql, args = f"{sql} AND ({where})", [*args, *params]
        return [_record(row) for row in self._conn.execute(sql + " ORDER BY ord", args)]

    def list(self, kind: str, where: Callable[[Json], bool] | None = None, *, newest_first: bool = False) -> list[Json]:
        """Objects of `kind` in creation order (or newest first), filtered in Python by `where`."""
        items = [rec.data for rec in self.records(kind) if where is None or where(rec.data)]
        if newest_first:
            items.reverse()
        return items

    def lookup_key(self, scope: str, key: str) -> IdempotentResult | None:
        """What `key` was first used for in `scope`, or None if it is new."""
        row = self._conn.execute(
            "SELECT kind, id, fingerprint, response FROM idempotency WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        if row is None:
            return None
        return IdempotentResult(row[0], row[1], row[2], None if row[3] is None else _loads(row[3]))

    def remember_key(
        self, scope: str, key: str, kind: str, id: str, *, fingerprint: str = "", response: Json | None = None
    ) -> None:
        """Record that `key` produced object (kind, id), with the request's fingerprint and the response to replay."""
        self._require_writable()
        self._conn.execute(
            "INSERT INTO idempotency (scope, key, kind, id, fingerprint, response) VALUES (?, ?, ?, ?, ?, ?)",
            (scope, key, kind, id, fingerprint, None if response is None else json.dumps(response)),
        )

    def fingerprint(self, kind: str) -> tuple[int, int]:
        """(how many objects of `kind` there are, the latest seq among them): it changes whenever one of them is
        written or deleted, so a reader may keep what it derived from them until it does."""
        row = self._conn.execute(
            "SELECT count(*), coalesce(max(seq), 0) FROM objects WHERE kind = ?", (kind,)
        ).fetchone()
        return int(row[0]), int(row[1])

    def current_seq(self) -> int:
        """The latest sequence number handed out."""
        return int(self.get_meta("seq") or 0)

    def next_seq(self) -> int:
        """Hand out the next global sequence number (monotonic across processes)."""
        self._require_writable()
        row = self._conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'seq' RETURNING value"
        ).fetchone()
        return int(row[0])

    def get_meta(self, key: str) -> str | None:
        """A store-level setting, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a store-level setting."""
        self._require_writable()
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete(self, kind: str, id: str) -> None:
        """Remove one object for good (providers usually keep deleted objects with a status instead)."""
        self._require_writable()
        self._conn.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, id))

    def is_empty(self) -> bool:
        """True when no object or idempotency key is stored."""
        row = self._conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM objects) AND NOT EXISTS (SELECT 1 FROM idempotency)"
        ).fetchone()
        return bool(row[0])

    def delete_all(self) -> None:
        """Delete every object and idempotency key; the sequence and settings stay."""
        self._require_writable()
        self._conn.execute("DELETE FROM objects")
        self._conn.execute("DELETE FROM idempotency")

    def _require_writable(self) -> None:
        if not self._writable:
            raise RuntimeError("write inside a read-only store transaction; use SandboxStore.transaction()")


class SandboxStore:
    """JSON objects by (kind, id), idempotency keys and a global change sequence in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._init_schema()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, kept open between transactions (opening one per read cost more than the read);
        a fresh one, closed after, while the thread's own is in use (a transaction inside another). A process forked
        since makes its own: a connection never crosses a fork."""
        local = self._local
        if getattr(local, "busy", False):
            with closing(self._connect()) as fresh:
                yield fresh
            return
        if getattr(local, "pid", None) != os.getpid():
            local.conn, local.pid = self._connect(), os.getpid()
        conn: sqlite3.Connection = local.conn
        if conn.in_transaction:  # left open by a failed COMMIT: start clean
            conn.execute("ROLLBACK")
        local.busy = True
        try:
            yield conn
        finally:
            local.busy = False

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        """A write transaction (`BEGIN IMMEDIATE`): committed on normal exit, rolled back on an exception."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield StoreTx(conn, writable=True)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[StoreTx]:
        """A read-only transaction: one consistent snapshot for several reads."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield StoreTx(conn, writable=False)
            finally:
                conn.execute("COMMIT")

    def get(self, kind: str, id: str) -> Json | None:
        """The object, or None."""
        with self.read() as tx:
            return tx.get(kind, id)

    def put(self, kind: str, id: str, data: Json) -> int:
        """Insert or replace one object; returns its sequence number."""
        with self.transaction() as tx:
            return tx.put(kind, id, data)

    def list(self, kind: str, where: Callable[[Json], bool] | None = None, *, newest_first: bool = False) -> list[Json]:
        """Objects of `kind`, filtered in Python by `where`."""
        with self.read() as tx:
            return tx.list(kind, where, newest_first=newest_first)

    def next_seq(self) -> int:
        """Hand out the next global sequence number."""
        with self.transaction() as tx:
            return tx.next_seq()

    def lookup_key(self, scope: str, key: str) -> IdempotentResult | None:
        """What an idempotency key was first used for, or None."""
        with self.read() as tx:
            return tx.lookup_key(scope, key)

    def is_empty(self) -> bool:
        """True when no object or idempotency key is stored."""
        with self.read() as tx:
            return tx.is_empty()

    def reset(self) -> None:
        """Delete every object and idempotency key (the sequence keeps counting, so old tokens stay older)."""
        with self.transaction() as tx:
            tx.delete_all()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the sqlite3 module never opens one implicitly.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough for a sandbox; WAL keeps it consistent
        return conn

    def _init_schema(self) -> None:
        with closing(self._connect()) as conn:
            # Switching to WAL needs an exclusive lock the busy handler does not always wait for: retry briefly.
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _loads(text: str) -> Json:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("sandbox store holds a non-object JSON value")
    return data


def _record(row: tuple[Any, ...]) -> Record:
    return Record(kind=row[0], id=row[1], ord=int(row[2]), seq=int(row[3]), data=_loads(row[4]))


def utc_now() -> datetime:
    """The default sandbox clock."""
    return datetime.now(UTC)


def checked_now(clock: Callable[[], datetime]) -> datetime:
    """Read a sandbox clock, refusing naive datetimes (they would silently shift by the machine's zone)."""
    now = clock()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("sandbox clock must return a timezone-aware datetime")
    return now.astimezone(UTC)


def random_id(prefix: str, length: int = 24, alphabet: str = string.ascii_letters + string.digits) -> str:
    """A provider-style random id such as `pi_3Nq…`."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))
