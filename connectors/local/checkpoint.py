"""The poller's durable state: the saved change-tracking version and the shadow map.

Both live in one local SQLite file and change in one transaction, after Kafka
acknowledged the events: a crash can never leave a shadow map that already
forgot a deleted row whose drop was not yet published.

What is about to be published is *staged* first (``stage``, a second table):
if the poller dies after Kafka acknowledged but before the commit, the next
attempt still knows where those rows were published (a row inserted, published,
then deleted before the retry is resolved through its staged entry, and a
re-initialisation finds it among the rows that vanished). Staged entries win
over committed ones in ``lookup`` (they were published later) and are cleared
by the next ``commit``.

Off-by-one rule: the saved version is the last version whose changes are
already published and acknowledged; the poller resumes strictly after it.

The shadow map also keeps the owner of every person-table row it was told
about (EmailAddress, PersonUser: keyed by a surrogate id, so CT's delete names
nobody), for the same reason.

The shadow map is student data: the file and its SQLite side files are 0600,
the directories created for it 0700 (``connectors/local/files.py``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cdc.ports import RowOwner, ShadowEntry, TrackedTable
from connectors.local.files import SQLITE_SIDE_FILES, prepare_private_file
from schemas.events import SectionKey, TermKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    source TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    saved_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS shadow (
    source TEXT NOT NULL,
    transcript_detail_id INTEGER NOT NULL,
    people_code_id TEXT NOT NULL,
    academic_year TEXT NOT NULL,
    academic_term TEXT NOT NULL,
    academic_session TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_sub_type TEXT NOT NULL,
    section TEXT NOT NULL,
    PRIMARY KEY (source, transcript_detail_id)
);
CREATE TABLE IF NOT EXISTS shadow_staged (
    source TEXT NOT NULL,
    transcript_detail_id INTEGER NOT NULL,
    people_code_id TEXT NOT NULL,
    academic_year TEXT NOT NULL,
    academic_term TEXT NOT NULL,
    academic_session TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_sub_type TEXT NOT NULL,
    section TEXT NOT NULL,
    PRIMARY KEY (source, transcript_detail_id)
);
CREATE TABLE IF NOT EXISTS owners (
    source TEXT NOT NULL,
    tracked_table TEXT NOT NULL,
    row_key TEXT NOT NULL,
    people_code_id TEXT NOT NULL,
    PRIMARY KEY (source, tracked_table, row_key)
);
"""
SHADOW_COLUMNS = (
    "transcript_detail_id, people_code_id, academic_year, academic_term, "
    "academic_session, event_id, event_sub_type, section"
)
#: Committed first, staged second: a staged entry replaces the committed one.
_TABLES = ("shadow", "shadow_staged")
#: Added after the first release: older files get the column on open.
_MIGRATIONS = ("ALTER TABLE checkpoint ADD COLUMN newest_change_at TEXT",)
_LOOKUP_CHUNK = 500
_SAME_TERM = (
    "rtrim(academic_year) = rtrim(?) COLLATE NOCASE "
    "AND rtrim(academic_term) = rtrim(?) COLLATE NOCASE"
)


def _stamp(moment: datetime | None) -> str | None:
    """A UTC time as fixed-width ISO text (so text order is time order)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class CheckpointGlance:
    """What the poller's state file says of its progress (for the status page)."""

    version: int
    saved_at: datetime
    newest_change_at: datetime | None


def read_checkpoint(path: Path, source: str) -> CheckpointGlance | None:
    """The saved version, when it was saved and the newest change seen; read-only.

    None when the file or the source's row does not exist (the poller has not
    started, or runs on another host).
    """
    if not path.is_file():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(checkpoint)")}
        newest = "newest_change_at" if "newest_change_at" in columns else "NULL"
        row = db.execute(
            f"SELECT version, saved_at, {newest} FROM checkpoint WHERE source = ?",
            (source,),
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    if row is None:
        return None

    def parse(text: object) -> datetime | None:
        if not text:
            return None
        return datetime.fromisoformat(str(text))  # 3.11 reads a trailing Z

    saved = parse(row[1])
    assert saved is not None  # noqa: S101 - NOT NULL column
    return CheckpointGlance(int(row[0]), saved, parse(row[2]))


def shadow_entry_of(row: Sequence[Any]) -> ShadowEntry:
    """A shadow entry from its row (``SHADOW_COLUMNS`` order)."""
    return ShadowEntry(
        transcript_detail_id=row[0],
        people_code_id=row[1],
        section=SectionKey(
            academic_year=row[2],
            academic_term=row[3],
            academic_session=row[4],
            event_id=row[5],
            event_sub_type=row[6],
            section=row[7],
        ),
    )


def shadow_row_of(entry: ShadowEntry) -> tuple[int, str, str, str, str, str, str, str]:
    """The row of a shadow entry (``SHADOW_COLUMNS`` order)."""
    section = entry.section
    return (
        entry.transcript_detail_id,
        entry.people_code_id,
        section.academic_year,
        section.academic_term,
        section.academic_session,
        section.event_id,
        section.event_sub_type,
        section.section,
    )


def _use_wal(db: sqlite3.Connection, *, tries: int = 100) -> None:
    """Put the file in WAL mode (persistent: later openers find it so).

    Switching needs the file to itself and SQLite's busy handler does not wait
    for that: two processes creating the file at once, one is told "database is
    locked". It is asked again, ``tries`` times 50 ms apart at most.
    """
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)
        else:
            return


