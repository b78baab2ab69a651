"""Replays the first recorded Moodle 5.1 sequence (INDEX.md "Cases") on the simulator.

Cases run in INDEX.md order on one simulated site, because later cases build on
the state earlier ones left. Each case is its own test; selecting one case still
replays the earlier ones first (without asserting them). The second sequence
(role assignments, a stopped server) has its own site: test_moodle_golden_roles.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import WSCLIENT_USER_ID, MoodleState
from tests.adapters.golden import (
    GOLDEN,
    SECTIONS,
    Observed,
    assert_answer,
    enrolled_users,
    load,
    send,
)

RECORDED_AT = 1795398844  # the recording site's clock when the courses were created
RECORDED_WWWROOT = "http://127.0.0.1:8080"
WSCLIENT_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"  # noqa: S105 - a test token
ADMIN_TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # noqa: S105 - a test token
COURSE_ALIASES = {"C1": 2, "C2": 3}
BULK_COURSE = 7  # the max_input_vars cases enrol users 14..1713 into course 7

# Every difference from the recording the comparison tolerates, in one place.
# 1. The site's wwwroot: the simulator listens on a free port, not on 8080.
# 2. site_info.userprivateaccesskey: a per-user secret the recording masked.
# 3. course cacherev: a cache revision stamped a moment after course creation
#    (recorded 2 s after timecreated; the simulator uses timecreated).
MASKED_KEYS = {"userprivateaccesskey": "<PRIVATEKEY>", "cacherev": "<CACHEREV>"}


CASES = SECTIONS["Cases"]


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASKED_KEYS.get(k, _mask(v)) if k in MASKED_KEYS else _mask(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


class Replay:
    """Runs the recorded cases in order on one simulated site, once each."""

    def __init__(self, sim: MoodleSimulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.done: dict[str, Observed] = {}

    async def observe(self, case: str) -> Observed:
        """Run every case up to ``case`` not yet run; return what ``case`` observed."""
        for name in CASES[: CASES.index(case) + 1]:
            if name not in self.done:
                self.done[name] = await self._run(name, load(name))
        return self.done[name]

    def _prepare(self, name: str, record: dict[str, Any]) -> str:
        """Harness actions the recording did outside the web service; returns the token."""
        state = self.sim.state
        if name == "enrol_suspended_user_account":
            state.set_account_suspended(9)
        if (
            name.startswith("enrol_batch_exceeds_max_input_vars")
            and state.course(7) is None
        ):
            assert state.add_course("BULK101Winter2021", "Bulk") == BULK_COURSE
            for n in range(13, 1714):
                state.add_user(f"p{n:09d}", firstname=f"F{n}", lastname=f"L{n}")
        if name.startswith("enrol_batch_exceeds_max_input_vars"):
            # The recording emptied course 7 before each bulk case (counts start at 0).
            for enrolment in state.enrolments(BULK_COURSE):
                state.unenrol(BULK_COURSE, enrolment.userid)
        self.sim.max_input_vars = 5000 if "max_input_vars" in name else 1000
        self.sim.debug = name.endswith("_debug_on")
        return (
            ADMIN_TOKEN if record["token_user"].startswith("admin") else WSCLIENT_TOKEN
        )

    async def _run(self, name: str, record: dict[str, Any]) -> Observed:
        token = self._prepare(name, record)
        observed = await send(self.session, self.sim.url, record, token)
        observed.facts = await self._facts(record)
        if name == "create_courses_success":
            # The recording site then deleted course 4's manual instance and
            # disabled course 5's before the next cases.
            self.sim.state.set_manual_instance(4, "absent")
            self.sim.state.set_manual_instance(5, "disabled")
        return observed

    async def _facts(self, record: dict[str, Any]) -> dict[str, Any]:
        expected = record.get("state_after") or {}
        if any(k in COURSE_ALIASES for k in expected):
            return {
                k: await self._course_facts(record, COURSE_ALIASES[k]) for k in expected
            }
        params = record.get("request_params") or {}
        course = int(params.get("enrolments[0][courseid]", params.get("courseid", 0)))
        return await self._course_facts(record, course)

    async def _course_facts(
        self, record: dict[str, Any], courseid: int
    ) -> dict[str, Any]:
        state = self.sim.state
        items = _items(record)
        users = [u for u, c in items if c == courseid]
        facts: dict[str, Any] = {
            "db_user_enrolments (harness SQL ground truth)": [
                {
                    "userid": e.userid,
                    "enrol": "manual",
                    "status": e.status,
                    "status_meaning": "suspended" if e.status else "active",
                    "timestart": e.timestart,
                    "timeend": e.timeend,
                    "roles": [_ROLE_NAMES[r] for r in e.roleids],
                }
                for e in state.enrolments(courseid)
                if e.userid in users
            ],
            "get_enrolled_users ids (default options)": await self._ids(
                courseid, onlyactive=False
            ),
            "get_enrolled_users ids (onlyactive=1)": await self._ids(
                courseid, onlyactive=True
            ),
            "notifications_to_user (SQL)": [
                {"subject": n.subject, "from_userid": n.useridfrom, "name": n.name}
                for n in state.notifications
                if items and n.useridto == items[0][0]
            ],
            "enrolled_in_course_after (SQL count)": len(state.enrolments(BULK_COURSE)),
            "users_with_idnumber_P000123456": [
                [str(u.id), u.username]
                for u in state.users()
                if u.idnumber == "P000123456"
            ],
            "users_p000300001_p000300003": [
                [str(u.id), u.username]
                for u in state.users()
                if u.username in {"p000300001", "p000300003"}
            ],
            "enrol instances (SQL)": _instances(state, courseid),
            "enrol instances per course (SQL)": {
                c.shortname: _instances(state, c.id)
                for c in state.courses()
                if c.id > 1
            },
        }
        return facts

    async def _ids(self, courseid: int, *, onlyactive: bool) -> list[int] | None:
        users = await enrolled_users(
            self.session, self.sim.url, WSCLIENT_TOKEN, courseid, onlyactive=onlyactive
        )
        return None if users is None else [user["id"] for user in users]


_ROLE_NAMES = {
    1: "manager",
    2: "coursecreator",
    3: "editingteacher",
    4: "teacher",
    5: "student",
}


def _instances(state: MoodleState, courseid: int) -> list[dict[str, Any]]:
    course = state.course(courseid)
    return [
        {
            "enrol": i.enrol,
            "status": i.status,
            "status_meaning": "disabled" if i.status else "enabled",
        }
        for i in (course.instances if course else [])
    ]


def _items(record: dict[str, Any]) -> list[tuple[int, int]]:
    """(userid, courseid) of each enrolment item the request carried (ints only)."""
    params = record.get("request_params") or {}
    if "..." in params:
        count = int(record["state_after"]["items_sent"])
        return [(14 + i, BULK_COURSE) for i in range(count)]
    pairs = []
    for n in range(len(params)):
        user = params.get(f"enrolments[{n}][userid]")
        course = params.get(f"enrolments[{n}][courseid]")
        if user is None:
            break
        if course is not None and str(user).isdigit():
            pairs.append((int(user), int(course)))
    return pairs


@pytest_asyncio.fixture(name="replay", scope="module", loop_scope="module")
async def _replay() -> AsyncIterator[Replay]:
    state = MoodleState(clock=lambda: RECORDED_AT)
    # The recorded site had used context ids up to 11 before its first course.
    state.next_context_id = 12
    # Its service had the functions site_info lists (no core_role_* yet).
    recorded = load("site_info")["response_body"]["functions"]
    service = tuple(function["name"] for function in recorded)
    state.add_token(WSCLIENT_TOKEN, WSCLIENT_USER_ID, functions=service)
    async with (
        MoodleSimulator(state, token=WSCLIENT_TOKEN, admin_token=ADMIN_TOKEN) as sim,
        aiohttp.ClientSession() as session,
    ):
        yield Replay(sim, session)


class TestGoldenIndex:
    """The index and the recorded files agree."""

    def test_index_lists_every_recording(self) -> None:
        """Every recorded case file is listed in INDEX.md exactly once, and vice versa."""
        files = sorted(
            p.stem for p in GOLDEN.glob("*.json") if not p.stem.startswith("latency")
        )
        assert sorted(name for names in SECTIONS.values() for name in names) == files


@pytest.mark.asyncio(loop_scope="module")
class TestGoldenReplay:
    """Each recorded request, answered and applied as Moodle 5.1 did."""

    @pytest.mark.parametrize("case", CASES)
    async def test_matches_recording(self, case: str, replay: Replay) -> None:
        """The simulator's status, content type, body and state match the recording."""
        record = load(case)
        observed = await replay.observe(case)
        assert_answer(
            record,
            observed,
            sim_url=replay.sim.url,
            wwwroot=RECORDED_WWWROOT,
            mask=_mask,
        )
        for key, expected in (record.get("state_after") or {}).items():
            if key in COURSE_ALIASES:
                for sub, value in expected.items():
                    assert observed.facts[key][sub] == value, f"{key}: {sub}"
            elif key == "items_sent":
                assert len(_items(record)) == expected
            else:
                assert observed.facts[key] == expected, key
