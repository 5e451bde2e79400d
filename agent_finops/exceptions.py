"""Every exception and warning agent-finops raises, under one root.

```
FinOpsError
├── ConfigurationError          bad policy/pricing/config input; names file, field, value
│   ├── MissingDependencyError  an integration's framework is not installed
│   └── UnknownResumeTarget     a ledger row names a resume target the app did not register
├── PriceNotFound               strict pricing: a model or tool has no price
├── NotFound (LookupError)      no such record
│   ├── RunNotFound             no run/thread with this id (or an ambiguous prefix)
│   ├── ApprovalNotFound        no approval request with this id (or an ambiguous prefix)
│   ├── AlertNotFound           no alert with this id
│   └── LedgerNotFound          no ledger at this URL (opened with `create=False`)
├── AlreadyDecided              an approval request was decided before (first decision wins)
├── ApproverNotAllowed          someone not on the scope's approver list tried to decide
├── LedgerError                 a storage fault; `retryable` says whether a retry can help
├── HandlerError                strict mode: an integration's handler itself failed
└── PolicyViolation             a runtime outcome of policy enforcement
    ├── BudgetExceeded          a budget or cost cap would be crossed
    ├── RateLimitExceeded       too many calls / too much spend in a window
    ├── LoopDetected            repeated tool calls, model-call bursts, ping-pong
    ├── MissingTags             mandatory attribution tags are absent
    ├── ApprovalRequired        a pause rule tripped: a human must approve (a LangGraph
    │                           guard turns it into an interrupt)
    └── ApprovalDenied          a human (or an expiry) denied a paused run

FinOpsWarning (UserWarning)
├── UnpricedWarning             a call could not be priced; its cost is unknown, not $0
├── PolicyWarning               a policy file loads but a rule may not do what it says
└── HandlerWarning              the callback handler hit an internal error and carried on
```

Runtime outcomes carry their facts as attributes (`limit`, `observed`, `scope`, `trace_id`,
`rule_id`) as well as in the message. Every exception pickles (so it survives
multiprocessing and LangGraph checkpoint serialisation) without hand-kept field lists:
`FinOpsError.__reduce__` rebuilds the message and restores the instance's attributes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = [
    "AlreadyDecided",
    "ApprovalDenied",
    "AlertNotFound",
    "ApprovalNotFound",
    "ApprovalRequired",
    "ApproverNotAllowed",
    "BudgetExceeded",
    "ConfigurationError",
    "FinOpsError",
    "FinOpsWarning",
    "HandlerError",
    "HandlerWarning",
    "LedgerError",
    "LedgerNotFound",
    "LoopDetected",
    "MissingDependencyError",
    "MissingTags",
    "NotFound",
    "PolicyViolation",
    "PolicyWarning",
    "PriceNotFound",
    "RateLimitExceeded",
    "RunNotFound",
    "UnknownResumeTarget",
    "UnpricedWarning",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    error = cls.__new__(cls)
    error.args = args
    return error


class FinOpsError(Exception):
    """Root of every agent-finops exception."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The message as built, then every attribute: subclasses need no field lists.
        return (_rebuild, (type(self), self.args), dict(self.__dict__))


class ConfigurationError(FinOpsError, ValueError):
    """Configuration input is invalid: the message names where, what, and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        field: str | None = None,
        value: object = None,
        expected: str | None = None,
    ) -> None:
        self.source = source
        self.field = field
        self.value = value
        self.expected = expected
        parts = [message]
        if source:
            parts.insert(0, f"{source}:")
        if field:
            parts.append(f"(field {field!r}")
            parts[-1] += f", got {_shown(value)}" if value is not None else ""
            parts[-1] += f", expected {expected})" if expected else ")"
        super().__init__(" ".join(parts))


def _shown(value: object, limit: int = 200) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError, MemoryError):  # huge ints, deep nesting
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional integration was imported without its framework installed."""

    def __init__(self, message: str) -> None:
        ConfigurationError.__init__(self, message)


class UnknownResumeTarget(ConfigurationError):
    """An approval names a resume target this process did not register: nothing is imported."""

    def __init__(self, target: str | None, *, known: list[str] | None = None) -> None:
        self.target = target
        self.known = sorted(known or [])
        ConfigurationError.__init__(
            self,
            f"no registered resume target {target!r}; registered: "
            + (", ".join(self.known) or "none")
            + " (register it with ResumeTargets.register(name, fn) or --targets)",
            field="resume_target",
            value=target,
            expected="the name of a registered resume target",
        )


