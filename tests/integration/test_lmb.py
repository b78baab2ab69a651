"""The LMB source on the embedded broker: restarts lose nothing; LMB's session lands in
Moodle; ``lmb snapshot`` lets reconcile check it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from connectors.kafka import read_topic
from connectors.kafka.lmb import load_lmb_state
from consumers.mapping import load_mappings
from enrolstream.cli import root as cli
from enrolstream.settings import (
    ConsumerSettings,
    KafkaSettings,
    LmbSettings,
    MoodleSettings,
    Settings,
)
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.lmb import (
    endpoint_options,
    ensure_lmb_topics,
    generate_mapping,
    open_lmb,
)
from enrolstream.wiring.reconcile import run_reconcile
from sandbox.lmb import messages as ims
from sandbox.lmb.client import LmbClient
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from schemas.events import EnrolmentEvent, parse_event
from schemas.snapshot import MARKER_KEY, SnapshotMarker

pytestmark = pytest.mark.integration

USER, PASSWORD = "lmb", "lmb-test-password"
TERM = "201510"
STUDENTS = ("B001", "B002", "B003")
TEACHER = "B009"
MATH, HIST = 2, 3  # the simulator's course ids (1 is the site)


def lmb_settings(tmp_path: Path, topic: str, **others: object) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka=KafkaSettings(
            events_topic=topic,
            snapshot_topic=f"snap-{suffix}",
            ledger_topic=f"ledger-{suffix}",
            parked_topic=f"parked-{suffix}",
            dead_letter_topic=f"dlq-{suffix}",
            accounts_topic=f"accounts-{suffix}",
        ),
        lmb=LmbSettings(
            port=0,
            username=USER,
            password=SecretStr(PASSWORD),
            message_log_dir=tmp_path / "lmb-log",
            state_topic=f"lmb-state-{suffix}",
            dead_letter_topic=f"lmb-dlq-{suffix}",
        ),
        **others,  # type: ignore[arg-type]
    )


async def latest_states(
    bootstrap: str, topic: str
) -> dict[tuple[str, str], EnrolmentEvent]:
    """The newest event per (person, term) on the event topic."""
    latest: dict[tuple[str, str], EnrolmentEvent] = {}
    for record in await read_topic({"bootstrap_servers": bootstrap}, topic):
        event = parse_event(record.value or b"")
        key = (event.people_code_id, event.term.label())
        if key not in latest or latest[key].state_version <= event.state_version:
            latest[key] = event
    return latest


def learners(event: EnrolmentEvent) -> dict[str, str]:
    return {r.section.event_id: r.add_drop_wait for r in event.registrations}


#: (message id, body) of a stream with adds, a drop, an inactive status and a delete.
STREAM = [
    (f"add-{person}-{crn}", ims.enterprise(ims.member(f"{crn}.{TERM}", person)))
    for person in STUDENTS
    for crn in ("14482", "14483")
] + [
    ("drop-B001", ims.enterprise(ims.member(f"14482.{TERM}", "B001", status=0))),
    ("delete-B002", ims.enterprise(ims.member(f"14483.{TERM}", "B002", delete=True))),
    ("readd-B001", ims.enterprise(ims.member(f"14482.{TERM}", "B001"))),
    ("drop-B003", ims.enterprise(ims.member(f"14483.{TERM}", "B003", status=0))),
]
EXPECTED = {
    "B001": {"14482": "A", "14483": "A"},
    "B002": {"14482": "A"},
    "B003": {"14482": "A", "14483": "D"},
}


class Killed(Exception):
    """The process dies at a crash point."""


class TestRestarts:
    """LMB retries until answered, and answers wait for Kafka: a restart loses nothing."""

    async def test_endpoint_restart_mid_stream(
        self, tmp_path: Path, bootstrap_servers: str, topic: str
    ) -> None:
        """Half the stream, a restart (state reloaded from Kafka), the rest: every state right."""
        settings = lmb_settings(tmp_path, topic)
        await ensure_lmb_topics(settings, bootstrap_servers)
        options = endpoint_options(settings.lmb)
        half = len(STREAM) // 2
        for part in (STREAM[:half], STREAM[half:]):
            async with (
                open_lmb(settings, bootstrap_servers, options) as (endpoint, _),
                LmbClient(endpoint.url, USER, PASSWORD) as lmb,
            ):
                for message_id, body in part:
                    await lmb.send(body, message_id)
                # LMB repeats one message whose answer it lost: harmless
                assert (await lmb.send(*part[0][::-1])).startswith("duplicate")
        states = await latest_states(bootstrap_servers, topic)
        assert {p: learners(states[(p, "2015/10")]) for p in STUDENTS} == EXPECTED
        book, unreadable = await load_lmb_state(
            {"bootstrap_servers": bootstrap_servers}, settings.lmb.state_topic
        )
        assert unreadable == []
        assert {
            p: {m.crn: "A" if m.active else "D" for m in book.people[p].memberships}
            for p in STUDENTS
        } == EXPECTED

    async def test_crash_between_events_and_state(
        self, tmp_path: Path, bootstrap_servers: str, topic: str
    ) -> None:
        """Killed after the events, before the state: the retry republishes the same ids."""
        settings = lmb_settings(tmp_path, topic)
        await ensure_lmb_topics(settings, bootstrap_servers)
        options = endpoint_options(settings.lmb)
        body = ims.enterprise(ims.member(f"14482.{TERM}", "B001"))

        def crash(point: str) -> None:
            raise Killed(point)  # stands for the process dying there

        async with open_lmb(settings, bootstrap_servers, options) as (endpoint, intake):
            intake.crash_point = crash
            async with LmbClient(endpoint.url, USER, PASSWORD) as lmb:
                status, _ = await lmb.post(body, "m1")
                assert status == 500  # no answer LMB takes: it will send again
        async with (
            open_lmb(settings, bootstrap_servers, options) as (endpoint, intake),
            LmbClient(endpoint.url, USER, PASSWORD) as lmb,
        ):
            assert intake.book.person("B001") is None  # the state was not saved
            assert (await lmb.send(body, "m1")).startswith("applied")
        records = await read_topic({"bootstrap_servers": bootstrap_servers}, topic)
        ids = [parse_event(r.value or b"").event_id for r in records]
        assert len(ids) == 2
        assert len(set(ids)) == 1


@pytest.fixture(name="sim")
async def _sim() -> AsyncIterator[MoodleSimulator]:
    state = MoodleState()
    for person in (*STUDENTS, TEACHER):
        state.add_user(
            person.lower(), idnumber=person, firstname="Banner", lastname=person
        )
    assert state.add_course("MATH101-14482", idnumber=f"14482.{TERM}") == MATH
    assert state.add_course("HIST200-XLS", idnumber=f"XLSAA{TERM}") == HIST
    async with MoodleSimulator(state) as sim:
        yield sim


GROUPS = [
    ims.term(TERM, "Fall 2014"),
    ims.section("14482", TERM, "MATH-101-001"),
    ims.section("14483", TERM, "HIST-200-001"),
    ims.section("14484", TERM, "HIST-200-002"),
    ims.crosslist(f"XLSAA{TERM}", [f"14483.{TERM}", f"14484.{TERM}"]),
]
SESSION = [
    ims.person("B001", "Ada", "Lovelace", email="ada@example.edu", logon="alove"),
    ims.member(f"14482.{TERM}", "B001"),
    ims.member(f"14483.{TERM}", "B001"),
    ims.member(f"14482.{TERM}", "B002"),
    ims.member(f"14484.{TERM}", "B002"),
    ims.member(f"14483.{TERM}", "B003"),
    ims.member(f"14483.{TERM}", TEACHER, role="02"),
    ims.member(f"14482.{TERM}", "B001", status=0),  # inactive: dropped
    ims.member(f"14484.{TERM}", "B002", delete=True),  # deleted
    ims.member(f"14484.{TERM}", "B003"),  # cross-list swap: stays in
    ims.member(f"14483.{TERM}", "B003", delete=True),
]


async def session_in_moodle(
    tmp_path: Path, bootstrap_servers: str, topic: str, sim: MoodleSimulator
) -> Settings:
    """Groups make the mapping, the session is POSTed, the consumer applies it.

    Returns the settings (mapping file of term 2015/10 configured) it ran with.
    """
    suffix = uuid.uuid4().hex[:8]
    base = lmb_settings(
        tmp_path,
        topic,
        moodle=MoodleSettings(
            url=sim.url,
            token=SecretStr(sim.token),
            max_backoff_s=0.5,
            user_transform="none",
        ),
        consumer=ConsumerSettings(
            group_id=f"apply-{suffix}", parked_retry_s=3600, session_timeout_s=2.0
        ),
    )
    await ensure_lmb_topics(base, bootstrap_servers)
    options = endpoint_options(base.lmb)
    async with (
        open_lmb(base, bootstrap_servers, options) as (endpoint, _),
        LmbClient(endpoint.url, USER, PASSWORD) as lmb,
    ):
        for number, element in enumerate(GROUPS):
            await lmb.send(ims.enterprise(element), f"g{number}")
        entries, missing = await generate_mapping(base, bootstrap_servers, TERM)
        assert missing == []
        assert entries == {
            "HIST200-XLS": {"courses": ["14483", "14484"], "id": HIST},
            "MATH101-14482": {"courses": ["14482"], "id": MATH},
        }
        mapping_file = tmp_path / "mapping-201510.json"
        mapping_file.write_text(json.dumps(entries))
        consumer = base.consumer.model_copy(
            update={"mappings": {"2015/10": mapping_file}}
        )
        settings = base.model_copy(update={"consumer": consumer})
        for number, element in enumerate(SESSION):
            await lmb.send(ims.enterprise(element), f"s{number}")
    async with open_runner(
        settings, bootstrap_servers, mapping=load_mappings(consumer.mappings)
    ) as runner:
        await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
    return settings


class TestEndToEnd:
    """LMB POSTs → the LMB source → Kafka → the consumer → Moodle matches the memberships."""

    async def test_session_lands_in_moodle(
        self,
        tmp_path: Path,
        bootstrap_servers: str,
        topic: str,
        sim: MoodleSimulator,
    ) -> None:
        """Groups make the mapping; adds, a drop, an inactive status and a delete land."""
        await session_in_moodle(tmp_path, bootstrap_servers, topic, sim)
        state = sim.state
        users = {u.id: u.idnumber for u in state.users()}
        held = {
            course: sorted(
                users[e.userid]
                for e in state.enrolments(course)
                if state.has_access(course, e.userid)
            )
            for course in (MATH, HIST)
        }
        assert held == {MATH: ["B002"], HIST: ["B001", "B003", TEACHER]}
        teacher = next(i for i, n in users.items() if n == TEACHER)
        assert 3 in state.roles_of(HIST, teacher)


def cli_env(settings: Settings, bootstrap_servers: str) -> dict[str, str]:
    """The settings ``lmb snapshot`` needs, as the environment a CronJob gives it."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "ENROLSTREAM_KAFKA__SNAPSHOT_TOPIC": settings.kafka.snapshot_topic,
        "ENROLSTREAM_LMB__STATE_TOPIC": settings.lmb.state_topic,
        "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
            {k: str(v) for k, v in settings.consumer.mappings.items()}
        ),
        "ENROLSTREAM_LOG_FORMAT": "json",
    }


