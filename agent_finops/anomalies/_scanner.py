"""`AnomalyScanner`: reads a ledger's totals, runs the detectors, builds the alerts.

A scan judges the complete windows that ended in `(since, now]` (by default the last hour):
each hour's cost per scope against its seasonal baseline, each task window's cost per task
against the 7-day average, each 5-minute block's calls per minute against the hour before,
and every USD budget of the policy against its period-end projection. Totals come from
`Ledger.aggregate` (one call per detector, grouped by the union of the scopes' tags and
summed to each scope here), so a scan costs a few thousand indexed SQL aggregates at most,
whatever the ledger's size. Alert ids are deterministic (kind, scope, window): scanning the
same hours again finds the same alerts, which the ledger keeps once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from agent_finops.anomalies._call_rate import CallRateRule, find_call_rate_jump
from agent_finops.anomalies._drivers import DEFAULT_DRIVERS, top_drivers
from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._forecast import ForecastRule, Projection, find_forecast_overrun
from agent_finops.anomalies._ids import alert_id
from agent_finops.anomalies._messages import describe
from agent_finops.anomalies._spike import CostSpikeRule, find_cost_spike
from agent_finops.anomalies._task_cost import CostPerTaskRule, find_cost_per_task_jump
from agent_finops.clock import Clock, utcnow
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import MAX_DIMENSIONS, AlertRecord, EventTotals, Ledger, Window
from agent_finops.policy import Budget, Policy
from agent_finops.policy.periods import window_for

__all__ = ["BUDGET_KEY", "DEFAULT_CHECK", "DEFAULT_SCOPES", "MAX_CHECK", "AnomalyScanner"]

DEFAULT_SCOPES: Final[tuple[tuple[str, ...], ...]] = (("team",),)
DEFAULT_CHECK: Final = timedelta(hours=1)
"""What a scan judges by default: the windows that ended in the last hour."""
MAX_CHECK: Final = timedelta(days=7)
HOUR: Final = timedelta(hours=1)
WEEK: Final = timedelta(days=7)
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
BUDGET_KEY: Final = "budget"
"""The scope key naming the budget of a `forecast` alert."""
CRITICAL_FACTOR: Final = Decimal(3)
"""A detector's alert is critical at this many times what was expected."""
CRITICAL_FORECAST: Final = Decimal("1.5")
"""A forecast is critical when it projects this many times the limit."""
DRIVER_SAMPLES: Final = 4
"""Baseline hours a spike's drivers are compared with (the latest of its baseline)."""
RATE_BUCKET: Final = timedelta(hours=6)
"""Resolution at which a forecast finds where a scope's history starts."""

_SPIKE: Final = CostSpikeRule()
_TASK_COST: Final = CostPerTaskRule()
_CALL_RATE: Final = CallRateRule()
_FORECAST: Final = ForecastRule()

_Key = tuple[str | None, ...]
_Measure = Callable[[EventTotals], Decimal]


