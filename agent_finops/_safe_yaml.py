"""Bounded YAML reading for configuration files: size, depth, aliases and expansion capped.

`yaml.safe_load` is safe from code execution but not from hostile or broken input: a
non-UTF-8 file raises `UnicodeDecodeError`, deep nesting `RecursionError`, and an alias bomb
(a few lines of anchors referring to anchors) expands into millions of nodes that
validation and error messages then walk. `load_yaml` refuses all of these, and keys repeated
in one mapping, with a `ConfigurationError` naming the source, before anything is built.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from agent_finops.exceptions import ConfigurationError

__all__ = [
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "load_yaml",
    "read_yaml_file",
]

MAX_YAML_BYTES = 1 << 20
"""A configuration file larger than 1 MiB is refused unread."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and sequences accepted."""
MAX_YAML_ALIASES = 100
"""Most `*alias` references accepted in one document."""
MAX_YAML_NODES = 100_000
"""Most nodes the document may have once every alias is expanded."""


class _Refused(yaml.YAMLError):
    """A limit of the bounded loader was hit (never a parse error of the text itself)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts depth and aliases while composing, and refuses repeated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Refused(f"more than {MAX_YAML_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise _Refused(
                        f"key repeated on line {key_node.start_mark.line + 1}",
                        field=str(key)[:100],
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in `node` with every alias expanded; shared nodes are sized once (memo)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_YAML_NODES + 1  # a cycle (recursive alias) counts as too big
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo)
            if size > MAX_YAML_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, memo) + _expanded_size(value, memo)
            if size > MAX_YAML_NODES:
                break
    memo[id(node)] = size
    return size


def load_yaml(data: str | bytes, *, source: str) -> Any:
    """Parse one YAML document within the limits above; None for an empty document.

    Bytes must be UTF-8. Errors are `ConfigurationError` with `source` in the message.
    """
    if len(data) > MAX_YAML_BYTES:
        raise ConfigurationError(
            f"file too large ({len(data)} bytes, at most {MAX_YAML_BYTES})", source=source
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"not UTF-8 text (invalid byte at offset {exc.start})", source=source
            ) from None
    else:
        text = data
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise _Refused(f"more than {MAX_YAML_NODES} nodes once aliases are expanded")
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigurationError(exc.message, source=source, field=exc.field) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"invalid YAML: {str(exc)[:500]}", source=source) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # Constructors of the safe tags (a timestamp out of range, ...): bad input, said so.
        message = f"invalid YAML value ({type(exc).__name__}: {str(exc)[:200]})"
        raise ConfigurationError(message, source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file within the limits (the file is not read past them)."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read file: {exc.strerror or exc}", source=source) from exc
    return load_yaml(data, source=source)
