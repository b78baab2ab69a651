"""The apply loop under faults: lost replies, refused calls, a consumer killed mid-batch.

The real ``ApplyRunner`` is driven through in-memory fakes of the event stream,
the ledger and parked tables, and the Moodle simulator reached in-process by
the consumer's own Moodle adapter (``sandbox.moodle_sim.inprocess``). Each
course has an editing teacher, so Moodle sends "Welcome to <course>" on every
enrol call, as a real site does: a welcome is counted per call Moodle answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.moodle.actions import SET_STATUS
from consumers.decisions import DropAction, EnrolmentPolicy
from consumers.identity import IdentityResolver
from consumers.ledger import Ledger
from consumers.mapping import MappingSet, load_mappings
from consumers.parked import ParkedEvents
from consumers.ports import Partition
from consumers.runner import ApplyRunner
from sandbox.moodle_sim.inprocess import CallFate, InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_SERVICE_FUNCTIONS,
    DEFAULT_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
    SiteConfig,
)
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState
from schemas.actions import LedgerEntry
from schemas.events import (
    EnrolmentEvent,
    Registration,
    SectionKey,
    TableChange,
    TermKey,
)
from tests.fakes import MemorySink, MemoryStream, MemoryTable

WINTER = TermKey(academic_year="2021", academic_term="Winter")
STUDENT = 5
PEOPLE = tuple(f"P{n:09d}" for n in range(1, 13))
TOKEN = "5e" * 16
LATE_WRITE_WINDOW_S = 60.0


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, not even ``except Exception``."""


def section(event_id: str, number: str = "01") -> SectionKey:
    """A section of 2021/Winter."""
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="",
        event_id=event_id,
        event_sub_type="LEC",
        section=number,
    )


@dataclass
class World:
    """A simulated Moodle, the mapping, the stream and the consumer's durable state."""

    tmp: Path
    policy: EnrolmentPolicy
    courses: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    stream: MemoryStream = field(default_factory=MemoryStream)
    batch_sizes: tuple[int, ...] = (100,)
    max_input_vars: int = 1000
    companion: bool = False  # the site has the companion plugin in its service
    ledger_table: MemoryTable = field(default_factory=MemoryTable)
    parked_table: MemoryTable = field(default_factory=MemoryTable)
    letters: MemorySink = field(default_factory=MemorySink)
    version: int = 0
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    now: datetime = datetime(2021, 1, 11, tzinfo=UTC)  # the consumers' clock

    def __post_init__(self) -> None:
        plugins = (COMPANION_PLUGIN,) if self.companion else ()
        self.state = MoodleState(site=SiteConfig(plugins=plugins))
        functions = (
            COMPANION_SERVICE_FUNCTIONS if self.companion else DEFAULT_SERVICE_FUNCTIONS
        )
        self.state.add_token(TOKEN, WSCLIENT_USER_ID, functions=functions)
        teacher = self.state.add_user("teacher", firstname="T", lastname="Eacher")
        mapping: dict[str, object] = {}
        for event_id in ("BSC5102", "MAT2001"):
            shortname = f"{event_id}Winter2021"
            courseid = self.state.add_course(shortname, f"{event_id} Winter 2021")
            self.state.enrol(courseid, teacher, EDITING_TEACHER)  # the welcome sender
            self.courses[event_id] = courseid
            mapping[shortname] = {"courses": [event_id], "id": courseid}
        for person in PEOPLE:
            self.users[person] = self.state.add_user(
                person.lower(), idnumber=person[1:], firstname="S", lastname=person
            )
        self.mapping_file = self.tmp / "mapping.json"
        self.mapping_file.write_text(json.dumps(mapping))
        self.simulator = MoodleSimulator(self.state, token=TOKEN)
        self.moodle = InProcessMoodle(
            self.simulator,
            concurrency=3,
            max_input_vars=self.max_input_vars,
            status_function=SET_STATUS if self.companion else None,
        )

    @property
    def mapping(self) -> MappingSet:
        """The term's mapping."""
        return load_mappings({"2021/Winter": self.mapping_file})

    async def runner(self) -> ApplyRunner:
        """A consumer as ``consume`` starts one: ledger and parked read back first."""
        ledger = Ledger(self.ledger_table)
        parked = ParkedEvents(self.parked_table)
        await ledger.load()
        await parked.load()
        self.member = MemoryStream(
            log=self.stream.log,
            committed=self.stream.committed,
            batch_sizes=self.batch_sizes,
        )
        return ApplyRunner(
            stream=self.member,
            moodle=self.moodle,
            identities=IdentityResolver(self.moodle),
            mapping=self.mapping,
            policy=self.policy,
            ledger=ledger,
            parked=parked,
            dead_letters=self.letters,
            max_backoff_s=0.0,
            clock=lambda: self.now,
            late_write_window_s=LATE_WRITE_WINDOW_S,
        )

    def registrar(self, person: str, **changes: str) -> None:
        """One PowerCampus transaction: ``event_id='A'|'D'`` per course; one event each."""
        self.version += 1
        rows = self.rows.setdefault(person, {})
        rows.update(changes)
        registrations = tuple(
            Registration(
                transcript_detail_id=hash((person, event_id)) % 10**6,
                section=section(event_id),
                add_drop_wait=status,
            )
            for event_id, status in rows.items()
        )
        for event_id in changes:
            event = EnrolmentEvent(
                event_id=f"{person}-{event_id}-{self.version}",
                kind="change",
                source="test",
                people_code_id=person,
                term=WINTER,
                state_version=self.version,
                registrations=registrations,
                change=TableChange(
                    table="TRANSCRIPTDETAIL",
                    key=str(hash((person, event_id)) % 10**6),
                    operation="update",
                    change_version=self.version,
                    section=section(event_id),
                ),
                captured_at=datetime(2021, 1, 11, tzinfo=UTC),
            )
            self.stream.publish(event.model_dump_json().encode(), key=person.encode())

    async def consume(self) -> ApplyRunner:
        """Start a consumer and run it until everything published is applied.

        The group's committed offset is kept when it ends, however it ends (a
        ``Killed`` consumer resumes from its last commit, as after kill -9).
        """
        runner = await self.runner()
        try:
            await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=0)
        finally:
            self.stream.committed = self.member.committed
        return runner

    def holds(self, person: str, event_id: str) -> str:
        """'active', 'suspended', 'no role' or 'absent' for the person's enrolment."""
        courseid, userid = self.courses[event_id], self.users[person]
        enrolment = self.state.enrolment(courseid, userid)
        if enrolment is None:
            return "absent"
        if enrolment.status:
            return "suspended"
        return (
            "active" if STUDENT in self.state.roles_of(courseid, userid) else "no role"
        )

    def welcomes(self, person: str) -> int:
        """Welcome messages Moodle sent the person."""
        userid = self.users[person]
        return sum(1 for n in self.state.notifications if n.useridto == userid)

    def ledger_entry(self, person: str, event_id: str) -> LedgerEntry | None:
        """The ledger's latest entry for the person's enrolment."""
        key = f"{self.courses[event_id]}:{self.users[person]}".encode()
        value = self.ledger_table.rows.get(key)
        return LedgerEntry.model_validate_json(value) if value else None


