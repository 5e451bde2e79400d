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

__all__ = ["STANDARD_TAGS", "Tags", "attribute", "current_tags", "merge_tags", "validate_tags"]

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

_TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
_MAX_VALUE = 256
_EMPTY: Final[Mapping[str, str]] = {}
_current: ContextVar[Mapping[str, str]] = ContextVar("agent_finops_tags", default=_EMPTY)


def validate_tags(tags: Mapping[str, object] | None, *, source: str = "tags") -> dict[str, str]:
    """Check tag keys and values; return a plain `dict[str, str]`.

    Values must be strings (numbers are accepted and turned into strings); None drops the
    tag, which lets a nested scope clear an inherited tag.
    """
    if not tags:
        return {}
    if not isinstance(tags, Mapping):
        raise ConfigurationError(
            "tags must be a mapping", source=source, field="tags", value=tags, expected="dict"
        )
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not _TAG_KEY.match(key):
            raise ConfigurationError(
                "invalid tag key",
                source=source,
                field="tags",
                value=key,
                expected="a name of letters, digits, '_', '.', ':' or '-' (max 64)",
            )
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigurationError(
                "invalid tag value",
                source=source,
                field=f"tags.{key}",
                value=value,
                expected="a string",
            )
        text = str(value)
        if len(text) > _MAX_VALUE:
            raise ConfigurationError(
                "tag value too long",
                source=source,
                field=f"tags.{key}",
                value=text[:40] + "...",
                expected=f"at most {_MAX_VALUE} characters",
            )
        out[key] = text
    return out


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
