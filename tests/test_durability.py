"""Nothing lost: real child processes track calls, then exit, get SIGTERM or SIGKILL.

The child (tests/durability_child.py) prints how many calls the tracker had returned; the
parent counts the cost events in the SQLite ledger afterwards. Normal exit and SIGTERM lose
nothing (atexit flush, chaining signal handler); `durable=True` loses nothing even on
SIGKILL; the default background writer loses at most its few-millisecond window on SIGKILL
(bench/bench_loss_window.py measures it). A record the ledger refuses is kept in the
dead-letter file and the records after it are written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent_finops import CostEvent, CostTracker, LedgerError, SQLLedger, TokenUsage
from agent_finops.sinks import (
    DEAD_LETTER_NAME,
    LedgerWriter,
    Records,
    default_dead_letter_path,
    read_dead_letters,
)

CHILD = Path(__file__).with_name("durability_child.py")
USAGE = TokenUsage(uncached_input_tokens=1000, output_tokens=100)
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Child:
    """A running tests/durability_child.py and the lines it printed."""

    def __init__(self, url: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._watchdog = threading.Timer(120, self.proc.kill)  # a stuck child fails, not hangs
        self._watchdog.start()

    def read_until_returned(self, calls: int) -> None:
        """Read lines until the child says `calls` calls have returned."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.strip().isdigit() and int(line) >= calls:
                return
        raise AssertionError(f"child ended early: {self.finish()}")

    def finish(self) -> str:
        """Wait for the child; its stderr."""
        out, err = self.proc.communicate(timeout=60)
        self._watchdog.cancel()
        self.lines += [x.strip() for x in out.splitlines()]
        return err

    @property
    def writer_pid(self) -> int:
        """The pid of the child's writer process (`--writer process`)."""
        return next(int(x.split()[1]) for x in self.lines if x.startswith("writer "))

    def wait_for_writer(self, timeout: float = 30.0) -> None:
        """Wait until the writer process has exited (it outlives a killed parent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.writer_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        raise AssertionError(f"writer process {self.writer_pid} still running")

    @property
    def returned(self) -> int:
        """Calls the tracker had returned from, by the child's own account."""
        return max((int(x) for x in self.lines if x.isdigit()), default=0)


def recorded(url: str) -> set[str]:
    """The ids of the cost events in the ledger."""
    with SQLLedger.from_url(url) as ledger:
        return {e.event_id for e in ledger.load_trace("run").events}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.sqlite"


def test_normal_exit_writes_everything_queued(url: str) -> None:
    # The child returns right after its last call, without flush or close: atexit flushes.
    child = Child(url, "--calls", "300", "--linger", "60")
    err = child.finish()
    assert child.proc.returncode == 0, err
    assert child.returned == 300
    assert recorded(url) == {f"c{i}" for i in range(1, 301)}


def test_sigterm_flushes_then_ends_as_the_default_handler_would(url: str) -> None:
    # A 60 s linger: everything the child tracked is still queued when SIGTERM arrives.
    child = Child(url, "--linger", "60")
    child.read_until_returned(200)
    child.proc.send_signal(signal.SIGTERM)
    err = child.finish()
    assert child.proc.returncode == -signal.SIGTERM, err  # 143 in a shell, as without us
    events = recorded(url)
    assert {f"c{i}" for i in range(1, child.returned + 1)} <= events
    assert child.returned >= 200


def test_sigterm_chains_to_the_handler_installed_before(url: str) -> None:
    child = Child(url, "--linger", "60", "--user-handler")
    child.read_until_returned(100)
    child.proc.send_signal(signal.SIGTERM)
    err = child.finish()
    assert child.proc.returncode == 7, err  # the user's handler ran, after our flush
    assert "user handler" in err.splitlines()
    assert {f"c{i}" for i in range(1, child.returned + 1)} <= recorded(url)


