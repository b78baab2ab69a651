"""SQL Server change tracking on SQLite: version stamping, CHANGETABLE, cleanup, truncate.

Every function takes a connection that is already inside the right transaction;
``PowerCampusSandbox`` opens them. The semantics follow SQL Server's documented
change tracking (Microsoft Learn, "About change tracking" and ``CHANGETABLE``):

* one version per committed transaction that changed a tracked row, in commit
  order (writers are serialised); a transaction that changed none consumes none;
* ``CHANGETABLE(CHANGES t, @last)`` gives one row per primary key changed after
  ``@last``, its operation relative to that baseline: the last change a delete →
  ``D``; else the row absent at the baseline (its first change in the window is
  an insert) → ``I``; else ``U`` (also for delete-then-reinsert and for updates
  that leave the values as they were);
* ``SYS_CHANGE_VERSION`` is the last change, ``SYS_CHANGE_CREATION_VERSION`` the
  last insert still in the side table (NULL once cleanup removed it);
* cleanup removes side-table entries and commits up to a version and raises the
  min valid version to it (a client at that version still misses nothing);
* TRUNCATE is not tracked row by row and resets the table's CT info; so does
  (re-)enabling tracking on a table, which consumes a version (see ``enable``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from sandbox.powercampus.schema import (
    TRACKABLE_TABLES,
    TrackableTable,
    drop_side_table_ddl,
    side_table_ddl,
    split_statements,
)

CtOperation = Literal["I", "U", "D"]


class ChangeTrackingNotEnabled(LookupError):
    """CHANGETABLE or a CT function was asked about a table that is not tracked."""


@dataclass(frozen=True, slots=True)
class ChangeTableRow:
    """One row of ``CHANGETABLE(CHANGES t, @last)``: the net change of one primary key."""

    sys_change_version: int
    sys_change_creation_version: int | None
    sys_change_operation: CtOperation
    #: The primary-key values, in the table's primary-key column order.
    primary_key: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """What one retention cleanup did."""

    #: Side-table entries and commits at or below this version were removed.
    cleanup_version: int
    #: Each tracked table's min valid version after the cleanup.
    min_valid_versions: Mapping[str, int]
    deleted_changes: int
    deleted_commits: int


def trackable(table: str) -> TrackableTable:
    """The trackable table named ``table`` (case-insensitive), or ``KeyError``."""
    for name, spec in TRACKABLE_TABLES.items():
        if name.casefold() == table.strip().casefold():
            return spec
    raise KeyError(f"{table!r} is not a sandbox table with a primary key")


def current_version(conn: sqlite3.Connection) -> int:
    """CHANGE_TRACKING_CURRENT_VERSION(): the version of the last tracked commit."""
    row = conn.execute("SELECT current_version FROM CT_STATE WHERE id = 1").fetchone()
    return int(row[0])


def min_valid_version(conn: sqlite3.Connection, table: str) -> int | None:
    """CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(table)); None when not tracked."""
    row = conn.execute(
        "SELECT min_valid_version FROM CT_TABLES WHERE table_name = ?", (table.strip(),)
    ).fetchone()
    return None if row is None else int(row[0])


def versions(
    conn: sqlite3.Connection, tables: Sequence[str]
) -> tuple[int, list[int | None]]:
    """CHANGE_TRACKING_CURRENT_VERSION() and each table's min valid version, one SELECT.

    As one T-SQL statement can read them all (``connectors/sqlserver/sql.py``
    ``versions_query``); None for a table that is not tracked.
    """
    keys = json.dumps([table.strip() for table in tables])
    row = conn.execute(
        "SELECT (SELECT current_version FROM CT_STATE WHERE id = 1), "
        "json_group_object(k.key, t.min_valid_version) FROM json_each(:keys) AS k "
        "LEFT JOIN CT_TABLES AS t ON t.table_name = k.value",
        {"keys": keys},
    ).fetchone()
    found = json.loads(row[1]) if tables else {}
    valid = [found[str(index)] for index in range(len(tables))]
    return int(row[0]), [None if v is None else int(v) for v in valid]


def tracked_tables(conn: sqlite3.Connection) -> list[str]:
    """Names of the tables change tracking is enabled on."""
    rows = conn.execute("SELECT table_name FROM CT_TABLES ORDER BY table_name")
    return [str(name) for (name,) in rows]


def _tracked(conn: sqlite3.Connection, table: str) -> TrackableTable:
    spec = trackable(table)
    if min_valid_version(conn, spec.name) is None:
        raise ChangeTrackingNotEnabled(
            f"change tracking is not enabled on table {spec.name!r}"
        )
    return spec


def net_changes_sql(table: TrackableTable) -> str:
    """A SELECT (parameter ``:last``; -1 = all) with the CHANGETABLE columns + the key.

    Usable as a subquery, so an adapter can ``LEFT JOIN`` the table back to it.
    """
    side = table.side_table
    keys = ", ".join(table.primary_key)
    same_key = " AND ".join(f"c.{k} = span.{k}" for k in table.primary_key)
    return f"""
