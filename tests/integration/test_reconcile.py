"""The nightly reconcile and ``ledger adopt`` on the embedded stack.

PowerCampus sandbox → consumer → Moodle simulator builds the ledger; then Moodle
drifts by hand, a snapshot is published (``cdc.snapshot.publish_snapshot``) and
the reconcile finds and fixes exactly the drift it owns.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cdc.snapshot import publish_snapshot
from connectors.kafka import read_topic
from connectors.kafka.publisher import (
    KafkaEventPublisher,
    KafkaSnapshotSink,
    ensure_topics,
)
from consumers.errors import LiveConsumerRefused
from consumers.reconcile.driver import ReconcileResult
from consumers.reconcile.driver import reconcile as reconcile_inputs
from enrolstream.cli import root as cli
from enrolstream.cli.reconcile import register
from enrolstream.settings import ReconcileSettings, Settings
from enrolstream.wiring.common import guard_limits, refuse_live_consumer
from enrolstream.wiring.reconcile import (
    open_session,
    run_adopt,
    run_reconcile,
    write_report,
)
from schemas.actions import LedgerEntry
from schemas.snapshot import SnapshotMarker
from tests.integration.conftest import TERM, CaptureStack, delete, registration
from tests.integration.pipeline import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    PEOPLE,
    STUDENT,
    Pipeline,
    open_pipeline,
)

pytestmark = pytest.mark.integration

FRANK, GINA = "P000000006", "P000000007"
TEACHER = 4
LENIENT = ReconcileSettings(max_drop_share_per_course=0.5, max_drop_share_overall=0.5)


async def publish(pipe: Pipeline) -> SnapshotMarker:
    """Publish a snapshot of the sandbox's term on the pipeline's snapshot topic."""
    options = pipe.capture.options
    topic = pipe.settings.kafka.snapshot_topic
    await ensure_topics(options, [topic], partitions=4, replication_factor=1)
    async with KafkaEventPublisher(options, topic, ack_timeout_s=4.0) as publisher:
        return await publish_snapshot(
            pipe.capture.source, KafkaSnapshotSink(publisher), terms=[TERM]
        )


def fingerprint(pipe: Pipeline) -> object:
    """Every manual enrolment (status, window, roles) and every message sent."""
    state = pipe.sim.state
    return (
        [state.enrolments(c.id) for c in state.courses()],
        len(state.notifications),
    )


async def reconcile(
    pipe: Pipeline,
    settings: Settings | None = None,
    *,
    apply: bool = False,
    force: bool = False,
) -> ReconcileResult:
    """One reconcile run against the pipeline's topics and simulator."""
    return await run_reconcile(
        settings or pipe.settings, pipe.bootstrap, apply=apply, force=force
    )


def kinds(result: ReconcileResult) -> dict[tuple[str, int], str]:
    """Planned change per (course shortname, Moodle user id)."""
    return {(c.course.shortname, c.userid): c.kind for c in result.plan.changes}


