"""Domain errors. Every message is safe to show to staff or customers: no secrets, no stack traces."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the booking service raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DomainError):
    """The room catalogue or settings are invalid; the message names the room and field."""


class NotAllowed(DomainError):
    """This person, in this role, may not take this step (the message says who may)."""


class ValidationError(DomainError):
    """Input is malformed (bad email, end before start...); `problems` lists each one to fix."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class NotAvailable(DomainError):
    """The rules or the calendars refuse the slot; `reasons` are sentences a front-desk person understands."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons) or "Not available")


class SlotTaken(NotAvailable):
    """Another booking or hold claimed the slot first (enforced by the database)."""

    def __init__(self, detail: str = "That slot was just taken by another booking") -> None:
        super().__init__([detail])


class TooManyHolds(DomainError):
    """A web customer (one email, or one client address) already has as many unpaid holds as the venue allows."""


class NotFound(DomainError):
    """The booking, payment or event does not exist."""


class InvalidState(DomainError):
    """The action is not allowed from the current state (e.g. cancelling a refunded day)."""


class QuoteChanged(InvalidState):
    """What the person confirmed (these days, this refund) is no longer what the policy gives under the booking's
    lease: nothing was changed; quote again."""


class GatewayError(DomainError):
    """An external service failed. `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool = True, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.provider = provider
        self.status = status  # HTTP-like status where one applies (409, 410, 429, 5xx)


class PaymentDeclined(GatewayError):
    """The card was declined; not transient."""

    def __init__(self, message: str = "The card was declined") -> None:
        super().__init__(message, transient=False, provider="payments")


class EventExists(GatewayError):
    """Calendar insert with an id that exists (or existed and was deleted): HTTP 409."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"Calendar event {event_id} already exists", transient=False, provider="calendar", status=409)
        self.event_id = event_id


class TimeoutFault(GatewayError):
    """The call timed out: its side effect may or may not have happened."""

    def __init__(self, message: str = "The call timed out", provider: str = "") -> None:
        super().__init__(message, transient=True, provider=provider)


class BookingBusy(GatewayError):
    """Another process is working on this booking right now (it holds the booking's lease): transient, retry soon."""

    def __init__(self) -> None:
        super().__init__("This booking is being processed right now; try again in a minute", transient=True)
