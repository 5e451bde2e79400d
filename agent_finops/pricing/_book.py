"""The price book: catalog look-ups, configured overrides and per-tool fees, all in Decimal.

Exactness: configured prices are bounded (at most `MAX_PRICE_PER_MTOK` per million tokens,
`MAX_FEE_USD` per call or unit, `PRICE_DECIMAL_PLACES` decimals, finite, non-negative) and
token counts by `MAX_TOKEN_COUNT`, and all arithmetic runs in a 60-digit decimal context, so
every amount is exact (no rounding, no `decimal.Overflow`) and has at most 18 decimals.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import reprlib
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from agent_finops._safe_yaml import load_yaml, read_yaml_file
from agent_finops.exceptions import ConfigurationError, PriceNotFound, UnpricedWarning
from agent_finops.pricing._limits import OUTPUT_LIMITS_VERSION, output_limit
from agent_finops.usage import MAX_TOKEN_COUNT, TokenUsage

GENAI_PRICES_SOURCE = "genai-prices"
ONE_HOUR_WRITE_RULE_SOURCE = "genai-prices+1h-write-2x-input"
"""`Cost.source` of a catalog price whose model has no 1-hour cache-write rate in the
catalog: those writes were priced at twice the base input price (Anthropic's published
rule for 1-hour cache writes)."""
ONE_HOUR_WRITE_MULTIPLIER = Decimal(2)
"""Anthropic: a 1-hour cache write costs 2x the base input price (5-minute writes 1.25x)."""
MILLION = Decimal(1_000_000)
MAX_PRICE_PER_MTOK = Decimal(1_000_000)
"""Largest accepted configured price per million tokens (USD 1 per token)."""
MAX_FEE_USD = Decimal(1_000_000)
"""Largest accepted configured tool fee, per call or per unit (USD)."""
PRICE_DECIMAL_PLACES = 12
"""Most decimals a configured price may have (so a per-token cost has at most 18)."""
DEFAULT_MAX_TOOL_UNITS = 1_000_000_000
"""Default ceiling on the units one tool call may report; more is refused as absurd."""
MAX_NAME_LENGTH = 100
"""Override and fee names are recorded in the ledger's 120-character price source."""
_TOKEN_PRICE_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
_ONE_HOUR_KEY = "cache_write_1h_mtok"
_TEXT_TOKEN_KEYS = frozenset({*_TOKEN_PRICE_KEYS, _ONE_HOUR_KEY})
_UNITS_TOKEN_USAGE_NEVER_HAS = frozenset({"web_searches_kcount", "storage_searches_kcount"})
_MODALITIES_TOKEN_USAGE_NEVER_HAS = ("_audio_", "_image_", "_video_")
_EXACT = Context(
    prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Wide enough that bounded prices times bounded counts are never rounded."""
_MAX_JSON_OUTPUT_CHARS = 1 << 20
"""Tool output text longer than this is not parsed for a unit count."""
_preview = reprlib.Repr()
_preview.maxstring = _preview.maxother = 120
_preview.maxlevel = 3


def _not_negative_zero(value: Decimal) -> Decimal:
    return Decimal(0) if value == 0 else value


Price = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE_PER_MTOK, decimal_places=PRICE_DECIMAL_PLACES),
    AfterValidator(_not_negative_zero),
]
"""A configured USD price per million tokens: finite, bounded, exact."""
Fee = Annotated[
    Decimal,
    Field(ge=0, le=MAX_FEE_USD, decimal_places=PRICE_DECIMAL_PLACES),
    AfterValidator(_not_negative_zero),
]
"""A configured USD fee per call or unit: finite, bounded, exact."""


@dataclass(frozen=True, slots=True)
class Cost:
    """The price of one call. `amount is None` means unknown, never zero."""

    amount: Decimal | None
    """USD, exact; None when no price was found."""
    source: str
    """Where the price came from: `genai-prices`, `override:<name>`, `tool-fee:<name>` or
    `unpriced`."""
    version: str
    """Catalog version or override content hash, so the bill can be re-derived."""
    model_ref: str | None = None
    """The catalog model id (or override name) that matched."""
    reason: str | None = None
    """Why the amount is unknown (only set when `amount is None`)."""
    units: int | None = None
    """Tool fees: the units charged (given, or read from the tool's output)."""

    @property
    def known(self) -> bool:
        """Whether the amount is known."""
        return self.amount is not None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Strict):
    """A negotiated or self-hosted model price, per million tokens of each kind (USD)."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """Override name, recorded on every event priced by it."""
    model: str = Field(min_length=1, max_length=200)
    """Model name or glob (`my-llama-*`), matched case-insensitively."""
    provider: str | None = Field(default=None, max_length=64)
    """Restrict to one provider (`openai`, `anthropic`, ...); None matches any."""
    input_per_mtok: Price
    output_per_mtok: Price
    cache_read_per_mtok: Price | None = None
    """Defaults to the input price."""
    cache_write_per_mtok: Price | None = None
    """Price of (5-minute) cache writes. Defaults to the input price."""
    cache_write_1h_per_mtok: Price | None = None
    """Price of 1-hour cache writes. Defaults to twice the input price when
    `cache_write_per_mtok` is set (Anthropic's rule), else to the input price like any write."""
    reasoning_per_mtok: Price | None = None
    """Defaults to the output price."""
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_COUNT)
    """The model's output ceiling per request, for worst-case reservations of requests that
    set no `max_tokens` (self-hosted models the bundled table does not know)."""

    def matches(self, model: str, provider: str | None) -> bool:
        """Whether this override applies to `model` at `provider`."""
        if self.provider is not None and provider is not None and self.provider != provider:
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())

    def price(self, usage: TokenUsage) -> Decimal:
        """Exact USD for `usage`."""
        inp = self.input_per_mtok
        read = inp if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write = inp if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        if self.cache_write_1h_per_mtok is not None:
            write_1h = self.cache_write_1h_per_mtok
        elif self.cache_write_per_mtok is not None:
            write_1h = inp * ONE_HOUR_WRITE_MULTIPLIER
        else:
            write_1h = inp
        out = self.output_per_mtok
        reasoning = out if self.reasoning_per_mtok is None else self.reasoning_per_mtok
        with localcontext(_EXACT):
            return (
                usage.uncached_input_tokens * inp
                + usage.cache_read_tokens * read
                + usage.cache_write_5m_tokens * write
                + usage.cache_write_1h_tokens * write_1h
                + (usage.output_tokens - usage.reasoning_tokens) * out
                + usage.reasoning_tokens * reasoning
            ) / MILLION


