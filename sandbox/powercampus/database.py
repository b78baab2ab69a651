"""``PowerCampusSandbox``: an embedded PowerCampus database with change tracking.

One SQLite file in WAL mode (readers keep a consistent snapshot while a writer
commits). Every write runs in one *tracked transaction*: ``BEGIN IMMEDIATE``
serialises writers, so the version the transaction is stamped with at its start
is also its commit order. Triggers record each tracked row change against that
version; at commit the version is consumed only if a tracked row changed.

Thread-safe: the connection is shared behind a lock, so the object can be used
from ``asyncio.to_thread`` workers.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sandbox.powercampus import changetracking as ct
from sandbox.powercampus.changetracking import ChangeTableRow, CleanupResult
from sandbox.powercampus.schema import (
    CHANGE_TRACKING_CATALOG,
    POWERCAMPUS_TABLES,
    POWERCAMPUS_TRACKED,
    split_statements,
)

Params = Sequence[Any] | dict[str, Any]
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE
)
_TRUNCATE = re.compile(
    r"^\s*TRUNCATE\s+TABLE\s+(?:dbo\.)?\[?(\w+)\]?\s*$", re.IGNORECASE
)


class SandboxError(Exception):
    """Root of the sandbox's errors."""


class StatementFailed(SandboxError):
    """A statement of a tracked transaction failed; the whole transaction was rolled back."""

    def __init__(self, index: int, count: int, statement: str, cause: str) -> None:
        super().__init__(
            f"statement {index} of {count} failed: {cause}; the transaction was rolled "
            f"back and consumed no version. Statement: {statement}"
        )
        self.index = index
        self.statement = statement
        self.cause = cause


@dataclass(frozen=True, slots=True)
class RunResult:
    """What ``run`` did: the committed version and the last result set, if any."""

    version: int | None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = field(default_factory=tuple)


