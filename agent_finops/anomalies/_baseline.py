"""Robust seasonal baselines: median and MAD of the same weekday and hour in past weeks.

An hour is compared with the hours that share its *slot*: the same local weekday and hour
(Monday 09:00 with the previous Mondays at 09:00), so a weekly pattern such as a Monday
morning peak is its own baseline and never an alarm. When a slot has too few samples (a
scope seen for less than `min_samples` weeks), the baseline falls back to the same local
hour on any day, then to every hour of the history. Spread is the median absolute
deviation scaled to a standard deviation (x 1.4826), so one past outlier moves neither the
centre nor the spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo

__all__ = ["MAD_TO_SIGMA", "Baseline", "BaselineBasis", "mad", "median", "seasonal_baseline"]

MAD_TO_SIGMA: Final = Decimal("1.4826")
"""Scales a median absolute deviation to a standard deviation (for normal data)."""

BaselineBasis = Literal["weekday_hour", "hour_of_day", "global"]
"""Which hours a baseline was computed from: the same weekday and hour, the same hour of any
day, or every hour."""


def median(values: Sequence[Decimal]) -> Decimal:
    """The median (the mean of the two middle values for an even count); ValueError if empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def mad(values: Sequence[Decimal], centre: Decimal | None = None) -> Decimal:
    """Median absolute deviation from `centre` (default: the median)."""
    mid = median(values) if centre is None else centre
    return median([abs(v - mid) for v in values])


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """What an hour is expected to cost: centre, spread and the hours they come from."""

    median: Decimal
    sigma: Decimal
    """MAD x 1.4826 (zero when at least half the samples are equal)."""
    basis: BaselineBasis
    samples: tuple[datetime, ...]
    """The starts of the hours used."""


def seasonal_baseline(
    history: Sequence[tuple[datetime, Decimal]],
    at: datetime,
    tz: ZoneInfo,
    *,
    min_samples: int,
) -> Baseline | None:
    """The baseline of the hour starting `at`, from `history` (hour start, cost) before it.

    `history` holds every hour the scope existed for (zero-cost hours included) and only
    hours before `at`. Slots are local to `tz`. Tries the same weekday and hour, then the
    same hour of day, then all hours, taking the first with at least `min_samples` hours;
    None when even the whole history is shorter.
    """
    local = at.astimezone(tz)
    weekday, hour = local.weekday(), local.hour
    same_slot: list[tuple[datetime, Decimal]] = []
    same_hour: list[tuple[datetime, Decimal]] = []
    for start, cost in history:
        when = start.astimezone(tz)
        if when.hour == hour:
            same_hour.append((start, cost))
            if when.weekday() == weekday:
                same_slot.append((start, cost))
    candidates: tuple[tuple[BaselineBasis, Sequence[tuple[datetime, Decimal]]], ...] = (
        ("weekday_hour", same_slot),
        ("hour_of_day", same_hour),
        ("global", history),
    )
    for basis, points in candidates:
        if len(points) >= min_samples:
            values = [cost for _, cost in points]
            centre = median(values)
            return Baseline(
                median=centre,
                sigma=mad(values, centre) * MAD_TO_SIGMA,
                basis=basis,
                samples=tuple(start for start, _ in points),
            )
    return None
