"""The staff dashboard on three years of a busy venue: how long each page takes to be ready in headless Chromium.

    .venv/bin/python bench/dashboard_bench.py [--data-dir DIR] [--count 6000] [--years 3] [--repeat 3]
                                              [--pages overview,bookings] [--timeout 90]

Two data sets, each built once by the real command and kept under --data-dir (default: a folder in the system's temp
directory, one per day, since the demo is laid out around today):

    baseline   `seed-demo` (the default demo: about 150 bookings over the present 90 days)
    three-year `seed-demo --count 6000 --years 3` (a busy venue: ~6,000 bookings, ~17,000 days, ~120,000 audit rows)

Each run copies both data sets into a temporary folder (pages may write: a sync, a reconciliation run) and, for each
role in turn, starts `streamlit run app.py` on each copy side by side (ROOMDESK_DEV_ROLE, sandbox gateways, no
secrets.toml), with a headless Debian chromium tab at 1366x768 on each. Every screen is opened with the role that works
on it (pages/ui/nav.py), alternately on the baseline and on the big data set, so a machine shared with other work slows
both alike. A page's time runs from a click on its sidebar link (what staff do) until its script has finished (the
app's script state) and its title and tables are drawn: "first" is the first click after the server started (cold
st.cache_data, the page's own imports), the others the median of the next --repeat clicks; "by URL" is the median of
--repeat loads in a new session (a bookmark, a link in an email: page load, connection and app.py come on top). The
ratio compares the big data set with the baseline, measured in the same run.

Prints a table; asserts nothing (speed is measured here, not in the test suite). Target: every page ≤ 1.5 s on the
three-year data, by a click (the first and the others) and by its URL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from harness import LAPTOP, StreamlitServer, app_env, launch_browser, wait_idle  # noqa: E402

from pages.ui.nav import SCREENS, Screen  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TARGET_S = 1.5
# Who works on each screen: the least-privileged role that may open it (an admin may open every one).
ROLE_ORDER = ("frontdesk", "finance", "manager", "admin")
READY = "complete"  # written into a data set's folder once seeding finished


@dataclass(frozen=True)
class DataSet:
    name: str
    args: tuple[str, ...]


BASELINE = DataSet("baseline", ())


@dataclass
class Timing:
    first: float | None = None
    again: list[float] = field(default_factory=list)
    by_url: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.again) if self.again else None

    @property
    def url_median(self) -> float | None:
        return statistics.median(self.by_url) if self.by_url else None


def role_for(screen: Screen) -> str:
    return next(role for role in ROLE_ORDER if role in screen.roles)


def build(data_set: DataSet, cache: Path) -> Path:
    """The data set's folder, seeded by `seed-demo` the first time (and again if an earlier build did not finish)."""
    folder = cache / data_set.name
    if (folder / READY).exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, **app_env(folder)}
    print(f"building {data_set.name}: seed-demo {' '.join(data_set.args)} (once; kept in {folder})", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.ops.cli", "seed-demo", *data_set.args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:  # the demo's injected faults log errors on purpose: shown only when seeding failed
        print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"seed-demo failed (exit {done.returncode})")
    (folder / READY).write_text(f"{time.perf_counter() - started:.0f} s\n")
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def ready(page: Page, screen: Screen, timeout: float) -> None:
    """Wait until the screen's script has finished and what it drew is visible: its title (the sidebar's link of the
    same name comes earlier: not that one) appears while the script runs, then the script state says it is done, then
    its tables must be on screen."""
    heading = page.get_by_role("heading", level=1, name=screen.title, exact=True)
    heading.wait_for(state="visible", timeout=timeout * 1000)
    wait_idle(page, timeout=timeout)
    # Tables in a tab or expander that is not open are not on screen, by design: only the others are waited for.
    page.wait_for_function(_TABLES_DRAWN, timeout=timeout * 1000)


_TABLES_DRAWN = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
    .filter(el => !el.closest('[data-testid="stTabPanel"]:not([role="tabpanel"]), details:not([open])'))
    .every(el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; })"""


def switch_to(page: Page, screen: Screen, timeout: float) -> float:
    """Seconds from a click on the screen's sidebar link until it is ready (see ready)."""
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=screen.title, exact=True)
    more = page.get_by_test_id("stSidebarNavViewButton")
    if not link.is_visible() and more.is_visible():  # a long menu shows its first entries only
        more.click()
    started = time.perf_counter()
    link.click(timeout=timeout * 1000)
    ready(page, screen, timeout)
    return time.perf_counter() - started


def open_by_url(page: Page, server: StreamlitServer, screen: Screen, timeout: float) -> float:
    """Seconds from loading the screen's URL (a new session: a bookmark, a link in an email) until it is ready."""
    started = time.perf_counter()
    page.goto(server.url(f"/{screen.key}"), wait_until="commit", timeout=timeout * 1000)
    ready(page, screen, timeout)
    return time.perf_counter() - started


class Session:
    """One data set's app server for a role, with a browser tab on it."""

    def __init__(self, browser: Browser, folder: Path, role: str, timeout: float) -> None:
        self.server = StreamlitServer(app_env(folder, role=role), startup_timeout=timeout)
        self.server.start()
        self.context = browser.new_context(viewport=LAPTOP)
        self.page = self.context.new_page()
        self.role, self.timeout = role, timeout
        self.allowed = [s for s in SCREENS if role in s.roles]
        self.current = self.allowed[0]
        self.start_seconds = open_by_url(self.page, self.server, self.current, timeout)

    def click(self, screen: Screen) -> float:
        if self.current.key == screen.key:  # click away first: a click on the page shown would only rerun it
            self.current = next(s for s in self.allowed if s.key != screen.key)
            switch_to(self.page, self.current, self.timeout)
        seconds = switch_to(self.page, screen, self.timeout)
        self.current = screen
        return seconds

    def load(self, screen: Screen) -> float:
        seconds = open_by_url(self.page, self.server, screen, self.timeout)
        self.current = screen
        return seconds

    def close(self) -> None:
        self.context.close()
        self.server.stop()


