"""Replay on the embedded stack: capture → broker → consumer → simulated Moodle.

The hard case is a Moodle restored from a backup: the ledger remembers
enrolments the restored Moodle lost, and replay must re-apply exactly those.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.kafka import read_topic
from connectors.kafka.groups import GroupOffsets
from consumers.replay.offsets import (
    FromBeginning,
    InvalidReplayOffsets,
    ReplayRefused,
    ReplayStart,
    Since,
    ToOffsets,
)
from enrolstream.cli.replay import summary_lines
from enrolstream.settings import (
    ConsumerSettings,
    KafkaSettings,
    MoodleSettings,
    Settings,
)
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.replay import ReplayReport, replay
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import EDITING_TEACHER
from sandbox.moodle_sim.state import MoodleState
from tests.integration.conftest import CaptureStack, registration, set_status

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "P000000001", "P000000002", "P000000003"
STUDENT = 5
WRITES = (
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_role_assign_roles",
    "core_role_unassign_roles",
)


class ReplayStack:
    """Capture, a simulated Moodle with three students and two courses, a consumer."""

    def __init__(self, capture: CaptureStack, sim: MoodleSimulator, tmp: Path) -> None:
        self.capture = capture
        self.sim = sim
        state = sim.state
        self.users = {
            person: state.add_user(f"u{person[-1]}", idnumber=person[1:])
            for person in (ALICE, BOB, CAROL)
        }
        self.bsc = state.add_course("BSC5102Winter2021")
        self.coun = state.add_course("COUN6552Winter2021")
        teacher = state.add_user("teacher", idnumber="T1")
        for course in (self.bsc, self.coun):  # a contact: welcome messages are sent
            state.enrol(course, teacher, EDITING_TEACHER)
        mapping = tmp / "mapping.json"
        mapping.write_text(
            json.dumps(
                {
                    "BSC5102Winter2021": {"courses": ["BSC5102"], "id": self.bsc},
                    "COUN6552Winter2021": {"courses": ["COUN6552"], "id": self.coun},
                }
            )
        )
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = str(capture.options["bootstrap_servers"])
        self.settings = Settings(
            kafka=KafkaSettings(
                events_topic=capture.topic,
                snapshot_topic=f"snap-{suffix}",
                ledger_topic=f"ledger-{suffix}",
                parked_topic=f"parked-{suffix}",
                dead_letter_topic=f"dlq-{suffix}",
                accounts_topic=f"accounts-{suffix}",
                created_topic=f"created-{suffix}",
                mappings_topic=f"mappings-{suffix}",
                request_timeout_s=30,
            ),
            moodle=MoodleSettings(url=sim.url, token=SecretStr(sim.token)),
            consumer=ConsumerSettings(
                mappings={"2021/Winter": mapping},
                group_id=f"apply-{suffix}",
                session_timeout_s=2.0,
            ),
        )
        self.options = {"bootstrap_servers": self.bootstrap, "request_timeout_ms": 4000}

    async def consume(self) -> None:
        """Run the consumer until idle, then stop it (it leaves the group)."""
        async with open_runner(self.settings, self.bootstrap) as runner:
            await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=200)

    async def replay(self, start: ReplayStart, **kwargs: Any) -> ReplayReport:
        """Replay on this stack's topics and group."""
        return await replay(self.settings, self.bootstrap, start, **kwargs)

    def moodle(self) -> dict[tuple[str, str], str]:
        """(person, course) → active / dropped (enrolled, without access)."""
        held: dict[tuple[str, str], str] = {}
        for person, userid in self.users.items():
            for name, course in (("BSC5102", self.bsc), ("COUN6552", self.coun)):
                enrolment = self.sim.state.enrolment(course, userid)
                if enrolment is not None:
                    active = self.sim.state.has_access(course, userid)
                    held[person, name] = "active" if active else "dropped"
        return held

    def writes(self) -> int:
        """Moodle write calls so far."""
        counts = self.sim.call_counts()
        return sum(counts[name] for name in WRITES)

    async def committed(self) -> dict[int, int | None]:
        """The group's committed offsets."""
        async with GroupOffsets(
            self.options, self.capture.topic, self.settings.consumer.group_id
        ) as offsets:
            return await offsets.committed()


@pytest.fixture(name="stack")
async def _stack(capture: CaptureStack, tmp_path: Path) -> AsyncIterator[ReplayStack]:
    """The stack after a first day: Alice in both courses, Bob in BSC5102."""
    async with MoodleSimulator(MoodleState()) as sim:
        stack = ReplayStack(capture, sim, tmp_path)
        capture.sql(
            registration(1, ALICE, "BSC5102"),
            registration(2, ALICE, "COUN6552"),
            registration(3, BOB, "BSC5102"),
        )
        await capture.poll()
        await stack.consume()
        yield stack


