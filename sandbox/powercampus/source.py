"""``SandboxChangeSource``: the ``ChangeSource`` port over the PowerCampus sandbox.

It reads exactly what the SQL Server adapter reads, in the same consistent-sync
pattern (docs/sqlserver-change-tracking.md §5): each call is ONE read transaction, which WAL mode
makes a snapshot, so the min valid version check, the current version, the net
changes and the term state all agree. Every blocking call runs in
``asyncio.to_thread``; the one connection is serialised by a lock.

Values come back normalised as PowerCampus compares them: trailing spaces
stripped, case kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self, TypeVar, cast

from cdc.errors import (
    ChangeTrackingVersionTooOld,
    SourceMisconfigured,
    SourceUnavailable,
)
from cdc.ports import (
    TRACKED_TABLES,
    ChangeBatch,
    ChangeRow,
    CtOperation,
    KeyChange,
    PersonTerm,
    ShadowEntry,
    ShadowLookup,
    Snapshot,
    StandingRow,
    TeachingRow,
    TrackedTable,
    TranscriptRow,
)
from cdc.rows import TRANSCRIPT_COLUMNS, text, transcript_row
from sandbox.powercampus import changetracking as ct
from sandbox.powercampus import related
from sandbox.powercampus.schema import TRACKABLE_TABLES, ci
from schemas.collation import person_term_key
from schemas.events import TermKey

T = TypeVar("T")
RowT = TypeVar("RowT", TeachingRow, StandingRow)
TABLE = "TRANSCRIPTDETAIL"

#: Primary result codes that mean "try again later" (busy, locked, I/O, full …).
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)

_SELECT_ROW = ", ".join(f"td.{c}" for c in TRANSCRIPT_COLUMNS)


def translate_sqlite_error(
    exc: sqlite3.Error,
) -> SourceUnavailable | SourceMisconfigured:
    """The capture-side error for a sqlite error: retriable only for passing causes."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in UNAVAILABLE_CODES:
        return SourceUnavailable(f"PowerCampus sandbox unavailable: {exc}")
    return SourceMisconfigured(
        f"PowerCampus sandbox cannot answer ({exc}); is it initialised "
        "(enrolstream sandbox init)?"
    )


