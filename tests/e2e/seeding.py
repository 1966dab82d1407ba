"""A DATA_DIR with demo data for a browser test, prepared in the test process before the app server starts on it.
Kept apart from harness.py, which imports nothing from the app (scripts/shoot.py uses it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.harness import app_env

if TYPE_CHECKING:
    from services.core.context import Services


@contextmanager
def demo_venue(data_dir: Path, monkeypatch: pytest.MonkeyPatch, *, count: int) -> Iterator[Services]:
    """Services over `data_dir` with the app's environment (app_env) and `count` demo bookings; closed afterwards
    (and the settings cache cleared, so the next test reads its own environment)."""
    from services.core.context import build_services
    from services.core.settings import get_settings
    from services.ops import demo

    for key, value in app_env(data_dir).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    svc = build_services()
    try:
        demo.seed_demo(svc, count=count)
        yield svc
    finally:
        svc.engine.dispose()
        get_settings.cache_clear()