class ToolFee(_Strict):
    """A non-LLM cost: a fee per tool/connector call and/or per unit the tool reports."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """Fee name, recorded on every event priced by it."""
    tool: str = Field(min_length=1, max_length=200)
    """Tool name or glob."""
    per_call: Fee = Decimal(0)
    per_unit: Fee = Decimal(0)
    units_key: str | None = Field(default=None, min_length=1, max_length=200)
    """Where the tool's output holds the unit count: a key (`records`) or a dotted path
    (`result.records`), looked up in a dict output, a message's `artifact` or `content`,
    JSON text, or the text blocks of a content list."""
    max_units: int = Field(default=DEFAULT_MAX_TOOL_UNITS, ge=1, le=MAX_TOKEN_COUNT)
    """Most units one call may report; a larger count is refused as corrupt (cost unknown)."""

    def price(self, units: int) -> Decimal:
        """Exact USD for one call consuming `units` units."""
        with localcontext(_EXACT):
            return self.per_call + self.per_unit * units


class ComputeRate(_Strict):
    """Time on a priced resource (a self-hosted model, a sandbox, a long-running agent).

    Matches spans by name (a glob) and/or tags; when a matching span ends, its duration is
    billed: rounded *up* to whole `billing` units (seconds or minutes), at least
    `min_seconds`, at `per_second` or `per_minute` (give one). The cost lands as a
    `compute` event in the `compute` bucket.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """Rate name, recorded on every event priced by it (`compute-rate:<name>`)."""
    span: str | None = Field(default=None, min_length=1, max_length=200)
    """Span name or glob (a node, agent, task or tool name)."""
    tags: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Tags the span must carry (all of them, exact values)."""
    per_second: Fee | None = None
    per_minute: Fee | None = None
    billing: Literal["second", "minute"] = "second"
    """The unit the duration is rounded up to before pricing."""
    min_seconds: int = Field(default=0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _one_rate(self) -> ComputeRate:
        if (self.per_second is None) == (self.per_minute is None):
            raise ValueError("give exactly one of per_second and per_minute")
        if self.span is None and not self.tags:
            raise ValueError("give span and/or tags: a rate for every span is not a rate")
        return self

    def matches(self, span_name: str, tags: Mapping[str, str]) -> bool:
        """Whether a span of this name and tags is billed at this rate."""
        if self.span is not None and not fnmatch.fnmatchcase(span_name, self.span):
            return False
        return all(tags.get(k) == v for k, v in self.tags.items())

    def billed_seconds(self, seconds: float) -> int:
        """The duration as billed: rounded up to the billing unit, at least `min_seconds`."""
        whole = max(math.ceil(max(seconds, 0.0) - 1e-9), self.min_seconds)
        if self.billing == "minute":
            whole = math.ceil(whole / 60) * 60
        return whole

    def price(self, billed: int) -> Decimal:
        """Exact USD for `billed` seconds."""
        with localcontext(_EXACT):
            if self.per_second is not None:
                return self.per_second * billed
            assert self.per_minute is not None
            return self.per_minute * Decimal(billed) / 60


class PricingConfig(_Strict):
    """Price overrides, tool fees and compute rates, from Python or a YAML file."""

    models: tuple[ModelPrice, ...] = Field(default=(), max_length=10_000)
    tools: tuple[ToolFee, ...] = Field(default=(), max_length=10_000)
    compute: tuple[ComputeRate, ...] = Field(default=(), max_length=10_000)
    strict: bool = False
    """Raise `PriceNotFound` instead of recording an unknown cost."""

    @classmethod
    def from_yaml(cls, path: str | Path) -> PricingConfig:
        """Load and validate a pricing file; errors name the file, field and value.

        The file must be UTF-8 YAML within the bounds of `agent_finops._safe_yaml` (size,
        depth, aliases); every problem is a `ConfigurationError`.
        """
        data = read_yaml_file(path)
        return cls.from_mapping({} if data is None else data, source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str | bytes, *, source: str = "pricing") -> PricingConfig:
        """Like `from_yaml`, from YAML text already in memory."""
        data = load_yaml(text, source=source)
        return cls.from_mapping({} if data is None else data, source=source)

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "pricing") -> PricingConfig:
        """Validate a mapping (e.g. parsed YAML); only `ConfigurationError` escapes."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_context=False)[0]
            field = ".".join(str(p)[:100] for p in err["loc"])
            raise ConfigurationError(
                err["msg"][:300],
                source=source,
                field=field,
                value=_shown_value(err.get("input")),
                expected=err["type"],
            ) from None
        except (TypeError, ValueError, RecursionError, ArithmeticError) as exc:
            # Objects whose own methods raise while being validated (Python callers only).
            raise ConfigurationError(
                f"invalid pricing configuration ({type(exc).__name__})",
                source=source,
                value=_shown_value(data),
            ) from None

    def content_hash(self) -> str:
        """Stable short hash of the configuration (recorded as the override version).

        Fields added after the first release are left out while they hold their defaults,
        so a configuration keeps its hash (and its recorded version) across upgrades.
        """
        data = self.model_dump(mode="json")
        for entry in data["models"]:
            for key in _LATER_MODEL_FIELDS:
                if entry.get(key) is None:
                    entry.pop(key, None)
        for entry in data["tools"]:
            if entry.get("max_units") == DEFAULT_MAX_TOOL_UNITS:
                entry.pop("max_units", None)
        if not data["compute"]:
            del data["compute"]
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


