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
  GET  /manage/<ref>/change?k=…&date_<day>=…&start_<day>=…&end_<day>=…   the change: old → new and the difference
  POST /manage/<ref>/change   confirm: made (same price or cheaper), or held and on to its pay page (dearer)
  GET  /manage/<ref>/change/<n>?k=…   a change's page: pay the difference (Payment Element / test card), or its outcome
  POST /manage/<ref>/change/<n>/test-card   sandbox: pay the difference with a Stripe test card
  POST /manage/<ref>/change/<n>/withdraw    give up a change waiting for payment
  POST /manage/<ref>/deposit-card   sandbox: save a Stripe test card for the damage deposit (live: Stripe.js
                              confirmSetup, back to /manage/<ref>?deposit=back, which reads the card at once)
  POST /manage/<ref>/request  closed for changes online: ask the venue in a few words (emailed to the venue)
  GET  /manage/<ref>/receipt.pdf?k=…
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
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
from services.booking.web_holds import reach_payment
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
    SlotTaken,
    TooManyHolds,
)
from services.core.errors import ValidationError as DomainValidationError
from services.rules.bill import ROOM
from services.rules.contact import suggest_email
from services.rules.fmt import day_label, money
from services.rules.refunds import describe_bands
from services.web import customer, deposit_notice, guard, manage

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


def _tax_note(svc: Services) -> str:
    """'GST 5 %': the taxes added to a room's hourly price (prices are shown before tax); '' without tax."""
    return " + ".join(rate.label for rate in svc.tax.rates if ROOM in rate.applies_to)


def _room_or_404(svc: Services, slug: str) -> Room | None:
    return next((r for r in svc.catalogue.bookable_rooms if r.slug == slug), None)


def _not_found(request: Request, svc: Services, message: str) -> HTMLResponse:
    return _page(request, "message.html", 404, svc=svc, title="Not found", message=message)


def _parse_time(text: str) -> time | None:
    """HH:MM in venue time, as the form's lists offer it; seconds, fractions and offsets are not times it offers."""
    text = text.strip()
    if not re.fullmatch(r"[0-2][0-9]:[0-5][0-9]", text):
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        return None


def _has_control_characters(text: str) -> bool:
    """NUL and other control characters (newlines and tabs allowed): PostgreSQL refuses NUL in text."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\n\r\t" for ch in text)


def _form_request(room: Room, form: FormData, *, email: str) -> tuple[BookingRequest | None, list[str]]:
    """The booking form → a BookingRequest (None when days or times are missing) and the form's own problems."""
    problems = []
    for key, value in form.multi_items():
        if isinstance(value, str) and _has_control_characters(value):
            problems.append(f"{key[:40]}: must not contain control characters")
    if problems:
        return None, problems
    dates: list[date] = []
    for raw in form.getlist("dates"):
        try:
            if len(str(raw)) != 10:
                raise ValueError(raw)
            day = date.fromisoformat(str(raw))
            if not date(2000, 1, 1) <= day <= date(2999, 12, 31):
                raise ValueError(raw)
            dates.append(day)
        except ValueError:
            problems.append(f"dates: {str(raw)[:20]!r} is not a date (YYYY-MM-DD)")
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