def policy(drop_action: DropAction = "remove_role") -> EnrolmentPolicy:
    """The default decisions, with the given drop action."""
    return EnrolmentPolicy(
        student_role_id=STUDENT, audit_role_id=STUDENT, drop_action=drop_action
    )


@pytest.fixture(name="world")
def fixture_world(tmp_path: Path) -> World:
    """A fresh world with the default drop action (remove the role)."""
    return World(tmp_path, policy())


def on_writes(
    fate: CallFate, calls: int = 1
) -> Callable[[str, Mapping[str, object]], CallFate]:
    """A rule: the next ``calls`` write calls get ``fate``; reads are answered."""
    left = [calls]

    def rule(function: str, params: Mapping[str, object]) -> CallFate:
        if function.startswith(("enrol_manual", "core_role")) and left[0] > 0:
            left[0] -= 1
            return fate
        return "answer"

    return rule


class TestLostReplies:
    """A request Moodle applied whose answer was lost is read back, never guessed."""

    async def test_drop_with_lost_reply_then_readded(self, world: World) -> None:
        """Dropped while replies are lost, re-added: active again, one welcome in all."""
        world.registrar("P000000001", BSC5102="A")
        await world.consume()
        world.registrar("P000000001", BSC5102="D")
        world.registrar("P000000001", BSC5102="A")
        world.batch_sizes = (1, 100)  # the retry reads the drop and the re-add together
        world.moodle.on_call(on_writes("lose_reply"))
        runner = await world.consume()
        assert world.holds("P000000001", "BSC5102") == "active"
        assert world.welcomes("P000000001") == 1
        assert runner.stats.verified == 1
        entry = world.ledger_entry("P000000001", "BSC5102")
        assert entry is not None
        assert (entry.status, entry.uncertain) == ("active", False)

    async def test_readd_with_lost_reply_then_dropped(self, world: World) -> None:
        """Re-added while replies are lost, dropped again: dropped, one welcome in all."""
        world.registrar("P000000001", BSC5102="A")
        world.registrar("P000000001", BSC5102="D")
        await world.consume()
        world.registrar("P000000001", BSC5102="A")
        world.registrar("P000000001", BSC5102="D")
        world.batch_sizes = (1, 100)
        world.moodle.on_call(on_writes("lose_reply"))
        await world.consume()
        assert world.holds("P000000001", "BSC5102") == "no role"
        assert world.welcomes("P000000001") == 1

    async def test_sibling_chunks_are_not_resent(self, tmp_path: Path) -> None:
        """One chunk's reply lost among several: rows that landed are not sent again."""
        world = World(tmp_path, policy(), max_input_vars=3 + 6 * 2)
        for person in PEOPLE:
            world.registrar(person, BSC5102="A")
        world.moodle.on_call(on_writes("lose_reply"))
        runner = await world.consume()
        assert all(world.holds(p, "BSC5102") == "active" for p in PEOPLE)
        assert [world.welcomes(p) for p in PEOPLE] == [1] * len(PEOPLE)
        assert runner.stats.unknown_outcomes == 2  # one chunk of two rows
        assert runner.stats.verified == 2


