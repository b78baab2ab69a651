"""Replays the third recorded sequence (INDEX.md "Cases (sequence 3)") on the simulator.

The companion plugin's ``local_enrolstream_set_enrolment_status``: what a site
without the plugin answers, what a token whose service lacks the function
answers, site_info before and after, then the function at work and refusing.
The cases ran in order on a harness site that already held sequence 2's users
and courses, so the replay's fresh simulated site starts its ids where the
recorded set-up answers say, and the site changes an administrator made between
cases (installing the plugin, adding its function to the service, a course
without a manual instance, a disabled one) are made on the simulated site at the
same points.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox.moodle_sim.registry import all_functions
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import COMPANION_PLUGIN, SET_ENROLMENT_STATUS
from sandbox.moodle_sim.state import WSCLIENT_USER_ID, MoodleState, SiteConfig
from tests.adapters.golden import (
    SECTIONS,
    Observed,
    SimulatedSite,
    assert_answer,
    load,
    send,
)

CASES = SECTIONS["Cases (sequence 3)"]
RECORDED_WWWROOT = "http://127.0.0.1:8765"
TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # noqa: S105 - a test token
USERS_CASE = "companion_setup_create_users"  # whose notifications the recording watched
WITHOUT, WITH = "companion_site_info_without_plugin", "companion_site_info_with_plugin"

# Every difference from the recording the comparison tolerates, in one place.
# 1. The site's wwwroot: the simulator listens on a free port, not on 8765.
# 2. site_info: ``userprivateaccesskey`` is masked (the recording masked it), and
#    the ``functions`` list is compared over the functions the simulator
#    implements: the harness's service also holds group, category and user-update
#    functions the simulator does not have.
# 3. The deleted user: the simulator has no deleted users, so the replay unenrols
#    that user and removes the row (the function answers both alike: invaliduser).
# 4. elapsed_s is never compared (the simulator has no latency here).
SIMULATED = frozenset(all_functions())


def _mask(body: Any) -> Any:
    if isinstance(body, dict) and "functions" in body:
        return body | {
            "userprivateaccesskey": "<PRIVATEKEY>",
            "functions": [f for f in body["functions"] if f["name"] in SIMULATED],
        }
    return body


def _recorded_service() -> tuple[str, ...]:
    """The token's service as site_info listed it once the function was added."""
    return tuple(f["name"] for f in load(WITH)["response_body"]["functions"])


def _themerev(case: str) -> int:
    """The theme revision in a recorded site_info's picture URL."""
    url = load(case)["response_body"]["userpictureurl"]
    return int(url.split("/core/")[1].split("/")[0])


def _first_id(case: str) -> int:
    return int(load(case)["response_body"][0]["id"])


def _recorded_site() -> MoodleState:
    """A fresh simulated site made to look like the harness site at the start."""
    state = MoodleState(
        site=SiteConfig(sitename="enrolstream harness", themerev=_themerev(WITHOUT))
    )
    wsclient = state.user(WSCLIENT_USER_ID)
    assert wsclient is not None
    wsclient.firstname, wsclient.lastname = "Enrolstream", "Integration"
    # Sequence 2's users and courses came first on that site.
    state._t.next_user_id = _first_id(USERS_CASE)
    state._t.next_course_id = _first_id("companion_setup_create_courses")
    without = tuple(f for f in _recorded_service() if f != SET_ENROLMENT_STATUS)
    state.add_token(TOKEN, WSCLIENT_USER_ID, functions=without)
    return state


def _course(case: str, shortname: str) -> int:
    body = load(case)["response_body"]
    return int(next(c["id"] for c in body if c["shortname"] == shortname))


