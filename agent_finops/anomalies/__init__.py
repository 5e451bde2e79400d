"""Anomaly detection on a ledger's spend: cost spikes, cost per task, call rate, forecasts.

The detectors are pure functions on series (no ledger, no framework): `find_cost_spike`
(an hour against the median and MAD of the same weekday and hour in past weeks),
`find_cost_per_task_jump` (against the 7-day average), `find_call_rate_jump` (a 5-minute
block against the hour before) and `find_forecast_overrun` (a budget's period-end
projection from its burn rate). `AnomalyScanner` feeds them from `Ledger.aggregate` and
turns what they find into `AlertRecord`s with deterministic ids and the top cost drivers;
`agent_finops.alerts` delivers them. See docs/alerts.md.
"""

from agent_finops.anomalies._baseline import (
    MAD_TO_SIGMA,
    Baseline,
    BaselineBasis,
    mad,
    median,
    seasonal_baseline,
)
from agent_finops.anomalies._call_rate import DEFAULT_RATE_FACTOR, CallRateRule, find_call_rate_jump
from agent_finops.anomalies._drivers import (
    DEFAULT_DRIVERS,
    EVENT_DIMENSIONS,
    MAX_DRIVERS,
    top_drivers,
)
from agent_finops.anomalies._finding import Anomaly
from agent_finops.anomalies._forecast import (
    DEFAULT_FORECAST_MIN_HISTORY,
    DEFAULT_FORECAST_RATE_WINDOW,
    ForecastRule,
    Projection,
    find_forecast_overrun,
    project_spend,
)
from agent_finops.anomalies._ids import alert_id
from agent_finops.anomalies._scanner import (
    BUDGET_KEY,
    DEFAULT_CHECK,
    DEFAULT_SCOPES,
    MAX_CHECK,
    AnomalyScanner,
)
from agent_finops.anomalies._spike import (
    DEFAULT_SPIKE_MIN_COST,
    DEFAULT_SPIKE_WEEKS,
    DEFAULT_SPIKE_Z,
    CostSpikeRule,
    find_cost_spike,
)
from agent_finops.anomalies._task_cost import (
    DEFAULT_TASK_FACTOR,
    CostPerTaskRule,
    find_cost_per_task_jump,
)

__all__ = [
    # the scanner
    "AnomalyScanner",
    "DEFAULT_SCOPES",
    "DEFAULT_CHECK",
    "MAX_CHECK",
    "BUDGET_KEY",
    "alert_id",
    "top_drivers",
    "DEFAULT_DRIVERS",
    "EVENT_DIMENSIONS",
    "MAX_DRIVERS",
    # detectors and their settings
    "Anomaly",
    "CostSpikeRule",
    "find_cost_spike",
    "CostPerTaskRule",
    "find_cost_per_task_jump",
    "CallRateRule",
    "find_call_rate_jump",
    "ForecastRule",
    "Projection",
    "find_forecast_overrun",
    "project_spend",
    # robust statistics
    "Baseline",
    "BaselineBasis",
    "seasonal_baseline",
    "median",
    "mad",
    "MAD_TO_SIGMA",
    # defaults
    "DEFAULT_SPIKE_WEEKS",
    "DEFAULT_SPIKE_Z",
    "DEFAULT_SPIKE_MIN_COST",
    "DEFAULT_TASK_FACTOR",
    "DEFAULT_RATE_FACTOR",
    "DEFAULT_FORECAST_RATE_WINDOW",
    "DEFAULT_FORECAST_MIN_HISTORY",
]