@contextmanager
def map_sqlite_errors() -> Iterator[None]:
    """Re-raise every sqlite3 error as ``SourceUnavailable`` or ``SourceMisconfigured``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate_sqlite_error(exc) from exc


def _fold(people_code_id: str, term: TermKey) -> tuple[str, str, str]:
    return person_term_key(people_code_id, term)


class SandboxChangeSource:
    """Change tracking on the sandbox's tables, as the poller's ``ChangeSource``."""

    def __init__(
        self,
        path: Path | str,
        *,
        name: str = "powercampus",
        busy_timeout_s: float = 1.0,
        tables: Sequence[TrackedTable] = TRACKED_TABLES,
    ) -> None:
        """Read the sandbox at ``path`` (opened on first use); ``name`` names the source.

        ``tables``: what to track (TRANSCRIPTDETAIL always); each must have change
        tracking enabled, or reading raises ``SourceMisconfigured``.
        """
        self.name = name
        self.tables: tuple[TrackedTable, ...] = (
            "TRANSCRIPTDETAIL",
            *(t for t in TRACKED_TABLES if t in tables and t != "TRANSCRIPTDETAIL"),
        )
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        """Use as an async context manager: closes on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the connection."""
        await self.close()

    async def fetch_since(
        self,
        last_version: int,
        shadow: ShadowLookup,
        *,
        live_terms: Sequence[TermKey] = (),
    ) -> ChangeBatch:
        """Net changes after ``last_version`` joined back, with the state they touch.

        Raises ``ChangeTrackingVersionTooOld`` below a tracked table's min valid
        version, ``SourceUnavailable`` when the file is locked or unreadable.
        """
        return await self._in_thread(
            lambda c: self._fetch(c, last_version, shadow, live_terms)
        )

    async def read_snapshot(self, terms: Sequence[TermKey]) -> Snapshot:
        """Every tracked row of ``terms`` and the version they are consistent with."""
        return await self._in_thread(lambda c: self._snapshot(c, terms))

    async def live_terms(self, today: date) -> list[TermKey]:
        """Terms with a session whose START_DATE <= today <= END_DATE (or FINAL_END_DATE)."""
        return await self._in_thread(lambda c: self._live_terms(c, today))

    async def min_valid_version(self) -> int | None:
        """CHANGE_TRACKING_MIN_VALID_VERSION of TRANSCRIPTDETAIL (None: not tracked)."""
        return await self._in_thread(lambda c: ct.min_valid_version(c, TABLE))

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _in_thread(self, read: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._read_transaction, read)

    def _read_transaction(self, read: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock, map_sqlite_errors():
            if self._conn is None:
                self._conn = sqlite3.connect(
                    f"file:{self.path}?mode=rw",
                    uri=True,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,  # guarded by self._lock
                )
            conn = self._conn
            conn.execute("BEGIN")  # WAL: the first read fixes the snapshot
            try:
                return read(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _read_versions(self, conn: sqlite3.Connection, last: int) -> int:
        """The current version, once every tracked table's min valid version allows ``last``.

        One statement, as the SQL Server adapter reads them.
        """
        current, min_valid = ct.versions(conn, self.tables)
        for table, version in zip(self.tables, min_valid, strict=True):
            if version is None:
                raise SourceMisconfigured(
                    f"change tracking is not enabled on {table} (enable it, or "
                    "leave the table out of source.tables)"
                )
            if last < version:
                raise ChangeTrackingVersionTooOld(last, version)
        return current

    def _check_versions(self, conn: sqlite3.Connection, last: int | None) -> None:
        """Every tracked table has change tracking on, and kept history after ``last``."""
        for table in self.tables:
            min_valid = ct.min_valid_version(conn, table)
            if min_valid is None:
                raise SourceMisconfigured(
                    f"change tracking is not enabled on {table} (enable it, or "
                    "leave the table out of source.tables)"
                )
            if last is not None and last < min_valid:
                raise ChangeTrackingVersionTooOld(last, min_valid)

    def _fetch(
        self,
        conn: sqlite3.Connection,
        last: int,
        shadow: ShadowLookup,
        live: Sequence[TermKey],
    ) -> ChangeBatch:
        to_version = self._read_versions(conn, last)
        if to_version <= last:
            # Nothing committed since: CHANGETABLE would return no row.
            found: list[Any] = []
            keyed: list[KeyChange] = []
        else:
            net = ct.net_changes_sql(TRACKABLE_TABLES[TABLE])
            found = conn.execute(
                f"SELECT ct.SYS_CHANGE_VERSION, ct.SYS_CHANGE_CREATION_VERSION, "
                f"ct.SYS_CHANGE_OPERATION, ct.TranscriptDetailId, {_SELECT_ROW} "
                f"FROM ({net}) AS ct LEFT JOIN {TABLE} AS td "
                "ON td.TranscriptDetailId = ct.TranscriptDetailId "
                "ORDER BY ct.SYS_CHANGE_VERSION, ct.TranscriptDetailId",
                {"last": last},
            ).fetchall()
            keyed = related.key_changes(conn, self.tables, last, shadow)
        known = shadow.lookup([int(row[3]) for row in found]) if found else {}
        changes = [
            ChangeRow(
                transcript_detail_id=int(row[3]),
                operation=cast("CtOperation", row[2]),
                change_version=int(row[0]),
                creation_version=None if row[1] is None else int(row[1]),
                current=None if row[2] == "D" else transcript_row(row[4:]),
                shadow=known.get(int(row[3])),
            )
            for row in found
        ]
        persons = list(
            dict.fromkeys(
                k.people_code_id
                for k in keyed
                if k.term is None and k.people_code_id is not None
            )
        )
        terms_of = related.person_terms(
            conn, persons, live, teaching="SECTIONPER" in self.tables
        )
        touched = list(
            dict.fromkeys(
                [
                    *_touched_person_terms(changes),
                    *(
                        PersonTerm(k.people_code_id, k.term)
                        for k in keyed
                        if k.term is not None and k.people_code_id is not None
                    ),
                    *(PersonTerm(p, t) for p in persons for t in terms_of[p]),
                ]
            )
        )
        return ChangeBatch(
            from_version=last,
            to_version=to_version,
            changes=tuple(changes),
            term_state=_person_term_rows(conn, touched),
            commit_times=(
                _commit_times(conn, last, to_version) if found or keyed else {}
            ),
            key_changes=tuple(keyed),
            person_terms=terms_of,
            **self._related_state(conn, touched),
        )

    def _related_state(
        self, conn: sqlite3.Connection, touched: Sequence[PersonTerm]
    ) -> dict[str, Any]:
        """SECTIONPER, ACADEMIC and account state of the touched person-terms."""
        state: dict[str, Any] = {}
        if "SECTIONPER" in self.tables:
            rows = related.teaching_rows(conn, wanted=touched) if touched else []
            state["teaching"] = _by_person_term(touched, rows)
        if "ACADEMIC" in self.tables:
            standing = related.standing_rows(conn, wanted=touched) if touched else []
            state["standing"] = _by_person_term(touched, standing)
        if "PEOPLE" in self.tables:
            persons = list(dict.fromkeys(pt.people_code_id for pt in touched))
            state["people"], state["owners"] = related.people_details(conn, persons)
        return state

    def _snapshot(self, conn: sqlite3.Connection, terms: Sequence[TermKey]) -> Snapshot:
        self._check_versions(conn, None)
        version = ct.current_version(conn)
        folded = {_fold("", t)[1:] for t in terms}  # a term asked twice is read once
        keys = json.dumps(sorted(folded))
        rows = conn.execute(
            f"SELECT {_SELECT_ROW} FROM json_each(:keys) AS k JOIN {TABLE} AS td "
            f"ON {ci('td.ACADEMIC_YEAR')} = k.value ->> 0 "
            f"AND {ci('td.ACADEMIC_TERM')} = k.value ->> 1 "
            "ORDER BY td.TranscriptDetailId",
            {"keys": keys},
        ).fetchall()
        found = tuple(transcript_row(r) for r in rows)
        snapshot = Snapshot(version=version, terms=tuple(terms), rows=found)
        extra: dict[str, Any] = {}
        teaching: list[TeachingRow] = []
        if "SECTIONPER" in self.tables:
            teaching = related.teaching_rows(conn, terms=terms)
            extra["teaching"] = tuple(teaching)
        if "ACADEMIC" in self.tables:
            extra["standing"] = tuple(related.standing_rows(conn, terms=terms))
        if "PEOPLE" in self.tables:
            persons = [r.people_code_id for r in found] + [
                t.people_code_id for t in teaching
            ]
            people, owners = related.people_details(conn, list(dict.fromkeys(persons)))
            extra |= {"people": people, "owners": tuple(owners)}
        return dataclasses.replace(snapshot, **extra)

    @staticmethod
    def _live_terms(conn: sqlite3.Connection, today: date) -> list[TermKey]:
        rows = conn.execute(
            "SELECT ACADEMIC_YEAR, ACADEMIC_TERM FROM ACADEMICCALENDAR "
            "WHERE date(START_DATE) <= :today AND :today <= COALESCE("
            "max(date(END_DATE), date(FINAL_END_DATE)), date(END_DATE), "
            "date(FINAL_END_DATE)) "
            "ORDER BY START_DATE, ACADEMIC_YEAR, ACADEMIC_TERM",
            {"today": today.isoformat()},
        ).fetchall()
        terms: dict[tuple[str, str], TermKey] = {}
        for year, term in rows:
            key = TermKey(academic_year=text(year), academic_term=text(term))
            terms.setdefault(_fold("", key)[1:], key)
        return list(terms.values())


def _commit_times(
    conn: sqlite3.Connection, last: int, to_version: int
) -> dict[int, datetime]:
    """UTC commit time of every version in ``(last, to_version]`` CT_COMMIT still holds.

    The sandbox's ``sys.dm_tran_commit_table``: cleanup removes old entries, so a
    version may be missing (its events then carry no commit time).
    """
    rows = conn.execute(
        "SELECT version, commit_time FROM CT_COMMIT WHERE version > ? AND version <= ?",
        (last, to_version),
    ).fetchall()
    return {
        int(version): datetime.fromisoformat(str(stamp)).astimezone(UTC)
        for version, stamp in rows
    }


def _touched_person_terms(changes: Sequence[ChangeRow]) -> list[PersonTerm]:
    """Person-terms a batch touches: current rows, and where the shadow says a row was."""
    touched: dict[PersonTerm, None] = {}
    for change in changes:
        if change.current is not None:
            current = change.current
            touched[PersonTerm(current.people_code_id, current.term)] = None
        entry: ShadowEntry | None = change.shadow
        if entry is not None:
            touched[PersonTerm(entry.people_code_id.rstrip(), entry.section.term)] = (
                None
            )
    return list(touched)


def _by_person_term(
    wanted: Sequence[PersonTerm], rows: Sequence[RowT]
) -> dict[PersonTerm, tuple[RowT, ...]]:
    """Rows under each wanted person-term (case variants alike); none → ``()``."""
    by_fold: dict[tuple[str, str, str], list[PersonTerm]] = {}
    for person_term in wanted:
        by_fold.setdefault(
            _fold(person_term.people_code_id, person_term.term), []
        ).append(person_term)
    state: dict[PersonTerm, list[RowT]] = {pt: [] for pt in wanted}
    for row in rows:
        for person_term in by_fold.get(_fold(row.people_code_id, row.term), []):
            state[person_term].append(row)
    return {pt: tuple(found) for pt, found in state.items()}


def _person_term_rows(
    conn: sqlite3.Connection, wanted: Sequence[PersonTerm]
) -> Mapping[PersonTerm, tuple[TranscriptRow, ...]]:
    """All rows of each wanted person-term, in ONE query; none left → empty tuple."""
    if not wanted:
        return {}
    by_fold: dict[tuple[str, str, str], list[PersonTerm]] = {}
    for person_term in wanted:
        by_fold.setdefault(
            _fold(person_term.people_code_id, person_term.term), []
        ).append(person_term)
    keys = json.dumps([list(fold) for fold in by_fold])
    found = conn.execute(
        f"SELECT {_SELECT_ROW} FROM json_each(:keys) AS k JOIN {TABLE} AS td "
        f"ON {ci('td.PEOPLE_CODE_ID')} = k.value ->> 0 "
        f"AND {ci('td.ACADEMIC_YEAR')} = k.value ->> 1 "
        f"AND {ci('td.ACADEMIC_TERM')} = k.value ->> 2 "
        "ORDER BY td.TranscriptDetailId",
        {"keys": keys},
    ).fetchall()
    state: dict[PersonTerm, list[TranscriptRow]] = {pt: [] for pt in wanted}
    for values in found:
        row = transcript_row(values)
        for person_term in by_fold.get(_fold(row.people_code_id, row.term), []):
            state[person_term].append(row)
    return {pt: tuple(rows) for pt, rows in state.items()}
