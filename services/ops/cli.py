"""Command line: `python -m services.ops.cli <command>`. Translates errors into messages and exit codes, nothing
more."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

from services.core.errors import DomainError

N = TypeVar("N", int, float)


def _services():  # type: ignore[no-untyped-def]
    from services.core.context import build_services

    return build_services()


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from services.ops import demo

    svc = _services()
    if not demo.is_empty(svc):
        if args.if_empty:
            print("Demo data already present; nothing to do.")
            return 0
        print("The database or sandbox already holds data; remove DATA_DIR (make clean-data) to start again.")
        return 1
    report = demo.seed_demo(
        svc, count=args.count, years=args.years, progress=lambda f, m: print(f"  {f:4.0%}  {m}", flush=True)
    )
    demo.first_sync(svc)
    print(report.line() + "; synced and reconciled")
    for name, reference in sorted(report.incidents.items()):
        print(f"  incident {name:<24} {reference}")
    return 0


def cmd_expire_holds(args: argparse.Namespace) -> int:
    from services.booking import expire_change_holds, expire_holds
    from services.booking.holds import finish_paid

    svc = _services()
    finished = finish_paid(svc, actor="cli")
    counts = expire_holds(svc, actor="cli")
    changes = expire_change_holds(svc, actor="cli")
    if finished:
        print("Paid, finished now: " + ", ".join(f"{k}: {v}" for k, v in finished.items()))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) or "No holds past their expiry.")
    if changes:
        print("Changes: " + ", ".join(f"{k}: {v}" for k, v in changes.items()))
    return 0


def cmd_advance(args: argparse.Namespace) -> int:
    from services.booking import advance_legs

    print(f"{advance_legs(_services(), actor='cli')} day(s) moved on.")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from services.reconciliation.sync import sync

    report = sync(_services(), actor="cli", progress=lambda f, m: print(f"  {f:4.0%}  {m}", file=sys.stderr))
    print(report.line())
    return 1 if report.errors else 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    import json

    from services.reconciliation.cycle import run_cycle
    from services.reconciliation.findings import finding_json, open_findings
    from services.reconciliation.reconcile import reconcile

    svc = _services()
    run = run_cycle(svc, actor="cli").run if args.sync else reconcile(svc, actor="cli")
    findings = open_findings(svc)
    if args.json:
        print(json.dumps([finding_json(f) for f in findings], indent=2))
    else:
        print(f"{run.open_total} open finding(s): {run.opened} new, {run.resolved} resolved ({run.seconds:.2f} s)")
        for f in findings:
            print(f"  [{f.severity:<6}] {f.code:<22} {f.booking_ref or '-':<10} {f.summary}")
    return 0


def cmd_send_mail(args: argparse.Namespace) -> int:
    from services.notify.outbox import deliver_due

    svc = _services()
    report = deliver_due(svc, now=svc.now(), actor="cli", limit=args.limit)
    print(report.line().capitalize() + ".")
    return 0


def cmd_send_reminders(args: argparse.Namespace) -> int:
    from services.notify.reminders import send_reminders

    svc = _services()
    report = send_reminders(svc, now=svc.now(), actor="cli")
    for r in report.sent + report.queued:
        sent = "sent" if r in report.sent else "queued to retry"
        print(f"  {r.reference:<10} {r.day}  {r.to}  {sent}")
    print(report.line().capitalize() + ".")
    return 0


def _interval(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not an interval: {text!r} (use 30s, 5m, 1h)") from None
    if not 1 <= seconds <= 86400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: use 1s to 24h")
    return seconds


def cmd_worker(args: argparse.Namespace) -> int:
    from services.ops import worker

    return worker.run(_services(), every=args.every, once=args.once, health_port=args.health_port)


def cmd_sandbox_load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.ops.sandbox_load import load_dir

    report = load_dir(_services(), Path(args.dir))
    print(report.line())
    return 1 if report.problems else 0


def default_workers() -> int:
    """API worker processes by default: one per CPU core (at most 8)."""
    return max(1, min(8, os.cpu_count() or 1))


def cmd_serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from services.ops import serving

    workers = args.workers or default_workers()
    level = "info" if args.verbose else "warning"
    svc = _services()  # migrates the schema once, before any worker starts
    if workers == 1:
        from services.web.api import create_app

        uvicorn.run(create_app(svc), host=args.host, port=args.port, log_level=level)
        return 0
    svc.engine.dispose()
    # Each worker builds its services from the environment and counts its share of the rate limits.
    os.environ["API_WORKERS"] = str(workers)
    serving.run_workers(host=args.host, port=args.port, workers=workers, log_level=level)
    return 0


# Days the reports and the daily close can work with: the venue midnights around a day (and a day or a month on)
# must be instants Python can hold in any time zone, and Stripe has nothing before 1970.
FIRST_DAY, LAST_DAY = date(1970, 1, 2), date(9998, 12, 31)


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(f"{day} is out of range: use a day from {FIRST_DAY} to {LAST_DAY}")
    return day


def _port(text: str) -> int:
    n = _count(text)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port: use 1 to 65535")
    return n


def _workers(text: str) -> int:
    n = _count(text)
    if n > 64:
        raise argparse.ArgumentTypeError(f"{n} workers is too many: use 1 to 64")
    return n


def _years(text: str) -> float:
    return _in_range(text, float, 0.0, 20.0, "a number of years")


def _count(text: str) -> int:
    return _in_range(text, int, 1, 100_000, "a whole number")


def _in_range(text: str, convert: Callable[[str], N], low: N, high: N, what: str) -> N:
    """An argparse type: `text` read by `convert`, from `low` to `high`, else the reason in one line."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: use {low:g} to {high:g}")
    return value


