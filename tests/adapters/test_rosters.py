"""Reading rosters while Moodle fails now and then: retried per course, never aborted."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from connectors.moodle.errors import MoodleUnavailable
from connectors.moodle.rosters import read_holdings, read_rosters
from sandbox.moodle_sim.inprocess import CallFate, InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState

STUDENT = 5


@pytest.fixture(name="moodle")
def fixture_moodle() -> tuple[InProcessMoodle, list[int], int]:
    """Three courses, one student enrolled in each, the simulator in-process."""
    state = MoodleState()
    student = state.add_user("s1", idnumber="1")
    courses = [state.add_course(f"C{n}") for n in range(3)]
    for course in courses:
        state.enrol(course, student, STUDENT)
    return InProcessMoodle(MoodleSimulator(state)), courses, student


def refuse_course(
    courseid: int, times: int
) -> Callable[[str, Mapping[str, object]], CallFate]:
    """A rule refusing the roster reads of one course ``times`` times."""
    left = [times]

    def rule(function: str, params: Mapping[str, object]) -> CallFate:
        if params.get("courseid") == courseid and left[0] > 0:
            left[0] -= 1
            return "refuse"
        return "answer"

    return rule


class TestReadRosters:
    """A dropped connection costs a retry of that course, not the run."""

    async def test_transient_failure_is_retried(
        self, moodle: tuple[InProcessMoodle, list[int], int]
    ) -> None:
        """A course refused once is read on the second attempt."""
        client, courses, student = moodle
        client.on_call(refuse_course(courses[1], 1))
        failed: dict[int, str] = {}
        rosters = await read_rosters(
            client, courses, attempts=3, retry_delay_s=0, failed=failed
        )
        assert set(rosters) == set(courses)
        assert all(student in roster for roster in rosters.values())
        assert failed == {}

    async def test_lasting_failure_is_reported_and_the_rest_read(
        self, moodle: tuple[InProcessMoodle, list[int], int]
    ) -> None:
        """A course still failing after its attempts is named; the others are read."""
        client, courses, _ = moodle
        client.on_call(refuse_course(courses[2], 10))
        failed: dict[int, str] = {}
        rosters = await read_rosters(
            client, courses, attempts=3, retry_delay_s=0, failed=failed
        )
        assert set(rosters) == set(courses[:2])
        assert list(failed) == [courses[2]]
        assert "MoodleUnavailable" in failed[courses[2]]

    async def test_without_a_failed_table_the_error_is_typed(
        self, moodle: tuple[InProcessMoodle, list[int], int]
    ) -> None:
        """The consumer's read-back raises the typed error (not an exception group)."""
        client, courses, student = moodle
        client.on_call(refuse_course(courses[0], 10))
        with pytest.raises(MoodleUnavailable):
            await read_holdings(client, [(course, student) for course in courses])
