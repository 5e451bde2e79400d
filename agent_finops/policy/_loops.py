"""Loop detection: repeated identical tool calls, model-call bursts and A-B ping-pong.

`LoopDetector` is in-memory and per trace (one run): it only observes and reports
`LoopHit`s; what to do about a hit (deny, pause, warn, or only record in shadow mode) is
the rule's `action`, applied by the caller. Memory is bounded: per trace, a capped number
of distinct tool-call signatures (least recently seen forgotten first), fixed-length
deques for model-call times and steps; and a capped number of traces (least recently
active forgotten first), so a caller that never calls `forget` does not leak.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from agent_finops.exceptions import LoopDetected
from agent_finops.policy._model import (
    Action,
    LoopKind,
    LoopRule,
    ModelCallBurstRule,
    PingPongRule,
    RepeatedToolCallRule,
)
from agent_finops.policy._periods import format_duration

__all__ = [
    "DEFAULT_MAX_SIGNATURES_PER_TRACE",
    "DEFAULT_MAX_TRACES",
    "LoopDetector",
    "LoopHit",
    "tool_call_signature",
]

DEFAULT_MAX_TRACES: Final = 10_000
"""Traces remembered at once; the least recently active is forgotten beyond this."""
DEFAULT_MAX_SIGNATURES_PER_TRACE: Final = 1_024
"""Distinct (tool, arguments) pairs counted per trace; the least recently seen goes first."""
MAX_LEVELS_PER_TRACE: Final = 64
"""Graph levels whose hand-overs are followed per trace; the least recently used goes first."""


@dataclass(frozen=True, slots=True)
class LoopHit:
    """A loop rule tripped. `observed` and `limit` are in the rule's own terms.

    repeated_tool_call: identical calls so far vs `max_repeats` (trips at `observed >= limit`);
    model_call_burst: calls within the window vs `max_calls` (trips at `observed > limit`);
    ping_pong: A,B round trips vs `max_cycles` (trips at `observed >= limit`).
    """

    rule_id: str
    """The rule that tripped."""
    kind: LoopKind
    """Which loop pattern was seen."""
    observed: int
    """What was counted."""
    limit: int
    """The rule's configured number."""
    detail: str
    """One human sentence: which tool, which nodes, how many, how fast."""
    trace_id: str
    """The run the loop is in."""
    action: Action
    """The rule's action: deny, pause or warn."""
    shadow: bool = False
    """The rule is in shadow mode: record the hit, never block."""

    def to_exception(
        self, *, trace_id: str | None = None, thread_id: str | None = None
    ) -> LoopDetected:
        """The `LoopDetected` error to raise for this hit.

        The detector counts per run (the thread when there is one): give the actual
        `trace_id` and `thread_id` so the message names the right one.
        """
        trace = trace_id or self.trace_id
        where = f"thread {thread_id!r}" if thread_id else f"trace {trace!r}"
        return LoopDetected(
            f"loop rule {self.rule_id!r} tripped in {where}: {self.detail}",
            rule_id=self.rule_id,
            limit=self.limit,
            observed=self.observed,
            trace_id=trace,
            unit=self.kind,
        )


def tool_call_signature(tool: str, args: Any) -> bytes:
    """Digest of a tool name and its arguments as canonical JSON (key order does not matter).

    A string that holds JSON is parsed first, so `'{"a": 1, "b": 2}'` and the mapping
    `{"b": 2, "a": 1}` are the same call. Values JSON cannot hold are compared by `str()`.
    """
    if isinstance(args, str | bytes):
        try:
            args = json.loads(args)
        except ValueError:
            args = args.decode(errors="replace") if isinstance(args, bytes) else args
    canonical = json.dumps(
        [tool, args], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).digest()


@dataclass(slots=True)
class _TraceState:
    tool_calls: OrderedDict[bytes, int] = field(default_factory=OrderedDict)
    model_calls: dict[str, deque[float]] = field(default_factory=dict)
    steps: OrderedDict[str, deque[str]] = field(default_factory=OrderedDict)
    """Per graph level (the parent node path): the agents/nodes entered there, in order."""


