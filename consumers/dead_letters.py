"""Reading and re-driving the dead-letter topic.

Redrive never re-publishes a superseded state. A dead letter holding a valid
``EnrolmentEvent`` is redriven as the *newest* event of the same person-term found
on the event topic (or the letter's own event when none is newer), turned into a
full-state event (``kind="snapshot"``, no ``change``): the consumer then re-decides
every course of the person-term from the state PowerCampus holds now. Replaying
the letter's own, older event instead could undo a later drop, and the ledger
cannot catch that: a rejected course has no ledger entry to be stale against.
Several letters of one person-term redrive one event. A letter whose value is
not a valid event (``InvalidEvent``) is re-published verbatim.

Which letters were redriven is recorded on the dead-letter topic itself, so a
second redrive does not send them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from consumers.kafka import KafkaRecordSink, read_topic
from enrolstream.kafka_options import client_options
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from consumers.kafka import RawMessage
    from enrolstream.settings import KafkaSettings

__all__ = [
    "REDRIVEN_MARK",
    "RedriveCount",
    "plan_redrive",
    "read_dead_letters",
    "redrive",
]

REDRIVEN_MARK = b"enrolstream.redriven"

#: (PEOPLE_CODE_ID, academic year, academic term), the term folded as SQL Server's
#: case-insensitive collation compares it.
PersonTerm = tuple[str, str, str]
Record = tuple[bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class RedriveCount:
    """What a redrive did (or would do, on a dry run)."""

    letters: int
    """Dead letters redriven."""
    events: int
    """Records published to the event topic (one per person-term, one per invalid)."""


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


def _parse_event(value: str | bytes | None) -> EnrolmentEvent | None:
    if value is None:
        return None
    try:
        return EnrolmentEvent.model_validate_json(value)
    except ValidationError:
        return None


def _person_term(event: EnrolmentEvent) -> PersonTerm:
    return (
        event.people_code_id,
        event.term.academic_year.strip().casefold(),
        event.term.academic_term.strip().casefold(),
    )


def plan_redrive(
    letters: Sequence[DeadLetter], events: Iterable[RawMessage]
) -> list[Record]:
    """The (key, value) records that redrive ``letters``, in the letters' order.

    ``events`` is the event topic as read now. For each person-term of the letters
    the newest event (highest ``state_version``; on a tie the later record) among
    the topic's records and the letters themselves is published once as a
    full-state event. Letters whose value is not a valid event come back verbatim.
    """
    slots: list[PersonTerm | DeadLetter] = []
    newest: dict[PersonTerm, EnrolmentEvent] = {}
    for letter in letters:
        event = _parse_event(letter.value)
        if event is None:
            slots.append(letter)
            continue
        person_term = _person_term(event)
        if person_term not in newest:
            slots.append(person_term)
            newest[person_term] = event
        elif event.state_version > newest[person_term].state_version:
            newest[person_term] = event
    people = {person_term[0].encode() for person_term in newest}
    for record in sorted(events, key=lambda r: (r.partition, r.offset)):
        if record.key not in people:  # parse only the letters' people's events
            continue
        event = _parse_event(record.value)
        if event is None:
            continue
        current = newest.get(_person_term(event))
        if current is not None and event.state_version >= current.state_version:
            newest[_person_term(event)] = event
    records: list[Record] = []
    for slot in slots:
        if isinstance(slot, DeadLetter):
            key = slot.key.encode() if slot.key else None
            records.append((key, slot.value.encode() if slot.value else None))
        else:
            full_state = newest[slot].model_copy(
                update={"kind": "snapshot", "change": None}
            )
            records.append(
                (full_state.kafka_key(), full_state.model_dump_json().encode())
            )
    return records


def _count_events(letters: Sequence[DeadLetter]) -> int:
    """How many records ``plan_redrive`` returns for ``letters`` (for a dry run)."""
    return len(plan_redrive(letters, ()))


async def redrive(
    kafka: KafkaSettings,
    bootstrap_servers: str,
    *,
    error_type: str | None = None,
    dry_run: bool = False,
) -> RedriveCount:
    """Re-queue the chosen dead letters as described in the module docstring.

    Letters without a value are never chosen. The event records are acknowledged
    before the letters are marked redriven: a failure in between redrives them
    again next time, which the consumer absorbs (a full-state event is idempotent).
    """
    options = client_options(kafka, bootstrap_servers)
    chosen = [
        (position, letter)
        for position, letter in await read_dead_letters(kafka, bootstrap_servers)
        if letter.value is not None
        and (error_type is None or letter.error_type == error_type)
    ]
    letters = [letter for _, letter in chosen]
    if dry_run or not chosen:
        return RedriveCount(letters=len(chosen), events=_count_events(letters))
    records = plan_redrive(letters, await read_topic(options, kafka.events_topic))
    async with KafkaRecordSink(options, kafka.events_topic) as events:
        await events.append(records)
    async with KafkaRecordSink(options, kafka.dead_letter_topic) as sink:
        await sink.append(
            [
                (
                    REDRIVEN_MARK,
                    json.dumps(
                        {"positions": [position for position, _ in chosen]}
                    ).encode(),
                )
            ]
        )
    return RedriveCount(letters=len(chosen), events=len(records))