class TestLateWrites:
    """A call cut off, read back, then applied by Moodle after all: put back in time."""

    async def test_enrol_landing_after_the_drop_is_undone(self, world: World) -> None:
        """Added (the call hangs), dropped: the late enrol is taken back after the window."""
        world.registrar("P000000001", BSC5102="A")
        world.registrar("P000000001", BSC5102="D")
        world.batch_sizes = (1, 100)
        world.moodle.on_call(on_writes("apply_later"))
        runner = await world.consume()
        assert world.holds("P000000001", "BSC5102") == "absent"  # read back: nothing
        assert await world.moodle.release_late() == 1  # ...then PHP finished it
        assert world.holds("P000000001", "BSC5102") == "active"  # wrong, for now
        assert await runner.late_writes.check_due() == 0  # not due yet
        world.now += timedelta(seconds=LATE_WRITE_WINDOW_S + 1)
        assert await runner.late_writes.check_due() == 1
        assert world.holds("P000000001", "BSC5102") == "no role"
        world.now += timedelta(seconds=LATE_WRITE_WINDOW_S + 1)
        assert await runner.late_writes.check_due() == 0  # settled: nothing pending
        assert runner.late_writes.due() == []
        assert runner.ledger.awaiting_recheck() == []

    async def test_nothing_late_nothing_done(self, world: World) -> None:
        """A lost reply read back and never applied late: one read, no write."""
        world.registrar("P000000001", BSC5102="A")
        world.moodle.on_call(on_writes("lose_reply"))
        runner = await world.consume()
        writes = [
            f for f, _ in world.moodle.log if f.startswith(("enrol", "core_role"))
        ]
        world.now += timedelta(seconds=LATE_WRITE_WINDOW_S + 1)
        assert await runner.late_writes.check_due() == 0
        assert [
            f for f, _ in world.moodle.log if f.startswith(("enrol", "core_role"))
        ] == writes
        assert runner.ledger.awaiting_recheck() == []
        assert world.holds("P000000001", "BSC5102") == "active"


class TestOutages:
    """Moodle refusing calls for a while: nothing lost, nothing created to be dropped."""

    async def test_added_and_dropped_during_an_outage_creates_nothing(
        self, world: World
    ) -> None:
        """An add refused, then a drop: the drop never creates an enrolment."""
        world.registrar("P000000001", BSC5102="A")
        world.registrar("P000000001", BSC5102="D")
        world.batch_sizes = (1, 100)
        world.moodle.on_call(on_writes("refuse"))
        await world.consume()
        assert world.holds("P000000001", "BSC5102") == "absent"
        assert world.welcomes("P000000001") == 0

    async def test_every_call_refused_for_a_while(self, world: World) -> None:
        """Refused three times in a row, then up: applied once, welcomed once."""
        for person in PEOPLE[:3]:
            world.registrar(person, BSC5102="A", MAT2001="A")
        world.moodle.on_call(on_writes("refuse", calls=3))
        runner = await world.consume()
        assert runner.stats.retries == 3
        assert all(
            world.holds(p, c) == "active" for p in PEOPLE[:3] for c in world.courses
        )
        assert [world.welcomes(p) for p in PEOPLE[:3]] == [2, 2, 2]


