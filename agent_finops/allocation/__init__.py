"""Showback and chargeback: allocation rules that split shared AI-agent costs across owners.

Rules come from YAML (`load_allocation_rules`): `fixed` (all to one owner), `proportional`
(fixed weights, or each owner's direct usage), `hybrid` (a base fee per owner per period,
the rest proportional) and `shared_pool` (costs of shared agents spread by direct usage).
The first rule that matches a cost line takes it; a line no rule takes is *direct* and
stays with the owner its owner tag names.

`Allocator(rules, totals)` is built once per period from the period's direct usage and rule
pools (`measure_period`, or database sums); `split(line)` cuts one event exactly at 1e-18,
`statement()` gives the period's `ChargebackStatement` rounded to cents by the largest
remainder method, so every level sums exactly. `allocate(rules, lines)` does both passes.
Everything is `Decimal` or integer arithmetic; nothing reads the ledger.
"""

from agent_finops.allocation._allocator import Allocator, allocate
from agent_finops.allocation._lines import (
    DIRECT_RULE,
    FINE_QUANTUM,
    Allocation,
    CostLine,
    Source,
)
from agent_finops.allocation._load import (
    MAX_AMOUNT,
    MAX_OWNERS,
    MAX_RULES,
    allocation_rules_from_mapping,
    load_allocation_rules,
)
from agent_finops.allocation._period import PeriodTotals, measure_period
from agent_finops.allocation._rules import (
    ALLOCATION_FORMAT_VERSION,
    ANY_VALUE,
    COST_BUCKETS,
    DEFAULT_OWNER_TAG,
    DEFAULT_ROUNDING,
    DEFAULT_UNALLOCATED_OWNER,
    AllocationRule,
    AllocationRules,
    FixedRule,
    HybridRule,
    LineSelector,
    ProportionalRule,
    RuleType,
    SharedPoolRule,
)
from agent_finops.allocation._splitting import split_amount
from agent_finops.allocation._statement import ChargebackStatement, StatementLine

__all__ = [
    # allocating
    "Allocator",
    "allocate",
    "measure_period",
    "split_amount",
    # inputs and outputs
    "CostLine",
    "PeriodTotals",
    "Allocation",
    "ChargebackStatement",
    "StatementLine",
    "Source",
    # the rules file
    "AllocationRules",
    "load_allocation_rules",
    "allocation_rules_from_mapping",
    "AllocationRule",
    "FixedRule",
    "ProportionalRule",
    "HybridRule",
    "SharedPoolRule",
    "LineSelector",
    "RuleType",
    # constants
    "ALLOCATION_FORMAT_VERSION",
    "ANY_VALUE",
    "COST_BUCKETS",
    "DEFAULT_OWNER_TAG",
    "DEFAULT_ROUNDING",
    "DEFAULT_UNALLOCATED_OWNER",
    "DIRECT_RULE",
    "FINE_QUANTUM",
    "MAX_AMOUNT",
    "MAX_OWNERS",
    "MAX_RULES",
]
