"""`ApprovalChannel`: where approval requests are announced and decisions come from.

The approval service notifies every channel when a request opens, is decided or expires,
and when a budget threshold is crossed. A channel that carries decisions back (the
console, Slack buttons) calls `ApprovalService.decide(...)` with the identity it knows.
Channels are called on the thread that paused or decided: do network I/O in the
background, and never raise for a delivery failure (the service logs it; the request
stays pending and visible in `agent-finops approvals list`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

from agent_finops.ledger import ApprovalRecord

__all__ = ["ApprovalChannel", "ConsoleChannel", "ThresholdAlert"]


@dataclass(frozen=True, slots=True)
class ThresholdAlert:
    """A budget bucket's use crossed one of its configured thresholds (e.g. 80%)."""

    rule_id: str
    counter_key: str
    """The bucket (rule, scope and period window): an alert is sent once per bucket and
    threshold."""
    percent: Decimal
    used: Decimal
    limit: Decimal
    unit: str
    trace_id: str
    scope: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class ApprovalChannel:
    """Base class of approval channels; every notification is a no-op by default."""

    name: str = "channel"
    """Short name, used in logs and in approver ids (`console`, `slack`)."""

    def request_opened(self, request: ApprovalRecord) -> None:
        """A run paused and asks for a decision."""

    def request_decided(self, request: ApprovalRecord) -> None:
        """A request was approved or denied (by anyone, through any channel)."""

    def request_expired(self, request: ApprovalRecord) -> None:
        """A request expired undecided and got its configured outcome."""

    def threshold_crossed(self, alert: ThresholdAlert) -> None:
        """A budget crossed a threshold."""


class ConsoleChannel(ApprovalChannel):
    """Prints one line per event (default: to stderr); decisions come from the CLI."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        """Write to `stream` (default: `sys.stderr` at the time of writing)."""
        self._stream = stream

    def _say(self, text: str) -> None:
        print(f"[agent-finops] {text}", file=self._stream or sys.stderr, flush=True)

    def request_opened(self, request: ApprovalRecord) -> None:
        """Say what is paused and how to decide it."""
        self._say(
            f"approval {request.approval_id} needed: {request.message} "
            f"(agent-finops approvals approve|deny {request.approval_id})"
        )

    def request_decided(self, request: ApprovalRecord) -> None:
        """Say who decided."""
        extra = f", extra {request.extra} {request.unit}" if request.extra is not None else ""
        self._say(f"approval {request.approval_id} {request.status} by {request.decided_by}{extra}")

    def request_expired(self, request: ApprovalRecord) -> None:
        """Say it expired and what that meant."""
        self._say(f"approval {request.approval_id} expired undecided: {request.status}")

    def threshold_crossed(self, alert: ThresholdAlert) -> None:
        """Say how full the budget is."""
        self._say(
            f"budget {alert.rule_id} at {alert.percent}%: {alert.used} of {alert.limit} "
            f"{alert.unit} ({alert.counter_key})"
        )