class TestDrift:
    """Hand-made drift in Moodle is found, reported and fixed where we own it."""

    async def test_drift_found_and_fixed(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Dry run changes nothing; apply converges; the next run plans nothing."""
        people = (*PEOPLE, FRANK, GINA)
        async with open_pipeline(capture, tmp_path, people=people) as pipe:
            settings = pipe.settings.model_copy(update={"reconcile": LENIENT})
            capture.sql(
                *(registration(n, p, "BSC5102") for n, p in enumerate(PEOPLE[:4], 1)),
                registration(5, ERIN, "COUN6552", "02"),
            )
            async with pipe.runner() as runner:
                await pipe.sync(runner)
                bsc, coun = pipe.course("BSC"), pipe.course("COUN")
                alice, bob, carol, dave, erin, frank, gina = (
                    pipe.userid(p) for p in people
                )
                state = pipe.sim.state
                state.unenrol(bsc, alice)  # unenrolled by hand
                state.enrol(bsc, bob, STUDENT, status=1)  # suspended by hand
                state.unenrol(bsc, carol)
                state.enrol(bsc, carol, TEACHER)  # role changed by hand
                state.enrol(bsc, frank, STUDENT)  # hand-made, but in our ledger
                await runner.ledger.record(
                    [
                        LedgerEntry(
                            courseid=bsc,
                            userid=frank,
                            roleid=STUDENT,
                            status="active",
                            event_id="adopted",
                            state_version=1,
                        )
                    ]
                )
                state.enrol(bsc, gina, STUDENT)  # hand-made, not ours
            # missed while the consumer was down: in PowerCampus only
            capture.sql(registration(6, DAVE, "COUN8552", "02"))
            await publish(pipe)

            before = fingerprint(pipe)
            dry = await reconcile(pipe, settings)
            assert fingerprint(pipe) == before
            expected = {
                ("BSC5102Winter2021", alice): "enrol",
                ("BSC5102Winter2021", bob): "reactivate",
                ("BSC5102Winter2021", carol): "restore_role",
                ("COUN6552COUN855202Winter2021", dave): "enrol",
                ("BSC5102Winter2021", frank): "remove_role",
            }
            assert kinds(dry) == expected
            assert set(dry.outcomes) == {"planned"}
            assert [(d.userid, d.course.id) for d in dry.plan.unowned] == [(gina, bsc)]
            assert dry.exit_code == 0

            applied = await reconcile(pipe, settings, apply=True)
            assert kinds(applied) == expected
            assert set(applied.outcomes) == {"applied"}
            for userid in (alice, bob, carol):
                assert state.is_active(bsc, userid)
            assert state.roles_of(bsc, carol) == {TEACHER, STUDENT}
            assert state.is_active(coun, dave)
            assert state.is_active(coun, erin)
            assert not state.has_access(bsc, frank)
            assert (
                state.enrolment(bsc, frank) is not None
            )  # role removed, not unenrolled
            assert state.roles_of(bsc, frank) == set()
            assert state.is_active(bsc, gina)  # not ours: left alone

            again = await reconcile(pipe, settings, apply=True)
            assert again.plan.changes == []
            assert [d.userid for d in again.plan.unowned] == [gina]

            written = write_report(tmp_path / "report", applied)
            assert [p.name for p in written] == [
                "actions.csv",
                "summary.json",
                "report.html",
            ]
            summary = json.loads(written[1].read_text())
            assert summary["totals"]["by_outcome"] == {"applied": 5}
            assert summary["unowned_differences"][0]["userid"] == gina


class TestGuard:
    """A source that lost a section trips the guard; an empty one cannot be forced."""

    async def test_lost_section(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """`reconcile --apply` exits 3 and applies nothing; `--force` applies."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(
                registration(1, ALICE, "COUN6552", "02"),
                registration(2, BOB, "COUN6552", "02"),
                registration(3, CAROL, "COUN8552", "02"),
                registration(4, DAVE, "BSC5102"),
                registration(5, ERIN, "BSC5102"),
            )
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            capture.sql(delete(1), delete(2), delete(3))  # the section vanished
            await publish(pipe)
            before = fingerprint(pipe)
            env = cli_env(pipe, bootstrap_servers, tmp_path)
            tripped = await invoke(["reconcile", "--apply"], env)
            assert tripped.exit_code == 3, tripped.output
            assert "GUARD course COUN6552COUN855202Winter2021" in tripped.output
            assert fingerprint(pipe) == before
            with (tmp_path / "reports" / "actions.csv").open() as handle:
                outcomes = [row["outcome"] for row in csv.DictReader(handle)]
            assert outcomes == ["skipped: guard"] * 3

            forced = await invoke(["reconcile", "--apply", "--force"], env)
            assert forced.exit_code == 0, forced.output
            coun = pipe.course("COUN")
            assert not any(
                pipe.sim.state.has_access(coun, pipe.userid(p))
                for p in (ALICE, BOB, CAROL)
            )

    async def test_empty_source_never_empties_moodle(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A snapshot with no registration at all is refused even with force."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(registration(1, ALICE, "BSC5102"))
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            capture.sql(delete(1))
            await publish(pipe)
            before = fingerprint(pipe)
            result = await reconcile(pipe, apply=True, force=True)
            assert [t.scope for t in result.plan.guard.trips] == [
                "course",
                "overall",
                "empty_term",
            ]
            assert result.exit_code == 3
            assert fingerprint(pipe) == before


async def invoke(args: list[str], env: dict[str, str]) -> Result:
    """Run the CLI in a thread: it runs its own event loop; the simulator serves here."""
    register_once()
    return await asyncio.to_thread(CliRunner().invoke, cli.app, args, env=env)


def register_once() -> None:
    """Add the reconcile commands to the root command (the lead wires them in main)."""
    if not any(c.name == "reconcile" for c in cli.app.registered_commands):
        register(cli.app)


def cli_env(pipe: Pipeline, bootstrap_servers: str, tmp_path: Path) -> dict[str, str]:
    """The pipeline's settings as the environment the CLI reads."""
    kafka, moodle = pipe.settings.kafka, pipe.settings.moodle
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "ENROLSTREAM_KAFKA__SNAPSHOT_TOPIC": kafka.snapshot_topic,
        "ENROLSTREAM_KAFKA__LEDGER_TOPIC": kafka.ledger_topic,
        "ENROLSTREAM_KAFKA__EVENTS_TOPIC": kafka.events_topic,
        "ENROLSTREAM_KAFKA__PARKED_TOPIC": kafka.parked_topic,
        "ENROLSTREAM_KAFKA__DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
        "ENROLSTREAM_CONSUMER__GROUP_ID": pipe.settings.consumer.group_id,
        "ENROLSTREAM_MOODLE__URL": moodle.url,
        "ENROLSTREAM_MOODLE__TOKEN": moodle.token.get_secret_value(),
        "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
            {k: str(v) for k, v in pipe.settings.consumer.mappings.items()}
        ),
        "ENROLSTREAM_RECONCILE__REPORT_DIR": str(tmp_path / "reports"),
        "ENROLSTREAM_LOG_FORMAT": "json",
    }


