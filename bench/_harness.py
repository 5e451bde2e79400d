"""What the graph overhead benchmarks share: interleaved rounds, the figures table, machine facts.

A *mode* is a function `(graph, tmp) -> seconds` that runs bench_tracking's workload once in
one configuration and returns the time it took (set-up and checks outside the clock). The
modes run interleaved, in a different order each round, so background load on a shared
machine hits them all alike; the median round is what the scripts report.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph

__all__ = ["Mode", "interleaved_rounds", "load_average", "print_modes_table", "rss_bytes"]

Mode = Callable[[CompiledStateGraph, Path], float]
"""Runs the workload once in one configuration; returns the seconds it took."""


def interleaved_rounds(
    modes: Mapping[str, tuple[str, Mode]],
    graph: CompiledStateGraph,
    tmp: Path,
    rounds: int,
    *,
    after_warmup: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """One warm-up run of every mode, then `rounds` rounds with the order rotated each round.

    Returns each mode's timings (seconds), one per round, in round order.
    """
    for key in modes:  # warm-up: imports, caches, genai-prices look-ups
        modes[key][1](graph, tmp)
    if after_warmup is not None:
        after_warmup()
    times: dict[str, list[float]] = {key: [] for key in modes}
    order = list(modes)
    for round_no in range(rounds):  # rotate the order so no mode is always first
        shift = round_no % len(order)
        for key in order[shift:] + order[:shift]:
            times[key].append(modes[key][1](graph, tmp))
    return times


def print_modes_table(
    modes: Mapping[str, tuple[str, Mode]], times: Mapping[str, list[float]], calls: int, base: str
) -> None:
    """Print one line per mode: median seconds, µs per call, ratio to `base`, every round."""
    reference = statistics.median(times[base])
    print(f"  {'mode':<42} {'total s':>8} {'us/call':>8} {'vs (a)':>7}  rounds (s)")
    for key, (label, _) in modes.items():
        med = statistics.median(times[key])
        each = " ".join(f"{t:.3f}" for t in times[key])
        print(
            f"  ({key}) {label:<38} {med:8.3f} {med / calls * 1e6:8.1f} "
            f"{med / reference:6.2f}x  {each}"
        )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def rss_bytes() -> int:
    """This process's resident set size now (Linux: /proc/self/statm), not its peak."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
