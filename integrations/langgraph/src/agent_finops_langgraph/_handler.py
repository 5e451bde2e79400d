"""LangChain/LangGraph callback handler: every node, model and tool call, priced, as spans."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from agent_finops import CostTracker, PriceBook, SQLLedger, TokenUsage, normalize_usage
from agent_finops.exceptions import (
    ConfigurationError,
    FinOpsError,
    HandlerError,
    PolicyViolation,
)
from agent_finops.ledger import SpanRecord
from agent_finops.policy import PolicyEngine

__all__ = ["FinOpsCallbackHandler", "estimate_input_tokens", "usage_from_llm_result"]

log = logging.getLogger("agent_finops.langgraph")

METADATA_KEY = "finops"
"""`config["metadata"]["finops"]`: tags for this invocation (or any nested runnable)."""

_INTERRUPT_ERRORS = frozenset({"GraphInterrupt", "NodeInterrupt", "GraphDrained"})
"""LangGraph exceptions that pause a run (it can resume from its checkpoint)."""
_CONTROL_FLOW = frozenset({"ParentCommand", "GraphBubbleUp"})
"""LangGraph exceptions that are control flow (a hand-off to the parent graph), not failures."""


class FinOpsCallbackHandler(BaseCallbackHandler):
    """Prices every model and tool call of a LangChain/LangGraph run into the ledger.

    ```python
    handler = FinOpsCallbackHandler.from_url("sqlite:///finops.sqlite", tags={"team": "support"})
    graph.invoke(inputs, config={"callbacks": [handler]})
    ```

    One handler can serve many runs, threads and event loops at once. It runs inline (no
    thread hop) in both sync and async runs; its work is in-memory and the ledger writes
    happen on a background thread.

    Failure behaviour: without a policy, an internal error is logged and counted in
    `errors` and the user's run carries on (unless `strict=True`). With a policy the
    handler fails *closed*: a call it cannot check (no span, bad tags, the budget database
    unreachable) is not sent unchecked; the error reaches the caller.
    """

    run_inline = True

    def __init__(
        self,
        tracker: CostTracker,
        *,
        policy: PolicyEngine | None = None,
        strict: bool = False,
    ) -> None:
        """Record into `tracker`.

        Args:
            tracker: prices calls and writes the ledger.
            policy: enforce this policy engine's rules: a blocked call raises its typed
                exception (`BudgetExceeded`, `RateLimitExceeded`, `LoopDetected`,
                `MissingTags`, or `ApprovalRequired` for a pause) *before* the request is
                sent. Wrap nodes with `guard_node` (or use `FinOpsMiddleware`) to turn
                pauses into LangGraph interrupts and denies into a clean end of the run.
            strict: re-raise internal errors (as `HandlerError`) and unknown prices.
        """
        super().__init__()
        if policy is not None and policy.tracker is not tracker:
            raise ValueError("the policy engine must be built on the same tracker")
        self.tracker = tracker
        self.policy = policy
        self.strict = strict
        # Policy violations must reach the caller; our own internal errors are caught
        # before LangChain sees them unless strict.
        self.raise_error = strict or policy is not None
        self.errors = 0
        """Internal errors swallowed so far (each is logged)."""
        self._lock = threading.Lock()
        self._models: dict[UUID, tuple[str | None, str | None]] = {}
        self._runs: dict[str, tuple[str, str | None]] = {}  # trace id -> (run key, thread id)
        self._inflight: dict[str, set[str]] = {}  # trace id -> calls holding a reservation

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        prices: PriceBook | None = None,
        strict: bool = False,
    ) -> FinOpsCallbackHandler:
        """A handler with its own tracker and ledger at `url` (default: SQLite file)."""
        ledger = SQLLedger.from_url(url)
        return cls(CostTracker(ledger, prices=prices, tags=tags), strict=strict)

    def flush(self) -> None:
        """Wait until everything recorded is in the ledger."""
        self.tracker.flush()

    def run_identity(self, trace_id: str) -> tuple[str, str | None]:
        """(run key, thread id) the policy uses for a trace: the LangGraph thread if any."""
        with self._lock:
            return self._runs.get(trace_id, (trace_id, None))

    # -- plumbing -----------------------------------------------------------------------

    def _failed(self, where: str, exc: Exception) -> None:
        if self.strict or (isinstance(exc, FinOpsError) and self.tracker.prices.strict):
            if isinstance(exc, FinOpsError):
                raise exc
            raise HandlerError(f"agent-finops handler failed in {where}: {exc}") from exc
        with self._lock:
            self.errors += 1
        log.exception("agent-finops handler error in %s (run continues)", where)

    def _open(
        self,
        where: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: Any,
        metadata: Mapping[str, Any] | None,
    ) -> SpanRecord | None:
        try:
            tags = metadata.get(METADATA_KEY) if metadata else None
            if parent_run_id is None and metadata and metadata.get("thread_id") is not None:
                # The LangGraph thread links a run to its resumptions (and their approvals).
                given = tags if isinstance(tags, Mapping) else {}
                tags = {"thread_id": str(metadata["thread_id"])[:256], **given}
            node = None
            if kind == "chain" and metadata:
                lg_node = metadata.get("langgraph_node")
                if lg_node is not None and lg_node == name:
                    # A compiled subgraph named like the node it is mounted as (the usual
                    # `create_agent(name="researcher")`) opens a chain with the node's own
                    # metadata directly under the node span: the same node, not a nested one.
                    parent = self.tracker.span(str(parent_run_id)) if parent_run_id else None
                    if parent is None or parent.kind != "node" or parent.name != name:
                        node, kind = lg_node, "node"
            return self.tracker.start_span(
                str(run_id),
                parent_span_id=str(parent_run_id) if parent_run_id else None,
                name=name,
                kind=kind,
                node=node,
                tags=tags if isinstance(tags, Mapping) else None,
            )
        except Exception as exc:
            if self.policy is not None and isinstance(exc, ConfigurationError):
                raise  # bad tags: a policy must not go quiet on a configuration mistake
            self._failed(where, exc)
            return None

    @staticmethod
    def _checked_span(span: SpanRecord | None, run_id: UUID) -> SpanRecord:
        """The span of a call about to be checked; fail closed if it could not be opened."""
        if span is None:
            raise HandlerError(
                f"agent-finops could not open a span for call {run_id}; with a policy it is "
                "not sent unchecked (see the logged error)"
            )
        return span

    def _enforce(self, span: SpanRecord, decision: Any) -> None:
        """Raise a blocked decision's error, or note the call's reservation as in flight.

        A blocked call's span is closed as `stopped`; an allowed call's reservation stays
        in flight until the call reports back (or its run ends).
        """
        if decision.blocked and decision.error is not None:
            self.tracker.end_span(span.span_id, status="stopped", error=decision.error)
            raise decision.error
        with self._lock:
            self._inflight.setdefault(span.trace_id, set()).add(span.span_id)

    def _landed(self, run_id: UUID) -> str | None:
        """The call reported back: its reservation is no longer in flight. Its trace id."""
        span = self.tracker.span(str(run_id))
        if span is None:
            return None
        with self._lock:
            calls = self._inflight.get(span.trace_id)
            if calls is not None:
                calls.discard(span.span_id)
        return span.trace_id

    def _start(
        self,
        where: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: Any,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        span = self._open(where, run_id, parent_run_id, name, kind, metadata)
        if span is None or self.policy is None:
            return
        if span.parent_span_id is None:
            thread = metadata.get("thread_id") if metadata else None
            thread_id = str(thread) if thread is not None else None
            run_key = thread_id or span.trace_id
            # A new invocation: no stale stop carries over; open approvals are looked up.
            self.policy.begin_run(run_key, thread_id=thread_id)
            decision = self.policy.check_run_start(span.trace_id, span.tags, run_key=run_key)
            if decision.blocked and decision.error is not None:
                self.tracker.end_span(span.span_id, status="stopped", error=decision.error)
                raise decision.error
            with self._lock:
                self._runs[span.trace_id] = (run_key, thread_id)
        elif span.kind == "node":
            run_key, thread_id = self.run_identity(span.trace_id)
            # A blocked step is kept pending: the next guarded call stops there.
            self.policy.check_step(
                trace_id=span.trace_id,
                run_key=run_key,
                tags=span.tags,
                step=span.name,
                thread_id=thread_id,
            )

    def _end(self, where: str, run_id: UUID, error: BaseException | None = None) -> None:
        try:
            kind = type(error).__name__ if error is not None else None
            if kind in _INTERRUPT_ERRORS:
                span = self.tracker.end_span(str(run_id), status="interrupted")
            elif kind in _CONTROL_FLOW:
                span = self.tracker.end_span(str(run_id))  # a hand-off, not a failure
            elif isinstance(error, PolicyViolation):
                span = self.tracker.end_span(str(run_id), status="stopped", error=error)
            else:
                span = self.tracker.end_span(str(run_id), error=error)
            if self.policy is not None and span is not None and span.parent_span_id is None:
                self._end_run(span)
        except Exception as exc:
            self._failed(where, exc)

    def _end_run(self, root: SpanRecord) -> None:
        assert self.policy is not None
        with self._lock:
            run_key, _ = self._runs.pop(root.trace_id, (root.trace_id, None))
            stranded = self._inflight.pop(root.trace_id, set())
        # Calls LangChain never reported back (a cancelled task, another handler raising
        # after we reserved): give their reservations back now, not after the TTL.
        for call_id in stranded:
            self.policy.release(call_id)
            with self._lock:
                self._models.pop(UUID(call_id), None)
        self.policy.end_run(run_key, paused=root.status == "interrupted")

    # -- chains and graph nodes ---------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a span for a chain, graph or LangGraph node."""
        self._start(
            "on_chain_start", run_id, parent_run_id, _name(serialized, kwargs), "chain", metadata
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the span."""
        self._end("on_chain_end", run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the span as failed (or interrupted, for a LangGraph interrupt)."""
        self._end("on_chain_error", run_id, error)

    # -- model calls --------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a model span (and, with a policy, reserve the call's worst case first)."""
        self._model_start(
            "on_chat_model_start", serialized, messages, run_id, parent_run_id, metadata, kwargs
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a model span for a completion-style LLM."""
        self._model_start(
            "on_llm_start", serialized, prompts, run_id, parent_run_id, metadata, kwargs
        )

    def _model_start(
        self,
        where: str,
        serialized: dict[str, Any] | None,
        prompt: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        params: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        meta = metadata or {}
        model = (
            params.get("model")
            or params.get("model_name")
            or meta.get("ls_model_name")
            or params.get("model_id")
        )
        provider = meta.get("ls_provider")
        with self._lock:
            self._models[run_id] = (model, provider)
        opened = self._open(where, run_id, parent_run_id, _name(serialized, kwargs), "model", meta)
        if self.policy is None:
            return
        span = self._checked_span(opened, run_id)
        run_key, thread_id = self.run_identity(span.trace_id)
        try:
            decision = self.policy.check_before_model_call(
                call_id=span.span_id,
                trace_id=span.trace_id,
                run_key=run_key,
                thread_id=thread_id,
                tags=span.tags,
                model=model,
                provider=provider,
                input_tokens=estimate_input_tokens(prompt),
                max_output_tokens=_max_output_tokens(params),
            )
        except BaseException:
            with self._lock:
                self._models.pop(run_id, None)
            self.tracker.end_span(span.span_id, status="error", error="policy check failed")
            raise
        if decision.blocked:
            with self._lock:
                self._models.pop(run_id, None)
        self._enforce(span, decision)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Price the call from its reported usage (the final aggregate when streaming)."""
        settled = False
        try:
            with self._lock:
                requested, provider = self._models.pop(run_id, (None, None))
            try:
                usage, served, cached = usage_from_llm_result(response)
            except ConfigurationError as exc:  # a usage shape we do not know: unknown, not lost
                usage, served, cached = None, None, False
                self._failed("on_llm_end", exc)
            event = self.tracker.record_model_call(
                str(run_id),
                model=served or requested,
                usage=usage,
                provider=provider,
                cached=cached,
            )
            if self.policy is not None:
                tokens = usage.total_tokens if usage is not None else None
                self.policy.check_after_model_call(str(run_id), cost=event.cost, tokens=tokens)
                settled = True
        except Exception as exc:
            self._failed("on_llm_end", exc)
        finally:
            if self.policy is not None and not settled:
                self._settle_unknown(run_id, tool=False)
            if self.policy is not None:
                self._landed(run_id)
            self._end("on_llm_end", run_id)

    def _settle_unknown(self, run_id: UUID, *, tool: bool) -> None:
        """The call ran but could not be priced or settled: charge its reservation."""
        assert self.policy is not None
        try:
            if tool:
                self.policy.check_after_tool_call(str(run_id), cost=None)
            else:
                self.policy.check_after_model_call(str(run_id), cost=None, tokens=None)
        except Exception:
            log.exception("agent-finops: settling call %s failed; it expires after its TTL", run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed model span (no usage is reported for a failed call)."""
        with self._lock:
            self._models.pop(run_id, None)
        if self.policy is not None:
            try:
                self.policy.release(str(run_id))
            except Exception as exc:
                self._failed("on_llm_error", exc)
        if self.policy is not None:
            self._landed(run_id)
        self._end("on_llm_error", run_id, error)

    # -- tools --------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a tool span (and, with a policy, check loops and reserve its fee first)."""
        name = _name(serialized, kwargs)
        opened = self._open("on_tool_start", run_id, parent_run_id, name, "tool", metadata)
        if self.policy is None:
            return
        span = self._checked_span(opened, run_id)
        run_key, thread_id = self.run_identity(span.trace_id)
        fee = self.tracker.prices.tool_fee(name)
        estimate = None
        if fee is not None:
            unknown_units = self.policy.policy.fallback_reservation_usd if fee.per_unit else 0
            estimate = fee.per_call + unknown_units
        inputs = kwargs.get("inputs")
        try:
            decision = self.policy.check_before_tool_call(
                call_id=span.span_id,
                trace_id=span.trace_id,
                run_key=run_key,
                thread_id=thread_id,
                tags=span.tags,
                tool=name,
                args=inputs if inputs is not None else input_str,
                fee_estimate=estimate,
            )
        except BaseException:
            self.tracker.end_span(span.span_id, status="error", error="policy check failed")
            raise
        self._enforce(span, decision)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the tool's fee, if it has one, and close the span."""
        settled = False
        try:
            span = self.tracker.span(str(run_id))
            if span is not None:
                event = self.tracker.record_tool_call(str(run_id), tool=span.name, output=output)
                if self.policy is not None:
                    cost = event.cost if event is not None else Decimal(0)
                    self.policy.check_after_tool_call(str(run_id), cost=cost)
                    settled = True
        except Exception as exc:
            self._failed("on_tool_end", exc)
        finally:
            if self.policy is not None and not settled:
                self._settle_unknown(run_id, tool=True)
            if self.policy is not None:
                self._landed(run_id)
            self._end("on_tool_end", run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed tool span (and give back its fee reservation)."""
        if self.policy is not None:
            try:
                self.policy.release(str(run_id))
            except Exception as exc:
                self._failed("on_tool_error", exc)
        if self.policy is not None:
            self._landed(run_id)
        self._end("on_tool_error", run_id, error)


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name[:200]
    if serialized:
        if isinstance(serialized.get("name"), str):
            return str(serialized["name"])[:200]
        ids = serialized.get("id")
        if isinstance(ids, Sequence) and ids:
            return str(ids[-1])[:200]
    return "unnamed"


CHARS_PER_TOKEN = 3
"""Conservative characters-per-token for estimating input before a call (real tokenizers
average about 4 for English, so this over-reserves a little, never under)."""
_PER_MESSAGE_OVERHEAD = 8


def estimate_input_tokens(payload: Any) -> int:
    """Worst-case input tokens of a prompt (chat messages or completion prompts)."""
    if not payload:
        return 0
    total = 0
    for item in payload:
        for message in item if isinstance(item, list) else [item]:
            content = getattr(message, "content", message)
            text = content if isinstance(content, str) else str(content)
            extra = getattr(message, "tool_calls", None)
            if extra:
                text += str(extra)
            total += -(-len(text) // CHARS_PER_TOKEN) + _PER_MESSAGE_OVERHEAD
    return total


def _max_output_tokens(params: Mapping[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict"):
        value = params.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def usage_from_llm_result(response: LLMResult) -> tuple[TokenUsage | None, str | None, bool]:
    """Usage, served model name and "LLM-cache hit" from an `LLMResult`.

    Chat models put `usage_metadata` on the message (for a stream, on the aggregated final
    message, which is where `stream_usage=True` puts it). Completion LLMs put raw provider
    usage in `llm_output`. Returns `(None, model, False)` when nothing was reported. A
    LangChain cache hit keeps the original usage and adds `total_cost: 0`: it cost nothing.
    """
    served: str | None = None
    for generations in response.generations:
        for gen in generations:
            message = getattr(gen, "message", None)
            if message is None:
                continue
            meta = getattr(message, "response_metadata", None) or {}
            served = served or meta.get("model_name") or meta.get("model")
            usage = getattr(message, "usage_metadata", None)
            if usage:
                cached = usage.get("total_cost", None) == 0
                clean = {k: v for k, v in usage.items() if k != "total_cost"} if cached else usage
                return normalize_usage(clean), served, cached
    output = response.llm_output or {}
    served = served or output.get("model_name") or output.get("model")
    for key in ("token_usage", "usage"):
        raw = output.get(key)
        if raw:
            return normalize_usage(raw), served, False
    return None, served, False