def router(svc: Services, public: guard.PublicGuard | None = None) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    public = public or guard.PublicGuard(svc.settings)

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
            tax_note=_tax_note(svc),
            discount_bands=policy.discount_bands if room.discount_eligible else (),
            terms_version=svc.settings.terms_version,
            policy_text=describe_bands(policy.refund_bands),
            first=first,
            last=last,
            prev_url=f"/book/{room.slug}?from={max(earlier, first).isoformat()}" if view_from > first else None,
            next_url=f"/book/{room.slug}?from={(view_to + timedelta(days=1)).isoformat()}" if view_to < last else None,
            hold_minutes=svc.settings.hold_minutes,
            hold_start_minutes=svc.settings.web_hold_start_minutes,
            email_suggestion=email_suggestion,
            challenge=guard.challenge_widget(svc.settings),
        )

    @r.get("/", response_class=HTMLResponse)
    def rooms_page(request: Request) -> HTMLResponse:
        rooms = [
            {"room": room, "price": money(room.hourly_price_cents, svc.settings.currency)}
            for room in svc.catalogue.bookable_rooms
        ]
        return _page(request, "rooms.html", svc=svc, rooms=rooms, tax_note=_tax_note(svc))

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
        refusal = public.hit("bookings", request)
        if refusal is not None:
            response = _page(request, "message.html", 429, svc=svc, title="Too many requests", message=refusal.message)
            response.headers.update(refusal.headers)
            return response
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
        widget = guard.challenge_widget(svc.settings)
        token = str(form.get(widget["field"]) or form.get("challenge_token") or "") if widget else None
        req = dataclasses.replace(req, client_key=public.client_key(request))
        try:
            await run_in_threadpool(guard.verify_challenge, svc.settings, token, public.address(request))
            started = await run_in_threadpool(booking.start_booking, svc, req, actor="customer")
        except guard.ChallengeFailed as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=[exc.message], status=422)
        except TooManyHolds as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=[exc.message], status=429)
        except guard.ChallengeUnavailable as exc:
            return book_page(request, room, start_day=start_day, values=values, problems=[exc.message], status=503)
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
        if v.stage == customer.STAGE_PAY and v.terms_accepted:  # the payment step is on screen: the full hold starts
            try:
                reach_payment(svc, v.booking_id)
                v = customer.view(svc, ref, k)
            except DomainError as exc:
                log.info("Pay page: the hold of %s was not extended: %s", ref, exc.message)
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
            dep=deposit_notice.notice(svc, v.booking_id, prepare_card=False),
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
        return await with_test_card(
            request,
            lambda: customer.pay_with_test_card(svc, ref, k, card=card),
            declined="Nothing was charged; try another card.",
            again=lambda problems, status: pay_page(request, ref, k, problems=problems, status=status),
            then=f"/booked/{ref}?{urlencode({'k': k})}",
        )

    async def with_test_card(
        request: Request,
        act: Callable[[], object],
        *,
        declined: str,
        again: Callable[[list[str], int], Response],
        then: str,
    ) -> Response:
        """Sandbox: a test card step (pay, or save a card): on to `then`, or the same page again saying why not."""
        try:
            await run_in_threadpool(act)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except PaymentDeclined as exc:
            return again([f"{exc.message}. {declined}"], 402)
        except DomainError as exc:
            return again([exc.message], 409)
        return RedirectResponse(then, status_code=303)

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
        dep = None
        if v.stage == customer.STAGE_CONFIRMED:
            dep, _ = await run_in_threadpool(deposit_notice.for_customer, svc, ref, k)
        return _page(request, "booked.html", svc=svc, v=v, **deposit_context(ref, k, dep))

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

    def deposit_context(ref: str, k: str | None, dep: deposit_notice.DepositNotice | None) -> dict[str, Any]:
        """What _deposit.html needs: the notice, the sandbox's test cards, and where Stripe sends the customer back
        after saving the card (the manage page, which reads the card at once)."""
        back = f"/manage/{ref}?{urlencode({'k': k or '', 'deposit': 'back'})}"
        return {
            "dep": dep,
            "test_cards": TEST_CARDS,
            "publishable_key": svc.settings.stripe_publishable_key or "",
            "deposit_return_url": f"{svc.settings.public_base_url.rstrip('/')}{back}",
        }

    # ----------------------------------------------------------------------------------------- /manage

    def manage_page(
        request: Request,
        ref: str,
        k: str | None,
        *,
        done: Sequence[date] = (),
        problems: Sequence[str] = (),
        status: int = 200,
        changed: int | None = None,
        requested: bool = False,
        values: dict[str, str] | None = None,
        deposit: str | None = None,
    ) -> Response:
        try:
            v = manage.view(svc, ref, k)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        if v.awaiting_payment:
            return RedirectResponse(v.pay_path, status_code=303)
        dep, saved = deposit_notice.for_customer(svc, ref, k, back_from_stripe=deposit == "back")
        # After a cancellation: what the database says about the days just cancelled (the query only picks them).
        cancelled = [d for d in v.days if d.day in set(done) and d.cancelled]
        # After a change: what the database says about it (display only: a change not made shows no notice).
        change = None
        if changed is not None:
            try:
                change = manage.change_status(svc, ref, k, changed)
            except NotFound:
                change = None
        now = svc.now()
        return _page(
            request,
            "manage.html",
            status,
            svc=svc,
            v=v,
            cancelled=cancelled,
            problems=list(problems),
            contact=manage.contact_words(v.venue),
            change=change if change is not None and change.state in ("applied", "applying") else None,
            requested=requested,
            values=values or {},
            times=_times(svc),
            date_min=_first_bookable_day(svc, now).isoformat(),
            date_max=(now + timedelta(days=svc.policy.max_days_ahead)).astimezone(svc.policy.tz).date().isoformat(),
            request_max=manage.REQUEST_MAX_CHARS,
            deposit_saved=saved or (deposit == "saved" and dep is not None and dep.state == "card_saved"),
            **deposit_context(ref, k, dep),
        )

    def manage_refused(request: Request, ref: str, k: str | None, exc: DomainError) -> Response:
        """A step the manage page's service refused, shown on the page with the status that says why."""
        if isinstance(exc, NotFound):
            return _not_found(request, svc, exc.message)
        if isinstance(exc, DomainValidationError):
            return manage_page(request, ref, k, problems=exc.problems, status=422)
        return manage_page(request, ref, k, problems=[exc.message], status=403 if isinstance(exc, NotAllowed) else 409)

    @r.get("/manage/{ref}", response_class=HTMLResponse)
    def manage_get(
        request: Request,
        ref: str,
        k: str | None = None,
        done: str | None = None,
        changed: str | None = None,
        requested: str | None = None,
        deposit: str | None = None,
    ) -> Response:
        days, _ = _days_field(done.split(",") if done else [], "done")  # display only: a bad value just shows nothing
        return manage_page(
            request,
            ref,
            k,
            done=days or (),
            changed=_number(changed or ""),
            requested=requested == "1",
            deposit=deposit if deposit in ("back", "saved") else None,
        )

    @r.post("/manage/{ref}/deposit-card", response_class=HTMLResponse)
    async def manage_deposit_card(
        request: Request, ref: str, k: Annotated[str, Form()] = "", card: Annotated[str, Form()] = "pm_card_visa"
    ) -> Response:
        """Sandbox: save a test card for the damage deposit (a declining one shows what a refused card does)."""
        if card not in TEST_CARDS:
            return manage_page(request, ref, k, problems=["card: pick one of the test cards"], status=422)
        return await with_test_card(
            request,
            lambda: customer.save_deposit_test_card(svc, ref, k, card=card),
            declined="It was not saved: try another card.",
            again=lambda problems, status: manage_page(request, ref, k, problems=problems, status=status),
            then=f"/manage/{ref}?{urlencode({'k': k, 'deposit': 'saved'})}",
        )

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

    # ------------------------------------------------------------------------------------ /manage: changing a day

    def change_preview_page(
        request: Request,
        ref: str,
        k: str | None,
        items: Sequence[tuple[str, str]],
        *,
        notice: str = "",
        status: int = 200,
    ) -> Response:
        choice, problems = manage.choice_from_fields(items)
        if choice is None:
            return manage_page(request, ref, k, problems=problems, status=422, values=dict(items))
        try:
            p = manage.change_preview(svc, ref, k, choice)
        except (NotFound, DomainValidationError, NotAllowed, InvalidState) as exc:
            return change_refused(request, ref, k, exc, items)
        return change_page(request, p, notice=notice, status=status if p.possible else max(status, 409))

    def change_page(request: Request, p: manage.ChangePreview, *, notice: str = "", status: int = 200) -> Response:
        return _page(request, "manage_change.html", status, svc=svc, v=p.view, p=p, notice=notice)

    def change_refused(
        request: Request, ref: str, k: str | None, exc: DomainError, items: Sequence[tuple[str, str]]
    ) -> Response:
        """Like manage_refused, keeping what the customer picked in the change form."""
        if isinstance(exc, NotFound):
            return _not_found(request, svc, exc.message)
        msgs = exc.problems if isinstance(exc, DomainValidationError) else [exc.message]
        status = 422 if isinstance(exc, DomainValidationError) else 403 if isinstance(exc, NotAllowed) else 409
        return manage_page(request, ref, k, problems=msgs, status=status, values=dict(items))

    @r.get("/manage/{ref}/change", response_class=HTMLResponse)
    def manage_change_get(request: Request, ref: str, k: str | None = None) -> Response:
        items = [(key, value) for key, value in request.query_params.multi_items() if key != "k"]
        return change_preview_page(request, ref, k, items[:MAX_CHANGE_FIELDS])

    @r.post("/manage/{ref}/change", response_class=HTMLResponse)
    async def manage_change_post(request: Request, ref: str) -> Response:
        form = await request.form()
        k = str(form.get("k") or "")[:MAX_TOKEN]
        items = [(key, v) for key, v in form.multi_items() if isinstance(v, str) and key != "k"][:MAX_CHANGE_FIELDS]
        choice, problems = manage.choice_from_fields(items)
        net_raw = str(form.get("net_cents") or "").strip()
        if not re.fullmatch(r"-?[0-9]{1,9}", net_raw):
            problems.append("net_cents: the difference you confirm must be a whole number of cents")
        base_raw = str(form.get("base") or "").strip()
        if not re.fullmatch(r"[0-9]{1,6}", base_raw):
            problems.append("base: the change form is incomplete; please open the change again from your booking")
        if choice is None or problems:
            return manage_page(request, ref, k, problems=problems, status=422, values=dict(items))
        try:
            done = await run_in_threadpool(
                manage.make_change, svc, ref, k, choice, confirmed_net_cents=int(net_raw), base=int(base_raw)
            )
        except manage.ChangeQuoteChanged as exc:
            return change_page(request, exc.preview, notice=exc.message, status=409)
        except SlotTaken as exc:
            return change_preview_page(request, ref, k, items, notice=exc.message, status=409)
        except NotAvailable:
            return change_preview_page(request, ref, k, items, status=409)
        except (NotFound, DomainValidationError, NotAllowed, InvalidState) as exc:
            return change_refused(request, ref, k, exc, items)
        except GatewayError as exc:
            log.warning("Manage page: changing %s failed: %s", ref, exc.message)
            msg = f"The change could not be made just now ({exc.message}). Nothing was changed; please try again."
            return manage_page(request, ref, k, problems=[msg], status=503)
        if done.made:
            return RedirectResponse(f"/manage/{ref}?{urlencode({'k': k, 'changed': done.number})}", status_code=303)
        return RedirectResponse(f"/manage/{ref}/change/{done.number}?{urlencode({'k': k})}", status_code=303)

    def change_status_page(
        request: Request, ref: str, k: str | None, n: str, *, problems: Sequence[str] = (), status: int = 200
    ) -> Response:
        number = _number(n)
        if number is None:
            return _not_found(request, svc, "This link is not valid. Check it against your email, or call us.")
        try:
            st = manage.change_status(svc, ref, k, number)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        sandbox = svc.payments.mode == "sandbox"
        secret, shown = "", list(problems)
        if st.payable and not sandbox:
            try:
                secret = manage.change_client_secret(svc, ref, k, number)
            except (DomainError, GatewayError) as exc:
                shown.append(exc.message)
        return _page(
            request,
            "manage_change_pay.html",
            status,
            svc=svc,
            v=st.view,
            st=st,
            sandbox=sandbox,
            problems=shown,
            test_cards=TEST_CARDS,
            publishable_key=svc.settings.stripe_publishable_key or "",
            client_secret=secret,
            return_url=f"{svc.settings.public_base_url.rstrip('/')}{st.path}",
        )

    @r.get("/manage/{ref}/change/{n}", response_class=HTMLResponse)
    async def manage_change_status(request: Request, ref: str, n: str, k: str | None = None) -> Response:
        number = _number(n)
        if number is not None:
            try:
                await run_in_threadpool(manage.finish_change_after_return, svc, ref, k, number)
            except NotFound as exc:
                return _not_found(request, svc, exc.message)
            except DomainError as exc:  # the webhook or the worker finishes the job; the page shows what is known
                log.info("Change page could not finish change %s of %s: %s", n, ref, exc.message)
        return change_status_page(request, ref, k, n)

    @r.post("/manage/{ref}/change/{n}/test-card", response_class=HTMLResponse)
    async def manage_change_test_card(
        request: Request,
        ref: str,
        n: str,
        k: Annotated[str, Form()] = "",
        card: Annotated[str, Form()] = "pm_card_visa",
    ) -> Response:
        number = _number(n)
        if number is None:
            return _not_found(request, svc, "This link is not valid. Check it against your email, or call us.")
        if card not in TEST_CARDS:
            card = "pm_card_visa"
        try:
            await run_in_threadpool(manage.pay_change_with_test_card, svc, ref, k[:MAX_TOKEN], number, card=card)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except PaymentDeclined as exc:
            msg = f"{exc.message}. Nothing was charged; try another card."
            return change_status_page(request, ref, k, n, problems=[msg], status=402)
        except DomainError as exc:
            return change_status_page(request, ref, k, n, problems=[exc.message], status=409)
        return RedirectResponse(f"/manage/{ref}/change/{number}?{urlencode({'k': k})}", status_code=303)

    @r.post("/manage/{ref}/change/{n}/withdraw", response_class=HTMLResponse)
    async def manage_change_withdraw(request: Request, ref: str, n: str, k: Annotated[str, Form()] = "") -> Response:
        number = _number(n)
        if number is None:
            return _not_found(request, svc, "This link is not valid. Check it against your email, or call us.")
        try:
            await run_in_threadpool(manage.withdraw_change, svc, ref, k[:MAX_TOKEN], number)
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except DomainError as exc:
            return change_status_page(request, ref, k, n, problems=[exc.message], status=409)
        return RedirectResponse(f"/manage/{ref}/change/{number}?{urlencode({'k': k})}", status_code=303)

    @r.post("/manage/{ref}/request", response_class=HTMLResponse)
    async def manage_request(
        request: Request, ref: str, k: Annotated[str, Form()] = "", message: Annotated[str, Form()] = ""
    ) -> Response:
        k = k[:MAX_TOKEN]
        try:
            await run_in_threadpool(manage.request_change, svc, ref, k, message[: manage.REQUEST_MAX_CHARS * 4])
        except NotFound as exc:
            return _not_found(request, svc, exc.message)
        except DomainValidationError as exc:
            keep = {"message": message[: manage.REQUEST_MAX_CHARS * 2]}
            return manage_page(request, ref, k, problems=exc.problems, status=422, values=keep)
        except DomainError as exc:
            return manage_page(request, ref, k, problems=[exc.message], status=409)
        return RedirectResponse(f"/manage/{ref}?{urlencode({'k': k, 'requested': 1})}", status_code=303)

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
MAX_CHANGE_FIELDS = 200  # three fields a day and a few more; the rest of an oversized form is not read


def _number(raw: str) -> int | None:
    """A change's number from a link or a query: digits only, else None (the page then opens nothing)."""
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else None


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