def cmd_export_refunds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.finance import reports
    from services.rules.fmt import money

    svc = _services()
    for slug in args.room or []:
        svc.catalogue.room(slug)  # an unknown room is an error, not an empty report
    report = reports.refund_report(
        svc, args.date_from, args.date_to, rooms=args.room or None, origins=args.origin or None, live=args.live
    )
    data = reports.refunds_xlsx(report) if args.format == "xlsx" else reports.refunds_csv(report)
    try:
        Path(args.out).write_bytes(data)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    line = f"{report.count} refund(s), {money(report.total_cents, report.currency)} "
    if report.tax_cents:
        line += f"(tax {money(report.tax_cents, report.currency)}) "
    line += f"from {args.date_from} to "
    line += f"{args.date_to} → {args.out}"
    if report.not_in_ledger:
        line += f" ({report.not_in_ledger} made in Stripe and not in our ledger)"
    print(line)
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    """Exit status: 0 passed, 1 failed (differences above the tolerance), 2 error (Stripe unreachable…)."""
    from pathlib import Path

    from services.finance import close, close_queries
    from services.rules.fmt import money

    svc = _services()
    day = args.day or close_queries.default_business_day(svc)
    result = close.run_close(svc, day, actor="cli")
    c = result.close
    if c.status == "error":
        print(f"{day}: error: {c.error}", file=sys.stderr)
        return 2
    print(
        f"{day}: {c.status} — variance {c.variance_bps} bps (tolerance {c.tolerance_bps}), "
        f"Stripe {money(c.stripe_cents, c.currency)}, ledger {money(c.ledger_cents, c.currency)}, "
        f"{len(result.items)} differing item(s)"
    )
    if (tax := result.tax) is not None:
        print(
            f"  tax: collected {money(tax['on_payments'], c.currency)}, "
            f"given back {money(tax['on_refunds'], c.currency)}, net {money(tax['net'], c.currency)}; "
            f"net sales {money(tax['net_sales'], c.currency)}"
        )
    for item in result.items:
        print(
            f"  {item.category:<16} {item.problem:<18} {item.stripe_id or '-':<30} {item.booking_reference or '-':<10} "
            f"{money(item.difference_cents, c.currency)}  {item.note}"
        )
    if args.csv:
        assert c.id is not None
        Path(args.csv).write_bytes(close_queries.close_csv(svc, c.id))
    return 0 if result.passed else 1


