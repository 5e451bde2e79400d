"""End to end: a LangGraph graph calling the real `ChatOpenAI` (against a local fake server).

Each test runs the real `langchain_openai.ChatOpenAI` and `openai` SDK over HTTP to the fake
OpenAI server in `tests/fakes/openai_server.py`, with `FinOpsCallbackHandler` attached, and
checks the ledger to the last Decimal digit against a bill worked out here by hand from the
published gpt-4o-mini price, never through our pricing code.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode

from agent_finops import (
    CostEvent,
    CostTracker,
    PriceBook,
    PricingConfig,
    SQLLedger,
    ToolFee,
    UnpricedWarning,
)
from agent_finops_langgraph import FinOpsCallbackHandler
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedReply, ScriptedToolCall

pytestmark = pytest.mark.slow

# --- the published price, by hand ----------------------------------------------------------
# genai-prices 0.2.3, provider `openai`, model `gpt-4o-mini` (USD per million tokens):
#   $0.15 input, $0.075 cached input (cache read), $0.60 output (reasoning is billed as output).
INPUT_PER_MTOK = Decimal("0.15")
CACHED_INPUT_PER_MTOK = Decimal("0.075")
OUTPUT_PER_MTOK = Decimal("0.60")
MILLION = Decimal(1_000_000)

TAGS = {"team": "e2e", "project": "finops-tests"}
SERVED_MODEL = "gpt-4o-mini-2024-07-18"


def hand_cost(prompt: int, cached: int, completion: int) -> Decimal:
    """OpenAI counts cached tokens inside `prompt_tokens`: only the rest pays full price."""
    uncached = prompt - cached
    return (
        uncached * INPUT_PER_MTOK + cached * CACHED_INPUT_PER_MTOK + completion * OUTPUT_PER_MTOK
    ) / MILLION


# A plain answer: 1200 prompt tokens of which 1024 cached; 300 completion of which 64 reasoning.
# 176 x 0.15 + 1024 x 0.075 + 300 x 0.60 = 26.4 + 76.8 + 180 = 283.2 micro-dollars.
ANSWER_TEXT = "The quarterly spend is within budget."
ANSWER = ScriptedReply(
    content=ANSWER_TEXT,
    prompt_tokens=1200,
    cached_tokens=1024,
    completion_tokens=300,
    reasoning_tokens=64,
)
ANSWER_COST = Decimal("0.0002832")

# Tool round trip. Call 1 asks for `search`: 850 prompt (512 cached), 40 completion (16 reasoning)
#   338 x 0.15 + 512 x 0.075 + 40 x 0.60 = 50.7 + 38.4 + 24 = 113.1 micro-dollars.
# Call 2 answers: 910 prompt (768 cached), 120 completion (0 reasoning)
#   142 x 0.15 + 768 x 0.075 + 120 x 0.60 = 21.3 + 57.6 + 72 = 150.9 micro-dollars.
# Plus the search API's $0.005 per call.
TOOL_CALL = ScriptedReply(
    tool_calls=(ScriptedToolCall(name="search", arguments={"query": "gpu prices"}, id="call_s1"),),
    prompt_tokens=850,
    cached_tokens=512,
    completion_tokens=40,
    reasoning_tokens=16,
)
TOOL_CALL_COST = Decimal("0.0001131")
AFTER_TOOL = ScriptedReply(
    content="GPUs cost about $2/hour.",
    prompt_tokens=910,
    cached_tokens=768,
    completion_tokens=120,
)
AFTER_TOOL_COST = Decimal("0.0001509")
SEARCH_FEE = Decimal("0.005")


def test_hand_computed_costs_agree() -> None:
    """The literal bills above are what the per-token formula gives."""
    assert hand_cost(1200, 1024, 300) == ANSWER_COST
    assert hand_cost(850, 512, 40) == TOOL_CALL_COST
    assert hand_cost(910, 768, 120) == AFTER_TOOL_COST
    assert Decimal("0.0055472") == ANSWER_COST + TOOL_CALL_COST + AFTER_TOOL_COST + SEARCH_FEE


# --- graph and fixtures --------------------------------------------------------------------


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}: GPUs rent for about $2/hour"


def build_graph(llm: Any, *, tools: bool = False, use_async: bool = False) -> Any:
    """START -> agent [-> tools -> agent] -> END, the model node calling `llm`."""
    model = llm.bind_tools([search]) if tools else llm

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def aagent(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if getattr(last, "tool_calls", None) else END

    graph = StateGraph(State)
    graph.add_node("agent", aagent if use_async else agent)
    graph.add_edge(START, "agent")
    if tools:
        graph.add_node("tools", ToolNode([search]))
        graph.add_conditional_edges("agent", route, ["tools", END])
        graph.add_edge("tools", "agent")
    else:
        graph.add_edge("agent", END)
    return graph.compile()


def chat_openai(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    """The real ChatOpenAI, pointed at the fake server (never the network)."""
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        timeout=10,
        **kwargs,
    )


@dataclass
class Harness:
    """A tracker on the test's ledger, its handler, and a fresh run id for the config."""

    ledger: SQLLedger
    tracker: CostTracker
    handler: FinOpsCallbackHandler
    run_id: uuid.UUID

    @property
    def trace_id(self) -> str:
        return str(self.run_id)

    def config(self) -> dict[str, Any]:
        return {"callbacks": [self.handler], "run_id": self.run_id}

    def events(self) -> list[CostEvent]:
        self.tracker.flush()
        trace = self.ledger.load_trace(self.trace_id)
        assert trace is not None, "the run was not recorded"
        return trace.events


