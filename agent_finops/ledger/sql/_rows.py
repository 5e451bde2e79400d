"""How records become rows of the hot tables and back (schema v7): what is stored once.

A tracked model call writes a cost event and, for its node, a span row; most of their bytes
were values the row already holds elsewhere. Since schema v7 they are stored once:

- an event's `span_id` equal to its `event_id` (a model call's own span) is stored as `''`,
  a span's `parent_span_id` equal to its `trace_id` (a node under its run) likewise;
  `relative` / `absolute` are exact both ways: a stored value that is empty or starts with
  `ESCAPE` is escaped by one `ESCAPE` (schema step 7 escapes older rows' such values);
- an event's standard tags are stored in their own columns only (they always were there,
  for rollups): its `tags` JSON holds the other tags (`{}` for most events), and reads put
  the two together again.

Moments of these tables are `CompactTime` (integer microseconds on SQLite).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_finops.attribution import STANDARD_TAGS
from agent_finops.ledger._records import CostEvent, SpanRecord
from agent_finops.ledger.sql._tables import cost_events, spans

__all__ = [
    "ESCAPE",
    "EVENT_COLUMNS",
    "SPAN_COLUMNS",
    "absolute",
    "event_from",
    "extra_tags",
    "relative",
    "span_from",
]

ESCAPE = "\x01"
"""Prefixed to a stored id that would otherwise read as 'the same as its base'."""

_STANDARD = frozenset(STANDARD_TAGS)

EVENT_COLUMNS = [
    *(cost_events.c[name] for name in CostEvent.__dataclass_fields__),
    *(cost_events.c[tag] for tag in STANDARD_TAGS),
]
"""What `event_from` reads: the event's fields and the standard tag columns."""
SPAN_COLUMNS = [spans.c[name] for name in SpanRecord.__dataclass_fields__ if name in spans.c]
"""What `span_from` reads (`on_event` is no column: a span row is never on its event)."""


def relative(value: str | None, base: str) -> str | None:
    """`value` as stored next to `base`: `''` if it is `base` (see the module docstring)."""
    if value is None:
        return None
    if value == base:
        return ""
    if not value or value[0] == ESCAPE:
        return ESCAPE + value
    return value


def absolute(stored: str | None, base: str) -> str | None:
    """The value `relative(value, base)` stored."""
    if stored is None:
        return None
    if not stored:
        return base
    if stored[0] == ESCAPE:
        return stored[1:]
    return stored


def extra_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The tags an event's JSON keeps: all but the standard ones (stored as columns)."""
    if _STANDARD.isdisjoint(tags):
        return dict(tags)
    return {k: v for k, v in tags.items() if k not in _STANDARD}


def event_from(row: Mapping[Any, Any]) -> CostEvent:
    """A cost event from its row (its columns by name, the standard tag columns included)."""
    values = dict(row)
    event_id = values["event_id"]
    values["span_id"] = absolute(values["span_id"], event_id)
    stored = values["tags"] or {}
    tags = {tag: value for tag in STANDARD_TAGS if (value := values.pop(tag, None)) is not None}
    for key, value in stored.items():  # a row of v6 or older still has them in its JSON too
        tags.setdefault(key, value)
    values["tags"] = tags
    return CostEvent(**values)


def span_from(row: Mapping[Any, Any]) -> SpanRecord:
    """A span from its row."""
    values = dict(row)
    values["parent_span_id"] = absolute(values["parent_span_id"], values["trace_id"])
    return SpanRecord(**values)
