"""The poller's state as keyed records of a compacted topic, and back (pure).

One record per fact, keyed so that compaction keeps the latest of each:

    enrolstream/<source>/checkpoint             {"version": 12, "newest_change_at": "..."}
    enrolstream/<source>/shadow/<id>            {"people_code_id": ..., "section": {...}}
    enrolstream/<source>/owner/<table>/<key>    {"people_code_id": ...}
    enrolstream/<source>/sync                   a reader's marker: read up to it

A deleted shadow entry or row owner is a tombstone (value None). Every record
states something that was already true of the event topic when it was written:
where a row was published (written before the events, like the old staging
table), which version's changes are all acknowledged (written after them).
That is why any interleaving of two writers still leaves a state from which
resuming loses no change (see docs/poller-failover.md), and why the order of
a commit's records matters: shadow and owner records first, the checkpoint last.

``fold_records`` reads records back in offset order into ``StateChanges``:
the latest value per key, tombstones as deletes, other sources' records skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cdc.errors import CdcError
from cdc.ports import TRACKED_TABLES, RowOwner, ShadowEntry, TrackedTable
from schemas.events import SectionKey

StateRecord = tuple[bytes, bytes | None]
_PREFIX = "enrolstream"


class StateRecordInvalid(CdcError):
    """A record of the state topic that this version cannot read (key and reason).

    Not retriable: guessing would lose rows; an operator must look.
    """


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The saved version and the newest change's commit time."""

    version: int
    newest_change_at: datetime | None = None


@dataclass(slots=True)
class StateChanges:
    """What a run of state records says, latest per key (applied in one local transaction)."""

    upserts: dict[int, ShadowEntry] = field(default_factory=dict)
    deletes: set[int] = field(default_factory=set)
    owners: dict[tuple[TrackedTable, str], str] = field(default_factory=dict)
    owners_gone: set[tuple[TrackedTable, str]] = field(default_factory=set)
    checkpoint: Checkpoint | None = None
    records: int = 0

    @property
    def empty(self) -> bool:
        """No record of this source at all."""
        return self.records == 0

    def row_owners(self) -> list[RowOwner]:
        """The owners to add, as the checkpoint store takes them."""
        return [RowOwner(t, k, p) for (t, k), p in self.owners.items()]


def _key(source: str, *parts: str) -> bytes:
    return "/".join((_PREFIX, source, *parts)).encode()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def shadow_records(source: str, upserts: Sequence[ShadowEntry]) -> list[StateRecord]:
    """Where rows are (about to be) published: written before their events."""
    return [
        (
            _key(source, "shadow", str(entry.transcript_detail_id)),
            _json(
                {
                    "people_code_id": entry.people_code_id,
                    "section": entry.section.model_dump(),
                }
            ),
        )
        for entry in upserts
    ]


def commit_records(
    source: str,
    checkpoint: Checkpoint,
    upserts: Sequence[ShadowEntry],
    deletes: Iterable[int],
    *,
    owners: Sequence[RowOwner] = (),
    owners_gone: Sequence[tuple[TrackedTable, str]] = (),
) -> list[StateRecord]:
    """A saved iteration: shadow and owner changes, then the checkpoint (last)."""
    records = shadow_records(source, upserts)
    records += [(_key(source, "shadow", str(row_id)), None) for row_id in deletes]
    records += [(_key(source, "owner", table, key), None) for table, key in owners_gone]
    records += [
        (
            _key(source, "owner", o.table, o.key),
            _json({"people_code_id": o.people_code_id}),
        )
        for o in owners
    ]
    records.append(
        (
            _key(source, "checkpoint"),
            _json(
                {
                    "version": checkpoint.version,
                    "newest_change_at": _stamp(checkpoint.newest_change_at),
                }
            ),
        )
    )
    return records


def sync_record(source: str, marker: str) -> StateRecord:
    """A marker a reader writes and then reads up to: the topic's end, for sure."""
    return (_key(source, "sync"), _json({"marker": marker}))


def fold_records(source: str, records: Iterable[StateRecord]) -> StateChanges:
    """The records of ``source``, in offset order, as one set of changes.

    Raises ``StateRecordInvalid`` for a record of this source that cannot be
    read (written by a newer version, or damaged): guessing would lose rows.
    """
    changes = StateChanges()
    prefix = _key(source) + b"/"
    for key, value in records:
        if not key.startswith(prefix):
            continue
        changes.records += 1
        parts = key[len(prefix) :].decode().split("/", 2)
        try:
            _fold_one(changes, parts, value)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateRecordInvalid(
                f"state record {key.decode(errors='replace')}: {exc}"
            ) from exc
    return changes


def _fold_one(changes: StateChanges, parts: list[str], value: bytes | None) -> None:
    kind = parts[0]
    data = None if value is None else json.loads(value)
    if kind == "sync":
        return
    if kind == "checkpoint" and data is not None:
        newest = data.get("newest_change_at")
        changes.checkpoint = Checkpoint(
            int(data["version"]),
            None if newest is None else datetime.fromisoformat(newest),
        )
    elif kind == "shadow" and len(parts) == 2:  # noqa: PLR2004 - shadow/<id>
        row_id = int(parts[1])
        if data is None:
            changes.upserts.pop(row_id, None)
            changes.deletes.add(row_id)
        else:
            changes.deletes.discard(row_id)
            changes.upserts[row_id] = ShadowEntry(
                row_id, str(data["people_code_id"]), SectionKey(**data["section"])
            )
    elif kind == "owner" and len(parts) == 3 and parts[1] in TRACKED_TABLES:  # noqa: PLR2004
        owner = (_table(parts[1]), parts[2])
        if data is None:
            changes.owners.pop(owner, None)
            changes.owners_gone.add(owner)
        else:
            changes.owners_gone.discard(owner)
            changes.owners[owner] = str(data["people_code_id"])
    else:
        raise ValueError("unknown kind of record")


def _table(name: str) -> TrackedTable:
    for table in TRACKED_TABLES:
        if table == name:
            return table
    raise ValueError(f"unknown table {name}")