class PriceNotFound(FinOpsError, LookupError):
    """Raised in strict pricing mode when a model or tool has no known price."""

    def __init__(self, message: str, *, model: str | None = None, provider: str | None = None):
        super().__init__(message)
        self.model = model
        self.provider = provider


class NotFound(FinOpsError, LookupError):
    """No record with this id (or a prefix that matches several: see `candidates`)."""

    def __init__(self, message: str, *, key: str, candidates: list[str] | None = None) -> None:
        self.key = key
        self.candidates = list(candidates or [])
        if self.candidates:
            message += "; the prefix matches " + ", ".join(self.candidates[:10])
            message += " ..." if len(self.candidates) > 10 else ""
        super().__init__(message)


class RunNotFound(NotFound):
    """No run (trace) or thread with this id in the ledger."""


class ApprovalNotFound(NotFound):
    """No approval request with this id in the ledger."""


class AlertNotFound(NotFound):
    """No alert with this id in the ledger."""


class LedgerNotFound(NotFound):
    """No ledger at this URL: opened with `create=False` (read commands), nothing was created.

    `key` is the URL (password hidden) or the SQLite file path.
    """


class AlreadyDecided(FinOpsError):
    """An approval request was already decided (or expired); the first decision stands."""

    def __init__(
        self, approval_id: str, *, status: str, decided_by: str | None, decided_at: Any = None
    ) -> None:
        self.approval_id = approval_id
        self.status = status
        self.decided_by = decided_by
        self.decided_at = decided_at
        super().__init__(
            f"approval {approval_id} is already {status}"
            + (f" by {decided_by}" if decided_by else "")
            + "; not changed"
        )


class ApproverNotAllowed(FinOpsError):
    """The identity that tried to decide is not on the approver list for the request's scope."""

    def __init__(self, approval_id: str, *, approver: str, scope: dict[str, str]) -> None:
        self.approval_id = approval_id
        self.approver = approver
        self.scope = dict(scope)
        where = ", ".join(f"{k}={v}" for k, v in scope.items()) or "all calls"
        super().__init__(
            f"{approver} may not decide approval {approval_id} ({where}): not on the "
            "approvers list for this scope; nothing was changed"
        )


class LedgerError(FinOpsError):
    """The ledger could not be read or written (a storage fault, never a missing record).

    `retryable` is False when the database refused the data itself (a value too long, a
    constraint): writing it again cannot succeed. True for outages, locks and the like.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HandlerError(FinOpsError):
    """An integration's handler failed internally (raised only in strict mode)."""


class PolicyViolation(FinOpsError):
    """A policy rule stopped (or would stop) a call. Facts are attributes as well as text."""

    def __init__(
        self,
        message: str,
        *,
        rule_id: str | None = None,
        scope: dict[str, str] | None = None,
        limit: Decimal | int | None = None,
        observed: Decimal | int | None = None,
        trace_id: str | None = None,
        unit: str = "usd",
    ) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.scope = dict(scope or {})
        self.limit = limit
        self.observed = observed
        self.trace_id = trace_id
        self.unit = unit


class BudgetExceeded(PolicyViolation):
    """A budget or cost cap would be crossed by the next call."""


class RateLimitExceeded(PolicyViolation):
    """Calls or spend in a time window exceeded a rate limit."""


class LoopDetected(PolicyViolation):
    """The run is looping: repeated identical tool calls, call bursts or agent ping-pong."""


class MissingTags(PolicyViolation):
    """Mandatory attribution tags are missing; raised before any token is sent."""

    def __init__(self, message: str, *, missing: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing = list(missing or [])


class ApprovalRequired(PolicyViolation):
    """A `pause` rule tripped; the approval request `approval_id` awaits a human decision.

    Inside a guarded LangGraph node this becomes an `interrupt()` (the run is checkpointed
    and resumes on the decision); without a guard it stops the run like a deny.
    """

    def __init__(
        self,
        message: str,
        *,
        approval_id: str,
        estimate: Decimal | None = None,
        thread_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.approval_id = approval_id
        self.estimate = estimate
        self.thread_id = thread_id


class ApprovalDenied(PolicyViolation):
    """A human (or an expiry) denied the approval a paused run asked for."""


class FinOpsWarning(UserWarning):
    """Root of agent-finops warnings."""


class UnpricedWarning(FinOpsWarning):
    """A model or tool call could not be priced; it is recorded as *unknown*, not $0."""


class PolicyWarning(FinOpsWarning):
    """A policy loads, but a rule may not do what it seems to (e.g. a task cap with no task)."""


class HandlerWarning(FinOpsWarning):
    """The callback handler hit an internal error and let the user's run carry on."""
