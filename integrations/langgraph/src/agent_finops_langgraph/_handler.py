"""LangChain/LangGraph callback handler: every node, model and tool call, priced, as spans."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from agent_finops import CostTracker, PriceBook, SQLLedger, TokenUsage, normalize_usage
from agent_finops.exceptions import FinOpsError, HandlerError

__all__ = ["FinOpsCallbackHandler", "usage_from_llm_result"]

log = logging.getLogger("agent_finops.langgraph")

METADATA_KEY = "finops"
"""`config["metadata"]["finops"]`: tags for this invocation (or any nested runnable)."""

_INTERRUPT_ERRORS = frozenset({"GraphInterrupt", "NodeInterrupt", "ParentCommand", "GraphBubbleUp"})


class FinOpsCallbackHandler(BaseCallbackHandler):
    """Prices every model and tool call of a LangChain/LangGraph run into the ledger.

    ```python
    handler = FinOpsCallbackHandler.from_url("sqlite:///finops.sqlite", tags={"team": "support"})
    graph.invoke(inputs, config={"callbacks": [handler]})
    ```

    One handler can serve many runs, threads and event loops at once. It runs inline (no
    thread hop) in both sync and async runs; its work is in-memory and the ledger writes
    happen on a background thread. An internal error is logged and counted in `errors` and
    the user's run carries on, unless `strict=True`.
    """

    run_inline = True

    def __init__(
        self,
        tracker: CostTracker,
        *,
        strict: bool = False,
    ) -> None:
        """Record into `tracker`; `strict=True` re-raises internal errors and unknown prices."""
        super().__init__()
        self.tracker = tracker
        self.strict = strict
        self.raise_error = strict
        self.errors = 0
        """Internal errors swallowed so far (each is logged)."""
        self._lock = threading.Lock()
        self._models: dict[UUID, tuple[str | None, str | None]] = {}

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

    # -- plumbing -----------------------------------------------------------------------

    def _failed(self, where: str, exc: Exception) -> None:
        if self.strict or (isinstance(exc, FinOpsError) and self.tracker.prices.strict):
            if isinstance(exc, FinOpsError):
                raise exc
            raise HandlerError(f"agent-finops handler failed in {where}: {exc}") from exc
        with self._lock:
            self.errors += 1
        log.exception("agent-finops handler error in %s (run continues)", where)

    def _start(
        self,
        where: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: Any,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        try:
            tags = metadata.get(METADATA_KEY) if metadata else None
            node = None
            if kind == "chain" and metadata:
                lg_node = metadata.get("langgraph_node")
                if lg_node is not None and lg_node == name:
                    node, kind = lg_node, "node"
            self.tracker.start_span(
                str(run_id),
                parent_span_id=str(parent_run_id) if parent_run_id else None,
                name=name,
                kind=kind,
                node=node,
                tags=tags if isinstance(tags, Mapping) else None,
            )
        except Exception as exc:
            self._failed(where, exc)

    def _end(self, where: str, run_id: UUID, error: BaseException | None = None) -> None:
        try:
            if error is not None and type(error).__name__ in _INTERRUPT_ERRORS:
                self.tracker.end_span(str(run_id), status="interrupted")
            else:
                self.tracker.end_span(str(run_id), error=error)
        except Exception as exc:
            self._failed(where, exc)

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
        """Open a model span and remember the requested model and provider."""
        self._model_start(
            "on_chat_model_start", serialized, run_id, parent_run_id, metadata, kwargs
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
        self._model_start("on_llm_start", serialized, run_id, parent_run_id, metadata, kwargs)

    def _model_start(
        self,
        where: str,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        try:
            params = kwargs.get("invocation_params") or {}
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
        except Exception as exc:
            self._failed(where, exc)
        self._start(where, run_id, parent_run_id, _name(serialized, kwargs), "model", metadata)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Price the call from its reported usage (the final aggregate when streaming)."""
        try:
            with self._lock:
                requested, provider = self._models.pop(run_id, (None, None))
            usage, served = usage_from_llm_result(response)
            self.tracker.record_model_call(
                str(run_id), model=served or requested, usage=usage, provider=provider
            )
        except Exception as exc:
            self._failed("on_llm_end", exc)
        finally:
            self._end("on_llm_end", run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed model span (no usage is reported for a failed call)."""
        with self._lock:
            self._models.pop(run_id, None)
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
        """Open a tool span."""
        self._start(
            "on_tool_start", run_id, parent_run_id, _name(serialized, kwargs), "tool", metadata
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the tool's fee, if it has one, and close the span."""
        try:
            span = self.tracker.span(str(run_id))
            if span is not None:
                self.tracker.record_tool_call(str(run_id), tool=span.name, output=output)
        except Exception as exc:
            self._failed("on_tool_end", exc)
        finally:
            self._end("on_tool_end", run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a failed tool span."""
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


def usage_from_llm_result(response: LLMResult) -> tuple[TokenUsage | None, str | None]:
    """Usage and served model name from an `LLMResult` (chat or completion, streamed or not).

    Chat models put `usage_metadata` on the message (for a stream, on the aggregated final
    message, which is where `stream_usage=True` puts it). Completion LLMs put raw provider
    usage in `llm_output`. Returns `(None, model)` when nothing was reported.
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
                return normalize_usage(usage), served
    output = response.llm_output or {}
    served = served or output.get("model_name") or output.get("model")
    for key in ("token_usage", "usage"):
        raw = output.get(key)
        if raw:
            return normalize_usage(raw), served
    return None, served
