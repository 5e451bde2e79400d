"""The one JSON form of an approval request: interrupt payloads, `--json`, channels."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from agent_finops.ledger import ApprovalRecord

__all__ = ["APPROVAL_KIND", "approval_payload", "default_extra"]

APPROVAL_KIND: Final = "agent_finops.approval"
"""`payload["kind"]` of a request asking a human to approve overspend."""


def default_extra(request: ApprovalRecord) -> Decimal | None:
    """What an approval grants when the approver names no amount.

    Budgets and caps: the greater of the paused call's estimate and 20% of the limit.
    Loop rules: None (the rule is waived for the rest of the run).
    """
    if request.unit == "loop":
        return None
    return max(request.estimate, request.limit / 5)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def approval_payload(request: ApprovalRecord) -> dict[str, Any]:
    """The JSON-ready description of a request and its state (what a human sees)."""
    return {
        "kind": APPROVAL_KIND,
        "approval_id": request.approval_id,
        "status": request.status,
        "rule_id": request.rule_id,
        "scope": dict(request.scope),
        "unit": request.unit,
        "spent": _text(request.spent),
        "limit": _text(request.limit),
        "estimated_extra": _text(request.estimate),
        "approved_extra": _text(request.extra),
        "trace_id": request.trace_id,
        "thread_id": request.thread_id,
        "policy_version": request.policy_version,
        "requested_at": request.created_at.isoformat(),
        "expires_at": request.expires_at.isoformat() if request.expires_at else None,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "reason": request.reason,
        "tags": dict(request.tags),
        "message": request.message,
        "answer_with": {
            "approval_id": request.approval_id,
            "decision": "approve | deny",
            "by": "who decides",
            "extra": "optional amount (default: max(estimated_extra, 20% of limit))",
            "reason": "optional text",
        },
    }
