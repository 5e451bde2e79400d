"""Against peers: what each tracer or guard adds to the same LangGraph run, all in one run.

    pip install -e '.[bench]'          # langfuse and langsmith (not in `dev`: CI skips them)
    python bench/bench_peers.py [--rounds 3] [--rss-calls 20000,100000] [--postgres URL]

bench_tracking's graph (2,000 scripted model calls: 100 runs of 20) runs in these modes,
interleaved in rounds (a different order each round, bench/_harness.py), median round
reported, every mode checked after its round:

- no callback; LangChain's `UsageMetadataCallbackHandler`;
- the Langfuse LangChain `CallbackHandler` and the LangSmith `LangChainTracer`, each
  exporting to a local no-op HTTP endpoint (a separate process on 127.0.0.1 that accepts
  Langfuse's OTLP and LangSmith's run ingestion and counts what arrives). Each client is
  flushed inside the clock, and the round is checked: at least one exported span or run per
  model call reached the endpoint;
- ours, tracking only (bench_tracking's mode c: a SQLite file ledger, flushed);
- ours, tracking + policy (bench_decisions' policy: four claims per call, a loop rule) on a
  SQLite file and, when `--postgres` or AGENT_FINOPS_TEST_POSTGRES_URL gives a URL, on
  PostgreSQL (a throwaway schema per round). Ours are checked as bench_tracking checks them.

Then, apart from the rounds: the guarded decision's latency P50/P99 in process
(bench_decisions' `engine` mode, SQLite and PostgreSQL); ledger ingest through a
`LedgerWriter` into a SQLite file (events/s, one event per `emit`, flush included); and the
resident set size of a fresh process tracking 20k and 100k calls into one ledger (flat is the
target). The load average is printed before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph.state import CompiledStateGraph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Mode, interleaved_rounds, load_average, print_modes_table, rss_bytes
from bench_decisions import POLICY, bench_backend, summary
from bench_reservations import _postgres_schema
from bench_tracking import (
    CALLS_PER_RUN,
    RUNS,
    TOTAL_CALLS,
    build_graph,
    mode_finops,
    mode_none,
    mode_usage,
    run_all,
    timed_handler,
)
from make_ledger import _event

from agent_finops import CostTracker, SQLLedger
from agent_finops.ledger import CostEvent
from agent_finops.policy import Policy
from agent_finops.sinks import LedgerWriter, Records
from agent_finops.tracker import WRITER_ENV
from agent_finops_langgraph import FinOpsCallbackHandler

# -- the no-op endpoint ---------------------------------------------------------------------


class _Counts:
    """What reached the endpoint: requests, bytes and exported items, by path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_path: dict[str, dict[str, int]] = {}

    def add(self, path: str, size: int, items: int) -> None:
        with self.lock:
            row = self.by_path.setdefault(path, {"requests": 0, "bytes": 0, "items": 0})
            row["requests"] += 1
            row["bytes"] += size
            row["items"] += items


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


_RUN_PART = re.compile(rb'name="(?:post|patch)\.[0-9a-f-]+"')
"""A multipart part holding one whole run (not one of its `.inputs`, `.outputs` parts)."""

_LANGSMITH_INFO = json.dumps(
    {
        "version": "noop",
        "instance_flags": {"zstd_compression_enabled": True},
    }
).encode()
"""LangSmith's `/info` as the service answers: zstd-compressed multipart ingestion."""


def _items(path: str, body: bytes) -> int:
    """Spans in an OTLP export (Langfuse), runs in a LangSmith multipart or batch post."""
    if path.endswith("/v1/traces"):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest.FromString(body)
        return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    if path.endswith("/runs/multipart"):
        return len(_RUN_PART.findall(body))
    if path.endswith("/runs/batch"):
        batch = json.loads(body)
        return len(batch.get("post", [])) + len(batch.get("patch", []))
    return 0


