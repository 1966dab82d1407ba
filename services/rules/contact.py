"""A customer's email address: is it one (syntax, by a real parser), and did the person mean another one ("did you
mean ava@gmail.com?" for ava@gmial.com). Pure: no network, no DNS.

Syntax is email-validator's (RFC 5322/6531 with the usual real-world limits: no quoted local parts, no IP-literal
domains, a period in the domain, no special-use names such as .test or .localhost); deliverability is not checked
(check_deliverability=False), so nothing here ever leaves the machine.

Suggestions use pymailcheck, the Python port of mailcheck.js (the algorithm most sign-up forms use): compare the whole
domain with the venue's list of mail providers, then its first label and the rest separately. It is configured with
the venue's lists below and with its own distance, because mailcheck's default (sift3, up to 2 apart) offers
me.com for td.com and gmail.com for gmx.com: here a typed string is one edit away at most (a transposition counts as
one, so gmial → gmail), strings shorter than three characters are never "corrected" (.co, .io and .cm are real),
and a domain of the `KNOWN` list is never questioned. A suggestion is only ever offered, never applied.
"""

from __future__ import annotations

from typing import Final

import pymailcheck
from email_validator import EmailNotValidError
from email_validator import validate_email as _parse

# Where the venue's customers' mail mostly lives (Vancouver): suggestions point only at these. Order matters where a
# typed name fits two (`ava@hotmail` is offered hotmail.com first).
TARGETS: Final = (
    "gmail.com",
    "hotmail.com",
    "hotmail.ca",
    "outlook.com",
    "yahoo.com",
    "yahoo.ca",
    "icloud.com",
    "protonmail.com",
    "shaw.ca",
    "telus.net",
    "rogers.com",
    "sympatico.ca",
    "bell.net",
    "videotron.ca",
    "cogeco.ca",
    "eastlink.ca",
    "sasktel.net",
)
# Real providers that are never suggested (their names are short, or one letter away from a real company's: gm.com
# is not a typo of gmx.com) but are never questioned either.
KNOWN: Final = frozenset(
    {
        *TARGETS,
        "googlemail.com",
        "ymail.com",
        "rocketmail.com",
        "live.com",
        "live.ca",
        "msn.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.com",
        "gmx.net",
        "mail.com",
        "email.com",
        "proton.me",
        "pm.me",
        "fastmail.com",
        "zoho.com",
        "hey.com",
    }
)
# Domains that exist but are not the customer's mailbox: the Canadian ending on a provider that has none.
MISTAKES: Final = {"gmail.ca": "gmail.com", "icloud.ca": "icloud.com"}
# A domain's first label, compared on its own when the whole domain matched nothing ("gmial.co.uk"). Only long,
# distinctive provider names: "bell" or "live" are one letter from too many real names ("dell", "love").
SECOND_LEVEL: Final = ("gmail", "hotmail", "outlook", "yahoo", "sympatico", "videotron")
# The rest of the domain, compared on its own ("acme.cmo" → "acme.com").
TOP_LEVEL: Final = ("com", "net", "org", "info")
# Left alone, never offered: first labels that start many university and company addresses (mail.mcgill.ca) and real
# endings one edit from the ones above (.cam, .new, .pet…).
LEAVE_ALONE: Final = frozenset(
    {"mail", "email", "ymail", "cam", "mom", "new", "nec", "bet", "pet", "vet", "ntt", "ong"}
)

_FAR: Final = 99  # beyond pymailcheck's threshold (2): "no match"


def validate_email(address: str) -> str:
    """The address normalised (trimmed, domain and local part lower-cased as Room Desk has always stored them, IDN
    domains in Unicode NFC); raises ValueError with a sentence a person can act on when it is not an address."""
    text = address.strip()
    if not text:
        raise ValueError("The email address is empty.")
    try:
        parsed = _parse(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return parsed.normalized.lower()


def suggest_email(address: str) -> str | None:
    """ "Did you mean …?": the address with its domain's likely typo corrected (gmial.com → gmail.com, gmail.con →
    gmail.com, acme.cmo → acme.com, shw.ca → shaw.ca, a missing ".com"), or None when nothing looks mistyped."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return None
    domain = domain.lower()
    fixed = _fix_domain(domain)
    if fixed is None or fixed == domain:
        return None
    try:
        return validate_email(f"{local}@{fixed}")
    except ValueError:  # the local part itself is not valid: a suggestion would not help
        return None


def _fix_domain(domain: str) -> str | None:
    if domain in KNOWN:
        return None
    if domain in MISTAKES:
        return MISTAKES[domain]
    if "." not in domain:  # "ava@gmail": the ending was left off
        return next((known for known in TARGETS if known.split(".", 1)[0] == domain), None)
    # A correction of the first label can bring the whole domain one edit from a provider (tlus.nte → tlus.net →
    # telus.net): follow it, a few steps at most.
    current = domain
    for _ in range(3):
        found = pymailcheck.suggest(
            f"x@{current}",
            domains=TARGETS,
            second_level_domains=(*SECOND_LEVEL, *LEAVE_ALONE),
            top_level_domains=(*TOP_LEVEL, *LEAVE_ALONE),
            distance_callable=_distance,
        )
        if not found or found["domain"] == current:
            break
        current = found["domain"]
        if current in KNOWN:
            break
    return current if current != domain else None


def _distance(typed: str, known: str) -> int:
    """pymailcheck's distance hook: the edit distance when it is one edit, "far" otherwise, for short strings and for
    what is only there to be left alone (pymailcheck compares equal strings itself)."""
    if len(typed) < 3 or known in LEAVE_ALONE:
        return _FAR
    distance = edit_distance(typed, known)
    return distance if distance <= 1 else _FAR


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours, one each."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]
