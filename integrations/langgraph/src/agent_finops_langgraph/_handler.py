"""LangChain/LangGraph callback handler: translates callbacks into the run guard's moments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from agent_finops import CostTracker, PriceBook, SQLLedger, TokenUsage, normalize_usage
from agent_finops.approvals import ApprovalService
from agent_finops.exceptions import ConfigurationError
from agent_finops.guard import RunGuard
from agent_finops.ledger import SpanKind, SpanStatus
from agent_finops.policy import Policy, PolicyEngine
from agent_finops.pricing import Cost
from agent_finops_langgraph._request import reservation_tokens

__all__ = ["FinOpsCallbackHandler", "usage_from_llm_result"]

METADATA_KEY = "finops"
"""`config["metadata"]["finops"]`: tags for this invocation (or any nested runnable)."""
LLM_CACHE_SOURCE = "llm-cache"
"""`price_source` of a call LangChain answered from its LLM cache (it cost nothing)."""

AGENT_INTEGRATION = "langchain_create_agent"
"""`metadata["ls_integration"]` of every run inside a `langchain.agents.create_agent` graph."""
_INTERRUPT_ERRORS = frozenset({"GraphInterrupt", "NodeInterrupt", "GraphDrained"})
"""LangGraph exceptions that pause a run (it can resume from its checkpoint)."""
_CONTROL_FLOW = frozenset({"ParentCommand", "GraphBubbleUp"})
"""LangGraph exceptions that are control flow (a hand-off to the parent graph), not failures."""
RUN_ID_CACHE_SIZE = 100_000
"""Open LangChain runs whose id text a handler keeps (`str(UUID)` is slow; a run's id is
read at its start, by each child it opens and at its end, when it is dropped). A full cache
is cleared (runs that never ended), so it stays bounded."""


class FinOpsCallbackHandler(BaseCallbackHandler):
    """Prices every model and tool call of a LangChain/LangGraph run into the ledger.

    ```python
    handler = FinOpsCallbackHandler(CostTracker(ledger), policy=Policy.from_yaml("p.yaml"))
    graph.invoke(inputs, config={"callbacks": [handler]})
    ```

    A thin translation of LangChain callbacks into the `RunGuard`'s moments (run start,
    steps, before/after each model and tool call, run end); the guard owns the lifecycle,
    reservations and approvals. One handler can serve many runs, threads and event loops at
    once; it runs inline in both sync and async runs, and the ledger writes happen on a
    background thread.

    With a policy, a blocked call raises its typed exception (`BudgetExceeded`,
    `RateLimitExceeded`, `LoopDetected`, `MissingTags`, or `ApprovalRequired` for a pause)
    *before* the request is sent. Wrap nodes with `guard_node` (or use `FinOpsMiddleware`)
    to turn pauses into LangGraph interrupts and denies into a clean end of the run.
    Without a policy an internal error is logged and counted in `errors`, and the run goes
    on (unless `strict=True`).
    """

    run_inline = True

    def __init__(
        self,
        tracker: CostTracker | RunGuard,
        *,
        policy: Policy | PolicyEngine | None = None,
        approvals: ApprovalService | None = None,
        resume_target: str | None = None,
        strict: bool = False,
    ) -> None:
        """Record into `tracker` (or drive an existing `RunGuard`).

        Args:
            tracker: prices calls and writes the ledger; or a `RunGuard` to share.
            policy: the policy to enforce (see `RunGuard`).
            approvals: the approval service (default: from the policy's `approvals:`).
            resume_target: the name your app registers its resume function under.
            strict: re-raise internal errors (as `HandlerError`) and unknown prices.
        """
        super().__init__()
        self.guard = RunGuard.of(
            tracker,
            policy=policy,
            approvals=approvals,
            resume_target=resume_target,
            strict=strict,
            source="FinOpsCallbackHandler",
        )
        self.tracker = self.guard.tracker
        self._ids: dict[int, tuple[UUID, str]] = {}  # open runs' ids as text (`_id`)
        # Policy violations must reach the caller; our own internal errors are caught
        # before LangChain sees them unless strict.
        self.raise_error = self.guard.strict or self.guard.enforcing

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        prices: PriceBook | None = None,
        policy: Policy | None = None,
        strict: bool = False,
    ) -> FinOpsCallbackHandler:
        """A handler with its own tracker and ledger at `url` (default: SQLite file)."""
        ledger = SQLLedger.from_url(url)
        return cls(CostTracker(ledger, prices=prices, tags=tags), policy=policy, strict=strict)

    @property
    def policy(self) -> PolicyEngine | None:
        """The policy engine enforced, if any."""
        return self.guard.engine

    @property
    def errors(self) -> int:
        """Internal errors swallowed so far (each is logged)."""
        return self.guard.errors

    def flush(self) -> None:
        """Wait until everything recorded is in the ledger."""
        self.tracker.flush()

    def _id(self, run_id: UUID) -> str:
        """`str(run_id)` of a run that starts, kept until it ends (its children read it)."""
        text = str(run_id)
        ids = self._ids
        if len(ids) >= RUN_ID_CACHE_SIZE:
            ids.clear()  # runs that never ended: start afresh rather than grow
        # Keyed by identity (LangChain passes a run's one UUID object to its start, its end
        # and its children), the object kept alive with its text so its id stays its own.
        ids[id(run_id)] = (run_id, text)
        return text

    def _parent_id(self, parent_run_id: UUID | None) -> str | None:
        """`str(parent_run_id)`, from the cache when we saw that run start."""
        if parent_run_id is None:
            return None
        known = self._ids.get(id(parent_run_id))
        return known[1] if known is not None and known[0] is parent_run_id else str(parent_run_id)

    def _end_id(self, run_id: UUID) -> str:
        """`str(run_id)` of a run that ends (and is forgotten)."""
        known = self._ids.get(id(run_id))
        if known is not None and known[0] is run_id:
            self._ids.pop(id(run_id), None)
            return known[1]
        return str(run_id)

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
        """Open a span for a chain, graph or LangGraph node (a run, at the root)."""
        name = _name(serialized, kwargs)
        meta = metadata or {}
        parent = self._parent_id(parent_run_id)
        own: Mapping[str, str] | None = None
        if meta.get(METADATA_KEY) is not None or meta.get("ls_integration") == AGENT_INTEGRATION:
            own = self._agent_tag(self._own_tags(meta, parent), meta, parent, name)
        if parent is None:
            thread = meta.get("thread_id")
            self.guard.open_step(
                self._id(run_id),
                parent_id=None,
                name=name,
                kind="run",
                tags=own,
                thread_id=None if thread is None else str(thread)[:200],
            )
            return
        kind: SpanKind = "chain"
        node = None
        lg_node = meta.get("langgraph_node")
        if lg_node is not None and lg_node == name:
            # A node, or a compiled subgraph named like the node it is mounted as (the
            # usual `create_agent(name="researcher")`), which opens a chain with the node's
            # metadata directly under the node span: the same node, not a nested one.
            span = self.guard.span(parent)
            if span is None or span.kind != "node" or span.name != name:
                node, kind = lg_node, "node"
        self.guard.open_step(
            self._id(run_id),
            parent_id=parent,
            name=name,
            kind=kind,
            node=node,
            tags=own,
            # Plumbing chains (routing functions, sequences, channel writes) are not stored.
            persist=kind != "chain" or bool(own),
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the span."""
        self.guard.close_step(self._end_id(run_id))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the span as failed (interrupted, for a LangGraph interrupt)."""
        self._close(run_id, error)

    def _close(self, run_id: UUID, error: BaseException) -> None:
        kind = type(error).__name__
        status: SpanStatus = "ok"
        failure: BaseException | None = error
        if kind in _INTERRUPT_ERRORS:
            status, failure = "interrupted", None
        elif kind in _CONTROL_FLOW:
            failure = None  # a hand-off, not a failure
        self.guard.close_step(self._end_id(run_id), status=status, error=failure)

    def _agent_tag(
        self,
        own: Mapping[str, str] | None,
        meta: Mapping[str, Any],
        parent: str | None,
        name: str,
    ) -> Mapping[str, str] | None:
        """A `create_agent` graph is an agent: its calls get `agent=<its name>`.

        Unless an `agent` tag is set already (given, or inherited from an enclosing agent's
        own tag), so reports group its `model` and `tools` nodes under the agent.
        """
        if meta.get("ls_integration") != AGENT_INTEGRATION or (own and "agent" in own):
            return own
        span = self.guard.span(parent) if parent else None
        if span is not None and "agent" in span.tags:
            return own  # inside the agent already (its nodes carry the same metadata)
        agent = meta.get("lc_agent_name") or name
        return {**(own or {}), "agent": str(agent)[:256]}

    def _own_tags(self, meta: Mapping[str, Any], parent: str | None) -> Mapping[str, str] | None:
        tags = meta.get(METADATA_KEY)
        if tags is not None and not isinstance(tags, Mapping):
            raise ConfigurationError(
                "metadata['finops'] must be a mapping of tag names to values",
                source="config",
                field="metadata.finops",
                value=tags,
                expected="dict",
            )
        if not tags or parent is None:
            return tags
        span = self.guard.span(parent)
        # LangChain passes a run's metadata down to every child: tags the parent already
        # has are inherited, not this span's own.
        if span is not None and all(span.tags.get(k) == v for k, v in tags.items()):
            return None
        return tags

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
        """Open a model span (with a policy: reserve the call's worst case first)."""
        self._model_start(serialized, messages, run_id, parent_run_id, metadata, kwargs)

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
        self._model_start(serialized, prompts, run_id, parent_run_id, metadata, kwargs)

    def _model_start(
        self,
        serialized: dict[str, Any] | None,
        prompt: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        params: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        meta = metadata or {}
        parent = self._parent_id(parent_run_id)
        model = (
            params.get("model")
            or params.get("model_name")
            or meta.get("ls_model_name")
            or params.get("model_id")
        )
        own = self._own_tags(meta, parent) if parent else meta.get(METADATA_KEY)
        provider = meta.get("ls_provider")
        input_tokens, max_output = 0, None
        if self.guard.enforcing:  # an upper bound of everything sent, and the output ceiling
            input_tokens, max_output = reservation_tokens(
                prompt,
                params,
                prices=self.tracker.prices,
                model=model,
                provider=provider,
                metadata=meta,
            )
        self.guard.before_model_call(
            self._id(run_id),
            parent_id=parent,
            name=_name(serialized, kwargs),
            model=model,
            provider=provider,
            input_tokens=input_tokens,
            max_output_tokens=max_output,
            tags=own,
            step_key=meta.get("langgraph_checkpoint_ns"),
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Price the call from its reported usage (the final aggregate when streaming)."""
        try:
            usage, served, cached = usage_from_llm_result(response)
            error = None
        except ConfigurationError as exc:  # a usage shape we do not know: unknown, not lost
            usage, served, cached, error = None, None, False, exc
        cost = None
        if cached:
            cost = Cost(amount=Decimal(0), source=LLM_CACHE_SOURCE, version="-", model_ref=served)
        self.guard.after_model_call(
            self._end_id(run_id), usage=usage, model=served, cost=cost, usage_error=error
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed model span (no usage is reported for a failed call)."""
        self.guard.model_call_failed(self._end_id(run_id), error)

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
        """Open a tool span (with a policy: check loops and reserve its fee first)."""
        meta = metadata or {}
        parent = self._parent_id(parent_run_id)
        inputs = kwargs.get("inputs")
        self.guard.before_tool_call(
            self._id(run_id),
            parent_id=parent,
            name=_name(serialized, kwargs),
            args=inputs if inputs is not None else input_str,
            tags=self._own_tags(meta, parent) if parent else meta.get(METADATA_KEY),
            step_key=meta.get("langgraph_checkpoint_ns"),
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the tool call (with its fee, if it has one) and close the span."""
        self.guard.after_tool_call(self._end_id(run_id), output=output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed tool span (and give back its fee reservation)."""
        self.guard.tool_call_failed(self._end_id(run_id), error)


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