@pytest.fixture
def make_harness(ledger: SQLLedger) -> Iterator[Callable[..., Harness]]:
    trackers: list[CostTracker] = []

    def make(*, prices: PriceBook | None = None, strict: bool = True) -> Harness:
        tracker = CostTracker(ledger, prices=prices, tags=TAGS)
        trackers.append(tracker)
        return Harness(ledger, tracker, FinOpsCallbackHandler(tracker, strict=strict), uuid.uuid4())

    yield make
    for tracker in trackers:
        tracker.close()


def assert_answer_event(event: CostEvent, h: Harness) -> None:
    """The one model event of a run that got `ANSWER`."""
    assert event.kind == "model"
    assert event.trace_id == h.trace_id
    assert event.cost == ANSWER_COST
    assert event.uncached_input_tokens == 1200 - 1024
    assert event.cache_read_tokens == 1024
    assert event.cache_write_tokens == 0
    assert event.output_tokens == 300
    assert event.reasoning_tokens == 64
    assert event.usage_reported is True
    assert event.price_source == "genai-prices"
    assert event.price_version.startswith("genai-prices ")
    assert event.model_ref == "openai:gpt-4o-mini"
    assert event.provider == "openai"
    assert event.name == SERVED_MODEL
    assert event.node_path == "agent"
    assert event.tags == TAGS


def assert_answer_run(h: Harness) -> None:
    events = h.events()
    assert len(events) == 1
    assert_answer_event(events[0], h)
    report = h.tracker.report(h.trace_id)
    assert report.total_cost == ANSWER_COST
    assert report.unpriced == 0
    assert report.totals.model_calls == 1
    assert report.totals.cache_read_tokens == 1024
    assert report.run.status == "ok"
    assert h.handler.errors == 0
    assert h.tracker.unpriced == 0


# --- non-streaming -------------------------------------------------------------------------


