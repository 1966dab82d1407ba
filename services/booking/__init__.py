"""The booking service: one function per user action, and the public steps they share.

Pages (through services.authz), the API, the CLI, the webhook, remediation and the finance overrides call what this
package exports. Modules, lowest first: `requests` (commands and results), `store` (load a booking, move a day-leg
through its state machine), `lease` (one process per booking at a time), `claims` (the database's no-overlap guard
and what blocks a room), `events` (calendar events), `refunds`, `quotes` (what a request costs and a cancellation
refunds, read only), `saga` (start → confirm, with the seed's safety net), `holds` (expiry, days that start and
end), `cancel`, `amend` (planning a change to a paid booking) and `change` (making it), and the read models
`queries` (searches, a booking's detail, the rooms' schedule) and `availability`.
`web_holds` limits what one web customer may hold and
extends a hold when the customer reaches payment; `active_holds` lists the unpaid holds and releases one for staff.
`details` holds the customer details' checks (the saga's too) and their correction (update_customer).
`blocks` takes rooms out of sale (maintenance, internal use, closures: claims + marked calendar events); its values
and the list of blocks are in the read module `block_queries`.
"""

from services.booking.active_holds import ActiveHold, active_holds, release_unpaid_hold
from services.booking.amend import Change, ChangePlan, describe, plan_change
from services.booking.block_queries import BlockPlan, BlockRequest, BlockResult, current_blocks
from services.booking.blocks import create_block, plan_block, release_block, repair_block_events
from services.booking.cancel import cancel_booking, cancel_under_lease
from services.booking.change import (
    ChangeResult,
    change_booking,
    confirm_change_payment,
    expire_change_holds,
    open_change,
    withdraw_change,
)
from services.booking.claims import (
    busy_span,
    busy_times,
    calendar_busy,
    claim_slot,
    claims_busy,
    is_overlap_error,
    release_claims,
    sweep_expired_claims,
)
from services.booking.details import (
    CustomerDetails,
    check_customer,
    check_request,
    resend_confirmation,
    update_customer,
)
from services.booking.events import (
    delete_batch,
    delete_events,
    event_body,
    event_id_for,
    insert_event,
    record_event_created,
    update_event_details,
)
from services.booking.holds import advance_legs, expire_holds, release_hold
from services.booking.lease import lease
from services.booking.queries import find_booking_id
from services.booking.quotes import cancellation_quote, quote
from services.booking.refunds import (
    booking_payments,
    cancel_refund_key,
    paid_total,
    record_refund,
    refund_payment,
    refund_tax_for,
)
from services.booking.requests import (
    BookingRequest,
    CancelResult,
    ConfirmResult,
    CustomerUpdate,
    QuoteResult,
    StartResult,
)
from services.booking.saga import (
    confirm_payment,
    confirm_under_lease,
    problems_for,
    sandbox_pay,
    sandbox_pay_change,
    start_booking,
)
from services.booking.store import (
    booking_legs,
    derive_status,
    load_booking,
    new_reference,
    resolve_now,
    room_limits,
    set_leg_state,
)
from services.booking.web_holds import active_web_holds, reach_payment

__all__ = [
    "ActiveHold",
    "BlockPlan",
    "BlockRequest",
    "BlockResult",
    "BookingRequest",
    "CancelResult",
    "Change",
    "ChangePlan",
    "ChangeResult",
    "ConfirmResult",
    "CustomerDetails",
    "CustomerUpdate",
    "QuoteResult",
    "StartResult",
    "active_holds",
    "active_web_holds",
    "advance_legs",
    "booking_legs",
    "booking_payments",
    "busy_span",
    "busy_times",
    "calendar_busy",
    "cancel_booking",
    "cancel_refund_key",
    "cancel_under_lease",
    "cancellation_quote",
    "change_booking",
    "check_customer",
    "check_request",
    "claim_slot",
    "claims_busy",
    "confirm_change_payment",
    "confirm_payment",
    "confirm_under_lease",
    "create_block",
    "current_blocks",
    "delete_batch",
    "delete_events",
    "derive_status",
    "describe",
    "event_body",
    "event_id_for",
    "expire_change_holds",
    "expire_holds",
    "find_booking_id",
    "insert_event",
    "is_overlap_error",
    "lease",
    "load_booking",
    "new_reference",
    "open_change",
    "paid_total",
    "plan_block",
    "plan_change",
    "problems_for",
    "quote",
    "reach_payment",
    "record_event_created",
    "record_refund",
    "refund_payment",
    "refund_tax_for",
    "release_block",
    "release_claims",
    "release_hold",
    "release_unpaid_hold",
    "repair_block_events",
    "resend_confirmation",
    "resolve_now",
    "room_limits",
    "sandbox_pay",
    "sandbox_pay_change",
    "set_leg_state",
    "start_booking",
    "sweep_expired_claims",
    "update_customer",
    "update_event_details",
    "withdraw_change",
]
