"""`ApprovalAnswer`: a human's decision as it comes back to a paused run (validated)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent_finops.exceptions import ConfigurationError

__all__ = ["MAX_EXTRA", "ApprovalAnswer", "check_text", "parse_answer", "to_extra"]

_APPROVE = frozenset({"approve", "approved", "yes", "allow", "true"})
_DENY = frozenset({"deny", "denied", "no", "reject", "false"})
MAX_REASON = 2000
MAX_EXTRA: Final = Decimal(10) ** 12
"""Largest overspend an approval may allow (the same bound `ApprovalService.decide` keeps)."""
MAX_EXTRA_PLACES: Final = 18
"""Most decimal places of an extra: what every ledger backend stores exactly."""
_EXTRA_EXPECTED: Final = (
    f"a decimal amount between 0 and 1e12 with at most {MAX_EXTRA_PLACES} decimal places"
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_LINE: Final = re.compile(r"[\x00-\x1f\x7f]")


def to_extra(value: object) -> Decimal:
    """An approved extra from text, an int or a Decimal; `ValueError` says what was expected.

    Floats and bools are refused (inexact); so are NaN, infinities, negative amounts, amounts
    over 1e12 and more than 18 decimal places.
    """
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise ValueError(_EXTRA_EXPECTED + " (as text or an int, not a float or bool)")
    if isinstance(value, int) and value.bit_length() > 64:
        raise ValueError(_EXTRA_EXPECTED)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(_EXTRA_EXPECTED) from None
    if not amount.is_finite() or amount < 0 or amount > MAX_EXTRA:
        raise ValueError(_EXTRA_EXPECTED)
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if -(exponent + trailing) > MAX_EXTRA_PLACES:
        raise ValueError(_EXTRA_EXPECTED)
    return amount


def check_text(value: str, *, multiline: bool = False) -> str:
    """`value` if it is storable text: UTF-8 encodable, no NUL or control characters.

    Tabs are allowed; newlines only when `multiline`. Raises `ValueError` otherwise.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text encodable as UTF-8 (lone surrogate at {exc.start})") from None
    bad = (_CONTROL if multiline else _CONTROL_OR_LINE).search(value.replace("\t", " "))
    if bad is not None:
        raise ValueError(f"text without control characters ({bad.group()!r} at {bad.start()})")
    return value


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
        if not isinstance(value, str | int) or (isinstance(value, int) and abs(value) > 1):
            raise ValueError('expected "approve" or "deny"')
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
        return to_extra(value)

    @field_validator("by", "reason", "approval_id", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            if len(value) > MAX_REASON:
                raise ValueError(f"at most {MAX_REASON} characters")
            check_text(value, multiline=info.field_name == "reason")
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
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(_shown(p)) for p in first["loc"]) or "resume"
        raise ConfigurationError(
            "bad approval answer",
            source=source,
            field=field,
            value=_shown(first.get("input", value)),
            expected=first["msg"].removeprefix("Value error, ").removeprefix("expected "),
        ) from None


def _shown(value: object) -> object:
    """A bad value safe to show: repr of a huge int raises, long text is cut."""
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "..."
    if isinstance(value, bool | int | float | Decimal | bytes) or value is None:
        return value if len(repr(value)) <= 200 else f"<{type(value).__name__}>"
    return f"<{type(value).__name__}>"
