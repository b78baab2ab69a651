"""Simulator state: backups, role assignments, PHP max_input_vars, the call log, PHP decoding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.moodle_sim.protocol import decode_php_vars
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.state import MoodleState

TOKEN = "7" * 32
HEADER = [
    ("wstoken", TOKEN),
    ("wsfunction", "enrol_manual_enrol_users"),
    ("moodlewsrestformat", "json"),
]


def _items(
    userids: list[int], courseid: int, *, suspend: bool = False
) -> list[tuple[str, str]]:
    pairs = []
    for n, userid in enumerate(userids):
        pairs += [
            (f"enrolments[{n}][roleid]", "5"),
            (f"enrolments[{n}][userid]", str(userid)),
            (f"enrolments[{n}][courseid]", str(courseid)),
        ]
        if suspend:
            pairs.append((f"enrolments[{n}][suspend]", "0"))
    return pairs


async def _post(
    session: aiohttp.ClientSession, sim: MoodleSimulator, pairs: list[tuple[str, str]]
) -> Any:
    async with session.post(sim.url + ENDPOINT, data=pairs) as response:
        return await response.json()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TestSnapshot:
    """Backups of the whole site."""

    def test_restore_brings_back_the_backup(self) -> None:
        """Changes made after a snapshot are gone once it is restored."""
        state = MoodleState()
        course = state.add_course("C1", "Course 1")
        alice, bob = state.add_user("alice"), state.add_user("bob")
        state.enrol(course, alice, 5)
        backup = state.snapshot()
        state.enrol(course, alice, 5, status=1)
        state.enrol(course, bob, 4)
        state.add_user("carol")
        state.restore(backup)
        assert [(e.userid, e.status, e.roleids) for e in state.enrolments(course)] == [
            (alice, 0, (5,))
        ]
        assert [u.username for u in state.users()][-2:] == ["alice", "bob"]
        assert state.add_user("dave") == bob + 1

    def test_snapshot_is_reusable_and_not_aliased(self) -> None:
        """A snapshot can be restored twice; changes after a restore do not leak into it."""
        state = MoodleState()
        course = state.add_course("C1")
        user = state.add_user("alice")
        backup = state.snapshot()
        state.restore(backup)
        state.enrol(course, user, 5)
        state.restore(backup)
        assert state.enrolments(course) == []

    async def test_restore_while_serving(self, session: aiohttp.ClientSession) -> None:
        """A running simulator answers from the restored tables ("yesterday's backup")."""
        state = MoodleState()
        course = state.add_course("C1")
        users = [state.add_user(f"u{n}") for n in range(2)]
        async with MoodleSimulator(state, token=TOKEN) as sim:
            backup = state.snapshot()
            assert await _post(session, sim, HEADER + _items(users, course)) is None
            state.restore(backup)
            roster = await _post(
                session,
                sim,
                [
                    ("wstoken", TOKEN),
                    ("wsfunction", "core_enrol_get_enrolled_users"),
                    ("moodlewsrestformat", "json"),
                    ("courseid", str(course)),
                ],
            )
            assert roster == []


class TestRoleAssignments:
    """Role assignments live beside enrolments, as core_role_* showed on Moodle 5.1."""

    def test_role_without_enrolment_is_not_an_enrolment(self) -> None:
        """Assigning a role to a user who is not enrolled enrols nobody and sends nothing."""
        state = MoodleState()
        user, course = state.add_user("p1"), state.add_course("C1")
        state.assign_role(course, user, 5)
        assert state.roles_of(course, user) == {5}
        assert state.enrolments(course) == []
        assert state.notifications == []

    def test_last_role_removed_keeps_the_enrolment(self) -> None:
        """Unassigning a student's only role leaves an active enrolment with no role."""
        state = MoodleState()
        user, course = state.add_user("p1"), state.add_course("C1")
        state.enrol(course, user, 5)
        state.unassign_role(course, user, 5)
        [enrolment] = state.enrolments(course)
        assert (enrolment.userid, enrolment.roleids) == (user, ())
        assert state.is_active(course, user)

    def test_teacher_role_removed_ends_welcome_messages(self) -> None:
        """Without the editing teacher role the teacher is no longer the course contact."""
        state = MoodleState()
        teacher, student = state.add_user("t1"), state.add_user("p1")
        course = state.add_course("C1")
        state.enrol(course, teacher, 3)
        state.unassign_role(course, teacher, 3)
        state.enrol(course, student, 5)
        assert state.contacts(course) == []
        assert state.notifications == []

    def test_failed_transaction_puts_roles_back(self) -> None:
        """A batch that fails after assigning and unassigning leaves the roles as they were."""
        state = MoodleState()
        user, course = state.add_user("p1"), state.add_course("C1")
        state.enrol(course, user, 5)

        def swap_then_fail() -> None:
            with state.transaction():
                state.unassign_role(course, user, 5)
                state.assign_role(course, user, 4)
                raise RuntimeError

        with pytest.raises(RuntimeError):
            swap_then_fail()
        assert state.roles_of(course, user) == {5}