SELECT span.version AS SYS_CHANGE_VERSION,
       (SELECT MAX(c.SYS_CHANGE_VERSION) FROM {side} AS c
         WHERE c.SYS_CHANGE_OPERATION = 'I' AND {same_key}) AS SYS_CHANGE_CREATION_VERSION,
       CASE WHEN last_change.SYS_CHANGE_OPERATION = 'D' THEN 'D'
            WHEN first_change.SYS_CHANGE_OPERATION = 'I' THEN 'I'
            ELSE 'U' END AS SYS_CHANGE_OPERATION,
       {", ".join(f"span.{k} AS {k}" for k in table.primary_key)}
FROM (SELECT {keys}, MAX(SYS_CHANGE_VERSION) AS version,
             MIN(seq) AS first_seq, MAX(seq) AS last_seq
        FROM {side} INDEXED BY {side}_version  -- cost follows the changes, not history
       WHERE SYS_CHANGE_VERSION > :last
       GROUP BY {keys}) AS span
JOIN {side} AS first_change ON first_change.seq = span.first_seq
JOIN {side} AS last_change ON last_change.seq = span.last_seq
"""


def changes(
    conn: sqlite3.Connection, table: str, last: int | None
) -> list[ChangeTableRow]:
    """CHANGETABLE(CHANGES table, last), ordered by version then key.

    Like SQL Server it does not check ``last`` against the min valid version:
    callers do (step 2 of the consistent-sync pattern).
    """
    spec = _tracked(conn, table)
    width = len(spec.primary_key)
    rows = conn.execute(
        f"SELECT * FROM ({net_changes_sql(spec)}) ORDER BY 1, "
        + ", ".join(str(4 + i) for i in range(width)),
        {"last": -1 if last is None else last},
    ).fetchall()
    return [
        ChangeTableRow(
            sys_change_version=int(row[0]),
            sys_change_creation_version=None if row[1] is None else int(row[1]),
            sys_change_operation=cast("CtOperation", row[2]),
            primary_key=tuple(row[3:]),
        )
        for row in rows
    ]


def enable(conn: sqlite3.Connection, table: str) -> bool:
    """ALTER TABLE … ENABLE CHANGE_TRACKING; False when it was already enabled.

    Enabling consumes a version of its own (as ``truncate`` does) and makes it the
    table's begin and min valid version. Writes made while tracking was off
    consumed no version, so without that a client that had caught up before a
    disable (saved version == current) would still pass ``last >= min valid``
    afterwards and silently miss them; with it every client synced before the
    enable must re-initialise, and one that reads ``current_version`` afterwards
    is valid. The version gets no ``CT_COMMIT`` entry: no tracked row changed,
    so there is nothing at it for retention to purge.

    Exception: on a database that has never consumed a version (current 0, e.g.
    ``PowerCampusSandbox.create()`` on a new file) enabling keeps version 0, so a
    fresh sandbox starts at 0 and its first write is version 1. No tracked change
    exists yet, so a client's saved version can only be 0 from an initial load
    taken while tracking was on; the one case that misses is a disable → untracked
    write → enable cycle before the database's first tracked commit.

    Call it outside a tracked transaction (not between ``begin`` and ``finish``).
    """
    spec = trackable(table)
    if min_valid_version(conn, spec.name) is not None:
        return False
    for statement in split_statements(side_table_ddl(spec)):
        conn.execute(statement)
    version = current_version(conn)
    if version > 0:
        version += 1
        conn.execute("UPDATE CT_STATE SET current_version = ? WHERE id = 1", (version,))
    conn.execute(
        "INSERT INTO CT_TABLES (table_name, begin_version, min_valid_version, "
        "cleanup_version) VALUES (?, ?, ?, ?)",
        (spec.name, version, version, version),
    )
    return True


def disable(conn: sqlite3.Connection, table: str) -> None:
    """ALTER TABLE … DISABLE CHANGE_TRACKING: drops the triggers and the side table."""
    spec = _tracked(conn, table)
    for statement in split_statements(drop_side_table_ddl(spec)):
        conn.execute(statement)
    conn.execute("DELETE FROM CT_TABLES WHERE table_name = ?", (spec.name,))


def begin(conn: sqlite3.Connection) -> int:
    """Open the tracked transaction's version (``current + 1``) for the triggers."""
    version = current_version(conn) + 1
    conn.execute("DELETE FROM CT_TRANSACTION")
    conn.execute("INSERT INTO CT_TRANSACTION (version) VALUES (?)", (version,))
    return version


