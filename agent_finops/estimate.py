"""Upper bounds on the input tokens of a model request, before it is sent: everything counts.

A budget holds only if the reservation made before a call is at least what the call costs.
The input side of that worst case must count everything the provider bills as input: the
messages (text, multi-part content, tool calls and their arguments, names), the system
prompt, the bound tool schemas, the tool choice, the response format / JSON schema, plus the
framing the provider adds around each of them.

**Counting strategy.** With a real tokenizer for the model at hand, pass it as
`token_counter` (any `Callable[[str], int]`, e.g. `lambda s: len(enc.encode(s))`). Without
one, the default is `utf8_bytes`: a documented **upper bound** for byte-level BPE tokenizers
(OpenAI's cl100k/o200k, Anthropic's, Llama 3's, ...). Their vocabulary starts from the 256
single bytes and every token covers at least one byte of the text, so a text of N UTF-8
bytes is never more than N tokens. SentencePiece tokenizers with byte fallback (Gemini,
Mistral, older Llamas) obey the same bound up to one dummy-prefix token per text, which the
per-message allowance covers. The trade-off: English prose averages about 4 bytes per token
and code or JSON 2-3, so the byte bound reserves 2-4x the real input cost (never less). That
keeps a hard budget hard at the price of refusing a little earlier; plug in a tokenizer to
reserve closer to the real cost.

Structured parts (tool schemas, tool-call arguments, response formats, unknown content
blocks) are counted as their JSON text with `json.dumps`' default escaping, which is never
shorter in bytes than the same data with unescaped UTF-8. Providers render tool schemas in
their own, more compact formats, and add fixed framing, hence the allowances below.
Images are not text: each image block counts `IMAGE_TOKENS` (configurable), the largest
per-image count a provider documents.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "PER_MESSAGE_TOKENS",
    "PER_TOOL_TOKENS",
    "REQUEST_TOKENS",
    "RESPONSE_FORMAT_TOKENS",
    "TOOLS_PROMPT_TOKENS",
    "SchemaTokenCache",
    "TokenCounter",
    "estimate_input_tokens",
    "json_text",
    "utf8_bytes",
]

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text: a real tokenizer, or the `utf8_bytes` upper bound."""

PER_MESSAGE_TOKENS = 8
"""Framing per message (role markers, separators, a name): OpenAI documents 3-4 tokens per
message plus 1 for a name; 8 also covers one SentencePiece dummy-prefix token."""
PER_TOOL_TOKENS = 16
"""Framing per tool definition beyond its JSON text (OpenAI's namespace rendering)."""
TOOLS_PROMPT_TOKENS = 600
"""Once per request with tools: the tool-use system prompt providers add. Anthropic
documents 313-530 tokens depending on the model and `tool_choice` (346 for Claude 4 with
`auto`); OpenAI's function namespace wrapper is far smaller."""
RESPONSE_FORMAT_TOKENS = 300
"""Once per request with a response format / JSON schema: its wrapper and any instructions
the provider adds for structured output."""
REQUEST_TOKENS = 16
"""Once per request: priming of the reply (`<|start|>assistant<|message|>` and the like)."""
IMAGE_TOKENS = 50_000
"""Per image block. The largest published per-image count: gpt-4o-mini at high detail is
2,833 tokens plus 5,667 per 512-px tile, up to 8 tiles for a 2048x768 image (48,169 tokens;
the price per token is low to match). Claude caps an image near 1,600 tokens, gpt-4o at
1,445. Pass `image_tokens=` with your model's figure to reserve less."""

_IMAGE_BLOCK_TYPES = frozenset({"image", "image_url", "input_image"})
_TEXT_BLOCK_TYPES = frozenset({"text", "input_text", "output_text"})
_MESSAGE_FIELDS = (
    "name",
    "tool_calls",
    "invalid_tool_calls",
    "tool_call_id",
    "function_call",
    "additional_kwargs",
)
"""Message attributes sent along with the content (ids, metadata and artifacts are not)."""


