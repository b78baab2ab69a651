"""Rosters through the companion plugin's bulk read, or the two core listings without it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import pytest

from connectors.moodle.bulk_rosters import BULK_ROSTER, read_rosters_bulk
from connectors.moodle.errors import MoodleAuthError
from connectors.moodle.rosters import read_rosters
from sandbox.moodle_sim.inprocess import CallFate, InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_READ_SERVICE_FUNCTIONS,
    COMPANION_SERVICE_FUNCTIONS,
    DEFAULT_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
)
from sandbox.moodle_sim.state import MoodleState

STUDENT, TEACHER = 5, 4
TOKEN = "f" * 32
DAY_S = 86400
LISTING = "core_enrol_get_enrolled_users"


def _site(*, plugin: bool = True, functions: tuple[str, ...] = ()) -> MoodleState:
    """Courses holding every kind of enrolment the two listings tell apart."""
    state = MoodleState()
    if plugin:
        state.site = dataclasses.replace(state.site, plugins=(COMPANION_PLUGIN,))
    state.add_token(
        TOKEN, WSCLIENT_USER_ID, functions=functions or COMPANION_READ_SERVICE_FUNCTIONS
    )
    now = state.now()
    users = [state.add_user(f"u{n}", idnumber=f"{n:04d}") for n in range(30)]
    nobody = state.add_user("noid")
    main, other, off, empty = (state.add_course(f"C{n}") for n in range(4))
    for user in users:
        state.enrol(main, user, STUDENT)
    state.enrol(main, nobody, STUDENT)
    state.enrol(other, users[0], STUDENT, status=1)  # suspended
    state.enrol(
        other, users[1], STUDENT, timestart=now - 9 * DAY_S, timeend=now - DAY_S
    )
    state.enrol(other, users[2], STUDENT, timestart=now + 9 * DAY_S)  # not started
    state.enrol(other, users[3], TEACHER)
    state.assign_role(other, users[3], STUDENT)
    state.enrol(off, users[4], STUDENT)
    state.set_manual_instance(off, "disabled")
    state.set_account_suspended(users[5])
    group = state.add_group(main, "A", idnumber="A")
    state.set_group_member(group, users[6], member=True)
    state.set_group_member(state.add_group(main, "B"), users[6], member=True)
    del empty
    return state


def _client(state: MoodleState) -> InProcessMoodle:
    return InProcessMoodle(MoodleSimulator(state, token=TOKEN))


def _calls(client: InProcessMoodle) -> list[str]:
    return [call.function for call in client.simulator.calls]


MISSING_COURSE = 999


class TestSamePicture:
    """The bulk read and the two listings give the same rosters on the same site."""

    @pytest.mark.parametrize("page_size", [10000, 7])
    async def test_rosters_equal(self, page_size: int) -> None:
        """Every course, every user, status, roles and groups alike (paged or not)."""
        state = _site()
        courses = [c.id for c in state.courses() if c.id != 1] + [MISSING_COURSE]
        bulk_failed: dict[int, str] = {}
        core_failed: dict[int, str] = {}
        bulk = await read_rosters_bulk(
            _client(state), courses, page_size=page_size, failed=bulk_failed
        )
        core = await read_rosters(_client(state), courses, failed=core_failed)
        assert bulk == core
        assert {e.status for r in bulk.values() for e in r.values()} == {
            "active",
            "inactive",
        }
        assert set(bulk_failed) == set(core_failed) == {MISSING_COURSE}
        assert "MoodleNotFound" in bulk_failed[MISSING_COURSE]

    async def test_one_call_for_many_courses(self) -> None:
        """Four courses are one call; no core listing is made."""
        state = _site()
        client = _client(state)
        courses = [c.id for c in state.courses() if c.id != 1]
        await read_rosters_bulk(client, courses)
        assert _calls(client) == [BULK_ROSTER]

    async def test_short_pages_are_followed(self) -> None:
        """A page as long as asked for is followed by the next one."""
        state = _site()
        client = _client(state)
        courses = [c.id for c in state.courses() if c.id != 1]
        rosters = await read_rosters_bulk(client, courses, page_size=10)
        assert sum(len(r) for r in rosters.values()) == 36
        assert _calls(client).count(BULK_ROSTER) == 4


class TestChoice:
    """The client reads through the plugin only where site_info lists the function."""

    @pytest.mark.parametrize(
        ("plugin", "functions", "bulk"),
        [
            (True, COMPANION_READ_SERVICE_FUNCTIONS, True),
            (True, COMPANION_SERVICE_FUNCTIONS, False),
            (False, COMPANION_READ_SERVICE_FUNCTIONS, False),
            (False, DEFAULT_SERVICE_FUNCTIONS, False),
        ],
    )
    async def test_path_follows_site_info(
        self, *, plugin: bool, functions: tuple[str, ...], bulk: bool
    ) -> None:
        """Listed: one bulk call; else (no plugin, not in the service) two listings a course."""
        state = _site(plugin=plugin, functions=functions)
        client = _client(state)
        courses = [c.id for c in state.courses() if c.id != 1]
        core = await read_rosters(_client(state), courses)
        assert await client.read_rosters(courses) == core
        calls = _calls(client)
        assert calls[0] == "core_webservice_get_site_info"
        assert (BULK_ROSTER in calls) is bulk
        assert calls.count(LISTING) == (0 if bulk else 2 * len(courses))
        assert client.bulk_rosters is bulk

    async def test_site_info_asked_once(self) -> None:
        """A second read does not ask site_info again."""
        state = _site()
        client = _client(state)
        await client.read_rosters([2])
        await client.read_rosters([3])
        assert _calls(client).count("core_webservice_get_site_info") == 1


def _refuse_bulk(times: int) -> Callable[[str, Mapping[str, object]], CallFate]:
    left = [times]

    def rule(function: str, params: Mapping[str, object]) -> CallFate:
        del params
        if function == BULK_ROSTER and left[0] > 0:
            left[0] -= 1
            return "refuse"
        return "answer"

    return rule


class TestFailures:
    """A failing call is retried, then its courses are reported; a refused token stops."""

    async def test_transient_failure_is_retried(self) -> None:
        """A call refused once is sent again and read."""
        state = _site()
        client = _client(state)
        client.on_call(_refuse_bulk(1))
        failed: dict[int, str] = {}
        rosters = await read_rosters_bulk(
            client, [2, 3], attempts=3, retry_delay_s=0, failed=failed
        )
        assert set(rosters) == {2, 3}
        assert failed == {}

    async def test_lasting_failure_names_every_course_of_the_call(self) -> None:
        """Each course of a call that kept failing is reported, with the reason."""
        state = _site()
        client = _client(state)
        client.on_call(_refuse_bulk(10))
        failed: dict[int, str] = {}
        rosters = await read_rosters_bulk(
            client, [2, 3], attempts=2, retry_delay_s=0, failed=failed
        )
        assert rosters == {}
        assert set(failed) == {2, 3}
        assert "MoodleUnavailable" in failed[2]

    async def test_refused_token_raises(self) -> None:
        """A token whose service lost the function stops the read (nothing can be read)."""
        state = _site(functions=COMPANION_SERVICE_FUNCTIONS)
        with pytest.raises(MoodleAuthError):
            await read_rosters_bulk(_client(state), [2], failed={})
