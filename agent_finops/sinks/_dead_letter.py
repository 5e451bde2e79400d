"""The dead-letter file: records the ledger refused (or could not take in time), kept as JSONL.

A record the ledger refuses as data (`LedgerError(retryable=False)`: a value too long, a
constraint) can never be written, and retrying it would block every record behind it. The
writers isolate it and append it here, with the error, instead of dropping it: one JSON
object per line, `{"v": 1, "at": ..., "kind": "event", "error": ..., "record": {...}}`.
Appends are single `write` calls on an `O_APPEND` descriptor, so several processes can share
one file. `read_dead_letters(path)` gives them back as records.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from agent_finops.ledger import CostEvent, DecisionRecord, LeaseCharge, RunRecord, SpanRecord

__all__ = [
    "DEAD_LETTER_NAME",
    "DeadLetter",
    "DeadLetterFile",
    "default_dead_letter_path",
    "read_dead_letters",
]

log = logging.getLogger("agent_finops")

DEAD_LETTER_NAME: Final = "agent-finops-dead-letter.jsonl"
"""The dead-letter file's name in the working directory, for ledgers that are not a SQLite file."""
_SUFFIX: Final = ".dead-letter.jsonl"
_FORMAT: Final = 1

LedgerRecord = RunRecord | SpanRecord | CostEvent | DecisionRecord | LeaseCharge
_KINDS: Final[dict[str, type[Any]]] = {
    "run": RunRecord,
    "span": SpanRecord,
    "event": CostEvent,
    "decision": DecisionRecord,
    "charge": LeaseCharge,
}
_KIND_OF: Final = {cls: kind for kind, cls in _KINDS.items()}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record the ledger did not take, as read back from a dead-letter file."""

    kind: str
    """`run`, `span`, `event`, `decision` or `charge` (a budget-lease charge: write it back
    with its event, `ledger.write(events=[...], charges=[...])`)."""
    record: LedgerRecord
    """The record itself, rebuilt (write it again with `ledger.write` once fixed)."""
    error: str
    """Why it is here: the ledger's error message."""
    at: datetime
    """When it was written to the file (UTC)."""


def default_dead_letter_path(ledger: object) -> Path:
    """Where a writer for `ledger` keeps refused records unless told otherwise.

    Next to a SQLite file ledger (`<file>.dead-letter.jsonl`); otherwise (PostgreSQL, an
    in-memory ledger) `agent-finops-dead-letter.jsonl` in the current working directory.
    The path is absolute: it is resolved when the writer starts.
    """
    url = getattr(getattr(ledger, "engine", None), "url", None)
    database = getattr(url, "database", None)
    backend = getattr(url, "get_backend_name", lambda: "")()
    if (
        backend == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
    ):
        file = Path(database).expanduser().resolve()
        return file.with_name(file.name + _SUFFIX)
    return Path.cwd().resolve() / DEAD_LETTER_NAME


class DeadLetterFile:
    """Appends records with their error to a JSONL file (created on first use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Keep refused records in `path` (its folder must exist when a record arrives)."""
        self.path = Path(path).resolve()
        self._lock = threading.Lock()
        self.kept = 0
        """Records appended by this process."""

    def append(self, records: Iterable[LedgerRecord], error: str, *, sync: bool = False) -> bool:
        """Append `records` with `error`; fsync too when `sync`. False (and logged) on failure.

        Never raises: this is the last place a record can go.
        """
        now = datetime.now(UTC).isoformat()
        lines = []
        for record in records:
            entry = {
                "v": _FORMAT,
                "at": now,
                "kind": _KIND_OF.get(type(record), type(record).__name__),
                "error": error,
                "record": _encode(record),
            }
            lines.append(json.dumps(entry, default=repr) + "\n")  # ASCII: surrogates escaped
        if not lines:
            return True
        data = "".join(lines).encode("ascii")
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data)
                    if sync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                self.kept += len(lines)
        except OSError as exc:
            log.error(
                "agent-finops: cannot write the dead-letter file %s (%s); lost: %s",
                self.path,
                exc,
                data.decode("ascii")[:4000],
            )
            return False
        log.error(
            "agent-finops: %d record(s) the ledger did not take kept in %s: %s",
            len(lines),
            self.path,
            error,
        )
        return True


def read_dead_letters(path: str | os.PathLike[str]) -> list[DeadLetter]:
    """The records kept in a dead-letter file, oldest first ([] if there is no file).

    A line that cannot be parsed (a torn last line after a crash) is skipped with a warning.
    """
    file = Path(path)
    if not file.exists():
        return []
    letters = []
    with file.open(encoding="ascii", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                cls = _KINDS[entry["kind"]]
                record = cls(**{k: _decode(v) for k, v in entry["record"].items()})
                at = datetime.fromisoformat(entry["at"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("agent-finops: %s line %d is not a dead letter: %s", file, number, exc)
                continue
            letters.append(
                DeadLetter(kind=entry["kind"], record=record, error=entry["error"], at=at)
            )
    return letters


def _encode(record: object) -> dict[str, Any]:
    if not dataclasses.is_dataclass(record):
        return {"repr": repr(record)}
    return {f.name: _value(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$decimal"}:
            return Decimal(value["$decimal"])
        if value.keys() == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        return {k: _decode(v) for k, v in value.items()}
    return value
