"""Replays the second recorded sequence (INDEX.md "Cases (sequence 2)") on the simulator.

Dropping a student by role (``core_role_assign_roles`` /
``core_role_unassign_roles``), a role-less enrolment in the roster, the welcome
message an enrol call sends, and the web server stopped mid-request. The cases
ran in order on a second, fresh harness site, so they replay in order on their
own fresh simulated site, built by the recorded set-up calls themselves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState, SiteConfig
from tests.adapters.golden import (
    SECTIONS,
    Observed,
    SimulatedSite,
    assert_answer,
    load,
    send,
)

CASES = SECTIONS["Cases (sequence 2)"]
RECORDED_WWWROOT = "http://127.0.0.1:8765"
# The second site: its front page name and theme revision show in answers.
RECORDED_SITE = SiteConfig(sitename="enrolstream harness", themerev=1796082023)
TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # noqa: S105 - a test token
USERS_CASE = "roles_setup_create_users"  # whose notifications the recording watched

# Every difference from the recording the comparison tolerates, in one place.
# 1. The site's wwwroot: the simulator listens on a free port, not on 8765.
# 2. The stopped web server. outage_stop_in_flight: the request in flight is
#    answered by the fault plan's ``terminate`` fault (not by a SIGTERM while
#    Moodle runs it). outage_request_while_stopped: the simulator's listener is
#    closed for that request and a new simulator is started on the same port
#    over the same state afterwards; the missing answer is compared by the
#    client exception's kind (ConnectionRefusedError), not by its text.
# 3. outage_worker_survives_stop: the php -S worker that survived stop.sh is a
#    harness artefact; the simulator is not stopped for that case and answers
#    as that worker did.
# 4. elapsed_s is never compared (the simulator has no latency here).
TERMINATED_CASE = "outage_stop_in_flight"
STOPPED_CASE = "outage_request_while_stopped"


class RolesReplay:
    """Runs the second sequence in order on one simulated site, once each."""

    def __init__(self, state: MoodleState, session: aiohttp.ClientSession) -> None:
        self.state, self.session = state, session
        self.sim: MoodleSimulator | None = None
        self.port = 0
        self.watched: set[int] = set()
        self.done: dict[str, Observed] = {}

    @property
    def url(self) -> str:
        """The running simulator's base URL."""
        assert self.sim is not None, "the simulator is stopped"
        return self.sim.url

    async def start(self) -> None:
        """Start a simulator over the site's state (on the previous port, if any)."""
        self.sim = MoodleSimulator(self.state, token=TOKEN, port=self.port)
        await self.sim.__aenter__()
        self.port = int(self.sim.url.rsplit(":", 1)[1])

    async def stop(self) -> None:
        """Stop the simulator: its port refuses connections until ``start``."""
        if self.sim is not None:
            await self.sim.__aexit__(None, None, None)
            self.sim = None

    async def observe(self, case: str) -> Observed:
        """Run every case up to ``case`` not yet run; return what ``case`` observed."""
        for name in CASES[: CASES.index(case) + 1]:
            if name not in self.done:
                self.done[name] = await self._run(name, load(name))
        return self.done[name]

    async def _run(self, name: str, record: dict[str, Any]) -> Observed:
        assert self.sim is not None
        self.sim.debug = name.endswith("_debug_on")
        if name == TERMINATED_CASE:
            self.sim.faults.terminate_next(1)
        sent_before = len(self.state.notifications)
        if name == STOPPED_CASE:
            await self.stop()
            observed = await send(
                self.session, f"http://127.0.0.1:{self.port}", record, TOKEN
            )
            await self.start()
        else:
            observed = await send(self.session, self.url, record, TOKEN)
        if name == USERS_CASE:
            assert observed.body is not None
            self.watched = {user["id"] for user in json.loads(observed.body)}
        observed.facts = await self._facts(record, sent_before)
        return observed

    async def _facts(self, record: dict[str, Any], sent_before: int) -> dict[str, Any]:
        """``state_after`` as the simulator's state and roster show it."""
        site = SimulatedSite(self.state, self.session, self.url, TOKEN)
        return await site.facts(record, sent_before, self.watched)


@pytest_asyncio.fixture(name="roles_replay", scope="module", loop_scope="module")
async def _roles_replay() -> AsyncIterator[RolesReplay]:
    state = MoodleState(site=RECORDED_SITE)
    # The recorded site had used context ids up to 11 before its first course.
    state.next_context_id = 12
    # A new connection per request, as the recorder's client made them: a pooled
    # connection to the stopped server would fail on write instead of connecting.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        replay = RolesReplay(state, session)
        await replay.start()
        try:
            yield replay
        finally:
            await replay.stop()


class TestRolesSequence:
    """The second sequence records what the replay is meant to prove."""

    def test_sequence_has_the_recorded_kinds(self) -> None:
        """It holds both role functions, a refused connection and a terminated answer."""
        functions = {load(case)["function"] for case in CASES}
        assert {"core_role_assign_roles", "core_role_unassign_roles"} <= functions
        assert load(STOPPED_CASE)["transport_error"].startswith(
            "ConnectionRefusedError"
        )
        assert load(TERMINATED_CASE)["response_body"] == "Terminated: 15\n"


@pytest.mark.asyncio(loop_scope="module")
class TestRolesReplay:
    """Each recorded request of the second sequence, answered and applied as Moodle 5.1 did."""

    @pytest.mark.parametrize("case", CASES)
    async def test_matches_recording(
        self, case: str, roles_replay: RolesReplay
    ) -> None:
        """The simulator's answer and the state after it match the recording."""
        record = load(case)
        observed = await roles_replay.observe(case)
        assert_answer(
            record,
            observed,
            sim_url=roles_replay.url,
            wwwroot=RECORDED_WWWROOT,
        )
        for key, expected in (record.get("state_after") or {}).items():
            assert observed.facts[key] == expected, key
