"""`ApprovalAnswer`: a human's decision as it comes back to a paused run (validated)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from agent_finops.exceptions import ConfigurationError

__all__ = ["ApprovalAnswer", "parse_answer"]

_APPROVE = frozenset({"approve", "approved", "yes", "allow", "true"})
_DENY = frozenset({"deny", "denied", "no", "reject", "false"})
MAX_REASON = 2000


class ApprovalAnswer(BaseModel):
    """A decision on one approval request.

    The resume value of a paused run (`Command(resume=...)` in LangGraph), a console or a
    Slack click all become one of these. Accepted shapes: `True` / `False`,
    `"approve"` / `"deny"`, or a mapping
    `{"approval_id": "...", "decision": "approve" | "deny", "by": "alice",
    "extra": "2.50", "reason": "..."}`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: bool
    """True to approve, False to deny."""
    approval_id: str | None = None
    """The request this answers (None: the one the run is asking about)."""
    by: str = "resume"
    """Who decided, as the caller vouches for it (checked against the approvers list)."""
    extra: Decimal | None = None
    """Overspend to allow on the rule, in its unit (default: see `default_extra`)."""
    reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool | str):
            return {"decision": value}
        return value

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _APPROVE:
            return True
        if text in _DENY:
            return False
        raise ValueError('expected "approve" or "deny"')

    @field_validator("extra", mode="before")
    @classmethod
    def _extra(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool | float):
            raise ValueError("expected a decimal amount as text or int, not a float or bool")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ValueError("expected a decimal amount") from None
        if not amount.is_finite() or amount < 0 or amount > Decimal(10) ** 12:
            raise ValueError("expected a finite amount between 0 and 1e12")
        return amount

    @field_validator("by", "reason", "approval_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_REASON:
            raise ValueError(f"at most {MAX_REASON} characters")
        return value

    @property
    def approve(self) -> bool:
        """Whether this answer approves."""
        return self.decision


def parse_answer(value: Any, *, source: str = "resume value") -> ApprovalAnswer | None:
    """An `ApprovalAnswer` from a resume value; None when it carries no decision.

    Raises `ConfigurationError` naming the field and value when it is malformed.
    """
    if value is None:
        return None
    if isinstance(value, ApprovalAnswer):
        return value
    if isinstance(value, Mapping) and value.get("decision") is None:
        return None
    try:
        return ApprovalAnswer.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "resume"
        raise ConfigurationError(
            "bad approval answer",
            source=source,
            field=field,
            value=first.get("input", value),
            expected=first["msg"],
        ) from None