class _NoopHandler(BaseHTTPRequestHandler):
    """Answers every ingestion call as the real services do when all is well; keeps nothing."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' pools expect
    counts = _Counts()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        """Ingestion: count, answer 200 (an empty OTLP response, or `{}`)."""
        raw = self._read_body()
        path = self.path.split("?")[0]
        body = _decode(raw, self.headers.get("Content-Encoding", ""))
        self.counts.add(path, len(raw), _items(path, body))
        if path.endswith("/v1/traces"):
            self._answer(b"", "application/x-protobuf")
        else:
            self._answer(b"{}")

    do_PATCH = do_PUT = do_POST

    def do_GET(self) -> None:
        """`/_stats`: the counts; anything else: LangSmith's `/info`."""
        if self.path == "/_stats":
            with self.counts.lock:
                self._answer(json.dumps(self.counts.by_path).encode())
        else:
            self._answer(_LANGSMITH_INFO)


def serve_noop(port: int = 0) -> None:
    """Serve the no-op endpoint on 127.0.0.1 until stdin closes; print the port first."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _NoopHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


class NoopEndpoint:
    """The no-op endpoint in its own process (so serving it does not take the bench's GIL)."""

    def __init__(self) -> None:
        """Start the process and wait for its port."""
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--noop-endpoint"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self._process.stdout.readline())}"

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests, bytes and items received so far, by path."""
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as response:
            stats: dict[str, dict[str, int]] = json.loads(response.read())
        return stats

    def items(self) -> int:
        """Spans and runs received so far, all paths together."""
        return sum(row["items"] for row in self.stats().values())

    def close(self) -> None:
        """Stop the process."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)
        self._process.stdout.close()

    def __enter__(self) -> NoopEndpoint:
        """Use as a context manager."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the process."""
        self.close()


# -- the peers ---------------------------------------------------------------------------------


class LangfusePeer:
    """Langfuse's LangChain `CallbackHandler`, its client exporting OTLP to `url`."""

    label = "Langfuse CallbackHandler (flushed)"
    PUBLIC_KEY = "pk-lf-bench"

    def __init__(self, url: str) -> None:
        """One client for the process, as an application has; a handler per measured run."""
        from langfuse import Langfuse

        self.client = Langfuse(public_key=self.PUBLIC_KEY, secret_key="sk-lf-bench", host=url)

    def callbacks(self) -> list[BaseCallbackHandler]:
        """A new handler."""
        from langfuse.langchain import CallbackHandler

        return [CallbackHandler(public_key=self.PUBLIC_KEY)]

    def flush(self) -> None:
        """Export everything ended so far."""
        self.client.flush()

    def close(self) -> None:
        """Flush and stop the client's threads."""
        self.client.shutdown()


class LangSmithPeer:
    """LangChain's `LangChainTracer` on a LangSmith `Client` posting runs to `url`."""

    label = "LangSmith LangChainTracer (flushed)"

    def __init__(self, url: str) -> None:
        """One client for the process; a tracer per measured run."""
        from langsmith import Client

        self.client = Client(api_url=url, api_key="ls-bench")
        self._tracers: list[Any] = []

    def callbacks(self) -> list[BaseCallbackHandler]:
        """A new tracer."""
        from langchain_core.tracers.langchain import LangChainTracer

        tracer = LangChainTracer(client=self.client, project_name="bench")
        self._tracers = [tracer]
        return [tracer]

    def flush(self) -> None:
        """Wait for the tracer's pending work, then drain the client's queue."""
        for tracer in self._tracers:
            tracer.wait_for_futures()
        self.client.flush()

    def close(self) -> None:
        """Flush and release the client."""
        self.flush()
        self.client.cleanup()


def peer_mode(peer: LangfusePeer | LangSmithPeer, endpoint: NoopEndpoint) -> Mode:
    """The workload with `peer`'s callbacks, flushed inside the clock; checked at the endpoint."""

    def mode(graph: CompiledStateGraph, tmp: Path) -> float:
        before = endpoint.items()
        callbacks = peer.callbacks()
        start = time.perf_counter()
        run_all(graph, callbacks)
        peer.flush()
        elapsed = time.perf_counter() - start
        exported = endpoint.items() - before
        assert exported >= TOTAL_CALLS, f"{peer.label}: {exported} items reached the endpoint"
        return elapsed

    return mode


# -- ours with a policy ------------------------------------------------------------------------


def _guarded(graph: CompiledStateGraph, ledger: SQLLedger) -> float:
    """The workload through `FinOpsCallbackHandler` enforcing bench_decisions' policy."""
    tracker = CostTracker(ledger, tags={"team": "support"})
    handler = FinOpsCallbackHandler(tracker, policy=Policy.from_mapping(POLICY, source="bench"))
    try:
        return timed_handler(graph, ledger, handler)
    finally:
        if handler.policy is not None:
            handler.policy.close()


def mode_policy_sqlite(graph: CompiledStateGraph, tmp: Path) -> float:
    """Ours, tracking + policy, into a fresh SQLite file ledger."""
    with SQLLedger.from_url(f"sqlite:///{tmp / f'policy-{time.monotonic_ns()}.sqlite'}") as ledger:
        return _guarded(graph, ledger)


def policy_postgres_mode(url: str) -> Mode:
    """Ours, tracking + policy, into a fresh PostgreSQL schema per round."""

    def mode(graph: CompiledStateGraph, tmp: Path) -> float:
        with (
            _postgres_schema(url) as engine_kwargs,
            SQLLedger.from_url(url, **engine_kwargs) as ledger,  # type: ignore[arg-type]
        ):
            return _guarded(graph, ledger)

    return mode


# -- decisions, ingest, RSS --------------------------------------------------------------------


def decision_latency(postgres: str | None, iterations: int) -> dict[str, dict[str, float]]:
    """bench_decisions' `engine` mode (reserve + settle, recorded) on SQLite and PostgreSQL."""
    kw: dict[str, Any] = {"iterations": iterations, "rounds": 5, "per_run": 20}
    out: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="finops-peers-") as tmp,
        SQLLedger.from_url(f"sqlite:///{Path(tmp) / 'decisions.sqlite'}") as ledger,
    ):
        result = bench_backend("sqlite", ledger, modes=("engine",), **kw)
        out["SQLite"] = summary(result.samples["engine"])
    if postgres:
        with (
            _postgres_schema(postgres) as engine_kwargs,
            SQLLedger.from_url(postgres, **engine_kwargs) as ledger,  # type: ignore[arg-type]
        ):
            result = bench_backend("postgresql", ledger, modes=("engine",), **kw)
            out["PostgreSQL"] = summary(result.samples["engine"])
    return out


