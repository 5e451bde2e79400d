"""Deterministic alert ids: the same anomaly (kind, scope, window) always has the same id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from agent_finops.ledger import AlertKind

__all__ = ["alert_id"]


def alert_id(kind: AlertKind, scope: Mapping[str, str], start: datetime, end: datetime) -> str:
    """`<kind>-<digest>`: a digest of the kind, the scope (sorted) and the window in UTC.

    Every scan, in every process and after any restart, names an anomaly the same way, so
    `Ledger.add_alert` keeps it once.
    """
    key = json.dumps(
        [
            kind,
            sorted(scope.items()),
            start.astimezone(UTC).isoformat(),
            end.astimezone(UTC).isoformat(),
        ],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
