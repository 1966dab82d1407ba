"""The public HTTP API (FastAPI): the booking form's back end and the Stripe webhook. It translates requests into
service calls and domain errors into HTTP statuses, nothing more. Error bodies carry only the domain errors' own
messages (safe to show by contract), never a stack trace.

Run it with `python -m services.ops.cli serve-api --port 8000`; OpenAPI is at /openapi.json, the docs at /docs.
"""

from __future__ import annotations

import logging
import re
import traceback
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from services import booking
from services.booking import BookingRequest
from services.booking.availability import AvailabilityOut, DayOut, availability
from services.booking.web_holds import reach_payment
from services.core.context import Services, build_services
from services.core.errors import (
    ConfigError,
    DomainError,
    GatewayError,
    InvalidState,
    NotAvailable,
    NotFound,
    TooManyHolds,
    ValidationError,
)
from services.rules.bill import Bill, quote_bill
from services.rules.refunds import describe_bands
from services.web import customer, customer_pages, guard, webhooks

log = logging.getLogger("roomdesk.api")

MAX_AVAILABILITY_DAYS = 62
EARLIEST_DATE, LATEST_DATE = date(2000, 1, 1), date(2999, 12, 31)  # far outside any booking window, never overflows


# --------------------------------------------------------------------------------------------------- parsing


def _hh_mm(value: Any) -> time:
    """A venue time as the form sends it: "HH:MM", naive. Offsets, seconds and fractions are refused: the slot grid
    is in venue time and whole minutes, and anything else disagrees with availability later."""
    if isinstance(value, time):
        value = value.isoformat()
    if not isinstance(value, str) or not re.fullmatch(r"[0-2][0-9]:[0-5][0-9]", value):
        raise ValueError("must be a venue time HH:MM (no seconds, no time zone)")
    return time.fromisoformat(value)


def _sane_date(value: date) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"{value.isoformat()} is outside the booking calendar")
    return value


def _control_characters(text: str, *, allow_newlines: bool) -> bool:
    allowed = {"\n", "\r", "\t"} if allow_newlines else set()
    return any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed for ch in text)


def _line(value: str) -> str:
    if _control_characters(value, allow_newlines=False):
        raise ValueError("must not contain control characters")
    return value


def _text(value: str) -> str:
    if _control_characters(value, allow_newlines=True):
        raise ValueError("must not contain control characters (NUL and the like)")
    return value


VenueTime = Annotated[time, BeforeValidator(_hh_mm)]
VenueDate = Annotated[date, AfterValidator(_sane_date)]
Line = Annotated[str, AfterValidator(_line)]
Text = Annotated[str, AfterValidator(_text)]


