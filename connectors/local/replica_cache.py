"""The poller's local state file as a cache of the state topic (``cdc.replica``).

``SqliteCheckpointStore`` plus what a copy of the state topic needs: where it
last read the topic (which topic, next offset), applying what the topic says
in one transaction, forgetting a source's state, and listing all of it (to
write a pre-upgrade file to an empty topic). Same file, same 0600 mode.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cdc.ports import RowOwner, ShadowEntry
from cdc.replica import ReplicaPosition
from cdc.state_records import StateChanges
from connectors.local.checkpoint import (
    SHADOW_COLUMNS,
    SqliteCheckpointStore,
    shadow_entry_of,
    shadow_row_of,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replica_position (
    source TEXT PRIMARY KEY,
    topic_id TEXT NOT NULL,
    next_offset INTEGER NOT NULL
);
"""


class ReplicaCacheStore(SqliteCheckpointStore):
    """The checkpoint store of one source, kept as a copy of the state topic."""

    def __init__(self, path: Path, source: str) -> None:
        super().__init__(path, source)
        with self._lock:
            self._db.executescript(_SCHEMA)

    def replica_position(self) -> ReplicaPosition | None:
        """Where the last catch-up stopped (None: never read the topic)."""
        with self._lock:
            row = self._db.execute(
                "SELECT topic_id, next_offset FROM replica_position WHERE source = ?",
                (self.source,),
            ).fetchone()
        return None if row is None else ReplicaPosition(str(row[0]), int(row[1]))

    def apply_replica(
        self, changes: StateChanges, position: ReplicaPosition | None
    ) -> None:
        """Apply the topic's changes and remember ``position``, atomically.

        Entries staged here but not in the topic were never published (the
        topic is written before the events): they are dropped.
        """
        source = self.source
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM shadow_staged WHERE source = ?", (source,)
                )
                self._db.executemany(
                    "DELETE FROM shadow WHERE source = ? AND transcript_detail_id = ?",
                    [(source, row_id) for row_id in changes.deletes],
                )
                self._db.executemany(
                    f"INSERT OR REPLACE INTO shadow ({SHADOW_COLUMNS}, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*shadow_row_of(e), source) for e in changes.upserts.values()],
                )
                self._db.executemany(
                    "DELETE FROM owners WHERE source = ? AND tracked_table = ? "
                    "AND row_key = ?",
                    [(source, table, key) for table, key in changes.owners_gone],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
                    [(source, t, k, p) for (t, k), p in changes.owners.items()],
                )
                if changes.checkpoint is not None:
                    self._save_checkpoint(
                        changes.checkpoint.version, changes.checkpoint.newest_change_at
                    )
                if position is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO replica_position VALUES (?, ?, ?)",
                        (source, position.topic_id, position.offset),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def reset(self) -> None:
        """Forget this source's checkpoint, shadow map, owners and position."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in (
                "checkpoint",
                "shadow",
                "shadow_staged",
                "owners",
                "replica_position",
            ):
                self._db.execute(
                    f"DELETE FROM {table} WHERE source = ?", (self.source,)
                )
            self._db.execute("COMMIT")

    def all_entries(self) -> list[ShadowEntry]:
        """Every shadow entry of the source, staged ones winning."""
        found: dict[int, ShadowEntry] = {}
        with self._lock:
            for table in ("shadow", "shadow_staged"):
                rows = self._db.execute(
                    f"SELECT {SHADOW_COLUMNS} FROM {table} WHERE source = ?",
                    (self.source,),
                ).fetchall()
                found.update((row[0], shadow_entry_of(row)) for row in rows)
        return list(found.values())

    def all_owners(self) -> list[RowOwner]:
        """Every person-table row owner of the source."""
        with self._lock:
            rows = self._db.execute(
                "SELECT tracked_table, row_key, people_code_id FROM owners "
                "WHERE source = ?",
                (self.source,),
            ).fetchall()
        return [RowOwner(table, str(key), str(person)) for table, key, person in rows]

    def newest_change_at(self) -> datetime | None:
        """The newest change's commit time saved with the checkpoint."""
        with self._lock:
            row = self._db.execute(
                "SELECT newest_change_at FROM checkpoint WHERE source = ?",
                (self.source,),
            ).fetchone()
        if row is None or not row[0]:
            return None
        return datetime.fromisoformat(str(row[0]))
