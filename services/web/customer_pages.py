"""The customer's pages, served by the booking API's FastAPI app: plain server-rendered HTML (Jinja2) that works
without JavaScript; a little script only adds the live price and, in live mode, Stripe's Payment Element.

  GET  /                      the rooms
  GET  /book/<room>           pick days and times from real availability, details, extras, accept the terms
  POST /book/<room>           → Gate 1 → hold → PaymentIntent, then on to the pay page
  GET  /terms                 the cancellation policy and terms, with their version
  GET  /pay/<ref>?k=…         summary, terms acceptance (phone bookings), then payment
  POST /pay/<ref>/accept      record the acceptance
  GET  /pay/<ref>/secret      the client secret for Stripe.js, only after acceptance (live mode)
  POST /pay/<ref>/test-card   sandbox: pay with a Stripe test card
  GET  /booked/<ref>?k=…      the outcome: confirmed, still processing, or refunded because the slot was taken
  GET  /booked/<ref>/calendar.ics?k=…
  GET  /manage/<ref>?k=…      the booking: days and their state, paid, refunds, receipt, .ics; cancel links
  GET  /manage/<ref>/cancel?k=…&day=<YYYY-MM-DD>|all   the refund, before confirming
  POST /manage/<ref>/cancel   confirm: cancel and refund exactly what was shown
  GET  /manage/<ref>/receipt.pdf?k=…
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from services import booking
from services.booking import BookingRequest
from services.booking.availability import availability
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import (
    DomainError,
    GatewayError,
    InvalidState,
    NotAllowed,
    NotAvailable,
    NotFound,
    PaymentDeclined,
)
from services.core.errors import ValidationError as DomainValidationError
from services.rules.contact import suggest_email
from services.rules.fmt import day_label, money
from services.rules.refunds import describe_bands
from services.web import customer, manage

log = logging.getLogger("roomdesk.web")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
TEMPLATES.env.filters["money"] = money
VIEW_DAYS = 14
# Stripe test cards the sandbox pay page offers (https://docs.stripe.com/testing#cards).
TEST_CARDS = {
    "pm_card_visa": "Visa 4242 4242 4242 4242 (succeeds)",
    "pm_card_chargeDeclined": "Visa 4000 0000 0000 0002 (declined)",
    "pm_card_chargeDeclinedInsufficientFunds": "Visa 4000 0000 0000 9995 (insufficient funds)",
}


def _times(svc: Services) -> list[str]:
    policy = svc.policy
    step = timedelta(minutes=policy.slot_minutes)
    at = datetime.combine(date(2000, 1, 3), policy.open_time)
    end = datetime.combine(date(2000, 1, 3), policy.close_time)
    out = []
    while at <= end:
        out.append(f"{at:%H:%M}")
        at += step
    return out


def _first_bookable_day(svc: Services, now: datetime) -> date:
    policy = svc.policy
    earliest = (now + timedelta(hours=policy.min_notice_hours)).astimezone(policy.tz)
    day = earliest.date()
    if earliest.time() >= policy.close_time:
        day += timedelta(days=1)
    return day


def _page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, ctx, status_code=status)


def _room_or_404(svc: Services, slug: str) -> Room | None:
    return next((r for r in svc.catalogue.bookable_rooms if r.slug == slug), None)


def _not_found(request: Request, svc: Services, message: str) -> HTMLResponse:
    return _page(request, "message.html", 404, svc=svc, title="Not found", message=message)


def _parse_time(text: str) -> time | None:
    try:
        return time.fromisoformat(text.strip())
    except ValueError:
        return None


def _form_request(room: Room, form: FormData, *, email: str) -> tuple[BookingRequest | None, list[str]]:
    """The booking form → a BookingRequest (None when days or times are missing) and the form's own problems."""
    problems = []
    dates: list[date] = []
    for raw in form.getlist("dates"):
        try:
            dates.append(date.fromisoformat(str(raw)))
        except ValueError:
            problems.append(f"{raw!s} is not a date")
    if not dates:
        problems.append("Pick at least one day")
    start = _parse_time(str(form.get("start") or ""))
    end = _parse_time(str(form.get("end") or ""))
    if start is None or end is None:
        problems.append("Pick a start and an end time")
    elif end <= start:
        problems.append("The end time must be after the start time")
    party_raw = str(form.get("party_size") or "").strip()
    party: int | None = None
    if party_raw:
        if not (party_raw.isascii() and party_raw.isdigit()) or not 1 <= int(party_raw) <= 1000:
            problems.append("Number of people must be a whole number from 1 to 1000")
        else:
            party = int(party_raw)
    accepted = form.get("accept_terms") == "yes"
    if not accepted:
        problems.append("Please read and accept the cancellation policy and terms")
    agreed = form.get("accept_agreement") == "yes"
    if room.agreement_required and not agreed:
        problems.append(f"Please accept the {room.name} agreement")
    if not dates or start is None or end is None or end <= start:
        return None, problems
    version = str(form.get("terms_version") or "")
    extras = {f.key: str(form.get(f"extra_{f.key}") or "") for f in room.extras} if room.extras else None
    req = BookingRequest(
        room=room.slug,
        dates=tuple(sorted(set(dates))),
        start=start,
        end=end,
        customer_name=str(form.get("customer_name") or "")[:200],
        customer_email=email,
        customer_phone=str(form.get("customer_phone") or "")[:40],
        party_size=party,
        extras=extras,
        notes=str(form.get("notes") or "")[:2000],
        channel="web",
        # The agreement is checked by the form above; the service only needs to know it was accepted.
        agreement_version=(version or "accepted") if room.agreement_required else None,
        terms_version=version if accepted else None,
    )
    return req, problems


