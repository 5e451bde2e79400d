"""What a SIGKILL loses: the window of calls the tracker had returned but the ledger lacks.

A child process tracks fake model calls (the public `CostTracker` API, no framework, no
network) into a SQLite file at a fixed interval, printing each call's number and the
monotonic time it returned. The parent kills it with SIGKILL at a random moment, then
reads the ledger: a call is *lost* if it had returned before the kill and has no event.
The loss window of one kill is the kill time minus the return time of the oldest lost call
(0 when nothing was lost). Modes:

- `default`: `CostTracker(ledger)`, the background writer with its `LINGER`;
- `linger50`: the same with the former 50 ms linger, for comparison (any `lingerN`: N ms);
- `durable`: `CostTracker(ledger, durable=True)`, which commits before returning;
- `nocheckpoint`: `default` with SQLite's automatic WAL checkpoint turned off, to show what
  the tail of the window is made of (the fsyncs of a checkpoint inside the writer's commit).

    python bench/bench_loss_window.py [--kills 20] [--interval-ms 1] [--modes default,durable]
    python bench/bench_loss_window.py --overhead [--calls 4000]   # µs per call, each mode
    python bench/bench_loss_window.py --child URL MODE INTERVAL_MS   # the process it kills

`--overhead` prices what the shorter window costs: each mode tracks `--calls` calls back to
back (no model time at all: the worst case for batching) in a fresh process, then flushes;
µs per call, the median of interleaved rounds.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("default", "linger50", "durable")


def tracker_for(url: str, mode: str) -> Any:
    """A `CostTracker` into a fresh SQLite file, as `mode` says."""
    from agent_finops import CostTracker, SQLLedger

    ledger = SQLLedger.from_url(url)
    if mode == "nocheckpoint":  # where the tail comes from: SQLite's inline WAL checkpoint
        from sqlalchemy import event

        event.listen(
            ledger.engine,
            "connect",
            lambda conn, _: conn.execute("PRAGMA wal_autocheckpoint=0"),
        )
        ledger.engine.dispose()
    if mode == "durable":
        tracker = CostTracker(ledger, durable=True)
    elif mode.startswith("linger"):
        tracker = CostTracker(ledger, linger=float(mode.removeprefix("linger")) / 1000)
    else:
        tracker = CostTracker(ledger)
    return tracker


def child(url: str, mode: str, interval_ms: float) -> None:
    """Track calls every `interval_ms` until killed, printing `i t_returned` for each.

    `interval_ms` < 0: track -interval_ms calls back to back, flush, print µs per call.
    """
    from agent_finops import TokenUsage

    tracker = tracker_for(url, mode)
    usage = TokenUsage(uncached_input_tokens=1000, output_tokens=100)
    if interval_ms < 0:
        calls = int(-interval_ms)
        tracker.start_span("run", parent_span_id=None, name="bench", kind="chain")
        started = time.perf_counter()
        for i in range(calls):
            tracker.start_span(f"c{i}", parent_span_id="run", name="llm", kind="model")
            tracker.record_model_call(f"c{i}", model="gpt-4o-mini", provider="openai", usage=usage)
            tracker.end_span(f"c{i}")
        tracker.flush()
        print((time.perf_counter() - started) / calls * 1e6)
        return
    tracker.start_span("run", parent_span_id=None, name="bench", kind="chain")
    tracker.flush()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    interval = interval_ms / 1000
    start = time.monotonic()
    i = 0
    while True:
        i += 1
        span = f"c{i}"
        tracker.start_span(span, parent_span_id="run", name="llm", kind="model")
        tracker.record_model_call(span, model="gpt-4o-mini", provider="openai", usage=usage)
        tracker.end_span(span)
        out.write(f"{i} {time.monotonic()!r}\n")
        out.flush()
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the model call: the GIL is released, as in real I/O


def one_kill(mode: str, interval_ms: float, folder: Path, n: int) -> tuple[int, float, int]:
    """Run a child, SIGKILL it after a random time; (lost calls, window ms, calls returned)."""
    from agent_finops import SQLLedger

    url = f"sqlite:///{folder}/{mode}-{n}.sqlite"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", url, mode, str(interval_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"child failed to start ({mode})")
    time.sleep(random.uniform(0.3, 0.8))
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    returned: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            at = float(parts[1])
            if at <= killed_at:  # printed before the kill (a later line is in flight)
                returned[f"c{parts[0]}"] = at
    with SQLLedger.from_url(url) as ledger:
        stored = {e.event_id for e in ledger.load_trace("run").events}
    lost = [at for call, at in returned.items() if call not in stored]
    window = (killed_at - min(lost)) * 1000 if lost else 0.0
    return len(lost), window, len(returned)


def overhead(modes: list[str], calls: int, rounds: int) -> None:
    """Print µs per tracked call in each mode (median of interleaved rounds)."""
    per_call: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            for mode in random.sample(modes, len(modes)):
                url = f"sqlite:///{tmp}/{mode}-{n}.sqlite"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url, mode, str(-calls)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                per_call[mode].append(float(out.split()[-1]))
    print(f"{calls} calls back to back, then flush; median of {rounds} interleaved rounds")
    for mode, values in per_call.items():
        shown = ", ".join(f"{v:.0f}" for v in sorted(values))
        print(f"{mode:<13} {statistics.median(values):7.1f} µs per call   ({shown})")


def main() -> None:
    """Kill children in every mode, in rounds; print lost calls and loss windows."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per mode (default 20)")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="between calls (1)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--overhead", action="store_true", help="µs per call instead")
    parser.add_argument("--calls", type=int, default=4000, help="with --overhead (4000)")
    parser.add_argument("--rounds", type=int, default=5, help="with --overhead (5)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "MODE", "MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]))
        return
    modes = args.modes.split(",")
    if args.overhead:
        overhead(modes, args.calls, args.rounds)
        return
    results: dict[str, list[tuple[int, float, int]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.kills):
            for mode in random.sample(modes, len(modes)):  # interleaved rounds
                results[mode].append(one_kill(mode, args.interval_ms, Path(tmp), n))
    print(f"SIGKILL at a random moment, calls every {args.interval_ms:g} ms, {args.kills} kills")
    print(f"{'mode':<10} {'lost calls (median / max)':>26} {'window ms (median / p90 / max)':>32}")
    for mode, rows in results.items():
        lost = [r[0] for r in rows]
        windows = sorted(r[1] for r in rows)
        p90 = windows[min(len(windows) - 1, int(0.9 * len(windows)))]
        print(
            f"{mode:<10} {statistics.median(lost):>17g} / {max(lost):<6} "
            f"{statistics.median(windows):>14.2f} / {p90:.2f} / {max(windows):.2f}"
        )


if __name__ == "__main__":
    main()