def _events(count: int) -> list[CostEvent]:
    rng = random.Random(20261202)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    tags = {"team": "support", "task": "ingest"}
    return [
        _event(rng, f"ingest-{i // 20:06d}", i % 20, at + timedelta(milliseconds=i), tags, ["a"])
        for i in range(count)
    ]


def ingest_rate(count: int) -> tuple[float, float]:
    """Events/s through a `LedgerWriter` into a SQLite file: `emit` alone, and emit + flush."""
    events = _events(count)
    with (
        tempfile.TemporaryDirectory(prefix="finops-peers-") as tmp,
        SQLLedger.from_url(f"sqlite:///{Path(tmp) / 'ingest.sqlite'}") as ledger,
    ):
        writer = LedgerWriter(ledger, flush_on_sigterm=False)
        try:
            start = time.perf_counter()
            for event in events:
                writer.emit(Records(events=(event,)))
            emitted = time.perf_counter() - start
            writer.flush(timeout=None)
            durable = time.perf_counter() - start
        finally:
            writer.close()
        with ledger.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM finops_cost_events").scalar_one()
    assert stored == count, (stored, count)
    return count / emitted, count / durable


def rss_child(checkpoints: list[int]) -> None:
    """In a fresh process: track calls into one SQLite ledger, print RSS at each checkpoint."""
    graph = build_graph()
    with tempfile.TemporaryDirectory(prefix="finops-peers-rss-") as tmp:
        ledger = SQLLedger.from_url(f"sqlite:///{Path(tmp) / 'rss.sqlite'}")
        tracker = CostTracker(ledger, tags={"team": "bench"})
        handler = FinOpsCallbackHandler(tracker)
        out: dict[str, int] = {}
        done = 0
        for target in sorted(checkpoints):
            while done < target:
                run_all(graph, [handler])
                done += TOTAL_CALLS
                out["backlog"] = max(out.get("backlog", 0), tracker.backlog)
            tracker.flush()
            out[str(done)] = rss_bytes()
        assert handler.errors == 0 and tracker.write_errors == 0
        tracker.close()
        ledger.close()
    print(json.dumps(out))