_LATER_MODEL_FIELDS = ("cache_write_1h_per_mtok", "max_output_tokens")


def _shown_value(value: Any) -> Any:
    """A bad value as an error may show it: scalars as they are, containers abbreviated."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, str):
        return value if len(value) <= 120 else f"{value[:120]}... ({len(value)} characters)"
    try:
        return _preview.repr(value)
    except Exception:  # a value whose __repr__ raises
        return f"<{type(value).__name__}>"


class PriceCatalog(Protocol):
    """A source of list prices. `price` returns None when the model is unknown.

    A catalog may also have `context_window(model, provider) -> int | None` (the genai-prices
    one does); `PriceBook.max_output_tokens` uses it when present.
    """

    version: str

    def price(self, model: str, provider: str | None, usage: TokenUsage) -> Cost | None:
        """Price one call, or None if the catalog does not know the model."""
        ...


CATALOG_CACHE_SIZE = 4096
"""(model, provider) pairs whose catalog entry a `GenaiPricesCatalog` keeps resolved (least
recently used first out): model names come from callers, so the cache is bounded."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One (model, provider)'s catalog entry, resolved once.

    `fixed`: the model's price when it does not depend on the time of the call (no
    conditional prices), with its per-token `rates` and, when those are flat, `flat`:
    (input, cache read, 5-minute write, 1-hour write, output) per million tokens, defaults
    applied. `one_hour_rule`: the fixed price bills cache writes but has no 1-hour rate.
    """

    provider: Any
    info: Any
    model_ref: str
    fixed: Any
    rates: _Rates | None
    flat: tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None
    one_hour_rule: bool


class GenaiPricesCatalog:
    """List prices from the `genai-prices` package (bundled snapshot, no network)."""

    def __init__(self, *, at: datetime | None = None) -> None:
        """Use prices in force at `at` (default: the time of each call)."""
        import genai_prices
        from genai_prices import data_snapshot
        from genai_prices.types import ModelPrice as GenaiModelPrice

        self._genai_prices = genai_prices
        self._fixed_price_type = GenaiModelPrice
        self._snapshot = data_snapshot.get_snapshot()
        self._at = at
        self.version = f"genai-prices {genai_prices.__version__}"
        self._resolve = functools.lru_cache(maxsize=CATALOG_CACHE_SIZE)(self._resolve_entry)
        self._rates: dict[int, tuple[Any, _Rates | None, str]] = {}
        self._lock = threading.Lock()

    def _resolve_entry(self, model: str, provider: str | None) -> _Resolved | None:
        """The catalog entry of `model` at `provider` (uncached: see `_resolve`)."""
        try:
            found: Any = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            found = None
            if provider is not None:  # a provider id genai-prices does not use: try the model
                try:
                    found = self._snapshot.find_provider_model(model, None, None, None)
                except LookupError:
                    found = None
        if found is None:
            return None
        prov, info = found
        fixed = info.prices if isinstance(info.prices, self._fixed_price_type) else None
        rates = None if fixed is None else _token_rates(prov.id, fixed)
        return _Resolved(
            provider=prov,
            info=info,
            model_ref=f"{prov.id}:{info.id}",
            fixed=fixed,
            rates=rates,
            flat=None if rates is None else _flat_rates(rates),
            one_hour_rule=fixed is not None and _lacks_one_hour_rate(fixed),
        )

    @property
    def cached_models(self) -> int:
        """How many (model, provider) look-ups are held resolved (<= `CATALOG_CACHE_SIZE`).

        Unknown models are held too, as unknown: they are looked up again once evicted.
        """
        return self._resolve.cache_info().currsize

    def _find(self, model: str, provider: str | None) -> Any:
        resolved = self._resolve(model, provider)
        return None if resolved is None else (resolved.provider, resolved.info)

    def context_window(self, model: str, provider: str | None) -> int | None:
        """The model's context window in the catalog (input and output together), or None."""
        found = self._find(model, provider)
        if found is None:
            return None
        window = getattr(found[1], "context_window", None)
        return window if isinstance(window, int) and window > 0 else None

    def price(self, model: str, provider: str | None, usage: TokenUsage) -> Cost | None:
        """Price `usage` of `model` at `provider` from the catalog.

        1-hour cache writes are priced at the catalog's `cache_write_1h_mtok` rate; where the
        model has a cache-write rate but no 1-hour one, at twice its input price (Anthropic's
        rule) and `source` says so; where it bills no cache writes at all, like any write.
        """
        resolved = self._resolve(model, provider)
        if resolved is None:
            return None
        prov, info = resolved.provider, resolved.info
        at = self._at
        if resolved.fixed is not None:  # the same price at any time: resolved once
            rates = resolved.rates
            one_hour_rule = resolved.one_hour_rule and usage.cache_write_1h_tokens > 0
            flat = resolved.flat
            amount = (
                _apply_flat(flat, usage)
                if flat is not None
                else (None if rates is None else _apply_rates(rates, usage))
            )
        else:
            at = at or datetime.now(tz=UTC)
            prices = info.get_prices(at)
            cached = self._rates.get(id(prices))
            if cached is None or cached[0] is not prices:
                cached = (prices, _token_rates(prov.id, prices), resolved.model_ref)
                with self._lock:
                    self._rates[id(prices)] = cached
            rates = cached[1]
            one_hour_rule = usage.cache_write_1h_tokens > 0 and _lacks_one_hour_rate(prices)
            amount = None if rates is None else _apply_rates(rates, usage)
        if amount is None:  # anything but plain token prices: genai-prices' full calculation
            amount = self._full_price(info, prov, usage, at or datetime.now(tz=UTC), one_hour_rule)
        return Cost(
            amount=amount,
            source=ONE_HOUR_WRITE_RULE_SOURCE if one_hour_rule else GENAI_PRICES_SOURCE,
            version=self.version,
            model_ref=resolved.model_ref,
        )

    def worst_case(self, model: str, provider: str | None, n: int, out: int) -> Decimal | None:
        """`PriceBook.estimate_max_cost` from plain token rates, without pricing three usages.

        The dearest of `n` plain input, 5-minute write or 1-hour write tokens (one rate for
        all `n`: every one of them is input, so one tier applies) plus `out` output tokens:
        exactly the most of the three usages `estimate_max_cost` prices, since each is
        `n` tokens at one input rate plus the same output. None when the model's price is
        not plain token rates (a fee, other units): then each usage is priced in full.
        """
        resolved = self._resolve(model, provider)
        if resolved is None:
            return None
        if resolved.fixed is not None:  # the same price at any time: resolved once
            rates = resolved.rates
        else:
            prices = resolved.info.get_prices(self._at or datetime.now(tz=UTC))
            cached = self._rates.get(id(prices))
            if cached is None or cached[0] is not prices:
                cached = (prices, _token_rates(resolved.provider.id, prices), resolved.model_ref)
                with self._lock:
                    self._rates[id(prices)] = cached
            rates = cached[1]
        if rates is None:
            return None
        rate = {k: _tier_rate(v, n) for k, v in rates.items()}
        if any(r is None for r in rate.values()):
            return None
        inp = rate["input_mtok"]
        assert inp is not None
        write, output = rate.get("cache_write_mtok"), rate.get("output_mtok")
        write_1h = rate.get(_ONE_HOUR_KEY)
        exact = _EXACT  # its methods: no context switch per call
        if write_1h is None:  # as `_apply_rates`
            write_1h = inp if write is None else exact.multiply(inp, ONE_HOUR_WRITE_MULTIPLIER)
        dearest = max(inp, inp if write is None else write, write_1h)
        total = exact.multiply(n, dearest)
        if output is not None:
            total = exact.add(total, exact.multiply(out, output))
        return exact.divide(total, MILLION)

    def _full_price(
        self, info: Any, prov: Any, usage: TokenUsage, at: datetime, one_hour_rule: bool
    ) -> Decimal:
        hour = usage.cache_write_1h_tokens
        if one_hour_rule:
            # No 1-hour rate: bill those writes as two plain input tokens each (2x input).
            counts = {
                "input_tokens": usage.input_tokens + hour,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens - hour,
                "output_tokens": usage.output_tokens,
            }
        else:
            counts = {
                "input_tokens": usage.input_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "output_tokens": usage.output_tokens,
            }
            if hour and getattr(info.get_prices(at), _ONE_HOUR_KEY) is not None:
                counts["cache_write_1h_tokens"] = hour
        calc = info.calc_price(self._genai_prices.Usage(**counts), prov, genai_request_timestamp=at)
        return Decimal(calc.total_price)


