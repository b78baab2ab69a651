"""The staleness alarm's pure rules: business hours, conditions, raise/repeat/recover."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from operations.alarm import (
    AlarmBook,
    AlarmPolicy,
    BusinessHours,
    Condition,
    Observation,
    conditions,
    describe_duration,
)

TORONTO = ZoneInfo("America/Toronto")
HOURS = BusinessHours(
    days=frozenset(range(5)), start=time(8), end=time(18), zone=TORONTO
)
POLICY = AlarmPolicy(
    hours=HOURS,
    quiet_in_hours=timedelta(minutes=30),
    quiet_out_of_hours=timedelta(hours=4),
    lag=timedelta(minutes=10),
    repeat=timedelta(hours=1),
)
#: Monday 11 January 2021, 10:00 in Toronto (15:00 UTC): inside business hours.
MONDAY_10 = datetime(2021, 1, 11, 15, 0, tzinfo=UTC)
#: Saturday 16 January 2021, 10:00 in Toronto: outside business hours.
SATURDAY_10 = datetime(2021, 1, 16, 15, 0, tzinfo=UTC)


def seen(now: datetime, quiet: timedelta, **other: object) -> Observation:
    """An observation whose newest change is ``quiet`` old."""
    values: dict[str, object] = {
        "now": now,
        "since": now - timedelta(days=1),
        "newest_change_at": now - quiet,
        "lag_age": timedelta(0),
        "dead_letters_waiting": 0,
    }
    values.update(other)
    return Observation(**values)  # type: ignore[arg-type]


class TestBusinessHours:
    """Business hours are local weekdays and times."""

    @pytest.mark.parametrize(
        ("moment", "inside"),
        [
            (MONDAY_10, True),
            (SATURDAY_10, False),
            (datetime(2021, 1, 11, 12, 59, tzinfo=UTC), False),  # 07:59 local
            (datetime(2021, 1, 11, 13, 0, tzinfo=UTC), True),  # 08:00 local
            (datetime(2021, 1, 11, 23, 0, tzinfo=UTC), False),  # 18:00 local
        ],
    )
    def test_contains(self, moment: datetime, inside: bool) -> None:
        """08:00 is inside, 18:00 and weekends are outside, in the zone's local time."""
        assert HOURS.contains(moment) is inside


class TestConditions:
    """Which alarms hold for an observation."""

    @pytest.mark.parametrize(
        ("observation", "alarms"),
        [
            (seen(MONDAY_10, timedelta(minutes=29)), []),
            (seen(MONDAY_10, timedelta(minutes=31)), ["source_quiet"]),
            (seen(SATURDAY_10, timedelta(minutes=31)), []),
            (seen(SATURDAY_10, timedelta(hours=4, minutes=1)), ["source_quiet"]),
            (
                seen(MONDAY_10, timedelta(0), lag_age=timedelta(minutes=11)),
                ["consumer_lag"],
            ),
            (seen(MONDAY_10, timedelta(0), dead_letters_waiting=2), ["dead_letters"]),
            (
                seen(
                    MONDAY_10,
                    timedelta(hours=5),
                    lag_age=timedelta(hours=1),
                    dead_letters_waiting=1,
                ),
                ["source_quiet", "consumer_lag", "dead_letters"],
            ),
        ],
    )
    def test_table(self, observation: Observation, alarms: list[str]) -> None:
        """Quiet limits follow business hours; lag and dead letters hold any time."""
        assert [c.alarm for c in conditions(observation, POLICY)] == alarms

    def test_quiet_before_any_change_counts_from_watching(self) -> None:
        """With no change seen yet, quiet is measured from when watching began."""
        observation = Observation(
            now=MONDAY_10,
            since=MONDAY_10 - timedelta(minutes=45),
            newest_change_at=None,
            lag_age=timedelta(0),
            dead_letters_waiting=0,
        )
        (found,) = conditions(observation, POLICY)
        assert "none seen since watching began 45 min ago" in found.message

    def test_dead_letters_can_be_left_out(self) -> None:
        """With dead_letters off, waiting letters raise nothing."""
        policy = replace(POLICY, dead_letters=False)
        observation = seen(MONDAY_10, timedelta(0), dead_letters_waiting=3)
        assert conditions(observation, policy) == []


class TestAlarmBook:
    """Notices: raised at once, repeated per interval, recovered once."""

    def test_raise_repeat_recover(self) -> None:
        """One alarm's life: raised, quiet within the interval, repeated, recovered."""
        book = AlarmBook(repeat=timedelta(hours=1))
        lag = [Condition("consumer_lag", "lagging")]
        start = MONDAY_10
        steps = [
            (start, lag),
            (start + timedelta(minutes=30), lag),
            (start + timedelta(minutes=59), lag),
            (start + timedelta(hours=1), lag),
            (start + timedelta(hours=1, minutes=30), lag),
            (start + timedelta(hours=2), []),
            (start + timedelta(hours=3), []),
        ]
        kinds = [[n.kind for n in book.step(now, held)] for now, held in steps]
        assert kinds == [["raised"], [], [], ["repeated"], [], ["recovered"], []]
        assert book.active() == []

    def test_recovered_says_how_long_and_what(self) -> None:
        """The recovery notice names the duration and the last condition."""
        book = AlarmBook(repeat=timedelta(hours=1))
        book.step(MONDAY_10, [Condition("dead_letters", "2 dead letters wait")])
        (notice,) = book.step(MONDAY_10 + timedelta(minutes=65), [])
        assert (
            notice.message == "recovered after 1 h 05 min; it was: 2 dead letters wait"
        )
        assert (
            notice.subject("registrar feed")
            == "[RECOVERED] registrar feed: dead_letters"
        )

    def test_alarms_are_independent(self) -> None:
        """A second alarm raised later has its own repeat schedule."""
        book = AlarmBook(repeat=timedelta(minutes=10))
        quiet = Condition("source_quiet", "quiet")
        lag = Condition("consumer_lag", "lag")
        book.step(MONDAY_10, [quiet])
        later = book.step(MONDAY_10 + timedelta(minutes=5), [quiet, lag])
        assert [(n.alarm, n.kind) for n in later] == [("consumer_lag", "raised")]
        again = book.step(MONDAY_10 + timedelta(minutes=10), [quiet, lag])
        assert [(n.alarm, n.kind) for n in again] == [("source_quiet", "repeated")]


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(seconds=30), "30 s"),
        (timedelta(minutes=42), "42 min"),
        (timedelta(hours=1, minutes=5), "1 h 05 min"),
    ],
)
def test_describe_duration(span: timedelta, words: str) -> None:
    """Durations read as people write them."""
    assert describe_duration(span) == words
