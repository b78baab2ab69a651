"""The soak's judge: the second half's least-squares slope, and flat against a bound."""

from __future__ import annotations

import random

import pytest

from bench.chaos_workload import Row, Section
from bench.soak_sample import judge, slope_per_hour
from bench.soak_workload import SoakWorkload, SteadyRegistrar, Teaching


@pytest.mark.parametrize(
    ("points", "per_hour"),
    [
        ([], 0.0),
        ([(0.0, 5.0)], 0.0),
        ([(0.0, 100.0), (3600.0, 100.0)], 0.0),
        ([(0.0, 100.0), (1800.0, 101.0), (3600.0, 102.0)], 2.0),
        ([(0.0, 10.0), (60.0, 9.0)], -60.0),
    ],
)
def test_slope_is_least_squares_per_hour(
    points: list[tuple[float, float]], per_hour: float
) -> None:
    assert slope_per_hour(points) == pytest.approx(per_hour)


def test_only_the_second_half_counts() -> None:
    """Start-up growth (the first half) does not make a process grow."""
    warm_up = [(t * 60.0, 10.0 + t * 20) for t in range(15)]
    steady = [(t * 60.0, 300.0 + (t % 2) * 0.1) for t in range(15, 31)]
    judgement = judge(warm_up + steady, bound_per_day=50)
    assert judgement.flat
    assert judgement.first == 10.0
    assert judgement.most == pytest.approx(300.1)


def test_growth_over_the_bound_is_reported_per_day() -> None:
    points = [(t * 60.0, 100.0 + t * 0.1) for t in range(31)]  # 6 MB an hour
    judgement = judge(points, bound_per_day=50)
    assert not judgement.flat
    assert judgement.verdict("MB") == "GROWS +144.0 MB/24 h"


def test_the_workload_holds_the_tables_at_their_seeded_level() -> None:
    """Stationary: after many steps the registrations and instructors stay near
    their seeded counts (a size that still climbs is then the product's)."""
    sections = [Section(f"C{k}", "LEC", "01") for k in range(10)]
    people = [f"P{n:09d}" for n in range(40)]
    rows = [Row(p, s.event_id, "LEC", "01", "A") for p in people for s in sections[:3]]
    rng = random.Random(3)  # noqa: S311 - a workload
    workload = SoakWorkload(
        rng,
        SteadyRegistrar(rng, rows, sections, [], people),
        faculty=["P000090000", "P000090001", "P000090002"],
        sections=sections,
        teaching=[Teaching("P000090000", s, 100) for s in sections],
        standings=dict.fromkeys(people, "ENRL"),
    )
    for n in range(5000):
        workload.step(n * 0.3)
    assert len(workload.registrar.rows) <= len(rows) * 1.05 + 8
    assert len(workload.teaching) <= len(sections) * 1.05 + 1
    assert sum(code != "ENRL" for code in workload.standings.values()) <= 5
    assert min(workload.counts.values()) > 0
    registered = {
        (r.person, r.stored_event_id) for r in workload.registrar.rows.values()
    }
    assert len(registered) <= len(people) * 4  # three seeded courses and one more
