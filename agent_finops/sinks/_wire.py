"""A `Records` group as bytes and back: what the process writer sends its child.

`encode` runs on the emitting thread for every group, so it is generated per record class:
one function reads every field in order, turning a datetime into integer microseconds
since the epoch and a Decimal into its exact text, and `marshal` packs the tuples (a
pickle of the same group costs several times more, mostly for the datetimes). A group
`marshal` cannot take (a value of a type the fast path does not know) is pickled instead;
the first byte says which. `decode` gives back records equal field by field (datetimes
come back in UTC, the same instant).
"""

from __future__ import annotations

import marshal
import pickle
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from agent_finops.exceptions import LedgerError
from agent_finops.ledger import CostEvent, DecisionRecord, LeaseCharge, RunRecord, SpanRecord
from agent_finops.sinks._base import Records

__all__ = ["decode", "encode"]

_KINDS: Final = (
    ("runs", RunRecord),
    ("spans", SpanRecord),
    ("events", CostEvent),
    ("decisions", DecisionRecord),
    ("charges", LeaseCharge),
)
_FAST: Final = b"M"
_PICKLED: Final = b"P"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _conversion(annotation: object) -> str:
    text = str(annotation)
    if "datetime" in text:
        return "datetime"
    if "Decimal" in text:
        return "Decimal"
    return ""


def _codec(cls: type) -> tuple[Callable[[Any], tuple[Any, ...]], Callable[[tuple[Any, ...]], Any]]:
    """Generated `(values of a record, record from values)` for one record class."""
    reads, builds = [], []
    for n, f in enumerate(fields(cls)):
        kind = _conversion(f.type)
        value = f"r.{f.name}"
        if kind == "datetime":
            reads.append(f"None if {value} is None else ({value} - EPOCH) // US")
            builds.append(f"{f.name}=None if v[{n}] is None else EPOCH + US * v[{n}]")
        elif kind == "Decimal":
            reads.append(f"None if {value} is None else str({value})")
            builds.append(f"{f.name}=None if v[{n}] is None else Decimal(v[{n}])")
        else:
            reads.append(value)
            builds.append(f"{f.name}=v[{n}]")
    scope: dict[str, Any] = {"EPOCH": _EPOCH, "US": _MICROSECOND, "Decimal": Decimal, "cls": cls}
    exec(
        f"def read(r):\n    return ({', '.join(reads)},)\n"
        f"def build(v):\n    return cls({', '.join(builds)})\n",
        scope,
    )
    return scope["read"], scope["build"]


_CODECS: Final = {cls: _codec(cls) for _, cls in _KINDS}
_READS: Final = tuple(_CODECS[cls][0] for _, cls in _KINDS)
_BUILDS: Final = tuple((kind, _CODECS[cls][1]) for kind, cls in _KINDS)


def encode(records: Records) -> bytes:
    """`records` as bytes (`decode` gives them back)."""
    groups = (records.runs, records.spans, records.events, records.decisions, records.charges)
    try:
        flat = tuple(
            tuple(map(read, group)) if group else ()
            for read, group in zip(_READS, groups, strict=True)
        )
    except (TypeError, ValueError, AttributeError):  # a naive datetime, a non-Decimal...
        return _PICKLED + pickle.dumps(records, protocol=5)
    try:
        return _FAST + marshal.dumps(flat)
    except ValueError:  # a subclass of str or int (a StrEnum tag key): as the plain value
        try:
            return _FAST + marshal.dumps(_plain(flat))
        except ValueError:
            return _PICKLED + pickle.dumps(records, protocol=5)


def _plain(value: Any) -> Any:
    """`value` with str, int and float subclasses (enums...) as the plain builtin values."""
    kind = type(value)
    if kind is tuple:
        return tuple(_plain(v) for v in value)
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is bool or value is None:
        return value
    if isinstance(value, str) and kind is not str:
        return str.__str__(value)
    if isinstance(value, int) and kind is not int:
        return int(value)
    if isinstance(value, float) and kind is not float:
        return float(value)
    return value


def decode(data: bytes) -> Records:
    """The group `encode` made."""
    kind, body = data[:1], data[1:]
    try:
        if kind == _PICKLED:
            records = pickle.loads(body)  # our own pipe, written by `encode`
            if not isinstance(records, Records):
                raise TypeError(f"a {type(records).__name__}, not Records")
            return records
        if kind != _FAST:
            raise ValueError(f"unknown encoding {kind!r}")
        flat = marshal.loads(body)
        built: dict[str, list[Any]] = {}
        for (name, build), rows in zip(_BUILDS, flat, strict=True):
            if rows:
                built[name] = [build(row) for row in rows]
        return Records(**built)
    except Exception as exc:
        raise LedgerError(
            f"process writer: a record group could not be decoded: {exc}", retryable=False
        ) from exc
