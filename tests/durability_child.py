"""A child process for tests/test_durability.py: tracks fake model calls into a SQLite file.

    python tests/durability_child.py URL [--calls N] [--durable] [--linger S] [--writer W] ...

Prints `writer PID` (with `--writer process`) and `ready` once the tracker exists, then the number of calls returned after each call
(flushed), so the parent knows what the tracker had handed back when it sent a signal.
Uses only the public API; no network (prices come from the bundled catalog).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from decimal import Decimal
from typing import Any

from agent_finops import CostTracker, SQLLedger, TokenUsage
from agent_finops.pricing import Cost

USAGE = TokenUsage(uncached_input_tokens=1000, output_tokens=100)


def main() -> None:
    """Track calls as the arguments say, then exit, sleep or signal itself."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--calls", type=int, default=0, help="0: until killed")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between calls")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--linger", type=float, default=None)
    parser.add_argument("--no-sigterm-flush", action="store_true")
    parser.add_argument("--user-handler", action="store_true", help="a SIGTERM handler first")
    parser.add_argument("--in-thread", action="store_true", help="build the tracker off main")
    parser.add_argument("--poison-every", type=int, default=0, help="every k-th call unstorable")
    parser.add_argument("--then", choices=["exit", "sleep", "show-handler", "kill"], default="exit")
    parser.add_argument("--writer", choices=["thread", "process"], default=None)
    args = parser.parse_args()

    if args.user_handler:

        def on_term(signum: int, frame: Any) -> None:
            # stderr: stdout may be mid-line (the handler runs between two bytecodes of a print)
            print("user handler", file=sys.stderr, flush=True)
            sys.exit(7)

        signal.signal(signal.SIGTERM, on_term)

    options: dict[str, Any] = {"durable": args.durable, "writer": args.writer}
    if args.linger is not None:
        options["linger"] = args.linger
    if args.no_sigterm_flush:
        options["flush_on_sigterm"] = False
    ledger = SQLLedger.from_url(args.url)
    made: list[CostTracker] = []
    if args.in_thread:
        thread = threading.Thread(target=lambda: made.append(CostTracker(ledger, **options)))
        thread.start()
        thread.join()
    else:
        made.append(CostTracker(ledger, **options))
    tracker = made[0]
    if args.then == "show-handler":
        handler = signal.getsignal(signal.SIGTERM)
        shown = "default" if handler is signal.SIG_DFL else getattr(handler, "__name__", handler)
        print(shown, flush=True)
        return
    tracker.start_span("run", parent_span_id=None, name="child", kind="chain")
    writer_pid = getattr(tracker.sinks[0], "pid", None)
    if writer_pid is not None:
        print(f"writer {writer_pid}", flush=True)
    print("ready", flush=True)
    i = 0
    start = time.monotonic()
    while args.calls == 0 or i < args.calls:
        i += 1
        span = f"c{i}"
        tracker.start_span(span, parent_span_id="run", name="llm", kind="model")
        cost = None
        if args.poison_every and i % args.poison_every == 0:
            cost = Cost(amount=Decimal("1e25"), source="custom", version="1")  # refused
        tracker.record_model_call(
            span, model="gpt-4o-mini", provider="openai", usage=USAGE, cost=cost
        )
        tracker.end_span(span)
        print(i, flush=True)
        if args.interval:
            delay = start + i * args.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if args.then == "sleep":
        time.sleep(600)
    if args.then == "kill":  # at once, the moment the last call returned
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit": return without flush or close: the atexit hook must write what is queued.


if __name__ == "__main__":
    main()
