"""Booking API under load: `POST /api/bookings` latency with 20 concurrent clients, `GET /api/availability`
requests per second, and checkout confirmation (payment → Gate 2 → calendar events → email) against the seed's
objective (p95 under 2.5 s). The baseline is `GET /healthz` with the same 20 clients, measured in the same run.

    .venv/bin/python bench/api_bench.py [--bookings 200] [--clients 20] [--phase-seconds 5] [--max-seconds 120]
                                        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                        [--workers 2] [--confirm http|in-process] [--gateway-latency-ms 150]

The API runs as a subprocess (`python -m services.ops.cli serve-api --workers N`, one uvicorn process by default; CPU
is counted over the server and its worker processes) on a free loopback port, on sandbox payments, calendar and mail
in a temporary DATA_DIR; with --database-url the bench creates a throwaway
database next to the one named and drops it afterwards. The server is always stopped, also on Ctrl-C, and the run
ends by itself after --max-seconds (printing what it has). The clients are aiohttp keep-alive connections on one
event loop (a light client: it shares the machine's CPUs with the server). Sandbox Stripe sends no webhooks, so each
booking is confirmed the way its customer does it in sandbox mode: a test card on the pay page
(POST /pay/<ref>/test-card), whose worker does the webhook's work before it answers. With --confirm in-process that
work (`sandbox_pay`) runs in this process from as many threads instead, and --gateway-latency-ms then makes each
Stripe, Calendar and mail call of it sleep as a network round trip would.

Prints a table; asserts nothing (speed is measured here, not in the test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import httpx
from benchdb import throwaway_database

from services.booking import find_booking_id, sandbox_pay
from services.core.context import Services, build_services
from services.core.settings import Settings

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
OBJECTIVE_P95_S = 2.5  # the seed's service objective for checkout confirmation
KNOWN_FIELDS = {
    "room",
    "dates",
    "start",
    "end",
    "party_size",
    "customer_name",
    "customer_email",
    "customer_phone",
    "extras",
    "notes",
}


# --------------------------------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    ok: bool
    status: int  # HTTP status; 0 for an in-process call, -1 for a transport error
    seconds: float
    index: int
    note: str = ""


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    stopped_early: bool = False
    cpu: float | None = None  # CPU seconds the serving side spent on the phase, where known

    @property
    def ok(self) -> list[float]:
        return [s.seconds for s in self.samples if s.ok]

    def rate(self) -> float:
        return len(self.ok) / self.wall if self.wall else 0.0


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def run_clients(
    name: str,
    clients: int,
    call: Callable[[int], Sample],
    *,
    stop_at: float,
    count: int | None = None,
    interrupted: threading.Event,
    cpu_clock: Callable[[], float | None] | None = None,
) -> Phase:
    """`clients` threads each take the next index and call `call(index)` until `count` calls were taken or the clock
    passes `stop_at`. Daemon threads, joined in slices, so Ctrl-C reaches the main thread at once."""
    phase = Phase(name)
    lock = threading.Lock()
    taken = 0

    def worker() -> None:
        nonlocal taken
        while not interrupted.is_set() and time.perf_counter() < stop_at:
            with lock:
                if count is not None and taken >= count:
                    return
                index = taken
                taken += 1
            sample = call(index)
            with lock:
                phase.samples.append(sample)

    threads = [threading.Thread(target=worker, daemon=True, name=f"{name}-{i}") for i in range(clients)]
    with timed(phase, cpu_clock, interrupted):
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    phase.stopped_early = count is not None and taken < count
    return phase


@contextmanager
def timed(phase: Phase, cpu_clock: Callable[[], float | None] | None, interrupted: threading.Event) -> Iterator[None]:
    """The phase's wall time and the serving side's CPU over the block; Ctrl-C inside it stops every later phase."""
    cpu_before = cpu_clock() if cpu_clock else None
    started = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        interrupted.set()
        raise
    phase.wall = time.perf_counter() - started
    cpu_after = cpu_clock() if cpu_clock else None
    if cpu_before is not None and cpu_after is not None:
        phase.cpu = cpu_after - cpu_before


class HttpClients:
    """The simulated clients' HTTP side: `clients` keep-alive connections in one aiohttp session on an event loop of
    its own (a light client: it shares the CPUs with the server it measures), and an httpx client for set-up calls."""

    def __init__(self, base_url: str, clients: int) -> None:
        self.base_url = base_url
        self.clients = clients
        self.setup = httpx.Client(base_url=base_url, timeout=30.0, trust_env=False)
        self._runner = asyncio.Runner()
        self._session: aiohttp.ClientSession | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                self.base_url,
                connector=aiohttp.TCPConnector(limit=self.clients),
                timeout=aiohttp.ClientTimeout(total=30.0),
                trust_env=False,
            )
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self.run(self._session.close())
        self._runner.close()
        self.setup.close()


def run_http(
    name: str,
    clients: HttpClients,
    call: Callable[[aiohttp.ClientSession, int], Awaitable[Sample]],
    *,
    stop_at: float,
    count: int | None = None,
    interrupted: threading.Event,
    cpu_clock: Callable[[], float | None] | None = None,
) -> Phase:
    """`clients.clients` concurrent clients each take the next index and await `call(session, index)` until `count`
    calls were taken or the clock passes `stop_at`."""
    phase = Phase(name)
    taken = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal taken
        while not interrupted.is_set() and time.perf_counter() < stop_at:
            if count is not None and taken >= count:
                return
            index = taken
            taken += 1
            phase.samples.append(await call(session, index))

    async def drive() -> None:
        session = await clients.session()
        await asyncio.gather(*(client(session) for _ in range(clients.clients)))

    with timed(phase, cpu_clock, interrupted):
        clients.run(drive())
    phase.stopped_early = count is not None and taken < count
    return phase


def http_call(
    method: str,
    path: Callable[[int], str],
    body: Callable[[int], Any] | None = None,
    expect: int = 200,
    *,
    form: Callable[[int], dict[str, str]] | None = None,
    keep: Callable[[Any], str] | None = None,
) -> Callable[[aiohttp.ClientSession, int], Awaitable[Sample]]:
    """One request: a JSON `body` or a `form`; `keep` picks what to remember of a JSON answer (nothing else of an
    answer is parsed: the client shares the CPUs)."""

    async def call(session: aiohttp.ClientSession, index: int) -> Sample:
        started = time.perf_counter()
        try:
            async with session.request(
                method,
                path(index),
                json=body(index) if body else None,
                data=form(index) if form else None,
                allow_redirects=False,
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Sample(False, -1, time.perf_counter() - started, index, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        ok = response.status == expect
        note = (keep(json.loads(text)) if keep else "") if ok else text
        return Sample(ok, response.status, seconds, index, note)

    return call


# --------------------------------------------------------------------------------------------------- environment


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of a process and its children (serve-api and its worker processes)."""
    own = process_cpu(pid)
    if own is None:
        return None
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
    return own + sum(process_cpu(k) or 0.0 for k in kids)