def utf8_bytes(text: str) -> int:
    """Tokens <= UTF-8 bytes for byte-level BPE: the default, tokenizer-free upper bound."""
    return len(text.encode("utf-8", "surrogatepass"))


def json_text(value: Any) -> str:
    """`value` as the JSON text a client would send (default escaping; never raises)."""
    try:
        return json.dumps(value, default=_jsonable)
    except (ValueError, TypeError, RecursionError):  # cycles, odd keys, very deep data
        return _safe_str(value)


def _jsonable(value: Any) -> Any:
    """JSON stand-ins for what `json.dumps` cannot write (schemas, SDK objects, ...)."""
    schema = _json_schema(value)
    if schema is not None:
        return schema
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump()
        except Exception:  # an object whose model_dump fails: its text
            return _safe_str(value)
    if isinstance(value, bytes | bytearray):  # sent base64-encoded: 4 bytes per 3
        return "x" * (-(-len(value) // 3) * 4)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return _safe_str(value)


def _json_schema(value: Any) -> dict[str, Any] | None:
    """The JSON schema of a pydantic model class (a response format given as a class)."""
    if isinstance(value, type):
        make = getattr(value, "model_json_schema", None)
        if callable(make):
            try:
                schema = make()
            except Exception:  # not a schema-able class after all
                return None
            return schema if isinstance(schema, dict) else None
    return None


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a __str__ that raises: its type name is all that is sent
        return type(value).__name__


class SchemaTokenCache:
    """Remembers the token counts of schema objects (tool definitions), by their identity.

    Serialising 50 tool schemas takes about a millisecond; LangChain's `bind_tools` hands
    the same definition dicts to every call, so counting each once keeps the estimate
    cheap. Entries hold a reference to the object (an id is never reused while cached) and
    are checked by identity; a definition mutated in place after it was counted keeps its
    old count, so pass no cache if you edit schemas in place. Bounded: cleared when full.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        """Cache at most `max_entries` counts."""
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[tuple[Any, ...], TokenCounter, int]] = {}
        self._lock = threading.Lock()

    def get(self, values: tuple[Any, ...], counter: TokenCounter) -> int | None:
        """The count remembered for these very objects and counter, if any."""
        entry = self._entries.get((tuple(map(id, values)), id(counter)))
        if (
            entry is not None
            and entry[1] is counter
            and len(entry[0]) == len(values)
            and all(map(operator.is_, entry[0], values))
        ):
            return entry[2]
        return None

    def put(self, values: tuple[Any, ...], counter: TokenCounter, tokens: int) -> None:
        """Remember `tokens` for `values` (as counted by `counter`)."""
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[(tuple(map(id, values)), id(counter))] = (values, counter, tokens)


class _Counter:
    """Walks one request, counting with `count` (a `TokenCounter`)."""

    def __init__(
        self, count: TokenCounter, image_tokens: int, cache: SchemaTokenCache | None = None
    ) -> None:
        self.count = count
        self.image_tokens = image_tokens
        self.cache = cache

    def schemas(self, values: tuple[Any, ...], each: int = 0) -> int:
        """Tool definitions or a response format, plus `each` per item; cached per objects."""
        if self.cache is None:
            return sum(self.structured(value) + each for value in values)
        known = self.cache.get(values, self.count)
        if known is None:
            known = sum(self.structured(value) + each for value in values)
            self.cache.put(values, self.count, known)
        return known

    def text(self, text: str) -> int:
        return max(0, int(self.count(text))) if text else 0

    def structured(self, value: Any) -> int:
        """A schema, arguments or any data: its JSON text."""
        if value is None:
            return 0
        if isinstance(value, str):
            return self.text(value)
        return self.text(json_text(value))

    def content(self, content: Any) -> int:
        """Message content: a string, or a list of content blocks (text, image, ...)."""
        if content is None:
            return 0
        if isinstance(content, str):
            return self.text(content)
        if isinstance(content, Mapping):
            return self.block(content)
        if isinstance(content, list | tuple):
            return sum(self.content(block) for block in content)
        return self.structured(content)

    def block(self, block: Mapping[str, Any]) -> int:
        kind = block.get("type")
        if kind in _IMAGE_BLOCK_TYPES or (kind is None and "image_url" in block):
            return self.image_tokens
        if kind in _TEXT_BLOCK_TYPES and isinstance(block.get("text"), str):
            rest = {k: v for k, v in block.items() if k not in ("type", "text")}
            return self.text(block["text"]) + (self.structured(rest) if rest else 0)
        return self.structured(block)  # tool_use, tool_result, document, audio, thinking...

    def message(self, message: Any) -> int:
        """One chat message (a mapping, an object with `.content`, or a string)."""
        if isinstance(message, str):
            return self.text(message) + PER_MESSAGE_TOKENS
        if isinstance(message, Mapping):
            total = self.content(message.get("content"))
            rest = {k: v for k, v in message.items() if k != "content"}
            return total + self.structured(rest) + PER_MESSAGE_TOKENS
        if isinstance(message, list | tuple):  # a (role, content) pair
            return sum(self.content(part) for part in message) + PER_MESSAGE_TOKENS
        fields = getattr(message, "__dict__", None)  # pydantic messages: one dict lookup each
        if not isinstance(fields, dict) or "content" not in fields:
            fields = {k: getattr(message, k, None) for k in ("content", "type", "role")}
            if fields["content"] is None and not hasattr(message, "content"):
                return self.structured(message) + PER_MESSAGE_TOKENS
            fields.update((k, getattr(message, k, None)) for k in _MESSAGE_FIELDS)
        total = self.content(fields.get("content"))
        role = fields.get("type") or fields.get("role")
        if isinstance(role, str):
            total += self.text(role)
        for field in _MESSAGE_FIELDS:
            value = fields.get(field)
            if value:
                total += self.structured(value)
        return total + PER_MESSAGE_TOKENS


def estimate_input_tokens(
    messages: Iterable[Any] = (),
    *,
    system: Any = None,
    tools: Iterable[Any] | None = None,
    tool_choice: Any = None,
    response_format: Any = None,
    extra: Mapping[str, Any] | None = None,
    token_counter: TokenCounter | None = None,
    image_tokens: int = IMAGE_TOKENS,
    schema_cache: SchemaTokenCache | None = None,
) -> int:
    """An upper bound on the input tokens of one request (see the module docstring).

    Args:
        messages: the conversation: strings, mappings (`{"role", "content", "tool_calls",
            "name", ...}`) or message objects with `.content` (LangChain messages, SDK
            types); content may be a string or a list of content blocks.
        system: a system prompt sent apart from the messages (Anthropic's `system`).
        tools: tool definitions as sent (OpenAI `{"type": "function", ...}`, Anthropic
            `{"name", "input_schema", ...}`, or any JSON-able schema).
        tool_choice: the tool choice, if any.
        response_format: a response format or JSON schema (a mapping, or a pydantic model
            class, whose JSON schema is counted).
        extra: any other request fields that are sent to the model as content (counted as
            JSON text).
        token_counter: counts the tokens of a text; default `utf8_bytes`, the byte bound.
        image_tokens: tokens counted per image block.
        schema_cache: remembers the counts of tool definitions and response formats that
            are the same objects from call to call (see `SchemaTokenCache`).
    """
    walk = _Counter(token_counter or utf8_bytes, image_tokens, schema_cache)
    total = REQUEST_TOKENS
    for message in messages:
        total += walk.message(message)
    if system is not None:
        total += walk.content(system) + PER_MESSAGE_TOKENS
    tool_list = list(tools) if tools is not None else []
    if tool_list:
        total += TOOLS_PROMPT_TOKENS
        total += walk.schemas(tuple(tool_list), PER_TOOL_TOKENS)
    if tool_choice is not None:
        total += walk.structured(tool_choice)
    if response_format is not None:
        schema = _json_schema(response_format)
        total += walk.schemas((response_format,)) if schema is None else walk.structured(schema)
        total += RESPONSE_FORMAT_TOKENS
    if extra:
        total += walk.structured(dict(extra))
    return total
