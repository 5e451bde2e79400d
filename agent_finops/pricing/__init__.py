"""Pricing: catalog model prices, overrides, tool fees and compute rates.

Model calls are priced from the maintained `genai-prices` catalog or overrides; tools by
their fees; time on self-hosted models, sandboxes and long-running agents by compute rates.

Every `Cost` says which price produced it (`source` and `version`) so a bill can be
re-derived later. A call that cannot be priced gets `amount=None` ("unknown") and an
`UnpricedWarning`, never $0; `strict=True` raises `PriceNotFound` instead.

`PriceBook.max_output_tokens` gives a model's real output ceiling (the bundled table in
`_limits`, versioned `OUTPUT_LIMITS_VERSION`) for worst-case reservations.
"""

from agent_finops.pricing._book import (
    CATALOG_CACHE_SIZE,
    DEFAULT_MAX_TOOL_UNITS,
    GENAI_PRICES_SOURCE,
    MAX_FEE_USD,
    MAX_PRICE_PER_MTOK,
    ONE_HOUR_WRITE_RULE_SOURCE,
    PRICE_DECIMAL_PLACES,
    ComputeRate,
    Cost,
    GenaiPricesCatalog,
    ModelPrice,
    PriceBook,
    PriceCatalog,
    PricingConfig,
    ToolFee,
)
from agent_finops.pricing._limits import OUTPUT_LIMITS_VERSION

__all__ = [
    "CATALOG_CACHE_SIZE",
    "DEFAULT_MAX_TOOL_UNITS",
    "GENAI_PRICES_SOURCE",
    "MAX_FEE_USD",
    "MAX_PRICE_PER_MTOK",
    "ONE_HOUR_WRITE_RULE_SOURCE",
    "OUTPUT_LIMITS_VERSION",
    "PRICE_DECIMAL_PLACES",
    "ComputeRate",
    "Cost",
    "GenaiPricesCatalog",
    "ModelPrice",
    "PriceBook",
    "PriceCatalog",
    "PricingConfig",
    "ToolFee",
]