_Rates = dict[str, Any]


def _token_rates(provider_id: str, prices: Any) -> _Rates | None:
    """The per-token prices (flat or tiered) of a model price, if that is all it has.

    None when the price has anything else that could apply to a token-only usage (a
    per-request fee, a text-modality or 5-minute-write price, ...): the caller then uses
    genai-prices' full calculation.
    """
    values = {k: v for k, v in vars(prices).items() if v is not None}
    others = {
        k
        for k in values
        if k not in _TEXT_TOKEN_KEYS
        and k not in _UNITS_TOKEN_USAGE_NEVER_HAS
        and not any(m in f"_{k}" for m in _MODALITIES_TOKEN_USAGE_NEVER_HAS)
    }
    if others or provider_id == "groq" or "input_mtok" not in values:
        return None
    return {k: values[k] for k in _TEXT_TOKEN_KEYS if k in values}


def _apply_rates(rates: _Rates, usage: TokenUsage) -> Decimal | None:
    total_input = usage.input_tokens
    rate = {k: _tier_rate(v, total_input) for k, v in rates.items()}
    if any(r is None for r in rate.values()):
        return None
    inp = rate["input_mtok"]
    assert inp is not None
    read, write, out = (rate.get(k) for k in _TOKEN_PRICE_KEYS[1:])
    write_1h = rate.get(_ONE_HOUR_KEY)
    with localcontext(_EXACT):
        if write_1h is None:  # Anthropic's rule where writes are billed; else like any write
            write_1h = inp if write is None else inp * ONE_HOUR_WRITE_MULTIPLIER
        return (
            usage.uncached_input_tokens * inp
            + usage.cache_read_tokens * (inp if read is None else read)
            + usage.cache_write_5m_tokens * (inp if write is None else write)
            + usage.cache_write_1h_tokens * write_1h
            + usage.output_tokens * (Decimal(0) if out is None else out)
        ) / MILLION