class TestAdopt:
    """Adopting an existing site makes the first reconcile plan only true differences."""

    async def test_adopt_then_reconcile(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Matching enrolments become owned; the reconcile enrols, reactivates, reports."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, BOB, "BSC5102"),
                registration(3, CAROL, "BSC5102"),
            )
            bsc = pipe.course("BSC")
            alice, bob, carol, dave = (
                pipe.userid(p) for p in (ALICE, BOB, CAROL, DAVE)
            )
            state = pipe.sim.state
            state.enrol(bsc, alice, STUDENT)
            state.enrol(bsc, bob, STUDENT, status=1)
            state.enrol(bsc, dave, STUDENT)  # Moodle only
            await publish(pipe)

            preview = await run_adopt(pipe.settings, pipe.bootstrap, dry_run=True)
            first = await reconcile(pipe)
            assert first.plan.changes[0].kind == "enrol"  # nothing owned yet
            assert len(first.plan.unowned) == 2  # bob suspended, dave Moodle-only

            plan = await run_adopt(pipe.settings, pipe.bootstrap)
            assert preview.entries == plan.entries
            assert [(e.userid, e.status) for e in plan.entries] == [
                (alice, "active"),
                (bob, "suspended"),
            ]
            assert [n.userid for n in plan.moodle_only] == [dave]
            assert [n.userid for n in plan.powercampus_only] == [carol]

            result = await reconcile(pipe)
            assert kinds(result) == {
                ("BSC5102Winter2021", bob): "reactivate",
                ("BSC5102Winter2021", carol): "enrol",
            }
            assert [d.userid for d in result.plan.unowned] == [dave]


async def ledger_records(pipe: Pipeline) -> int:
    """Records on the pipeline's ledger topic."""
    options = {"bootstrap_servers": pipe.bootstrap}
    return len(await read_topic(options, pipe.settings.kafka.ledger_topic))


