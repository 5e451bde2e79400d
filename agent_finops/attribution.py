"""Attribution tags: who and what a dollar belongs to, inherited by every nested call.

Tags are given once per run (on the handler, with `attribute(...)`, or in a LangGraph
config's `metadata["finops"]`) and flow down the span tree. `attribute()` uses a
`ContextVar`, so tags also follow asyncio tasks and threads started with a copied context
(LangGraph's executor copies it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from agent_finops.exceptions import ConfigurationError

__all__ = [
    "STANDARD_TAGS",
    "Tags",
    "attribute",
    "current_tags",
    "merge_tags",
    "validate_tag_key",
    "validate_tags",
]

STANDARD_TAGS: Final = (
    "team",
    "project",
    "cost_center",
    "agent",
    "task",
    "user",
    "tenant",
    "environment",
)
"""Tags every report and rollup knows by name; any other key is a free-form tag."""

Tags = Mapping[str, str]

_TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_MAX_VALUE = 256
_MAX_INT_DIGITS = _MAX_VALUE  # an int tag longer than a value may be is refused unprinted
_EMPTY: Final[Mapping[str, str]] = {}
_current: ContextVar[Mapping[str, str]] = ContextVar("agent_finops_tags", default=_EMPTY)


def validate_tags(tags: Mapping[str, object] | None, *, source: str = "tags") -> dict[str, str]:
    """Check tag keys and values; return a plain `dict[str, str]`.

    Values must be strings (numbers are accepted and turned into strings) of at most 256
    characters, encodable as UTF-8 (no lone surrogates) and without NUL or other control
    characters except tab; None drops the tag, which lets a nested scope clear an inherited
    tag. Keys are 1-64 characters of letters, digits, `_`, `.`, `:` and `-`. Anything else
    raises `ConfigurationError` naming the tag and the value, before anything is recorded.
    """
    if not tags:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigurationError(
            "tags must be a mapping",
            source=source,
            field="tags",
            value=_shown(tags),
            expected="dict",
        )
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise ConfigurationError(
                "invalid tag key",
                source=source,
                field="tags",
                value=_shown(key),
                expected="a name of letters, digits, '_', '.', ':' or '-' (max 64)",
            )
        if value is None:
            continue
        out[key] = _tag_value(key, value, source)
    return out


def validate_tag_key(key: object, *, source: str = "tags") -> str:
    """Check one tag name (as `validate_tags` does); `ConfigurationError` naming it if bad."""
    if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
        raise ConfigurationError(
            "invalid tag name",
            source=source,
            field=source,
            value=_shown(key),
            expected="a name of letters, digits, '_', '.', ':' or '-' (max 64)",
        )
    return key


def _tag_value(key: str, value: object, source: str) -> str:
    field = f"tags.{key}"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigurationError(
            "invalid tag value",
            source=source,
            field=field,
            value=_shown(value),
            expected="a string",
        )
    if isinstance(value, int) and value.bit_length() > _MAX_INT_DIGITS * 10 // 3:
        raise ConfigurationError(
            "tag value too long",
            source=source,
            field=field,
            value=f"<int of {value.bit_length()} bits>",
            expected=f"at most {_MAX_VALUE} characters",
        )
    text = str(value)
    if len(text) > _MAX_VALUE:
        raise ConfigurationError(
            "tag value too long",
            source=source,
            field=field,
            value=text[:40] + "...",
            expected=f"at most {_MAX_VALUE} characters",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"tag value is not valid text (lone surrogate at position {exc.start})",
            source=source,
            field=field,
            value=text,
            expected="text encodable as UTF-8",
        ) from None
    bad = _CONTROL.search(text)
    if bad is not None:
        raise ConfigurationError(
            f"tag value has a control character {bad.group()!r} at position {bad.start()}",
            source=source,
            field=field,
            value=text,
            expected="text without NUL or other control characters",
        )
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _shown(value: object) -> object:
    """`value` safe to put in an error message (repr of a huge int raises; cut long text)."""
    if isinstance(value, str):
        return value if len(value) <= 100 else value[:100] + "..."
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, int | float | bool) or value is None:
        return value
    return f"<{type(value).__name__}>"


def merge_tags(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge tag layers, later layers winning."""
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


def current_tags() -> Mapping[str, str]:
    """Tags set by the enclosing `attribute()` blocks in this context."""
    return _current.get()


@contextmanager
def attribute(**tags: str | None) -> Iterator[Mapping[str, str]]:
    """Attach tags to every call made inside the block (threads and tasks included).

    ```python
    with attribute(team="support", task="ticket-42"):
        graph.invoke(inputs, config={"callbacks": [handler]})
    ```
    """
    parent = _current.get()
    clean = validate_tags(tags, source="attribute()")
    merged = merge_tags(parent, clean)
    for key, value in tags.items():
        if value is None:
            merged.pop(key, None)
    token = _current.set(merged)
    try:
        yield merged
    finally:
        _current.reset(token)
