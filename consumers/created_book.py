"""The created book: section groups and course shells enrolstream created, durably.

Home: a compacted Kafka topic (``enrolstream.created``), keyed per object
(``schemas.created``), read whole at start-up like the ledger. Only what is in
the book is ever changed by enrolstream: members of groups it did not create
are never added or removed, and only courses it created hidden are shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from consumers.ledger import TableStore
from schemas.created import CREATED_ENTRY, CreatedGroup, CreatedShell

__all__ = ["CreatedBook"]

log = structlog.get_logger()


class CreatedBook:
    """In-memory view of the created topic, written through on every change."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._groups: dict[tuple[int, str], CreatedGroup] = {}
        self._shells: dict[str, CreatedShell] = {}

    async def load(self) -> int:
        """Read the whole topic; returns the number of records."""
        self._groups, self._shells = {}, {}
        for value in (await self._table.load()).values():
            self._remember(CREATED_ENTRY.validate_json(value))
        log.info(
            "created_book_loaded", groups=len(self._groups), shells=len(self._shells)
        )
        return len(self._groups) + len(self._shells)

    def _remember(self, entry: CreatedGroup | CreatedShell) -> None:
        if isinstance(entry, CreatedGroup):
            self._groups[(entry.courseid, entry.idnumber)] = entry
        else:
            self._shells[entry.idnumber] = entry

    def group(self, courseid: int, idnumber: str) -> CreatedGroup | None:
        """Our record of the course's group with that idnumber, if any."""
        return self._groups.get((courseid, idnumber))

    def group_ids(self, courseid: int) -> dict[str, int]:
        """idnumber -> Moodle group id of the course's groups of ours (settled ones)."""
        return {
            idnumber: entry.groupid
            for (course, idnumber), entry in self._groups.items()
            if course == courseid and entry.groupid is not None and not entry.uncertain
        }

    def ours(self, courseid: int) -> frozenset[int]:
        """The Moodle ids of the course's groups of ours."""
        return frozenset(self.group_ids(courseid).values())

    def groups(self) -> list[CreatedGroup]:
        """Every group record."""
        return list(self._groups.values())

    def shell(self, idnumber: str) -> CreatedShell | None:
        """Our record of the course shell with that idnumber, if any."""
        return self._shells.get(idnumber)

    def shells(self) -> list[CreatedShell]:
        """Every course shell record."""
        return list(self._shells.values())

    async def record(self, entries: Sequence[CreatedGroup | CreatedShell]) -> None:
        """Write records durably (acknowledged), then update the in-memory view."""
        if not entries:
            return
        await self._table.put(
            [(e.key(), e.model_dump_json().encode()) for e in entries]
        )
        for entry in entries:
            self._remember(entry)