def _lacks_one_hour_rate(prices: Any) -> bool:
    """The price bills cache writes but has no 1-hour rate (Anthropic's 2x rule applies)."""
    return getattr(prices, _ONE_HOUR_KEY) is None and prices.cache_write_mtok is not None


def _flat_rates(rates: _Rates) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None:
    """`rates` as `_apply_rates` would use them, when none is tiered; else None."""
    if not all(isinstance(v, Decimal) for v in rates.values()):
        return None
    inp = rates["input_mtok"]
    read, write, out = (rates.get(k) for k in _TOKEN_PRICE_KEYS[1:])
    write_1h = rates.get(_ONE_HOUR_KEY)
    with localcontext(_EXACT):
        if write_1h is None:  # as in `_apply_rates`
            write_1h = inp if write is None else inp * ONE_HOUR_WRITE_MULTIPLIER
    return (
        inp,
        inp if read is None else read,
        inp if write is None else write,
        write_1h,
        Decimal(0) if out is None else out,
    )


def _apply_flat(
    flat: tuple[Decimal, Decimal, Decimal, Decimal, Decimal], usage: TokenUsage
) -> Decimal:
    """`_apply_rates` for flat rates resolved by `_flat_rates` (the same exact result)."""
    inp, read, write, write_1h, out = flat
    with localcontext(_EXACT):
        return (
            usage.uncached_input_tokens * inp
            + usage.cache_read_tokens * read
            + usage.cache_write_5m_tokens * write
            + usage.cache_write_1h_tokens * write_1h
            + usage.output_tokens * out
        ) / MILLION


