"""One-click remediation: a fix for every reconciliation finding (the actions `findings.CODES` offers).

Each fix re-loads its finding, re-checks the finding's condition against Stripe and the calendars just before acting
(the cache the finding was read from may be minutes old), acts through the booking service's own steps (Gate 2,
deterministic event ids, idempotent refund keys, the outbox, leases), and audits under the name of the person who
clicked. A second click finds the condition gone and says there is nothing to do.

A fix is planned first, then applied: `describe_action` shows the plan's text in the confirmation dialog and
`run_action` applies the same plan, so the dialog says exactly what the button does. This module runs them; the
package holds the rest: `fixes` (context, plan, result, refusal), `probes` (what Stripe and the calendars say now),
`steps` (booking steps the fixes share), `adopt` (payments the old system made) and `plans` (one planner per action).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from models.tables import Finding
from services.core import audit
from services.core.context import Progress, Services
from services.core.errors import DomainError
from services.reconciliation import findings, steps
from services.reconciliation.fixes import Amount, FixContext, FixResult, Options, Refusal
from services.reconciliation.plans import PLANNERS
from services.rules.fmt import day_label

log = logging.getLogger("roomdesk.remediate")

__all__ = ["ACTIONS", "Amount", "FixResult", "Refusal", "describe_action", "run_action", "run_bulk"]

ACTIONS = tuple(PLANNERS)


def _context(svc: Services, finding_id: int, action: str, actor: str, now: datetime, opts: Options) -> FixContext:
    if action not in PLANNERS:
        raise Refusal(f"Unknown action {action!r}")
    if not actor.strip():
        raise Refusal("Sign in first: every fix is recorded under the name of the person who made it")
    with svc.session() as s:
        finding = s.get(Finding, finding_id)
    if finding is None:
        raise Refusal(f"No finding #{finding_id}")
    if finding.status == "resolved":
        when = day_label(finding.resolved_at.date()) if finding.resolved_at else "an earlier run"
        raise Refusal(f"Nothing to do: this finding was resolved ({when})")
    # An acknowledged finding may still be fixed later (the Mismatches page offers its fixes).
    if action not in (finding.actions or findings.CODES.get(finding.code, ("", "", ()))[2]):
        label = findings.ACTION_LABELS.get(action, action)
        raise Refusal(f"“{label}” is not a fix for this finding")
    booking, legs = steps.booking_for(svc, finding.payment_intent, finding.booking_id)
    return FixContext(svc, finding, actor.strip(), now, opts, booking, legs)


def describe_action(svc: Services, finding_id: int, action: str) -> str:
    """The confirmation-dialog text: exactly what the action will do now, with amounts and days (or why it won't)."""
    now = svc.now()
    try:
        ctx = _context(svc, finding_id, action, "(preview)", now, Options())
        text = PLANNERS[action](ctx).text
        if action == "refund":
            others: tuple[Amount, ...] = (
                ("policy", "difference") if ctx.finding.code == "amount_mismatch" else ("policy",)
            )
            for kind in others:
                try:
                    alt = PLANNERS["refund"](replace(ctx, opts=Options(amount=kind)))
                except DomainError:
                    continue
                text += f" — Or, {'by the cancellation policy' if kind == 'policy' else 'just the overcharge'}: " + (
                    alt.text[:1].lower() + alt.text[1:]
                )
        return text
    except DomainError as exc:
        return exc.message


def run_action(
    svc: Services,
    finding_id: int,
    action: str,
    *,
    actor: str,
    note: str = "",
    reason: str = "",
    amount: Amount = "full",
    extras: dict[str, object] | None = None,
    now: datetime | None = None,
) -> FixResult:
    """Re-check one finding against Stripe and the calendars, then fix it; refusals and failures come back as a
    result with ok=False (never raised), audited under `actor` when anything changed."""
    now = now or svc.now()
    opts = Options(note=note, reason=reason, amount=amount, extras=extras)
    ctx: FixContext | None = None
    try:
        ctx = _context(svc, finding_id, action, actor, now, opts)
        result = PLANNERS[action](ctx).apply()
    except Refusal as exc:
        return FixResult(finding_id, action, False, exc.message, exc.offer)
    except DomainError as exc:
        # Raised before the fix changed anything (bad input, a gateway down during the checks, a busy booking).
        log.warning("%s on finding %s failed: %s", action, finding_id, exc.message)
        return FixResult(finding_id, action, False, exc.message)
    result.finding_id, result.action = finding_id, action
    if action != "acknowledge" and result.changed:  # acknowledge audits itself
        booking, _ = steps.booking_for(svc, ctx.finding.payment_intent, ctx.finding.booking_id)
        with svc.session() as s:
            audit.record(
                s,
                f"remediation.{action}",
                actor=ctx.actor,
                at=now,
                booking=booking,
                payment_intent=ctx.finding.payment_intent,
                finding=ctx.finding.key,
                finding_id=finding_id,
                ok=result.ok,
                result=result.message,
                note=note.strip() or None,
                reason=reason.strip() or None,
            )
    return result


def run_bulk(
    svc: Services,
    finding_ids: list[int],
    action: str,
    *,
    actor: str,
    progress: Progress | None = None,
    **kwargs: Any,
) -> list[FixResult]:
    """Run one action over many findings, one at a time: each gets its own result, and a failure never stops the
    rest."""
    results: list[FixResult] = []
    total = len(finding_ids)
    report = progress or (lambda _f, _m: None)
    report(0.0, f"0 of {total} done")
    for i, finding_id in enumerate(finding_ids, start=1):
        try:
            result = run_action(svc, finding_id, action, actor=actor, **kwargs)
        except Exception:  # one broken item must not stop the batch; the log has the details
            log.exception("%s on finding %s failed unexpectedly", action, finding_id)
            result = FixResult(finding_id, action, False, "Failed unexpectedly; the details are in the server log")
        results.append(result)
        report(i / total, f"{i} of {total}: {result.message}")
    return results