@contextmanager
def api_server(
    env: dict[str, str],
    port: int,
    log_path: Path,
    *,
    workers: int = 1,
    wait_s: float = 60.0,
    root: Path = PROJECT_ROOT,
    pass_workers: bool = True,
) -> Iterator[tuple[str, int]]:
    """The API served from the checkout at `root` in its own process group on 127.0.0.1:`port`, ready on /healthz;
    stopped on the way out. `pass_workers`: False for a checkout whose serve-api has no --workers (one process)."""
    base = f"http://127.0.0.1:{port}"
    command = ["serve-api", "--host", "127.0.0.1", "--port", str(port)]
    if pass_workers:
        command += ["--workers", str(workers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ops.cli", *command],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + wait_s
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the API exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                with suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/healthz", timeout=2.0, trust_env=False).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API did not answer /healthz within {wait_s:.0f} s")
                time.sleep(0.1)
            yield base, proc.pid
        finally:
            if proc.poll() is None:
                proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------------- booking bodies


def _types(prop: dict[str, Any]) -> set[str]:
    found = {prop["type"]} if "type" in prop else set()
    for option in prop.get("anyOf", []):
        found |= _types(option)
    return found


def booking_fields(base: str, terms_version: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What BookingIn needs beyond the slot and the customer, read from the running API's OpenAPI schema: a terms or
    agreement version (the settings' terms_version) where the room requires it or the schema does, and any required
    acceptance flag set to true. Unknown required fields stop the bench with their names."""
    schema = httpx.get(f"{base}/openapi.json", trust_env=False).json()["components"]["schemas"]["BookingIn"]
    required = set(schema.get("required", []))
    props: dict[str, dict[str, Any]] = schema["properties"]
    unknown = []
    plan: list[tuple[str, Any, bool]] = []  # field, value, only for rooms that require an agreement
    for name, prop in props.items():
        if name in KNOWN_FIELDS:
            continue
        kinds = _types(prop)
        if "boolean" in kinds and ("accept" in name or "terms" in name or "agree" in name):
            plan.append((name, True, name not in required and "agree" in name))
        elif "string" in kinds and ("terms" in name or "agreement" in name):
            plan.append((name, terms_version, name not in required and "agreement" in name))
        elif name in required:
            unknown.append(name)
    if unknown:
        raise SystemExit(f"BookingIn requires fields this bench does not know how to fill: {', '.join(unknown)}")

    def extra(room: dict[str, Any]) -> dict[str, Any]:
        return {
            name: value for name, value, agreement_only in plan if not agreement_only or room.get("agreement_required")
        }

    return extra


def extras_for(room: dict[str, Any]) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    for f in room.get("extras", []):
        if f.get("kind") == "int":
            values[f["key"]] = f.get("min") or 1
        elif f.get("kind") == "choice":
            values[f["key"]] = f["choices"][0]
        else:
            values[f["key"]] = "Bench run"
    return values or None


def free_slots(
    http: httpx.Client, rooms: list[dict[str, Any]], first: date, last: date, buffer: int, step: int
) -> list[tuple[dict[str, Any], date, str, str]]:
    """Every non-overlapping slot of each room's minimum length in the free ranges GET /api/availability reports,
    a buffer apart, interleaved room by room and day by day so concurrent requests spread over rooms."""
    per_room: list[list[tuple[dict[str, Any], date, str, str]]] = []
    for room in rooms:
        length = math.ceil(room["min_hours"] * 60 / step) * step
        answer = http.get("/api/availability", params={"room": room["slug"], "from": str(first), "to": str(last)})
        answer.raise_for_status()
        slots = []
        for day in answer.json()["days"]:
            for rng in day["free"]:
                start, end = _minutes(rng["start"]), _minutes(rng["end"])
                start = math.ceil(start / step) * step
                while start + length <= end:
                    slots.append((room, date.fromisoformat(day["date"]), _hhmm(start), _hhmm(start + length)))
                    start += length + math.ceil(buffer / step) * step
        per_room.append(slots)
    out: list[tuple[dict[str, Any], date, str, str]] = []
    for i in range(max((len(s) for s in per_room), default=0)):
        out.extend(s[i] for s in per_room if i < len(s))
    return out


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")[:2]
    return int(h) * 60 + int(m)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# --------------------------------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("measure", "n", "p50 ms", "p95 ms", "max ms", "req/s", "ratio vs baseline")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def latency_row(name: str, values: list[float], wall: float, base_p50: float, *, rate: bool = True) -> tuple[str, ...]:
    p50 = percentile(values, 0.5)
    ratio = f"{p50 / base_p50:.1f}x p50" if values and base_p50 else "-"
    rps = f"{len(values) / wall:.1f}" if rate and wall else "-"
    return (
        name,
        str(len(values)),
        ms(p50),
        ms(percentile(values, 0.95)),
        ms(max(values, default=math.nan)),
        rps,
        ratio,
    )


def rate_row(phase: Phase, base_rps: float) -> tuple[str, ...]:
    ok = phase.ok
    ratio = f"{phase.rate() / base_rps:.2f}x req/s" if base_rps and ok else "-"
    return (
        phase.name,
        str(len(ok)),
        ms(percentile(ok, 0.5)),
        ms(percentile(ok, 0.95)),
        ms(max(ok, default=math.nan)),
        f"{phase.rate():.1f}",
        ratio,
    )


def statuses(phase: Phase) -> str:
    counts: dict[int, int] = {}
    for s in phase.samples:
        counts[s.status] = counts.get(s.status, 0) + 1
    return ", ".join(f"{'transport error' if k == -1 else k}: {v}" for k, v in sorted(counts.items())) or "none sent"


# --------------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bookings", type=int, default=200, help="POST /api/bookings requests (default 200)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--phase-seconds", type=float, default=5.0, help="length of each req/s measurement")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="hard limit for the whole run")
    parser.add_argument(
        "--gateway-latency-ms",
        type=float,
        default=0.0,
        help="during confirmation, sleep this long in every Stripe, Calendar and mail call (network stand-in)",
    )
    parser.add_argument(
        "--confirm",
        choices=("http", "in-process"),
        default="http",
        help="pay through the API's pay page (default), or run the webhook's work in this process",
    )
    parser.add_argument(
        "--baseline-root",
        default=None,
        help="a checkout of the code before (e.g. a git worktree): measured first, served as it was (one process), "
        "then compared with this checkout",
    )
    parser.add_argument("--workers", type=int, default=1, help="API worker processes (serve-api --workers)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create a throwaway database on (default: SQLite in the temporary DATA_DIR)",
    )
    args = parser.parse_args()
    if args.gateway_latency_ms and args.confirm == "http":
        parser.error("--gateway-latency-ms needs --confirm in-process (the sandbox's stand-ins live in this process)")

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    interrupted = threading.Event()
    results: list[Measured] = []
    if args.baseline_root:
        # The code before, as it served: one process, its own serve-api (which may not know --workers).
        results.append(measure(args, Path(args.baseline_root).resolve(), 1, interrupted, label="baseline"))
        if interrupted.is_set():
            return 0
    results.append(measure(args, PROJECT_ROOT, args.workers, interrupted, label="this checkout"))
    if len(results) == 2:
        print_comparison(*results)
    return 0


@dataclass
class Measured:
    label: str
    workers: int
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phases: dict[str, Phase] = field(default_factory=dict)  # by key: healthz, posts, confirms, availability 7


def measure(
    args: argparse.Namespace, root: Path, workers: int, interrupted: threading.Event, *, label: str
) -> Measured:
    """Every phase against the API served from `root` with `workers` processes; prints its table."""
    out = Measured(label, workers)
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    run_started = time.perf_counter()
    deadline = run_started + args.max_seconds
    # Bookings and confirmations stop early enough to leave time for the availability phases.
    booking_deadline = deadline - 2 * args.phase_seconds - 5
    dialect = "postgresql" if args.database_url else "sqlite"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="roomdesk-bench-") as tmp,
            throwaway_database(args.database_url) as db_url,
        ):
            data_dir = Path(tmp) / "data"
            # Defaults only: no secrets file, sandbox gateways, this run's data folder and database.
            os.environ["ROOMDESK_SECRETS_FILE"] = str(Path(tmp) / "no-secrets.toml")
            env = {
                **os.environ,
                "DATA_DIR": str(data_dir),
                "PAYMENTS": "sandbox",
                "CALENDAR": "sandbox",
                "MAIL": "sandbox",
                "AUDIT_MODE": "false",
                "PYTHONUNBUFFERED": "1",
                # Throughput, not the public limits: every simulated client comes from 127.0.0.1.
                "RATE_LIMIT_BOOKINGS": "1000000/minute",
                "RATE_LIMIT_READS": "1000000/minute",
                "HOLD_LIMIT_PER_CLIENT": "1000",
            }
            env.pop("DATABASE_URL", None)
            if db_url:
                env["DATABASE_URL"] = db_url
            settings = Settings(
                data_dir=data_dir,
                database_url=db_url,
                payments="sandbox",
                calendar="sandbox",
                mail="sandbox",
                audit_mode=False,
            )
            server = api_server(
                env, free_port(), Path(tmp) / "api.log", workers=workers, root=root, pass_workers=root == PROJECT_ROOT
            )
            with server as (base, pid):
                svc = build_services(settings, migrate=False)  # the server migrated the schema on start
                clients = HttpClients(base, args.clients)
                try:
                    run(args, base, pid, svc, clients, out, deadline, booking_deadline, interrupted)
                finally:
                    clients.close()
                    svc.engine.dispose()
    except KeyboardInterrupt:
        interrupted.set()
        out.notes.append("interrupted: the results so far")

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    served = "one uvicorn process" if workers == 1 else f"{workers} uvicorn worker processes"
    print(
        f"{label}: booking API on loopback: {args.clients} concurrent clients, {served}, sandbox gateways, "
        f"{dialect}; {cpus} CPUs ({usable} usable), load average {load_at_start:.1f} at start; "
        f"run took {time.perf_counter() - run_started:.1f} s"
    )
    print_table(out.rows)
    for note in out.notes:
        print(note)
    print()
    return out


def print_comparison(before: Measured, after: Measured) -> None:
    """The targets' measures side by side: the code before (one process) and this checkout."""

    def values(m: Measured) -> dict[str, float]:
        p = m.phases
        posts, confirms = p.get("posts"), p.get("confirms")
        avail, healthz = p.get("availability 7"), p.get("healthz")
        post_ok = posts.ok if posts else []
        return {
            "POST /api/bookings req/s": posts.rate() if posts else math.nan,
            "POST /api/bookings p50 ms": percentile(post_ok, 0.5) * 1000,
            "POST /api/bookings p95 ms": percentile(post_ok, 0.95) * 1000,
            "POST p95 / p50": percentile(post_ok, 0.95) / percentile(post_ok, 0.5) if post_ok else math.nan,
            "confirmation p95 ms": percentile(confirms.ok, 0.95) * 1000 if confirms else math.nan,
            "availability 7-day req/s": avail.rate() if avail else math.nan,
            "availability / healthz req/s": avail.rate() / healthz.rate() if avail and healthz else math.nan,
        }

    b, a = values(before), values(after)
    rows = [("measure", before.label, after.label, "ratio")]
    for key in b:
        ratio = a[key] / b[key] if b[key] else math.nan
        rows.append((key, f"{b[key]:.2f}", f"{a[key]:.2f}", f"{ratio:.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"{before.label} ({before.workers} process) vs {after.label} ({after.workers} processes), same run:")
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def run(
    args: argparse.Namespace,
    base: str,
    server_pid: int,
    svc: Services,
    clients: HttpClients,
    out: Measured,
    deadline: float,
    booking_deadline: float,
    interrupted: threading.Event,
) -> None:
    """The phases, in order; each appends its row as soon as it has one, so an early stop still reports."""
    n = args.clients
    rows, notes = out.rows, out.notes
    policy = svc.policy
    today = datetime.now(policy.tz).date()
    first, last = today + timedelta(days=2), today + timedelta(days=policy.max_days_ahead - 2)

    def phase_end() -> float:
        return min(time.perf_counter() + args.phase_seconds, deadline)

    def server_cpu() -> float | None:
        return tree_cpu(server_pid)

    get = clients.setup
    rooms: list[dict[str, Any]] = get.get("/api/rooms").json()
    slugs = [r["slug"] for r in rooms]
    cpu_notes: list[str] = []

    def cpu_note(label: str, phase: Phase) -> None:
        if phase.cpu is not None and phase.ok:
            cpu_notes.append(f"{label} {phase.cpu / len(phase.ok) * 1000:.1f}")

    # Warm-up (connections, first imports), not counted.
    healthz_call = http_call("GET", lambda i: "/healthz")
    run_http("warm-up", clients, healthz_call, stop_at=min(time.perf_counter() + 1, deadline), interrupted=interrupted)
    healthz = run_http(
        "GET /healthz (baseline)",
        clients,
        healthz_call,
        stop_at=phase_end(),
        interrupted=interrupted,
        cpu_clock=server_cpu,
    )
    out.phases["healthz"] = healthz
    base_rps = healthz.rate()
    base_p50 = percentile(healthz.ok, 0.5)
    rows.append(rate_row(healthz, base_rps))
    cpu_note("/healthz", healthz)

    # POST /api/bookings, each on its own free slot.
    slots = free_slots(get, rooms, first, last, policy.buffer_minutes, policy.slot_minutes)
    extra = booking_fields(base, svc.settings.terms_version)
    count = min(args.bookings, len(slots))
    if count < args.bookings:
        notes.append(f"only {len(slots)} free slots in the booking window: {count} bookings instead of {args.bookings}")

    def body(i: int) -> dict[str, Any]:
        room, day, start, end = slots[i]
        return {
            "room": room["slug"],
            "dates": [str(day)],
            "start": start,
            "end": end,
            "customer_name": f"Bench Client {i}",
            "customer_email": f"bench{i}@example.org",
            "extras": extras_for(room),
            **extra(room),
        }

    posts = run_http(
        "POST /api/bookings",
        clients,
        http_call("POST", lambda i: "/api/bookings", body, 201, keep=lambda answer: answer["pay_url"]),
        stop_at=booking_deadline,
        count=count,
        interrupted=interrupted,
        cpu_clock=server_cpu,
    )
    out.phases["posts"] = posts
    rows.append(latency_row(posts.name, posts.ok, posts.wall, base_p50))
    cpu_note("POST /api/bookings", posts)
    notes.append(
        f"POST /api/bookings statuses: {statuses(posts)}"
        + (" (stopped at the time limit)" if posts.stopped_early else "")
    )
    for s in [s for s in posts.samples if not s.ok][:3]:
        notes.append(f"  e.g. {s.status}: {s.note[:200]}")

    # Checkout confirmation: the customer pays with a test card on the pay page (POST /pay/<ref>/test-card) and the
    # worker that takes it does the webhook's work (Gate 2, events, email) before answering; or (--confirm in-process)
    # sandbox_pay runs that work in this process, from as many threads.
    created = sorted((s for s in posts.samples if s.ok), key=lambda s: s.index)
    pay_at = [urlsplit(s.note) for s in created]  # the pay page each answer named: /pay/<ref>?k=<token>
    if args.confirm == "http":
        confirms = run_http(
            "checkout confirmation (test card on the pay page)",
            clients,
            http_call(
                "POST",
                lambda i: f"{pay_at[i].path}/test-card",
                expect=303,
                form=lambda i: {"k": parse_qs(pay_at[i].query)["k"][0], "card": "pm_card_visa"},
                keep=None,
            ),
            stop_at=booking_deadline,
            count=len(pay_at),
            interrupted=interrupted,
            cpu_clock=server_cpu,
        )
    else:
        ids = [find_booking_id(svc, at.path.rsplit("/", 1)[-1]) for at in pay_at]
        if args.gateway_latency_ms:
            # Stand-ins for the network: each call the webhook's work makes to Stripe, Google Calendar and the mail
            # server sleeps this long (the customer's own card confirmation is not counted).
            seconds = args.gateway_latency_ms / 1000
            for gateway, op in ((svc.payments, "retrieve_payment_intent"), (svc.calendar, "*"), (svc.mail, "*")):
                getattr(gateway, "faults").latency(op, seconds)  # noqa: B009 - sandbox only, not on the Protocol

        def pay(i: int) -> Sample:
            started = time.perf_counter()
            try:
                result = sandbox_pay(svc, ids[i], actor="bench")
            except Exception as exc:
                return Sample(False, 0, time.perf_counter() - started, i, f"{type(exc).__name__}: {exc}")
            return Sample(result.outcome == "confirmed", 0, time.perf_counter() - started, i, result.outcome)

        confirms = run_clients(
            "checkout confirmation (sandbox_pay in process)",
            n,
            pay,
            stop_at=booking_deadline,
            count=len(ids),
            interrupted=interrupted,
            cpu_clock=time.process_time,  # this process: no HTTP client runs during the phase
        )
    out.phases["confirms"] = confirms
    rows.append(latency_row(confirms.name, confirms.ok, confirms.wall, base_p50))
    cpu_note("confirmation" + (" (this process)" if args.confirm != "http" else ""), confirms)
    end_to_end = [created[s.index].seconds + s.seconds for s in confirms.samples if s.ok]
    rows.append(latency_row("checkout end to end (POST + confirmation)", end_to_end, 0.0, base_p50, rate=False))
    outcomes: dict[str, int] = {}
    for s in confirms.samples:
        outcome = s.note if args.confirm != "http" else ("confirmed" if s.ok else f"HTTP {s.status}: {s.note[:120]}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    notes.append(
        "confirmation outcomes: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "none")
        + (" (stopped at the time limit)" if confirms.stopped_early else "")
        + (f"; {args.gateway_latency_ms:.0f} ms added to each gateway call" if args.gateway_latency_ms else "")
    )
    for label, values in (("confirmation", confirms.ok), ("end to end", end_to_end)):
        p95 = percentile(values, 0.95)
        verdict = "no data" if not values else ("meets" if p95 < OBJECTIVE_P95_S else "misses")
        notes.append(f"objective p95 < {OBJECTIVE_P95_S} s, {label}: p95 {ms(p95)} ms → {verdict}")

    # GET /api/availability with the confirmed bookings on the calendars.
    for days in (7, 31):

        def path(i: int, days: int = days) -> str:
            start = first + timedelta(days=i % 14)
            return f"/api/availability?room={slugs[i % len(slugs)]}&from={start}&to={start + timedelta(days=days - 1)}"

        phase = run_http(
            f"GET /api/availability ({days}-day window)",
            clients,
            http_call("GET", path),
            stop_at=phase_end(),
            interrupted=interrupted,
            cpu_clock=server_cpu,
        )
        out.phases[f"availability {days}"] = phase
        rows.append(rate_row(phase, base_rps))
        cpu_note(f"availability {days}-day", phase)
        if len(phase.ok) != len(phase.samples):
            notes.append(f"{phase.name} statuses: {statuses(phase)}")
    if cpu_notes:
        notes.append(
            "CPU ms per request, API process unless noted (the database server's not included): " + ", ".join(cpu_notes)
        )


if __name__ == "__main__":
    raise SystemExit(main())
