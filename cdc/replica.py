"""The poller's state kept in Kafka, behind a lease: ports, the replica, the catch-up.

The local checkpoint store (``CheckpointStore``) stays the poller's working
copy: lookups come from it, inside the source's transaction. ``StateReplica``
writes every change of it to a compacted state topic (``StateLog``) first,
each write preceded by ``Lease.confirm()``: a poller that lost its lease is
refused there (``LeaseLost``) and writes nothing more. On taking the lease a
poller ``catch_up``\\ s: it reads the state topic from where its local copy last
read (from the beginning on a machine with no local file) and applies it, so
a poller started anywhere resumes from the last version whose events were
acknowledged, with the shadow map that goes with it.

Order of one iteration (the old staging table's guarantee, made durable):
shadow records before the events, the checkpoint after their acks. A crash
anywhere republishes at most the batch in flight, with the same event ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from cdc.ports import CheckpointStore, RowOwner, ShadowEntry, TrackedTable
from cdc.state_records import (
    Checkpoint,
    StateChanges,
    StateRecord,
    StateRecordInvalid,
    commit_records,
    fold_records,
    shadow_records,
    sync_record,
)

log = structlog.get_logger()


#: The state topic's first record: its identity, written once, never compacted.
TOPIC_ID_KEY = b"enrolstream/state-topic-id"


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A state record with its offset in the state topic."""

    offset: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ReplicaPosition:
    """How far the local copy has read which state topic: the next offset to read.

    ``topic_id`` tells a recreated topic (or another cluster's) from the one
    read before, where offsets mean nothing.
    """

    topic_id: str
    offset: int


class Lease(Protocol):
    """The right to be the one active poller, checked by the broker."""

    @property
    def epoch(self) -> int:
        """This holding's number, higher than every earlier holding's."""
        ...

    async def confirm(self) -> None:
        """Return only if the lease is still held now; else raise ``LeaseLost``."""
        ...


class StateLog(Protocol):
    """The state topic: acknowledged appends and reads to the end."""

    async def append(self, records: Sequence[StateRecord], *, epoch: int) -> None:
        """Write the records in order; return once all are acknowledged (``PublishFailed``)."""
        ...

    async def read_until(self, offset: int, marker: StateRecord) -> list[LoggedRecord]:
        """Every record from ``offset`` up to and including ``marker``, in offset order.

        The caller wrote ``marker`` just before: reading until it comes is
        reading to the end, whatever end offset the broker reports.
        """
        ...

    async def first(self) -> LoggedRecord | None:
        """The topic's first record (None: the topic is empty)."""
        ...


class ReplicaCache(CheckpointStore, Protocol):
    """The local checkpoint store, seen as a copy of the state topic."""

    def replica_position(self) -> ReplicaPosition | None:
        """Where the last catch-up stopped (None: never caught up from the topic)."""
        ...

    def apply_replica(
        self, changes: StateChanges, position: ReplicaPosition | None
    ) -> None:
        """Apply what the topic said and remember the position, in one transaction."""
        ...

    def reset(self) -> None:
        """Forget this source's state (the topic is the truth and holds less)."""
        ...

    def all_entries(self) -> list[ShadowEntry]:
        """Every shadow entry (staged ones included)."""
        ...

    def all_owners(self) -> list[RowOwner]:
        """Every person-table row owner."""
        ...

    def newest_change_at(self) -> datetime | None:
        """The newest change's commit time saved with the checkpoint."""
        ...


