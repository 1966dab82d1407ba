"""The public HTTP API (FastAPI): the booking form's back end and the Stripe webhook. It translates requests into
service calls and domain errors into HTTP statuses, nothing more. Error bodies carry only the domain errors' own
messages (safe to show by contract), never a stack trace.

Run it with `python -m services.ops.cli serve-api --port 8000`; OpenAPI is at /openapi.json, the docs at /docs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services import booking
from services.booking import BookingRequest
from services.booking.availability import AvailabilityOut, availability
from services.core.context import Services
from services.core.errors import (
    ConfigError,
    DomainError,
    GatewayError,
    InvalidState,
    NotAvailable,
    NotFound,
    ValidationError,
)
from services.rules.refunds import describe_bands
from services.web import customer_pages, webhooks

log = logging.getLogger("roomdesk.api")

MAX_AVAILABILITY_DAYS = 62


# --------------------------------------------------------------------------------------------------- models


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: str = Field(min_length=1, max_length=64, description="Room slug from GET /api/rooms")
    dates: list[date] = Field(min_length=1, max_length=31, description="Venue-local dates, YYYY-MM-DD")
    start: time = Field(description="Venue time HH:MM, the same every day")
    end: time = Field(description="Venue time HH:MM")
    party_size: int | None = Field(default=None, ge=1, le=1000)


class BookingIn(QuoteIn):
    customer_name: str = Field(min_length=1, max_length=200)
    customer_email: str = Field(min_length=3, max_length=254)
    customer_phone: str = Field(default="", max_length=40)
    extras: dict[str, Any] | None = None
    notes: str = Field(default="", max_length=2000)
    agreement_version: str | None = Field(default=None, max_length=32)
    terms_version: str = Field(
        min_length=1,
        max_length=32,
        description="The version of the cancellation policy and terms the customer accepted (GET /api/terms); "
        "a booking is refused until the current version is accepted",
    )


class LegPriceOut(BaseModel):
    date: date
    base_cents: int
    discount_cents: int
    total_cents: int


class QuoteOut(BaseModel):
    available: bool
    reasons: list[str]
    currency: str
    subtotal_cents: int
    discount_percent: int
    discount_cents: int
    total_cents: int
    legs: list[LegPriceOut]


class BookingOut(BaseModel):
    booking_id: str = Field(description="The booking reference (RD…)")
    payment_intent: str
    client_secret: str
    amount_cents: int
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


def _check_room(svc: Services, slug: str) -> None:
    if slug not in {r.slug for r in svc.catalogue.bookable_rooms}:
        raise RequestValidationError([{"loc": ("body", "room"), "msg": f"Unknown room {slug!r}", "type": "value"}])


def _request(body: QuoteIn) -> BookingRequest:
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
        **extra,
    )


# --------------------------------------------------------------------------------------------------- app


def create_app(svc: Services, *, allowed_origins: Sequence[str] | None = None) -> FastAPI:
    """The API on a service container. CORS admits only `allowed_origins` (default: the `cors_origins` setting)."""
    origins = list(allowed_origins if allowed_origins is not None else getattr(svc.settings, "cors_origins", []) or [])
    app = FastAPI(title="Room Desk API", version="1", description="Room catalogue, availability, quotes, bookings.")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
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

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return _problem(400, detail=exc.message)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unhandled error on %s", request.url.path)
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

    @app.get("/api/availability", tags=["booking"])
    def get_availability(
        room: Annotated[str, Query(min_length=1, max_length=64)],
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
    ) -> AvailabilityOut:
        loc = ("query", "to")
        if last < first:
            raise RequestValidationError([{"loc": loc, "msg": "'to' must not be before 'from'", "type": "value"}])
        if (last - first).days >= MAX_AVAILABILITY_DAYS:
            msg = f"At most {MAX_AVAILABILITY_DAYS} days at a time"
            raise RequestValidationError([{"loc": loc, "msg": msg, "type": "value"}])
        if room not in {r.slug for r in svc.catalogue.bookable_rooms}:
            raise RequestValidationError([{"loc": ("query", "room"), "msg": f"Unknown room {room!r}", "type": "value"}])
        return availability(svc, room, first, last)

    @app.post("/api/quotes", tags=["booking"])
    def post_quote(body: QuoteIn) -> QuoteOut:
        _check_room(svc, body.room)
        result = booking.quote(svc, _request(body))
        q = result.quote
        return QuoteOut(
            available=result.available,
            reasons=result.reasons,
            currency=q.currency,
            subtotal_cents=q.subtotal_cents,
            discount_percent=q.discount_percent,
            discount_cents=q.discount_cents,
            total_cents=q.total_cents,
            legs=[
                LegPriceOut(
                    date=leg.day,
                    base_cents=leg.base_cents,
                    discount_cents=leg.discount_cents,
                    total_cents=leg.total_cents,
                )
                for leg in q.legs
            ],
        )

    @app.post("/api/bookings", status_code=201, tags=["booking"])
    def post_booking(body: BookingIn) -> BookingOut:
        _check_room(svc, body.room)
        started = booking.start_booking(svc, _request(body), actor="api")
        return BookingOut(
            booking_id=started.reference,
            payment_intent=started.payment_intent,
            client_secret=started.client_secret,
            amount_cents=started.amount_cents,
            hold_expires_at=started.hold_expires_at,
            pay_url=f"{svc.settings.public_base_url.rstrip('/')}{started.pay_path}",
        )

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
        customer_pages.router(svc)
    )  # the customer's pages: /, /book/<room>, /pay/<ref>, /booked/<ref>, /terms
    return app