async def invoke(args: list[str], env: dict[str, str]) -> Result:
    """The CLI in a thread: it runs its own event loop; the simulator serves here."""
    return await asyncio.to_thread(CliRunner().invoke, cli.app, args, env=env)


class TestSnapshot:
    """``lmb snapshot`` makes reconcile work for a Banner site, unchanged."""

    async def test_reconcile_in_step_then_finds_a_hand_unenrolment(
        self,
        tmp_path: Path,
        bootstrap_servers: str,
        topic: str,
        sim: MoodleSimulator,
    ) -> None:
        """In step after the session: 0 differences; a student unenrolled by hand: re-enrol."""
        settings = await session_in_moodle(tmp_path, bootstrap_servers, topic, sim)
        env = cli_env(settings, bootstrap_servers)
        shown = await invoke(["lmb", "snapshot"], env)
        assert shown.exit_code == 0, shown.output
        # default terms: those the mappings name (2015/10 here, and the stock example's)
        assert "terms 2015/10" in shown.stdout
        assert "4 events, 4 persons, 4 registrations" in shown.stdout
        snapshot_id = shown.stdout.split()[1].rstrip(":")
        records = await read_topic(
            {"bootstrap_servers": bootstrap_servers}, settings.kafka.snapshot_topic
        )
        markers = [
            SnapshotMarker.model_validate_json(r.value or b"")
            for r in records
            if r.key == MARKER_KEY
        ]
        assert [(m.marker, m.snapshot_id) for m in markers] == [
            ("begin", snapshot_id),
            ("end", snapshot_id),
        ]
        assert markers[1].source == settings.lmb.source_name

        result = await run_reconcile(settings, bootstrap_servers)
        assert result.plan.snapshot_id == snapshot_id
        assert not result.blocked
        assert result.plan.changes == []
        assert result.plan.unowned == []
        assert result.plan.unresolved == []

        users = {u.idnumber: u.id for u in sim.state.users()}
        sim.state.unenrol(MATH, users["B002"])  # behind our back
        result = await run_reconcile(settings, bootstrap_servers)
        assert not result.applied
        assert [
            (c.course.shortname, c.userid, c.kind) for c in result.plan.changes
        ] == [("MATH101-14482", users["B002"], "enrol")]
        assert result.plan.unowned == []

    async def test_empty_state_is_one_line(
        self, tmp_path: Path, bootstrap_servers: str, topic: str
    ) -> None:
        """No state topic (or nothing on it): exit 1, one line, nothing published."""
        settings = lmb_settings(tmp_path, topic)
        shown = await invoke(["lmb", "snapshot"], cli_env(settings, bootstrap_servers))
        assert shown.exit_code == 1
        lines = shown.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("lmb snapshot failed: the LMB state topic holds no")
        records = await read_topic(
            {"bootstrap_servers": bootstrap_servers}, settings.kafka.snapshot_topic
        )
        assert records == []
