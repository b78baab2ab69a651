"""The production ``ChangeSource``: PowerCampus on SQL Server, read through pyodbc.

The only module that imports pyodbc. One dedicated connection, used by one
thread at a time (an ``asyncio.Lock`` around ``asyncio.to_thread``), in
autocommit mode with explicit ``BEGIN``/``COMMIT`` so no transaction (and no
snapshot pinning tempdb versions) stays open between polls.

Each ``fetch_since`` is one SNAPSHOT transaction (``docs/sqlserver-change-tracking.md`` §5):
the current version and every tracked table's min valid version (one
statement), CHANGETABLE of each joined back, the shadow map consulted for the
changed keys, then the complete state (TRANSCRIPTDETAIL, SECTIONPER, ACADEMIC,
account details) of every touched person-term, then COMMIT. When the current
version is the saved one nothing was committed since: the CHANGETABLE reads
are skipped and an idle poll is four statements, one row. With
``snapshot_isolation=False`` it runs the documented fallback under READ
COMMITTED: current version first, changes after, the min valid version checked
again at the end; changes newer than ``to_version`` may appear and come again
next poll (duplicates, never losses).

A caller cancelled mid-transaction does not leave the connection half-used:
the work runs in a shielded task that always commits or rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

import pyodbc
import structlog

from cdc.errors import (
    ChangeTrackingVersionTooOld,
    SourceMisconfigured,
    SourceUnavailable,
)
from cdc.ports import (
    TRACKED_TABLES,
    ChangeBatch,
    PersonTerm,
    RowOwner,
    ShadowLookup,
    Snapshot,
    StandingRow,
    TeachingRow,
    TrackedTable,
    TranscriptRow,
)
from cdc.rows import (
    deleted_keys,
    key_change,
    person_details,
    standing_row,
    teaching_row,
    transcript_row,
)
from connectors.sqlserver import rows, sql
from connectors.sqlserver.checks import (
    CheckReport,
    check_driver,
    classify,
    run_checks,
    view_change_tracking_missing,
)
from connectors.sqlserver.config import connection_string, secrets_of, tls_caveat
from schemas.collation import collate

if TYPE_CHECKING:
    from datetime import date, datetime

    from connectors.sqlserver.config import SqlServerSettings
    from schemas.events import PersonDetails, TermKey

log = structlog.get_logger()
T = TypeVar("T")
R = TypeVar("R", TranscriptRow, TeachingRow, StandingRow)
Connect = Callable[[], Any]


@contextlib.contextmanager
def map_pyodbc_errors(secrets: Sequence[str] = ()) -> Iterator[None]:
    """Translate any ``pyodbc.Error`` (and ``pyodbc.Warning``) into our error types.

    ``SourceUnavailable`` (retriable) or ``SourceMisconfigured`` with a message
    that says what to do; ``secrets`` never reach the message.
    """
    try:
        yield
    except (pyodbc.Error, pyodbc.Warning) as exc:
        raise classify(type(exc).__name__, exc.args, secrets) from exc


def installed_drivers() -> list[str]:
    """The ODBC drivers unixODBC knows (``odbcinst -q -d``)."""
    return list(pyodbc.drivers())


def connect(settings: SqlServerSettings) -> Any:
    """A new autocommit connection with the login and query timeouts applied."""
    check_driver(settings.driver, installed_drivers())
    log.debug(
        "sqlserver_connecting", connection=connection_string(settings, masked=True)
    )
    with map_pyodbc_errors(secrets_of(settings)):
        connection = pyodbc.connect(
            connection_string(settings),
            autocommit=True,
            timeout=settings.login_timeout_s,
        )
        connection.timeout = settings.query_timeout_s
    return connection


class SqlServerChangeSource:
    """``ChangeSource`` over one pyodbc connection (see the module docstring)."""

    def __init__(
        self,
        settings: SqlServerSettings,
        *,
        name: str = "powercampus",
        connect_with: Connect | None = None,
        tables: Sequence[TrackedTable] = TRACKED_TABLES,
    ) -> None:
        """Nothing connects yet; ``open()`` (or the first read) does.

        ``tables``: what to track (TRANSCRIPTDETAIL always); the start-up checks
        require change tracking on each.
        """
        self.name = name
        self.tables: tuple[TrackedTable, ...] = (
            "TRANSCRIPTDETAIL",
            *(t for t in TRACKED_TABLES if t in tables and t != "TRANSCRIPTDETAIL"),
        )
        self._settings = settings
        self._snapshot = settings.snapshot_isolation
        self._secrets = secrets_of(settings)
        self._connect = connect_with or (lambda: connect(settings))
        self._connection: Any = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._report: CheckReport | None = None
        #: False once reading commit times was refused (no VIEW SERVER STATE).
        self._commit_times_readable = True

    def __repr__(self) -> str:
        """Names the server, never the credentials."""
        return (
            f"SqlServerChangeSource(name={self.name!r},"
            f" server={self._settings.server!r},"
            f" database={self._settings.database!r})"
        )

    async def __aenter__(self) -> Self:
        """Connect and run the start-up checks."""
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the connection."""
        await self.close()

    async def open(self) -> CheckReport:
        """Connect and run every start-up check.

        Warns when snapshot isolation is off and when SQL Server's certificate
        goes unchecked (``tls_caveat``).
        """
        caveat = tls_caveat(self._settings)
        if caveat is not None:
            log.warning(
                "sqlserver_certificate_not_checked",
                driver=self._settings.driver,
                server=self._settings.server,
                what_to_do=caveat,
            )
        if not self._snapshot:
            log.warning(
                "snapshot_isolation_off",
                consequence="READ COMMITTED fallback: duplicates, never losses",
            )
        report = await self._exclusive(self._run(self._checks))
        self._report = report
        log.info(
            "sqlserver_source_ready",
            database=report.database,
            current_version=report.current_version,
            min_valid_version=report.min_valid_version,
        )
        return report

    async def fetch_since(
        self,
        last_version: int,
        shadow: ShadowLookup,
        *,
        live_terms: Sequence[TermKey] = (),
    ) -> ChangeBatch:
        """Net changes after ``last_version`` and the state they touch."""
        await self._ensure_open()
        return await self._exclusive(self._fetch(last_version, shadow, live_terms))

    async def read_snapshot(self, terms: Sequence[TermKey]) -> Snapshot:
        """Every tracked row of ``terms`` and the version it is consistent with."""
        await self._ensure_open()
        terms = tuple(terms)
        return await self._exclusive(self._run(lambda c: self._snapshot_read(c, terms)))

    async def live_terms(self, today: date) -> Sequence[TermKey]:
        """Terms with an ACADEMICCALENDAR session whose dates include ``today``."""

        def read(cursor: Any) -> list[TermKey]:
            return rows.distinct_terms(
                cursor.execute(sql.LIVE_TERMS, today, today).fetchall()
            )

        await self._ensure_open()
        return await self._exclusive(self._run(read))

    async def close(self) -> None:
        """Wait for in-flight work, then close the connection."""
        async with self._lock:
            if self._connection is not None:
                await asyncio.to_thread(self._discard)

    async def _ensure_open(self) -> None:
        """The start-up checks run before the first read, whoever wired us."""
        if self._report is None:
            await self.open()

    # --- transaction bodies (run in a worker thread) -------------------------------

    def _checks(self, cursor: Any) -> CheckReport:
        return run_checks(cursor, snapshot_required=self._snapshot, tables=self.tables)

    def _begin(self, cursor: Any) -> None:
        if self._snapshot:
            cursor.execute(sql.SET_SNAPSHOT)
            cursor.execute(sql.BEGIN_TRANSACTION)
        else:
            cursor.execute(sql.SET_READ_COMMITTED)

    def _read_changes(
        self, cursor: Any, last_version: int
    ) -> tuple[int, list[Any], dict[TrackedTable, list[Any]], dict[int, datetime]]:
        self._begin(cursor)
        current = self._read_versions(cursor, last_version)
        found: list[Any] = []
        keyed: dict[TrackedTable, list[Any]] = {table: [] for table in self.tables[1:]}
        if current > last_version:
            # Nothing committed since: CHANGETABLE would return no row (in the
            # snapshot no change is newer than the current version; without one
            # a change committed since is read by the next poll, from the same
            # saved version).
            found = list(cursor.execute(sql.CHANGES, last_version).fetchall())
            for table in keyed:
                query = sql.key_changes_query(table)
                keyed[table] = list(cursor.execute(query, last_version).fetchall())
            if not self._snapshot:
                # Without a snapshot, cleanup may have run while we read: re-validate.
                self._check_min_valid(cursor, last_version)
        changed = found or any(keyed.values())
        times = (
            self._commit_times(cursor, last_version, int(current)) if changed else {}
        )
        return current, found, keyed, times

    def _read_versions(self, cursor: Any, last_version: int) -> int:
        """The current version, once every table's min valid version allows ``last``.

        One statement (``sql.versions_query``); ``ChangeTrackingVersionTooOld``
        below a table's min valid version, the VIEW CHANGE TRACKING error for a
        NULL (not tracked, or no permission).
        """
        row = cursor.execute(sql.versions_query(self.tables)).fetchone()
        if row is None:
            raise view_change_tracking_missing()
        current, *min_valid = row
        for version in min_valid:
            if version is None:
                raise view_change_tracking_missing()
            if last_version < int(version):
                raise ChangeTrackingVersionTooOld(last_version, int(version))
        if current is None:
            raise view_change_tracking_missing()
        return int(current)

    def _commit_times(
        self, cursor: Any, last_version: int, current: int
    ) -> dict[int, datetime]:
        """Commit times of the batch's versions; {} once the login may not read them."""
        if not self._commit_times_readable:
            return {}
        try:
            with map_pyodbc_errors(self._secrets):
                found = cursor.execute(sql.COMMIT_TIMES, last_version, current)
                return rows.commit_times(found.fetchall())
        except SourceMisconfigured as exc:
            # Latency is then measured from the poll, not the commit: worth a
            # warning, never worth stopping capture for.
            self._commit_times_readable = False
            log.warning(
                "commit_times_unreadable",
                error=str(exc),
                consequence="events carry no commit time; commit-to-Moodle latency "
                "is not measured",
                what_to_do="GRANT VIEW SERVER STATE (VIEW SERVER PERFORMANCE STATE "
                "on SQL Server 2022) to the login; see docs/dba.md",
            )
            return {}

    def _check_min_valid(self, cursor: Any, last_version: int) -> None:
        for table in self.tables:
            min_valid = _scalar(cursor, sql.min_valid_version(table))
            if min_valid is None:
                raise view_change_tracking_missing()
            if last_version < int(min_valid):
                raise ChangeTrackingVersionTooOld(last_version, int(min_valid))

    def _read_person_terms(
        self, cursor: Any, persons: Sequence[str], live: Sequence[TermKey]
    ) -> dict[str, list[TermKey]]:
        """The terms of each person of a person-table change (``live`` ones only)."""
        teaching = "SECTIONPER" in self.tables
        found: list[Any] = []
        for chunk in sql.chunked(persons, sql.PERSONS_PER_CHUNK):
            query = sql.person_terms_query(len(chunk), teaching=teaching)
            params = [*chunk, *chunk] if teaching else list(chunk)
            found += cursor.execute(query, *params).fetchall()
        return rows.terms_of_persons(persons, found, live)

    def _read_state(self, cursor: Any, keys: Sequence[PersonTerm]) -> dict[str, Any]:
        """Every tracked table's rows of the person-terms, then COMMIT."""
        state: dict[str, Any] = {
            "term_state": self._by_keys(
                cursor, keys, sql.term_state_query, transcript_row
            )
        }
        if "SECTIONPER" in self.tables:
            state["teaching"] = self._by_keys(
                cursor, keys, sql.teaching_query, teaching_row
            )
        if "ACADEMIC" in self.tables:
            state["standing"] = self._by_keys(
                cursor, keys, sql.standing_query, standing_row
            )
        if "PEOPLE" in self.tables:
            persons = list(dict.fromkeys(key.people_code_id for key in keys))
            state["people"], state["owners"] = self._people(cursor, persons)
        self._commit(cursor)
        return state

    @staticmethod
    def _by_keys(
        cursor: Any,
        keys: Sequence[PersonTerm],
        query_for: Callable[[int], str],
        convert: Callable[[Sequence[Any]], R],
    ) -> dict[PersonTerm, tuple[R, ...]]:
        found: list[R] = []
        for chunk in sql.chunked(keys, sql.KEYS_PER_CHUNK):
            result = cursor.execute(
                query_for(len(chunk)), *rows.term_key_params(chunk)
            ).fetchall()
            found += [convert(row) for row in result]
        return rows.group_term_state(keys, found)

    @staticmethod
    def _people(
        cursor: Any, persons: Sequence[str]
    ) -> tuple[dict[str, PersonDetails], list[RowOwner]]:
        found: list[Any] = []
        for chunk in sql.chunked(persons, sql.PERSONS_PER_CHUNK):
            found += cursor.execute(sql.people_query(len(chunk)), *chunk).fetchall()
        details, owners = person_details(found)
        by_fold = {collate(p): d for p, d in details.items()}
        return (
            {p: by_fold[collate(p)] for p in persons if collate(p) in by_fold},
            owners,
        )

    def _snapshot_read(self, cursor: Any, terms: Sequence[TermKey]) -> Snapshot:
        self._begin(cursor)
        current = _scalar(cursor, sql.CURRENT_VERSION)
        if current is None:
            raise SourceMisconfigured(
                "CHANGE_TRACKING_CURRENT_VERSION() is NULL: change tracking is off for "
                "the database; run `enrolstream source check`"
            )
        found = self._by_terms(cursor, terms, sql.snapshot_query, transcript_row)
        extra: dict[str, Any] = {}
        teaching: list[TeachingRow] = []
        if "SECTIONPER" in self.tables:
            teaching = self._by_terms(
                cursor, terms, sql.teaching_snapshot_query, teaching_row
            )
            extra["teaching"] = tuple(teaching)
        if "ACADEMIC" in self.tables:
            extra["standing"] = tuple(
                self._by_terms(cursor, terms, sql.standing_snapshot_query, standing_row)
            )
        if "PEOPLE" in self.tables:
            persons = list(
                dict.fromkeys(
                    [r.people_code_id for r in found]
                    + [t.people_code_id for t in teaching]
                )
            )
            people, owners = self._people(cursor, persons)
            extra |= {"people": people, "owners": tuple(owners)}
        self._commit(cursor)
        return Snapshot(
            version=int(current), terms=tuple(terms), rows=tuple(found), **extra
        )

    @staticmethod
    def _by_terms(
        cursor: Any,
        terms: Sequence[TermKey],
        query_for: Callable[[int], str],
        convert: Callable[[Sequence[Any]], R],
    ) -> list[R]:
        found: list[R] = []
        for chunk in sql.chunked(terms, sql.TERMS_PER_CHUNK):
            result = cursor.execute(
                query_for(len(chunk)), *rows.term_params(chunk)
            ).fetchall()
            found += [convert(row) for row in result]
        return found

    def _commit(self, cursor: Any) -> None:
        if self._snapshot:
            cursor.execute(sql.COMMIT_TRANSACTION)

    # --- plumbing ------------------------------------------------------------------

    async def _fetch(
        self, last_version: int, shadow: ShadowLookup, live: Sequence[TermKey]
    ) -> ChangeBatch:
        async with self._lock:
            try:
                current, found, keyed_rows, times = await self._in_thread(
                    lambda c: self._read_changes(c, last_version)
                )
                # The shadow map is the poller's: consult it on the loop's thread.
                known = shadow.lookup(rows.changed_keys(found))
                changes = [rows.change_row(row, known) for row in found]
                keyed = [
                    key_change(table, row, owners)
                    for table, table_rows in keyed_rows.items()
                    for owners in [
                        shadow.owners(table, deleted_keys(table, table_rows))
                    ]
                    for row in table_rows
                ]
                persons = rows.person_table_persons(keyed)
                terms_of = await self._in_thread(
                    lambda c: self._read_person_terms(c, persons, live)
                )
                keys = rows.touched(changes, keyed, terms_of)
                state = await self._in_thread(lambda c: self._read_state(c, keys))
            except BaseException:
                await asyncio.to_thread(self._rollback)
                raise
        return ChangeBatch(
            from_version=last_version,
            to_version=current,
            changes=tuple(changes),
            key_changes=tuple(keyed),
            person_terms=terms_of,
            commit_times=times,
            **state,
        )

    async def _run(self, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` in a worker thread under the lock; roll back on failure."""
        async with self._lock:
            try:
                return await self._in_thread(work)
            except BaseException:
                await asyncio.to_thread(self._rollback)
                raise

    async def _in_thread(self, work: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._call, work)

    def _call(self, work: Callable[[Any], T]) -> T:
        try:
            with map_pyodbc_errors(self._secrets):
                if self._connection is None:
                    self._connection = self._connect()
                cursor = self._connection.cursor()
                try:
                    return work(cursor)
                finally:
                    cursor.close()
        except SourceUnavailable:
            self._discard()  # a broken link is not reused: reconnect next time
            raise

    def _rollback(self) -> None:
        if self._connection is None:
            return
        try:
            with map_pyodbc_errors(self._secrets):
                self._connection.execute(sql.ROLLBACK_IF_OPEN)
        except (SourceUnavailable, SourceMisconfigured):
            self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(pyodbc.Error):
                connection.close()

    async def _exclusive(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to completion even if the caller is cancelled."""
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)


def _scalar(cursor: Any, statement: str) -> Any:
    row = cursor.execute(statement).fetchone()
    return None if row is None else row[0]
