#!/usr/bin/env python3
"""Screenshot one page of the app in headless Debian chromium: how the team looks at pages.

    .venv/bin/python scripts/shoot.py --url-path "/" --out screenshots/home.png
    .venv/bin/python scripts/shoot.py --url-path "/phone_booking" --role frontdesk --wait-text "Phone booking"

Starts `streamlit run app.py` on a free loopback port with DATA_DIR=./data (or --data-dir), sandbox gateways and no
secrets.toml, opens the page at 1366x768 (a front-desk laptop; --size to change), waits until the script has finished
running (and for --wait-text if given), saves the screenshot and stops the server. Uses the same harness as the
browser tests (tests/e2e/harness.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from harness import (  # noqa: E402
    ROLE_ENV,
    StreamlitServer,
    app_env,
    launch_browser,
    open_page,
    wait_idle,
    wait_text,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url-path", default="/", help='page path and query, e.g. "/" or "/bookings?id=3"')
    parser.add_argument("--out", type=Path, default=Path("screenshots/shot.png"), help="PNG to write")
    parser.add_argument("--role", help=f"staff role to view the app as (sets {ROLE_ENV} for the server)")
    parser.add_argument("--wait-text", action="append", default=[], help="wait until this text is visible (repeatable)")
    parser.add_argument("--full-page", action="store_true", help="capture the whole scrollable page, not one screen")
    parser.add_argument(
        "--size", default="1366x768", help="browser window WIDTHxHEIGHT (1366x768: a front-desk laptop)"
    )
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data", help="DATA_DIR for the app (./data)")
    parser.add_argument("--app", default="app.py", help="Streamlit script, relative to --cwd (app.py)")
    parser.add_argument("--cwd", type=Path, default=REPO_ROOT, help="directory to run streamlit in (repo root)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server and the page")
    parser.add_argument("--settle", type=float, default=0.5, help="extra seconds before the shot (animations)")
    args = parser.parse_args(argv)

    out: Path = args.out if args.out.is_absolute() else Path.cwd() / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Sandbox gateways and no secrets.toml, whatever the developer configured: looking at a page never talks to
    # Stripe or Google.
    env = app_env(args.data_dir.resolve(), role=args.role)

    server = StreamlitServer(env, app_path=args.app, cwd=args.cwd, startup_timeout=args.timeout)
    with server, launch_browser() as browser:
        width, height = (int(n) for n in args.size.lower().split("x"))
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        try:
            open_page(page, server, args.url_path, timeout=args.timeout)
            for text in args.wait_text:
                wait_text(page, text, timeout=args.timeout)
                wait_idle(page, timeout=args.timeout)
            page.wait_for_timeout(args.settle * 1000)
            page.screenshot(path=str(out), full_page=args.full_page)
        except Exception:
            failed = out.with_name(out.stem + ".failed.png")
            page.screenshot(path=str(failed), full_page=True)
            print(f"shoot: failed; what the page showed is in {failed}", file=sys.stderr)
            print(f"--- server output (tail) ---\n{server.output_tail()}", file=sys.stderr)
            raise
        finally:
            context.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