DAY_ONE = {
    (ALICE, "BSC5102"): "active",
    (ALICE, "COUN6552"): "active",
    (BOB, "BSC5102"): "active",
}
TRUTH = {**DAY_ONE, (BOB, "BSC5102"): "dropped", (CAROL, "BSC5102"): "active"}


async def restored_after_day_two(stack: ReplayStack) -> datetime:
    """Back up Moodle, apply day two (Carol added, Bob dropped), restore; returns T."""
    backup = stack.sim.state.snapshot()
    since = datetime.now(UTC)
    stack.capture.sql(registration(4, CAROL, "BSC5102"), set_status(3, "D"))
    await stack.capture.poll()
    await stack.consume()
    assert stack.moodle() == TRUTH
    stack.sim.state.restore(backup)
    assert stack.moodle() == DAY_ONE
    return since


class TestReplayAfterRestore:
    """Replay --since re-applies what a Moodle restored from a backup lost."""

    async def test_restored_moodle_is_repaired(self, stack: ReplayStack) -> None:
        """The ledger is corrected from the rosters, then replaying re-applies day two."""
        since = await restored_after_day_two(stack)
        report = await stack.replay(Since(since))
        assert report.ledger_check is not None
        corrected = {
            (c.after.userid, c.before.status, c.after.status)
            for c in report.ledger_check.corrections
        }
        assert corrected == {
            (stack.users[CAROL], "active", "unenrolled"),
            (stack.users[BOB], "role_removed", "active"),
        }
        assert report.events == 2
        assert report.notes == []
        await stack.consume()
        assert stack.moodle() == TRUTH

    @pytest.mark.parametrize("how", ["from-beginning", "to-offsets"])
    async def test_every_start_checks_the_ledger(
        self, stack: ReplayStack, how: str
    ) -> None:
        """--from-beginning and --to-offsets also correct the ledger, then re-apply."""
        # Where the consumer stood before day two (0: a partition it never read).
        before_day_two = {p: o or 0 for p, o in (await stack.committed()).items()}
        since = await restored_after_day_two(stack)
        start: ReplayStart = (
            FromBeginning() if how == "from-beginning" else ToOffsets(before_day_two)
        )
        report = await stack.replay(start)
        check = report.ledger_check
        assert check is not None
        if how == "from-beginning":
            assert (check.since_ms, check.examined) == (0, 4)
        else:  # the day-two records were published after T
            assert check.since_ms >= int(since.timestamp() * 1000)
            assert check.examined == 2
        assert {
            (c.after.userid, c.before.status, c.after.status) for c in check.corrections
        } == {
            (stack.users[CAROL], "active", "unenrolled"),
            (stack.users[BOB], "role_removed", "active"),
        }
        await stack.consume()
        assert stack.moodle() == TRUTH

    async def test_second_replay_changes_nothing(self, stack: ReplayStack) -> None:
        """Replaying the same window again makes no Moodle write and sends no welcome."""
        since = await restored_after_day_two(stack)
        await stack.replay(Since(since))
        await stack.consume()
        writes, welcomes = stack.writes(), len(stack.sim.state.notifications)
        again = await stack.replay(Since(since))
        await stack.consume()
        assert again.ledger_check is not None
        assert again.ledger_check.corrections == []
        assert again.events == 2
        assert (stack.writes(), len(stack.sim.state.notifications)) == (
            writes,
            welcomes,
        )
        assert stack.moodle() == TRUTH

    async def test_without_ledger_check_the_loss_stays(
        self, stack: ReplayStack
    ) -> None:
        """--no-verify-ledger replays against the stale ledger: nothing is re-applied."""
        since = await restored_after_day_two(stack)
        report = await stack.replay(Since(since), verify_ledger_first=False)
        await stack.consume()
        assert report.ledger_check is None
        assert stack.moodle() == DAY_ONE


