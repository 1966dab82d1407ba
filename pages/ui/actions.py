"""Doing things: the Desk for the signed-in person (every change goes through it, role checked first), and service
errors in plain words, never a stack trace.

Two shapes of call. Inside the run (a button's return value): `with reporting("Quoting"): …` shows any failure where
the work was. From an on_click callback, whose outcome must survive the rerun it causes: `perform(key, call, tag=…)`
keeps the result — or the error — in session state, and `outcome(key, tag=…, doing=…)` shows an error in the next run
and hands back a result to draw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import streamlit as st

from pages.ui import boot, session
from services import authz
from services.core.errors import DomainError, GatewayError, NotAvailable, ValidationError

log = logging.getLogger("roomdesk.ui")
T = TypeVar("T")

PROVIDERS = {"payments": "Stripe", "calendar": "Google Calendar", "mail": "The mail server"}


def desk() -> authz.Desk:
    """Every change the dashboard makes goes through this: each action checks the person's role first."""
    return authz.Desk(boot.services(), session.staff())


def show_error(exc: DomainError, *, doing: str = "") -> None:
    """A service error in plain words: every reason as a list item."""
    head = f"{doing}: " if doing else ""
    if isinstance(exc, NotAvailable):
        st.error(f"{head}this can't be booked —\n\n" + "\n".join(f"- {r}" for r in exc.reasons))
    elif isinstance(exc, ValidationError):
        st.error(f"{head}please fix —\n\n" + "\n".join(f"- {p}" for p in exc.problems))
    elif isinstance(exc, GatewayError):
        who = PROVIDERS.get(exc.provider, "An outside service")
        retry = " Try again in a minute." if exc.transient else ""
        st.error(f"{head}{who} did not complete the request: {exc.message}.{retry}")
    else:
        st.error(f"{head}{exc.message}")


def unexpected(doing: str) -> None:
    """Log the exception being handled and say, without details, that `doing` failed."""
    log.exception("%s failed", doing)
    st.error(f"{doing} failed unexpectedly. Nothing more is shown here; the details are in the server log.")


@contextmanager
def reporting(doing: str) -> Iterator[None]:
    """Run service calls and show any failure in plain words; unexpected errors go to the log, not the page."""
    try:
        yield
    except DomainError as exc:
        show_error(exc, doing=doing)
    except Exception:
        unexpected(doing)


def perform(key: str, call: Callable[[], Any], *, tag: Any = None) -> None:
    """For an on_click callback: run `call` and keep its result, or the error it raised, under `key` for the next
    run, marked with `tag` (the booking, the person…) so it shows only where it belongs."""
    try:
        result: Any = call()
    except DomainError as exc:
        result = exc
    except Exception:
        log.exception("%s failed", key)
        result = DomainError("It failed unexpectedly; nothing more is shown here, the details are in the server log")
    st.session_state[key] = (tag, result)


def kept(key: str, *, tag: Any = None) -> Any | None:
    """The result perform() kept under `key` for `tag` if the call succeeded; None otherwise (an error is left for
    outcome() to show where it belongs)."""
    found = st.session_state.get(key)
    return found[1] if found and found[0] == tag and not isinstance(found[1], DomainError) else None


def outcome(key: str, *, tag: Any = None, doing: str) -> Any | None:
    """What perform() kept under `key` for `tag`: the result to draw, or None (nothing kept, another tag's, or an
    error — then shown here, as `doing: …`)."""
    kept = st.session_state.get(key)
    if not kept or kept[0] != tag:
        return None
    if isinstance(kept[1], DomainError):
        show_error(kept[1], doing=doing)
        return None
    return kept[1]