def _walk_extras(value: Any, depth: int = 0) -> None:
    if depth > 4:
        raise ValueError("is nested too deeply")
    if isinstance(value, str):
        _text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _line(str(k))
            _walk_extras(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _walk_extras(v, depth + 1)


# --------------------------------------------------------------------------------------------------- models


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: Line = Field(min_length=1, max_length=64, description="Room slug from GET /api/rooms")
    dates: list[VenueDate] = Field(min_length=1, max_length=31, description="Venue-local dates, YYYY-MM-DD")
    start: VenueTime = Field(description="Venue time HH:MM (on the slot grid), the same every day")
    end: VenueTime = Field(description="Venue time HH:MM (on the slot grid)")
    party_size: int | None = Field(default=None, ge=1, le=1000)


class BookingIn(QuoteIn):
    customer_name: Line = Field(min_length=1, max_length=200)
    customer_email: Line = Field(min_length=3, max_length=254)
    customer_phone: Line = Field(default="", max_length=40)
    extras: dict[str, Any] | None = None
    notes: Text = Field(default="", max_length=2000)
    agreement_version: Line | None = Field(default=None, max_length=32)
    challenge_token: str | None = Field(
        default=None,
        max_length=4096,
        description="When the venue turns on a challenge (Turnstile or hCaptcha): the widget's token",
    )
    terms_version: Line = Field(
        min_length=1,
        max_length=32,
        description="The version of the cancellation policy and terms the customer accepted (GET /api/terms); "
        "a booking is refused until the current version is accepted",
    )

    @field_validator("extras")
    @classmethod
    def _extras_are_text(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _walk_extras(value)
        return value


class PaymentStartedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pay_token: Line = Field(min_length=1, max_length=64, description="The `k` of the booking's pay_url")


class PaymentStartedOut(BaseModel):
    booking_id: str
    hold_expires_at: datetime


class TaxLineOut(BaseModel):
    code: str = Field(description='The tax\'s code, e.g. "GST"')
    label: str = Field(description='As a receipt names it, e.g. "GST 5 %"')
    cents: int


class LegPriceOut(BaseModel):
    date: date
    base_cents: int = Field(description="The day's price before the discount and before tax")
    discount_cents: int
    net_cents: int = Field(description="Before tax, after the discount")
    tax_cents: int = Field(description="The day's tax, rounded half up per rate on the day's net")
    total_cents: int = Field(description="What the day costs, tax included")


class QuoteOut(BaseModel):
    available: bool
    reasons: list[str]
    currency: str
    subtotal_cents: int = Field(description="Before the discount and before tax")
    discount_percent: int
    discount_cents: int
    net_cents: int = Field(description="Before tax, after the discount")
    tax_cents: int = Field(description="All the tax: the sum of the days' rounded taxes")
    tax_lines: list[TaxLineOut] = Field(description="One line per tax; empty when no tax is charged")
    total_cents: int = Field(description="What is charged, tax included")
    legs: list[LegPriceOut]


class BookingOut(BaseModel):
    booking_id: str = Field(description="The booking reference (RD…)")
    payment_intent: str
    client_secret: str
    amount_cents: int = Field(description="What the payment charges, tax included")
    net_cents: int = Field(description="Before tax, after any discount")
    tax_cents: int = Field(description="The tax inside amount_cents")
    tax_lines: list[TaxLineOut]
    hold_expires_at: datetime
    pay_url: str = Field(description="The customer's pay page for this booking (secret link)")


class TermsOut(BaseModel):
    version: str
    cancellation_policy: str
    url: str


# --------------------------------------------------------------------------------------------------- helpers


def _problem(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


def _field_errors(exc: RequestValidationError) -> JSONResponse:
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        fields.setdefault(".".join(loc) or "body", str(err.get("msg", "Invalid value")))
    return _problem(422, problems=[f"{k}: {v}" for k, v in fields.items()], fields=fields)


def _check_room(svc: Services, body: QuoteIn) -> None:
    if body.room not in {r.slug for r in svc.catalogue.bookable_rooms}:
        raise RequestValidationError([{"loc": ("body", "room"), "msg": f"Unknown room {body.room!r}", "type": "value"}])
    step = svc.policy.slot_minutes
    for name in ("start", "end"):
        at: time = getattr(body, name)
        if (at.hour * 60 + at.minute) % step:
            msg = f"must be on the {step}-minute grid (e.g. 10:00, 10:{step:02d})"
            raise RequestValidationError([{"loc": ("body", name), "msg": msg, "type": "value"}])


def _booking_window(svc: Services) -> tuple[date, date]:
    """The first and last venue days a customer can book today."""
    now = svc.now()
    tz = svc.policy.tz
    first = (now + timedelta(hours=svc.policy.min_notice_hours)).astimezone(tz).date()
    return first, (now + timedelta(days=svc.policy.max_days_ahead)).astimezone(tz).date()


def _windowed_availability(svc: Services, room: str, first: date, last: date) -> AvailabilityOut:
    """Availability where days outside the booking window are closed, saying why, and never computed."""
    window_first, window_last = _booking_window(svc)
    inside = (
        availability(svc, room, max(first, window_first), min(last, window_last))
        if (first <= window_last and last >= window_first)
        else AvailabilityOut(room=room, timezone=str(svc.policy.tz), days=[])
    )
    by_day = {d.date: d for d in inside.days}
    days: list[DayOut] = []
    day = first
    while day <= last:
        if day in by_day:
            days.append(by_day[day])
        else:
            why = (
                f"More than {svc.policy.max_days_ahead} days ahead"
                if day > window_last
                else f"Within the {svc.policy.min_notice_hours}-hour notice or in the past"
            )
            days.append(DayOut(date=day, closed=True, reasons=[why], free=[], busy=[]))
        if day == date.max:
            break
        day += timedelta(days=1)
    return AvailabilityOut(room=inside.room, timezone=inside.timezone, days=days)


def _tax_lines(bill: Bill) -> list[TaxLineOut]:
    return [TaxLineOut(code=t.code, label=t.label, cents=t.cents) for t in bill.taxes]


def _request(body: QuoteIn, client_key: str | None = None) -> BookingRequest:
    extra: dict[str, Any] = {}
    if isinstance(body, BookingIn):
        extra = {
            "customer_name": body.customer_name,
            "customer_email": body.customer_email,
            "customer_phone": body.customer_phone,
            "extras": body.extras,
            "notes": body.notes,
            "agreement_version": body.agreement_version,
            "terms_version": body.terms_version,
        }
    else:
        extra = {"customer_name": "", "customer_email": ""}
    return BookingRequest(
        room=body.room,
        dates=tuple(body.dates),
        start=body.start,
        end=body.end,
        party_size=body.party_size,
        channel="web",
        client_key=client_key,
        **extra,
    )


# --------------------------------------------------------------------------------------------------- app


def app_from_environment() -> FastAPI:
    """uvicorn's app factory for `serve-api --workers N`: each worker process builds its own services — its own
    database pool — from the environment. The parent migrated the schema before starting them."""
    return create_app(build_services(migrate=False))


def create_app(svc: Services, *, allowed_origins: Sequence[str] | None = None) -> FastAPI:
    """The API on a service container. CORS admits only `allowed_origins` (default: the `cors_origins` setting)."""
    origins = list(allowed_origins if allowed_origins is not None else getattr(svc.settings, "cors_origins", []) or [])
    app = FastAPI(title="Room Desk API", version="1", description="Room catalogue, availability, quotes, bookings.")
    public = guard.PublicGuard(svc.settings)
    app.state.guard = public
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
    )
    # Outermost: an oversized body is refused before CORS, routing or parsing read any of it.
    app.add_middleware(
        guard.BodySizeLimit,
        json_limit=svc.settings.max_json_body_bytes,
        webhook_limit=svc.settings.max_webhook_body_bytes,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _field_errors(exc)

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> JSONResponse:
        return _problem(422, problems=exc.problems)

    @app.exception_handler(NotAvailable)
    async def _not_available(request: Request, exc: NotAvailable) -> JSONResponse:
        return _problem(409, reasons=exc.reasons)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, detail=exc.message)

    @app.exception_handler(InvalidState)
    async def _invalid_state(request: Request, exc: InvalidState) -> JSONResponse:
        return _problem(409, detail=exc.message)

    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> JSONResponse:
        log.warning("Gateway error on %s: %s", request.url.path, exc.message)
        return _problem(503 if exc.transient else 502, detail=exc.message)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        log.error("Configuration error on %s: %s", request.url.path, exc.message)
        return _problem(503, detail="The service is not configured correctly")

    @app.exception_handler(TooManyHolds)
    async def _too_many_holds(request: Request, exc: TooManyHolds) -> JSONResponse:
        return _problem(429, detail=exc.message)

    @app.exception_handler(guard.ChallengeFailed)
    async def _challenge_failed(request: Request, exc: guard.ChallengeFailed) -> JSONResponse:
        return _problem(422, problems=[exc.message], fields={"challenge_token": exc.message.split(": ", 1)[-1]})

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return _problem(400, detail=exc.message)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # The frames only: a database error's message carries the statement's parameters (customer details, the
        # pay token), which must not reach the log.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("Unhandled %s on %s\n%s", type(exc).__name__, request.url.path, frames)
        return _problem(500, detail="Internal error")

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        with svc.engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return {"status": "ok"}

    @app.get("/api/rooms", tags=["booking"])
    def rooms() -> list[dict[str, Any]]:
        return [
            {
                "slug": r.slug,
                "name": r.name,
                "description": r.description,
                "hourly_price_cents": r.hourly_price_cents,
                "currency": svc.settings.currency,
                "capacity": r.capacity,
                "min_hours": r.min_hours,
                "agreement_required": r.agreement_required,
                "extras": [e.model_dump(mode="json") for e in r.extras],
            }
            for r in svc.catalogue.bookable_rooms
        ]

    # The busiest read: the answer, already a validated model, is written as JSON at once instead of FastAPI
    # re-validating and re-encoding it (response_model keeps it in the OpenAPI schema).
    @app.get("/api/availability", tags=["booking"], response_model=AvailabilityOut)
    def get_availability(
        request: Request,
        room: Annotated[str, Query(min_length=1, max_length=64)],
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
    ) -> Response:
        public.check("reads", request)
        loc = ("query", "to")
        if last < first:
            raise RequestValidationError([{"loc": loc, "msg": "'to' must not be before 'from'", "type": "value"}])
        if (last - first).days >= MAX_AVAILABILITY_DAYS:
            msg = f"At most {MAX_AVAILABILITY_DAYS} days at a time"
            raise RequestValidationError([{"loc": loc, "msg": msg, "type": "value"}])
        if room not in {r.slug for r in svc.catalogue.bookable_rooms}:
            raise RequestValidationError([{"loc": ("query", "room"), "msg": f"Unknown room {room!r}", "type": "value"}])
        answer = _windowed_availability(svc, room, first, last)
        return Response(answer.model_dump_json(), media_type="application/json")

    @app.post("/api/quotes", tags=["booking"])
    def post_quote(request: Request, body: QuoteIn) -> QuoteOut:
        public.check("reads", request)  # the booking form's live price asks for a quote on every change
        _check_room(svc, body)
        result = booking.quote(svc, _request(body))
        q = result.quote
        bill = quote_bill(q)
        return QuoteOut(
            available=result.available,
            reasons=result.reasons,
            currency=q.currency,
            subtotal_cents=bill.subtotal_cents,
            discount_percent=bill.discount_percent,
            discount_cents=bill.discount_cents,
            net_cents=bill.net_cents,
            tax_cents=bill.tax_cents,
            tax_lines=_tax_lines(bill),
            total_cents=bill.total_cents,
            legs=[
                LegPriceOut(
                    date=leg.day,
                    base_cents=leg.base_cents,
                    discount_cents=leg.discount_cents,
                    net_cents=leg.net_cents,
                    tax_cents=leg.tax_cents,
                    total_cents=leg.total_cents,
                )
                for leg in q.legs
            ],
        )

    @app.post("/api/bookings", status_code=201, tags=["booking"])
    def post_booking(request: Request, body: BookingIn) -> BookingOut:
        public.check("bookings", request)
        _check_room(svc, body)
        guard.verify_challenge(svc.settings, body.challenge_token, public.address(request))
        started = booking.start_booking(svc, _request(body, public.client_key(request)), actor="api")
        bill = started.bill
        return BookingOut(
            booking_id=started.reference,
            payment_intent=started.payment_intent,
            client_secret=started.client_secret,
            amount_cents=started.amount_cents,
            net_cents=bill.net_cents,
            tax_cents=bill.tax_cents,
            tax_lines=_tax_lines(bill),
            hold_expires_at=started.hold_expires_at,
            pay_url=f"{svc.settings.public_base_url.rstrip('/')}{started.pay_path}",
        )

    @app.post("/api/bookings/{reference}/payment-started", tags=["booking"])
    def payment_started(reference: str, body: PaymentStartedIn) -> PaymentStartedOut:
        """The customer reached payment: a web booking's short first hold becomes the full hold, once."""
        v = customer.view(svc, reference[:32], body.pay_token)
        until = reach_payment(svc, v.booking_id)
        return PaymentStartedOut(booking_id=v.reference, hold_expires_at=until)

    @app.get("/api/terms", tags=["booking"])
    def terms() -> TermsOut:
        return TermsOut(
            version=svc.settings.terms_version,
            cancellation_policy=describe_bands(svc.policy.refund_bands),
            url=f"{svc.settings.public_base_url.rstrip('/')}/terms",
        )

    @app.post("/api/webhooks/stripe", tags=["webhooks"])
    async def stripe_webhook(request: Request) -> JSONResponse:
        payload = await request.body()  # the raw bytes: the signature covers them exactly
        signature = request.headers.get("stripe-signature")
        try:
            outcome = await run_in_threadpool(webhooks.handle_stripe_webhook, svc, payload, signature)
        except webhooks.SignatureError as exc:
            return _problem(400, detail=exc.message)
        return JSONResponse({"received": True, "status": outcome.status})

    app.include_router(
        customer_pages.router(svc, public)
    )  # the customer's pages: /, /book/<room>, /pay/<ref>, /booked/<ref>, /terms
    return app
