"""Accounts for new people through the real runner: in-memory topics, the simulator in-process.

The Moodle simulator answers ``core_user_create_users`` / ``core_user_update_users``
as the recorded Moodle 5.1 did (sequence 4); the consumer's own Moodle adapter
calls it. Every test ends with what Moodle holds and what waits, parked, and why.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.account_book import AccountBook
from consumers.accounts import AccountPolicy
from consumers.decisions import EnrolmentPolicy
from consumers.identity import IdentityResolver
from consumers.ledger import Ledger
from consumers.mapping import load_mappings
from consumers.parked import ParkedEvents
from consumers.provisioning import Provisioning
from consumers.runner import ApplyRunner
from sandbox.moodle_sim.inprocess import InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import DEFAULT_SERVICE_FUNCTIONS, WSCLIENT_USER_ID
from sandbox.moodle_sim.state import MoodleState
from schemas.events import (
    EnrolmentEvent,
    PersonDetails,
    Registration,
    SectionKey,
    TableChange,
    TermKey,
)
from tests.fakes import MemorySink, MemoryStream, MemoryTable

WINTER = TermKey(academic_year="2021", academic_term="Winter")
NEW = "P000074001"
TOKEN = "6f" * 16
BSC = SectionKey(
    academic_year="2021",
    academic_term="Winter",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)
DETAILS = PersonDetails(
    first_name="Amara",
    last_name="Chen",
    email="amara.chen@students.example.edu",
    username="amara.chen",
)


@dataclass
class World:
    """A simulated Moodle with one course, topics in memory, accounts on."""

    tmp: Path
    policy: AccountPolicy = field(default_factory=AccountPolicy)
    stream: MemoryStream = field(default_factory=MemoryStream)
    ledger: MemoryTable = field(default_factory=MemoryTable)
    parked: MemoryTable = field(default_factory=MemoryTable)
    accounts: MemoryTable = field(default_factory=MemoryTable)
    version: int = 0

    def __post_init__(self) -> None:
        self.state = MoodleState()
        self.state.add_token(
            TOKEN, WSCLIENT_USER_ID, functions=DEFAULT_SERVICE_FUNCTIONS
        )
        self.course = self.state.add_course("BSC5102Winter2021")
        mapping = {"BSC5102Winter2021": {"courses": ["BSC5102"], "id": self.course}}
        (self.tmp / "mapping.json").write_text(json.dumps(mapping))
        self.moodle = InProcessMoodle(MoodleSimulator(self.state, token=TOKEN))

    async def run(self) -> ApplyRunner:
        """A consumer started on the durable topics, run until idle."""
        ledger, parked = Ledger(self.ledger), ParkedEvents(self.parked)
        book = AccountBook(self.accounts)
        for table in (ledger, parked, book):
            await table.load()
        member = MemoryStream(log=self.stream.log, committed=self.stream.committed)
        runner = ApplyRunner(
            stream=member,
            moodle=self.moodle,
            identities=IdentityResolver(self.moodle),
            mapping=load_mappings({"2021/Winter": self.tmp / "mapping.json"}),
            policy=EnrolmentPolicy(student_role_id=5, audit_role_id=5),
            ledger=ledger,
            parked=parked,
            dead_letters=MemorySink(),
            max_backoff_s=0.0,
            clock=lambda: datetime(2021, 1, 11, tzinfo=UTC),
            provisioning=Provisioning(self.moodle, book, self.policy),
        )
        await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=0)
        self.stream.committed = member.committed
        return runner

    def publish(
        self, person: str = NEW, details: PersonDetails | None = DETAILS, adw: str = "A"
    ) -> None:
        """One event: the person registered in BSC5102/01 with these account details."""
        self.version += 1
        event = EnrolmentEvent(
            event_id=f"e-{self.version}",
            kind="change",
            source="test",
            people_code_id=person,
            term=WINTER,
            state_version=self.version,
            registrations=(
                Registration(transcript_detail_id=1, section=BSC, add_drop_wait=adw),
            ),
            teaching=(),
            standing=(),
            person=details,
            change=TableChange(
                table="TRANSCRIPTDETAIL",
                key="1",
                operation="update",
                change_version=self.version,
                section=BSC,
            ),
            captured_at=datetime(2021, 1, 11, tzinfo=UTC),
        )
        self.stream.publish(event.model_dump_json().encode(), key=person.encode())

    def user(self, username: str) -> int | None:
        """The id of the Moodle user with this username, if any."""
        return next((u.id for u in self.state.users() if u.username == username), None)


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> World:
    """A fresh world."""
    return World(tmp_path)


class TestNewAccounts:
    """A person with no Moodle user gets one, made from PowerCampus, and is enrolled."""

    async def test_created_and_enrolled_in_one_batch(self, world: World) -> None:
        """The account is made without a password and enrolled; nothing waits."""
        world.publish()
        runner = await world.run()
        userid = world.user("amara.chen")
        assert userid is not None
        user = world.state.user(userid)
        assert user is not None
        assert (user.idnumber, user.auth, user.email) == (
            "000074001",
            "manual",
            "amara.chen@students.example.edu",
        )
        assert user.forcepasswordchange  # createpassword: Moodle made one
        assert world.state.has_access(world.course, userid)
        assert len(runner.parked) == 0
        assert runner.provisioning is not None
        assert runner.provisioning.stats.created == 1

    async def test_username_collision_parked_then_released(self, world: World) -> None:
        """A username someone else holds parks the person with why; fixed, they go in."""
        other = world.state.add_user("amara.chen", email="alumna@example.org")
        world.publish()
        runner = await world.run()
        parked = runner.parked.get(NEW, "2021/Winter")
        assert parked is not None
        assert f"username 'amara.chen' is taken by Moodle user {other}" in parked.reason
        assert [u.username for u in world.state.users()].count("amara.chen") == 1
        world.state.update_user(other, {"username": "amara.chen.alumna"})
        runner = await world.run()
        await runner.retry_parked()
        assert len(runner.parked) == 0
        userid = world.user("amara.chen")
        assert userid is not None
        assert userid != other
        assert world.state.has_access(world.course, userid)

    async def test_missing_auth_plugin_parked_with_moodles_words(
        self, tmp_path: Path
    ) -> None:
        """Moodle's refusal (an auth plugin it lacks) is the parked reason, not a guess."""
        world = World(tmp_path, policy=AccountPolicy(auth="saml2"))
        world.publish()
        runner = await world.run()
        parked = runner.parked.get(NEW, "2021/Winter")
        assert parked is not None
        assert "Moodle refused to create account 'amara.chen'" in parked.reason
        assert "invalidparameter" in parked.reason
        assert world.user("amara.chen") is None

    async def test_no_email_parks_with_the_reason(self, world: World) -> None:
        """No active primary e-mail: parked, saying so."""
        world.publish(details=DETAILS.model_copy(update={"email": None}))
        runner = await world.run()
        parked = runner.parked.get(NEW, "2021/Winter")
        assert parked is not None
        assert "no active primary e-mail" in parked.reason

    async def test_lost_reply_does_not_make_two_accounts(self, world: World) -> None:
        """A creation whose answer was lost is found by idnumber, never made twice."""
        world.publish()
        world.moodle.on_call(
            lambda function, _: (
                "lose_reply" if function == "core_user_create_users" else "answer"
            )
        )
        await world.run()
        world.moodle.on_call(None)
        runner = await world.run()
        made = [u for u in world.state.users() if u.idnumber == "000074001"]
        assert len(made) == 1
        assert world.state.has_access(world.course, made[0].id)
        assert len(runner.parked) == 0

    async def test_nobody_enrolled_nobody_made(self, world: World) -> None:
        """A person no decision wants in a course gets no account."""
        world.publish(adw="D")
        await world.run()
        assert world.user("amara.chen") is None