def test_invoke_prices_cached_and_reasoning_tokens(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness()
    graph = build_graph(chat_openai(openai_server))

    out = graph.invoke({"messages": [HumanMessage("How is spend?")]}, config=h.config())

    assert out["messages"][-1].content == ANSWER_TEXT
    assert openai_server.pending == 0
    (body,) = openai_server.bodies
    assert body["model"] == "gpt-4o-mini"
    assert not body.get("stream")
    assert_answer_run(h)


async def test_ainvoke_prices_cached_and_reasoning_tokens(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness()
    graph = build_graph(chat_openai(openai_server), use_async=True)

    out = await graph.ainvoke({"messages": [HumanMessage("How is spend?")]}, config=h.config())

    assert out["messages"][-1].content == ANSWER_TEXT
    assert openai_server.pending == 0
    assert_answer_run(h)


# --- streaming -----------------------------------------------------------------------------


def assert_streamed_with_usage(server: FakeOpenAIServer, chunks: list[Any]) -> None:
    """The client asked for usage on the stream, and the text really arrived in pieces."""
    (body,) = server.bodies
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    texts = [c.content for c, meta in chunks if meta.get("langgraph_node") == "agent"]
    assert len([t for t in texts if t]) > 1
    assert "".join(texts) == ANSWER_TEXT


def test_stream_prices_usage_from_final_chunk(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness()
    graph = build_graph(chat_openai(openai_server, streaming=True, stream_usage=True))

    chunks = list(
        graph.stream(
            {"messages": [HumanMessage("How is spend?")]}, config=h.config(), stream_mode="messages"
        )
    )

    assert_streamed_with_usage(openai_server, chunks)
    assert_answer_run(h)


async def test_astream_prices_usage_from_final_chunk(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness()
    llm = chat_openai(openai_server, streaming=True, stream_usage=True)
    graph = build_graph(llm, use_async=True)

    chunks = [
        c
        async for c in graph.astream(
            {"messages": [HumanMessage("How is spend?")]}, config=h.config(), stream_mode="messages"
        )
    ]

    assert_streamed_with_usage(openai_server, chunks)
    assert_answer_run(h)


def assert_unpriced_run(h: Harness, server: FakeOpenAIServer) -> None:
    (body,) = server.bodies
    assert body["stream"] is True
    assert "stream_options" not in body
    (event,) = h.events()
    assert event.kind == "model"
    assert event.cost is None  # unknown, never $0
    assert event.usage_reported is False
    assert event.price_source == "unpriced"
    assert event.price_version.startswith("genai-prices ")
    assert event.uncached_input_tokens == event.cache_read_tokens == event.output_tokens == 0
    report = h.tracker.report(h.trace_id)
    assert report.unpriced == 1
    assert report.totals.model_calls == 1
    assert report.total_cost == Decimal(0)  # the sum of *known* costs; the call is counted apart
    assert h.tracker.unpriced == 1
    assert h.handler.errors == 0


def test_stream_without_usage_records_unknown_cost_not_zero(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness(strict=False)
    graph = build_graph(chat_openai(openai_server, streaming=True, stream_usage=False))

    with pytest.warns(UnpricedWarning, match="no usage reported"):
        for _ in graph.stream(
            {"messages": [HumanMessage("How is spend?")]}, config=h.config(), stream_mode="messages"
        ):
            pass

    assert_unpriced_run(h, openai_server)


async def test_astream_without_usage_records_unknown_cost_not_zero(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(ANSWER)
    h = make_harness(strict=False)
    graph = build_graph(
        chat_openai(openai_server, streaming=True, stream_usage=False), use_async=True
    )

    with pytest.warns(UnpricedWarning, match="no usage reported"):
        async for _ in graph.astream(
            {"messages": [HumanMessage("How is spend?")]}, config=h.config(), stream_mode="messages"
        ):
            pass

    assert_unpriced_run(h, openai_server)


# --- tool round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_tool_round_trip_includes_tool_fee(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness], streaming: bool
) -> None:
    openai_server.enqueue(TOOL_CALL, AFTER_TOOL)
    fee = ToolFee(name="search-api", tool="search", per_call=SEARCH_FEE)
    h = make_harness(prices=PriceBook(PricingConfig(tools=(fee,))))
    llm = chat_openai(openai_server, streaming=streaming, stream_usage=streaming or None)
    graph = build_graph(llm, tools=True)

    out = graph.invoke({"messages": [HumanMessage("What do GPUs cost?")]}, config=h.config())

    assert out["messages"][-1].content == AFTER_TOOL.content
    assert openai_server.pending == 0
    first, second = openai_server.bodies
    assert bool(first.get("stream")) is streaming
    assert ("stream_options" in second) is streaming
    assert [t["function"]["name"] for t in first["tools"]] == ["search"]
    tool_msg = second["messages"][-1]
    assert tool_msg["role"] == "tool"
    assert tool_msg["tool_call_id"] == "call_s1"
    assert "GPUs rent for about $2/hour" in tool_msg["content"]

    events = h.events()
    models = [e for e in events if e.kind == "model"]
    tools = [e for e in events if e.kind == "tool"]
    assert len(models) == 2
    assert len(tools) == 1
    by_cost = {e.cost: e for e in models}
    assert set(by_cost) == {TOOL_CALL_COST, AFTER_TOOL_COST}
    ask = by_cost[TOOL_CALL_COST]
    assert (ask.uncached_input_tokens, ask.cache_read_tokens) == (850 - 512, 512)
    assert (ask.output_tokens, ask.reasoning_tokens) == (40, 16)
    answer = by_cost[AFTER_TOOL_COST]
    assert (answer.uncached_input_tokens, answer.cache_read_tokens) == (910 - 768, 768)
    assert (answer.output_tokens, answer.reasoning_tokens) == (120, 0)
    for e in models:
        assert e.price_source == "genai-prices"
        assert e.price_version.startswith("genai-prices ")
        assert e.node_path == "agent"
    (fee_event,) = tools
    assert fee_event.name == "search"
    assert fee_event.cost == SEARCH_FEE
    assert fee_event.price_source == "tool-fee:search-api"
    assert fee_event.node_path == "tools"
    assert fee_event.tags == TAGS

    expected = TOOL_CALL_COST + AFTER_TOOL_COST + SEARCH_FEE
    assert expected == Decimal("0.005264")
    assert sum((e.cost for e in events if e.cost is not None), Decimal(0)) == expected
    report = h.tracker.report(h.trace_id)
    assert report.total_cost == expected
    assert report.unpriced == 0
    assert (report.totals.model_calls, report.totals.tool_calls) == (2, 1)
    assert [(r.key, r.totals.cost) for r in report.by_tool] == [("search", SEARCH_FEE)]
    assert h.handler.errors == 0


# --- service tiers -------------------------------------------------------------------------


def test_priority_tier_keeps_cached_and_reasoning_split(
    openai_server: FakeOpenAIServer, make_harness: Callable[..., Harness]
) -> None:
    openai_server.enqueue(
        ScriptedReply(
            content=ANSWER_TEXT,
            prompt_tokens=1200,
            cached_tokens=1024,
            completion_tokens=300,
            reasoning_tokens=64,
            service_tier="priority",
        )
    )
    h = make_harness()
    build_graph(chat_openai(openai_server)).invoke(
        {"messages": [HumanMessage("How is spend?")]}, config=h.config()
    )

    (event,) = h.events()
    assert (event.uncached_input_tokens, event.cache_read_tokens) == (176, 1024)
    assert (event.output_tokens, event.reasoning_tokens) == (300, 64)
