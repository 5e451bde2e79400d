"""The price book: catalog look-ups, configured overrides and per-tool fees, all in Decimal."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_finops.exceptions import ConfigurationError, PriceNotFound, UnpricedWarning
from agent_finops.usage import TokenUsage

GENAI_PRICES_SOURCE = "genai-prices"
MILLION = Decimal(1_000_000)
_TOKEN_PRICE_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok")
_UNITS_TOKEN_USAGE_NEVER_HAS = frozenset({"web_searches_kcount", "storage_searches_kcount"})


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

    name: str
    """Override name, recorded on every event priced by it."""
    model: str
    """Model name or glob (`my-llama-*`), matched case-insensitively."""
    provider: str | None = None
    """Restrict to one provider (`openai`, `anthropic`, ...); None matches any."""
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cache_read_per_mtok: Decimal | None = Field(default=None, ge=0)
    """Defaults to the input price."""
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0)
    """Defaults to the input price."""
    reasoning_per_mtok: Decimal | None = Field(default=None, ge=0)
    """Defaults to the output price."""

    def matches(self, model: str, provider: str | None) -> bool:
        """Whether this override applies to `model` at `provider`."""
        if self.provider is not None and provider is not None and self.provider != provider:
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())

    def price(self, usage: TokenUsage) -> Decimal:
        """Exact USD for `usage`."""
        read = self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write = (
            self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        )
        reasoning = (
            self.output_per_mtok if self.reasoning_per_mtok is None else self.reasoning_per_mtok
        )
        visible_output = usage.output_tokens - usage.reasoning_tokens
        return (
            usage.uncached_input_tokens * self.input_per_mtok
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + visible_output * self.output_per_mtok
            + usage.reasoning_tokens * reasoning
        ) / MILLION


class ToolFee(_Strict):
    """A non-LLM cost: a fee per tool/connector call and/or per unit the tool reports."""

    name: str
    """Fee name, recorded on every event priced by it."""
    tool: str
    """Tool name or glob."""
    per_call: Decimal = Field(default=Decimal(0), ge=0)
    per_unit: Decimal = Field(default=Decimal(0), ge=0)
    units_key: str | None = None
    """Key of the tool's dict output (or artifact) holding the unit count, e.g. `results`."""

    def price(self, units: int) -> Decimal:
        """Exact USD for one call consuming `units` units."""
        return self.per_call + self.per_unit * units


