"""The screens: URL path, title, icon, page script and the roles that may open each. app.py builds the navigation
from this list (a screen left out for a role is unreachable, even by URL), and each page checks the role again
(session.require_role). The URL paths are the public links (bookmarks, emails, the CLI's output): keep them."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.roles import ROLES

MANAGERS = frozenset({"manager", "admin"})
MONEY = frozenset({"manager", "finance", "admin"})
DESK = frozenset({"frontdesk", "manager", "admin"})
EVERYONE = frozenset(ROLES)
FINANCE = frozenset({"finance", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Screen:
    key: str  # the URL path, /<key>
    title: str
    icon: str
    script: str  # the page script, relative to app.py
    roles: frozenset[str]


# In sidebar order. A role lands on the first screen it may open: managers, admins and finance on the Overview (what
# is out of step and how much money it puts at risk), front desk on Phone booking.
SCREENS = [
    Screen("overview", "Overview", ":material/monitoring:", "pages/reconcile/overview.py", MONEY),
    Screen("mismatches", "Mismatches", ":material/rule:", "pages/reconcile/mismatches.py", MANAGERS),
    Screen("phone_booking", "Phone booking", ":material/call:", "pages/frontdesk/phone_booking.py", DESK),
    Screen("holds", "Holds", ":material/timer:", "pages/frontdesk/holds.py", DESK),
    Screen("bookings", "Bookings", ":material/search:", "pages/frontdesk/bookings.py", EVERYONE),
    Screen("room_calendar", "Room calendar", ":material/calendar_month:", "pages/frontdesk/room_calendar.py", EVERYONE),
    Screen("blocks", "Blocks & closures", ":material/block:", "pages/frontdesk/blocks.py", MANAGERS),
    Screen("refunds", "Refunds report", ":material/receipt_long:", "pages/finance/refunds.py", MONEY),
    Screen("revenue", "Revenue & occupancy", ":material/bar_chart:", "pages/finance/revenue.py", MONEY),
    Screen("approvals", "Approvals", ":material/approval:", "pages/finance/approvals.py", MONEY),
    Screen("deposits", "Deposits", ":material/credit_card:", "pages/finance/deposits.py", EVERYONE),
    Screen("disputes", "Disputes", ":material/gavel:", "pages/finance/disputes.py", MONEY),
    Screen("daily_close", "Daily close", ":material/account_balance:", "pages/finance/daily_close.py", FINANCE),
    Screen("outbox", "Emails & webhooks", ":material/outgoing_mail:", "pages/admin/outbox.py", MANAGERS),
    Screen("settings", "Settings", ":material/settings:", "pages/admin/settings.py", ADMIN),
]
BY_KEY = {s.key: s for s in SCREENS}
SIGN_IN = "pages/admin/sign_in.py"


def may_open(role: str | None, key: str) -> bool:
    return role in BY_KEY[key].roles


def script(key: str) -> str:
    """The page script of a screen, for st.page_link and st.switch_page."""
    return BY_KEY[key].script


def booking_link(reference: str) -> str:
    """A link (relative to the app) that opens one booking on the Bookings page."""
    return f"/bookings?ref={reference}"