class AnomalyScanner:
    """Finds cost spikes, cost-per-task and call-rate jumps, and budget overrun forecasts.

    ```python
    scanner = AnomalyScanner(ledger, scopes=[["team"], ["team", "agent"]], policy=policy)
    alerts = scanner.scan()                      # the windows that ended in the last hour
    AlertService(ledger, [LogChannel()]).publish(alerts)
    ```
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        scopes: Sequence[Sequence[str]] = DEFAULT_SCOPES,
        policy: Policy | None = None,
        spike: CostSpikeRule | None = _SPIKE,
        cost_per_task: CostPerTaskRule | None = _TASK_COST,
        call_rate: CallRateRule | None = _CALL_RATE,
        forecast: ForecastRule | None = _FORECAST,
        drivers: Sequence[str] = DEFAULT_DRIVERS,
        tz: ZoneInfo | None = None,
        clock: Clock = utcnow,
    ) -> None:
        """Scan `ledger` per scope.

        Args:
            ledger: where the cost events are.
            scopes: each a list of tags (`["team"]`, `["team", "agent"]`; `[]`: everything);
                a group of events lacking one of a scope's tags is not judged in that scope.
            policy: its USD budgets are forecast; its time zone is the default `tz`.
            spike: when an hour's cost is a spike (None: not looked for).
            cost_per_task: when a cost per task is too high (None: not looked for).
            call_rate: when calls per minute jumped (None: not looked for).
            forecast: which budgets are projected and how (None: none are).
            drivers: dimensions the drivers of an alert are looked for in (tags, or
                `model`, `tool`, `node`).
            tz: local time for weekday/hour slots and budget periods (default: the policy's
                zone, else UTC).
            clock: "now" when `scan` is not given one.
        """
        self.ledger = ledger
        self.scopes = _check_scopes(scopes)
        self.dimensions = tuple(dict.fromkeys(d for s in self.scopes for d in s))
        if len(self.dimensions) > MAX_DIMENSIONS:
            raise ConfigurationError(
                "scopes name too many tags",
                field="scopes",
                value=",".join(self.dimensions),
                expected=f"at most {MAX_DIMENSIONS} distinct tags",
            )
        self.policy = policy
        self.spike = spike
        self.cost_per_task = cost_per_task
        self.call_rate = call_rate
        self.forecast = forecast
        self.drivers = tuple(drivers)
        self.tz = tz or (policy.tz if policy is not None else ZoneInfo("UTC"))
        self._clock = clock

    def scan(
        self, *, since: datetime | None = None, now: datetime | None = None
    ) -> list[AlertRecord]:
        """The alerts of the windows that ended in `(since, now]` (default: the last hour).

        Forecasts are made as of `now`. The records are new objects, not yet stored (give
        them to `AlertService.publish`); the same scan again gives the same ids.
        """
        now = _aware(now or self._clock(), "now")
        since = _aware(since, "since") if since is not None else now - DEFAULT_CHECK
        if not since < now or now - since > MAX_CHECK:
            raise ConfigurationError(
                "a scan judges a span of time up to a week long",
                field="since",
                value=since.isoformat(),
                expected=f"before now ({now.isoformat()}) and at most 7 days before it",
            )
        alerts: list[AlertRecord] = []
        if self.spike is not None:
            alerts.extend(self._spikes(self.spike, since, now))
        if self.cost_per_task is not None:
            alerts.extend(self._task_costs(self.cost_per_task, since, now))
        if self.call_rate is not None:
            alerts.extend(self._call_rates(self.call_rate, since, now))
        if self.forecast is not None and self.policy is not None:
            alerts.extend(self._forecasts(self.forecast, now))
        return alerts

    # -- detectors --------------------------------------------------------------------------

    def _spikes(self, rule: CostSpikeRule, since: datetime, now: datetime) -> list[AlertRecord]:
        checked = _complete(HOUR, since, now)
        if not checked:
            return []
        span = rule.weeks * 168
        first = checked[0][0] - rule.weeks * WEEK
        windows = _steps(first, checked[-1][1], HOUR)
        costs = self._per_scope(windows, lambda t: t.cost)
        alerts = []
        for (dims, key), series in costs.items():
            start = min(series)
            for hour, end in checked:
                index = (hour - first) // HOUR
                if start >= index:
                    continue
                history = [
                    (windows[j][0], series.get(j, Decimal(0)))
                    for j in range(max(start, index - span), index)
                ]
                found = find_cost_spike(history, hour, series.get(index, Decimal(0)), self.tz, rule)
                if found is not None:
                    scope = _scope(dims, key)
                    samples = [(s, s + HOUR) for s in found.samples[-DRIVER_SAMPLES:]]
                    drivers = top_drivers(
                        self.ledger,
                        scope=scope,
                        window=(hour, end),
                        baseline=samples,
                        dimensions=self.drivers,
                    )
                    alerts.append(self._alert(found, scope, now, drivers))
        return alerts

    def _task_costs(
        self, rule: CostPerTaskRule, since: datetime, now: datetime
    ) -> list[AlertRecord]:
        checked = _complete(rule.window, since, now)
        if not checked:
            return []
        baseline = (checked[0][0] - rule.baseline, checked[0][0])
        alerts = []
        for dims in self.scopes:
            typed = rule.task_type_tag is not None and rule.task_type_tag not in dims
            by = (*dims, rule.task_type_tag) if typed and rule.task_type_tag else dims
            usual: dict[_Key, tuple[Decimal, int]] = {}
            for found in self.ledger.aggregate(by=by, windows=[baseline, *checked]):
                key = found.group
                if None in key[: len(dims)]:
                    continue
                if found.window == 0:
                    usual[key] = (found.totals.cost, found.totals.tasks)
                    continue
                base_cost, base_tasks = usual.get(key, (Decimal(0), 0))
                anomaly = find_cost_per_task_jump(
                    window=(found.start, found.end),
                    cost=found.totals.cost,
                    tasks=found.totals.tasks,
                    baseline_cost=base_cost,
                    baseline_tasks=base_tasks,
                    rule=rule,
                )
                if anomaly is not None:
                    scope = _scope(by, key)
                    drivers = top_drivers(
                        self.ledger,
                        scope=scope,
                        window=(found.start, found.end),
                        dimensions=[d for d in self.drivers if d != "task"],
                    )
                    alerts.append(self._alert(anomaly, scope, now, drivers))
        return alerts

    def _call_rates(self, rule: CallRateRule, since: datetime, now: datetime) -> list[AlertRecord]:
        checked = _complete(rule.block, since, now)
        if not checked:
            return []
        blocks = rule.baseline // rule.block
        first = checked[0][0] - rule.baseline
        windows = _steps(first, checked[-1][1], rule.block)
        calls = self._per_scope(windows, lambda t: Decimal(t.model_calls + t.tool_calls))
        alerts = []
        for (dims, key), series in calls.items():
            for block in checked:
                index = (block[0] - first) // rule.block
                before = sum(series.get(j, Decimal(0)) for j in range(index - blocks, index))
                found = find_call_rate_jump(
                    block=block,
                    calls=int(series.get(index, 0)),
                    baseline_calls=int(before),
                    rule=rule,
                )
                if found is not None:
                    alerts.append(self._alert(found, _scope(dims, key), now, []))
        return alerts

    def _forecasts(self, rule: ForecastRule, now: datetime) -> list[AlertRecord]:
        assert self.policy is not None
        alerts = []
        for budget in self.policy.budgets:
            if budget.unit != "usd" or budget.period not in rule.periods:
                continue
            alerts.extend(self._forecast_budget(budget, rule, now))
        return alerts

    def _forecast_budget(
        self, budget: Budget, rule: ForecastRule, now: datetime
    ) -> list[AlertRecord]:
        period = window_for(budget.period, now, self.tz)
        selector = budget.scope.root
        by = tuple(sorted(selector))
        where = {k: [v] for k, v in selector.items() if v != "*"}
        rate_start = now - rule.rate_window
        buckets = [
            (start, min(start + RATE_BUCKET, now))
            for start, _ in _steps(rate_start, now, RATE_BUCKET)
        ]
        windows: list[Window] = [*buckets]
        if now > period[0]:
            windows.append((period[0], now))
        spent: dict[_Key, Decimal] = defaultdict(Decimal)
        recent: dict[_Key, Decimal] = defaultdict(Decimal)
        oldest: dict[_Key, datetime] = {}
        for found in self.ledger.aggregate(by=by, windows=windows, where=where, distinct=False):
            if any(not v for v in found.group):
                continue  # a "*" tag must be set, as enforcement counts it
            if found.window == len(buckets):
                spent[found.group] = found.totals.cost
                continue
            recent[found.group] += found.totals.cost
            oldest[found.group] = min(oldest.get(found.group, found.start), found.start)
        alerts = []
        for key, first in oldest.items():
            result = find_forecast_overrun(
                period=period,
                now=now,
                limit=budget.limit,
                spent=spent.get(key, Decimal(0)),
                recent_cost=recent[key],
                history=now - first,
                rule=rule,
            )
            if result is None:
                continue
            anomaly, projection = result
            tags = {k: v for k, v in zip(by, key, strict=True) if v is not None}
            drivers = top_drivers(
                self.ledger,
                scope=tags,
                window=(period[0], now) if now > period[0] else (rate_start, now),
                dimensions=self.drivers,
                from_events=False,
            )
            scope = {BUDGET_KEY: budget.id, **tags}
            alerts.append(
                self._alert(anomaly, scope, now, drivers, projection=projection, budget=budget)
            )
        return alerts

    # -- shared -----------------------------------------------------------------------------

    def _per_scope(
        self, windows: Sequence[Window], measure: _Measure
    ) -> dict[tuple[tuple[str, ...], _Key], dict[int, Decimal]]:
        """`measure` of each scope's group in each window (window index -> value)."""
        found = self.ledger.aggregate(by=self.dimensions, windows=windows, distinct=False)
        positions = [tuple(self.dimensions.index(d) for d in dims) for dims in self.scopes]
        series: dict[tuple[tuple[str, ...], _Key], dict[int, Decimal]] = defaultdict(
            lambda: defaultdict(Decimal)
        )
        for total in found:
            value = measure(total.totals)
            for dims, where in zip(self.scopes, positions, strict=True):
                key = tuple(total.group[i] for i in where)
                if None not in key:
                    series[(dims, key)][total.window] += value
        return series

    def _alert(
        self,
        anomaly: Anomaly,
        scope: dict[str, str],
        now: datetime,
        drivers: list[dict[str, str]],
        *,
        projection: Projection | None = None,
        budget: Budget | None = None,
    ) -> AlertRecord:
        if anomaly.kind == "forecast":
            critical = anomaly.observed >= anomaly.expected * CRITICAL_FORECAST
        else:
            critical = anomaly.observed >= anomaly.expected * CRITICAL_FACTOR
        return AlertRecord(
            alert_id=alert_id(anomaly.kind, scope, anomaly.window_start, anomaly.window_end),
            kind=anomaly.kind,
            scope=scope,
            window_start=anomaly.window_start,
            window_end=anomaly.window_end,
            created_at=now,
            severity="critical" if critical else "warning",
            message=describe(anomaly, scope, self.tz, projection=projection, budget=budget),
            observed=anomaly.observed,
            expected=anomaly.expected,
            drivers=drivers,
        )