def router(svc: Services) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    def book_page(
        request: Request,
        room: Room,
        *,
        start_day: date | None = None,
        values: dict[str, Any] | None = None,
        problems: list[str] | None = None,
        status: int = 200,
        email_suggestion: str | None = None,
    ) -> HTMLResponse:
        now = svc.now()
        policy = svc.policy
        first = _first_bookable_day(svc, now)
        last = (now + timedelta(days=policy.max_days_ahead)).astimezone(policy.tz).date()
        view_from = min(max(start_day or first, first), last)
        view_to = min(view_from + timedelta(days=VIEW_DAYS - 1), last)
        days = availability(svc, room.slug, view_from, view_to).days
        values = values or {}
        picked = set(values.get("dates", []))
        earlier = view_from - timedelta(days=VIEW_DAYS)
        return _page(
            request,
            "book.html",
            status,
            svc=svc,
            room=room,
            days=[{"day": d, "label": day_label(d.date), "iso": d.date.isoformat()} for d in days],
            picked=picked,
            times=_times(svc),
            values=values,
            problems=problems or [],
            price=money(room.hourly_price_cents, svc.settings.currency),
            discount_bands=policy.discount_bands if room.discount_eligible else (),
            terms_version=svc.settings.terms_version,
            policy_text=describe_bands(policy.refund_bands),
            first=first,
            last=last,
            prev_url=f"/book/{room.slug}?from={max(earlier, first).isoformat()}" if view_from > first else None,
            next_url=f"/book/{room.slug}?from={(view_to + timedelta(days=1)).isoformat()}" if view_to < last else None,
            hold_minutes=svc.settings.hold_minutes,
            email_suggestion=email_suggestion,
        )

    @r.get("/", response_class=HTMLResponse)
    def rooms_page(request: Request) -> HTMLResponse:
        rooms = [
            {"room": room, "price": money(room.hourly_price_cents, svc.settings.currency)}
            for room in svc.catalogue.bookable_rooms
        ]
        return _page(request, "rooms.html", svc=svc, rooms=rooms)

    @r.get("/terms", response_class=HTMLResponse)
    def terms_page(request: Request) -> HTMLResponse:
        return _page(
            request,
            "terms.html",
            svc=svc,
            terms_version=svc.settings.terms_version,
            policy_text=describe_bands(svc.policy.refund_bands),
            bands=sorted(svc.policy.refund_bands, key=lambda b: -b.hours_before),
            hold_minutes=svc.settings.hold_minutes,
        )

    @r.get("/book/{slug}", response_class=HTMLResponse)
    def book_get(request: Request, slug: str, start: Annotated[str | None, Query(alias="from")] = None) -> Response:
        room = _room_or_404(svc, slug)
        if room is None:
            return _not_found(request, svc, f"There is no room called {slug!r}.")
        try:
            start_day = date.fromisoformat(start) if start else None
        except ValueError:
            start_day = None
        return book_page(request, room, start_day=start_day)

    @r.post("/book/{slug}", response_class=HTMLResponse)
    async def book_post(request: Request, slug: str) -> Response:
        room = _room_or_404(svc, slug)
        if room is None:
            return _not_found(request, svc, f"There is no room called {slug!r}.")
        form = await request.form()
        values: dict[str, Any] = {k: str(v) for k, v in form.items() if k != "dates"}
        values["dates"] = [str(d) for d in form.getlist("dates")]
        start_day = None
        if values["dates"]:
            try:
                start_day = min(date.fromisoformat(d) for d in values["dates"])
            except ValueError:
                start_day = None
        email, suggestion = _email_choice(values)
        values["customer_email"] = email
        req, problems = _form_request(room, form, email=email)
        if suggestion:
            problems.append(f"Please check your email address: did you mean {suggestion}?")
        if req is not None and problems:  # show everything wrong at once, the slot included
            problems += await run_in_threadpool(booking.problems_for, svc, req)
        if req is None or problems:
            return book_page(
                request,
                room,
                start_day=start_day,
                values=values,
                problems=problems,
                status=422,
                email_suggestion=suggestion,
            )
        try:
            started = await run_in_threadpool(booking.start_booking, svc, req, actor="customer")
        except DomainValidationError as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=exc.problems, status=422)
        except NotAvailable as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=exc.reasons, status=409)
        except GatewayError as exc:
            log.warning("Booking page: gateway error: %s", exc.message)
            msg = "We could not reach the payment service. Nothing was booked or charged; please try again shortly."
            return book_page(request, room, start_day=start_day, values=values, problems=[msg], status=503)
        except DomainError as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=[exc.message], status=409)
        return RedirectResponse(started.pay_path, status_code=303)

    def pay_page(
        request: Request, ref: str, k: str | None, *, problems: list[str] | None = None, status: int = 200
    ) -> Response:
        try:
            v = customer.view(svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        if v.stage in customer.OUTCOME_STAGES:
            return RedirectResponse(v.booked_path, status_code=303)
        return _page(
            request,
            "pay.html",
            status,
            svc=svc,
            v=v,
            problems=problems or [],
            test_cards=TEST_CARDS,
            publishable_key=svc.settings.stripe_publishable_key or "",
            return_url=f"{svc.settings.public_base_url.rstrip('/')}{v.booked_path}",
        )

    @r.get("/pay/{ref}", response_class=HTMLResponse)
    def pay_get(request: Request, ref: str, k: str | None = None) -> Response:
        return pay_page(request, ref, k)

    @r.post("/pay/{ref}/accept", response_class=HTMLResponse)
    def pay_accept(
        request: Request,
        ref: str,
        k: Annotated[str, Form()] = "",
        terms_version: Annotated[str, Form()] = "",
        accept_terms: Annotated[str, Form()] = "",
    ) -> Response:
        try:
            customer.accept_terms(svc, ref, k, terms_version if accept_terms == "yes" else None)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except (DomainValidationError, InvalidState) as exc:
            msgs = exc.problems if isinstance(exc, DomainValidationError) else [exc.message]
            return pay_page(request, ref, k, problems=msgs, status=422)
        return RedirectResponse(f"/pay/{ref}?{urlencode({'k': k})}", status_code=303)

    @r.get("/pay/{ref}/secret")
    def pay_secret(ref: str, k: str | None = None) -> JSONResponse:
        try:
            return JSONResponse({"client_secret": customer.client_secret(svc, ref, k)})
        except NotFound as exc:
            return JSONResponse({"detail": exc.message}, status_code=404)
        except InvalidState as exc:
            return JSONResponse({"detail": exc.message}, status_code=409)

    @r.post("/pay/{ref}/test-card", response_class=HTMLResponse)
    async def pay_test_card(
        request: Request,
        ref: str,
        k: Annotated[str, Form()] = "",
        card: Annotated[str, Form()] = "pm_card_visa",
    ) -> Response:
        if card not in TEST_CARDS:
            card = "pm_card_visa"
        try:
            await run_in_threadpool(customer.pay_with_test_card, svc, ref, k, card=card)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except PaymentDeclined as exc:
            msg = f"{exc.message}. Nothing was charged; try another card."
            return pay_page(request, ref, k, problems=[msg], status=402)
        except DomainError as exc:
            return pay_page(request, ref, k, problems=[exc.message], status=409)
        return RedirectResponse(f"/booked/{ref}?{urlencode({'k': k})}", status_code=303)

    @r.get("/booked/{ref}", response_class=HTMLResponse)
    async def booked(request: Request, ref: str, k: str | None = None) -> Response:
        try:
            await run_in_threadpool(customer.finish_after_return, svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except DomainError as exc:  # the webhook or the worker finishes the job; the page shows what is known
            log.info("Confirmation page could not finish booking %s: %s", ref, exc.message)
        try:
            v = customer.view(svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        if v.stage == customer.STAGE_PAY:
            return RedirectResponse(v.pay_path, status_code=303)
        return _page(request, "booked.html", svc=svc, v=v)

    @r.get("/booked/{ref}/calendar.ics")
    def booked_ics(request: Request, ref: str, k: str | None = None) -> Response:
        try:
            name, content = customer.calendar_file(svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except InvalidState as exc:
            return _page(request, "message.html", 409, svc=svc, title="Not confirmed", message=exc.message)
        return Response(
            content,
            media_type="text/calendar",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ----------------------------------------------------------------------------------------- /manage

    def manage_page(
        request: Request,
        ref: str,
        k: str | None,
        *,
        done: Sequence[date] = (),
        problems: Sequence[str] = (),
        status: int = 200,
    ) -> Response:
        try:
            v = manage.view(svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        if v.awaiting_payment:
            return RedirectResponse(v.pay_path, status_code=303)
        # After a cancellation: what the database says about the days just cancelled (the query only picks them).
        cancelled = [d for d in v.days if d.day in set(done) and d.cancelled]
        return _page(
            request,
            "manage.html",
            status,
            svc=svc,
            v=v,
            cancelled=cancelled,
            problems=list(problems),
            contact=manage.contact_words(v.venue),
        )

    def manage_refused(request: Request, ref: str, k: str | None, exc: DomainError) -> Response:
        """A step the manage page's service refused, shown on the page with the status that says why."""
        if isinstance(exc, NotFound):
            return _not_found(request, svc, exc.message)
        if isinstance(exc, DomainValidationError):
            return manage_page(request, ref, k, problems=exc.problems, status=422)
        return manage_page(request, ref, k, problems=[exc.message], status=403 if isinstance(exc, NotAllowed) else 409)

    @r.get("/manage/{ref}", response_class=HTMLResponse)
    def manage_get(request: Request, ref: str, k: str | None = None, done: str | None = None) -> Response:
        days, _ = _days_field(done.split(",") if done else [], "done")  # display only: a bad value just shows nothing
        return manage_page(request, ref, k, done=days or ())

    def cancel_page(
        request: Request, ref: str, k: str | None, raw_days: Sequence[str], *, notice: str = "", status: int = 200
    ) -> Response:
        days, problems = _days_field(raw_days, "day")
        if problems:
            return manage_page(request, ref, k, problems=problems, status=422)
        try:
            q = manage.cancel_quote(svc, ref, k, days)
        except (NotFound, DomainValidationError, NotAllowed, InvalidState) as exc:
            return manage_refused(request, ref, k, exc)
        return _page(request, "manage_cancel.html", status, svc=svc, v=q.view, q=q, notice=notice)

    @r.get("/manage/{ref}/cancel", response_class=HTMLResponse)
    def manage_cancel_get(request: Request, ref: str, k: str | None = None) -> Response:
        return cancel_page(request, ref, k, request.query_params.getlist("day"))

    @r.post("/manage/{ref}/cancel", response_class=HTMLResponse)
    async def manage_cancel_post(request: Request, ref: str) -> Response:
        form = await request.form()
        k = str(form.get("k") or "")[:MAX_TOKEN]
        raw_days = [str(d) for d in form.getlist("day")]
        days, problems = _days_field(raw_days, "day")
        refund_raw = str(form.get("refund_cents") or "").strip()
        if not (refund_raw.isascii() and refund_raw.isdigit()) or len(refund_raw) > 9:  # "²".isdigit() too
            problems.append("refund_cents: the refund you confirm must be a whole number of cents")
        if problems:
            return manage_page(request, ref, k, problems=problems, status=422)
        try:
            result = await run_in_threadpool(manage.cancel, svc, ref, k, days, confirmed_refund_cents=int(refund_raw))
        except manage.RefundChanged as exc:
            return cancel_page(request, ref, k, raw_days, notice=exc.message, status=409)
        except (NotFound, DomainValidationError, NotAllowed, InvalidState) as exc:
            return manage_refused(request, ref, k, exc)
        except GatewayError as exc:
            log.warning("Manage page: cancelling %s failed: %s", ref, exc.message)
            msg = "The refund could not be made just now, so nothing was cancelled. Please try again in a few minutes."
            return manage_page(request, ref, k, problems=[msg], status=503)
        done = ",".join(d.isoformat() for d in result.cancelled_days)
        return RedirectResponse(f"/manage/{ref}?{urlencode({'k': k, 'done': done})}", status_code=303)

    @r.get("/manage/{ref}/receipt.pdf")
    async def manage_receipt(request: Request, ref: str, k: str | None = None) -> Response:
        try:
            name, content = await run_in_threadpool(manage.receipt, svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except InvalidState as exc:
            return _page(request, "message.html", 409, svc=svc, title="No receipt yet", message=exc.message)
        return Response(
            content, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'}
        )

    return r


def _email_choice(values: dict[str, Any]) -> tuple[str, str | None]:
    """The email to book with, and a "did you mean …?" to ask first (services.rules.contact). Asked once: the
    customer takes the suggestion with one click (`use_email`), or sends the form again as typed (`email_checked`
    carries the address they were asked about); the typed value is never changed for them."""
    typed = str(values.get("customer_email") or "").strip()[:254]
    suggestion = suggest_email(typed) if typed else None
    if suggestion and values.get("use_email") == suggestion:
        return suggestion, None
    if suggestion and values.get("email_checked") == typed:
        return typed, None
    return typed, suggestion


MAX_TOKEN = 64  # a pay token is 24 characters; anything much longer is not one
MAX_DAYS_FIELD = 31


def _days_field(raw: Sequence[str], field: str) -> tuple[list[date] | None, list[str]]:
    """A `day` field: dates (YYYY-MM-DD), or "all" (None: every day still open). Problems name the field."""
    values = [v.strip() for v in raw if v.strip()]
    if not values:
        return [], [f"{field}: pick a day to cancel"] if field == "day" else []
    if len(values) > MAX_DAYS_FIELD:
        return [], [f"{field}: at most {MAX_DAYS_FIELD} days at a time"]
    if values == ["all"]:
        return None, []
    days, problems = [], []
    for v in values:
        try:
            if len(v) > 10:
                raise ValueError(v)
            days.append(date.fromisoformat(v))
        except ValueError:
            problems.append(f"{field}: {v[:20]!r} is not a date (YYYY-MM-DD)")
    return days, problems
