"""The production layout (`make serve` → scripts/serve → supervisord, deploy/supervisord.conf) as a venue runs it: the
dashboard, the API and the worker come up together on one empty database, each answers its health endpoint, a
process that dies is started again by itself, and stopping the whole stops every process. Runs the real script on
loopback with free ports (SQLite, sandbox gateways)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_S = 90.0  # three processes starting together, Streamlit the slowest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> dict[int, bytes]:
    """Every live process under `pid` (not zombies), with its command line."""
    parent: dict[int, int] = {}
    cmd: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] == "Z":
                    continue
                parent[int(entry.name)] = int(stat[1])
                cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except (OSError, IndexError, ValueError):
                continue
    found: dict[int, bytes] = {}
    frontier = [pid]
    while frontier:
        here = frontier.pop()
        for child, ppid in parent.items():
            if ppid == here and child not in found:
                found[child] = cmd[child]
                frontier.append(child)
    return found


def program_pid(supervisor: int, marker: bytes) -> int | None:
    """The pid of the supervised program whose command line holds `marker` (a direct child of supervisord)."""
    for pid, cmdline in descendants(supervisor).items():
        if marker in cmdline and _parent(pid) == supervisor:
            return pid
    return None


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@dataclass
class Layout:
    proc: subprocess.Popen[bytes]
    dashboard: str
    api: str
    worker: str
    logs: Path


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(layout: Layout, *urls: str) -> None:
    deadline = time.monotonic() + START_S
    while not all(healthy(u) for u in urls):
        if layout.proc.poll() is not None or time.monotonic() > deadline:
            logs = {p.name: p.read_text(errors="replace")[-1500:] for p in layout.logs.glob("*.log")}
            down = [u for u in urls if not healthy(u)]
            pytest.fail(f"not healthy within {START_S:.0f} s: {down}\n{logs}")
        time.sleep(0.5)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    ports = {name: free_port() for name in ("DASHBOARD_PORT", "API_PORT", "WORKER_HEALTH_PORT")}
    logs = tmp_path / "logs"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PAYMENTS", "CALENDAR", "MAIL"))},
        **{k: str(v) for k, v in ports.items()},
        "DATA_DIR": str(tmp_path / "data"),
        "ROOMDESK_LOG_DIR": str(logs),
        "API_WORKERS_N": "2",
        "WORKER_EVERY": "2s",
    }
    proc = subprocess.Popen(
        ["bash", "scripts/serve"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "serve.out").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    made = Layout(
        proc,
        f"http://127.0.0.1:{ports['DASHBOARD_PORT']}/_stcore/health",
        f"http://127.0.0.1:{ports['API_PORT']}/healthz",
        f"http://127.0.0.1:{ports['WORKER_HEALTH_PORT']}/healthz",
        logs,
    )
    try:
        yield made
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_make_serve_runs_all_three_restarts_a_dead_one_and_stops_them_all(layout: Layout) -> None:
    wait_healthy(layout, layout.dashboard, layout.api, layout.worker)
    worker = httpx.get(layout.worker, trust_env=False).json()
    assert worker["status"] == "ok" and worker["failures_in_a_row"] == 0

    supervisor = layout.proc.pid  # scripts/serve execs supervisord
    before = program_pid(supervisor, b"services.ops.cli worker")
    assert before is not None, descendants(supervisor)
    os.kill(before, signal.SIGKILL)  # the worker dies
    deadline = time.monotonic() + START_S
    while program_pid(supervisor, b"services.ops.cli worker") in (None, before):
        assert time.monotonic() < deadline, "supervisord did not start the worker again"
        time.sleep(0.2)
    wait_healthy(layout, layout.worker)  # the new worker answers once its first round has run
    assert healthy(layout.api) and healthy(layout.dashboard)

    everyone = list(descendants(supervisor))
    assert len(everyone) >= 4  # dashboard, API (and its 2 workers), worker
    layout.proc.send_signal(signal.SIGTERM)
    assert layout.proc.wait(60) == 0
    deadline = time.monotonic() + 20
    while (left := [p for p in everyone if Path(f"/proc/{p}").exists() and _live(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes outlived make serve: {left}"


def _live(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
