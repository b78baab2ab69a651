"""Replays the sixth recorded sequence (INDEX.md "Cases (sequence 6)") on the simulator.

The companion plugin's bulk roster read ``local_enrolstream_get_course_enrolments``:
what a site whose plugin predates it answers, a token whose service lacks it,
site_info before and after, then the function reading courses that hold every
kind of enrolment, paging, and warning about courses it may not read. Each
recorded read carries what ``core_enrol_get_enrolled_users`` listed for the same
courses on the real site: the recording itself shows the two say the same
(``TestBulkRosterMeaning``), and the replay shows the simulator's core listing
and bulk read both match it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox.moodle_sim.registry import all_functions
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.site import COMPANION_PLUGIN, GET_COURSE_ENROLMENTS
from sandbox.moodle_sim.state import WSCLIENT_USER_ID, MoodleState, SiteConfig
from tests.adapters.golden import SECTIONS, Observed, assert_answer, load, send

CASES = SECTIONS["Cases (sequence 6)"]
RECORDED_WWWROOT = "http://127.0.0.1:8765"
TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # noqa: S105 - a test token
WITHOUT, WITH = "bulkroster_site_info_without", "bulkroster_site_info_with"
REFERENCE = "core_enrol_get_enrolled_users (same courses, after the call)"
OLD_PLUGIN, NEW_PLUGIN = "2026120100", "2026120200"
DAY_S = 86400

# Every difference from the recording the comparison tolerates, in one place.
# 1. The site's wwwroot: the simulator listens on a free port, not on 8765.
# 2. site_info: ``userprivateaccesskey`` is masked, and the ``functions`` list is
#    compared over the functions the simulator implements.
# 3. The core listings beside each read are compared on what a roster uses (ids,
#    idnumber, username, role ids, group ids): the simulator leaves role names and
#    sort orders, group names and descriptions as other sequences check them.
# 4. The site clock is pinned to the recording's (the set-up's enrolment dates
#    are relative to it); elapsed_s is never compared.
SIMULATED = frozenset(all_functions())


def _mask(body: Any) -> Any:
    if isinstance(body, dict) and "functions" in body:
        return body | {
            "userprivateaccesskey": "<PRIVATEKEY>",
            "functions": [f for f in body["functions"] if f["name"] in SIMULATED],
        }
    return body


def _service(case: str) -> tuple[str, ...]:
    return tuple(f["name"] for f in load(case)["response_body"]["functions"])


def _themerev(case: str) -> int:
    url = load(case)["response_body"]["userpictureurl"]
    return int(url.split("/core/")[1].split("/")[0])


def _recording_time() -> int:
    """The site clock when the set-up ran (one row starts 30 days after it)."""
    params = load("bulkroster_setup_enrol")["request_params"]
    starts = [int(v) for k, v in params.items() if k.endswith("[timestart]")]
    return max(starts) - 30 * DAY_S


def _first(case: str) -> int:
    return int(load(case)["response_body"][0]["id"])


def _recorded_site() -> MoodleState:
    """A fresh simulated site made to look like the harness site at the start."""
    now = _recording_time()
    state = MoodleState(
        site=SiteConfig(
            sitename="enrolstream harness",
            themerev=_themerev(WITHOUT),
            plugins=(COMPANION_PLUGIN,),
            plugin_version=OLD_PLUGIN,
        ),
        clock=lambda: now,
    )
    wsclient = state.user(WSCLIENT_USER_ID)
    assert wsclient is not None
    wsclient.firstname, wsclient.lastname = "Enrolstream", "Integration"
    state._t.next_user_id = _first("bulkroster_setup_create_users")
    state._t.next_course_id = _first("bulkroster_setup_create_courses")
    state._t.next_group_id = _first("bulkroster_setup_groups")
    state.add_token(TOKEN, WSCLIENT_USER_ID, functions=_service(WITHOUT))
    return state


def _after_steps() -> dict[str, Callable[[MoodleState], None]]:
    """What the administrator did to the site right after each of these cases."""
    courses = {
        c["shortname"]: c["id"]
        for c in load("bulkroster_setup_create_courses")["response_body"]
    }

    def disable_and_prevent(state: MoodleState) -> None:
        state.set_manual_instance(courses["ROSTER102Winter2026"], "disabled")
        forbidden = state.course(courses["ROSTER103Winter2026"])
        assert forbidden is not None
        forbidden.enrolreview_prevented = True

    def upgrade(state: MoodleState) -> None:
        state.site = dataclasses.replace(
            state.site, plugin_version=NEW_PLUGIN, themerev=_themerev(WITH)
        )

    def add_to_service(state: MoodleState) -> None:
        state.add_token(TOKEN, WSCLIENT_USER_ID, functions=_service(WITH))

    return {
        "bulkroster_setup_suspend_account": disable_and_prevent,
        WITHOUT: upgrade,
        "bulkroster_not_in_service": add_to_service,
    }


def _roster_view(listing: dict[str, Any]) -> dict[str, Any]:
    """What a roster uses of the two core listings of one course."""
    return {
        "everyone": [
            {
                "id": u["id"],
                "idnumber": u.get("idnumber", ""),
                "username": u.get("username", ""),
                "roles": sorted(r["roleid"] for r in u.get("roles", [])),
                "groups": sorted(g["id"] for g in u.get("groups", [])),
            }
            for u in listing["everyone"]
        ],
        "onlysuspended": sorted(u["id"] for u in listing["onlysuspended"]),
    }


class RostersReplay:
    """Runs the sixth sequence in order on one simulated site, once each."""

    def __init__(self, sim: MoodleSimulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.after = _after_steps()
        self.done: dict[str, Observed] = {}

    async def observe(self, case: str) -> Observed:
        """Run every case up to ``case`` not yet run; return what ``case`` observed."""
        for name in CASES[: CASES.index(case) + 1]:
            if name not in self.done:
                self.done[name] = await self._run(name, load(name))
        return self.done[name]

    async def _run(self, name: str, record: dict[str, Any]) -> Observed:
        observed = await send(self.session, self.sim.url, record, TOKEN)
        reference = (record.get("state_after") or {}).get(REFERENCE)
        if reference is not None:
            observed.facts = {
                course: _roster_view(await self._listings(int(course)))
                for course in reference
            }
        if name in self.after:
            self.after[name](self.sim.state)
        return observed

    async def _listings(self, course: int) -> dict[str, Any]:
        fields = "id,idnumber,username,fullname,roles,groups"
        everyone = await self._call(course, {"userfields": fields})
        suspended = await self._call(course, {"userfields": "id", "onlysuspended": "1"})
        return {"everyone": everyone, "onlysuspended": suspended}

    async def _call(self, course: int, options: dict[str, str]) -> Any:
        data = {
            "wstoken": TOKEN,
            "wsfunction": "core_enrol_get_enrolled_users",
            "moodlewsrestformat": "json",
            "courseid": str(course),
        }
        for i, (name, value) in enumerate(options.items()):
            data |= {f"options[{i}][name]": name, f"options[{i}][value]": value}
        async with self.session.post(self.sim.url + ENDPOINT, data=data) as response:
            return await response.json()


@pytest_asyncio.fixture(name="rosters_replay", scope="module", loop_scope="module")
async def _rosters_replay() -> AsyncIterator[RostersReplay]:
    async with (
        aiohttp.ClientSession() as session,
        MoodleSimulator(_recorded_site(), token=TOKEN) as sim,
    ):
        yield RostersReplay(sim, session)


def _derived_from_core(listing: dict[str, Any], course: int) -> list[dict[str, Any]]:
    """The bulk rows the two core listings of ``course`` stand for."""
    suspended = {u["id"] for u in listing["onlysuspended"]}
    return [
        {
            "courseid": course,
            "userid": u["id"],
            "idnumber": u.get("idnumber", ""),
            "username": u["username"],
            "fullname": u["fullname"],
            "active": u["id"] not in suspended,
            "roleids": sorted(r["roleid"] for r in u.get("roles", [])),
            "groupids": sorted(g["id"] for g in u.get("groups", [])),
        }
        for u in listing["everyone"]
    ]


class TestBulkRosterMeaning:
    """On the real Moodle, the bulk read says what the two core listings say."""

    @pytest.mark.parametrize(
        "case", [c for c in CASES if REFERENCE in (load(c).get("state_after") or {})]
    )
    def test_rows_equal_the_core_listings(self, case: str) -> None:
        """Each read's rows are the core listings' users, active unless onlysuspended lists them."""
        record = load(case)
        rows = record["response_body"]["enrolments"]
        expected = [
            row
            for course, listing in record["state_after"][REFERENCE].items()
            for row in _derived_from_core(listing, int(course))
        ]
        assert sorted(rows, key=lambda r: (r["courseid"], r["userid"])) == expected

    def test_success_covers_every_kind_of_enrolment(self) -> None:
        """The main read holds active and inactive users, two roles, groups, two courses."""
        rows = load("bulkroster_success")["response_body"]["enrolments"]
        assert {r["active"] for r in rows} == {True, False}
        assert any(len(r["roleids"]) > 1 for r in rows)
        assert any(len(r["groupids"]) > 1 for r in rows)
        assert len({r["courseid"] for r in rows}) > 1
        suspended = load("bulkroster_success")["state_after"][REFERENCE]
        assert sum(len(v["onlysuspended"]) for v in suspended.values()) >= 4

    def test_pages_add_up_to_the_whole(self) -> None:
        """The three pages, in order, are the unpaged answer."""
        pages = [
            load(f"bulkroster_page_{n}")["response_body"]["enrolments"]
            for n in (1, 2, 3)
        ]
        whole = load("bulkroster_success")["response_body"]["enrolments"]
        assert [row for page in pages for row in page] == whole
        assert [len(p) for p in pages] == [4, 4, len(whole) - 8]

    def test_absence_and_refusal_recorded(self) -> None:
        """Unknown function, function outside the service, and site_info both ways."""
        assert load("bulkroster_not_installed")["response_body"]["errorcode"] == (
            "invalidrecordunknown"
        )
        assert load("bulkroster_not_in_service")["response_body"]["errorcode"] == (
            "accessexception"
        )
        assert GET_COURSE_ENROLMENTS not in _service(WITHOUT)
        assert GET_COURSE_ENROLMENTS in _service(WITH)


@pytest.mark.asyncio(loop_scope="module")
class TestBulkRosterReplay:
    """Each recorded request of the sixth sequence, answered as Moodle 5.1 did."""

    @pytest.mark.parametrize("case", CASES)
    async def test_matches_recording(
        self, case: str, rosters_replay: RostersReplay
    ) -> None:
        """The simulator's answer, and its core listings after it, match the recording."""
        record = load(case)
        observed = await rosters_replay.observe(case)
        assert_answer(
            record,
            observed,
            sim_url=rosters_replay.sim.url,
            wwwroot=RECORDED_WWWROOT,
            mask=_mask,
        )
        reference = (record.get("state_after") or {}).get(REFERENCE, {})
        for course, listing in reference.items():
            assert observed.facts[course] == _roster_view(listing), course
