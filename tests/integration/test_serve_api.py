"""`serve-api --workers N` as a venue runs it: several uvicorn worker processes on one port over one database, the
schema migrated once before they start, bookings made through any of them seen by all, each worker counting its share
of the public rate limits so that together they allow no more than the configured limit, and every process gone on
SIGTERM. Runs the real command in a subprocess on loopback (SQLite, sandbox gateways)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from services.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workers_of(pid: int) -> list[int]:
    """uvicorn's worker processes under `pid` (spawned by multiprocessing; from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and b"spawn_main" in cmdline:
                out.append(int(entry.name))
    return out


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PAYMENTS", "CALENDAR", "MAIL"))},
        "DATA_DIR": str(tmp_path / "data"),
        "RATE_LIMIT_READS": "6/minute",
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ops.cli", "serve-api", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve-api exited with {proc.returncode}: {(tmp_path / 'api.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve-api --workers 2 did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def open_day(base: str) -> str:
    """The first day from a week on when the Boardroom is open and free 10:00–12:00 (real clock: the server's)."""
    first = date.today() + timedelta(days=7)
    r = httpx.get(
        f"{base}/api/availability",
        params={"room": "boardroom", "from": first.isoformat(), "to": (first + timedelta(days=13)).isoformat()},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    for day in r.json()["days"]:
        if not day["closed"] and any(f["start"] <= "10:00" and f["end"] >= "12:00" for f in day["free"]):
            return str(day["date"])
    raise AssertionError("no open day in two weeks")


def test_two_workers_share_one_database_and_the_rate_limits(served: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = served
    workers = workers_of(proc.pid)
    assert len(workers) == 2, f"expected 2 worker processes under serve-api, found {workers}"

    day = open_day(base)  # one read of the six the limit allows
    body = {
        "room": "boardroom",
        "dates": [day],
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Ava Nguyen",
        "customer_email": "ava@example.org",
        "terms_version": Settings().terms_version,
    }
    made = httpx.post(f"{base}/api/bookings", json=body, trust_env=False)
    assert made.status_code == 201, made.text
    # Whichever worker answers, the slot is taken: one database behind both.
    again = [httpx.post(f"{base}/api/bookings", json=body, trust_env=False) for _ in range(3)]
    assert [r.status_code for r in again] == [409, 409, 409], [r.text for r in again]

    # 6 reads a minute in all: each of the two workers allows 3, so ten more reads from one client get at most 5
    # through (one was used above) and the rest are refused with Retry-After.
    answers = [
        httpx.get(
            f"{base}/api/availability",
            params={"room": "boardroom", "from": day, "to": day},
            headers={"Connection": "close"},
            trust_env=False,
        )
        for _ in range(10)
    ]
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429} and codes.count(200) <= 5 and 429 in codes, codes
    assert all(r.headers.get("Retry-After") for r in answers if r.status_code == 429)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if running(pid)], "a worker outlived serve-api"
