"""In-memory stand-ins for the ports, for driving the loops without I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date

from cdc.errors import PublishFailed
from cdc.ports import ChangeBatch, ShadowLookup, Snapshot, TrackedTable
from consumers.errors import BrokerUnavailable
from consumers.ports import Partition, RawMessage
from schemas.events import EnrolmentEvent, TermKey


class RecordingPublisher:
    """An ``EventPublisher`` that keeps what it was given; can be told to fail."""

    def __init__(self) -> None:
        self.published: list[EnrolmentEvent] = []
        self.fail_next = 0
        self.on_publish: Callable[[], None] = lambda: None

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Record the events, or raise ``PublishFailed`` while ``fail_next`` > 0."""
        if self.fail_next:
            self.fail_next -= 1
            raise PublishFailed("broker unreachable (fake)")
        self.published.extend(events)
        self.on_publish()


class ScriptedChangeSource:
    """A ``ChangeSource`` that answers from a script of batches, snapshots and errors."""

    name = "fake"
    tables: tuple[TrackedTable, ...] = ("TRANSCRIPTDETAIL",)

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.batches: dict[int, ChangeBatch] = {}
        self.errors: list[Exception] = []
        self.fetched_from: list[int] = []

    async def fetch_since(
        self,
        last_version: int,
        shadow: ShadowLookup,
        *,
        live_terms: Sequence[TermKey] = (),
    ) -> ChangeBatch:
        """The scripted batch after ``last_version`` (an empty one if none), or an error."""
        self.fetched_from.append(last_version)
        if self.errors:
            raise self.errors.pop(0)
        scripted = self.batches.get(last_version)
        if scripted is None:
            return ChangeBatch(last_version, last_version, (), {})
        known = shadow.lookup(
            [change.transcript_detail_id for change in scripted.changes]
        )
        return replace(
            scripted,
            changes=[
                replace(change, shadow=known.get(change.transcript_detail_id))
                for change in scripted.changes
            ],
        )

    async def read_snapshot(self, terms: Sequence[TermKey]) -> Snapshot:
        """The scripted snapshot."""
        return self.snapshot

    async def live_terms(self, today: date) -> Sequence[TermKey]:
        """The snapshot's terms."""
        return self.snapshot.terms

    async def close(self) -> None:
        """Nothing to release."""


# -- the apply side ------------------------------------------------------------


def _ignore_rows(rows: Sequence[tuple[bytes, bytes | None]]) -> None:
    del rows


class MemoryTable:
    """A keyed table (``TableStore``) in a dict; ``put`` can be made to fail."""

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.writes: list[tuple[bytes, bytes | None]] = []
        self.fail_next = 0
        #: Called with each acknowledged write (a test may end the consumer there).
        self.after_put: Callable[[Sequence[tuple[bytes, bytes | None]]], None] = (
            _ignore_rows
        )

    async def load(self) -> dict[bytes, bytes]:
        """The latest value per key."""
        return dict(self.rows)

    async def put(self, rows: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Write rows (``None`` deletes), or raise ``BrokerUnavailable`` when told to."""
        if self.fail_next:
            self.fail_next -= 1
            raise BrokerUnavailable("ledger write not acknowledged (fake)")
        for key, value in rows:
            self.writes.append((key, value))
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value
        self.after_put(rows)


class MemorySink:
    """A ``RecordSink`` keeping what it was given."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    async def append(
        self, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> None:
        """Keep the records."""
        self.records.extend(records)


class MemoryStream:
    """An ``EventStream`` over one in-memory partition, read in scripted batch sizes.

    ``publish`` appends events; ``getmany`` returns the next ``batch_sizes`` records
    (cycling), ``commit`` moves the committed offset, ``rewind`` the position.
    A new ``MemoryStream(log=old.log, committed=old.committed)`` resumes where a
    killed consumer's group left off.
    """

    TOPIC = "events"

    def __init__(
        self,
        *,
        log: list[RawMessage] | None = None,
        committed: int = 0,
        batch_sizes: Sequence[int] = (100,),
    ) -> None:
        self.log: list[RawMessage] = log if log is not None else []
        self.committed = committed
        self.position = committed
        self.batch_sizes = list(batch_sizes)
        self._turn = 0

    def publish(self, *values: bytes | None, key: bytes = b"P1") -> None:
        """Append records to the partition."""
        for value in values:
            offset = len(self.log)
            self.log.append(RawMessage(self.TOPIC, 0, offset, key, value, offset))

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        """The next scripted batch (empty when everything was read)."""
        size = self.batch_sizes[self._turn % len(self.batch_sizes)]
        self._turn += 1
        batch = self.log[self.position : self.position + size]
        self.position += len(batch)
        return {(self.TOPIC, 0): batch} if batch else {}

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Record the next offset to read."""
        self.committed = offsets[(self.TOPIC, 0)]

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Read again from where the batch began."""
        self.position = offsets[(self.TOPIC, 0)]

    def take_reassigned(self) -> bool:
        """One member, never reassigned."""
        return False

    def assignment_epoch(self) -> int:
        """One member, never reassigned."""
        return 0

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """Nobody else to wait for."""
        yield

    def ensure_held(self, epoch: int) -> None:
        """The one partition is always held."""

    def owns(self, key: bytes) -> bool:
        """Every key is on the one partition."""
        return True

    async def lag(self) -> int:
        """Records not yet read."""
        return len(self.log) - self.position

    async def lags(self) -> dict[int, int]:
        """Records not yet read, on the one partition."""
        return {0: len(self.log) - self.position}