def _token_price(provider_id: str, prices: Any, usage: TokenUsage) -> Decimal | None:
    """The fast path: per-token prices (flat or input-tiered) times the token counts.

    Same result as genai-prices' `calc_price` (a test compares the two over the whole
    catalog) at a twentieth of the cost; None when it does not apply.
    """
    rates = _token_rates(provider_id, prices)
    return None if rates is None else _apply_rates(rates, usage)


def _tier_rate(price: Any, total_input_tokens: int) -> Decimal | None:
    if isinstance(price, Decimal):
        return price
    tiers, base = getattr(price, "tiers", None), getattr(price, "base", None)
    if tiers is None or not isinstance(base, Decimal):
        return None
    for tier in reversed(tiers):  # genai-prices: the whole request at the highest tier passed
        if total_input_tokens > tier.start:
            return Decimal(tier.price)
    return base


class PriceBook:
    """Prices model and tool calls: overrides first, then the catalog; tool fees by name."""

    def __init__(
        self,
        config: PricingConfig | None = None,
        *,
        catalog: PriceCatalog | None = None,
        strict: bool | None = None,
    ) -> None:
        """Build a price book; `catalog=None` uses genai-prices' bundled snapshot."""
        self.config = config or PricingConfig()
        self.catalog: PriceCatalog = catalog if catalog is not None else GenaiPricesCatalog()
        self.strict = self.config.strict if strict is None else strict
        self._override_version = f"overrides {self.config.content_hash()}"

    def _override(self, model: str, provider: str | None) -> ModelPrice | None:
        for override in self.config.models:
            if override.matches(model, provider):
                return override
        return None

    def price_model_call(
        self, model: str | None, usage: TokenUsage | None, *, provider: str | None = None
    ) -> Cost:
        """Price one model call. Unknown model or missing usage gives an unknown cost."""
        if model is None or usage is None:
            what = "no model name" if model is None else f"no usage reported for {model!r}"
            return self._unpriced(what, model=model, provider=provider)
        override = self._override(model, provider)
        if override is not None:
            return Cost(
                amount=override.price(usage),
                source=f"override:{override.name}",
                version=self._override_version,
                model_ref=override.name,
            )
        cost = self.catalog.price(model, provider, usage)
        if cost is None:
            return self._unpriced(
                f"no price for model {model!r} (provider {provider or 'unknown'}) in "
                f"{self.catalog.version} or overrides",
                model=model,
                provider=provider,
            )
        return cost

    def estimate_max_cost(
        self,
        model: str | None,
        *,
        input_tokens: int,
        max_output_tokens: int,
        provider: str | None = None,
    ) -> Decimal | None:
        """Worst-case cost of a call: every input token at the dearest input rate.

        The dearest of plain input, (5-minute) cache write and 1-hour cache write; every
        output token at the dearer of output and (for an override that prices it apart)
        reasoning. Returns None when the model cannot
        be priced (callers reserve a fallback amount). Counts must be whole numbers from 0
        to `MAX_TOKEN_COUNT` (else `ConfigurationError`: a worst case is never clamped).
        """
        if model is None:
            return None
        n = _token_bound(input_tokens, "input_tokens")
        out = _token_bound(max_output_tokens, "max_output_tokens")
        override = self._override(model, provider)
        if override is not None:
            reasoning = out if (override.reasoning_per_mtok or 0) > override.output_per_mtok else 0
            candidates = [
                TokenUsage(uncached_input_tokens=n, output_tokens=out, reasoning_tokens=reasoning),
                TokenUsage(cache_write_tokens=n, output_tokens=out, reasoning_tokens=reasoning),
                TokenUsage(
                    cache_write_tokens=n,
                    cache_write_1h_tokens=n,
                    output_tokens=out,
                    reasoning_tokens=reasoning,
                ),
            ]
            return max(override.price(u) for u in candidates)
        if isinstance(self.catalog, GenaiPricesCatalog):
            quick = self.catalog.worst_case(model, provider, n, out)
            if quick is not None:
                return quick
        amounts: list[Decimal] = []
        for usage in (
            TokenUsage(uncached_input_tokens=n, output_tokens=out),
            TokenUsage(cache_write_tokens=n, output_tokens=out),
            TokenUsage(cache_write_tokens=n, cache_write_1h_tokens=n, output_tokens=out),
        ):
            cost = self.catalog.price(model, provider, usage)
            if cost is None or cost.amount is None:
                return None
            amounts.append(cost.amount)
        return max(amounts)

    def max_output_tokens(
        self, model: str | None, provider: str | None = None, *, input_tokens: int = 0
    ) -> int | None:
        """The most output tokens one request to `model` can produce; None when unknown.

        For a request that sets no `max_tokens`; with None the policy's default applies.

        In order: an override's `max_output_tokens`; the bundled table of providers'
        documented output limits (`agent_finops.pricing._limits`, version
        `OUTPUT_LIMITS_VERSION`); else the catalog's context window minus `input_tokens`
        (input and output share the window). `input_tokens` must be a *lower* bound on the
        prompt's tokens (an exact count, or 0): subtracting an over-estimate would give a
        ceiling below what the model can really produce.
        """
        if not model:
            return None
        override = self._override(model, provider)
        if override is not None and override.max_output_tokens is not None:
            return override.max_output_tokens
        limit = output_limit(model)
        if limit is not None:
            return limit
        window_of = getattr(self.catalog, "context_window", None)
        window = window_of(model, provider) if callable(window_of) else None
        if not isinstance(window, int) or isinstance(window, bool):
            return None
        room = window - max(0, int(input_tokens))
        return room if room > 0 else None

    @property
    def output_limits_version(self) -> str:
        """Version of the bundled output-limit table `max_output_tokens` reads."""
        return OUTPUT_LIMITS_VERSION

    def compute_rate(self, span_name: str, tags: Mapping[str, str]) -> ComputeRate | None:
        """The first compute rate that bills a span of this name and tags, if any."""
        for rate in self.config.compute:
            if rate.matches(span_name, tags):
                return rate
        return None

    def price_compute(self, rate: ComputeRate, seconds: float) -> Cost:
        """Price `seconds` of a span's time at `rate` (`Cost.units`: the billed seconds)."""
        billed = rate.billed_seconds(seconds)
        return Cost(
            amount=rate.price(billed),
            source=f"compute-rate:{rate.name}",
            version=self._override_version,
            model_ref=rate.name,
            units=billed,
        )

    def tool_fee(self, tool: str) -> ToolFee | None:
        """The fee configured for `tool`, if any."""
        for fee in self.config.tools:
            if fnmatch.fnmatchcase(tool, fee.tool):
                return fee
        return None

    def price_tool_call(self, tool: str, *, output: Any = None, units: Any = None) -> Cost | None:
        """Price one tool call; None when no fee is configured for it (a free tool).

        `units` given, or read from `output` at the fee's `units_key`: a dict, an object's
        `artifact` or `content` (a `ToolMessage`), JSON text, or a list of text blocks. A
        unit count that is negative, boolean, not a whole number or above the fee's
        `max_units` is refused: the cost is unknown (never a negative or absurd fee) and the
        reason names the tool, the key and the value.
        """
        fee = self.tool_fee(tool)
        if fee is None:
            return None
        where = "units argument"
        if units is None and fee.per_unit:
            where = f"output key {fee.units_key!r}"
            found = _units_in_output(fee.units_key, output)
            if found is _MISSING:
                return self._unpriced(
                    f"tool {tool!r} has a per-unit fee but its output has no "
                    f"{fee.units_key!r} count",
                    model=tool,
                    provider=None,
                )
            units = found
        elif units is None:
            units = 0
        count = _unit_count(units, fee.max_units)
        if count is None:
            return self._unpriced(
                f"tool {tool!r}: fee {fee.name!r} refused the unit count at {where}: "
                f"{_shown_value(units)!r} (expected a whole number from 0 to {fee.max_units})",
                model=tool,
                provider=None,
            )
        return Cost(
            amount=fee.price(count),
            source=f"tool-fee:{fee.name}",
            version=self._override_version,
            model_ref=fee.name,
            units=count,
        )

    def _unpriced(self, reason: str, *, model: str | None, provider: str | None) -> Cost:
        # Neither a warning nor the strict error here: the caller records the event first,
        # then calls `report_unpriced`, so neither can lose a record.
        return Cost(
            amount=None,
            source="unpriced",
            version=self.catalog.version,
            model_ref=model,
            reason=reason,
        )

    def report_unpriced(self, cost: Cost, *, stacklevel: int = 2) -> None:
        """After recording an unknown cost: warn, or raise `PriceNotFound` in strict mode."""
        if cost.amount is not None:
            return
        if self.strict:
            raise PriceNotFound(f"{cost.reason} (strict pricing)", model=cost.model_ref)
        warnings.warn(
            f"{cost.reason}; cost recorded as unknown (not $0)",
            UnpricedWarning,
            stacklevel=stacklevel + 1,
        )


