"""The email rule: a real parser says what is an address, and "did you mean …?" catches the typos front desk hears
on the phone (issue 12) without questioning real domains."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules.contact import KNOWN, TARGETS, edit_distance, suggest_email, validate_email


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ava@gmial.com", "ava@gmail.com"),
        ("ava@gmal.com", "ava@gmail.com"),
        ("ava@gmail.con", "ava@gmail.com"),
        ("ava@gmail.cmo", "ava@gmail.com"),
        ("ava@gmail.co", "ava@gmail.com"),
        ("ava@gmail.cm", "ava@gmail.com"),
        ("ava@gmial.con", "ava@gmail.com"),  # two mistakes, one in each half
        ("ava@gmail", "ava@gmail.com"),  # the ending left off
        ("ava@gmail.ca", "ava@gmail.com"),  # Gmail has no Canadian ending
        ("ava@hotmial.com", "ava@hotmail.com"),
        ("ava@yaho.com", "ava@yahoo.com"),
        ("ava@outlok.com", "ava@outlook.com"),
        ("ava@acme.cmo", "ava@acme.com"),
        ("ava@acme.nte", "ava@acme.net"),
        ("ava@acme.ogr", "ava@acme.org"),
        ("ava@shw.ca", "ava@shaw.ca"),
        ("ava@shaw.cs", "ava@shaw.ca"),
        ("ava@telsu.net", "ava@telus.net"),
        ("ava@tlus.nte", "ava@telus.net"),
        ("ava@rogres.com", "ava@rogers.com"),
        ("ava@sympatico.cq", "ava@sympatico.ca"),
        ("ava@bel.net", "ava@bell.net"),
        ("ava@bell.nte", "ava@bell.net"),
        ("Ava.Nguyen@GMIAL.com ", "ava.nguyen@gmail.com"),  # as Room Desk stores it: trimmed, lower case
    ],
)
def test_common_typos_are_caught(typed: str, meant: str) -> None:
    assert suggest_email(typed) == meant


@pytest.mark.parametrize(
    "address",
    [
        "ava@gmail.com",
        "ava@hotmail.ca",
        "ava@yahoo.ca",
        "ava@shaw.ca",
        "ava@ymail.com",  # real, one letter from gmail
        "ava@mail.com",
        "ava@gmx.com",
        "ava@me.com",
        "ava@gm.com",  # General Motors, not a mistyped gmx.com
        "ava@ge.com",
        "ava@td.com",  # mailcheck's own distance would offer me.com
        "ava@aon.com",
        "ava@telus.com",  # TELUS staff
        "ava@bell.ca",
        "ava@mcgill.ca",
        "ava@mail.mcgill.ca",  # a university's mail host, not "gmail"
        "ava@alumni.ubc.ca",
        "ava@gov.bc.ca",
        "ava@startup.io",  # two-letter endings are real countries
        "ava@acme.co",
        "ava@acme.cat",  # real three-letter endings one edit from .com / .ca
        "ava@acme.cam",
        "ava@hotmail.co.uk",
        "ava@labourtemple.example",
    ],
)
def test_real_addresses_are_left_alone(address: str) -> None:
    assert suggest_email(address) is None


@pytest.mark.parametrize("typed", ["", "ava", "ava@", "@gmial.com", "ava@@", "ava@gm", "a b@gmial.com"])
def test_no_suggestion_for_what_is_not_an_address_yet(typed: str) -> None:
    assert suggest_email(typed) is None


def test_validate_normalises_like_the_bookings_store_it() -> None:
    assert validate_email("  Ava.Nguyen@Example.ORG ") == "ava.nguyen@example.org"
    assert validate_email("josé@bücher.de") == "josé@bücher.de"


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("", "empty"),
        ("ava.example.org", "@-sign"),
        ("ava@gmail", "period"),
        ("ava..nguyen@example.org", "two periods in a row"),
        ("ava@example.test", "special-use or reserved"),
        ("ava nguyen@example.org", "invalid character"),
        ('"ava"@example.org', "Quoting"),
        ("ava@[192.0.2.1]", "bracketed IP address"),
        ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".org", "too long"),
    ],
)
def test_invalid_addresses_say_why_in_a_sentence(address: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as err:
        validate_email(address)
    assert str(err.value).endswith(".")


def test_edit_distance_counts_a_swap_as_one() -> None:
    assert edit_distance("gmial", "gmail") == 1
    assert edit_distance("gmal", "gmail") == 1
    assert edit_distance("td.com", "me.com") == 2
    assert edit_distance("", "abc") == 3


# ------------------------------------------------------------------------------------------------ properties

LOCAL = st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,20}[a-z0-9])?", fullmatch=True).filter(lambda s: ".." not in s)
LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True)
DOMAIN = st.builds(lambda labels, end: ".".join([*labels, end]), st.lists(LABEL, min_size=1, max_size=3), LABEL)


@given(local=LOCAL, domain=st.sampled_from(sorted(KNOWN)))
def test_a_known_providers_address_is_never_questioned(local: str, domain: str) -> None:
    assert suggest_email(f"{local}@{domain}") is None


@settings(max_examples=300)
@given(text=st.text(max_size=60))
def test_any_text_gives_a_suggestion_or_none_and_never_fails(text: str) -> None:
    found = suggest_email(text)
    assert found is None or validate_email(found) == found


@settings(max_examples=400)
@given(local=LOCAL, domain=DOMAIN)
def test_a_suggestion_keeps_the_person_and_is_not_questioned_again(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    found = suggest_email(address)
    if found is None:
        return
    assert found.rpartition("@")[0] == local  # only the domain is ever corrected
    assert found != address.lower()
    assert suggest_email(found) is None  # accepting it ends the conversation


@given(local=LOCAL, target=st.sampled_from(TARGETS), data=st.data())
def test_one_swapped_pair_in_a_providers_name_is_caught(local: str, target: str, data: st.DataObject) -> None:
    name, _, ending = target.partition(".")
    i = data.draw(st.integers(0, len(name) - 2))
    swapped = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    typed = f"{local}@{swapped}.{ending}"
    if f"{swapped}.{ending}" in KNOWN or swapped == name:
        return
    assert suggest_email(typed) == f"{local}@{target}"


@given(local=LOCAL, domain=DOMAIN)
def test_validation_is_idempotent(local: str, domain: str) -> None:
    try:
        once = validate_email(f"{local}@{domain}")
    except ValueError:
        return
    assert validate_email(once) == once
