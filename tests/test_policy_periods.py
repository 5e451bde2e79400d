"""Budget periods: durations, DST-correct calendar windows, ISO weeks, rolling buckets, keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent_finops.exceptions import ConfigurationError
from agent_finops.policy.periods import (
    PeriodKind,
    counter_key,
    format_duration,
    parse_duration,
    window_for,
)

PARIS = ZoneInfo("Europe/Paris")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def paris(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS)


# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "1.5h", "-1m", "0s", "2w", "2H"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_duration(text)
    assert caught.value.value == text
    assert "'90s', '30m', '2h' or '7d'" in str(caught.value)


@pytest.mark.parametrize(
    ("window", "text"),
    [
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=60), "1h"),
        (timedelta(hours=48), "2d"),
        (timedelta(minutes=30), "30m"),
    ],
)
def test_format_duration_round_trips(window: timedelta, text: str) -> None:
    assert format_duration(window) == text
    assert parse_duration(text) == window


def test_format_duration_rejects_sub_second_and_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(milliseconds=1500))
    with pytest.raises(ValueError):
        format_duration(timedelta(0))


# -- daily windows and DST ------------------------------------------------------------------


def test_ordinary_paris_day() -> None:
    start, end = window_for("daily", utc("2026-11-22T12:00"), PARIS)
    assert (start, end) == (utc("2026-11-21T23:00"), utc("2026-11-22T23:00"))
    assert start.tzinfo is UTC


def test_spring_forward_day_is_23_hours() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST
    start, end = window_for("daily", utc("2026-03-29T12:00"), PARIS)
    assert (start, end) == (utc("2026-03-28T23:00"), utc("2026-03-29T22:00"))
    assert end - start == timedelta(hours=23)
    assert start == paris("2026-03-29T00:00") and end == paris("2026-03-30T00:00")


def test_autumn_back_day_is_25_hours() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET
    start, end = window_for("daily", utc("2026-10-25T12:00"), PARIS)
    assert (start, end) == (utc("2026-10-24T22:00"), utc("2026-10-25T23:00"))
    assert end - start == timedelta(hours=25)


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (utc("2026-03-28T22:59:59"), "2026-03-28"),  # 23:59:59 CET
        (utc("2026-03-28T23:00"), "2026-03-29"),  # local midnight
        (utc("2026-03-29T00:59:59"), "2026-03-29"),  # just before the gap
        (utc("2026-03-29T01:00"), "2026-03-29"),  # 03:00 CEST
        (utc("2026-03-29T21:59:59"), "2026-03-29"),
        (utc("2026-03-29T22:00"), "2026-03-30"),  # midnight CEST
        (utc("2026-10-25T00:30"), "2026-10-25"),  # first 02:30 (CEST)
        (utc("2026-10-25T01:30"), "2026-10-25"),  # second 02:30 (CET)
        (utc("2026-10-25T22:59:59"), "2026-10-25"),
        (utc("2026-10-25T23:00"), "2026-10-26"),
    ],
)
def test_instants_around_dst_land_in_the_right_day(now: datetime, day: str) -> None:
    start, end = window_for("daily", now, PARIS)
    assert start <= now < end
    assert counter_key("r", "*", "daily", now, PARIS) == f"r|*|{day}"


def test_midnight_inside_a_dst_gap_starts_the_day_at_the_transition() -> None:
    # Chile moves 2026-09-06 00:00 -> 01:00: that day starts at 01:00 local.
    santiago = ZoneInfo("America/Santiago")
    start, end = window_for("daily", utc("2026-09-06T12:00"), santiago)
    assert start == utc("2026-09-06T04:00")
    assert start.astimezone(santiago).hour == 1
    assert end - start == timedelta(hours=23)
    _, previous_end = window_for("daily", start - timedelta(seconds=1), santiago)
    assert previous_end == start


# -- hourly -------------------------------------------------------------------------------


def test_hourly_follows_local_hours() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    start, end = window_for("hourly", utc("2026-11-22T10:45"), kolkata)
    assert (start, end) == (utc("2026-11-22T10:30"), utc("2026-11-22T11:30"))
    assert counter_key("r", "*", "hourly", utc("2026-11-22T10:45"), kolkata) == "r|*|2026-11-22T16"


def test_repeated_autumn_hour_is_one_bucket() -> None:
    first, second = utc("2026-10-25T00:30"), utc("2026-10-25T01:30")  # both 02:30 Paris
    assert window_for("hourly", first, PARIS) == window_for("hourly", second, PARIS)
    assert window_for("hourly", first, PARIS) == (utc("2026-10-25T00:00"), utc("2026-10-25T02:00"))
    assert counter_key("r", "*", "hourly", first, PARIS) == "r|*|2026-10-25T02"
    assert counter_key("r", "*", "hourly", second, PARIS) == "r|*|2026-10-25T02"


def test_skipped_spring_hour_has_no_bucket() -> None:
    before = window_for("hourly", utc("2026-03-29T00:30"), PARIS)  # 01:30 CET
    after = window_for("hourly", utc("2026-03-29T01:30"), PARIS)  # 03:30 CEST
    assert before == (utc("2026-03-29T00:00"), utc("2026-03-29T01:00"))
    assert after == (utc("2026-03-29T01:00"), utc("2026-03-29T02:00"))
    assert counter_key("r", "*", "hourly", utc("2026-03-29T01:30"), PARIS) == "r|*|2026-03-29T03"


# -- weeks and months -----------------------------------------------------------------------


def test_iso_week_starts_monday_local_midnight() -> None:
    now = utc("2026-11-22T12:00")  # a Sunday
    start, end = window_for("weekly", now, PARIS)
    assert start == paris("2026-11-16T00:00") and end == paris("2026-11-23T00:00")
    assert counter_key("support-weekly", "team=support", "weekly", now, PARIS) == (
        "support-weekly|team=support|2026-W47"
    )


def test_iso_week_spanning_new_year() -> None:
    now = utc("2027-01-01T12:00")  # Friday, ISO week 53 of 2026
    start, end = window_for("weekly", now, PARIS)
    assert start == paris("2026-12-28T00:00") and end == paris("2027-01-04T00:00")
    assert counter_key("w", "*", "weekly", now, PARIS) == "w|*|2026-W53"
    assert counter_key("w", "*", "weekly", utc("2027-01-03T23:00"), PARIS) == "w|*|2027-W01"


def test_week_containing_dst_change_is_one_hour_longer() -> None:
    start, end = window_for("weekly", utc("2026-10-25T12:00"), PARIS)
    assert (start, end) == (utc("2026-10-18T22:00"), utc("2026-10-25T23:00"))
    assert end - start == timedelta(days=7, hours=1)


@pytest.mark.parametrize(
    ("now", "month", "start", "end"),
    [
        (
            paris("2026-01-31T23:59:59"),
            "2026-01",
            paris("2026-01-01T00:00"),
            paris("2026-02-01T00:00"),
        ),
        (utc("2026-01-31T23:30"), "2026-02", paris("2026-02-01T00:00"), paris("2026-03-01T00:00")),
        (
            paris("2026-02-28T12:00"),
            "2026-02",
            paris("2026-02-01T00:00"),
            paris("2026-03-01T00:00"),
        ),
        (
            paris("2028-02-29T12:00"),
            "2028-02",
            paris("2028-02-01T00:00"),
            paris("2028-03-01T00:00"),
        ),
        (
            paris("2026-12-31T23:00"),
            "2026-12",
            paris("2026-12-01T00:00"),
            paris("2027-01-01T00:00"),
        ),
        (
            paris("2026-03-31T12:00"),
            "2026-03",
            paris("2026-03-01T00:00"),
            paris("2026-04-01T00:00"),
        ),
    ],
)
def test_month_windows(now: datetime, month: str, start: datetime, end: datetime) -> None:
    assert window_for("monthly", now, PARIS) == (start, end)
    assert counter_key("m", "*", "monthly", now, PARIS) == f"m|*|{month}"


@pytest.mark.parametrize("period", ["hourly", "daily", "weekly", "monthly"])
@pytest.mark.parametrize(
    "zone", ["Europe/Paris", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata"]
)
def test_calendar_windows_tile_the_year(period: PeriodKind, zone: str) -> None:
    """Every instant is inside its window, and consecutive windows meet exactly."""
    tz = ZoneInfo(zone)
    now = utc("2026-01-01T00:00")
    step = timedelta(minutes=37)
    previous: tuple[datetime, datetime] | None = None
    while now < utc("2027-01-01T00:00"):
        start, end = window_for(period, now, tz)
        assert start <= now < end
        if previous is not None and previous != (start, end):
            assert previous[1] == start
        previous = (start, end)
        now += step


# -- rolling buckets ----------------------------------------------------------------------


def test_rolling_buckets_are_epoch_aligned() -> None:
    window = timedelta(hours=2)
    start, end = window_for("rolling", utc("2026-11-22T15:10"), PARIS, window=window)
    assert (start, end) == (utc("2026-11-22T14:00"), utc("2026-11-22T16:00"))
    assert window_for("rolling", utc("2026-11-22T16:00"), PARIS, window=window)[0] == end
    key = counter_key("spend-2h", "*", "rolling", utc("2026-11-22T15:59:59"), PARIS, window=window)
    assert key == "spend-2h|*|2026-11-22T14:00:00Z/2h"


def test_rolling_buckets_ignore_the_policy_zone() -> None:
    now = utc("2026-11-22T15:10")
    window = timedelta(minutes=30)
    assert window_for("rolling", now, PARIS, window=window) == window_for(
        "rolling", now, ZoneInfo("Asia/Kolkata"), window=window
    )


def test_odd_rolling_windows_align_to_the_epoch() -> None:
    start, end = window_for("rolling", utc("2026-11-22T12:00"), PARIS, window=timedelta(days=7))
    assert start.weekday() == 3  # 1970-01-01 was a Thursday
    assert end - start == timedelta(days=7)
    start, _ = window_for(
        "rolling", utc("1970-01-01T00:02:59"), PARIS, window=timedelta(seconds=90)
    )
    assert start == utc("1970-01-01T00:01:30")


def test_rolling_needs_a_window() -> None:
    with pytest.raises(ValueError, match="window"):
        window_for("rolling", utc("2026-11-22T12:00"), PARIS)
    with pytest.raises(ValueError, match="window"):
        counter_key("r", "*", "rolling", utc("2026-11-22T12:00"), PARIS)


# -- counter keys -------------------------------------------------------------------------


def test_run_and_task_keys() -> None:
    now = utc("2026-11-22T12:00")
    assert counter_key("cap", "*", "run", now, PARIS, run_id="abc-123") == "cap|*|run=abc-123"
    assert counter_key("cap", "team=x", "task", now, PARIS, task="t|1") == "cap|team=x|task=t%7C1"
    with pytest.raises(ValueError, match="run_id"):
        counter_key("cap", "*", "run", now, PARIS)
    with pytest.raises(ValueError, match="task"):
        counter_key("cap", "*", "task", now, PARIS)
    with pytest.raises(ValueError, match="not a time window"):
        window_for("run", now, PARIS)


def test_keys_are_stable_across_representations_of_the_same_instant() -> None:
    a = counter_key("d", "*", "daily", utc("2026-11-22T12:00"), PARIS)
    b = counter_key("d", "*", "daily", paris("2026-11-22T13:00"), PARIS)
    assert a == b == "d|*|2026-11-22"


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_for("daily", datetime(2026, 11, 22), PARIS)
    with pytest.raises(ValueError, match="timezone-aware"):
        counter_key("d", "*", "daily", datetime(2026, 11, 22), PARIS)
