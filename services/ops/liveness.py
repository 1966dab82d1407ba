"""The worker's health endpoint (`worker --health-port P`): a process manager or load balancer asks
`GET /healthz` and hears whether this worker process is alive and its rounds succeed.

  200 {"status": "ok", ...}        the last round succeeded, and not longer ago than the worker's schedule allows
  503 {"status": "starting", ...}  no round has finished yet
  503 {"status": "failing", ...}   the last round failed (the error's first line; never customer data)
  503 {"status": "stalled", ...}   no round finished for longer than `stale_after` (the loop is stuck)

It answers from the process's own memory (the rounds it ran), so it reports this process even when the database is
unreachable; the Overview's worker line reads the database instead (services.ops.health.worker_health). Served by the
standard library's threading HTTP server on a daemon thread, loopback by default.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Liveness:
    """What the worker loop tells the endpoint after each round."""

    stale_after: float  # seconds without a finished round before the worker counts as stalled
    started: float = field(default_factory=time.monotonic)
    last_round: float | None = None
    last_ok: float | None = None
    failures: int = 0
    error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def round_done(self, *, error: str | None = None) -> None:
        with self.lock:
            self.last_round = time.monotonic()
            if error is None:
                self.last_ok, self.failures, self.error = self.last_round, 0, ""
            else:
                self.failures, self.error = self.failures + 1, error

    def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) as the endpoint answers now."""
        with self.lock:
            now = time.monotonic()
            body: dict[str, Any] = {"failures_in_a_row": self.failures}
            if self.last_ok is not None:
                body["last_ok_seconds_ago"] = round(now - self.last_ok, 1)
            if self.last_round is None:
                stalled = now - self.started > self.stale_after
                return 503, {**body, "status": "stalled" if stalled else "starting"}
            if now - self.last_round > self.stale_after:
                return 503, {**body, "status": "stalled"}
            if self.failures:
                return 503, {**body, "status": "failing", "error": self.error}
            return 200, {**body, "status": "ok"}


def serve(liveness: Liveness, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start answering GET /healthz on host:port in a daemon thread; returns the server (shutdown() stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/healthz":
                self._answer(404, {"status": "not found"})
                return
            self._answer(*liveness.report())

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server
