"""Command line: `python -m services.cli <command>`. Translates errors into messages and exit codes, nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from services.errors import DomainError


def _services():  # type: ignore[no-untyped-def]
    from services.context import build_services

    return build_services()


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from services import demo

    svc = _services()
    if not demo.is_empty(svc):
        if args.if_empty:
            print("Demo data already present; nothing to do.")
            return 0
        print("The database or sandbox already holds data; remove DATA_DIR (make clean-data) to start again.")
        return 1
    report = demo.seed_demo(svc, count=args.count, progress=lambda f, m: print(f"  {f:4.0%}  {m}", flush=True))
    print(report.line())
    for name, reference in sorted(report.incidents.items()):
        print(f"  incident {name:<24} {reference}")
    return 0


def cmd_expire_holds(args: argparse.Namespace) -> int:
    from services.booking import expire_holds

    counts = expire_holds(_services(), actor="cli")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) or "No holds past their expiry.")
    return 0


def cmd_advance(args: argparse.Namespace) -> int:
    from services.booking import advance_legs

    print(f"{advance_legs(_services(), actor='cli')} day(s) moved on.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.cli", description="Room Desk operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed-demo", help="fill an empty sandbox with ~150 bookings and one of each incident")
    p.add_argument("--count", type=int, default=150)
    p.add_argument("--if-empty", action="store_true", help="do nothing (exit 0) when data already exists")
    p.set_defaults(func=cmd_seed_demo)
    p = sub.add_parser("expire-holds", help="release unpaid holds past their expiry")
    p.set_defaults(func=cmd_expire_holds)
    p = sub.add_parser("advance", help="mark days in progress / completed")
    p.set_defaults(func=cmd_advance)
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
