"""The capture stack for integration tests: sandbox → poller → real broker → reader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdc.poller import Poller, PollResult
from connectors.kafka import read_topic
from connectors.kafka.publisher import KafkaEventPublisher, ensure_topics
from connectors.local.checkpoint import SqliteCheckpointStore
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import EnrolmentEvent, TermKey

TERM = TermKey(academic_year="2021", academic_term="Winter")


def registration(
    row_id: int,
    person: str,
    course: str,
    section: str = "01",
    adw: str = "A",
    grade: str | None = None,
) -> str:
    """An INSERT of one TRANSCRIPTDETAIL row, as a registrar's system would write it."""
    final = "NULL" if grade is None else f"'{grade}'"
    return (
        "INSERT INTO TRANSCRIPTDETAIL (TranscriptDetailId, PEOPLE_CODE, PEOPLE_ID, "
        "PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, "
        "EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT, FINAL_GRADE) VALUES "
        f"({row_id}, 'P', '{person[1:]}', '{person}', '2021', 'Winter', '01', "
        f"'{course}', 'LEC', '{section}', '{adw}', {final})"
    )


def set_status(row_id: int, adw: str) -> str:
    """An UPDATE of ADD_DROP_WAIT on one row (a drop is an update A→D)."""
    return (
        f"UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = '{adw}' "
        f"WHERE TranscriptDetailId = {row_id}"
    )


def delete(row_id: int) -> str:
    """A DELETE of one row (a registration removed)."""
    return f"DELETE FROM TRANSCRIPTDETAIL WHERE TranscriptDetailId = {row_id}"


class CaptureStack:
    """A sandbox, a poller publishing to a fresh topic, and a reader of that topic."""

    def __init__(self, tmp_path: Path, bootstrap_servers: str, topic: str) -> None:
        self.path = tmp_path / "powercampus.sqlite"
        self.state_path = tmp_path / "poller.sqlite"
        self.options = {
            "bootstrap_servers": bootstrap_servers,
            "request_timeout_ms": 3000,
        }
        self.topic = topic
        self.sandbox = PowerCampusSandbox(self.path)
        self.sandbox.create()
        self.source = SandboxChangeSource(self.path, name="pc")
        self.store = SqliteCheckpointStore(self.state_path, "pc")
        self.publisher = KafkaEventPublisher(self.options, topic, ack_timeout_s=4.0)

    def sql(self, *statements: str) -> int | None:
        """Run statements in one tracked transaction; the version it committed."""
        return self.sandbox.execute(";\n".join(statements))

    def poller(self) -> Poller:
        """A poller over this stack (a new one stands for a restarted process)."""
        return Poller(self.source, self.publisher, self.store, live_terms=[TERM])

    async def poll(self) -> PollResult:
        """One poller iteration."""
        return await self.poller().run_once()

    async def events(self) -> list[EnrolmentEvent]:
        """Everything on the topic so far, in partition order (per person: in order)."""
        records = await read_topic(self.options, self.topic)
        ordered = sorted(records, key=lambda r: (r.partition, r.offset))
        return [EnrolmentEvent.model_validate_json(r.value or b"") for r in ordered]

    async def changes(self) -> list[EnrolmentEvent]:
        """Only the change events (snapshot events left out)."""
        return [e for e in await self.events() if e.kind == "change"]


@pytest.fixture(name="capture")
async def _capture(
    tmp_path: Path, bootstrap_servers: str, topic: str
) -> AsyncIterator[CaptureStack]:
    """A started capture stack whose poller has initialised on an empty term."""
    stack = CaptureStack(tmp_path, bootstrap_servers, topic)
    await ensure_topics(stack.options, [topic], partitions=4, replication_factor=1)
    async with stack.publisher:
        await stack.poll()
        yield stack
    await stack.source.close()
    stack.store.close()
    stack.sandbox.close()
