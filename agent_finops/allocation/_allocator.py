"""The allocator: rules plus one period's totals, compiled once into per-rule splits.

Each rule becomes a list of participants `(owner, source)` with integer weights, fixed for
the period: the owners a `fixed` rule names, the `weights` of a `proportional` rule, each
owner's direct usage for a usage-based one, and for a `hybrid` rule the period's own
allocation of its pool (base fees plus the split rest). `split` cuts one line by those
weights at 1e-18 (largest remainder, so the parts sum exactly to the line); `statement`
cuts each rule's whole pool the same way and rounds the result to the statement quantum.
Splitting every event of a period and summing per owner therefore gives the statement's
raw amounts up to one 1e-18 per event and participant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from agent_finops.allocation._largest_remainder import split_units, tie_order
from agent_finops.allocation._lines import (
    DIRECT_RULE,
    Allocation,
    CostLine,
    Source,
    from_units,
    to_units,
)
from agent_finops.allocation._period import PeriodTotals, measure_period
from agent_finops.allocation._rules import (
    AllocationRule,
    AllocationRules,
    FixedRule,
    HybridRule,
    LineSelector,
    ProportionalRule,
)
from agent_finops.allocation._statement import ChargebackStatement, StatementCell, build_statement
from agent_finops.exceptions import ConfigurationError

__all__ = ["MEMO_SIZE", "Allocator", "allocate"]

MEMO_SIZE = 100_000
"""Most distinct line shapes (bucket and the tag values rules read) an allocator remembers
which rule takes; lines of other shapes are matched rule by rule."""


@dataclass(frozen=True, slots=True)
class _Split:
    """Participants of one rule with their weights and tie-break order, fixed for a period."""

    owners: tuple[str, ...]
    sources: tuple[Source, ...]
    weights: tuple[int, ...]
    total: int
    order: tuple[int, ...]

    @classmethod
    def of(cls, shares: Mapping[tuple[str, Source], int]) -> _Split:
        kept = sorted((key, weight) for key, weight in shares.items() if weight > 0)
        owners = tuple(owner for (owner, _), _ in kept)
        weights = tuple(weight for _, weight in kept)
        return cls(
            owners=owners,
            sources=tuple(source for (_, source), _ in kept),
            weights=weights,
            total=sum(weights),
            order=tie_order(weights, owners),
        )

    def parts(self, units: int) -> list[int]:
        if len(self.weights) == 1:
            return [units]
        return split_units(units, self.weights, self.total, self.order)


class Allocator:
    """Allocates cost lines by `rules`, with the direct usage and pools of one period.

    Build it once per period (`Allocator.for_lines(rules, lines)`, or from totals the
    database summed), then call `split(line)` for each event of an export and
    `statement()` for the period's chargeback statement.
    """

    def __init__(self, rules: AllocationRules, totals: PeriodTotals) -> None:
        """Compile `rules` for the period whose sums are `totals`."""
        self.rules = rules
        """The rules this allocator applies."""
        self.totals = totals
        """The period's direct usage and pools."""
        self._unallocated = rules.unallocated
        unknown = sorted(set(totals.pools) - {rule.id for rule in rules.rules})
        if unknown:  # a pool no rule would split would vanish from the statement
            raise ConfigurationError(
                "period totals name a pool of no rule",
                source="period totals",
                field=f"pools.{unknown[0]}",
                value=totals.pools[unknown[0]],
                expected="pools only of the rules' ids: " + ", ".join(r.id for r in rules.rules),
            )
        usage = {
            owner: to_units(amount)
            for owner, amount in totals.direct.items()
            if owner != rules.unallocated
        }
        self._splits: tuple[tuple[LineSelector, str, _Split], ...] = tuple(
            (rule.selector, rule.id, self._compile(rule, usage)) for rule in rules.rules
        )
        self._read = tuple(sorted({name for rule in rules.rules for name in rule.selector.tags}))
        self._memo: dict[tuple[str | None, ...], tuple[str, _Split] | None] = {}

    @classmethod
    def for_lines(cls, rules: AllocationRules, lines: Iterable[CostLine]) -> Allocator:
        """An allocator for the period made of `lines` (measured in one pass)."""
        return cls(rules, measure_period(rules, lines))

    def split(self, line: CostLine) -> list[Allocation]:
        """`line` cut into owners' parts that sum exactly to `line.amount` (1e-18 quantum).

        One `Allocation` per owner whose part is not zero, in owner order; a line of zero
        cost gives a single zero part to its first owner, so every line is accounted for.
        """
        found = self._find(line)
        if found is None:
            to_units(line.amount, line)  # refused like any other line if not exact
            owner = line.tags.get(self.rules.owner_tag)
            if owner:
                return [Allocation(owner, line.amount, DIRECT_RULE, "direct")]
            return [Allocation(self._unallocated, line.amount, DIRECT_RULE, "untagged")]
        rule_id, split = found
        units = to_units(line.amount, line)
        owners, sources = split.owners, split.sources
        if len(owners) == 1:
            return [Allocation(owners[0], line.amount, rule_id, sources[0])]
        parts = split.parts(units)
        out = [
            Allocation(owners[i], from_units(part), rule_id, sources[i])
            for i, part in enumerate(parts)
            if part
        ]
        if not out:
            first = split.order[0]
            out.append(Allocation(owners[first], line.amount, rule_id, sources[first]))
        return out

    def _find(self, line: CostLine) -> tuple[str, _Split] | None:
        """The rule id and split that take `line` (None: direct), memoised by what rules read.

        Rules read only the bucket and the tags their selectors name, so lines that agree on
        those are taken by the same rule: an export of many events looks each shape up once.
        """
        tags = line.tags
        key = (line.bucket, *[tags.get(name) for name in self._read])
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = None
        for selector, rule_id, split in self._splits:
            if selector.matches(line):
                found = rule_id, split
                break
        if len(self._memo) < MEMO_SIZE:
            self._memo[key] = found
        return found

    def statement(self, rounding: Decimal | None = None) -> ChargebackStatement:
        """The period's chargeback statement, rounded to `rounding` (default: the rules')."""
        totals = self.totals
        cells: list[StatementCell] = [
            StatementCell(owner, DIRECT_RULE, "direct", to_units(amount))
            for owner, amount in totals.direct.items()
        ]
        cells.append(
            StatementCell(self._unallocated, DIRECT_RULE, "untagged", to_units(totals.untagged))
        )
        for _, rule_id, split in self._splits:
            pool = to_units(totals.pools.get(rule_id, Decimal(0)))
            for owner, source, part in zip(
                split.owners, split.sources, split.parts(pool), strict=True
            ):
                cells.append(StatementCell(owner, rule_id, source, part))
        return build_statement(
            cells,
            rule_ids=(DIRECT_RULE, *(rule.id for rule in self.rules.rules)),
            owner_tag=self.rules.owner_tag,
            rounding=self.rules.rounding if rounding is None else rounding,
        )

    def _compile(self, rule: AllocationRule, usage: Mapping[str, int]) -> _Split:
        if isinstance(rule, FixedRule):
            return _Split.of({(rule.to, "fixed"): 1})
        if isinstance(rule, HybridRule):
            return self._hybrid(rule, usage)
        weights = rule.weights if isinstance(rule, ProportionalRule) else None
        return _Split.of(self._shares(weights, rule.among, usage, rule.type))

    def _shares(
        self,
        weights: Mapping[str, Decimal] | None,
        among: Sequence[str] | None,
        usage: Mapping[str, int],
        source: Source,
    ) -> dict[tuple[str, Source], int]:
        """Participants of a proportional split: fixed weights, else direct usage."""
        if weights is not None:
            return {(owner, source): to_units(weight) for owner, weight in weights.items()}
        owners = usage if among is None else among
        shares = {(owner, source): max(usage.get(owner, 0), 0) for owner in owners}
        if not any(shares.values()):  # nobody has usage: the cost has no owner
            return {(self._unallocated, "no_usage"): 1}
        return shares

    def _hybrid(self, rule: HybridRule, usage: Mapping[str, int]) -> _Split:
        """Weights that reproduce the period's allocation of the pool (fees, then the rest)."""
        fees: dict[tuple[str, Source], int] = {
            (owner, "hybrid"): to_units(fee) for owner, fee in rule.base_fee.items()
        }
        fee_total = sum(fees.values())
        pool = to_units(self.totals.pools.get(rule.id, Decimal(0)))
        if pool < fee_total:  # too small for the fees: split it in proportion to them
            return _Split.of(fees)
        rest = _Split.of(self._shares(rule.weights, rule.among, usage, "hybrid"))
        shares: dict[tuple[str, Source], int] = dict(fees)
        for owner, source, part in zip(
            rest.owners, rest.sources, rest.parts(pool - fee_total), strict=True
        ):
            shares[owner, source] = shares.get((owner, source), 0) + part
        return _Split.of(shares)


def allocate(rules: AllocationRules, lines: Iterable[CostLine]) -> ChargebackStatement:
    """The chargeback statement of the period made of `lines` (read once)."""
    return Allocator.for_lines(rules, lines).statement()