class TestMaxInputVars:
    """PHP keeps the first max_input_vars + 1 request variables and drops the rest."""

    async def test_cut_at_item_boundary_enrols_the_first_items(
        self, session: aiohttp.ClientSession
    ) -> None:
        """3 header vars + 2 whole 3-field items fit in 9 + 1: only those 2 are enrolled."""
        state = MoodleState()
        course = state.add_course("C1")
        users = [state.add_user(f"u{n}") for n in range(4)]
        async with MoodleSimulator(state, token=TOKEN, max_input_vars=8) as sim:
            assert await _post(session, sim, HEADER + _items(users, course)) is None
            assert [e.userid for e in state.enrolments(course)] == users[:2]
            assert sim.rows_per_call("enrol_manual_enrol_users") == [2]

    async def test_cut_mid_item_is_invalid_parameter(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A cut inside a 4-field item leaves it without courseid: invalidparameter, no rows."""
        state = MoodleState()
        course = state.add_course("C1")
        users = [state.add_user(f"u{n}") for n in range(4)]
        async with MoodleSimulator(state, token=TOKEN, max_input_vars=12) as sim:
            body = await _post(
                session, sim, HEADER + _items(users, course, suspend=True)
            )
            assert body["errorcode"] == "invalidparameter"
            assert state.enrolments(course) == []

    async def test_token_sent_last_is_dropped(
        self, session: aiohttp.ClientSession
    ) -> None:
        """An oversized request with wstoken last loses the token: invalidtoken."""
        state = MoodleState()
        course = state.add_course("C1")
        users = [state.add_user(f"u{n}") for n in range(4)]
        async with MoodleSimulator(state, token=TOKEN, max_input_vars=10) as sim:
            body = await _post(
                session, sim, HEADER[1:] + _items(users, course) + HEADER[:1]
            )
            assert body["errorcode"] == "invalidtoken"
            assert [c.errorcode for c in sim.calls] == ["invalidtoken"]

    async def test_default_limit_is_php_default(self) -> None:
        """Without a setting the simulator uses PHP's default of 1000."""
        async with MoodleSimulator(MoodleState()) as sim:
            assert sim.max_input_vars == 1000


class TestCallLog:
    """The log tests use to count calls and rows."""

    async def test_counts_calls_and_rows(self, session: aiohttp.ClientSession) -> None:
        """Each answered call is logged with its function, rows and error code."""
        state = MoodleState()
        course = state.add_course("C1")
        users = [state.add_user(f"u{n}") for n in range(3)]
        async with MoodleSimulator(state, token=TOKEN) as sim:
            await _post(session, sim, HEADER + _items(users, course))
            await _post(session, sim, HEADER + _items([*users[:1], 999], course))
            assert sim.call_counts()["enrol_manual_enrol_users"] == 2
            assert sim.rows_per_call("enrol_manual_enrol_users") == [3, 2]
            assert [c.errorcode for c in sim.calls] == [None, "invalidrecordunknown"]


class TestPhpDecoding:
    """PHP's bracket notation for arrays."""

    @pytest.mark.parametrize(
        ("pairs", "expected"),
        [
            ([("a[0][b]", "1"), ("a[0][c]", "2")], {"a": {"0": {"b": "1", "c": "2"}}}),
            ([("v[]", "x"), ("v[]", "y")], {"v": {"0": "x", "1": "y"}}),
            ([("k", "1"), ("k", "2")], {"k": "2"}),
            ([("a.b", "1"), ("c[d", "2")], {"a_b": "1", "c_d": "2"}),
        ],
    )
    def test_decodes_like_php(
        self, pairs: list[tuple[str, str]], expected: dict[str, Any]
    ) -> None:
        """Nested keys nest, [] appends, later duplicates win, odd names are mangled."""
        assert decode_php_vars(pairs) == expected
