"""Reading and re-driving the dead-letter topic.

Redrive re-publishes the original event bytes to the event topic (keyed by the
person as before) and records which dead letters were redriven on the
dead-letter topic itself, so a second redrive does not send them again.
"""

from __future__ import annotations

import json

from consumers.kafka import KafkaRecordSink, read_topic
from enrolstream.kafka_options import client_options
from enrolstream.settings import KafkaSettings
from schemas.dead_letter import DeadLetter

REDRIVEN_MARK = b"enrolstream.redriven"


async def read_dead_letters(
    kafka: KafkaSettings, bootstrap_servers: str
) -> list[tuple[str, DeadLetter]]:
    """Dead letters not redriven yet, with their position ``partition:offset``."""
    records = await read_topic(
        client_options(kafka, bootstrap_servers), kafka.dead_letter_topic
    )
    redriven: set[str] = set()
    letters: list[tuple[str, DeadLetter]] = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.value is None:
            continue
        if record.key == REDRIVEN_MARK:
            redriven.update(json.loads(record.value)["positions"])
            continue
        letters.append(
            (
                f"{record.partition}:{record.offset}",
                DeadLetter.model_validate_json(record.value),
            )
        )
    return [
        (position, letter) for position, letter in letters if position not in redriven
    ]


async def redrive(
    kafka: KafkaSettings,
    bootstrap_servers: str,
    *,
    error_type: str | None = None,
    dry_run: bool = False,
) -> int:
    """Re-queue the original events of the chosen dead letters; returns how many."""
    options = client_options(kafka, bootstrap_servers)
    chosen = [
        (position, letter)
        for position, letter in await read_dead_letters(kafka, bootstrap_servers)
        if letter.value is not None
        and (error_type is None or letter.error_type == error_type)
    ]
    if dry_run or not chosen:
        return len(chosen)
    async with KafkaRecordSink(options, kafka.events_topic) as events:
        await events.append(
            [
                (
                    letter.key.encode() if letter.key else None,
                    letter.value.encode() if letter.value else None,
                )
                for _, letter in chosen
            ]
        )
    async with KafkaRecordSink(options, kafka.dead_letter_topic) as letters:
        await letters.append(
            [
                (
                    REDRIVEN_MARK,
                    json.dumps(
                        {"positions": [position for position, _ in chosen]}
                    ).encode(),
                )
            ]
        )
    return len(chosen)
