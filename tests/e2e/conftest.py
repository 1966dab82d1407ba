"""Fixtures for real-browser tests (Debian chromium through playwright). See tests/e2e/harness.py.

Every test collected under tests/e2e is marked `browser` automatically (`pytest -m "not browser"` leaves them out).

    def test_dashboard(app_server, page):
        open_page(page, app_server, "/")
        wait_text(page, "Phone booking")
        screenshot(page, "dashboard")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .harness import (
    REPO_ROOT,
    SCREENSHOT_DIR,
    VIEWPORT,
    ChromiumMissing,
    StreamlitServer,
    app_env,
    launch_browser,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so the `page` fixture can screenshot failures.
    report = yield
    setattr(item, f"_rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian chromium for the whole session. Fails (never skips) when it is missing."""
    try:
        with launch_browser() as b:
            yield b
    except ChromiumMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (1400x900) and page per test; on failure saves screenshots/failures/<test>.png."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        rep = getattr(request.node, "_rep_call", None)
        if rep is not None and rep.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
            path = SCREENSHOT_DIR / "failures" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                pg.screenshot(path=str(path), full_page=True)
                print(f"failure screenshot: {path}")
            except Exception as exc:  # the page may be gone; never hide the real failure
                print(f"failure screenshot not saved: {exc}")
        context.close()


StartApp = Callable[..., StreamlitServer]


@pytest.fixture
def start_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartApp]:
    """Factory: `start_app(env=None, *, app_path="app.py", cwd=REPO_ROOT, data_dir=None, role=None)` starts a server
    (fresh DATA_DIR and sandbox gateways unless `env` says otherwise) and returns it, healthy; all stop at teardown."""
    servers: list[StreamlitServer] = []

    def start(
        env: Mapping[str, str] | None = None,
        *,
        app_path: str | Path = "app.py",
        cwd: str | Path = REPO_ROOT,
        data_dir: Path | None = None,
        role: str | None = None,
        **kwargs: Any,
    ) -> StreamlitServer:
        data_dir = data_dir or tmp_path_factory.mktemp("data")
        server = StreamlitServer({**app_env(data_dir, role=role), **(env or {})}, app_path=app_path, cwd=cwd, **kwargs)
        servers.append(server)
        return server.__enter__()

    yield start
    for server in reversed(servers):
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    """The real app.py, shared by the tests of one module, on a fresh DATA_DIR with sandbox gateways."""
    with StreamlitServer(app_env(tmp_path_factory.mktemp("data"))) as server:
        yield server