@pytest.mark.parametrize(
    ("args", "handler"),
    [
        ((), "_on_sigterm"),
        (("--no-sigterm-flush",), "default"),
        (("--in-thread",), "default"),  # Python allows signal handlers in main only
        (("--durable",), "default"),  # nothing is ever pending
    ],
)
def test_the_sigterm_handler_is_installed_only_when_it_should_be(
    url: str, args: tuple[str, ...], handler: str
) -> None:
    child = Child(url, *args, "--then", "show-handler")
    err = child.finish()
    assert child.proc.returncode == 0, err
    assert child.lines == [handler]


def test_durable_mode_loses_nothing_on_sigkill(url: str) -> None:
    child = Child(url, "--durable")
    child.read_until_returned(150)
    child.proc.kill()
    child.finish()
    assert child.proc.returncode == -signal.SIGKILL
    assert {f"c{i}" for i in range(1, child.returned + 1)} <= recorded(url)


def test_default_mode_loses_at_most_a_few_milliseconds_on_sigkill(url: str) -> None:
    # Calls 1 ms apart; the writer lingers 2 ms then commits. Loose bound (a loaded machine
    # can delay the writer thread): bench/bench_loss_window.py measures the real window.
    child = Child(url, "--interval", "0.001")
    child.read_until_returned(300)
    child.proc.kill()
    child.finish()
    events = recorded(url)
    lost = child.returned - len({f"c{i}" for i in range(1, child.returned + 1)} & events)
    assert 0 <= lost <= 100, lost


def test_the_process_writer_loses_nothing_on_sigkill(url: str) -> None:
    # Each group is in the pipe when the tracker returns: the writer process outlives its
    # killed parent, writes all of it, and exits (calls 1 ms apart, as above).
    child = Child(url, "--interval", "0.001", "--writer", "process")
    child.read_until_returned(300)
    child.proc.kill()
    child.finish()
    assert child.proc.returncode == -signal.SIGKILL
    child.wait_for_writer()
    assert {f"c{i}" for i in range(1, child.returned + 1)} <= recorded(url)


def test_the_process_writer_loses_nothing_of_a_burst_killed_as_its_writer_starts(url: str) -> None:
    # 5,000 calls as fast as they go (several MB of groups, more than the pipe holds) from
    # the moment the tracker exists, then SIGKILL: the writer process was still importing;
    # its drain thread had read the pipe into memory all along, and it writes all of it.
    child = Child(url, "--calls", "5000", "--writer", "process", "--then", "kill")
    child.finish()
    assert child.proc.returncode == -signal.SIGKILL
    assert child.returned == 5000
    child.wait_for_writer()
    assert recorded(url) == {f"c{i}" for i in range(1, 5001)}


def test_the_process_writer_writes_everything_at_exit_and_on_sigterm(url: str) -> None:
    child = Child(url, "--calls", "300", "--writer", "process")
    err = child.finish()
    assert child.proc.returncode == 0, err
    child.wait_for_writer()
    assert recorded(url) == {f"c{i}" for i in range(1, 301)}

    other = url.replace("ledger.sqlite", "other.sqlite")
    child = Child(other, "--writer", "process")
    child.read_until_returned(200)
    child.proc.send_signal(signal.SIGTERM)
    err = child.finish()
    assert child.proc.returncode == -signal.SIGTERM, err
    child.wait_for_writer()
    assert {f"c{i}" for i in range(1, child.returned + 1)} <= recorded(other)


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_poison_record_is_kept_and_the_records_after_it_are_written(
    url: str, tmp_path: Path, writer: str
) -> None:
    # Every 50th call costs 1e25, which no ledger stores: refused as data, retryable=False.
    child = Child(url, "--calls", "200", "--poison-every", "50", "--writer", writer)
    err = child.finish()
    assert child.proc.returncode == 0, err
    events = recorded(url)
    poisoned = {f"c{i}" for i in (50, 100, 150, 200)}
    assert events == {f"c{i}" for i in range(1, 201)} - poisoned
    kept = read_dead_letters(tmp_path / "ledger.sqlite.dead-letter.jsonl")
    assert {getattr(k.record, "event_id", None) for k in kept} == poisoned
    assert all(k.kind == "event" and "out of range" in k.error for k in kept)