def cmd_verify_audit(args: argparse.Namespace) -> int:
    """Exit status: 0 the audit chain is intact, 1 a row was changed or removed."""
    from services.core.audit import verify_chain

    report = verify_chain(_services())
    print(report.line())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ops.cli", description="Room Desk operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed-demo", help="fill an empty sandbox with ~150 bookings and one of each incident")
    p.add_argument("--count", type=_count, default=150, help="bookings in all (more than 450: some are in the past)")
    p.add_argument(
        "--years",
        type=_years,
        default=None,
        help="years of a busy venue's past before the present 90 days, the count spread over them (e.g. 3)",
    )
    p.add_argument("--if-empty", action="store_true", help="do nothing (exit 0) when data already exists")
    p.set_defaults(func=cmd_seed_demo)
    p = sub.add_parser(
        "expire-holds", help="finish bookings paid while their process crashed; release unpaid holds past expiry"
    )
    p.set_defaults(func=cmd_expire_holds)
    p = sub.add_parser("advance", help="mark days in progress / completed")
    p.set_defaults(func=cmd_advance)
    p = sub.add_parser("sync", help="bring the local cache up to date with Stripe and the room calendars")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser("reconcile", help="find mismatches in the cache and list the open findings")
    p.add_argument("--json", action="store_true", help="print the open findings as a JSON array")
    p.add_argument("--sync", action="store_true", help="sync first")
    p.set_defaults(func=cmd_reconcile)
    p = sub.add_parser("send-mail", help="send the outbox's due emails once (the worker does this every round)")
    p.add_argument("--limit", type=_count, default=100, help="at most this many emails (default 100)")
    p.set_defaults(func=cmd_send_mail)
    p = sub.add_parser(
        "send-reminders",
        help="email the reminders due now, REMINDER_HOURS before each booked day (the worker does too)",
    )
    p.set_defaults(func=cmd_send_reminders)
    p = sub.add_parser(
        "worker",
        help="finish paid bookings, expire holds, send reminders and due emails, sync and reconcile on a schedule; "
        "a failed round is retried after a backoff (up to WORKER_BACKOFF_MAX_SECONDS)",
    )
    p.add_argument("--every", type=_interval, default=300.0, help="interval such as 30s, 5m, 1h (default 5m)")
    p.add_argument("--once", action="store_true", help="run one round and exit (status 1 if it failed)")
    p.add_argument(
        "--health-port",
        type=_port,
        default=None,
        help="answer GET /healthz on 127.0.0.1:PORT (200 while rounds succeed, 503 starting/failing/stalled)",
    )
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("sandbox-load", help="fill the sandbox from Stripe and Google Calendar JSON files")
    p.add_argument("dir", help="folder with stripe/*.json and calendar/<calendar_id>.json")
    p.set_defaults(func=cmd_sandbox_load)
    p = sub.add_parser("export-refunds", help="write the refunds report of a date range (venue dates) as CSV or XLSX")
    p.add_argument(
        "--from",
        dest="date_from",
        type=_day,
        required=True,
        metavar="YYYY-MM-DD",
        help="first day, YYYY-MM-DD (venue time)",
    )
    p.add_argument(
        "--to", dest="date_to", type=_day, required=True, metavar="YYYY-MM-DD", help="last day, YYYY-MM-DD (inclusive)"
    )
    p.add_argument("--format", choices=["csv", "xlsx"], required=True, help="csv or xlsx")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write")
    p.add_argument("--room", action="append", help="only this room (slug; repeatable)")
    p.add_argument(
        "--origin",
        action="append",
        choices=["amendment", "auto_gate2", "cancellation", "remediation", "stripe_dashboard"],  # reports.ORIGINS
        help="only refunds of this origin (repeatable)",
    )
    p.add_argument("--live", action="store_true", help="read Stripe's refunds from Stripe, not the last sync's copy")
    p.set_defaults(func=cmd_export_refunds)
    p = sub.add_parser("close", help="daily close: Stripe's balance transactions of a day against our ledger")
    p.add_argument("--day", type=_day, metavar="YYYY-MM-DD", help="business day, venue time (default: yesterday)")
    p.add_argument("--csv", metavar="FILE", help="also write the result as CSV")
    p.set_defaults(func=cmd_close)
    p = sub.add_parser("verify-audit", help="check the audit log's hash chain: exit 1 if a row was changed or removed")
    p.set_defaults(func=cmd_verify_audit)
    p = sub.add_parser("serve-api", help="serve the HTTP API (booking form back end, Stripe webhook)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback only)")
    p.add_argument(
        "--workers",
        type=_workers,
        default=0,
        help="worker processes (default: one per CPU core, at most 8); 1 serves in this process",
    )
    p.set_defaults(func=cmd_serve_api)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