class SqliteCheckpointStore:
    """``CheckpointStore`` and ``ShadowLookup`` over one SQLite file, per source name.

    Safe to call from the source's worker thread (lookups) and the event loop
    (commits): one connection guarded by a lock.
    """

    def __init__(self, path: Path, source: str) -> None:
        # created 0600 before SQLite opens it: SQLite gives -wal/-shm the same mode
        prepare_private_file(path, SQLITE_SIDE_FILES)
        self.path = path
        self.source = source
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        _use_wal(self._db)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        # Checked and altered under the write lock: two processes opening a file
        # of the old shape at once (a poller and its standby, a status command)
        # both saw the column missing and the second ALTER failed.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {
                row[1] for row in self._db.execute("PRAGMA table_info(checkpoint)")
            }
            if "newest_change_at" not in columns:
                for statement in _MIGRATIONS:
                    self._db.execute(statement)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def load_version(self) -> int | None:
        """The saved version, or None before the first initialisation."""
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM checkpoint WHERE source = ?", (self.source,)
            ).fetchone()
        return None if row is None else int(row[0])

    def lookup(self, transcript_detail_ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        """Where the ids were last published (staged over committed); unknown ids absent."""
        found: dict[int, ShadowEntry] = {}
        ids = list(dict.fromkeys(transcript_detail_ids))
        with self._lock:
            for table in _TABLES:
                for start in range(0, len(ids), _LOOKUP_CHUNK):
                    chunk = ids[start : start + _LOOKUP_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"SELECT {SHADOW_COLUMNS} FROM {table} "
                        f"WHERE source = ? AND transcript_detail_id IN ({marks})",
                        (self.source, *chunk),
                    ).fetchall()
                    found.update((row[0], shadow_entry_of(row)) for row in rows)
        return found

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        """PEOPLE_CODE_ID of each person-table row key the map knows."""
        found: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT row_key, people_code_id FROM owners WHERE source = ? "
                    f"AND tracked_table = ? AND row_key IN ({marks})",
                    (self.source, table, *chunk),
                ).fetchall()
                found.update((str(key), str(person)) for key, person in rows)
        return found

    def entries(self, terms: Sequence[TermKey]) -> list[ShadowEntry]:
        """The shadow map's entries in these terms, staged ones included."""
        found: dict[int, ShadowEntry] = {}
        with self._lock:
            for table in _TABLES:
                for term in terms:
                    rows = self._db.execute(
                        f"SELECT {SHADOW_COLUMNS} FROM {table} "
                        f"WHERE source = ? AND {_SAME_TERM}",
                        (self.source, term.academic_year, term.academic_term),
                    ).fetchall()
                    found.update((row[0], shadow_entry_of(row)) for row in rows)
        return list(found.values())

    def stage(self, upserts: Sequence[ShadowEntry]) -> None:
        """Remember where rows are about to be published, before the version moves.

        One transaction, durable on return: in autocommit each row was its own
        synchronous commit (50,000 fsyncs for a 50,000-row burst).
        """
        if not upserts:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO shadow_staged ({SHADOW_COLUMNS}, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*shadow_row_of(entry), self.source) for entry in upserts],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def shadow_size(self) -> int:
        """How many rows the shadow map holds (for logs and tests)."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM shadow WHERE source = ?", (self.source,)
            ).fetchone()
        return int(row[0])

    def commit(
        self,
        version: int,
        upserts: Sequence[ShadowEntry],
        deletes: Sequence[int],
        *,
        replace_terms: Sequence[TermKey] = (),
        newest_change_at: datetime | None = None,
        owners: Sequence[RowOwner] = (),
        owners_gone: Sequence[tuple[TrackedTable, str]] = (),
    ) -> None:
        """Atomically save ``version`` and the shadow-map changes.

        ``replace_terms`` first removes those terms' entries (compared as the
        PowerCampus collation does: case and trailing spaces ignored).
        ``newest_change_at`` (UTC) is kept when later than the one saved;
        ``owners`` and ``owners_gone`` add and remove person-table row owners.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"DELETE FROM shadow WHERE source = ? AND {_SAME_TERM}",
                    [
                        (self.source, t.academic_year, t.academic_term)
                        for t in replace_terms
                    ],
                )
                self._db.executemany(
                    "DELETE FROM shadow WHERE source = ? AND transcript_detail_id = ?",
                    [(self.source, key) for key in deletes],
                )
                self._db.executemany(
                    f"INSERT OR REPLACE INTO shadow ({SHADOW_COLUMNS}, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*shadow_row_of(entry), self.source) for entry in upserts],
                )
                # Published and now committed: the staging has served.
                self._db.execute(
                    "DELETE FROM shadow_staged WHERE source = ?", (self.source,)
                )
                self._db.executemany(
                    "DELETE FROM owners WHERE source = ? AND tracked_table = ? "
                    "AND row_key = ?",
                    [(self.source, table, key) for table, key in owners_gone],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
                    [(self.source, o.table, o.key, o.people_code_id) for o in owners],
                )
                self._save_checkpoint(version, newest_change_at)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _save_checkpoint(self, version: int, newest_change_at: datetime | None) -> None:
        """Inside a transaction: the version, and the newest change time if later."""
        self._db.execute(
            "INSERT INTO checkpoint (source, version, newest_change_at) "
            "VALUES (?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
            "version = excluded.version, "
            "saved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
            "newest_change_at = max(coalesce(newest_change_at, ''), "
            "coalesce(excluded.newest_change_at, ''))",
            (self.source, version, _stamp(newest_change_at)),
        )
