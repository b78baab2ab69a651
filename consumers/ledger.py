"""The ownership ledger: every enrolment the consumer created or changed, durably.

Home: a compacted Kafka topic keyed ``courseid:userid``. Why Kafka rather than a
database: it is already the one durable store every enrolstream process shares
(poller, consumers, reconcile run on different hosts), it needs no second
system to operate or back up, and it is replayable. The whole ledger is read
into memory at start-up (tens of bytes per enrolment: a million enrolments is
well under 1 GB); readers take the latest value per key themselves.

The consumer never suspends or removes an enrolment without an owned entry
here, and skips a Moodle call when the entry shows Moodle already holds the
desired state (so replays are cheap and no second welcome message is sent).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import structlog

from schemas.actions import LedgerEntry

log = structlog.get_logger()


class TableStore(Protocol):
    """A keyed table (``connectors.kafka.KafkaTable`` or an in-memory fake)."""

    async def load(self) -> dict[bytes, bytes]:
        """The latest value per key."""
        ...

    async def put(self, rows: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Write rows; ``None`` deletes the key."""
        ...


def ledger_key(courseid: int, userid: int) -> bytes:
    """The ledger topic's key for one (course, user)."""
    return f"{courseid}:{userid}".encode()


class Ledger:
    """In-memory view of the ledger topic, written through on every change."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._entries: dict[tuple[int, int], LedgerEntry] = {}
        self._recheck: set[tuple[int, int]] = set()

    async def load(self) -> int:
        """Read the whole ledger topic; returns the number of entries."""
        rows = await self._table.load()
        self._entries = {}
        self._recheck = set()
        for value in rows.values():
            self._remember(LedgerEntry.model_validate_json(value))
        log.info("ledger_loaded", entries=len(self._entries))
        return len(self._entries)

    def awaiting_recheck(self) -> list[LedgerEntry]:
        """Entries to read Moodle for again (``recheck_at_ms`` set), any time."""
        return [self._entries[key] for key in self._recheck if key in self._entries]

    def get(self, courseid: int, userid: int) -> LedgerEntry | None:
        """What we last did to this (course, user), if anything."""
        return self._entries.get((courseid, userid))

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    async def record(self, entries: Sequence[LedgerEntry]) -> None:
        """Write entries durably (acknowledged), then update the in-memory view."""
        if not entries:
            return
        await self._table.put(
            [
                (ledger_key(e.courseid, e.userid), e.model_dump_json().encode())
                for e in entries
            ]
        )
        for entry in entries:
            self._remember(entry)

    def _remember(self, entry: LedgerEntry) -> None:
        key = (entry.courseid, entry.userid)
        self._entries[key] = entry
        if entry.recheck_at_ms is None:
            self._recheck.discard(key)
        else:
            self._recheck.add(key)

    async def forget(self, keys: Sequence[tuple[int, int]]) -> None:
        """Delete entries (the enrolment is no longer ours to manage)."""
        if not keys:
            return
        await self._table.put([(ledger_key(*key), None) for key in keys])
        for key in keys:
            self._entries.pop(key, None)
            self._recheck.discard(key)