def rss_after(checkpoints: list[int]) -> tuple[dict[int, int], int]:
    """RSS (bytes) of a fresh tracking process after each number of calls; the writer's backlog.

    The backlog is the largest number of record groups queued, sampled every 2,000 calls.
    """
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", ",".join(map(str, checkpoints))],
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    backlog = found.pop("backlog")
    return {int(k): v for k, v in found.items()}, backlog


# -- the run -------------------------------------------------------------------------------------


def build_modes(endpoint: NoopEndpoint | None, postgres: str | None) -> dict[str, Any]:
    """Every mode this machine can run, and the peers to close afterwards."""
    modes: dict[str, tuple[str, Mode]] = {
        "a": ("no callback", mode_none),
        "b": ("UsageMetadataCallbackHandler", mode_usage),
    }
    peers: list[LangfusePeer | LangSmithPeer] = []
    if endpoint is not None:
        for key, peer_class in (("lf", LangfusePeer), ("ls", LangSmithPeer)):
            try:
                peer = peer_class(endpoint.url)
            except ImportError as exc:
                print(f"({peer_class.label} skipped: {exc}; pip install -e '.[bench]')")
                continue
            peers.append(peer)
            modes[key] = (peer.label, peer_mode(peer, endpoint))
    modes["c"] = ("ours, tracking only, SQLite", mode_finops)
    modes["p"] = ("ours, tracking + policy, SQLite", mode_policy_sqlite)
    if postgres:
        modes["pg"] = ("ours, tracking + policy, PostgreSQL", policy_postgres_mode(postgres))
    modes["cx"] = ("ours, tracking only, SQLite, writer process", with_writer_process(mode_finops))
    modes["px"] = (
        "ours, tracking + policy, SQLite, writer process",
        with_writer_process(mode_policy_sqlite),
    )
    if postgres:
        modes["pgx"] = (
            "ours, tracking + policy, PostgreSQL, writer process",
            with_writer_process(policy_postgres_mode(postgres)),
        )
    return {"modes": modes, "peers": peers}


def with_writer_process(mode: Mode) -> Mode:
    """`mode` with its tracker's ledger written by a child process (`writer="process"`)."""

    def in_process(graph: CompiledStateGraph, tmp: Path) -> float:
        previous = os.environ.get(WRITER_ENV)
        os.environ[WRITER_ENV] = "process"
        try:
            return mode(graph, tmp)
        finally:
            if previous is None:
                del os.environ[WRITER_ENV]
            else:
                os.environ[WRITER_ENV] = previous

    return in_process


