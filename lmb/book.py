"""The LMB source's memory: every person's and group's current state, as on the state topic.

``Book`` is what the intake reads before it applies a message and updates only
once Kafka acknowledged the message's events and new records, so it always
equals the compacted state topic (``schemas/lmb.py``). It is loaded at start-up
from that topic (latest value per key wins: compaction may not have run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from schemas.lmb import GROUP_PREFIX, PERSON_PREFIX, LmbGroupRecord, LmbPersonRecord

Row = tuple[bytes, bytes]


@dataclass(slots=True)
class Book:
    """People and groups by sourcedid."""

    people: dict[str, LmbPersonRecord] = field(default_factory=dict)
    groups: dict[str, LmbGroupRecord] = field(default_factory=dict)

    def person(self, sourcedid: str) -> LmbPersonRecord | None:
        """The person's record, if any message about them was applied."""
        return self.people.get(sourcedid)

    def group(self, sourcedid: str) -> LmbGroupRecord | None:
        """The group's record, if any message about it was applied."""
        return self.groups.get(sourcedid)

    def update(
        self,
        people: Iterable[LmbPersonRecord],
        groups: Iterable[LmbGroupRecord],
    ) -> None:
        """Take the records a message changed (after Kafka acknowledged them)."""
        for person in people:
            self.people[person.people_code_id] = person
        for group in groups:
            self.groups[group.sourcedid] = group

    @classmethod
    def load(cls, table: Mapping[bytes, bytes]) -> tuple[Book, list[str]]:
        """The book from the state topic read as a table, and the keys it could not read."""
        book = cls()
        unreadable: list[str] = []
        for key, value in table.items():
            name = key.decode(errors="replace")
            try:
                if name.startswith(PERSON_PREFIX):
                    person = LmbPersonRecord.model_validate_json(value)
                    book.people[person.people_code_id] = person
                elif name.startswith(GROUP_PREFIX):
                    group = LmbGroupRecord.model_validate_json(value)
                    book.groups[group.sourcedid] = group
                else:
                    unreadable.append(name)
            except ValidationError:
                unreadable.append(name)
        return book, unreadable


def state_rows(
    people: Iterable[LmbPersonRecord], groups: Iterable[LmbGroupRecord]
) -> list[Row]:
    """The records as (key, value) rows of the compacted state topic."""
    rows = [
        (f"{PERSON_PREFIX}{p.people_code_id}".encode(), p.model_dump_json().encode())
        for p in people
    ]
    rows += [
        (f"{GROUP_PREFIX}{g.sourcedid}".encode(), g.model_dump_json().encode())
        for g in groups
    ]
    return rows
