"""Reading policy files: YAML in, a validated `Policy` out, or an error that says exactly why.

Every error is a `ConfigurationError` naming the file, the rule id (when the problem is
inside a rule that has one), the field path, the bad value and what was expected:

```
policy.yaml: rule 'support-daily': invalid value (field 'budgets[0].limit', got '-3',
expected a positive decimal)
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agent_finops._safe_yaml import MAX_YAML_BYTES, load_yaml
from agent_finops.exceptions import ConfigurationError
from agent_finops.policy._model import (
    Budget,
    MandatoryTags,
    ModelCallBurstRule,
    PingPongRule,
    Policy,
    RateLimit,
    RepeatedToolCallRule,
)

__all__ = ["load_policy", "policy_from_mapping"]

_SECTIONS: Final[Mapping[str, type[BaseModel]]] = {
    "budgets": Budget,
    "rate_limits": RateLimit,
    "mandatory_tags": MandatoryTags,
}
_LOOP_KINDS: Final[Mapping[str, type[BaseModel]]] = {
    "repeated_tool_call": RepeatedToolCallRule,
    "model_call_burst": ModelCallBurstRule,
    "ping_pong": PingPongRule,
}
_RULE_SECTIONS: Final = ("budgets", "rate_limits", "loops")
_SIMPLE_EXPECTED: Final[Mapping[str, str]] = {
    "missing": "this key to be set",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "decimal_parsing": 'a decimal number (quote money: "25.00")',
    "decimal_type": 'a decimal number (quote money: "25.00")',
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}
_MESSAGES: Final[Mapping[str, str]] = {
    "missing": "missing required key",
    "extra_forbidden": "unknown key",
    "duplicate_rule_id": "duplicate rule id",
    "union_tag_invalid": "unknown loop kind",
    "union_tag_not_found": "missing loop kind",
}


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML file.

    Raises `ConfigurationError` when the file cannot be read, is not UTF-8 or not valid YAML
    (a key repeated in one mapping counts as invalid: YAML would silently keep only the
    last), is over the bounded loader's limits (1 MiB, 32 levels of nesting, 100 aliases,
    100,000 nodes once aliases are expanded: see `agent_finops._safe_yaml`), or does not
    describe a valid policy.
    """
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)  # never read past the limit
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read policy file: {exc.strerror or exc}", source=source
        ) from exc
    data = load_yaml(raw, source=source)
    return policy_from_mapping({} if data is None else data, source=source)


def policy_from_mapping(data: Any, *, source: str = "policy") -> Policy:
    """Validate parsed data as a `Policy`; `source` names it in error messages."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _configuration_error(exc.errors(include_url=False)[0], data, source) from exc


def _configuration_error(err: ErrorDetails, data: Any, source: str) -> ConfigurationError:
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    loc = err["loc"]
    field, rule_id = _locate(data, loc)
    value: object = err.get("input")
    if kind.startswith("union_tag_"):
        field = f"{field}.kind"
        value = ctx.get("tag")
    if "subfield" in ctx:
        field = f"{field}.{ctx['subfield']}"
    field = str(ctx.get("field", field))
    value = ctx.get("value", value)
    rule_id = ctx.get("rule_id", rule_id)
    if kind == "missing" or isinstance(value, Mapping):
        value = None
    value = _printable(value)
    message = _MESSAGES.get(kind, "invalid value")
    if rule_id is not None:
        message = f"rule {rule_id!r}: {message}"
    return ConfigurationError(
        message,
        source=source,
        field=field or "<policy>",
        value=value,
        expected=_expected(kind, ctx, loc, err["msg"]),
    )


def _locate(data: Any, loc: tuple[str | int, ...]) -> tuple[str, str | None]:
    """Field path as written in the file (`budgets[0].limit`) and the enclosing rule's id."""
    path = ""
    rule_id: str | None = None
    node: Any = data
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            in_range = isinstance(node, Sequence) and not isinstance(node, str)
            node = node[part] if in_range and 0 <= part < len(node) else None
            if depth == 1 and loc[0] in _RULE_SECTIONS and isinstance(node, Mapping):
                found = node.get("id")
                rule_id = found if isinstance(found, str) else None
        elif isinstance(node, Mapping) and part not in node and node.get("kind") == part:
            continue  # pydantic puts the discriminator's value in the location
        else:
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return path, rule_id


def _expected(kind: str, ctx: Mapping[str, Any], loc: tuple[str | int, ...], msg: str) -> str:
    if kind == "literal_error":
        options = str(ctx["expected"])
        return f"one of {options}" if " or " in options else options
    if "expected" in ctx:
        return str(ctx["expected"])
    if kind in _SIMPLE_EXPECTED:
        return _SIMPLE_EXPECTED[kind]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is not None:
            keys = (info.alias or name for name, info in model.model_fields.items())
            return "one of the keys " + ", ".join(keys)
        return "no such key"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return "a loop kind: " + ", ".join(repr(k) for k in _LOOP_KINDS)
    if kind == "greater_than":
        return f"a number greater than {ctx['gt']}"
    if kind == "less_than_equal":
        return f"a number of at most {ctx['le']}"
    if kind == "greater_than_equal":
        return f"a number of at least {ctx['ge']}"
    if kind == "too_short":
        return f"at least {ctx['min_length']} item(s)"
    return msg[:1].lower() + msg[1:]


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    if not loc:
        return Policy
    if len(loc) == 2 and isinstance(loc[0], str):
        return _SECTIONS.get(loc[0])
    if len(loc) == 3 and loc[0] == "loops" and isinstance(loc[2], str):
        return _LOOP_KINDS.get(loc[2])
    return None


def _printable(value: object) -> object:
    """`value` if its repr is short and safe; else a stand-in naming its type.

    A deeply nested list overflows `repr` and a huge int refuses to print: neither may hide
    the real error behind a `RecursionError` or `ValueError`.
    """
    if isinstance(value, str):
        return value  # repr (in the message) escapes lone surrogates; long text is cut there
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"<int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"<{type(value).__name__}>"
    return value if len(text) <= 200 else f"<{type(value).__name__} of {len(text)} characters>"