class TestKilled:
    """kill -9 anywhere in a batch: the restarted consumer finds out what landed."""

    async def test_killed_after_moodle_applied(self, world: World) -> None:
        """Killed between Moodle's answer and the ledger write: nothing sent twice."""
        for person in PEOPLE:
            world.registrar(person, BSC5102="A")

        def die(function: str) -> None:
            if function == "enrol_manual_enrol_users":
                raise Killed

        world.moodle.after_serve = die
        with pytest.raises(Killed):
            await world.consume()
        world.moodle.after_serve = lambda function: None
        runner = await world.consume()
        assert all(world.holds(p, "BSC5102") == "active" for p in PEOPLE)
        assert [world.welcomes(p) for p in PEOPLE] == [1] * len(PEOPLE)
        assert runner.stats.verified == len(PEOPLE)

    async def test_killed_before_commit(self, world: World) -> None:
        """Killed after the ledger write, before the commit: the batch is a no-op."""
        for person in PEOPLE[:4]:
            world.registrar(person, BSC5102="A", MAT2001="A")

        def die_after_outcomes(rows: Sequence[tuple[bytes, bytes | None]]) -> None:
            if any(b'"uncertain":false' in (value or b"") for _, value in rows):
                raise Killed

        world.ledger_table.after_put = die_after_outcomes
        with pytest.raises(Killed):
            await world.consume()
        world.ledger_table.after_put = lambda rows: None
        runner = await world.consume()
        assert runner.stats.applied.total() == 0
        assert [world.welcomes(p) for p in PEOPLE[:4]] == [2] * 4


class TestDropsNeverWelcome:
    """A drop, and a re-add after it, never send "Welcome to <course>"."""

    @pytest.mark.parametrize(
        ("drop_action", "dropped", "welcomes"),
        [
            ("remove_role", "no role", 1),
            ("unenrol", "absent", 2),
            ("suspend", "suspended", 1),  # through the companion plugin
        ],
    )
    async def test_add_drop_readd_drop(
        self, tmp_path: Path, drop_action: DropAction, dropped: str, welcomes: int
    ) -> None:
        """Only new enrolments welcome: once, or again after an unenrol removed it."""
        world = World(tmp_path, policy(drop_action), companion=drop_action == "suspend")
        for status in ("A", "D", "A", "D"):
            world.registrar("P000000001", BSC5102=status)
            await world.consume()
        assert world.holds("P000000001", "BSC5102") == dropped
        assert world.welcomes("P000000001") == welcomes


class TestNothingAcceptedSilently:
    """Item 8 of issue 8: what used to pass without a word now says so."""

    async def test_unknown_status_is_warned_and_counted(self, world: World) -> None:
        """An ADD_DROP_WAIT other than A, D, W: not enrolled, a warning, a count."""
        world.registrar("P000000001", BSC5102="A")
        await world.consume()
        world.registrar("P000000001", BSC5102="X")
        with capture_logs() as logs:
            runner = await world.consume()
        assert runner.stats.unknown_statuses == 1
        warned = [e for e in logs if e["event"] == "unknown_registration_status"]
        assert [e["add_drop_wait"] for e in warned] == [["X"]]
        assert world.holds("P000000001", "BSC5102") == "no role"

    async def test_until_idle_retries_parked_people_before_it_exits(
        self, world: World
    ) -> None:
        """A script running --until-idle enrols someone whose account appeared meanwhile."""
        world.registrar("P000000099", BSC5102="A")  # no Moodle account yet
        runner = await world.consume()
        assert len(runner.parked) == 1
        world.users["P000000099"] = world.state.add_user(
            "p000000099", idnumber="000000099", firstname="Late", lastname="Comer"
        )
        runner = await world.consume()
        assert len(runner.parked) == 0
        assert world.holds("P000000099", "BSC5102") == "active"


class HeldLagStream(MemoryStream):
    """A stream whose first lag sample waits until released (a broker holding the
    end-offsets request behind a fetch it holds)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.sampled = 0
        self.all_committed = asyncio.Event()

    async def lags(self) -> dict[int, int]:
        """The first sample waits for ``release``; the others answer."""
        self.sampled += 1
        if self.sampled == 1:
            await self.release.wait()
        return await super().lags()

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit; ``all_committed`` once every record is."""
        await super().commit(offsets)
        if self.committed == len(self.log):
            self.all_committed.set()


class TestTheLoopDoesNotWait:
    """Work between batches that waits on the broker does not hold up the batches."""

    async def test_batches_go_on_while_a_lag_sample_is_held(self, world: World) -> None:
        """The lag is sampled after the first batch; the second is applied while the
        sample still waits (a hang here means the loop waited for it)."""
        world.registrar("P000000001", BSC5102="A")
        world.registrar("P000000002", BSC5102="A")
        runner = await world.runner()
        held = HeldLagStream(log=world.stream.log, batch_sizes=(1,))
        runner.stream = world.member = held
        running = asyncio.create_task(
            runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=0)
        )
        # a guard against the hang (the loop waiting for the sample), not a timing
        await asyncio.wait_for(held.all_committed.wait(), timeout=10)
        assert world.holds("P000000002", "BSC5102") == "active"
        assert held.sampled >= 1
        assert not held.release.is_set()
        assert world.holds("P000000001", "BSC5102") == "active"
        held.release.set()
        await running