class TrackedTransaction:
    """The handle of an open tracked transaction (see ``PowerCampusSandbox.transaction``)."""

    def __init__(self, conn: sqlite3.Connection, version: int) -> None:
        self._conn = conn
        #: The version the transaction commits if it changes a tracked row.
        self.pending_version = version
        #: After the ``with`` block: the committed version, or None (nothing tracked).
        self.committed_version: int | None = None

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        """Run one statement inside the transaction."""
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> sqlite3.Cursor:
        """Run one statement for each parameter row inside the transaction."""
        return self._conn.executemany(sql, rows)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PowerCampusSandbox:
    """A PowerCampus database file with SQL Server change tracking reproduced."""

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        busy_timeout_s: float = 5.0,
    ) -> None:
        """Open (not create) the database at ``path``; ``clock`` stamps commit times."""
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_s,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")

    def __enter__(self) -> Self:
        """Use as a context manager: closes on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the connection."""
        self.close()

    def create(self, tracked: Sequence[str] = POWERCAMPUS_TRACKED) -> None:
        """Create the tables and enable change tracking on ``tracked``; idempotent.

        By default every table enrolstream reads is tracked (``POWERCAMPUS_TRACKED``).
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in split_statements(
                    POWERCAMPUS_TABLES + CHANGE_TRACKING_CATALOG
                ):
                    self._conn.execute(statement)
                for table in tracked:
                    ct.enable(self._conn, table)
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def enable_change_tracking(self, table: str) -> bool:
        """Start tracking ``table``; False when it already was. Min valid = current."""
        with self._write() as conn:
            return ct.enable(conn, table)

    def disable_change_tracking(self, table: str) -> None:
        """Stop tracking ``table`` and drop its history."""
        with self._write() as conn:
            ct.disable(conn, table)

    @contextmanager
    def transaction(self) -> Iterator[TrackedTransaction]:
        """One tracked write transaction: commits on exit, rolls back on an exception.

        Afterwards ``committed_version`` holds the version consumed (None when no
        tracked row changed).
        """
        with self._write() as conn:
            handle = TrackedTransaction(conn, ct.begin(conn))
            yield handle
            handle.committed_version = ct.finish(conn, self._commit_time())

    def run(self, sql: str, params: Params = ()) -> RunResult:
        """Run statements (``;``-separated) in ONE tracked transaction.

        Returns the committed version (None if no tracked row changed) and the rows
        of the last statement that returned any. Any failure rolls everything back
        and raises ``StatementFailed``. Positional ``params`` need a single
        statement; a dict of named parameters is offered to every statement.
        ``TRUNCATE TABLE t`` (alone) is supported and goes through ``truncate``.
        """
        statements = split_statements(sql)
        if not statements:
            raise SandboxError("no SQL statement given")
        if len(statements) > 1 and not isinstance(params, dict) and params:
            raise SandboxError("positional parameters need a single statement")
        if any(_TRANSACTION_CONTROL.match(s) for s in statements):
            raise SandboxError(
                "statements run in one tracked transaction; leave out BEGIN/COMMIT"
            )
        truncated = [m.group(1) for s in statements if (m := _TRUNCATE.match(s))]
        if truncated:
            if len(statements) > 1:
                raise SandboxError("TRUNCATE TABLE must be the only statement")
            return RunResult(self.truncate(truncated[0]))
        columns: tuple[str, ...] = ()
        rows: tuple[tuple[Any, ...], ...] = ()
        with self.transaction() as tx:
            for index, statement in enumerate(statements, start=1):
                try:
                    cursor = tx.execute(statement, params)
                    if cursor.description is not None:
                        columns = tuple(d[0] for d in cursor.description)
                        rows = tuple(tuple(r) for r in cursor.fetchall())
                except sqlite3.Error as exc:
                    raise StatementFailed(
                        index, len(statements), statement, str(exc)
                    ) from exc
        return RunResult(tx.committed_version, columns, rows)

    def execute(self, sql: str, params: Params = ()) -> int | None:
        """Run statements in one tracked transaction; the version committed, or None."""
        return self.run(sql, params).version

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only SELECT, read in its own snapshot."""
        with self._read() as conn:
            return [tuple(row) for row in conn.execute(sql, params)]

    def current_version(self) -> int:
        """CHANGE_TRACKING_CURRENT_VERSION()."""
        with self._read() as conn:
            return ct.current_version(conn)

    def min_valid_version(self, table: str = "TRANSCRIPTDETAIL") -> int | None:
        """CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(table)); None when not tracked."""
        with self._read() as conn:
            return ct.min_valid_version(conn, table)

    def tracked_tables(self) -> list[str]:
        """The tables change tracking is enabled on."""
        with self._read() as conn:
            return ct.tracked_tables(conn)

    def changes_since(
        self, last: int | None, table: str = "TRANSCRIPTDETAIL"
    ) -> list[ChangeTableRow]:
        """CHANGETABLE(CHANGES table, last): net changes after ``last`` (None: all kept)."""
        with self._read() as conn:
            return ct.changes(conn, table, last)

    def cleanup(
        self, retain_versions: int | None = None, older_than: timedelta | None = None
    ) -> CleanupResult:
        """Run retention now: purge history beyond it and raise min valid versions.

        ``retain_versions`` keeps the latest N versions; ``older_than`` keeps commits
        younger than that (by the commit times stored). Given both, what either
        keeps is kept. Cleanup consumes no version.
        """
        if retain_versions is None and older_than is None:
            raise SandboxError("cleanup needs retain_versions or older_than")
        if retain_versions is not None and retain_versions < 0:
            raise SandboxError("retain_versions must be >= 0")
        cutoff = None if older_than is None else self._stamp(self._clock() - older_than)
        with self._write() as conn:
            return ct.cleanup(
                conn, ct.cleanup_version_for(conn, retain_versions, cutoff)
            )

    def truncate(self, table: str) -> int:
        """TRUNCATE TABLE: rows go untracked and the table's CT info resets.

        Returns the version of the truncating transaction, which becomes the
        table's min valid version: clients synced before must re-initialise.
        """
        with self._write() as conn:
            ct.begin(conn)
            ct.truncate(conn, table)
            version = ct.finish(conn, self._commit_time(), force=True)
        assert version is not None  # noqa: S101 - force=True always consumes one
        return version

    def row_counts(self) -> dict[str, int]:
        """Rows per PowerCampus table."""
        tables = (
            "TRANSCRIPTDETAIL",
            "SECTIONS",
            "SECTIONPER",
            "ACADEMIC",
            "CODE_ENROLLMENT",
            "PEOPLE",
            "EmailAddress",
            "PersonUser",
            "ACADEMICCALENDAR",
        )
        with self._read() as conn:
            return {
                t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in tables
            }

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn.in_transaction:
                raise SandboxError("a sandbox transaction is already open (no nesting)")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _commit_time(self) -> str:
        return self._stamp(self._clock())

    @staticmethod
    def _stamp(moment: datetime) -> str:
        if moment.tzinfo is None:
            raise SandboxError("the sandbox clock must return timezone-aware datetimes")
        return moment.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
