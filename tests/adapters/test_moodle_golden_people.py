"""Replays the fourth recorded sequence (INDEX.md "Cases (sequence 4)") on the simulator.

Accounts as enrolstream makes them (``core_user_create_users`` with each auth
plugin, no password, collisions), ``core_user_update_users`` with its per-user
warnings, instructors' role changes at course context and an enrolment of a
user whose account is suspended. The harness site already held the earlier
sequences' users and courses, so the replay's fresh simulated site starts its
ids where the recorded set-up answers say; the token may not see e-mails except
around the one case recorded with ``moodle/site:viewuseridentity``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import COMPANION_PLUGIN, COMPANION_SERVICE_FUNCTIONS
from sandbox.moodle_sim.state import WSCLIENT_USER_ID, MoodleState, SiteConfig
from tests.adapters.golden import (
    SECTIONS,
    Observed,
    SimulatedSite,
    assert_answer,
    load,
    send,
)

CASES = SECTIONS["Cases (sequence 4)"]
RECORDED_WWWROOT = "http://127.0.0.1:8765"
TOKEN = "1b2c3d4e5f60718293a4b5c6d7e8f90a"  # noqa: S105 - a test token
USERS_CASE, COURSE_CASE = "people_setup_create_users", "people_setup_create_course"
IDENTITY_CASE = "people_lookup_emails_viewuseridentity"
MADE_BY_US = "people_create_manual_createpassword"

# Every difference from the recording the comparison tolerates, in one place.
# 1. The site's wwwroot: the simulator listens on a free port, not on 8765.
# 2. elapsed_s is never compared (the simulator has no latency here).
# 3. The theme revision: cache purges around the identity case move it; the
#    replay takes it from the recorded picture URLs.
# (The recorded site had the companion plugin installed; the simulated one too.)


def _themerev(case: str) -> int:
    """The theme revision in a recorded user's picture URL."""
    url = load(case)["response_body"][0]["profileimageurl"]
    return int(url.split("/core/")[1].split("/")[0])


def _recorded_site() -> MoodleState:
    """A fresh simulated site made to look like the harness site at the start."""
    state = MoodleState(
        site=SiteConfig(
            sitename="enrolstream harness",
            themerev=_themerev("people_lookup_usernames"),
            plugins=(COMPANION_PLUGIN,),
        )
    )
    wsclient = state.user(WSCLIENT_USER_ID)
    assert wsclient is not None
    wsclient.firstname, wsclient.lastname = "Enrolstream", "Integration"
    state._t.next_user_id = int(load(USERS_CASE)["response_body"][0]["id"])
    state._t.next_course_id = int(load(COURSE_CASE)["response_body"][0]["id"])
    _token(state, sees_emails=False)
    return state


def _token(state: MoodleState, *, sees_emails: bool) -> None:
    state.add_token(
        TOKEN,
        WSCLIENT_USER_ID,
        functions=COMPANION_SERVICE_FUNCTIONS,
        sees_emails=sees_emails,
    )


def _user_rows(state: MoodleState, usernames: list[str]) -> list[dict[str, Any]]:
    """``state_after["db_users (SQL)"]`` as the simulated ``{user}`` table holds it."""
    return [
        {
            "username": u.username,
            "auth": u.auth,
            "firstname": u.firstname,
            "lastname": u.lastname,
            "middlename": u.middlename,
            "email": u.email,
            "idnumber": u.idnumber,
            "suspended": int(u.suspended),
            "confirmed": 1,
            "password": u.credential,
            "auth_forcepasswordchange": "1" if u.forcepasswordchange else None,
        }
        for u in sorted(state.users(), key=lambda u: u.id)
        if u.username in usernames
    ]


class PeopleReplay:
    """Runs the fourth sequence in order on one simulated site, once each."""

    def __init__(self, sim: MoodleSimulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.site = SimulatedSite(sim.state, session, sim.url, TOKEN)
        made = load(USERS_CASE)["response_body"]
        mine = load(MADE_BY_US)["response_body"]
        self.watched = {int(u["id"]) for u in made + mine}
        self.done: dict[str, Observed] = {}

    async def observe(self, case: str) -> Observed:
        """Run every case up to ``case`` not yet run; return what ``case`` observed."""
        for name in CASES[: CASES.index(case) + 1]:
            if name not in self.done:
                self.done[name] = await self._run(name, load(name))
        return self.done[name]

    async def _run(self, name: str, record: dict[str, Any]) -> Observed:
        self.sim.debug = name.endswith("_debug_on")
        # The script gave the token's role viewuseridentity around this case only,
        # purging caches (which moves the theme revision) as it did.
        _token(self.sim.state, sees_emails=name == IDENTITY_CASE)
        if name == IDENTITY_CASE:
            site = self.sim.state.site
            self.sim.state.site = dataclasses.replace(
                site, themerev=_themerev(IDENTITY_CASE)
            )
        sent_before = len(self.sim.state.notifications)
        observed = await send(self.session, self.sim.url, record, TOKEN)
        observed.facts = await self.site.facts(record, sent_before, self.watched)
        if "users_scope" in record:
            observed.facts["db_users (SQL)"] = _user_rows(
                self.sim.state, record["users_scope"]
            )
        return observed


@pytest_asyncio.fixture(name="people_replay", scope="module", loop_scope="module")
async def _people_replay() -> AsyncIterator[PeopleReplay]:
    async with (
        aiohttp.ClientSession() as session,
        MoodleSimulator(_recorded_site(), token=TOKEN) as sim,
    ):
        yield PeopleReplay(sim, session)


class TestPeopleSequence:
    """The fourth sequence records what the consumer's account handling relies on."""

    def test_every_refused_account_is_a_bare_invalidparameter(self) -> None:
        """Without debugging, a taken username, a taken e-mail and a missing plugin read alike."""
        refusals = [
            c
            for c in CASES
            if c.startswith("people_create_") and not c.endswith("_debug_on")
        ]
        bodies = [load(c)["response_body"] for c in refusals]
        refused = [b for b in bodies if isinstance(b, dict)]
        assert len(refused) >= 6
        assert {b["errorcode"] for b in refused} == {"invalidparameter"}
        assert all("debuginfo" not in b for b in refused)

    def test_accounts_were_made_without_a_password(self) -> None:
        """No created account got a password from the client."""
        for case in CASES:
            record = load(case)
            if record["function"] == "core_user_create_users" and case != USERS_CASE:
                assert not any(
                    k.endswith("[password]") for k in record["request_params"]
                )


@pytest.mark.asyncio(loop_scope="module")
class TestPeopleReplay:
    """Each recorded request of the fourth sequence, answered and applied as Moodle 5.1 did."""

    @pytest.mark.parametrize("case", CASES)
    async def test_matches_recording(
        self, case: str, people_replay: PeopleReplay
    ) -> None:
        """The simulator's answer and the state after it match the recording."""
        record = load(case)
        observed = await people_replay.observe(case)
        assert_answer(
            record, observed, sim_url=people_replay.sim.url, wwwroot=RECORDED_WWWROOT
        )
        for key, expected in (record.get("state_after") or {}).items():
            assert observed.facts[key] == expected, key
