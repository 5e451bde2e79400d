"""An alert as JSON: what `agent-finops alerts --json` prints and reports embed."""

from __future__ import annotations

from typing import Any

from agent_finops.ledger import AlertRecord

__all__ = ["alert_data"]


def alert_data(alert: AlertRecord) -> dict[str, Any]:
    """The alert as JSON-ready values (amounts as exact decimal strings, times ISO 8601)."""
    return {
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "scope": dict(alert.scope),
        "window_start": alert.window_start.isoformat(),
        "window_end": alert.window_end.isoformat(),
        "created_at": alert.created_at.isoformat(),
        "observed": None if alert.observed is None else format(alert.observed, "f"),
        "expected": None if alert.expected is None else format(alert.expected, "f"),
        "message": alert.message,
        "drivers": [dict(d) for d in alert.drivers],
        "delivered": list(alert.delivered),
    }