class TestDryRun:
    """--dry-run shows the plan and leaves offsets, ledger and Moodle alone."""

    async def test_plan_only(self, stack: ReplayStack) -> None:
        """The plan lists Carol's enrol and Bob's drop; nothing is committed or written."""
        since = await restored_after_day_two(stack)
        committed = await stack.committed()
        ledger = await read_topic(stack.options, stack.settings.kafka.ledger_topic)
        writes = stack.writes()
        report = await stack.replay(Since(since), dry_run=True)
        assert report.plan is not None
        planned = {(p.action.kind, p.action.userid) for p in report.plan.actions}
        assert planned == {
            ("enrol", stack.users[CAROL]),
            ("remove_role", stack.users[BOB]),
        }
        lines = summary_lines(report)
        assert lines[0].startswith("DRY RUN")
        assert any("would correct 2" in line for line in lines)
        assert await stack.committed() == committed
        after = await read_topic(stack.options, stack.settings.kafka.ledger_topic)
        assert len(after) == len(ledger)
        assert stack.writes() == writes
        assert stack.moodle() == DAY_ONE


class TestReplayGuards:
    """Replay refuses to move a live group and offsets the topic does not have."""

    async def test_refused_while_a_member_is_live(self, stack: ReplayStack) -> None:
        """A running consumer is named in the refusal, and offsets stay where they were."""
        committed = await stack.committed()
        async with open_runner(stack.settings, stack.bootstrap) as runner:
            await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=200)
            with pytest.raises(
                ReplayRefused, match="stop `enrolstream consume`"
            ) as err:
                await stack.replay(FromBeginning())
        assert len(err.value.members) == 1
        assert err.value.members[0] in str(err.value)
        assert await stack.committed() == committed

    @pytest.mark.parametrize(
        ("offsets", "problem"),
        [
            ({99: 0}, "partition 99 does not exist"),
            ({0: 10_000}, "partition 0: offset 10000 is beyond the end"),
        ],
    )
    async def test_to_offsets_checked(
        self, stack: ReplayStack, offsets: dict[int, int], problem: str
    ) -> None:
        """An unknown partition or an offset past the end is refused, naming it."""
        committed = await stack.committed()
        with pytest.raises(InvalidReplayOffsets, match=problem):
            await stack.replay(ToOffsets(offsets))
        assert await stack.committed() == committed

    async def test_to_offsets_moves_only_listed(self, stack: ReplayStack) -> None:
        """Listed partitions move; replaying applied events again writes nothing."""
        committed = await stack.committed()
        busy = next(p for p, offset in committed.items() if offset)
        writes = stack.writes()
        report = await stack.replay(ToOffsets({busy: 0}))
        assert [(m.partition, m.target) for m in report.moves] == [(busy, 0)]
        assert (await stack.committed())[busy] == 0
        await stack.consume()
        assert await stack.committed() == committed
        assert stack.writes() == writes


def _teaches(person: str, course: str, section: str, share: int) -> str:
    return (
        "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
        "EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
        f"('2021', 'Winter', '01', '{course}', 'LEC', '{section}', '{person}', {share})"
    )


def _withdraws(person: str) -> str:
    return (
        "INSERT INTO ACADEMIC (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
        "ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION) VALUES "
        f"('{person}', '2021', 'Winter', '', '001', 'WITH')"
    )


class TestReplayWithInstructorsAndWithdrawals:
    """Replay decides instructors and term withdrawals with the consumer's rules."""

    def roles(self, stack: ReplayStack) -> dict[tuple[str, str], set[int]]:
        """(person, course) → the roles Moodle holds."""
        return {
            (person, name): set(stack.sim.state.roles_of(course, userid))
            for person, userid in stack.users.items()
            for name, course in (("BSC5102", stack.bsc), ("COUN6552", stack.coun))
            if stack.sim.state.roles_of(course, userid)
        }

    async def test_restored_moodle_converges_and_a_second_replay_is_idle(
        self, stack: ReplayStack
    ) -> None:
        """Day two (a new instructor, a withdrawal, a student who teaches) lost and re-applied."""
        backup = stack.sim.state.snapshot()
        since = datetime.now(UTC)
        stack.capture.sql(
            _teaches(CAROL, "COUN6552", "01", 100),
            _teaches(BOB, "BSC5102", "02", 0),
            _withdraws(ALICE),
        )
        await stack.capture.poll()
        await stack.consume()
        truth = {
            (BOB, "BSC5102"): {STUDENT, 4},
            (CAROL, "COUN6552"): {EDITING_TEACHER},
        }
        assert self.roles(stack) == truth
        stack.sim.state.restore(backup)
        await stack.replay(Since(since))
        await stack.consume()
        assert self.roles(stack) == truth
        writes, welcomes = stack.writes(), len(stack.sim.state.notifications)
        again = await stack.replay(Since(since))
        await stack.consume()
        assert again.ledger_check is not None
        assert again.ledger_check.corrections == []
        assert (stack.writes(), len(stack.sim.state.notifications)) == (
            writes,
            welcomes,
        )
        assert self.roles(stack) == truth
