"""Slack approvals: ack latency under concurrent clicks, and time from click to resumed run.

    .venv/bin/python bench/bench_slack.py [--runs 20] [--sequential 5]

Everything is local: the Slack Web API emulator (`agent_finops_slack.testing`), the real
`agent-finops serve` (waitress + Bolt) as a subprocess, signed `block_actions` POSTs, and the
example app of `examples/slack_approval.py` (a three-node LangGraph graph on a SQLite ledger
and checkpointer) as the paused runs.

1. `--sequential` paused runs are approved one at a time: the ack latency of each click and
   the time from the click until the resumed run has finished (decision, message update,
   graph rebuilt in the service's resume function, checkpoint loaded, last node run).
2. `--runs` other paused runs are approved by as many simultaneous clicks: the ack latency
   P50/P99 (Slack allows 3 s) and the time until every one of those runs has finished.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from agent_finops import SQLLedger
from agent_finops_slack.testing import (
    SIGNING_SECRET,
    SlackEmulator,
    block_actions,
    post_interaction,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "slack_approval.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("slack_approval_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def finished(ledger: SQLLedger, threads: set[str]) -> set[str]:
    return {
        s.run.thread_id
        for s in ledger.list_runs(limit=1000)
        if s.run.thread_id in threads and s.run.status == "ok"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="simultaneous clicks")
    parser.add_argument("--sequential", type=int, default=5, help="clicks one at a time")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-slack-"))
    emulator = SlackEmulator(channels={"C0APPROVALS"}).start()
    os.environ.update(
        SLACK_BOT_TOKEN=emulator.bot_token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=emulator.base_url,
        AGENT_FINOPS_DB_URL=f"sqlite:///{workdir}/ledger.sqlite",
        SLACK_DEMO_CHECKPOINTS=str(workdir / "checkpoints.sqlite"),
    )
    example = load_example()
    config = {
        "targets": f"{EXAMPLE}:targets",
        "approvals": example.POLICY["approvals"],
        "slack": {
            "default_channel": "C0APPROVALS",
            "base_url": emulator.base_url,
            "raise_options": ["1"],
        },
        "serve": {"port": 0, "sweep_every": 5, "threads": 8, "workers": 4},
    }
    (workdir / "slack.yaml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("agent-finops")),
            "serve",
            "--config",
            str(workdir / "slack.yaml"),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = re.search(r"listening on (\S+)", server.stdout.readline()).group(1)  # type: ignore[union-attr]
        total = args.sequential + args.runs
        started = time.perf_counter()
        ids = {f"bench-{i}": example.pause(f"bench-{i}") for i in range(total)}
        print(
            f"paused {total} runs in {time.perf_counter() - started:.1f} s "
            f"({len(emulator.messages)} Slack messages)"
        )
        by_id = {}
        for message in emulator.messages.values():
            for thread, approval_id in ids.items():
                if approval_id in message.text:
                    by_id[thread] = message

        def click(thread: str) -> float:
            message = by_id[thread]
            payload = block_actions(
                ids[thread],
                user="U0BENCH",
                action_id="finops_approve_raise:1",
                channel=message.channel,
                message_ts=message.ts,
            )
            status, _, seconds = post_interaction(url, payload)
            assert status == 200, status
            return seconds

        ledger = SQLLedger.from_url(os.environ["AGENT_FINOPS_DB_URL"])
        acks: list[float] = []
        resumed: list[float] = []
        for i in range(args.sequential):
            thread = f"bench-{i}"
            t0 = time.perf_counter()
            acks.append(click(thread))
            while thread not in finished(ledger, {thread}):
                time.sleep(0.005)
            resumed.append(time.perf_counter() - t0)
        print(f"\none click at a time ({args.sequential} runs):")
        print(
            f"  ack               median {statistics.median(acks) * 1000:7.1f} ms   max {max(acks) * 1000:7.1f} ms"
        )
        print(
            f"  click -> finished median {statistics.median(resumed) * 1000:7.1f} ms   max {max(resumed) * 1000:7.1f} ms"
        )

        threads = [f"bench-{i}" for i in range(args.sequential, total)]
        gate = threading.Barrier(len(threads))
        lat: list[float] = []
        lock = threading.Lock()

        def concurrent_click(thread: str) -> None:
            gate.wait()
            seconds = click(thread)
            with lock:
                lat.append(seconds)

        t0 = time.perf_counter()
        workers = [threading.Thread(target=concurrent_click, args=(t,)) for t in threads]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        acked = time.perf_counter() - t0
        while len(finished(ledger, set(threads))) < len(threads):
            if time.perf_counter() - t0 > 600:
                raise SystemExit("timed out waiting for the resumed runs")
            time.sleep(0.01)
        all_done = time.perf_counter() - t0
        print(f"\n{len(threads)} simultaneous clicks (8 HTTP threads, 4 workers):")
        print(
            f"  ack P50 {percentile(lat, 50) * 1000:7.1f} ms   P99 {percentile(lat, 99) * 1000:7.1f} ms   "
            f"max {max(lat) * 1000:7.1f} ms   (all acked in {acked * 1000:.0f} ms)"
        )
        print(f"  all {len(threads)} runs finished {all_done:.2f} s after the clicks")
        decided = [ledger.get_approval(a) for a in ids.values()]
        assert all(r is not None and r.status == "approved" for r in decided)
        ledger.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        emulator.stop()


if __name__ == "__main__":
    main()