def _check_scopes(scopes: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    if isinstance(scopes, str) or any(isinstance(s, str) for s in scopes):
        raise ConfigurationError(
            "scopes are lists of tag names",
            field="scopes",
            value=repr(scopes)[:200],
            expected='a list of lists, such as [["team"], ["team", "agent"]]',
        )
    checked = []
    for scope in scopes:
        dims = tuple(scope)
        if len(set(dims)) != len(dims):
            raise ConfigurationError(
                "a scope names a tag twice", field="scopes", value=",".join(dims)
            )
        checked.append(dims)
    return tuple(dict.fromkeys(checked))


def _aware(moment: datetime, name: str) -> datetime:
    if moment.utcoffset() is None:
        raise ConfigurationError(
            f"{name} must be timezone-aware",
            field=name,
            value=repr(moment),
            expected="an aware datetime",
        )
    return moment.astimezone(UTC)


def _floor(moment: datetime, step: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // step) * step


def _steps(start: datetime, end: datetime, step: timedelta) -> list[Window]:
    found = []
    at = start
    while at < end:
        found.append((at, at + step))
        at += step
    return found


def _complete(step: timedelta, since: datetime, now: datetime) -> list[Window]:
    """The epoch-aligned windows of length `step` that ended in `(since, now]`."""
    end = _floor(now, step)
    first = _floor(since, step)
    return [w for w in _steps(first, end, step) if w[1] > since]


def _scope(dims: Iterable[str], key: _Key) -> dict[str, str]:
    return {d: v for d, v in zip(dims, key, strict=True) if v is not None}