class LoopDetector:
    """Watches each trace for the loop patterns of a policy's `loops` rules. Thread-safe."""

    def __init__(
        self,
        rules: Iterable[LoopRule],
        *,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_signatures_per_trace: int = DEFAULT_MAX_SIGNATURES_PER_TRACE,
    ) -> None:
        """Watch for `rules` (usually `policy.loops`), remembering at most `max_traces` runs."""
        if max_traces < 1 or max_signatures_per_trace < 1:
            raise ValueError("max_traces and max_signatures_per_trace must be at least 1")
        rules = tuple(rules)
        self._repeat_rules = [r for r in rules if isinstance(r, RepeatedToolCallRule)]
        self._burst_rules = [r for r in rules if isinstance(r, ModelCallBurstRule)]
        self._pingpong_rules = [r for r in rules if isinstance(r, PingPongRule)]
        self._steps_kept = 2 * max((r.max_cycles for r in self._pingpong_rules), default=0)
        self._max_traces = max_traces
        self._max_signatures = max_signatures_per_trace
        self._traces: OrderedDict[str, _TraceState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Number of traces currently remembered."""
        with self._lock:
            return len(self._traces)

    def observe_tool_call(self, trace_id: str, tool: str, args: Any) -> list[LoopHit]:
        """Record a tool call; hits for every repeated-call rule it trips."""
        if not self._repeat_rules:
            return []
        signature = tool_call_signature(tool, args)
        with self._lock:
            calls = self._state(trace_id).tool_calls
            count = calls.pop(signature, 0) + 1
            calls[signature] = count
            if len(calls) > self._max_signatures:
                calls.popitem(last=False)
        return [
            LoopHit(
                rule_id=rule.id,
                kind=rule.kind,
                observed=count,
                limit=rule.max_repeats,
                detail=f"tool {tool!r} called {count} times with the same arguments "
                f"(limit {rule.max_repeats})",
                trace_id=trace_id,
                action=rule.action,
                shadow=rule.shadow,
            )
            for rule in self._repeat_rules
            if count >= rule.max_repeats
        ]

    def observe_model_call(self, trace_id: str, now: datetime) -> list[LoopHit]:
        """Record a model call at `now` (timezone-aware); hits for every burst rule it trips."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware, got naive {now!r}")
        if not self._burst_rules:
            return []
        stamp = now.timestamp()
        hits: list[LoopHit] = []
        with self._lock:
            state = self._state(trace_id)
            for rule in self._burst_rules:
                times = state.model_calls.get(rule.id)
                if times is None:
                    times = state.model_calls[rule.id] = deque(maxlen=rule.max_calls + 1)
                times.append(stamp)
                window = rule.window.total_seconds()
                while times and stamp - times[0] >= window:
                    times.popleft()
                if len(times) > rule.max_calls:
                    hits.append(
                        LoopHit(
                            rule_id=rule.id,
                            kind=rule.kind,
                            observed=len(times),
                            limit=rule.max_calls,
                            detail=f"{len(times)} model calls within "
                            f"{format_duration(rule.window)} (limit {rule.max_calls})",
                            trace_id=trace_id,
                            action=rule.action,
                            shadow=rule.shadow,
                        )
                    )
        return hits

    @property
    def watches_steps(self) -> bool:
        """Whether any rule needs `observe_step` (ping-pong)."""
        return bool(self._pingpong_rules)

    def observe_step(self, trace_id: str, node_or_agent: str, *, level: str = "") -> list[LoopHit]:
        """Record control passing to a node or agent; hits for every ping-pong rule it trips.

        Hand-overs are followed per `level` (the graph or crew the step belongs to, e.g. the
        parent node path), so nodes nested inside a sub-agent do not break up, or fake, the
        alternation of the agents around them. A step into the node that ran last is not a
        hand-over and is ignored, so a node looping on itself is not ping-pong (a burst or
        cost cap catches that).
        """
        if not self._pingpong_rules:
            return []
        with self._lock:
            levels = self._state(trace_id).steps
            steps = levels.get(level)
            if steps is None:
                steps = levels[level] = deque()
                if len(levels) > MAX_LEVELS_PER_TRACE:
                    levels.popitem(last=False)
            else:
                levels.move_to_end(level)
            if steps and steps[-1] == node_or_agent:
                return []
            steps.append(node_or_agent)
            if len(steps) > self._steps_kept:
                steps.popleft()
            run = _alternating_run(steps)
            if run < 2:
                return []
            first, second = steps[-run], steps[-run + 1]
        cycles = run // 2
        return [
            LoopHit(
                rule_id=rule.id,
                kind=rule.kind,
                observed=cycles,
                limit=rule.max_cycles,
                detail=f"{first!r} and {second!r} handed over to each other "
                f"{cycles} times in a row (limit {rule.max_cycles})",
                trace_id=trace_id,
                action=rule.action,
                shadow=rule.shadow,
            )
            for rule in self._pingpong_rules
            if cycles >= rule.max_cycles
        ]

    def forget(self, trace_id: str) -> None:
        """Drop everything remembered about a trace (call when the run ends)."""
        with self._lock:
            self._traces.pop(trace_id, None)

    def _state(self, trace_id: str) -> _TraceState:
        # Caller holds the lock.
        state = self._traces.get(trace_id)
        if state is None:
            state = self._traces[trace_id] = _TraceState()
            if len(self._traces) > self._max_traces:
                self._traces.popitem(last=False)
        else:
            self._traces.move_to_end(trace_id)
        return state


def _alternating_run(steps: deque[str]) -> int:
    """Length of the longest suffix of `steps` that alternates between two names."""
    items = list(steps)
    if len(items) < 2:
        return len(items)
    run = 2
    for index in range(len(items) - 3, -1, -1):
        if items[index] != items[index + 2]:
            break
        run += 1
    return run