def _after_steps() -> dict[str, Callable[[MoodleState], None]]:
    """What the administrator did to the site right after each of these cases."""

    def no_manual(state: MoodleState) -> None:
        case = "companion_setup_create_course_no_manual"
        state.set_manual_instance(_course(case, "NOMANUAL201Winter2023"), "absent")

    def disable_manual_and_delete_user(state: MoodleState) -> None:
        courses = "companion_setup_create_courses"
        state.set_manual_instance(
            _course(courses, "MANUALOFF301Winter2023"), "disabled"
        )
        users = load(USERS_CASE)["response_body"]
        deleted = next(u["id"] for u in users if u["username"] == "p000500008")
        state.unenrol(_course(courses, "COMPANION101Winter2023"), deleted)
        del state._t.users[deleted]

    def install(state: MoodleState) -> None:
        # upgrade.php purged the caches: the theme revision moved.
        state.site = dataclasses.replace(
            state.site, plugins=(COMPANION_PLUGIN,), themerev=_themerev(WITH)
        )

    def add_to_service(state: MoodleState) -> None:
        state.add_token(TOKEN, WSCLIENT_USER_ID, functions=_recorded_service())

    return {
        "companion_setup_create_course_no_manual": no_manual,
        "companion_setup_enrol_students": disable_manual_and_delete_user,
        WITHOUT: install,
        "companion_not_in_service": add_to_service,
    }


class CompanionReplay:
    """Runs the third sequence in order on one simulated site, once each."""

    def __init__(self, sim: MoodleSimulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.site = SimulatedSite(sim.state, session, sim.url, TOKEN)
        self.after = _after_steps()
        self.watched: set[int] = set()
        self.done: dict[str, Observed] = {}

    async def observe(self, case: str) -> Observed:
        """Run every case up to ``case`` not yet run; return what ``case`` observed."""
        for name in CASES[: CASES.index(case) + 1]:
            if name not in self.done:
                self.done[name] = await self._run(name, load(name))
        return self.done[name]

    async def _run(self, name: str, record: dict[str, Any]) -> Observed:
        self.sim.debug = name.endswith("_debug_on")
        sent_before = len(self.sim.state.notifications)
        observed = await send(self.session, self.sim.url, record, TOKEN)
        if name == USERS_CASE:
            assert observed.body is not None
            self.watched = {user["id"] for user in json.loads(observed.body)}
        observed.facts = await self.site.facts(record, sent_before, self.watched)
        if name in self.after:
            self.after[name](self.sim.state)
        return observed


@pytest_asyncio.fixture(name="companion_replay", scope="module", loop_scope="module")
async def _companion_replay() -> AsyncIterator[CompanionReplay]:
    async with (
        aiohttp.ClientSession() as session,
        MoodleSimulator(_recorded_site(), token=TOKEN) as sim,
    ):
        yield CompanionReplay(sim, session)


class TestCompanionSequence:
    """The third sequence records what the replay is meant to prove."""

    def test_sequence_covers_absence_and_refusal(self) -> None:
        """It holds the function unknown, refused by the service, and site_info both ways."""
        assert load("companion_not_installed")["response_body"]["errorcode"] == (
            "invalidrecordunknown"
        )
        assert load("companion_not_in_service")["response_body"]["errorcode"] == (
            "accessexception"
        )
        listed = {f["name"] for f in load(WITHOUT)["response_body"]["functions"]}
        assert SET_ENROLMENT_STATUS not in listed
        assert SET_ENROLMENT_STATUS in _recorded_service()

    def test_no_status_change_sent_a_notification(self) -> None:
        """No call of the function sent a notification on the real site."""
        for case in CASES:
            record = load(case)
            if record["function"] == SET_ENROLMENT_STATUS:
                sent = record["state_after"]["notifications sent during the call (SQL)"]
                assert sent == [], case


@pytest.mark.asyncio(loop_scope="module")
class TestCompanionReplay:
    """Each recorded request of the third sequence, answered and applied as Moodle 5.1 did."""

    @pytest.mark.parametrize("case", CASES)
    async def test_matches_recording(
        self, case: str, companion_replay: CompanionReplay
    ) -> None:
        """The simulator's answer and the state after it match the recording."""
        record = load(case)
        observed = await companion_replay.observe(case)
        assert_answer(
            record,
            observed,
            sim_url=companion_replay.sim.url,
            wwwroot=RECORDED_WWWROOT,
            mask=_mask,
        )
        for key, expected in (record.get("state_after") or {}).items():
            assert observed.facts[key] == expected, key
