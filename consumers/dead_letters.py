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

Which letters were redriven is recorded on the dead-letter topic itself
(``redriven_mark``), so a second redrive does not send them again. Pure: the
reads and writes are ``enrolstream.wiring.apply``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas.collation import collate
from schemas.dead_letter import DeadLetter
from schemas.events import EnrolmentEvent, parse_event

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from consumers.ports import RawMessage

__all__ = [
    "REDRIVEN_MARK",
    "RedriveCount",
    "count_redrive",
    "pending_letters",
    "plan_redrive",
    "redriven_mark",
]

REDRIVEN_MARK = b"enrolstream.redriven"

#: (PEOPLE_CODE_ID, academic year, academic term) as PowerCampus's collation
#: compares them (``schemas.collation``).
PersonTerm = tuple[str, str, str]
Record = tuple[bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class RedriveCount:
    """What a redrive did (or would do, on a dry run)."""

    letters: int
    """Dead letters redriven."""
    events: int
    """Records published to the event topic (one per person-term, one per invalid)."""


def pending_letters(records: Iterable[RawMessage]) -> list[tuple[str, DeadLetter]]:
    """The dead letters not redriven yet, with their position ``partition:offset``.

    ``records`` is the dead-letter topic as read now (its redrive marks included).
    """
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


def redriven_mark(positions: Iterable[str]) -> Record:
    """The record that marks these letters redriven (appended to the letters' topic)."""
    return (REDRIVEN_MARK, json.dumps({"positions": list(positions)}).encode())


def _parse_event(value: str | bytes | None) -> EnrolmentEvent | None:
    if value is None:
        return None
    try:
        return parse_event(value)
    except ValidationError:
        return None


def _person_term(event: EnrolmentEvent) -> PersonTerm:
    return event.person_term_key()


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
    people = {person_term[0] for person_term in newest}
    for record in sorted(events, key=lambda r: (r.partition, r.offset)):
        person = collate(record.key.decode(errors="replace")) if record.key else None
        if person not in people:  # parse only the letters' people's events
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


def count_redrive(letters: Sequence[DeadLetter]) -> int:
    """How many records ``plan_redrive`` returns for ``letters`` (for a dry run)."""
    return len(plan_redrive(letters, ()))
