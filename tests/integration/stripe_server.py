"""localstripe as a test peer: one process per test session, reset before each test, behind a small shim.

localstripe (GPL-3.0) runs as a separate process started from the venv's `localstripe` script; nothing imports it.
It listens on all interfaces on a free port for the length of the run, and (whatever TMPDIR says) pickles its whole
state to /tmp/localstripe.pickle after every write; with `--from-scratch` it never reads that file back, so parallel
runs only overwrite each other's copy.

The SDK talks to a shim on 127.0.0.1 that forwards to localstripe and:
  * records every request (method, path, form fields, Idempotency-Key) so tests can see what the adapter sent;
  * translates what localstripe's older API does not take: `allowed_payment_method_types` (API 2026-09-30.endive)
    becomes `payment_method_types`, and Refund `reason` (an enum Stripe documents) is dropped after being recorded;
  * serves lists newest first with `starting_after` paging, as Stripe documents (localstripe: oldest first);
  * serves `/v1/disputes` from Stripe-shaped objects a test seeds (localstripe has no disputes);
  * when a test turns on `confirm_after_decline`, lets a PaymentIntent whose card was declined be confirmed again with
    another card, as Stripe does (localstripe keeps the failed charge and answers 400);
  * after a capture through it, gives the captured charge `amount_captured` and its PaymentIntent `amount_received`
    (the amount actually captured, as Stripe documents; localstripe has neither field);
  * serves `/v1/invoices*` and `/v1/invoiceitems` itself (stripe_invoices.py: localstripe's Invoice is the legacy
    model, without send_invoice collection, finalize, send, custom fields or `total_taxes`), on localstripe's
    customers and tax rates;
  * when a test turns on `replay_idempotency_keys`, replays the first answer to a POST whose Idempotency-Key it has
    seen with the same path and form, and refuses the key with other parameters (`idempotency_error`), as Stripe
    documents; localstripe ignores keys.
Everything else (PaymentIntents, charges, refunds, events, balance transactions, customers, tax rates, errors) is
localstripe's own answer.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.integration import stripe_invoices
from tests.integration.stripe_invoices import Invoicing

TEST_KEY = "sk_test_roomdesk_localstripe_DO_NOT_LEAK_4242"
PICKLE = Path("/tmp/localstripe.pickle")  # hard-coded in localstripe/resources.py
_LIST_PATHS = re.compile(r"^/v1/(payment_intents|charges|refunds|events|balance_transactions)$")
_DISPUTE = re.compile(r"^/v1/disputes(?:/(?P<id>[^/]+))?$")
_CONFIRM = re.compile(r"^/v1/payment_intents/(?P<id>pi_\w+)/confirm$")
_CAPTURE = re.compile(r"^/v1/payment_intents/(?P<id>pi_\w+)/capture$")
# Create paths where stripe 16 sends `allowed_payment_method_types` (API 2026-09-30.endive) and localstripe wants the
# older `payment_method_types`.
_ALLOWED_TYPES_PATHS = frozenset({"/v1/payment_intents", "/v1/setup_intents"})
_INVOICING = stripe_invoices.PATHS
_MUTED_EVENT = "roomdesk.muted"  # an event type localstripe never sends: a webhook filtered on it receives nothing
_STARTUP_SECONDS = 30.0


@dataclass
class Sent:
    """One request the shim received from the SDK."""

    method: str
    path: str
    form: list[tuple[str, str]]
    query: list[tuple[str, str]]
    idempotency_key: str | None

    def field(self, name: str) -> str | None:
        return next((v for k, v in self.form if k == name), None)


@dataclass
class LocalStripe:
    """The running peer: `url` for the adapter, what it was sent, and seeded disputes."""

    url: str
    upstream: str
    log_file: Path
    sent: list[Sent] = field(default_factory=list)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Off by default: only tests that pay again after a decline need it (see `_clear_declined_charge`).
    confirm_after_decline: bool = False
    webhook_ids: set[str] = field(default_factory=set)
    # Off by default (existing tests show what the adapter sends with localstripe's own behaviour).
    replay_idempotency_keys: bool = False
    # Idempotency-Key -> (path, form, status, content type, body) of the first answer, while replaying is on.
    answers: dict[str, tuple[str, list[tuple[str, str]], int, str, bytes]] = field(default_factory=dict)
    # Charge id -> amount captured through the shim (localstripe does not report it).
    captured: dict[str, int] = field(default_factory=dict)
    # Invoices and invoice items, served by the shim (see stripe_invoices.py); tax rates and customers stay upstream.
    invoicing: Invoicing = field(default_factory=Invoicing)

    def reset(self) -> None:
        """Drop every localstripe object, recorded request and seeded dispute, and mute the webhooks registered here
        (localstripe keeps webhooks across DELETE /_config/data)."""
        self.mute_webhooks()
        status, _, body = _forward(self.upstream, "DELETE", "/_config/data", b"", {})
        if status != 200:
            pytest.fail(f"localstripe refused DELETE /_config/data ({status}): {body[:200]!r}", pytrace=False)
        with self.lock:
            self.sent.clear()
            self.disputes.clear()
            self.confirm_after_decline = False
            self.replay_idempotency_keys = False
            self.answers.clear()
            self.captured.clear()
        self.invoicing.clear()

    def register_webhook(self, url: str, secret: str, *, webhook_id: str = "roomdesk") -> None:
        """Have localstripe POST its events to `url`, signed with `secret` (Stripe's scheme, `t` = the event's
        `created`). It sends only payment_intent.succeeded / payment_intent.payment_failed, ~1 s after the change,
        once (no retries, whatever the answer), to every webhook registered at that moment; registering an id again
        replaces it. Registered straight with localstripe: the shim is for the SDK's requests."""
        self._configure_webhook(webhook_id, [("url", url), ("secret", secret)])
        with self.lock:
            self.webhook_ids.add(webhook_id)

    def mute_webhooks(self) -> None:
        """Stop every webhook registered here. localstripe cannot delete one, so each is re-registered with an event
        filter nothing matches; deliveries still waiting out their ~1 s go nowhere."""
        with self.lock:
            ids = sorted(self.webhook_ids)
            self.webhook_ids.clear()
        for webhook_id in ids:
            self._configure_webhook(
                webhook_id, [("url", "http://127.0.0.1:9/muted"), ("secret", "muted"), ("events[]", _MUTED_EVENT)]
            )

    def _configure_webhook(self, webhook_id: str, form: list[tuple[str, str]]) -> None:
        status, _, body = _forward(
            self.upstream,
            "POST",
            f"/_config/webhooks/{webhook_id}",
            urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            pytest.fail(
                f"localstripe refused POST /_config/webhooks/{webhook_id} ({status}): {body[:200]!r}", pytrace=False
            )

    def seed_disputes(self, disputes: list[dict[str, Any]]) -> None:
        with self.lock:
            for dispute in disputes:
                self.disputes[dispute["id"]] = json.loads(json.dumps(dispute))

    def writes(self, path: str | None = None) -> list[Sent]:
        """POSTs received, optionally only those to `path` (a regular expression matched in full)."""
        with self.lock:
            return [s for s in self.sent if s.method == "POST" and (path is None or re.fullmatch(path, s.path))]


# --------------------------------------------------------------------------------------------- fixtures

_server: LocalStripe | None = None


@pytest.fixture(scope="session")
def localstripe_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LocalStripe:
    """localstripe + shim, started once per session (shared by every module that imports this fixture)."""
    global _server
    if _server is None:
        _server = _start(tmp_path_factory.mktemp("localstripe"))
        request.config.add_cleanup(_stop)
    return _server


@pytest.fixture
def localstripe(localstripe_server: LocalStripe) -> Iterator[LocalStripe]:
    """The peer, emptied before the test."""
    localstripe_server.reset()
    yield localstripe_server


# --------------------------------------------------------------------------------------------- process

_process: subprocess.Popen[bytes] | None = None
_shim: ThreadingHTTPServer | None = None


def _start(workdir: Path) -> LocalStripe:
    global _process, _shim
    script = Path(sys.executable).parent / "localstripe"
    if not script.exists():
        pytest.fail(
            f"{script} is missing: install the test requirements (scripts/bootstrap-venv requirements-dev.txt)",
            pytrace=False,
        )
    if PICKLE.exists() and not os.access(PICKLE, os.W_OK):
        pytest.fail(
            f"{PICKLE} belongs to another user: localstripe writes it after every change and would fail every write",
            pytrace=False,
        )
    log_file = workdir / "localstripe.log"
    env = {**os.environ, "TMPDIR": str(workdir), "PYTHONUNBUFFERED": "1"}  # TMPDIR is ignored; kept for any temp use
    last_error = ""
    for _attempt in range(3):  # another process may take the free port between our probe and localstripe's bind
        port = _free_port()
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                [str(script), "--port", str(port), "--from-scratch"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        upstream = f"http://127.0.0.1:{port}"
        last_error = _wait_ready(proc, upstream)
        if not last_error:
            _process = proc
            break
        _terminate(proc)
    else:
        tail = log_file.read_text(errors="replace")[-2000:]
        pytest.fail(f"localstripe did not come up: {last_error}\n--- {log_file} ---\n{tail}", pytrace=False)
    server = LocalStripe(url="", upstream=upstream, log_file=log_file)
    _shim = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(server))
    _shim.daemon_threads = True
    server.url = f"http://127.0.0.1:{_shim.server_address[1]}"
    server.invoicing.hosted_base = server.url
    threading.Thread(target=_shim.serve_forever, name="localstripe-shim", daemon=True).start()
    return server


def _wait_ready(proc: subprocess.Popen[bytes], upstream: str) -> str:
    deadline = time.monotonic() + _STARTUP_SECONDS
    error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the process exited with status {proc.returncode}"
        try:
            status, _, body = _forward(
                upstream, "GET", "/v1/payment_intents?limit=1", b"", {"Authorization": f"Bearer {TEST_KEY}"}
            )
            if status == 200 and json.loads(body).get("object") == "list":
                return ""
            error = f"GET /v1/payment_intents answered {status}"
        except OSError as exc:
            error = str(exc)
        time.sleep(0.1)
    return f"{error} after {_STARTUP_SECONDS:.0f} s"


def _stop() -> None:
    global _server, _process, _shim
    if _shim is not None:
        _shim.shutdown()
        _shim.server_close()
    if _process is not None:
        _terminate(_process)
    _server = _process = _shim = None


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _forward(upstream: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    parts = urlsplit(upstream)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "application/json", resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------- shim


def _handler_for(server: LocalStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path = split.path
            query = parse_qsl(split.query, keep_blank_values=True)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = parse_qsl(body.decode(), keep_blank_values=True) if method == "POST" else []
            with server.lock:
                server.sent.append(Sent(method, path, form, query, self.headers.get("Idempotency-Key")))
            try:
                if _DISPUTE.match(path):
                    status, payload = _disputes(server, method, path, query, form)
                    self._reply(status, "application/json", json.dumps(payload).encode())
                    return
                if method == "GET" and _LIST_PATHS.match(path):
                    status, ctype, out = _newest_first(server, path, query, self._auth())
                    self._reply(status, ctype, _fill_captured(server, status, out))
                    return
                key = self.headers.get("Idempotency-Key")
                if method == "POST" and key and server.replay_idempotency_keys:
                    replayed = _replayed(server, key, path, form)
                    if replayed is not None:
                        self._reply(*replayed)
                        return
                if _INVOICING.match(path):
                    status, payload = server.invoicing.handle(method, path, query, form, self._lookup)
                    out = json.dumps(payload).encode()
                    if method == "POST" and key and server.replay_idempotency_keys and status == 200:
                        with server.lock:
                            server.answers.setdefault(key, (path, form, status, "application/json", out))
                    self._reply(status, "application/json", out)
                    return
                if method == "POST":
                    body = urlencode(_translate_form(path, form)).encode()
                    confirm = _CONFIRM.match(path)
                    if confirm and server.confirm_after_decline:
                        _clear_declined_charge(server, confirm.group("id"), self._auth())
                target = path + (f"?{split.query}" if split.query else "")
                status, ctype, out = _forward(server.upstream, method, target, body, self._auth())
                if method == "POST" and status == 200 and _CAPTURE.match(path):
                    _note_capture(server, dict(form), out)
                out = _fill_captured(server, status, out)
                if method == "POST" and key and server.replay_idempotency_keys and status in (200, 402):
                    with server.lock:  # Stripe saves an answer once the endpoint ran, a card decline included
                        server.answers.setdefault(key, (path, form, status, ctype, out))
                self._reply(status, ctype, out)
            except Exception as exc:  # a shim bug must show as a 500 with its cause, not a hung test
                self._reply(
                    500, "application/json", json.dumps({"error": {"type": "api_error", "message": repr(exc)}}).encode()
                )

        def _lookup(self, path: str) -> tuple[int, Any]:
            """GET one localstripe object (a customer, a tax rate) for the invoice emulation."""
            status, _, out = _forward(server.upstream, "GET", path, b"", self._auth())
            return status, json.loads(out)

        def _auth(self) -> dict[str, str]:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if self.headers.get("Authorization"):
                headers["Authorization"] = self.headers["Authorization"]
            return headers

        def _reply(self, status: int, ctype: str, out: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(out)))
            self.send_header("Request-Id", "req_localstripe_shim")
            self.end_headers()
            self.wfile.write(out)

    return Handler


def _replayed(server: LocalStripe, key: str, path: str, form: list[tuple[str, str]]) -> tuple[int, str, bytes] | None:
    """Stripe's idempotency: the first answer again for the same request, a 400 for the key reused differently."""
    with server.lock:
        seen = server.answers.get(key)
    if seen is None:
        return None
    first_path, first_form, status, ctype, out = seen
    if (first_path, sorted(first_form)) == (path, sorted(form)):
        return status, ctype, out
    error = {
        "error": {
            "type": "idempotency_error",
            "message": "Keys for idempotent requests can only be used with the same parameters they were first used "
            f"with. Try using a key other than '{key}' if you meant to execute a different request.",
        }
    }
    return 400, "application/json", json.dumps(error).encode()


def _note_capture(server: LocalStripe, form: dict[str, str], out: bytes) -> None:
    pi = json.loads(out)
    charge = pi.get("latest_charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    if isinstance(charge_id, str):
        with server.lock:
            server.captured[charge_id] = int(form.get("amount_to_capture") or pi["amount"])


def _fill_captured(server: LocalStripe, status: int, out: bytes) -> bytes:
    """Add `amount_captured` to charges captured through the shim and `amount_received` to their PaymentIntents,
    wherever they appear in an answer (objects, lists, embedded `latest_charge`)."""
    with server.lock:
        captured = dict(server.captured)
    if status != 200 or not captured:
        return out
    payload = json.loads(out)

    def fill(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                fill(item)
        elif isinstance(node, dict):
            if node.get("object") == "charge" and node.get("id") in captured:
                node.setdefault("amount_captured", captured[node["id"]])
            charge = node.get("latest_charge")
            charge_id = charge.get("id") if isinstance(charge, dict) else charge
            if node.get("object") == "payment_intent" and charge_id in captured:
                node.setdefault("amount_received", captured[charge_id])
            for value in node.values():
                fill(value)

    fill(payload)
    return json.dumps(payload).encode()


def _translate_form(path: str, form: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if path in _ALLOWED_TYPES_PATHS:
        return [(k.replace("allowed_payment_method_types", "payment_method_types", 1), v) for k, v in form]
    if path == "/v1/refunds":
        return [(k, v) for k, v in form if k != "reason"]
    return form


def _clear_declined_charge(server: LocalStripe, pi_id: str, headers: dict[str, str]) -> None:
    """Stripe lets a PaymentIntent whose last charge failed be confirmed again once it has a new payment method;
    localstripe derives `requires_payment_method` from that failed charge forever and answers 400. Before such a
    confirm, detach the failed charge (localstripe reads JSON bodies and sets any existing attribute), so the
    confirm makes a new charge. The failed charge itself stays listed, as on Stripe."""
    status, _, out = _forward(server.upstream, "GET", f"/v1/payment_intents/{pi_id}", b"", headers)
    if status != 200:
        return  # let the confirm itself give localstripe's answer
    pi = json.loads(out)
    charge = pi.get("latest_charge")
    if pi.get("payment_method") and isinstance(charge, dict) and charge.get("status") == "failed":
        status, _, out = _forward(
            server.upstream,
            "POST",
            f"/v1/payment_intents/{pi_id}",
            json.dumps({"latest_charge": None}).encode(),
            {**headers, "Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"could not detach the declined charge of {pi_id} ({status}): {out[:200]!r}")


def _newest_first(
    server: LocalStripe, path: str, query: list[tuple[str, str]], headers: dict[str, str]
) -> tuple[int, str, bytes]:
    params = dict(query)
    passed = [(k, v) for k, v in query if k not in ("limit", "starting_after")]
    status, ctype, out = _forward(
        server.upstream, "GET", f"{path}?{urlencode([*passed, ('limit', '100000')])}", b"", headers
    )
    if status != 200:
        return status, ctype, out
    items = json.loads(out)["data"]
    status, payload = _page(path, items, params)
    return status, "application/json", json.dumps(payload).encode()


def _page(path: str, items: list[dict[str, Any]], params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    # Newest first; within one second, the later-created first (localstripe keeps creation order within a second).
    ordered = [item for _, item in sorted(enumerate(items), key=lambda p: (p[1].get("created", 0), p[0]), reverse=True)]
    limit = int(params.get("limit", "10"))
    start = 0
    if params.get("starting_after"):
        ids = [item.get("id") for item in ordered]
        if params["starting_after"] not in ids:
            return 404, _missing(params["starting_after"])
        start = ids.index(params["starting_after"]) + 1
    return 200, {
        "object": "list",
        "data": ordered[start : start + limit],
        "has_more": start + limit < len(ordered),
        "url": path,
    }


def _missing(object_id: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such object: '{object_id}'",
        }
    }


def _disputes(
    server: LocalStripe, method: str, path: str, query: list[tuple[str, str]], form: list[tuple[str, str]]
) -> tuple[int, dict[str, Any]]:
    match = _DISPUTE.match(path)
    assert match is not None
    dispute_id = match.group("id")
    with server.lock:
        if dispute_id is None:
            return _page(path, list(server.disputes.values()), dict(query))
        dispute = server.disputes.get(dispute_id)
        if dispute is None:
            return 404, _missing(dispute_id)
        if method == "POST":
            for key, value in form:
                found = re.fullmatch(r"(evidence|metadata)\[(\w+)\]", key)
                if found:
                    dispute.setdefault(found.group(1), {})[found.group(2)] = value
            details = dispute.setdefault("evidence_details", {})
            details["has_evidence"] = any(dispute.get("evidence", {}).values())
            if dict(form).get("submit") == "true":
                dispute["status"] = "under_review"
                details["submission_count"] = int(details.get("submission_count") or 0) + 1
        return 200, json.loads(json.dumps(dispute))
