"""The whole pipeline for integration tests.

sandbox → poller → broker → consumer → Moodle simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from connectors.kafka import read_topic
from consumers.decisions import is_enrolled
from consumers.mapping import MappingSet, load_mappings
from consumers.runner import ApplyRunner
from enrolstream.settings import (
    AccountsSettings,
    ConsumerSettings,
    KafkaSettings,
    MoodleSettings,
    PollerSettings,
    Settings,
)
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.common import policy as policy_of
from operations.metrics import NO_METRICS, Metrics
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from schemas.dead_letter import DeadLetter
from schemas.events import Registration, SectionKey
from tests.integration.conftest import CaptureStack

STUDENT = 5
EDITING_TEACHER = 3
ALICE, BOB, CAROL, DAVE, ERIN = (f"P00000000{n}" for n in range(1, 6))
NO_ACCOUNT = "P000000009"
PEOPLE = (ALICE, BOB, CAROL, DAVE, ERIN)

#: Moodle shortname → (PowerCampus courses, section or None, manual instance)
COURSES: dict[str, tuple[list[str], str | None, str]] = {
    "BSC5102Winter2021": (["BSC5102"], None, "enabled"),
    "COUN6552COUN855202Winter2021": (["COUN6552", "COUN8552"], "02", "enabled"),
    "NOMANUAL101Winter2021": (["NOMAN101"], None, "absent"),
}


async def until(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    """Wait until ``condition()`` holds, checking often; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition is another task's state
            await asyncio.sleep(0.02)


class Pipeline:
    """A capture stack, a Moodle simulator with users and courses, and a consumer."""

    def __init__(
        self,
        capture: CaptureStack,
        sim: MoodleSimulator,
        settings: Settings,
        mapping: MappingSet,
        course_ids: dict[str, int],
    ) -> None:
        self.capture = capture
        self.sim = sim
        self.settings = settings
        self.mapping = mapping
        self.course_ids = course_ids
        self.policy = policy_of(settings)
        self.bootstrap = str(capture.options["bootstrap_servers"])

    def course(self, shortname_prefix: str) -> int:
        """The Moodle id of the course whose shortname starts with the prefix."""
        return next(
            cid
            for name, cid in self.course_ids.items()
            if name.startswith(shortname_prefix)
        )

    def userid(self, person: str) -> int:
        """The Moodle user carrying the person's idnumber (the P stripped)."""
        return next(u.id for u in self.sim.state.users() if u.idnumber == person[1:])

    @contextlib.asynccontextmanager
    async def runner(self, metrics: Metrics = NO_METRICS) -> AsyncIterator[ApplyRunner]:
        """A consumer process (a new one each time: stands for a restart)."""
        async with open_runner(
            self.settings, self.bootstrap, mapping=self.mapping, metrics=metrics
        ) as runner:
            yield runner

    async def sync(self, runner: ApplyRunner) -> None:
        """One poll, then consume until every published event is applied."""
        await self.capture.poll()
        await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)

    def truth(self) -> dict[int, set[int]]:
        """PowerCampus's answer: active Moodle users per mapped course (users that exist)."""
        rows = self.capture.sandbox.query(
            "SELECT TranscriptDetailId, PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, "
            "ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT, FINAL_GRADE "
            "FROM TRANSCRIPTDETAIL"
        )
        idnumbers = {u.idnumber: u.id for u in self.sim.state.users()}
        expected: dict[int, set[int]] = {cid: set() for cid in self.course_ids.values()}
        for row in rows:
            section = SectionKey(
                academic_year=row[2],
                academic_term=row[3],
                academic_session=row[4],
                event_id=row[5].rstrip(),
                event_sub_type=row[6],
                section=row[7],
            )
            registration = Registration(
                transcript_detail_id=row[0],
                section=section,
                add_drop_wait=row[8],
                final_grade=row[9],
            )
            userid = idnumbers.get(row[1][1:])
            if userid is None or not is_enrolled(registration, self.policy):
                continue
            for course in self.mapping.courses_for(section):
                expected[course.id].add(userid)
        return expected

    def moodle(self) -> dict[int, set[int]]:
        """What Moodle holds: who has access (active, with a role) per mapped course."""
        return {
            cid: {
                e.userid
                for e in self.sim.state.enrolments(cid)
                if self.sim.state.has_access(cid, e.userid)
            }
            for cid in self.course_ids.values()
        }

    async def dead_letters(self) -> list[DeadLetter]:
        """Everything on the dead-letter topic."""
        records = await read_topic(
            {"bootstrap_servers": self.bootstrap}, self.settings.kafka.dead_letter_topic
        )
        return [DeadLetter.model_validate_json(r.value or b"") for r in records]


def build_site(state: MoodleState, people: tuple[str, ...]) -> dict[str, int]:
    """Users for ``people`` (idnumber without the P) and the mapped courses."""
    for person in people:
        state.add_user(
            person.lower(), idnumber=person[1:], firstname="Student", lastname=person
        )
    return {
        name: state.add_course(name, manual=manual)  # type: ignore[arg-type]
        for name, (_, _, manual) in COURSES.items()
    }


def write_mapping(path: Path, course_ids: dict[str, int]) -> Path:
    """The term's mapping file in campus-enrollment-sync's format."""
    mapping: dict[str, dict[str, object]] = {}
    for name, (courses, section, _) in COURSES.items():
        entry: dict[str, object] = {"courses": courses, "id": course_ids[name]}
        if section is not None:
            entry["section"] = section
        mapping[name] = entry
    path.write_text(json.dumps(mapping, indent=2))
    return path


def pipeline_settings(
    tmp_path: Path,
    sim: MoodleSimulator,
    mapping_file: Path,
    events_topic: str,
    *,
    accounts: AccountsSettings | None = None,
    **moodle: Any,
) -> Settings:
    """Settings naming fresh topics, the simulator and the mapping file."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka=KafkaSettings(
            events_topic=events_topic,
            snapshot_topic=f"snap-{suffix}",
            ledger_topic=f"ledger-{suffix}",
            parked_topic=f"parked-{suffix}",
            dead_letter_topic=f"dlq-{suffix}",
            accounts_topic=f"accounts-{suffix}",
            created_topic=f"created-{suffix}",
            mappings_topic=f"mappings-{suffix}",
        ),
        moodle=MoodleSettings(
            url=sim.url, token=SecretStr(sim.token), max_backoff_s=0.5, **moodle
        ),
        consumer=ConsumerSettings(
            mappings={"2021/Winter": mapping_file},
            group_id=f"apply-{suffix}",
            parked_retry_s=3600,
            session_timeout_s=2.0,
        ),
        poller=PollerSettings(state_path=tmp_path / "poller.sqlite"),
        accounts=accounts or AccountsSettings(),
    )


@contextlib.asynccontextmanager
async def open_pipeline(
    capture: CaptureStack,
    tmp_path: Path,
    *,
    people: tuple[str, ...] = PEOPLE,
    latency: LatencyModel | None = None,
    accounts: AccountsSettings | None = None,
    **moodle: Any,
) -> AsyncIterator[Pipeline]:
    """A simulator with users and courses, the mapping file and consumer settings."""
    state = MoodleState()
    course_ids = build_site(state, people)
    async with MoodleSimulator(state, latency=latency) as sim:
        mapping_file = write_mapping(tmp_path / "mapping.json", course_ids)
        settings = pipeline_settings(
            tmp_path, sim, mapping_file, capture.topic, accounts=accounts, **moodle
        )
        mapping = load_mappings(settings.consumer.mappings)
        yield Pipeline(capture, sim, settings, mapping, course_ids)
