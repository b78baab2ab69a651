"""Apply end to end: each test ends with Moodle's rosters equal to PowerCampus's truth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consumers.ports import ActionOutcomes
from consumers.runner import ApplyRunner
from enrolstream.cli import root as cli
from sandbox.moodle_sim.faults import LatencyModel
from schemas.actions import MoodleAction
from schemas.events import EnrolmentEvent
from tests.integration.conftest import CaptureStack, delete, registration, set_status
from tests.integration.pipeline import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    EDITING_TEACHER,
    NO_ACCOUNT,
    STUDENT,
    open_pipeline,
    until,
)

pytestmark = pytest.mark.integration

WITHDRAW = "UPDATE TRANSCRIPTDETAIL SET FINAL_GRADE = 'W' WHERE TranscriptDetailId = {}"

# scenario: rounds; a round is transactions (each a tuple of statements) then one sync
SCENARIOS: dict[str, list[list[tuple[str, ...]]]] = {
    "enroll": [[(registration(1, ALICE, "BSC5102"),)]],
    "drop by update": [[(registration(1, ALICE, "BSC5102"),)], [(set_status(1, "D"),)]],
    "waitlist, then promoted": [
        [(registration(1, ALICE, "BSC5102", adw="W"),)],
        [(set_status(1, "A"),)],
    ],
    "delete row": [
        [(registration(1, ALICE, "BSC5102"), registration(2, ALICE, "COUN6552", "02"))],
        [(delete(1),)],
    ],
    "A->D->A inside one interval": [
        [(registration(1, ALICE, "BSC5102"),)],
        [(set_status(1, "D"),), (set_status(1, "A"),)],
    ],
    "insert then delete inside one interval": [
        [
            (registration(1, ALICE, "BSC5102"),),
            (delete(1),),
            (registration(2, BOB, "BSC5102"),),
        ]
    ],
    "cross-list swap in one transaction": [
        [(registration(1, ALICE, "COUN6552", "02"),)],
        [(set_status(1, "D"), registration(2, ALICE, "COUN8552", "02"))],
    ],
    "withdrawal grade": [
        [(registration(1, ALICE, "BSC5102"),)],
        [(WITHDRAW.format(1),)],
    ],
    "another section of a section-mapped course": [
        [
            (
                registration(1, ALICE, "COUN6552", "01"),
                registration(2, BOB, "COUN6552", "02"),
            )
        ]
    ],
}


class TestScenarios:
    """Every capture scenario lands in Moodle as PowerCampus says it should."""

    @pytest.mark.parametrize("scenario", list(SCENARIOS))
    async def test_rosters_match_powercampus(
        self, scenario: str, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """After each round of changes, Moodle's active rosters equal PowerCampus's truth."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            for round_ in SCENARIOS[scenario]:
                for transaction in round_:
                    capture.sql(*transaction)
                await pipe.sync(runner)
                assert pipe.moodle() == pipe.truth()
            assert runner.stats.dead_lettered == 0

    async def test_drop_removes_the_role_and_keeps_the_enrolment(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A drop takes the role away (grades survive), never through enrol_users."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(registration(1, ALICE, "BSC5102"))
            await pipe.sync(runner)
            enrol_calls = pipe.sim.call_counts()["enrol_manual_enrol_users"]
            capture.sql(set_status(1, "D"))
            await pipe.sync(runner)
            [view] = pipe.sim.state.enrolments(pipe.course("BSC5102"))
            assert (view.userid, view.status, view.roleids) == (
                pipe.userid(ALICE),
                0,
                (),
            )
            assert pipe.sim.call_counts()["enrol_manual_enrol_users"] == enrol_calls
            assert pipe.sim.call_counts()["core_role_unassign_roles"] == 1

    async def test_cross_list_swap_never_unenrols(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A swap between cross-listed courses makes no Moodle call at all: still enrolled."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(registration(1, ALICE, "COUN6552", "02"))
            await pipe.sync(runner)
            calls_before = len(pipe.sim.calls)
            capture.sql(set_status(1, "D"), registration(2, ALICE, "COUN8552", "02"))
            await pipe.sync(runner)
            writes = [
                c
                for c in pipe.sim.calls[calls_before:]
                if c.function.startswith(("enrol_", "core_role_"))
            ]
            assert writes == []
            assert runner.stats.dropped == 0
            assert pipe.userid(ALICE) in pipe.moodle()[pipe.course("COUN6552")]

    async def test_replayed_events_send_no_second_welcome(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Events seen again (a re-initialisation) make no Moodle call: no repeated welcome."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, ALICE, "BSC5102"), registration(2, BOB, "BSC5102")
            )
            await pipe.sync(runner)
            enrol_calls = pipe.sim.call_counts()["enrol_manual_enrol_users"]
            capture.sandbox.cleanup(retain_versions=0)
            capture.sql(registration(3, CAROL, "BSC5102"))
            await pipe.sync(runner)  # re-initialises: snapshot of everyone
            assert pipe.sim.call_counts()["enrol_manual_enrol_users"] == enrol_calls + 1
            assert pipe.moodle() == pipe.truth()


class Crash(Exception):
    """Raised where the consumer process dies."""


def die_after_moodle_enrols(runner: ApplyRunner) -> None:
    """The consumer process dies right after Moodle applied its enrolments."""
    real_apply = runner.moodle.apply

    async def apply_then_die(actions: Sequence[MoodleAction]) -> ActionOutcomes:
        await real_apply(actions)
        raise Crash

    runner.moodle.apply = apply_then_die  # type: ignore[method-assign]


class TestDelivery:
    """At least once, nothing skipped, nothing dropped."""

    async def test_killed_mid_batch_and_restarted(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Killed after Moodle applied, before the commit: the restart loses and doubles nothing."""
        people = tuple(f"P{n:09d}" for n in range(1, 41))
        async with open_pipeline(
            capture, tmp_path, people=people, max_input_vars=63
        ) as pipe:
            capture.sql(
                *(
                    registration(n, person, "BSC5102")
                    for n, person in enumerate(people, start=1)
                )
            )
            async with pipe.runner() as runner:
                die_after_moodle_enrols(runner)
                with pytest.raises(Crash):
                    await pipe.sync(runner)
            assert len(pipe.sim.state.enrolments(pipe.course("BSC5102"))) == 40
            async with pipe.runner() as restarted:
                await pipe.sync(restarted)
                # Read back, not resent: no student is welcomed twice.
                assert (restarted.stats.enrolled, restarted.stats.verified) == (0, 40)
            views = pipe.sim.state.enrolments(pipe.course("BSC5102"))
            assert sorted(v.userid for v in views) == sorted({v.userid for v in views})
            assert all(v.roleids == (STUDENT,) and v.status == 0 for v in views)
            assert pipe.moodle() == pipe.truth()

    async def test_killed_before_recording_then_dropped(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Moodle applied, the ledger not yet: a later drop still drops it (it is ours)."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(registration(1, ALICE, "BSC5102"))
            async with pipe.runner() as runner:
                die_after_moodle_enrols(runner)
                with pytest.raises(Crash):
                    await pipe.sync(runner)
            assert pipe.userid(ALICE) in pipe.moodle()[pipe.course("BSC5102")]
            capture.sql(set_status(1, "D"))
            async with pipe.runner() as restarted:
                await pipe.sync(restarted)
            assert pipe.moodle() == pipe.truth()
            [view] = pipe.sim.state.enrolments(pipe.course("BSC5102"))
            assert view.roleids == ()  # dropped, not left active and unowned

    async def test_moodle_503_and_timeouts_for_a_while(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Moodle failing with 503s and hanging requests: all caught up, nothing dead-lettered."""
        async with (
            open_pipeline(capture, tmp_path, request_timeout_s=0.5) as pipe,
            pipe.runner() as runner,
        ):
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, BOB, "COUN8552", "02"),
            )
            pipe.sim.faults.fail_next(3, status=503)
            pipe.sim.faults.hang_next(1, seconds=2)
            pipe.sim.faults.drop_next(1)
            await pipe.sync(runner)
            assert pipe.moodle() == pipe.truth()
            assert runner.stats.retries >= 1
            assert runner.stats.dead_lettered == 0
            assert await pipe.dead_letters() == []

    async def test_moodle_stopped_mid_burst_and_started_again(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Moodle's server stopped mid-burst, then started: the running consumer catches up.

        Requests in flight get the shutdown handler's ``Terminated: 15``, the next
        ones a refused connection; the consumer keeps retrying (no restart by
        hand), and once Moodle is back nothing is lost and nobody is welcomed twice.
        """
        people = tuple(f"P{n:09d}" for n in range(1, 61))
        async with open_pipeline(
            capture,
            tmp_path,
            people=people,
            max_input_vars=3 + 6 * 5,
            latency=LatencyModel.recorded(workers=2),  # a request takes ~70 ms
        ) as pipe:
            state, bsc = pipe.sim.state, pipe.course("BSC5102")
            teacher = state.add_user("teacher", firstname="T", lastname="Eacher")
            state.enrol(bsc, teacher, EDITING_TEACHER)  # the welcome sender
            capture.sql(
                *(registration(n, p, "BSC5102") for n, p in enumerate(people, 1))
            )
            await capture.poll()
            async with pipe.runner() as runner:
                stop = asyncio.Event()
                consuming = asyncio.create_task(runner.run(stop, poll_timeout_ms=100))
                await until(
                    lambda: pipe.sim.call_counts()["enrol_manual_enrol_users"] > 0
                )
                await pipe.sim.stop()
                await until(lambda: runner.stats.retries >= 2)
                await pipe.sim.start()
                await until(
                    lambda: (
                        {c: u - {teacher} for c, u in pipe.moodle().items()}
                        == pipe.truth()
                    )
                )
                stop.set()
                await consuming
            assert not consuming.exception()
            welcomed = [n.useridto for n in state.notifications]
            assert sorted(welcomed) == sorted({pipe.userid(p) for p in people})
            assert runner.stats.dead_lettered == 0

    async def test_one_bad_row_in_a_batch(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """The good rows land; the row Moodle rejects goes to the dead-letter topic."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, BOB, "NOMAN101"),
                registration(3, CAROL, "BSC5102"),
            )
            await pipe.sync(runner)
            assert pipe.moodle()[pipe.course("BSC5102")] == {
                pipe.userid(ALICE),
                pipe.userid(CAROL),
            }
            [letter] = await pipe.dead_letters()
            assert (letter.errorcode, letter.key) == ("wsnoinstance", BOB)
            redrivable = EnrolmentEvent.model_validate_json(letter.value or "")
            assert (redrivable.kind, redrivable.people_code_id) == ("snapshot", BOB)
            assert letter.action is not None
            assert letter.action["courseid"] == pipe.course("NOMANUAL101")

    async def test_dead_letters_listed_and_redriven(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """`dlq list` shows the rejection; after the fix `dlq redrive` gets it applied."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(registration(1, BOB, "NOMAN101"))
            await pipe.sync(runner)
            kafka = pipe.settings.kafka
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": pipe.bootstrap,
                "ENROLSTREAM_KAFKA__EVENTS_TOPIC": kafka.events_topic,
                "ENROLSTREAM_KAFKA__DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
            }
            listed = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["dlq", "list"], env=env
            )
            assert listed.exit_code == 0, listed.output
            assert "MoodleNoManualInstance" in listed.output
            assert BOB in listed.output
            course = pipe.course("NOMANUAL101")
            pipe.sim.state.set_manual_instance(course, "enabled")  # the admin's fix
            redriven = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["dlq", "redrive"], env=env
            )
            assert "re-queued 1 events" in redriven.output, redriven.output
            await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
            assert pipe.sim.state.is_active(course, pipe.userid(BOB))
            again = await asyncio.to_thread(
                CliRunner().invoke, cli.app, ["dlq", "redrive"], env=env
            )
            assert "re-queued 0 events" in again.output

    async def test_missing_moodle_user_enrolled_on_retry(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A student with no Moodle account is parked, then enrolled once the account exists."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, NO_ACCOUNT, "BSC5102"),
                registration(2, ALICE, "BSC5102"),
            )
            await pipe.sync(runner)
            assert len(runner.parked) == 1
            assert list(runner.parked.reasons().values()) == [1]
            pipe.sim.state.add_user("p000000009", idnumber=NO_ACCOUNT[1:])
            assert await runner.retry_parked() == 0
            assert pipe.userid(NO_ACCOUNT) in pipe.moodle()[pipe.course("BSC5102")]
            assert pipe.moodle() == pipe.truth()

    async def test_parked_person_decided_in_full_by_a_later_change(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A parked person whose next change arrives after the account exists gets every course."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(registration(1, NO_ACCOUNT, "BSC5102"))
            await pipe.sync(runner)
            assert len(runner.parked) == 1
            pipe.sim.state.add_user("p000000009", idnumber=NO_ACCOUNT[1:])
            # the account exists; before any parked retry, another change arrives
            capture.sql(registration(2, NO_ACCOUNT, "COUN8552", "02"))
            await pipe.sync(runner)
            assert len(runner.parked) == 0
            assert pipe.userid(NO_ACCOUNT) in pipe.moodle()[pipe.course("BSC5102")]
            assert pipe.moodle() == pipe.truth()

    async def test_parked_person_dropped_while_waiting(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A registration removed while its person waits for an account is not enrolled."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            capture.sql(
                registration(1, NO_ACCOUNT, "BSC5102"),
                registration(2, NO_ACCOUNT, "COUN8552", "02"),
            )
            await pipe.sync(runner)
            capture.sql(delete(1))
            await pipe.sync(runner)
            pipe.sim.state.add_user("p000000009", idnumber=NO_ACCOUNT[1:])
            assert await runner.retry_parked() == 0
            assert pipe.moodle() == pipe.truth()
            assert pipe.userid(NO_ACCOUNT) not in pipe.moodle()[pipe.course("BSC5102")]

    async def test_parked_survives_a_restart(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Parked persons are kept on their topic and retried by the next consumer process."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(registration(1, NO_ACCOUNT, "BSC5102"))
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            pipe.sim.state.add_user("p000000009", idnumber=NO_ACCOUNT[1:])
            async with pipe.runner() as restarted:
                assert len(restarted.parked) == 1
                await restarted.retry_parked()
            assert pipe.moodle() == pipe.truth()

    async def test_teachers_own_enrolment_is_left_alone(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A student a teacher enrolled by hand, unknown to PowerCampus, is never touched."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            course = pipe.course("BSC5102")
            guest, dropped = pipe.userid(DAVE), pipe.userid(CAROL)
            pipe.sim.state.enrol(course, guest, STUDENT)  # not in PowerCampus at all
            pipe.sim.state.enrol(course, dropped, STUDENT)  # dropped there, never ours
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, CAROL, "BSC5102", adw="D"),
            )
            await pipe.sync(runner)
            capture.sandbox.cleanup(retain_versions=0)
            capture.sql(set_status(1, "D"))
            await pipe.sync(runner)  # a re-initialisation: the whole term again
            for userid in (guest, dropped):
                assert pipe.sim.state.is_active(course, userid)
                assert pipe.sim.state.roles_of(course, userid) == {STUDENT}
            assert not pipe.sim.state.has_access(course, pipe.userid(ALICE))


class TestStartUp:
    """A malformed mapping stops the consumer before it reads anything."""

    def test_malformed_mapping_refuses_to_start(
        self, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """`enrolstream consume` exits 2 naming the file, the key and the problem."""
        bad = tmp_path / "mapping.json"
        bad.write_text(
            json.dumps({"BSC5102Winter2021": {"courses": "BSC5102", "id": 7}})
        )
        result = CliRunner().invoke(
            cli.app,
            ["consume", "--until-idle"],
            env={
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
                "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps({"2021/Winter": str(bad)}),
            },
        )
        assert result.exit_code == 2
        assert str(bad) in result.output
        assert "BSC5102Winter2021" in result.output
        assert "courses" in result.output
