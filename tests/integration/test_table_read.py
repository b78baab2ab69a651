"""A table read ends while another member keeps writing to the table's topic."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from connectors.kafka import KafkaRecordSink, read_topic
from connectors.kafka.options import client_options
from connectors.kafka.publisher import ensure_topics
from enrolstream.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_a_read_ends_with_everything_written_before_it_while_writes_go_on(
    bootstrap_servers: str, topic: str
) -> None:
    """A member reloads its ledger while another appends every few milliseconds.

    The read must end (a rebalance waits for it) and hold every record written
    before it began; it used to chase the other member's writes for as long as
    they came.
    """
    options = client_options(KafkaSettings(request_timeout_s=5), bootstrap_servers)
    await ensure_topics(options, [topic], partitions=4, replication_factor=1)
    before = [(f"person-{n}".encode(), f"entry-{n}".encode()) for n in range(400)]
    async with KafkaRecordSink(options, topic) as sink:
        await sink.append(before)

        writing = asyncio.Event()

        async def other_member() -> None:
            for n in range(100_000):
                await sink.append([(f"later-{n % 4}".encode(), b"x")])
                writing.set()
                await asyncio.sleep(0.01)  # its pace: a write every ~10 ms

        writer = asyncio.create_task(other_member())
        try:
            await writing.wait()  # the other member is writing when the read starts
            async with asyncio.timeout(30):
                records = await read_topic(options, topic)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    assert {(r.key, r.value) for r in records} >= set(before)
