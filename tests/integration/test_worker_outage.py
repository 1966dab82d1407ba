"""The real worker process survives its database going away for a few seconds: it logs each failed round, waits,
and when the database is back it carries on — its status moves on and an unpaid hold past expiry is expired.

The worker reaches PostgreSQL through a small TCP relay on loopback; stopping the relay (and cutting the
connections it carries) is the outage, as a network partition or a database restart looks to the worker."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from models.tables import Booking, BookingStatus, WorkerStatus
from services import booking as bk

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent.parent


class Relay:
    """Forwards loopback TCP connections to PostgreSQL until stopped; start() again listens on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept(); close() does not
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            socks, self._open = self._open, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay(("127.0.0.1", 5432))
    r.start()
    yield r
    r.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_worker_survives_a_database_outage_and_picks_up_where_it_left(
    make_services: Any, pg_url: str, relay: Relay, booking_request: Any, tmp_path: Path
) -> None:
    now = datetime.now(UTC)  # the worker process runs on the real clock
    svc = make_services(pg_url, now=now)  # the test's own direct connection, never cut
    env = {
        **os.environ,
        "DATA_DIR": str(svc.settings.data_dir),  # the same sandbox Stripe and calendars as the test
        "DATABASE_URL": pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"),
        "WORKER_BACKOFF_MAX_SECONDS": "2",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ops.cli", "worker", "--every", "1s"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def worker_row() -> WorkerStatus | None:
            with svc.session() as s:
                return s.get(WorkerStatus, "worker")

        first = wait_for("a first good round", lambda: (row := worker_row()) and row.last_ok_at)

        relay.stop()
        down_at = datetime.now(UTC)
        # Meanwhile a customer's unpaid hold runs out (written straight to the database, which is up for them).
        day = (now + timedelta(days=7)).date()
        day += timedelta(days=(2 - day.weekday()) % 7)
        started = bk.start_booking(svc, booking_request(dates=(day,)), actor="customer")
        with svc.session() as s:
            s.execute(
                sa.update(Booking)
                .where(Booking.id == started.booking_id)  # type: ignore[arg-type]
                .values(hold_expires_at=now - timedelta(minutes=1))
            )
        wait_for("failed rounds in the log", lambda: log.read_text().count("round failed") >= 2, timeout=10)
        time.sleep(max(0.0, 4 - (datetime.now(UTC) - down_at).total_seconds()))
        assert proc.poll() is None, log.read_text()
        relay.start()

        def expired() -> bool:
            with svc.session() as s:
                b = s.get(Booking, started.booking_id)
                return b is not None and b.status == BookingStatus.EXPIRED

        wait_for("the expired hold", expired)

        def recovered() -> WorkerStatus | None:
            row = worker_row()
            return row if row is not None and row.last_ok_at is not None and row.last_ok_at > down_at else None

        row = wait_for("a good round after the outage", recovered)
        assert row.last_ok_at > first and row.failures_in_a_row == 0
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text()
    failed = [line for line in text.splitlines() if "round failed" in line]
    assert failed and all("OperationalError" in line for line in failed), text
    assert "Traceback" not in text and "ava@example.org" not in text
