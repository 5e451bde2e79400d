"""Every exception and warning agent-finops raises, under one root.

```
FinOpsError
├── ConfigurationError          bad policy/pricing/config input; names file, field, value
│   └── MissingDependencyError  an integration's framework is not installed
├── PriceNotFound               strict pricing: a model or tool has no price
├── LedgerError                 the ledger cannot be read or written
├── HandlerError                strict mode: the callback handler itself failed
└── PolicyViolation             a runtime outcome of policy enforcement
    ├── BudgetExceeded          a budget or cost cap would be crossed
    ├── RateLimitExceeded       too many calls / too much spend in a window
    ├── LoopDetected            repeated tool calls, model-call bursts, ping-pong
    ├── MissingTags             mandatory attribution tags are absent
    ├── ApprovalRequired        a pause rule tripped: a human must approve (a LangGraph
    │                           guard turns it into an interrupt)
    └── ApprovalDenied          a human denied a paused run

FinOpsWarning (UserWarning)
├── UnpricedWarning             a call could not be priced; its cost is unknown, not $0
└── HandlerWarning              the callback handler hit an internal error and carried on
```

Runtime outcomes carry their facts as attributes (`limit`, `observed`, `scope`, `trace_id`,
`rule_id`) as well as in the message, and every exception pickles (so it survives
multiprocessing and LangGraph checkpoint serialisation).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = [
    "ApprovalDenied",
    "ApprovalRequired",
    "BudgetExceeded",
    "ConfigurationError",
    "FinOpsError",
    "FinOpsWarning",
    "HandlerError",
    "HandlerWarning",
    "LedgerError",
    "LoopDetected",
    "MissingDependencyError",
    "MissingTags",
    "PolicyViolation",
    "PriceNotFound",
    "RateLimitExceeded",
    "UnpricedWarning",
]


class FinOpsError(Exception):
    """Root of every agent-finops exception."""


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
            parts[-1] += f", got {value!r}" if value is not None else ""
            parts[-1] += f", expected {expected})" if expected else ")"
        super().__init__(" ".join(parts))
        self._message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_configuration_error,
            (type(self), self._message, self.source, self.field, self.value, self.expected),
        )


def _rebuild_configuration_error(
    cls: type[ConfigurationError],
    message: str,
    source: str | None,
    field: str | None,
    value: object,
    expected: str | None,
) -> ConfigurationError:
    return cls(message, source=source, field=field, value=value, expected=expected)


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional integration was imported without its framework installed."""

    def __init__(self, message: str) -> None:
        ConfigurationError.__init__(self, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._message,))


class PriceNotFound(FinOpsError, LookupError):
    """Raised in strict pricing mode when a model or tool has no known price."""

    def __init__(self, message: str, *, model: str | None = None, provider: str | None = None):
        super().__init__(message)
        self.model = model
        self.provider = provider

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_kw,
            (type(self), self.args, {"model": self.model, "provider": self.provider}),
        )


class LedgerError(FinOpsError):
    """The ledger could not be read or written.

    `retryable` is False when the database refused the data itself (a value too long, a
    constraint): writing it again cannot succeed. True for outages, locks and the like.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_kw, (type(self), self.args, {"retryable": self.retryable}))


class HandlerError(FinOpsError):
    """The callback handler failed internally (raised only in strict mode)."""


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

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "rule_id": self.rule_id,
            "scope": self.scope,
            "limit": self.limit,
            "observed": self.observed,
            "trace_id": self.trace_id,
            "unit": self.unit,
        }
        return (_rebuild_kw, (type(self), self.args, kwargs))


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

    def __reduce__(self) -> tuple[Any, ...]:
        fn, (cls, args, kwargs) = super().__reduce__()
        return (fn, (cls, args, {**kwargs, "missing": self.missing}))


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

    def __reduce__(self) -> tuple[Any, ...]:
        fn, (cls, args, kwargs) = super().__reduce__()
        extra = {"approval_id": self.approval_id, "estimate": self.estimate}
        return (fn, (cls, args, {**kwargs, **extra, "thread_id": self.thread_id}))


class ApprovalDenied(PolicyViolation):
    """A human (or a timeout) denied the approval a paused run asked for."""


def _rebuild_kw(cls: type[Exception], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception:
    return cls(*args, **kwargs)


class FinOpsWarning(UserWarning):
    """Root of agent-finops warnings."""


class UnpricedWarning(FinOpsWarning):
    """A model or tool call could not be priced; it is recorded as *unknown*, not $0."""


class HandlerWarning(FinOpsWarning):
    """The callback handler hit an internal error and let the user's run carry on."""
