"""Settings and the room catalogue: defaults are the seed's values; bad config fails with errors naming the room
and the field."""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path

import pytest

from services.core.catalogue import load_catalogue, parse_catalogue
from services.core.errors import ConfigError
from services.core.settings import PROJECT_ROOT, Settings

ROOMS = PROJECT_ROOT / "config" / "rooms.toml"


def test_defaults_are_the_seeds_hard_coded_values(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert (s.open_time, s.close_time, s.open_weekdays) == (time(8), time(17), [0, 1, 2, 3, 4])
    assert (s.buffer_minutes, s.min_notice_hours, s.max_days_ahead, s.max_days_per_booking) == (15, 24, 60, 10)
    assert (s.venue_timezone, s.currency, s.payments, s.calendar) == ("America/Vancouver", "CAD", "sandbox", "sandbox")
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'roomdesk.sqlite3').resolve()}"
    assert s.sandbox_dir == tmp_path / "sandbox"


def test_environment_then_secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('BUFFER_MINUTES = 30\nVENUE_TIMEZONE = "America/Toronto"\n[auth]\nredirect_uri = "x"\n')
    monkeypatch.setenv("ROOMDESK_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("BUFFER_MINUTES", "20")
    s = Settings()
    assert s.buffer_minutes == 20  # environment wins
    assert s.venue_timezone == "America/Toronto"  # then the secrets file


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VENUE_TIMEZONE": "Mars/Olympus"}, "unknown time zone"),
        ({"OPEN_TIME": "18:00"}, "close_time must be after open_time"),
        ({"PAYMENTS": "paypal"}, "sandbox"),
        ({"OPEN_WEEKDAYS": "[7]"}, "weekdays are 0"),
    ],
)
def test_bad_settings_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message):
        Settings()


def test_the_shipped_catalogue_has_seven_rooms_and_the_sonic_extras() -> None:
    cat = load_catalogue(ROOMS)
    assert len(cat.rooms) == 7 and all(r.bookable for r in cat.rooms)
    sonic = cat.room("sonic-studio")
    assert [e.key for e in sonic.extras] == ["show_name", "set_choice"] and sonic.agreement_required
    assert all(isinstance(r.hourly_price_cents, int) for r in cat.rooms)


def _raw() -> dict:
    return tomllib.loads(ROOMS.read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["rooms"][1].update(hourly_price_cents=-5), "room 'boardroom', field 'hourly_price_cents'"),
        (lambda d: d["rooms"][2].update(capacity="lots"), "room 'union-room', field 'capacity'"),
        (lambda d: d["rooms"][0].pop("calendar_id"), "room 'main-hall', field 'calendar_id': Field required"),
        (lambda d: d["rooms"][3].update(slug="Work Shop"), "room 'Work Shop', field 'slug'"),
        (lambda d: d["rooms"][4].update(colour="blue"), "room 'quiet-room', field 'colour'"),
        (lambda d: d["rooms"][6]["extras"][1].update(choices=[]), "room 'sonic-studio', field 'extras.1'"),
        (lambda d: d["rooms"][5].update(calendar_id=d["rooms"][0]["calendar_id"]), "is used by two rooms"),
        (lambda d: d["rooms"][5].pop("slug"), "room #6, field 'slug'"),
    ],
)
def test_bad_catalogue_errors_name_the_room_and_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _raw()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_catalogue(data, source="rooms.toml")
    assert message in err.value.message and err.value.message.startswith("rooms.toml is invalid")


def test_unreadable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Rooms file not found"):
        load_catalogue(tmp_path / "missing.toml")
    broken = tmp_path / "rooms.toml"
    broken.write_text("[[rooms]\nslug=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_catalogue(broken)


def test_extras_are_cleaned_and_explained() -> None:
    sonic = load_catalogue(ROOMS).room("sonic-studio")
    clean, problems = sonic.validate_extras(
        {"show_name": " Night Shift ", "group_size": "4", "set_choice": "Podcast table"}
    )
    # A key the room does not ask (an old form's "group size": the booking's party size asks it now) is dropped.
    assert clean == {"show_name": "Night Shift", "set_choice": "Podcast table"} and problems == []
    _, problems = sonic.validate_extras({"set_choice": "Rave"})
    assert problems == [
        "Podcast or show name is required for the Sonic Studio",
        "Set choice must be one of: Podcast table, Band rehearsal, Voice-over booth",
    ]


def test_no_test_can_reach_the_internet() -> None:
    import socket

    with pytest.raises(OSError, match="non-loopback"):
        socket.getaddrinfo("api.stripe.com", 443)
    with pytest.raises(OSError, match="non-loopback"), socket.socket() as s:
        s.connect(("192.0.2.10", 443))
    assert socket.getaddrinfo("127.0.0.1", 80)  # loopback stays reachable
