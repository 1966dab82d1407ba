"""Issue 13 #6: customer text in the dashboard is text. An image link in a booking's notes made the staff browser
fetch a remote pixel; Markdown and HTML in a name or notes are shown as typed, never rendered."""

from __future__ import annotations

import re
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.booking import BookingRequest, start_booking, update_customer
from services.core.context import Services

from .conftest import free_slot

App = Callable[..., AppTest]
NOTES = "![x](http://127.0.0.1:9/pixel.png) [click](http://evil.example)"
NAME = "**bold** <b>x</b>"
# What a Markdown renderer would turn into an image, a link, bold text or HTML, when not escaped.
ACTIVE = [
    re.compile(r"(?<!\\)!(?<!\\)\[[^\]]*(?<!\\)\]\((?<!\\)"),  # ![x](
    re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\("),  # [click](
    re.compile(r"(?<!\\)\*\*bold"),
    re.compile(r"(?<!\\)<b>"),
    re.compile(r"http://evil\.example|127\.0\.0\.1:9/pixel\.png"),  # a bare URL is auto-linked
]


def test_a_bookings_name_and_notes_render_as_text(app: App, svc: Services) -> None:
    slot = free_slot(svc, "union-room", hours=2, skip=3)
    req = BookingRequest(
        slot.room, (slot.day,), slot.start, slot.end, NAME, "mark.down@example.org", "604-555-0188", channel="phone"
    )
    started = start_booking(svc, req, actor="frontdesk@sandbox")
    update_customer(svc, started.booking_id, actor="frontdesk@sandbox", notes=NOTES)

    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=started.reference)
    bodies = [str(m.value) for m in at.markdown] + [str(c.value) for c in at.caption]
    bodies += [str(t.value) for t in at.table]  # the timeline quotes the corrected notes
    shown = "\n".join(bodies)
    assert "pixel" in shown and "bold" in shown  # the text is there…
    for pattern in ACTIVE:  # …and none of it is live
        assert not pattern.search(shown), pattern.pattern
    # The people who read it see what was typed.
    notes = next(b for b in bodies if "Notes:" in b)
    assert re.sub(r"\\(.)", r"\1", notes.removeprefix("**Notes:** ")) == NOTES