def measure(
    folders: dict[str, Path], screens: list[Screen], repeat: int, timeout: float
) -> tuple[dict[str, dict[str, Timing]], dict[str, dict[str, float]]]:
    """Open every screen with its role on a copy of each data set, the data sets' servers side by side and their
    measurements interleaved (a machine shared with other work slows both alike): from the sidebar (first, then
    `repeat` more times), then `repeat` times by its URL. Also returns, per role, each server's first page load."""
    timings = {name: {screen.key: Timing() for screen in screens} for name in folders}
    starts: dict[str, dict[str, float]] = {name: {} for name in folders}
    by_role: dict[str, list[Screen]] = {}
    for screen in screens:
        by_role.setdefault(role_for(screen), []).append(screen)
    with tempfile.TemporaryDirectory(prefix="roomdesk-dash-") as tmp, launch_browser() as browser:
        work = {}
        for name, folder in folders.items():  # pages may write (a sync, a reconciliation run): never the cache
            work[name] = Path(tmp) / name
            shutil.copytree(folder, work[name])
        for role, own in by_role.items():
            sessions: dict[str, Session] = {}
            try:
                for name in folders:
                    sessions[name] = Session(browser, work[name], role, timeout)
                    starts[name][f"{role}: {sessions[name].current.key}"] = sessions[name].start_seconds
                for rnd in range(2 * repeat + 1):
                    for screen in own:
                        for name, session in sessions.items():
                            timing = timings[name][screen.key]
                            if timing.error:
                                continue
                            try:
                                if rnd == 0:
                                    timing.first = session.click(screen)
                                elif rnd <= repeat:
                                    timing.again.append(session.click(screen))
                                else:
                                    timing.by_url.append(session.load(screen))
                            except Exception as exc:  # reported in the table; the run goes on
                                timing.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                                print(f"  {name} {screen.key}: {timing.error}", file=sys.stderr, flush=True)
                                session.load(session.allowed[0])
            finally:
                for session in sessions.values():
                    session.close()
    return timings, starts


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(screens: list[Screen], base: dict[str, Timing], big: dict[str, Timing]) -> None:
    header = (
        "page",
        "role",
        "baseline s",
        "big first s",
        "big s",
        "ratio",
        "by URL: baseline",
        "big",
        f"≤ {TARGET_S} s",
    )
    rows = [header]
    for screen in screens:
        b, t = base[screen.key], big[screen.key]
        ratio = f"{t.median / b.median:.2f}x" if t.median and b.median else "-"
        worst = max((x for x in (t.first, t.median, t.url_median) if x is not None), default=None)
        verdict = t.error or b.error or ("yes" if worst is not None and worst <= TARGET_S else "NO")
        rows.append(
            (screen.key, role_for(screen), _s(b.median), _s(t.first), _s(t.median), ratio, _s(b.url_median),
             _s(t.url_median), verdict)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (c.ljust(w) if i in (0, 1, 8) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        print("  ".join(cells).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the data sets are built once and kept")
    parser.add_argument("--count", type=int, default=6000, help="bookings in the big data set (6000)")
    parser.add_argument("--years", type=float, default=3.0, help="years of past in the big data set (3)")
    parser.add_argument("--repeat", type=int, default=3, help="opens after the first, per page (3)")
    parser.add_argument("--pages", default="", help="comma-separated screen keys (default: every screen)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds a page may take before it counts failed")
    args = parser.parse_args(argv)

    wanted = {k.strip() for k in args.pages.split(",") if k.strip()}
    unknown = wanted - {s.key for s in SCREENS}
    if unknown:
        parser.error(f"unknown screen(s): {', '.join(sorted(unknown))}")
    screens = [s for s in SCREENS if not wanted or s.key in wanted]
    cache = args.data_dir or Path(tempfile.gettempdir()) / f"roomdesk-dashboard-bench-{date.today():%Y%m%d}"
    big = DataSet(f"{args.count}-{args.years:g}y", ("--count", str(args.count), "--years", f"{args.years:g}"))
    base_dir, big_dir = build(BASELINE, cache), build(big, cache)

    print(f"measuring the baseline (default demo) and {big.name}, side by side …", flush=True)
    timings, starts = measure({"baseline": base_dir, "big": big_dir}, screens, args.repeat, args.timeout)
    print()
    print(
        f"Dashboard pages, headless chromium {LAPTOP['width']}x{LAPTOP['height']}, {os.cpu_count()} CPU(s); "
        f"baseline: the default demo; big: seed-demo --count {args.count} --years {args.years:g}"
    )
    print(
        f"baseline s / big s: median of {args.repeat} sidebar clicks after the first; big first s: the first click "
        "after the server started; ratio: big s / baseline s; by URL: a new session (page load, connection, app.py) "
        f"then the page, median of {args.repeat}; the target applies to the big data set's first click, clicks and URL"
    )
    print_table(screens, timings["baseline"], timings["big"])
    print("the server's first page after it started (by URL), baseline → big:")
    for key, seconds in starts["big"].items():
        print(f"  {key:<24} {_s(starts['baseline'].get(key))} → {_s(seconds)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