class TestLiveConsumer:
    """`reconcile --apply` and `ledger adopt` refuse while `enrolstream consume` runs."""

    async def test_refused_while_a_member_is_live(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """Both name the live member and write nothing; dry runs still plan."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(
                registration(1, ALICE, "BSC5102"), registration(2, BOB, "BSC5102")
            )
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            bsc, alice = pipe.course("BSC"), pipe.userid(ALICE)
            pipe.sim.state.unenrol(bsc, alice)  # drift the reconcile would fix
            await publish(pipe)
            before, ledger = fingerprint(pipe), await ledger_records(pipe)
            env = cli_env(pipe, bootstrap_servers, tmp_path)
            async with pipe.runner() as runner:
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=200)
                with pytest.raises(
                    LiveConsumerRefused, match="stop `enrolstream consume` first"
                ) as err:
                    await reconcile(pipe, apply=True)
                assert len(err.value.members) == 1
                assert err.value.members[0] in str(err.value)
                assert "maintenance window" in str(err.value)
                with pytest.raises(LiveConsumerRefused, match="ledger adopt refused"):
                    await run_adopt(pipe.settings, pipe.bootstrap)
                refused = await invoke(["reconcile", "--apply"], env)
                assert refused.exit_code == 1, refused.output
                assert "stop `enrolstream consume` first" in refused.output
                dry = await reconcile(pipe)
                assert kinds(dry) == {("BSC5102Winter2021", alice): "enrol"}
                preview = await run_adopt(pipe.settings, pipe.bootstrap, dry_run=True)
                assert preview.already_owned == 1
                assert fingerprint(pipe) == before
                assert await ledger_records(pipe) == ledger
            applied = await reconcile(pipe, apply=True)
            assert set(applied.outcomes) == {"applied"}
            assert pipe.sim.state.is_active(bsc, alice)

    async def test_consumer_started_after_planning(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """A consumer that joins while the reconcile reads is caught before any write."""
        async with open_pipeline(capture, tmp_path) as pipe:
            capture.sql(registration(1, ALICE, "BSC5102"))
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            pipe.sim.state.unenrol(pipe.course("BSC"), pipe.userid(ALICE))
            await publish(pipe)
            before, ledger = fingerprint(pipe), await ledger_records(pipe)

            async def before_writing() -> None:
                await refuse_live_consumer(pipe.settings, pipe.bootstrap, "reconcile")

            # The session reads everything first; the consumer starts afterwards.
            async with (
                open_session(pipe.settings, pipe.bootstrap) as session,
                pipe.runner() as runner,
            ):
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=200)
                with pytest.raises(LiveConsumerRefused):
                    await reconcile_inputs(
                        session.inputs,
                        mapping=session.mapping,
                        policy=session.policy,
                        ledger=session.ledger,
                        limits=guard_limits(pipe.settings),
                        resolver=session.resolver,
                        moodle=session.moodle,
                        apply=True,
                        before_writing=before_writing,
                    )
            assert fingerprint(pipe) == before
            assert await ledger_records(pipe) == ledger


def _teaches(person: str, course: str, section: str = "01", share: int = 100) -> str:
    return (
        "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
        "EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
        f"('2021', 'Winter', '01', '{course}', 'LEC', '{section}', '{person}', {share})"
    )


def _standing(person: str, code: str) -> str:
    return (
        "INSERT INTO ACADEMIC (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
        f"ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION) VALUES ('{person}', "
        f"'2021', 'Winter', '', '001', '{code}') ON CONFLICT DO UPDATE SET "
        "ENROLL_SEPARATION = excluded.ENROLL_SEPARATION"
    )


class TestInstructorsAndWithdrawals:
    """The reconcile decides instructors and withdrawals as the consumer does, and says so."""

    async def test_missed_changes_converge_and_are_reported(
        self, capture: CaptureStack, tmp_path: Path
    ) -> None:
        """Missed while the consumer was down: applied once, reported, then nothing."""
        async with open_pipeline(capture, tmp_path) as pipe:
            # a person alone in a course withdraws: all the course's drops, on purpose
            everything = ReconcileSettings(
                max_drop_share_per_course=1.0, max_drop_share_overall=1.0
            )
            settings = pipe.settings.model_copy(update={"reconcile": everything})
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, ALICE, "COUN6552", "02"),
                registration(3, BOB, "BSC5102"),
                _teaches(DAVE, "BSC5102"),
                _standing(ALICE, "ENRL"),
            )
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            bsc, coun = pipe.course("BSC"), pipe.course("COUN")
            state = pipe.sim.state
            dave, erin, alice = (pipe.userid(p) for p in (DAVE, ERIN, ALICE))
            assert state.roles_of(bsc, dave) == {3}
            # missed while the consumer was down
            capture.sql(
                _teaches(ERIN, "COUN6552", "02"),
                _standing(ALICE, "WITH"),
                f"UPDATE SECTIONPER SET PERCENTAGE = 0 WHERE PERSON_CODE_ID = '{DAVE}'",
            )
            await publish(pipe)

            applied = await reconcile(pipe, settings, apply=True)
            assert kinds(applied) == {
                ("BSC5102Winter2021", dave): "change_role",
                ("COUN6552COUN855202Winter2021", erin): "enrol",
                ("BSC5102Winter2021", alice): "remove_role",
                ("COUN6552COUN855202Winter2021", alice): "remove_role",
            }
            assert set(applied.outcomes) == {"applied"}
            assert state.roles_of(bsc, dave) == {TEACHER}  # exactly one role
            assert state.roles_of(coun, erin) == {3}
            assert not state.has_access(bsc, alice)
            assert not state.has_access(coun, alice)
            summary = json.loads(write_report(tmp_path / "r", applied)[1].read_text())
            assert summary["totals"]["instructor_changes"] == 2
            assert summary["totals"]["term_withdrawals"] == 2
            text = (tmp_path / "r" / "actions.csv").read_text().splitlines()
            rows = list(csv.DictReader(text))
            about = {
                (r["user_idnumber"], r["about"], r["term_withdrawal"]) for r in rows
            }
            assert (ALICE[1:], "student", "yes") in about
            assert (ERIN[1:], "instructor", "") in about

            again = await reconcile(pipe, settings, apply=True)
            assert again.plan.changes == []