def markdown_table(modes: dict[str, tuple[str, Mode]], times: dict[str, list[float]]) -> None:
    """The figures as a markdown table: µs per call, added over no callback, ratios.

    Besides the median round, the fastest: on a shared machine a round is only ever slowed
    by other work, so the fastest rounds compare the modes' own costs best (as `timeit`).
    """
    base = statistics.median(times["a"])
    ours = statistics.median(times["c"])
    fastest_base = min(times["a"])
    print(
        "\n| per model call (2,000 calls) | µs/call, median round | added, median (range) |"
        " added, fastest rounds | vs no callback | vs ours tracking |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, (label, _) in modes.items():
        med = statistics.median(times[key])
        paired = sorted(
            (t - a) / TOTAL_CALLS * 1e6 for t, a in zip(times[key], times["a"], strict=True)
        )
        added = (med - base) / TOTAL_CALLS * 1e6
        spread = "" if key == "a" else f" ({paired[0]:+,.0f} to {paired[-1]:+,.0f})"
        fastest = (
            "" if key == "a" else f"{(min(times[key]) - fastest_base) / TOTAL_CALLS * 1e6:+,.0f}"
        )
        print(
            f"| {label} | {med / TOTAL_CALLS * 1e6:,.0f} | {added:+,.0f}{spread} | {fastest} |"
            f" {med / base:.2f}x | {med / ours:.2f}x |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--postgres", default=os.environ.get("AGENT_FINOPS_TEST_POSTGRES_URL"))
    parser.add_argument("--decisions", type=int, default=2000, help="decision samples")
    parser.add_argument("--ingest", type=int, default=50_000, help="events to ingest")
    parser.add_argument("--rss-calls", default="20000,100000", help="RSS checkpoints ('' = skip)")
    parser.add_argument("--no-peers", action="store_true", help="skip Langfuse and LangSmith")
    parser.add_argument("--noop-endpoint", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.noop_endpoint:
        serve_noop()
        return 0
    if args.rss_child:
        rss_child([int(n) for n in args.rss_child.split(",")])
        return 0

    began = time.monotonic()
    print(
        f"{TOTAL_CALLS:,} model calls ({RUNS} runs x {CALLS_PER_RUN}) per mode and round,"
        f" median of {args.rounds} interleaved rounds; Python {platform.python_version()},"
        f" {os.cpu_count()} CPUs, {platform.machine()}; load average before: {load_average()}"
    )
    graph = build_graph()
    endpoint = None if args.no_peers else NoopEndpoint()
    built = build_modes(endpoint, args.postgres)
    modes: dict[str, tuple[str, Mode]] = built["modes"]
    try:
        with tempfile.TemporaryDirectory(prefix="finops-peers-") as tmp:
            times = interleaved_rounds(modes, graph, Path(tmp), args.rounds)
    finally:
        for peer in built["peers"]:
            peer.close()
        if endpoint is not None:
            endpoint.close()
    print_modes_table(modes, times, TOTAL_CALLS, "a")
    markdown_table(modes, times)
    print(f"load average after the rounds: {load_average()}")
    if not args.postgres:
        print("(PostgreSQL skipped: pass --postgres URL or set AGENT_FINOPS_TEST_POSTGRES_URL)")

    print(f"\nGuarded decision (check_before + check_after, recorded), {args.decisions} samples:")
    print("| backend | P50 ms | P99 ms |\n| --- | ---: | ---: |")
    for backend, s in decision_latency(args.postgres, args.decisions).items():
        print(f"| {backend} | {s['P50']:.3f} | {s['P99']:.3f} |")

    emit_rate, durable_rate = ingest_rate(args.ingest)
    print(
        f"\nLedger ingest, LedgerWriter into a SQLite file, {args.ingest:,} events one per emit:"
        f" {durable_rate:,.0f} events/s durable (emit + flush); emit alone {emit_rate:,.0f}/s"
    )
    if args.rss_calls:
        rss, backlog = rss_after([int(n) for n in args.rss_calls.split(",")])
        cells = ", ".join(f"{n:,} calls: {b / 2**20:.1f} MiB" for n, b in rss.items())
        first, last = min(rss), max(rss)
        growth = (rss[last] - rss[first]) / 1024 / ((last - first) / 1000 or 1)
        print(
            f"RSS of a tracking process after {cells} ({growth:+.1f} KiB per 1k calls);"
            f" the writer's largest backlog on the way: {backlog:,} record groups"
        )
    print(f"load average at the end: {load_average()}; took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
