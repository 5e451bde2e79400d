"""The anomaly detectors on synthetic series: spikes, weekly patterns, cost per task, forecasts.

The scan of a whole ledger is tested in test_anomalies_scan.py.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from agent_finops.anomalies import (
    CallRateRule,
    CostPerTaskRule,
    CostSpikeRule,
    ForecastRule,
    alert_id,
    find_call_rate_jump,
    find_cost_per_task_jump,
    find_cost_spike,
    find_forecast_overrun,
    mad,
    median,
    project_spend,
    seasonal_baseline,
)

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
HOUR = timedelta(hours=1)
START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday


def weekly_cost(at: datetime, rng: random.Random, tz: ZoneInfo = UTC_ZONE) -> Decimal:
    """A week-shaped hourly cost: Monday-morning peaks, office hours, quiet nights, weekends."""
    local = at.astimezone(tz)
    if local.weekday() == 0 and 8 <= local.hour < 12:
        base = 60.0  # the Monday-morning peak
    elif local.weekday() >= 5:
        base = 2.0
    elif 8 <= local.hour < 19:
        base = 12.0
    else:
        base = 1.0
    return Decimal(str(round(base * rng.uniform(0.85, 1.15), 4)))


def series(hours: int, tz: ZoneInfo = UTC_ZONE, seed: int = 7) -> list[tuple[datetime, Decimal]]:
    rng = random.Random(seed)
    return [(START + i * HOUR, weekly_cost(START + i * HOUR, rng, tz)) for i in range(hours)]


def test_median_and_mad_are_robust_to_one_outlier() -> None:
    values = [Decimal(v) for v in ("10", "11", "9", "10", "1000")]
    assert median(values) == 10
    assert mad(values) == 1
    assert median([Decimal(1), Decimal(2)]) == Decimal("1.5")
    with pytest.raises(ValueError):
        median([])


def test_a_weekly_pattern_gives_no_false_alarm() -> None:
    """Every hour of a fifth week of the same weekly shape, Monday peaks included: silent."""
    history = series(5 * 168)
    alarms = [
        (hour, cost)
        for index, (hour, cost) in enumerate(history)
        if index >= 4 * 168
        and find_cost_spike(history[index - 4 * 168 : index], hour, cost, UTC_ZONE)
    ]
    assert alarms == []


def test_the_monday_peak_would_alarm_without_the_weekday_slot() -> None:
    """Against the same hour on any day, the Monday peak would stand out.

    The weekday slot is what keeps it quiet.
    """
    history = series(4 * 168)
    monday_ten = START + 4 * 168 * HOUR + 10 * HOUR
    assert find_cost_spike(history, monday_ten, Decimal(60), UTC_ZONE) is None
    baseline = seasonal_baseline(history, monday_ten, UTC_ZONE, min_samples=5)
    assert baseline is not None and baseline.basis == "hour_of_day"
    assert baseline.median < 20


def test_an_injected_spike_is_found() -> None:
    history = series(4 * 168)
    tuesday_three = START + 4 * 168 * HOUR + 24 * HOUR + 3 * HOUR
    found = find_cost_spike(history, tuesday_three, Decimal("25"), UTC_ZONE)
    assert found is not None
    assert found.kind == "cost_spike" and found.basis == "weekday_hour"
    assert found.window_start == tuesday_three and found.window_end == tuesday_three + HOUR
    assert found.observed == Decimal(25) and Decimal("0.8") < found.expected < Decimal("1.2")
    assert found.score > 10 and len(found.samples) == 4
    # The same hour at its usual cost is no spike.
    assert find_cost_spike(history, tuesday_three, Decimal("1.1"), UTC_ZONE) is None


def test_pennies_never_alarm() -> None:
    history = [(START + i * HOUR, Decimal("0.001")) for i in range(4 * 168)]
    hour = START + 4 * 168 * HOUR
    assert find_cost_spike(history, hour, Decimal("0.5"), UTC_ZONE) is None  # 500x, but $0.50
    assert find_cost_spike(history, hour, Decimal("5"), UTC_ZONE) is not None
    strict = CostSpikeRule(min_cost=Decimal(10))
    assert find_cost_spike(history, hour, Decimal("5"), UTC_ZONE, strict) is None


def test_a_flat_history_still_needs_a_real_increase() -> None:
    """MAD is zero for a flat series: the spread floor (10% of the median) keeps +20% quiet."""
    history = [(START + i * HOUR, Decimal(10)) for i in range(4 * 168)]
    hour = START + 4 * 168 * HOUR
    assert find_cost_spike(history, hour, Decimal(12), UTC_ZONE) is None
    assert find_cost_spike(history, hour, Decimal(16), UTC_ZONE) is not None


def test_thin_history_falls_back_to_hour_of_day_then_global_then_nothing() -> None:
    one_week = series(168)
    tuesday_three = START + 168 * HOUR + 24 * HOUR + 3 * HOUR
    day = seasonal_baseline(one_week, tuesday_three, UTC_ZONE, min_samples=3)
    assert day is not None and day.basis == "hour_of_day" and len(day.samples) == 7
    half_day = series(12)
    at = START + 12 * HOUR
    overall = seasonal_baseline(half_day, at, UTC_ZONE, min_samples=3)
    assert overall is not None and overall.basis == "global"
    assert find_cost_spike(half_day, at, Decimal(100), UTC_ZONE) is None  # < 24 hours known
    assert seasonal_baseline(half_day[:2], at, UTC_ZONE, min_samples=3) is None


def test_slots_are_local_time_across_daylight_saving() -> None:
    """A Paris Monday-morning peak stays quiet in the week after the clocks change."""
    start = datetime(2026, 10, 5, tzinfo=UTC)
    rng = random.Random(3)
    hours = [start + i * HOUR for i in range(5 * 168)]  # crosses 2026-10-25 (fall back)
    history = [(h, weekly_cost(h, rng, PARIS)) for h in hours]
    alarms = [
        hour
        for index, (hour, cost) in enumerate(history)
        if index >= 4 * 168 and find_cost_spike(history[index - 4 * 168 : index], hour, cost, PARIS)
    ]
    assert alarms == []


def test_cost_per_task_three_times_the_seven_day_average_is_found() -> None:
    window = (START, START + HOUR)
    usual = {"baseline_cost": Decimal(70), "baseline_tasks": 700}  # $0.10 a task
    found = find_cost_per_task_jump(window=window, cost=Decimal("3.0"), tasks=10, **usual)
    assert found is not None and found.kind == "cost_per_task"
    assert found.observed == Decimal("0.3") and found.expected == Decimal("0.1")
    assert found.score == pytest.approx(3.0)
    assert find_cost_per_task_jump(window=window, cost=Decimal("2.9"), tasks=10, **usual) is None
    # Too few tasks, or pennies, are not judged.
    assert find_cost_per_task_jump(window=window, cost=Decimal(9), tasks=2, **usual) is None
    tiny = {"baseline_cost": Decimal("0.7"), "baseline_tasks": 700}
    assert find_cost_per_task_jump(window=window, cost=Decimal("0.5"), tasks=10, **tiny) is None
    lenient = CostPerTaskRule(factor=Decimal(2))
    assert find_cost_per_task_jump(window=window, cost=Decimal(2), tasks=10, rule=lenient, **usual)


def test_a_call_rate_jump_is_found() -> None:
    block = (START, START + timedelta(minutes=5))
    found = find_call_rate_jump(block=block, calls=300, baseline_calls=720)  # 60/min vs 12/min
    assert found is not None and found.kind == "call_rate"
    assert found.observed == Decimal(60) and found.expected == Decimal(12)
    assert find_call_rate_jump(block=block, calls=150, baseline_calls=720) is None  # 2.5x
    assert find_call_rate_jump(block=block, calls=40, baseline_calls=0) is None  # 8/min only
    new = find_call_rate_jump(block=block, calls=100, baseline_calls=0)
    assert new is not None and new.score == float("inf")
    with pytest.raises(ValueError):
        CallRateRule(block=timedelta(minutes=7), baseline=timedelta(hours=1))


def test_projection_uses_the_recent_rate_not_a_quiet_start() -> None:
    month = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    now = datetime(2026, 11, 11, tzinfo=UTC)
    # Nothing the first 8 days, then $50/day: $100 spent; the month average says $10/day.
    projection = project_spend(
        spent=Decimal(100),
        recent_cost=Decimal(100),
        recent_span=timedelta(days=2),
        now=now,
        period_end=month[1],
        limit=Decimal(1000),
    )
    assert projection.rate_per_day == Decimal(50)
    assert projection.projected == Decimal(100 + 50 * 20)
    assert projection.crosses_at == now + timedelta(days=18)


def test_a_slow_drift_is_caught_by_the_forecast_before_the_thresholds() -> None:
    """A slow drift is caught by the forecast, before the first threshold.

    Spend grows 4% a day from $25: no day is a spike, but the month lands at $1,400 against
    $1,000; the forecast says so while the spend is under the first (50%) threshold.
    """
    month = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    daily = [Decimal(25) * Decimal("1.04") ** d for d in range(30)]
    assert sum(daily) > 1400
    limit = Decimal(1000)
    first_alarm = None
    for day in range(1, 30):
        now = month[0] + timedelta(days=day)
        spent = sum(daily[:day], Decimal(0))
        recent = daily[max(0, day - 7) : day]
        found = find_forecast_overrun(
            period=month,
            now=now,
            limit=limit,
            spent=spent,
            recent_cost=sum(recent, Decimal(0)),
            history=timedelta(days=len(recent)),
        )
        if found is not None:
            first_alarm = (day, spent)
            anomaly, projection = found
            assert anomaly.kind == "forecast" and anomaly.expected == limit
            assert anomaly.observed == projection.projected > limit
            assert (anomaly.window_start, anomaly.window_end) == month
            break
    assert first_alarm is not None
    day, spent = first_alarm
    assert spent < limit * Decimal("0.5"), (day, spent)  # before the 50% threshold
    # Each day's spend is within a few percent of the day before: no spike to see.
    assert all(b / a < Decimal("1.05") for a, b in itertools.pairwise(daily))


def test_no_forecast_from_too_little_history_or_once_over_the_limit() -> None:
    month = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    now = datetime(2026, 11, 2, tzinfo=UTC)
    args = {"period": month, "now": now, "limit": Decimal(100), "recent_cost": Decimal(50)}
    assert find_forecast_overrun(spent=Decimal(5), history=timedelta(hours=3), **args) is None
    assert find_forecast_overrun(spent=Decimal(5), history=timedelta(days=1), **args) is not None
    assert find_forecast_overrun(spent=Decimal(100), history=timedelta(days=1), **args) is None
    with pytest.raises(ValueError):
        ForecastRule(periods=("rolling",))


def test_alert_ids_are_deterministic_and_distinct() -> None:
    a = alert_id("cost_spike", {"team": "search", "agent": "x"}, START, START + HOUR)
    assert a == alert_id("cost_spike", {"agent": "x", "team": "search"}, START, START + HOUR)
    assert a.startswith("cost_spike-")
    assert a != alert_id("cost_spike", {"team": "search"}, START, START + HOUR)
    assert a != alert_id("call_rate", {"team": "search", "agent": "x"}, START, START + HOUR)
    paris = START.astimezone(PARIS)
    assert a == alert_id("cost_spike", {"team": "search", "agent": "x"}, paris, paris + HOUR)
