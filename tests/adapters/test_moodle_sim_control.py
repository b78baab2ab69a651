"""The simulator's harness extras: control routes (faults, status) and the write journal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.moodle_sim.audit import WriteAudit, read_journal
from sandbox.moodle_sim.control import is_allowed
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState

TOKEN = "7" * 32
CONTROL = "c0ntrol"
BEARER = {"Authorization": f"Bearer {CONTROL}"}
STUDENT = 5


def _site() -> tuple[MoodleState, list[int], int]:
    """Two students and a course whose teacher makes Moodle send welcome messages."""
    state = MoodleState()
    teacher = state.add_user("teacher")
    students = [state.add_user(f"s{n}") for n in range(2)]
    course = state.add_course("C1", "Course 1")
    state.enrol(course, teacher, EDITING_TEACHER)
    return state, students, course


def _call(function: str, **rows: list[dict[str, int]]) -> list[tuple[str, str]]:
    pairs = [
        ("wstoken", TOKEN),
        ("wsfunction", function),
        ("moodlewsrestformat", "json"),
    ]
    for name, items in rows.items():
        for n, item in enumerate(items):
            pairs += [
                (f"{name}[{n}][{key}]", str(value)) for key, value in item.items()
            ]
    return pairs


def _enrol(course: int, *users: int) -> list[tuple[str, str]]:
    return _call(
        "enrol_manual_enrol_users",
        enrolments=[
            {"roleid": STUDENT, "userid": u, "courseid": course} for u in users
        ],
    )


async def _post(
    session: aiohttp.ClientSession, url: str, pairs: list[tuple[str, str]]
) -> tuple[int, Any]:
    async with session.post(url + ENDPOINT, data=pairs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (not a timing test)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.02)


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TestControlRoutes:
    """Fault-plan entries and counters over HTTP, only when asked for and allowed."""

    async def test_absent_without_a_control_token(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A simulator started without a control token has no control routes."""
        async with (
            MoodleSimulator(MoodleState(), token=TOKEN) as sim,
            session.get(f"{sim.url}/_control/status", headers=BEARER) as r,
        ):
            assert r.status == 404

    async def test_refused_without_the_token(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A request without the bearer token, or with another one, gets 403."""
        async with MoodleSimulator(
            MoodleState(), token=TOKEN, control_token=CONTROL
        ) as sim:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with session.get(
                    f"{sim.url}/_control/status", headers=headers
                ) as r:
                    assert r.status == 403

    @pytest.mark.parametrize(
        ("remote", "authorization", "allowed"),
        [
            ("127.0.0.1", f"Bearer {CONTROL}", True),
            ("::1", f"Bearer {CONTROL}", True),
            ("10.0.0.7", f"Bearer {CONTROL}", False),
            (None, f"Bearer {CONTROL}", False),
            ("127.0.0.1", CONTROL, False),
            ("127.0.0.1", "", False),
        ],
    )
    def test_only_loopback_with_the_token_is_allowed(
        self, remote: str | None, authorization: str, allowed: bool
    ) -> None:
        """Only a loopback peer carrying the bearer token passes the guard."""
        assert is_allowed(remote, authorization, CONTROL) is allowed

    async def test_injected_fault_hits_the_next_call(
        self, session: aiohttp.ClientSession
    ) -> None:
        """fail_next queued over HTTP answers the next web-service call with 503."""
        state, students, course = _site()
        async with MoodleSimulator(state, token=TOKEN, control_token=CONTROL) as sim:
            async with session.post(
                f"{sim.url}/_control/faults",
                json={"fault": "fail_next", "n": 1, "status": 503},
                headers=BEARER,
            ) as r:
                assert r.status == 200
                assert (await r.json())["pending_faults"] == 1
            assert (await _post(session, sim.url, _enrol(course, students[0])))[
                0
            ] == 503
            assert await _post(session, sim.url, _enrol(course, students[0])) == (
                200,
                None,
            )
            async with session.get(f"{sim.url}/_control/status", headers=BEARER) as r:
                status = await r.json()
        assert status["injected"] == {"status": 1}
        assert status["calls"] == {"enrol_manual_enrol_users": 1}
        assert status["enrolments"][str(course)][str(students[0])] == [0, [STUDENT]]

    @pytest.mark.parametrize(
        "body",
        [
            {"fault": "melt_next"},
            {"fault": "fail_next", "n": "two"},
            {"fault": "drop_next", "n": 1, "status": 500},
            ["fail_next"],
        ],
    )
    async def test_bad_fault_is_refused_with_the_reason(
        self, session: aiohttp.ClientSession, body: object
    ) -> None:
        """An unknown fault or argument is 400 with a reason, and nothing is queued."""
        async with MoodleSimulator(
            MoodleState(), token=TOKEN, control_token=CONTROL
        ) as sim:
            async with session.post(
                f"{sim.url}/_control/faults", json=body, headers=BEARER
            ) as r:
                assert r.status == 400
                assert (await r.json())["error"]
            assert sim.faults.pending == 0


class TestWriteAudit:
    """The journal says what each committed write found and who was still waiting."""

    async def test_a_second_enrol_is_journalled_as_existing_with_a_welcome(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """Enrolling twice: the first row creates, the second finds the enrolment;
        both sent the welcome message."""
        state, students, course = _site()
        journal = tmp_path / "audit.jsonl"
        async with MoodleSimulator(
            state, token=TOKEN, audit=WriteAudit(journal)
        ) as sim:
            await _post(session, sim.url, _enrol(course, students[0]))
            await _post(session, sim.url, _enrol(course, students[0]))
        lines = read_journal(journal)
        assert [(x["existed"], x["welcome"], x["client_gone"]) for x in lines] == [
            (False, True, False),
            (True, True, False),
        ]
        assert lines[1]["roles_before"] == [STUDENT]

    async def test_a_call_applied_after_its_client_gave_up_is_marked(
        self, tmp_path: Path
    ) -> None:
        """A request held past the client's timeout is applied, marked client_gone."""
        state, students, course = _site()
        journal = tmp_path / "audit.jsonl"
        async with MoodleSimulator(
            state, token=TOKEN, audit=WriteAudit(journal)
        ) as sim:
            sim.faults.hang_next(1, seconds=0.5)
            timeout = aiohttp.ClientTimeout(total=0.1)
            async with aiohttp.ClientSession(timeout=timeout) as impatient:
                with pytest.raises(TimeoutError):
                    await _post(impatient, sim.url, _enrol(course, students[0]))
            await until(lambda: bool(read_journal(journal)))
        [line] = read_journal(journal)
        assert state.enrolment(course, students[0]) is not None
        assert line["client_gone"] is True
        assert line["applied"] - line["arrived"] >= 0.5

    async def test_a_rolled_back_call_and_role_changes(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """A batch Moodle rolled back writes nothing; role calls and reads are
        journalled with what they found."""
        state, students, course = _site()
        journal = tmp_path / "audit.jsonl"
        async with MoodleSimulator(
            state, token=TOKEN, audit=WriteAudit(journal)
        ) as sim:
            await _post(
                session, sim.url, _enrol(course, students[0], 999)
            )  # rolled back
            await _post(session, sim.url, _enrol(course, students[0]))
            row = {"roleid": STUDENT, "userid": students[0], "instanceid": course}
            unassign = [
                *_call("core_role_unassign_roles", unassignments=[row]),
                ("unassignments[0][contextlevel]", "course"),
            ]
            await _post(session, sim.url, unassign)
            read = [
                ("wstoken", TOKEN),
                ("wsfunction", "core_enrol_get_enrolled_users"),
                ("moodlewsrestformat", "json"),
                ("courseid", str(course)),
            ]
            await _post(session, sim.url, read)
        lines = read_journal(journal)
        assert [x["function"] for x in lines] == [
            "enrol_manual_enrol_users",
            "core_role_unassign_roles",
            "core_enrol_get_enrolled_users",
        ]
        assert (lines[1]["held_before"], lines[1]["enrolled"]) == (True, True)
        assert lines[2]["courseid"] == course
        assert state.roles_of(course, students[0]) == set()