class TestAccountUpdates:
    """Names and e-mail changes update the accounts we made, never others."""

    async def test_ours_follow_powercampus(self, world: World) -> None:
        """A new last name and e-mail reach the account we created."""
        world.publish()
        await world.run()
        renamed = DETAILS.model_copy(
            update={"last_name": "Chen-Li", "email": "a.chenli@students.example.edu"}
        )
        world.publish(details=renamed)
        runner = await world.run()
        userid = world.user("amara.chen")
        assert userid is not None
        user = world.state.user(userid)
        assert user is not None
        assert (user.lastname, user.email) == (
            "Chen-Li",
            "a.chenli@students.example.edu",
        )
        assert runner.provisioning is not None
        assert runner.provisioning.stats.updated == 1

    async def test_others_are_never_touched(self, world: World) -> None:
        """An account someone else made keeps its names whatever PowerCampus says."""
        theirs = world.state.add_user(
            "a.chen", idnumber="000074001", firstname="A", lastname="Chen"
        )
        world.publish(details=DETAILS.model_copy(update={"last_name": "Other"}))
        await world.run()
        user = world.state.user(theirs)
        assert user is not None
        assert (user.firstname, user.lastname) == ("A", "Chen")
        assert world.state.has_access(world.course, theirs)

    async def test_refused_update_changes_nothing(self, world: World) -> None:
        """An e-mail another account holds is refused (a warning); the rest goes on."""
        world.publish()
        await world.run()
        world.state.add_user("x", email="taken@students.example.edu")
        world.publish(
            details=DETAILS.model_copy(update={"email": "taken@students.example.edu"})
        )
        runner = await world.run()
        userid = world.user("amara.chen")
        assert userid is not None
        user = world.state.user(userid)
        assert user is not None
        assert user.email == "amara.chen@students.example.edu"
        assert runner.provisioning is not None
        assert runner.provisioning.stats.updated == 0
