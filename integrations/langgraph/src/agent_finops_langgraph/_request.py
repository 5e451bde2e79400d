"""What a LangChain model request will send and may produce, from what its callback sees.

`on_chat_model_start` receives the messages and `invocation_params`; `on_llm_start` the
prompts. Chat model integrations put the rest of the request in `invocation_params`: bound
tools (`bind_tools`: `tools`, `tool_choice`, `parallel_tool_calls`), structured output
(`with_structured_output`: a `response_format` that may be a pydantic class for OpenAI's
`json_schema` method, `tools` + `tool_choice` for function calling, `output_config` for
Anthropic's native structured output), a `system` prompt passed as a call argument, and the
output limit under one of several names. `estimate_request` turns that into an input-token
upper bound (`agent_finops.estimate`) and the requested output ceiling.

Anything in `invocation_params` that is not a known generation setting is counted as input:
an unknown field costs a few reserved tokens, a missed one could break a budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_finops import PriceBook
from agent_finops.estimate import SchemaTokenCache, TokenCounter, estimate_input_tokens

__all__ = ["RequestEstimate", "estimate_request", "reservation_tokens"]

SCHEMAS = SchemaTokenCache()
"""Token counts of bound tool definitions: `bind_tools` passes the same dicts every call."""
MAX_CHOICES = 128
"""Most completions one request may ask for (`n`; OpenAI's own maximum)."""

_OUTPUT_LIMIT_KEYS = (
    "max_tokens",  # OpenAI (legacy), Anthropic, Mistral, most OpenAI-compatible servers
    "max_completion_tokens",  # OpenAI (what ChatOpenAI sends for max_tokens=)
    "max_output_tokens",  # OpenAI Responses API, Google Gemini
    "maxOutputTokens",  # Gemini REST
    "num_predict",  # Ollama
    "max_new_tokens",  # Hugging Face
    "maxTokens",  # Bedrock Converse
    "max_gen_len",  # Bedrock Llama
    "max_tokens_to_sample",  # Anthropic legacy completions
)
_THINKING_BUDGET_KEYS = ("thinking_budget", "thinkingBudget")
"""Gemini's thinking budget, added to the output ceiling (to be safe, not assumed inside)."""
_CHOICE_KEYS = ("n", "candidate_count", "candidateCount")
_NESTED_KEYS = (
    "model_kwargs",
    "extra_body",
    "generation_config",
    "generationConfig",
    "thinking_config",
    "thinkingConfig",
    "options",
    "inferenceConfig",
    "inference_config",
)
"""Sub-objects some integrations put request fields in; their fields are read like the
top-level ones."""
_TOOL_KEYS = ("tools", "functions")
_TOOL_CHOICE_KEYS = ("tool_choice", "function_call")
_FORMAT_KEYS = ("response_format", "output_config", "output_format", "text", "format")
_SYSTEM_KEYS = ("system", "system_instruction", "instructions")
_COUNTED = frozenset({*_TOOL_KEYS, *_FORMAT_KEYS, *_SYSTEM_KEYS, *_TOOL_CHOICE_KEYS})
"""Parameters counted as tools, formats, system prompts or tool choices (not as `extra`)."""
_SETTINGS = frozenset(
    {
        *_OUTPUT_LIMIT_KEYS,
        *_THINKING_BUDGET_KEYS,
        *_CHOICE_KEYS,
        *_NESTED_KEYS,
        "_type",
        "model",
        "model_name",
        "model_id",
        "model_provider",
        "stream",
        "streaming",
        "stream_usage",
        "stream_options",
        "stop",
        "stop_sequences",
        "stopSequences",
        "temperature",
        "top_p",
        "topP",
        "top_k",
        "topK",
        "seed",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "user",
        "service_tier",
        "store",
        "parallel_tool_calls",
        "max_retries",
        "default_request_timeout",
        "request_timeout",
        "timeout",
        "reasoning_effort",
        "reasoning",
        "thinking",
        "include",
        "include_thoughts",
        "truncation",
        "verbosity",
        "safety_settings",
        "betas",
        "context_management",
        "disable_streaming",
    }
)
"""Generation settings: sent, but not text the model reads (never counted as input)."""


@dataclass(frozen=True, slots=True)
class RequestEstimate:
    """The worst case of one model request, as far as the request itself says."""

    input_tokens: int
    """Upper bound on the input tokens of everything sent (`agent_finops.estimate`)."""
    max_output_tokens: int | None
    """The output ceiling the request sets per completion, or None when it sets none."""
    choices: int = 1
    """Completions requested (`n`): each may produce `max_output_tokens`."""


def estimate_request(
    payload: Any,
    invocation_params: Mapping[str, Any] | None,
    *,
    metadata: Mapping[str, Any] | None = None,
    token_counter: TokenCounter | None = None,
) -> RequestEstimate:
    """Input-token upper bound and requested output ceiling of one LangChain model call.

    Args:
        payload: `messages` of `on_chat_model_start` (a list of message lists) or `prompts`
            of `on_llm_start` (a list of strings).
        invocation_params: `kwargs["invocation_params"]` of the same callback.
        metadata: the callback's `metadata` (`ls_max_tokens` is read when the parameters
            have no output limit).
        token_counter: a real tokenizer (`Callable[[str], int]`); default: the UTF-8 byte
            upper bound.
    """
    params = _flatten(invocation_params or {})
    tools: list[Any] = []
    for key in _TOOL_KEYS:
        value = params.get(key)
        if isinstance(value, list | tuple):
            tools.extend(value)
        elif value is not None:
            tools.append(value)
    formats = [_as_schema(params[k]) for k in _FORMAT_KEYS if params.get(k) is not None]
    systems = [params[k] for k in _SYSTEM_KEYS if params.get(k) is not None]
    choices = [params[k] for k in _TOOL_CHOICE_KEYS if params.get(k) is not None]
    extra = {
        k: v
        for k, v in params.items()
        if k not in _SETTINGS and k not in _COUNTED and v is not None and v != {}
    }
    input_tokens = estimate_input_tokens(
        _messages(payload),
        system=systems or None,
        tools=tools,
        tool_choice=choices or None,
        response_format=formats or None,
        extra=extra or None,
        token_counter=token_counter,
        schema_cache=SCHEMAS,
    )
    ceiling = _output_ceiling(params)
    if ceiling is None and metadata:
        ceiling = _positive(metadata.get("ls_max_tokens"))
    return RequestEstimate(
        input_tokens=input_tokens, max_output_tokens=ceiling, choices=_choices(params)
    )


def reservation_tokens(
    payload: Any,
    invocation_params: Mapping[str, Any] | None,
    *,
    prices: PriceBook,
    model: str | None,
    provider: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    token_counter: TokenCounter | None = None,
) -> tuple[int, int | None]:
    """`(input_tokens, max_output_tokens)` to reserve for one call, for the policy check.

    The output side is the request's own limit, else the model's real ceiling
    (`PriceBook.max_output_tokens`), times the completions requested; None when neither is
    known (the policy's `default_max_output_tokens` then applies).
    """
    estimate = estimate_request(
        payload, invocation_params, metadata=metadata, token_counter=token_counter
    )
    ceiling = estimate.max_output_tokens
    if ceiling is None:
        # input_tokens=0: our count is an upper bound, and only a lower bound may be
        # subtracted from the context window.
        ceiling = prices.max_output_tokens(model, provider, input_tokens=0)
    if ceiling is None:
        return estimate.input_tokens, None
    return estimate.input_tokens, ceiling * estimate.choices


def _flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level parameters with the fields of known sub-objects merged in (top level wins)."""
    flat: dict[str, Any] = {}
    for key in _NESTED_KEYS:
        if key not in params:  # the usual case: a dict lookup, no call
            continue
        nested = params[key]
        if isinstance(nested, Mapping):
            for inner, value in nested.items():
                if isinstance(inner, str):
                    flat.setdefault(inner, value)
    merged = {k: v for k, v in params.items() if isinstance(k, str)}
    for key, value in flat.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged


def _messages(payload: Any) -> Iterable[Any]:
    if payload is None:
        return
    if isinstance(payload, str):
        yield payload
        return
    for item in payload:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def _as_schema(value: Any) -> Any:
    """A response format given as a class (pydantic, TypedDict): the JSON schema sent."""
    if isinstance(value, type):
        try:
            from langchain_core.utils.function_calling import convert_to_json_schema

            return convert_to_json_schema(value)
        except Exception:  # not convertible: agent_finops.estimate uses what it can
            return value
    return value


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None  # None, -1 (Ollama: unlimited), -2 (fill the context), junk
    return value


def _positives(params: Mapping[str, Any], keys: tuple[str, ...]) -> list[int]:
    """The positive int values of `keys` present in `params` (a lookup per key, no call)."""
    return [v for k in keys if k in params and (v := _positive(params[k])) is not None]


def _output_ceiling(params: Mapping[str, Any]) -> int | None:
    limits = _positives(params, _OUTPUT_LIMIT_KEYS)
    if not limits:
        return None
    return max(limits) + max(_positives(params, _THINKING_BUDGET_KEYS), default=0)


def _choices(params: Mapping[str, Any]) -> int:
    return min(max(_positives(params, _CHOICE_KEYS), default=1), MAX_CHOICES)
