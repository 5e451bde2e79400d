"""General-ledger codes for exported costs: a YAML mapping from tags and buckets to a code.

    version: 1
    default: "6999"               # events no mapping matches (required: nothing is uncoded)
    mappings:                     # first match wins, in file order
      - match: {cost_center: cc-100}
        bucket: [tokens, overhead]  # optional: only these cost buckets
        code: "6110"

Loaded like the policy file: bounded YAML, unknown keys refused, every error a
`ConfigurationError` naming the file, the field, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent_finops._safe_yaml import read_yaml_file
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import CostBucket

__all__ = ["GLMapping", "GLRule", "load_gl_mapping"]

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
TagValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GLRule(_Strict):
    """Events whose tags match (each key one of its values) and bucket is listed get `code`."""

    match: dict[str, TagValue | list[TagValue]] = Field(default_factory=dict, max_length=32)
    bucket: list[CostBucket] | None = None
    code: Code

    def matches(self, tags: Mapping[str, str], bucket: str) -> bool:
        """Whether an event with these tags and bucket gets this code."""
        if self.bucket is not None and bucket not in self.bucket:
            return False
        for key, wanted in self.match.items():
            have = tags.get(key)
            if have is None or (have != wanted if isinstance(wanted, str) else have not in wanted):
                return False
        return True


class GLMapping(_Strict):
    """GL codes by tags and bucket, with a default for everything else."""

    version: Literal[1] = 1
    default: Code
    mappings: list[GLRule] = Field(default_factory=list, max_length=10_000)

    def code_for(self, tags: Mapping[str, str], bucket: str) -> str:
        """The code of the first mapping that matches, else the default."""
        for rule in self.mappings:
            if rule.matches(tags, bucket):
                return rule.code
        return self.default

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "gl mapping") -> GLMapping:
        """Validate parsed YAML; only `ConfigurationError` escapes."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_context=False)[0]
            raise ConfigurationError(
                err["msg"][:300],
                source=source,
                field=".".join(str(p)[:64] for p in err["loc"]) or None,
                value=repr(err.get("input"))[:200],
                expected=err["type"],
            ) from None


def load_gl_mapping(path: str | Path) -> GLMapping:
    """Load a GL mapping file (see the module docs for the format)."""
    data = read_yaml_file(path)
    return GLMapping.from_mapping({} if data is None else data, source=str(path))
