"""How a crew a cost policy ended reaches the caller: typed `HookAborted`s with the outcome.

CrewAI stops a crew only for an exception deriving from `HookAborted` raised in a hook (any
other exception is swallowed: fail-open). Both outcomes below derive from it, so
`crew.kickoff()` raises them as they are, and from `FinOpsError`, so one `except` catches
every agent-finops outcome:

```
HookAborted (crewai) ─┐
FinOpsError ──────────┴── CrewStopped   a deny: the crew ended, finished tasks kept
                          └── CrewPaused  a pause nobody decided in time: resumable
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crewai.hooks import HookAborted

from agent_finops.approvals import approval_payload
from agent_finops.exceptions import FinOpsError, PolicyViolation
from agent_finops.guard import stop_payload
from agent_finops.ledger import ApprovalRecord

__all__ = ["CrewPaused", "CrewStopped"]

SOURCE = "agent-finops"
"""`HookAborted.source` of every abort this package raises."""


class CrewStopped(HookAborted, FinOpsError):
    """A cost policy stopped the crew (or flow) before a model call was sent.

    Attributes:
        error: the `PolicyViolation` (`BudgetExceeded`, `LoopDetected`, `MissingTags`,
            `RateLimitExceeded`, `ApprovalDenied`...) with its rule, limit and observed value.
        outcome: the same facts as JSON-ready data (`kind == "agent_finops.stopped"`).
        outputs: the `TaskOutput`s of the tasks that had finished, in task order.
    """

    def __init__(self, error: PolicyViolation, *, outputs: Sequence[Any] = ()) -> None:
        """Stop because of `error`, keeping the finished tasks' `outputs`."""
        HookAborted.__init__(self, f"stopped by cost policy: {error}", source=SOURCE)
        self.error = error
        self.outcome: dict[str, Any] = stop_payload(error)
        self.outputs: list[Any] = list(outputs)


class CrewPaused(CrewStopped):
    """A pause rule tripped and nobody decided within the wait: the crew ended, resumable.

    The approval request stays pending in the ledger. Decide it (console, Slack,
    `ApprovalService.decide`) and resume the crew from its checkpoint
    (`Crew.from_checkpoint(...)`, or the Flow from its persistence): the resumed run takes
    the decision up at its first model call.

    Attributes:
        approval: the pending `ApprovalRecord`.
        payload: the request as JSON-ready data (`kind == "agent_finops.approval"`).
    """

    def __init__(
        self,
        error: PolicyViolation,
        approval: ApprovalRecord,
        *,
        outputs: Sequence[Any] = (),
    ) -> None:
        """Pause on `approval` (`error` is the `ApprovalRequired` that filed it)."""
        super().__init__(error, outputs=outputs)
        HookAborted.__init__(
            self, f"paused for approval {approval.approval_id}: {approval.message}", SOURCE
        )
        self.approval = approval
        self.payload: dict[str, Any] = approval_payload(approval)

    @property
    def approval_id(self) -> str:
        """The pending request's id."""
        return self.approval.approval_id

    @property
    def thread_id(self) -> str | None:
        """The run's resume key (the crew's first kickoff id, or the Flow's state id)."""
        return self.approval.thread_id