class PricingConfig(_Strict):
    """Price overrides and tool fees, from Python or a YAML file."""

    models: tuple[ModelPrice, ...] = ()
    tools: tuple[ToolFee, ...] = ()
    strict: bool = False
    """Raise `PriceNotFound` instead of recording an unknown cost."""

    @classmethod
    def from_yaml(cls, path: str | Path) -> PricingConfig:
        """Load and validate a pricing file; errors name the file, field and value."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read pricing file: {exc}", source=str(path)) from exc
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "pricing") -> PricingConfig:
        """Validate a mapping (e.g. parsed YAML)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigurationError(
                err["msg"],
                source=source,
                field=field,
                value=err.get("input"),
                expected=err["type"],
            ) from exc

    def content_hash(self) -> str:
        """Stable short hash of the configuration (recorded as the override version)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


class PriceCatalog(Protocol):
    """A source of list prices. `price` returns None when the model is unknown."""

    version: str

    def price(self, model: str, provider: str | None, usage: TokenUsage) -> Cost | None:
        """Price one call, or None if the catalog does not know the model."""
        ...


class GenaiPricesCatalog:
    """List prices from the `genai-prices` package (bundled snapshot, no network)."""

    def __init__(self, *, at: datetime | None = None) -> None:
        """Use prices in force at `at` (default: the time of each call)."""
        import genai_prices
        from genai_prices import data_snapshot

        self._genai_prices = genai_prices
        self._snapshot = data_snapshot.get_snapshot()
        self._at = at
        self.version = f"genai-prices {genai_prices.__version__}"
        self._lookup: dict[tuple[str, str | None], Any] = {}
        self._rates: dict[int, tuple[Any, _Rates | None, str]] = {}
        self._lock = threading.Lock()

    def _find(self, model: str, provider: str | None) -> Any:
        key = (model, provider)
        try:
            return self._lookup[key]
        except KeyError:
            pass
        try:
            found: Any = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            found = None
            if provider is not None:  # a provider id genai-prices does not use: try the model
                try:
                    found = self._snapshot.find_provider_model(model, None, None, None)
                except LookupError:
                    found = None
        with self._lock:
            self._lookup[key] = found
        return found

    def price(self, model: str, provider: str | None, usage: TokenUsage) -> Cost | None:
        """Price `usage` of `model` at `provider` from the catalog."""
        found = self._find(model, provider)
        if found is None:
            return None
        prov, info = found
        at = self._at or datetime.now(tz=UTC)
        prices = info.get_prices(at)
        cached = self._rates.get(id(prices))
        if cached is None or cached[0] is not prices:
            cached = (prices, _token_rates(prov.id, prices), f"{prov.id}:{info.id}")
            with self._lock:
                self._rates[id(prices)] = cached
        _, rates, model_ref = cached
        amount = None if rates is None else _apply_rates(rates, usage)
        if amount is None:  # anything but plain token prices: genai-prices' full calculation
            calc = info.calc_price(
                self._genai_prices.Usage(
                    input_tokens=usage.input_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                ),
                prov,
                genai_request_timestamp=at,
            )
            amount = Decimal(calc.total_price)
        return Cost(
            amount=amount, source=GENAI_PRICES_SOURCE, version=self.version, model_ref=model_ref
        )


_Rates = dict[str, Any]


def _token_rates(provider_id: str, prices: Any) -> _Rates | None:
    """The per-token prices (flat or tiered) of a model price, if that is all it has.

    None when the price has anything else that could apply to a token-only usage (a
    per-request fee, ...): the caller then uses genai-prices' full calculation.
    """
    values = {k: v for k, v in vars(prices).items() if v is not None}
    others = {k for k in values if not k.endswith("_mtok")} - _UNITS_TOKEN_USAGE_NEVER_HAS
    if others or provider_id == "groq" or "input_mtok" not in values:
        return None
    return {k: values[k] for k in _TOKEN_PRICE_KEYS if k in values}


def _apply_rates(rates: _Rates, usage: TokenUsage) -> Decimal | None:
    total_input = usage.input_tokens
    rate = {k: _tier_rate(v, total_input) for k, v in rates.items()}
    if any(r is None for r in rate.values()):
        return None
    inp = rate["input_mtok"]
    assert inp is not None
    read, write, out = (rate.get(k) for k in _TOKEN_PRICE_KEYS[1:])
    return (
        usage.uncached_input_tokens * inp
        + usage.cache_read_tokens * (inp if read is None else read)
        + usage.cache_write_tokens * (inp if write is None else write)
        + usage.output_tokens * (Decimal(0) if out is None else out)
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

    def price_model_call(
        self, model: str | None, usage: TokenUsage | None, *, provider: str | None = None
    ) -> Cost:
        """Price one model call. Unknown model or missing usage gives an unknown cost."""
        if model is None or usage is None:
            what = "no model name" if model is None else f"no usage reported for {model!r}"
            return self._unpriced(what, model=model, provider=provider)
        for override in self.config.models:
            if override.matches(model, provider):
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

        Returns None when the model cannot be priced (callers reserve a fallback amount).
        """
        if model is None:
            return None
        candidates = (
            TokenUsage(uncached_input_tokens=input_tokens, output_tokens=max_output_tokens),
            TokenUsage(cache_write_tokens=input_tokens, output_tokens=max_output_tokens),
        )
        amounts: list[Decimal] = []
        for usage in candidates:
            for override in self.config.models:
                if override.matches(model, provider):
                    amounts.append(override.price(usage))
                    break
            else:
                cost = self.catalog.price(model, provider, usage)
                if cost is None or cost.amount is None:
                    return None
                amounts.append(cost.amount)
        return max(amounts)

    def tool_fee(self, tool: str) -> ToolFee | None:
        """The fee configured for `tool`, if any."""
        for fee in self.config.tools:
            if fnmatch.fnmatchcase(tool, fee.tool):
                return fee
        return None

    def price_tool_call(
        self, tool: str, *, output: Any = None, units: int | None = None
    ) -> Cost | None:
        """Price one tool call; None when no fee is configured for it (a free tool)."""
        fee = self.tool_fee(tool)
        if fee is None:
            return None
        if units is None:
            units = _units_from_output(fee, output) if fee.per_unit else 0
        if units is None:
            return self._unpriced(
                f"tool {tool!r} has a per-unit fee but its output has no {fee.units_key!r} count",
                model=tool,
                provider=None,
            )
        return Cost(
            amount=fee.price(units),
            source=f"tool-fee:{fee.name}",
            version=self._override_version,
            model_ref=fee.name,
            units=units,
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


def _units_from_output(fee: ToolFee, output: Any) -> int | None:
    if fee.units_key is None:
        return None
    for candidate in (output, getattr(output, "artifact", None), getattr(output, "content", None)):
        if isinstance(candidate, Mapping) and isinstance(candidate.get(fee.units_key), int):
            return int(candidate[fee.units_key])
    return None
