"""Ports of the apply side: what the runner needs, as Protocols (fakes need no inheritance)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from consumers.identity import Resolution
from consumers.kafka import Partition, RawMessage
from consumers.moodle_batch import BatchResult, EnrolRow, UnenrolRow


class EventStream(Protocol):
    """The event topic as a consumer-group member sees it."""

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        """The next records per partition."""
        ...

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read, per partition."""
        ...

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Seek back to where an unfinished batch began."""
        ...

    def take_reassigned(self) -> bool:
        """True once after a rebalance changed this member's partitions."""
        ...

    def owns(self, key: bytes) -> bool:
        """Whether records with this key are on this member's partitions."""
        ...

    async def lag(self) -> int:
        """Records not yet read on the assigned partitions (-1: none assigned yet)."""
        ...


class MoodleGateway(Protocol):
    """The two write calls the runner makes (``consumers.moodle.MoodleClient``)."""

    async def enrol(self, rows: Sequence[EnrolRow]) -> BatchResult[EnrolRow]:
        """enrol_manual_enrol_users, bad rows isolated."""
        ...

    async def unenrol(self, rows: Sequence[UnenrolRow]) -> BatchResult[UnenrolRow]:
        """enrol_manual_unenrol_users, bad rows isolated."""
        ...


class Identities(Protocol):
    """PEOPLE_CODE_ID → Moodle user (``consumers.identity.IdentityResolver``)."""

    async def resolve(self, people_code_ids: Iterable[str]) -> dict[str, Resolution]:
        """A resolution for every id given."""
        ...

    def forget(self, people_code_id: str) -> None:
        """Drop the cached user id (Moodle said that user does not exist)."""
        ...


class RecordSink(Protocol):
    """Acknowledged appends of (key, value) records (the dead-letter topic)."""

    async def append(
        self, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> None:
        """Send and wait for the acknowledgements."""
        ...
