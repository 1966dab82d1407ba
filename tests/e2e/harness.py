"""Real-browser test harness: start the Streamlit app on a free loopback port and drive Debian chromium.

Used by tests/e2e/conftest.py (pytest fixtures) and by scripts/shoot.py (screenshots for developers), so it imports
neither pytest nor anything from the app. Playwright is imported lazily: starting a server does not need it.

    with StreamlitServer(env=app_env(tmp_path / "data")) as server:
        page.goto(server.url("/"))
        wait_idle(page)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
VIEWPORT: Any = {"width": 1400, "height": 900}  # playwright ViewportSize
LAPTOP: Any = {"width": 1366, "height": 768}  # a front-desk laptop: every outcome must fit without scrolling

# Streamlit marks the app root with the script state; "notRunning" means the last rerun has finished.
IDLE_SELECTOR = '[data-testid="stApp"][data-test-script-state="notRunning"]'

# Environment variable the app reads to pick the signed-in staff role when no OIDC sign-in is configured
# (development and tests only). Single place to change if app.py settles on another name.
ROLE_ENV = "ROOMDESK_DEV_ROLE"

LOOPBACK = "127.0.0.1"
_NO_PROXY = "127.0.0.1,localhost"


def free_port() -> int:
    """A TCP port that is free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def app_env(data_dir: Path | str, *, role: str | None = None, **extra: str) -> dict[str, str]:
    """Settings for an app under test: its own DATA_DIR, sandbox gateways, and no developer secrets.toml.

    `extra` adds or overrides variables (e.g. `HOLD_MINUTES="5"`). Pass the result as `StreamlitServer(env=...)`.
    """
    data_dir = Path(data_dir)
    env = {
        "DATA_DIR": str(data_dir),
        "PAYMENTS": "sandbox",
        "CALENDAR": "sandbox",
        "MAIL": "sandbox",
        # A developer's .streamlit/secrets.toml may point at real Stripe/Google: never read it under test.
        "ROOMDESK_SECRETS_FILE": str(data_dir / "no-secrets.toml"),
    }
    if role is not None:
        env[ROLE_ENV] = role
    env.update(extra)
    return env


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # An empty ProxyHandler ignores http_proxy/HTTPS_PROXY, which would otherwise catch loopback requests too.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _merge_no_proxy(current: str | None) -> str:
    parts = [p for p in (current or "").split(",") if p.strip()]
    for host in _NO_PROXY.split(","):
        if host not in parts:
            parts.append(host)
    return ",".join(parts)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class StreamlitServer:
    """`streamlit run` in its own process group on a free port; a context manager.

    On entry it waits (up to `startup_timeout` seconds) for `/_stcore/health` to answer "ok", raising RuntimeError
    with the tail of the server's output if it does not; on exit it terminates the whole process group.
    `env` is layered over the current environment (NO_PROXY always covers loopback).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        app_path: str | os.PathLike[str] = "app.py",
        cwd: str | os.PathLike[str] = REPO_ROOT,
        port: int | None = None,
        startup_timeout: float = 60.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.app_path = str(app_path)
        self.cwd = Path(cwd)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        no_proxy = _merge_no_proxy(self.env.get("NO_PROXY") or self.env.get("no_proxy"))
        self.env["NO_PROXY"] = self.env["no_proxy"] = no_proxy
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    name = "streamlit"
    health_path = "/_stcore/health"

    def healthy_body(self, body: str) -> bool:
        return body == "ok"

    # -- addresses ---------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, path: str = "/") -> str:
        """Absolute URL of a page path such as "/" or "/bookings?id=3"."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", self.app_path,
            "--server.headless", "true",
            "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> StreamlitServer:
        if self.process is not None:
            raise RuntimeError("server already started")
        # A file, not a pipe: a chatty server can never block on a full pipe buffer.
        self._log = tempfile.TemporaryFile(prefix="streamlit-")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills streamlit and anything it spawned
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)  # the error message already carries the server's output
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self.process is not None
        opener = _no_proxy_opener()
        health = self.base_url + self.health_path
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {code} before it was healthy "
                    f"({' '.join(self.command)} in {self.cwd})"
                    f"\n--- server output (tail) ---\n{self.output_tail()}"
                )
            try:
                with opener.open(health, timeout=2) as resp:
                    body = resp.read().decode(errors="replace").strip()
                    if resp.status == 200 and self.healthy_body(body):
                        return
                    last_error = f"HTTP {resp.status}: {body[:200]}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} not healthy at {health} after {self.startup_timeout:.0f}s ({last_error})"
            f"\n--- server output (tail) ---\n{self.output_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 10 s; idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # The leader is gone; make sure nothing else in its group outlives it.
        _signal_group(proc.pid, signal.SIGKILL)

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr together)."""
        if self._log is None:
            return ""
        self._log.flush()
        pos = self._log.tell()
        self._log.seek(0)
        data = self._log.read()
        self._log.seek(pos)
        return data.decode(errors="replace")

    def output_tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


class ApiServer(StreamlitServer):
    """The booking API and customer pages (`python -m services.ops.cli serve-api`) the same way: own process group, free
    loopback port, healthy when /healthz answers."""

    name = "serve-api"
    health_path = "/healthz"

    def healthy_body(self, body: str) -> bool:
        return '"ok"' in body

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.ops.cli", "serve-api", "--host", LOOPBACK, "--port", str(self.port)]

    def __enter__(self) -> ApiServer:
        self.start()
        return self


# -- browser -------------------------------------------------------------------------------------------------------


class ChromiumMissing(RuntimeError):
    pass


@contextmanager
def launch_browser() -> Iterator[Browser]:
    """Debian chromium through playwright (never `playwright install`), headless, no network beyond what pages ask."""
    if not os.path.exists(CHROMIUM):
        raise ChromiumMissing(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Run `make test` (it installs it) or `apt-get install chromium`."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page: Page, timeout: float = 30.0) -> None:
    """Wait until the app is up and its last rerun finished. Then wait for the element you need."""
    page.wait_for_selector(IDLE_SELECTOR, state="attached", timeout=timeout * 1000)


def wait_text(page: Page, text: str, timeout: float = 30.0) -> None:
    """Wait until `text` is visible somewhere on the page. Hidden copies (a data grid's accessible cells carry their
    text off-screen) are skipped: `.first` alone could settle on one and never become visible."""
    page.get_by_text(text).filter(visible=True).first.wait_for(state="visible", timeout=timeout * 1000)


def in_view(locator: Any, what: str = "the element") -> dict[str, float]:
    """The element is on screen as it is, without scrolling: its box lies inside the laptop's 768-pixel height (the
    outcome must be where the person is looking). Returns the box."""
    box = locator.bounding_box()
    assert box is not None, f"{what} is not on the page"
    assert box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"], (what, box)
    return dict(box)


def text_in_view(page: Page, text: str) -> dict[str, float]:
    """`text` (its first visible copy) is on screen without scrolling; see in_view."""
    return in_view(page.get_by_text(text).filter(visible=True).first, repr(text))


def open_page(page: Page, server: StreamlitServer, path: str = "/", *, timeout: float = 60.0) -> None:
    """Go to `path` on the server and wait until the first run has finished."""
    page.goto(server.url(path), wait_until="domcontentloaded", timeout=timeout * 1000)
    wait_idle(page, timeout=timeout)


def screenshot(page: Page, name: str, *, full_page: bool = True, **kwargs: Any) -> Path:
    """Save `screenshots/<name>.png` under the repo root (folders in `name` are created) and return the path."""
    path = SCREENSHOT_DIR / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, **kwargs)
    return path