def test_durable_mode_keeps_a_poison_record_too(url: str, tmp_path: Path) -> None:
    dead = tmp_path / "ledger.sqlite.dead-letter.jsonl"
    child = Child(url, "--calls", "20", "--poison-every", "10", "--durable")
    err = child.finish()
    assert child.proc.returncode == 0, err
    assert len(recorded(url)) == 18
    assert sorted(getattr(k.record, "event_id", "") for k in read_dead_letters(dead)) == [
        "c10",
        "c20",
    ]


class DownLedger:
    """A ledger that is unreachable (every write fails as a retryable fault)."""

    def __init__(self, inner: SQLLedger) -> None:
        self.inner = inner
        self.tries = 0

    def write(self, **kwargs: Any) -> None:
        self.tries += 1
        raise LedgerError("could not connect to server")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _one_call(tracker: CostTracker, span: str) -> None:
    tracker.start_span(span, parent_span_id=None, name="run", kind="chain")
    tracker.record_model_call(span, model="gpt-4o-mini", provider="openai", usage=USAGE)
    tracker.end_span(span)


def test_durable_mode_keeps_records_on_disk_when_the_ledger_is_down(
    sqlite_ledger: SQLLedger, tmp_path: Path
) -> None:
    down = DownLedger(sqlite_ledger)
    dead = tmp_path / "kept.jsonl"
    tracker = CostTracker(down, durable=True, dead_letter=dead)  # type: ignore[arg-type]
    _one_call(tracker, "r1")  # retried briefly, then kept: never raised to the caller
    assert tracker.dead_letter_path == dead.resolve()
    kinds = sorted(k.kind for k in read_dead_letters(dead))
    assert kinds == ["event", "run", "run", "span"]  # run opened, the call, run closed
    assert tracker.write_errors == down.tries == 3 * 3  # three groups, three tries each
    assert all("ledger unavailable" in k.error for k in read_dead_letters(dead))


def test_closing_the_writer_with_the_ledger_down_keeps_what_is_pending(
    sqlite_ledger: SQLLedger, tmp_path: Path
) -> None:
    dead = tmp_path / "kept.jsonl"
    writer = LedgerWriter(DownLedger(sqlite_ledger), dead_letter=dead)  # type: ignore[arg-type]
    tracker = CostTracker(sqlite_ledger, background=False)
    run = tracker.start_span("r1", parent_span_id=None, name="run", kind="chain")
    event = tracker.record_model_call("r1", model="gpt-4o-mini", provider="openai", usage=USAGE)
    writer.emit(Records(spans=[run], events=[event]))
    with pytest.raises(LedgerError, match="timed out"):
        writer.flush(timeout=0.2)
    writer.close(timeout=0.2)  # gives up: the records go to the dead-letter file, not away
    assert sorted(k.kind for k in read_dead_letters(dead)) == ["event", "span"]
    assert writer.dead_lettered == 2 and writer.dropped == 0


def test_a_full_queue_keeps_groups_on_disk_instead_of_growing(
    sqlite_ledger: SQLLedger, tmp_path: Path
) -> None:
    """A ledger that does not keep up never makes the writer hold more than `max_queued`."""
    dead = tmp_path / "kept.jsonl"
    down = DownLedger(sqlite_ledger)
    writer = LedgerWriter(down, dead_letter=dead, max_queued=3)  # type: ignore[arg-type]
    tracker = CostTracker(sqlite_ledger, background=False)
    events = [
        tracker.record_model_call(
            tracker.start_span(f"r{i}", parent_span_id=None, name="run", kind="chain").span_id,
            model="gpt-4o-mini",
            provider="openai",
            usage=USAGE,
        )
        for i in range(6)
    ]
    first, *rest = [Records(events=[e]) for e in events if e is not None]
    writer.emit(first)
    deadline = time.monotonic() + 10
    while not down.tries and time.monotonic() < deadline:  # the writer took it, retrying
        time.sleep(0.01)
    for records in rest:
        writer.emit(records)
    # Three queued behind the batch being retried; the other two kept on disk after
    # waiting for room: memory is bounded and nothing is dropped.
    assert writer.overflowed == 2
    kept = {k.record.event_id for k in read_dead_letters(dead)}  # type: ignore[union-attr]
    assert kept == {r.events[0].event_id for r in rest[3:]}
    writer.close(timeout=0.2)
    kept = {k.record.event_id for k in read_dead_letters(dead)}  # type: ignore[union-attr]
    assert kept == {e.event_id for e in events if e is not None} and writer.dropped == 0
    with pytest.raises(ValueError, match="max_queued"):
        LedgerWriter(sqlite_ledger, max_queued=0)