def finish(
    conn: sqlite3.Connection, commit_time: str, *, force: bool = False
) -> int | None:
    """Close the transaction's CT bookkeeping just before COMMIT.

    Returns the version it consumed, or None when no tracked row changed (and
    ``force`` is off). The caller commits right after, so commit order is version
    order.
    """
    row = conn.execute("SELECT version, changed FROM CT_TRANSACTION").fetchone()
    conn.execute("DELETE FROM CT_TRANSACTION")
    if row is None:
        raise RuntimeError("no tracked transaction is open")
    version, changed = int(row[0]), bool(row[1])
    if not (changed or force):
        return None
    conn.execute(
        "INSERT INTO CT_COMMIT (version, commit_time) VALUES (?, ?)",
        (version, commit_time),
    )
    conn.execute("UPDATE CT_STATE SET current_version = ? WHERE id = 1", (version,))
    return version


def truncate(conn: sqlite3.Connection, table: str) -> None:
    """TRUNCATE TABLE inside an open tracked transaction: untracked, resets CT info.

    Rows go without side-table entries, the identity restarts (SQL Server resets
    it), the table's side table is emptied and its min valid version becomes the
    version this transaction commits (the caller must ``finish(force=True)``): every
    client synced before the truncate must re-initialise, and one that reads
    ``current_version`` afterwards is valid.
    """
    spec = trackable(table)
    conn.execute("UPDATE CT_TRANSACTION SET tracking = 0")
    conn.execute(f"DELETE FROM {spec.name}")
    conn.execute("UPDATE CT_TRANSACTION SET tracking = 1")
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
    ).fetchone():
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (spec.name,))
    if min_valid_version(conn, spec.name) is not None:
        conn.execute(f"DELETE FROM {spec.side_table}")
        conn.execute(
            "UPDATE CT_TABLES SET min_valid_version = version, cleanup_version = version "
            "FROM (SELECT version FROM CT_TRANSACTION) WHERE table_name = ?",
            (spec.name,),
        )


def cleanup_version_for(
    conn: sqlite3.Connection, retain_versions: int | None, cutoff: str | None
) -> int:
    """The highest version retention allows to purge (0: nothing).

    ``retain_versions`` keeps that many of the latest versions; ``cutoff`` keeps
    commits at or after that time. Given both, history either wants is kept.
    """
    candidates: list[int] = []
    if retain_versions is not None:
        candidates.append(max(0, current_version(conn) - retain_versions))
    if cutoff is not None:
        row = conn.execute(
            "SELECT MAX(version) FROM CT_COMMIT WHERE commit_time < ?", (cutoff,)
        ).fetchone()
        candidates.append(0 if row[0] is None else int(row[0]))
    return min(candidates) if candidates else 0


def cleanup(conn: sqlite3.Connection, cleanup_version: int) -> CleanupResult:
    """Remove history at or below ``cleanup_version`` and raise min valid versions."""
    deleted_changes = 0
    minimums: dict[str, int] = {}
    for name in tracked_tables(conn):
        spec = trackable(name)
        deleted_changes += conn.execute(
            f"DELETE FROM {spec.side_table} WHERE SYS_CHANGE_VERSION <= ?",
            (cleanup_version,),
        ).rowcount
        conn.execute(
            "UPDATE CT_TABLES SET min_valid_version = MAX(min_valid_version, :v), "
            "cleanup_version = MAX(cleanup_version, :v) WHERE table_name = :t",
            {"v": cleanup_version, "t": spec.name},
        )
        minimums[spec.name] = min_valid_version(conn, spec.name) or 0
    deleted_commits = conn.execute(
        "DELETE FROM CT_COMMIT WHERE version <= ?", (cleanup_version,)
    ).rowcount
    return CleanupResult(cleanup_version, minimums, deleted_changes, deleted_commits)
