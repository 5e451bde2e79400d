"""Pricing: model calls from the maintained `genai-prices` catalog, overrides, tool fees.

Every `Cost` says which price produced it (`source` and `version`) so a bill can be
re-derived later. A call that cannot be priced gets `amount=None` ("unknown") and an
`UnpricedWarning`, never $0; `strict=True` raises `PriceNotFound` instead.
"""

from agent_finops.pricing._book import (
    GENAI_PRICES_SOURCE,
    Cost,
    GenaiPricesCatalog,
    ModelPrice,
    PriceBook,
    PriceCatalog,
    PricingConfig,
    ToolFee,
)

__all__ = [
    "GENAI_PRICES_SOURCE",
    "Cost",
    "GenaiPricesCatalog",
    "ModelPrice",
    "PriceBook",
    "PriceCatalog",
    "PricingConfig",
    "ToolFee",
]
