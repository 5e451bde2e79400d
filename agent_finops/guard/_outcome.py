"""How a run a policy stopped describes itself (JSON-ready, for state and for humans)."""

from __future__ import annotations

from typing import Any, Final

from agent_finops.exceptions import PolicyViolation

__all__ = ["STOPPED_KIND", "stop_payload"]

STOPPED_KIND: Final = "agent_finops.stopped"
"""`payload["kind"]` of the outcome of a run a cost policy stopped."""


def stop_payload(error: PolicyViolation) -> dict[str, Any]:
    """Why a run was stopped: the rule, scope, limit, observed value and message."""
    return {
        "kind": STOPPED_KIND,
        "status": "stopped",
        "reason": type(error).__name__,
        "rule_id": error.rule_id,
        "scope": dict(error.scope),
        "limit": None if error.limit is None else str(error.limit),
        "observed": None if error.observed is None else str(error.observed),
        "unit": error.unit,
        "trace_id": error.trace_id,
        "message": str(error),
    }