def _token_bound(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise ConfigurationError(
            "invalid token count for a worst-case estimate",
            source="estimate",
            field=field,
            value=_shown_value(value),
            expected=f"an int from 0 to {MAX_TOKEN_COUNT}",
        )
    return value


_MISSING: Any = object()
_TEXT_BLOCK_TYPES = frozenset({"text", "input_text", "output_text"})


def _unit_count(value: Any, max_units: int) -> int | None:
    """A whole, non-negative, bounded unit count, or None when `value` is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if not (0 <= value <= max_units) or value != int(value):  # NaN fails the range test
        return None
    return int(value)


def _units_in_output(key: str | None, output: Any) -> Any:
    """The value at `key` in the first place of `output` that has it, else `_MISSING`."""
    if key is None:
        return _MISSING
    for candidate in _unit_sources(output, depth=0):
        value = _at_path(candidate, key)
        if value is not _MISSING:
            return value
    return _MISSING


def _unit_sources(output: Any, depth: int) -> Iterator[Mapping[str, Any]]:
    """Mappings a tool output may carry its unit count in, most direct first."""
    if depth > 3 or output is None:
        return
    if isinstance(output, Mapping):
        yield output
        kind = output.get("type")
        if isinstance(kind, str) and kind in _TEXT_BLOCK_TYPES:  # a text content block
            yield from _unit_sources(output.get("text"), depth + 1)
        return
    if isinstance(output, str):
        parsed = _json_object(output)
        if parsed is not None:
            yield parsed
        return
    if isinstance(output, list | tuple):
        for block in output[:100]:
            yield from _unit_sources(block, depth + 1)
        return
    for attribute in ("artifact", "content"):  # a ToolMessage (or any such object)
        try:
            value = getattr(output, attribute, None)
        except Exception:  # a property that raises: nothing to read there
            continue
        yield from _unit_sources(value, depth + 1)


def _json_object(text: str) -> Mapping[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{") or len(stripped) > _MAX_JSON_OUTPUT_CHARS:
        return None
    try:
        parsed = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, Mapping) else None


def _at_path(mapping: Mapping[str, Any], key: str) -> Any:
    """`mapping[key]`, or the dotted path `a.b.c` through nested mappings; else `_MISSING`."""
    try:
        if key in mapping:
            return mapping[key]
        node: Any = mapping
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
    except (TypeError, LookupError):  # unhashable or odd keys in a hand-made mapping
        return _MISSING
    return node