def test_dead_letters_round_trip_every_field(sqlite_ledger: SQLLedger, tmp_path: Path) -> None:
    class Refuses(DownLedger):
        def write(self, **kwargs: Any) -> None:
            raise LedgerError("value too long", retryable=False)

    dead = tmp_path / "kept.jsonl"
    tracker = CostTracker(Refuses(sqlite_ledger), dead_letter=dead, tags={"team": "t\ud800"[:1]})  # type: ignore[arg-type]
    _one_call(tracker, "r\ud800")  # a lone surrogate (escaped by the tracker) survives too
    tracker.close()
    kept = read_dead_letters(dead)
    event = next(k.record for k in kept if k.kind == "event")
    assert isinstance(event, CostEvent)
    assert event.cost is not None and event.cost > 0 and event.created_at.tzinfo is not None
    assert event.tags == {"team": "t"} and event.uncached_input_tokens == 1000
    assert all(k.error.endswith("value too long") for k in kept)


def test_read_dead_letters_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_dead_letters(tmp_path / "none.jsonl") == []


def test_a_torn_last_line_is_skipped(sqlite_ledger: SQLLedger, tmp_path: Path) -> None:
    dead = tmp_path / "kept.jsonl"
    tracker = CostTracker(DownLedger(sqlite_ledger), durable=True, dead_letter=dead)  # type: ignore[arg-type]
    _one_call(tracker, "r1")
    with dead.open("a") as f:
        f.write('{"v": 1, "kind": "ev')  # a crash in the middle of an append
    assert len(read_dead_letters(dead)) == 4


def test_the_default_dead_letter_file_is_next_to_a_sqlite_ledger(
    sqlite_ledger: SQLLedger, tmp_path: Path
) -> None:
    assert (
        default_dead_letter_path(sqlite_ledger)
        == (tmp_path / "ledger.sqlite.dead-letter.jsonl").resolve()
    )
    with SQLLedger.from_url("sqlite://") as memory:
        assert default_dead_letter_path(memory) == Path.cwd().resolve() / DEAD_LETTER_NAME
    assert CostTracker(sqlite_ledger, background=False).dead_letter_path is None  # it raises


def test_cli_lists_and_replays_dead_letters_once_the_ledger_is_back(
    sqlite_ledger: SQLLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agent-finops dead-letters [--replay]`: what was kept while the ledger was down."""
    from agent_finops.cli import main as cli

    dead = tmp_path / "kept.jsonl"
    tracker = CostTracker(DownLedger(sqlite_ledger), durable=True, dead_letter=dead)  # type: ignore[arg-type]
    _one_call(tracker, "r1")
    url = str(sqlite_ledger.engine.url)
    assert cli(["dead-letters", "--db", url, "--file", str(dead)]) == 0
    listed = capsys.readouterr().out
    assert "event r1" in listed and "4 records in" in listed
    assert cli(["dead-letters", "--db", url, "--file", str(dead), "--replay"]) == 0
    # the run's first state and its final state are both kept: only the final one is written
    assert "replayed 3, skipped 1" in capsys.readouterr().out
    trace = sqlite_ledger.load_trace("r1")
    assert [e.event_id for e in trace.events] == ["r1"] and trace.run.status == "ok"
    assert cli(["dead-letters", "--db", url, "--file", str(dead), "--replay"]) == 0
    assert "replayed 1, skipped 3" in capsys.readouterr().out  # the event again: inserted once
    assert len(sqlite_ledger.load_trace("r1").events) == 1
    assert cli(["dead-letters", "--db", url, "--file", str(tmp_path / "none.jsonl")]) == 0
    assert "no dead letters" in capsys.readouterr().out
