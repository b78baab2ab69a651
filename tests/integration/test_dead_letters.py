"""`dlq redrive` on the embedded broker: letters come back as their newest state."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from connectors.kafka import KafkaRecordSink, read_topic
from connectors.kafka.options import client_options
from connectors.kafka.publisher import ensure_topics
from consumers.dead_letters import RedriveCount
from enrolstream.settings import KafkaSettings, Settings
from enrolstream.wiring.apply import read_dead_letters, redrive
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent
from tests.unit.test_dead_letters import ALICE, BOB, event, letter

pytestmark = pytest.mark.integration


@dataclass
class Topics:
    """An event topic and a dead-letter topic on the broker, and ways to fill them."""

    kafka: KafkaSettings
    bootstrap_servers: str

    @property
    def options(self) -> dict[str, object]:
        """Client options for the broker."""
        return client_options(self.kafka, self.bootstrap_servers)

    async def publish(self, *events: EnrolmentEvent) -> None:
        """Append events to the event topic, keyed by person."""
        async with KafkaRecordSink(self.options, self.kafka.events_topic) as sink:
            await sink.append(
                [(e.kafka_key(), e.model_dump_json().encode()) for e in events]
            )

    async def dead_letter(self, *letters: DeadLetter) -> None:
        """Append dead letters to the dead-letter topic."""
        async with KafkaRecordSink(self.options, self.kafka.dead_letter_topic) as sink:
            await sink.append(
                [
                    (
                        item.key.encode() if item.key else None,
                        item.model_dump_json().encode(),
                    )
                    for item in letters
                ]
            )

    async def events(self) -> dict[tuple[int, int], bytes]:
        """Every value on the event topic by its (partition, offset)."""
        records = await read_topic(self.options, self.kafka.events_topic)
        return {(r.partition, r.offset): r.value or b"" for r in records}

    async def published_since(
        self, before: dict[tuple[int, int], bytes]
    ) -> list[bytes]:
        """The values on the event topic that ``before`` (an ``events()``) lacks."""
        return [
            v for position, v in (await self.events()).items() if position not in before
        ]


@pytest.fixture(name="topics")
async def _topics(bootstrap_servers: str, topic: str) -> Topics:
    """A fresh event topic and dead-letter topic (4 partitions each)."""
    kafka = KafkaSettings(
        events_topic=topic, dead_letter_topic=f"dlq-{topic}", request_timeout_s=4
    )
    topics = Topics(kafka, bootstrap_servers)
    await ensure_topics(
        topics.options,
        [kafka.events_topic, kafka.dead_letter_topic],
        partitions=4,
        replication_factor=1,
    )
    return topics


class TestRedrive:
    """Redrive publishes the person-term's newest state, not the dead-lettered one."""

    async def test_newest_state_redriven_once(self, topics: Topics) -> None:
        """Two letters of v5 "enrol A", after v12 dropped A: one full-state v12 event."""
        enrol_a = event(ALICE, 5, {"BSC5102": "A"})
        drop_a = event(ALICE, 12, {"BSC5102": "D", "COUN6552": "A"})
        other_term = event(ALICE, 20, {"BSC5102": "A"}, term="Spring")
        other_person = event(BOB, 30, {"BSC5102": "A"})
        await topics.publish(enrol_a, drop_a, other_term, other_person)
        value = enrol_a.model_dump_json()
        await topics.dead_letter(letter(value), letter(value))
        before = await topics.events()

        count = await redrive(Settings(kafka=topics.kafka), topics.bootstrap_servers)

        assert count == RedriveCount(letters=2, events=1)
        [redriven] = await topics.published_since(before)
        assert EnrolmentEvent.model_validate_json(redriven) == drop_a.model_copy(
            update={"kind": "snapshot", "change": None}
        )
        assert (
            await read_dead_letters(
                Settings(kafka=topics.kafka), topics.bootstrap_servers
            )
            == []
        )

    async def test_invalid_event_redriven_verbatim(self, topics: Topics) -> None:
        """A letter that is not a valid event goes back as it was, beside the rest."""
        enrol_a = event(ALICE, 5, {"BSC5102": "A"})
        await topics.publish(enrol_a)
        await topics.dead_letter(
            letter("{not json", key=BOB, error_type="InvalidEvent"),
            letter(enrol_a.model_dump_json()),
        )
        before = await topics.events()

        dry = await redrive(
            Settings(kafka=topics.kafka), topics.bootstrap_servers, dry_run=True
        )
        assert dry == RedriveCount(letters=2, events=2)
        assert await topics.events() == before
        count = await redrive(Settings(kafka=topics.kafka), topics.bootstrap_servers)

        assert count == RedriveCount(letters=2, events=2)
        published = await topics.published_since(before)
        assert b"{not json" in published
        [full_state] = [
            EnrolmentEvent.model_validate_json(value)
            for value in published
            if value != b"{not json"
        ]
        assert (full_state.kind, full_state.change) == ("snapshot", None)
        assert full_state.state_version == 5

    async def test_second_redrive_sends_nothing(self, topics: Topics) -> None:
        """Redriven letters are marked on the dead-letter topic and not sent again."""
        enrol_a = event(ALICE, 5, {"BSC5102": "A"})
        await topics.publish(enrol_a)
        await topics.dead_letter(letter(enrol_a.model_dump_json()))
        await redrive(Settings(kafka=topics.kafka), topics.bootstrap_servers)
        after_first = await topics.events()

        again = await redrive(Settings(kafka=topics.kafka), topics.bootstrap_servers)

        assert again == RedriveCount(letters=0, events=0)
        assert await topics.events() == after_first