class StateReplica:
    """Writes the poller's state changes to the state topic while the lease holds."""

    def __init__(self, state_log: StateLog, lease: Lease, source: str) -> None:
        self.state_log = state_log
        self.lease = lease
        self.source = source
        self._saved: int | None = None
        #: The shadow entries the last ``stage`` wrote (this iteration's).
        self._staged: set[ShadowEntry] = set()

    async def confirm(self) -> None:
        """``LeaseLost`` unless the lease still holds (checked by the broker)."""
        await self.lease.confirm()

    async def stage(self, upserts: Sequence[ShadowEntry]) -> None:
        """Record where rows are about to be published (before their events)."""
        self._staged = set()
        if upserts:
            await self._write(shadow_records(self.source, upserts))
            self._staged = set(upserts)

    async def commit(
        self,
        version: int,
        upserts: Sequence[ShadowEntry],
        deletes: Sequence[int],
        *,
        newest_change_at: datetime | None = None,
        owners: Sequence[RowOwner] = (),
        owners_gone: Sequence[tuple[TrackedTable, str]] = (),
    ) -> None:
        """Record an iteration whose events were acknowledged; the checkpoint last.

        An iteration that changed nothing but the version is not written when
        the version did not move (an idle source). A shadow entry this
        iteration's ``stage`` wrote is not written again: the topic already
        holds its record, before this commit's, as the commit would write it.
        """
        if not (upserts or deletes or owners or owners_gone) and version == self._saved:
            await self.confirm()
            return
        staged, self._staged = self._staged, set()
        records = commit_records(
            self.source,
            Checkpoint(version, newest_change_at),
            [entry for entry in upserts if entry not in staged],
            deletes,
            owners=owners,
            owners_gone=owners_gone,
        )
        await self._write(records)
        self._saved = version

    async def _write(self, records: list[StateRecord]) -> None:
        await self.lease.confirm()
        await self.state_log.append(records, epoch=self.lease.epoch)


async def catch_up(
    cache: ReplicaCache, state_log: StateLog, replica: StateReplica
) -> StateChanges:
    """Bring the local copy up to the state topic (the lease is held).

    A local copy of another state topic (recreated, or another cluster's), or
    one that read past the topic's end, is dropped and rebuilt from the
    beginning. A local file that never read the topic while the topic holds
    nothing of this source (the first start after an upgrade) is written to the
    topic instead, so the state it holds is not lost.
    """
    topic_id = await _topic_id(state_log, replica)
    position = cache.replica_position()
    if position is not None and position.topic_id != topic_id:
        log.warning(
            "poller_state_cache_dropped",
            reason="this local copy was read from another state topic (recreated, "
            "or another cluster's): rebuilt from the topic",
        )
        cache.reset()
        position = None
    start = 0 if position is None else position.offset
    records = await _read_to_end(state_log, replica, start)
    changes = fold_records(
        replica.source, ((record.key, record.value) for record in records)
    )
    version = cache.load_version()
    if position is None and changes.empty and version is not None:
        await _export(cache, replica, version)
        records = await _read_to_end(state_log, replica, start)
        changes = StateChanges()
    end = records[-1].offset + 1 if records else start
    cache.apply_replica(changes, ReplicaPosition(topic_id, end))
    log.info(
        "poller_state_caught_up",
        records=changes.records,
        version=cache.load_version(),
        from_offset=start,
        to_offset=end,
    )
    return changes


async def _read_to_end(
    state_log: StateLog, replica: StateReplica, start: int
) -> list[LoggedRecord]:
    """Everything from ``start`` up to a marker written now (read-your-write barrier)."""
    marker = sync_record(replica.source, uuid.uuid4().hex)
    await replica.lease.confirm()
    await state_log.append([marker], epoch=replica.lease.epoch)
    return await state_log.read_until(start, marker)


async def _topic_id(state_log: StateLog, replica: StateReplica) -> str:
    """The state topic's identity, written first by the first lease holder."""
    first = await state_log.first()
    if first is None:
        await replica.lease.confirm()
        await state_log.append(
            [(TOPIC_ID_KEY, uuid.uuid4().hex.encode())], epoch=replica.lease.epoch
        )
        first = await state_log.first()
    if first is None or first.key != TOPIC_ID_KEY or not first.value:
        raise StateRecordInvalid(
            "the state topic's first record is not its identity: is "
            "kafka.poller_state_topic another application's topic?"
        )
    return first.value.decode()


async def _export(cache: ReplicaCache, replica: StateReplica, version: int) -> None:
    entries = cache.all_entries()
    log.warning(
        "poller_state_exported",
        reason="the state topic holds nothing of this source yet: writing this "
        "host's local state to it",
        version=version,
        shadow_entries=len(entries),
    )
    await replica.commit(
        version,
        entries,
        [],
        newest_change_at=cache.newest_change_at(),
        owners=cache.all_owners(),
    )
