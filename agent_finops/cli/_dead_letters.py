"""`agent-finops dead-letters [--file PATH] [--json] [--replay]`: records the ledger refused.

Lists the dead-letter file (`docs/scaling.md`): what each record is, why the ledger refused
it, when. `--replay` writes them again, one by one, once the cause is fixed (a column
widened, a ledger back up): events and decisions are inserted once by id, so a replay never
counts one twice; of a run or span only its last kept state is replayed, and only if the
ledger lacks it or holds it still open.
Replayed records are reported; refused ones stay in the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent_finops.cli._args import text_arg
from agent_finops.exceptions import LedgerError, RunNotFound
from agent_finops.ledger import (
    CostEvent,
    DecisionRecord,
    LeaseCharge,
    Ledger,
    RunRecord,
    SpanRecord,
)
from agent_finops.sinks import DeadLetter, default_dead_letter_path, read_dead_letters

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `dead-letters`."""
    cmd = sub.add_parser(
        "dead-letters",
        parents=[common],
        help="records the ledger refused (kept in the dead-letter file), and replaying them",
    )
    cmd.add_argument(
        "--file", type=text_arg, default=None, help="the file (default: next to a SQLite ledger)"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.add_argument("--replay", action="store_true", help="write them to the ledger again")
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """List or replay."""
    path = Path(args.file) if args.file else default_dead_letter_path(ledger)
    letters = read_dead_letters(path)
    if args.replay:
        return _replay(ledger, letters)
    if args.json:
        print(json.dumps([_data(d) for d in letters], indent=2))
        return 0
    if not letters:
        print(f"no dead letters in {path}")
        return 0
    for d in letters:
        print(f"{d.at:%Y-%m-%d %H:%M:%S} {d.kind} {_id(d)}: {d.error}")
    print(f"{len(letters)} record{'s' * (len(letters) != 1)} in {path}")
    return 0


def _id(d: DeadLetter) -> str:
    r = d.record
    if isinstance(r, CostEvent):
        return r.event_id
    if isinstance(r, LeaseCharge):
        return f"{r.event_id or '-'}:{r.counter_key}"
    if isinstance(r, DecisionRecord):
        return r.decision_id
    if isinstance(r, SpanRecord):
        return r.span_id
    return r.trace_id


def _data(d: DeadLetter) -> dict[str, Any]:
    return {"kind": d.kind, "id": _id(d), "error": d.error, "at": d.at.isoformat()}


def _is_new(ledger: Ledger, d: DeadLetter) -> bool:
    """Whether writing `d` again is safe and useful.

    Events and decisions are inserted once: always. A run or span: if the ledger lacks it,
    or holds it still open while the kept state ended.
    """
    r = d.record
    if isinstance(r, CostEvent | DecisionRecord | LeaseCharge):
        return True
    try:
        trace = ledger.load_trace(r.trace_id)
    except RunNotFound:
        return True
    stored: RunRecord | SpanRecord | None
    if isinstance(r, RunRecord):
        stored = trace.run
    else:
        stored = next((s for s in trace.spans if s.span_id == r.span_id), None)
    return stored is None or (stored.ended_at is None and r.ended_at is not None)


def _latest(letters: list[DeadLetter]) -> list[DeadLetter]:
    """Only the last kept state of each run and span (the file is in the order written)."""
    last: dict[tuple[str, str], int] = {}
    for i, d in enumerate(letters):
        if isinstance(d.record, RunRecord | SpanRecord):
            last[d.kind, _id(d)] = i
    return [
        d
        for i, d in enumerate(letters)
        if not isinstance(d.record, RunRecord | SpanRecord) or last[d.kind, _id(d)] == i
    ]


def _replay(ledger: Ledger, letters: list[DeadLetter]) -> int:
    written = skipped = refused = 0
    latest = _latest(letters)
    skipped = len(letters) - len(latest)
    # A budget-lease charge goes back with its event, in one write (applied once with it).
    events = {r.event_id for d in latest if isinstance(r := d.record, CostEvent)}
    charges: dict[str, list[LeaseCharge]] = {}
    for d in latest:
        if isinstance(c := d.record, LeaseCharge) and c.event_id in events:
            charges.setdefault(c.event_id, []).append(c)
    for d in latest:
        r = d.record
        if isinstance(r, LeaseCharge) and r.event_id in events:
            continue  # written with its event
        if not _is_new(ledger, d):
            skipped += 1
            continue
        try:
            ledger.write(
                runs=[r] if isinstance(r, RunRecord) else [],
                spans=[r] if isinstance(r, SpanRecord) else [],
                events=[r] if isinstance(r, CostEvent) else [],
                decisions=[r] if isinstance(r, DecisionRecord) else [],
                charges=(
                    charges.get(r.event_id, [])
                    if isinstance(r, CostEvent)
                    else [r]
                    if isinstance(r, LeaseCharge)
                    else []
                ),
            )
        except LedgerError as exc:
            refused += 1
            print(f"refused again: {d.kind} {_id(d)}: {exc}")
            continue
        written += 1
    print(
        f"replayed {written}, skipped {skipped} (older states, or the ledger has as new), "
        f"refused {refused}"
    )
    return 1 if refused else 0
