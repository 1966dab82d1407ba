"""All configuration in one pydantic-settings class: environment variables first, then `.streamlit/secrets.toml`.

Every rule the old Worker hard-coded (hours, buffer, window, multi-day limit) is a setting whose default is the
seed's value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import time
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from services.core.roles import ROLES
from services.rules.policy import Policy, RefundBand
from services.rules.tax import TaxPolicy, TaxRate, normalise_registration_number, registration_problem

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

# The venue rules admins edit on Settings (services.core.venue_state): the environment gives the first-run values; a
# saved venue configuration version wins from then on. Everything else (gateways, secrets, limits) stays environment.
RULE_FIELDS: tuple[str, ...] = (
    "open_time",
    "close_time",
    "open_weekdays",
    "buffer_minutes",
    "min_notice_hours",
    "max_days_ahead",
    "max_days_per_booking",
    "refund_bands",
    "refund_policy_version",
    "discount_bands",
)


class TaxRateSetting(BaseModel):
    """One configured tax, as the environment or secrets file gives it (JSON): which line kinds it applies to is the
    venue's accountant's call."""

    code: str = Field(min_length=1, max_length=16, description='Short name on receipts and reports, e.g. "GST"')
    label: str = Field(min_length=1, max_length=40, description='What a receipt line says, e.g. "GST 5 %"')
    rate_bps: int = Field(ge=0, le=10_000, description="Basis points: 500 = 5 %")
    applies_to: list[str] = Field(description="Line kinds it is charged on: room, extras, equipment")

    def to_rule(self) -> TaxRate:
        return TaxRate(self.code.strip(), self.label.strip(), self.rate_bps, frozenset(self.applies_to))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_nested_delimiter="__")

    data_dir: Path = Field(default=Path("data"), description="Every file the app writes lives under this folder")
    database_url: str | None = Field(default=None, description="Default: SQLite at DATA_DIR/roomdesk.sqlite3")
    payments: Literal["sandbox", "stripe"] = "sandbox"
    calendar: Literal["sandbox", "google"] = "sandbox"
    mail: Literal["sandbox", "smtp"] = "sandbox"
    rooms_file: Path = Field(default=PROJECT_ROOT / "config" / "rooms.toml")

    venue_timezone: str = "America/Vancouver"
    currency: str = "CAD"

    open_time: time = time(8, 0)
    close_time: time = time(17, 0)
    open_weekdays: list[int] = Field(default=[0, 1, 2, 3, 4], description="0 = Monday … 6 = Sunday")
    buffer_minutes: int = Field(default=15, ge=0, le=240)
    min_notice_hours: int = Field(default=24, ge=0)
    max_days_ahead: int = Field(default=60, ge=1)
    max_days_per_booking: int = Field(default=10, ge=1)
    slot_minutes: int = Field(default=15, ge=5, le=60, description="Start and end times fall on this grid")
    hold_minutes: int = Field(default=30, ge=1, description="How long an unpaid web booking holds its slot")
    phone_hold_minutes: int = Field(default=24 * 60, ge=1, description="Phone bookings wait longer for payment")
    stale_payment_minutes: int = Field(default=15, ge=1, description="A paid, unprocessed payment is stale after")
    sync_stale_minutes: int = Field(default=30, ge=1, description="Warn on the dashboard when the last sync is older")
    holiday_country: str = "CA"
    holiday_subdivision: str = "BC"
    observe_holidays: bool = Field(default=True, description="Refuse statutory holidays (the old Worker did not)")
    # Cancellation refund bands per day-leg: (hours before the leg starts, percent refunded), widest first.
    refund_bands: list[tuple[int, int]] = Field(default=[(48, 100), (24, 50), (0, 0)])
    refund_policy_version: str = "2026-01"
    terms_version: str = Field(default="2026-01", max_length=32, description="Version of the customer terms page")
    # Multi-day discount for rooms marked discount-eligible: (days booked, percent off).
    discount_bands: list[tuple[int, int]] = Field(default=[(3, 10), (5, 15)])
    # Daily close (runbook 003 §11): the variance that fails a day, and the fees Stripe is expected to take.
    close_tolerance_bps: int = Field(default=50, ge=0, le=10_000, description="A close fails above this (50 = 0.5 %)")
    card_fee_bps: int = Field(default=290, ge=0, le=10_000, description="Card fee per charge: percent part (2.9 %)")
    card_fee_fixed_cents: int = Field(default=30, ge=0, description="Card fee per charge: fixed part")
    dispute_fee_cents: int = Field(default=1500, ge=0, description="Stripe's fee per dispute, returned if it is won")
    # Pay by invoice (issue 15): the terms staff may offer, when an invoice falls due at the latest, and how long past
    # its due date staff are asked to extend or release the held days.
    invoice_terms_days: list[int] = Field(default=[7, 14, 30], description="Payment terms offered (net days)")
    invoice_due_lead_hours: int = Field(
        default=48, ge=0, le=24 * 60, description="An invoice falls due at the latest this long before the first day"
    )
    invoice_overdue_grace_hours: int = Field(
        default=72, ge=0, le=24 * 60, description="Past the due date: reminder at once, a finding after this long"
    )
    # Sales tax (issue 15): GST-only defaults, PST on extras/equipment if the accountant
    # says so (e.g. {"code": "PST", "label": "PST 7 %", "rate_bps": 700, "applies_to": ["extras", "equipment"]}).
    tax_rates: list[TaxRateSetting] = Field(
        default=[TaxRateSetting(code="GST", label="GST 5 %", rate_bps=500, applies_to=["room", "extras", "equipment"])],
        description="Taxes added to each line's net, per line kind",
    )
    gst_registration_number: str | None = Field(
        default=None, description="The venue's GST/HST registration number, e.g. 123456782RT0001 (receipts from $100)"
    )

    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_publishable_key: str | None = Field(default=None, description="pk_… for the pay page's Payment Element")
    stripe_api_base: str | None = Field(default=None, description="Only for tests: a Stripe-compatible server")
    google_service_account_file: Path | None = Field(default=None, description="Service-account key (JSON)")
    google_delegated_subject: str | None = Field(default=None, description="Workspace user to act as (optional)")
    google_api_root: str | None = Field(default=None, description="Only for tests: a Calendar-compatible server")
    smtp_host: str | None = Field(default=None, description="MAIL=smtp: the SMTP server")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    mail_from: str | None = Field(default=None, description='From header, e.g. "Labour Temple <bookings@…>"')
    mail_reply_to: str | None = Field(default=None, description="Optional Reply-To (e.g. the venue's email)")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Where customers reach the API's pages (pay links in emails)"
    )
    cors_origins: list[str] = Field(default=[], description="Web origins allowed to call the booking API")
    # The customer's manage page (/manage/<ref>?k=…) and the reminder email.
    self_service_changes: bool = Field(
        default=True, description="Customers may cancel days on their manage page (false: the page only shows them)"
    )
    self_service_cutoff_hours: int = Field(
        default=48, ge=0, le=24 * 60, description="A day is closed for the customer's own changes this long before it"
    )
    reminder_hours: int = Field(
        default=48, ge=1, le=24 * 30, description="The reminder email goes out this long before each booked day"
    )
    # Public-facing limits (issue 13): what one client may hold or send. Phone holds made by staff are not limited.
    hold_limit_per_email: int = Field(
        default=2, ge=1, le=100, description="Unpaid web holds one email address may have at a time"
    )
    hold_limit_per_client: int = Field(
        default=4, ge=1, le=1000, description="Unpaid web holds one client address may have at a time"
    )
    web_hold_start_minutes: int = Field(
        default=10, ge=1, description="A web hold lasts this long until the customer reaches payment"
    )
    rate_limit_bookings: str = Field(
        default="10/minute;60/hour", description="Booking requests (API and form) per client address ('limits' syntax)"
    )
    rate_limit_reads: str = Field(default="240/minute", description="Availability and quote requests per client")
    # Set by `serve-api --workers N` for its worker processes: each counts its share of the rate limits above.
    api_workers: int = Field(default=1, ge=1, le=64, description="API worker processes serving the limits above")
    trust_forwarded_for: bool = Field(
        default=False, description="Take the client address from X-Forwarded-For (behind a reverse proxy only)"
    )
    max_json_body_bytes: int = Field(default=32_768, ge=1024, description="Largest JSON body the booking API accepts")
    max_webhook_body_bytes: int = Field(default=524_288, ge=4096, description="Largest Stripe webhook body accepted")
    challenge: Literal["", "turnstile", "hcaptcha"] = Field(
        default="", description="Web bookings pass a challenge (Cloudflare Turnstile or hCaptcha); off when empty"
    )
    challenge_site_key: str | None = Field(default=None, description="The challenge's public site key")
    challenge_secret: SecretStr | None = Field(default=None, description="The challenge's secret (server-side check)")
    challenge_verify_url: str | None = Field(
        default=None, description="Only for tests: where the challenge token is verified (default: the provider's)"
    )
    worker_backoff_max_seconds: int = Field(
        default=300, ge=1, description="The worker waits at most this long between rounds after failures"
    )
    gateway_timeout_seconds: float = Field(default=20.0, gt=0)
    # Live mode: who may use the dashboard, after signing in with the [auth] OIDC provider: email → role
    # (frontdesk | manager | finance | admin). An email not listed signs in to nothing.
    staff_roles: dict[str, str] = Field(default={}, description="Signed-in email → role (live mode)")
    audit_mode: bool = Field(default=False, description="Read-only: live reads, no writes to Stripe or calendars")

    @field_validator("venue_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("open_weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(d < 0 or d > 6 for d in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @field_validator("refund_bands")
    @classmethod
    def _refund_bands(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if not value:
            raise ValueError("give at least one band (e.g. 0 hours → 0 %)")
        for hours, percent in value:
            if hours < 0 or not 0 <= percent <= 100:
                raise ValueError(f"{hours} h → {percent} %: hours are 0 or more, percent 0 to 100")
        ordered = sorted(value, key=lambda band: -band[0])
        if len({hours for hours, _ in ordered}) != len(ordered):
            raise ValueError("two bands start at the same number of hours")
        for (more_hours, more_pct), (less_hours, less_pct) in pairwise(ordered):
            if less_pct > more_pct:
                raise ValueError(
                    f"cancelling {less_hours} h before would refund more ({less_pct} %) than {more_hours} h before "
                    f"({more_pct} %)"
                )
        return [(int(h), int(p)) for h, p in ordered]

    @field_validator("discount_bands")
    @classmethod
    def _discount_bands(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for days, percent in value:
            if days < 2 or not 1 <= percent <= 90:
                raise ValueError(f"{days} days → {percent} %: a band starts at 2 days or more, with 1 to 90 % off")
        ordered = sorted(value)
        if len({days for days, _ in ordered}) != len(ordered):
            raise ValueError("two bands start at the same number of days")
        for (fewer_days, fewer_pct), (more_days, more_pct) in pairwise(ordered):
            if more_pct < fewer_pct:
                raise ValueError(
                    f"{more_days} days would get less off ({more_pct} %) than {fewer_days} days ({fewer_pct} %)"
                )
        return [(int(d), int(p)) for d, p in ordered]

    @field_validator("staff_roles")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {email: role for email, role in value.items() if role not in ROLES}
        if bad:
            email, role = next(iter(bad.items()))
            raise ValueError(f"{email}: unknown role {role!r} (use one of {', '.join(ROLES)})")
        return {email.strip().lower(): role for email, role in value.items()}

    @field_validator("invoice_terms_days")
    @classmethod
    def _invoice_terms(cls, value: list[int]) -> list[int]:
        """Net days Stripe accepts as days_until_due (1 to 365), each once, in order."""
        bad = [days for days in value if not 1 <= days <= 365]
        if bad or not value:
            raise ValueError(f"payment terms are 1 to 365 days (net 7, 14, 30), not {bad or 'none'}")
        return sorted(set(value))

    @field_validator("tax_rates")
    @classmethod
    def _tax_rates(cls, value: list[TaxRateSetting]) -> list[TaxRateSetting]:
        """Each rate and the set of them pass the tax rules' own checks (known line kinds, codes given once)."""
        TaxPolicy(rates=tuple(rate.to_rule() for rate in value))
        return value

    @field_validator("gst_registration_number")
    @classmethod
    def _registration_number(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        problem = registration_problem(value)
        if problem:
            raise ValueError(problem)
        return normalise_registration_number(value)

    @model_validator(mode="after")
    def _hours(self) -> Settings:
        if self.close_time <= self.open_time:
            raise ValueError("close_time must be after open_time")
        for t in (self.open_time, self.close_time):
            if (t.hour * 60 + t.minute) % self.slot_minutes or t.second or t.microsecond:
                raise ValueError(f"{t:%H:%M} is not on the {self.slot_minutes}-minute grid bookings start and end on")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets_file = Path(os.environ.get("ROOMDESK_SECRETS_FILE", SECRETS_FILE))
        return (
            init_settings,
            env_settings,
            _LowerKeysToml(settings_cls, toml_file=secrets_file),
        )

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'roomdesk.sqlite3').resolve()}"

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.venue_timezone)

    @property
    def is_sandbox(self) -> bool:
        return self.payments == "sandbox" and self.calendar == "sandbox"

    def rules(self) -> dict[str, Any]:
        """The venue rules (RULE_FIELDS) as JSON values, the form a saved venue configuration keeps them in."""
        return self.model_dump(mode="json", include=set(RULE_FIELDS))

    def with_rules(self, rules: Mapping[str, Any], staff_roles: Mapping[str, str] | None = None) -> Settings:
        """These settings with saved venue rules (and staff roles) in place, checked by the same validators as the
        environment's values; raises pydantic's ValidationError naming the field. Nothing is read from the
        environment again (model_validate skips the settings sources)."""
        unknown = set(rules) - set(RULE_FIELDS)
        if unknown:
            raise ValueError(f"not venue rules: {', '.join(sorted(unknown))}")
        data = self.model_dump() | dict(rules)
        if staff_roles is not None:
            data["staff_roles"] = dict(staff_roles)
        return type(self).model_validate(data)

    def policy(self) -> Policy:
        """The pure-rule view of these settings."""
        return Policy(
            tz=self.tz,
            open_time=self.open_time,
            close_time=self.close_time,
            open_weekdays=frozenset(self.open_weekdays),
            buffer_minutes=self.buffer_minutes,
            min_notice_hours=self.min_notice_hours,
            max_days_ahead=self.max_days_ahead,
            max_days_per_booking=self.max_days_per_booking,
            slot_minutes=self.slot_minutes,
            holiday_country=self.holiday_country,
            holiday_subdivision=self.holiday_subdivision,
            observe_holidays=self.observe_holidays,
            refund_bands=tuple(RefundBand(h, p) for h, p in self.refund_bands),
            refund_policy_version=self.refund_policy_version,
            discount_bands=tuple(sorted((d, p) for d, p in self.discount_bands)),
        )

    def tax_policy(self) -> TaxPolicy:
        """The pure-rule view of the tax settings (the rates new sales would be taxed at)."""
        return TaxPolicy(
            rates=tuple(rate.to_rule() for rate in self.tax_rates),
            registration_number=self.gst_registration_number,
        )


class _LowerKeysToml(TomlConfigSettingsSource):
    """secrets.toml keys are written in upper case like the environment variables; fields are lower case."""

    def __call__(self) -> dict[str, object]:
        data = super().__call__()
        return {k.lower(): v for k, v in data.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
