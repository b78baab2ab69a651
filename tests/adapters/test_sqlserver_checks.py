"""Start-up checks against fake cursors answering as SQL Server would, and the error map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyodbc
import pytest

from cdc.errors import SourceError, SourceMisconfigured, SourceUnavailable
from connectors.sqlserver import sql
from connectors.sqlserver.checks import (
    NATIVE_RULES,
    SQLSTATE_RULES,
    CheckReport,
    check_driver,
    classify,
    native_error,
    run_checks,
)
from connectors.sqlserver.source import map_pyodbc_errors

MS = "[Microsoft][ODBC Driver 18 for SQL Server]"


def driver_error(
    cls: type[Exception], sqlstate: str, text: str, native: int
) -> Exception:
    """A pyodbc error shaped as the driver raises it: args are (sqlstate, message)."""
    return cls(sqlstate, f"[{sqlstate}] {text} ({native}) (SQLExecDirectW)")


class CatalogCursor:
    """Answers the check queries from a dict of statement -> rows (or an error)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.rows: Sequence[Sequence[Any]] = []

    def execute(self, statement: str, *params: Any) -> CatalogCursor:
        answer = self.answers.get(statement, [])
        if isinstance(answer, Exception):
            raise answer
        self.rows = answer
        return self

    def fetchone(self) -> Sequence[Any] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> Sequence[Sequence[Any]]:
        return self.rows


def healthy() -> dict[str, Any]:
    """What a correctly set-up PowerCampus database answers."""
    return {
        sql.DATABASE_STATE: [("Campus6", 1, "ON", 42)],
        sql.TABLE_STATE: [(245575913, 1, 7)],
        sql.PRIMARY_KEY_COLUMNS: [("TranscriptDetailId",)],
    }


class TestRunChecks:
    """Each misconfiguration fails with a message that says what to do."""

    def test_healthy_database_reports_versions(self) -> None:
        """A correctly configured database yields its versions and snapshot state."""
        report = run_checks(CatalogCursor(healthy()), snapshot_required=True)
        assert report == CheckReport("Campus6", 42, 7, "ON")

    @pytest.mark.parametrize(
        ("statement", "answer", "advice"),
        [
            (
                sql.DATABASE_STATE,
                [("Campus6", 1, "ON", None)],
                "ALTER DATABASE Campus6 SET CHANGE_TRACKING = ON",
            ),
            (
                sql.DATABASE_STATE,
                [("Campus6", 0, "OFF", 42)],
                "SET ALLOW_SNAPSHOT_ISOLATION ON",
            ),
            (
                sql.DATABASE_STATE,
                [("Campus6", 3, "IN_TRANSITION_TO_ON", 42)],
                "SET ALLOW_SNAPSHOT_ISOLATION ON",
            ),
            (
                sql.TABLE_STATE,
                [(None, 0, None)],
                "GRANT SELECT ON dbo.TRANSCRIPTDETAIL",
            ),
            (
                sql.TABLE_STATE,
                [(245575913, 0, None)],
                "ALTER TABLE dbo.TRANSCRIPTDETAIL ENABLE CHANGE_TRACKING",
            ),
            (
                sql.TABLE_STATE,
                [(245575913, 1, None)],
                "GRANT VIEW CHANGE TRACKING ON dbo.TRANSCRIPTDETAIL",
            ),
            (sql.PRIMARY_KEY_COLUMNS, [], "found: no primary key"),
            (
                sql.PRIMARY_KEY_COLUMNS,
                [("PEOPLE_CODE_ID",), ("EVENT_ID",)],
                "found: PEOPLE_CODE_ID, EVENT_ID",
            ),
        ],
    )
    def test_misconfiguration(self, statement: str, answer: Any, advice: str) -> None:
        """The failing check raises SourceMisconfigured naming the fix."""
        answers = healthy() | {statement: answer}
        with pytest.raises(SourceMisconfigured) as caught:
            run_checks(CatalogCursor(answers), snapshot_required=True)
        assert advice in str(caught.value)

    def test_snapshot_not_required_in_fallback(self) -> None:
        """With snapshot_isolation off, a database without snapshot isolation passes."""
        answers = healthy() | {sql.DATABASE_STATE: [("Campus6", 0, "OFF", 42)]}
        report = run_checks(CatalogCursor(answers), snapshot_required=False)
        assert report.snapshot_isolation == "OFF"

    def test_missing_select_permission_on_a_read_table(self) -> None:
        """A denied SELECT on ACADEMICCALENDAR points at the grant script."""
        denied = driver_error(
            pyodbc.ProgrammingError,
            "42000",
            f"{MS}[SQL Server]The SELECT permission was denied on the object "
            "'ACADEMICCALENDAR', database 'Campus6', schema 'dbo'.",
            229,
        )
        answers = healthy() | {sql.READ_PROBES[1]: denied}
        with (
            pytest.raises(SourceMisconfigured, match=r"grant script of docs/dba\.md"),
            map_pyodbc_errors(),
        ):
            run_checks(CatalogCursor(answers), snapshot_required=True)


class TestCheckDriver:
    """The configured ODBC driver must be registered with unixODBC."""

    @pytest.mark.parametrize(
        ("installed", "listed"),
        [(["FreeTDS"], "installed: FreeTDS"), ([], "installed: none")],
    )
    def test_missing_driver_lists_installed(
        self, installed: list[str], listed: str
    ) -> None:
        """A missing driver is named along with the installed ones."""
        with pytest.raises(SourceMisconfigured, match=listed):
            check_driver("ODBC Driver 18 for SQL Server", installed)

    def test_installed_driver_passes(self) -> None:
        """A registered driver passes."""
        check_driver("FreeTDS", ["FreeTDS", "ODBC Driver 18 for SQL Server"])


ERROR_SHAPES = [
    # (pyodbc class, sqlstate, driver text, native, expected type, advice)
    (
        pyodbc.OperationalError,
        "08001",
        f"{MS}TCP Provider: Error code 0x2749",
        10057,
        SourceUnavailable,
        "cannot reach",
    ),
    (
        pyodbc.OperationalError,
        "08S01",
        (
            "[FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or "
            "does not exist"
        ),
        20009,
        SourceUnavailable,
        "cannot reach",
    ),
    (
        pyodbc.OperationalError,
        "08S01",
        f"{MS}Communication link failure",
        0,
        SourceUnavailable,
        "lost",
    ),
    (
        pyodbc.OperationalError,
        "HYT00",
        f"{MS}Login timeout expired",
        0,
        SourceUnavailable,
        "timeout",
    ),
    (
        pyodbc.OperationalError,
        "HYT00",
        f"{MS}Query timeout expired",
        0,
        SourceUnavailable,
        "timeout",
    ),
    (
        pyodbc.InterfaceError,
        "28000",
        f"{MS}[SQL Server]Login failed for user 'enrolstream'.",
        18456,
        SourceMisconfigured,
        "login failed",
    ),
    (
        pyodbc.InterfaceError,
        "42000",
        (
            f'{MS}[SQL Server]Cannot open database "Campus7" requested by the login. '
            "The login failed."
        ),
        4060,
        SourceMisconfigured,
        "database name",
    ),
    (
        pyodbc.ProgrammingError,
        "42000",
        (
            f"{MS}[SQL Server]Snapshot isolation transaction failed accessing database "
            "'Campus6' because snapshot isolation is not allowed in this database."
        ),
        3952,
        SourceMisconfigured,
        "ALLOW_SNAPSHOT_ISOLATION",
    ),
    (
        pyodbc.ProgrammingError,
        "42000",
        f"{MS}[SQL Server]Change tracking is not enabled on table 'TRANSCRIPTDETAIL'.",
        22105,
        SourceMisconfigured,
        "ENABLE CHANGE_TRACKING",
    ),
    (
        pyodbc.ProgrammingError,
        "42S02",
        f"{MS}[SQL Server]Invalid object name 'dbo.ACADEMICCALENDAR'.",
        208,
        SourceMisconfigured,
        "missing",
    ),
    (
        pyodbc.ProgrammingError,
        "42S22",
        f"{MS}[SQL Server]Invalid column name 'ADD_DROP_WAIT'.",
        207,
        SourceMisconfigured,
        "column",
    ),
    (
        pyodbc.OperationalError,
        "40001",
        (
            f"{MS}[SQL Server]Transaction (Process ID 57) was deadlocked on lock resources "
            "with another process and has been chosen as the deadlock victim."
        ),
        1205,
        SourceUnavailable,
        "deadlock",
    ),
    (
        pyodbc.OperationalError,
        "40001",
        (
            f"{MS}[SQL Server]Snapshot isolation transaction aborted due to update "
            "conflict."
        ),
        3960,
        SourceUnavailable,
        "snapshot update conflict",
    ),
    (
        pyodbc.InterfaceError,
        "IM002",
        (
            "[unixODBC][Driver Manager]Data source name not found and no default driver "
            "specified"
        ),
        0,
        SourceMisconfigured,
        "odbcinst",
    ),
    (
        pyodbc.Error,
        "01000",
        (
            "[unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server' : "
            "file not found"
        ),
        0,
        SourceMisconfigured,
        "driver name",
    ),
    (
        pyodbc.OperationalError,
        "08001",
        (
            f"{MS}SSL Provider: [error:0A000086:SSL routines::certificate verify "
            "failed:self-signed certificate]"
        ),
        -1,
        SourceMisconfigured,
        "trust_server_certificate",
    ),
]


class TestMapPyodbcErrors:
    """Driver errors become our typed errors; whether to retry is the type's."""

    @pytest.mark.parametrize(
        ("cls", "sqlstate", "text", "native", "expected", "advice"), ERROR_SHAPES
    )
    def test_known_shapes(
        self,
        cls: type[Exception],
        sqlstate: str,
        text: str,
        native: int,
        expected: type[SourceError],
        advice: str,
    ) -> None:
        """Each real driver error shape maps to the right type with advice."""
        original = driver_error(cls, sqlstate, text, native)
        with pytest.raises(SourceError) as caught, map_pyodbc_errors():
            raise original
        assert type(caught.value) is expected
        assert advice in str(caught.value)
        assert caught.value.__cause__ is original
        assert "\n" not in str(caught.value)

    @pytest.mark.parametrize(
        "cls",
        [
            pyodbc.Error,
            pyodbc.Warning,
            *pyodbc.Error.__subclasses__(),
            *pyodbc.DatabaseError.__subclasses__(),
        ],
    )
    @pytest.mark.parametrize(
        "args",
        [
            *[(state, f"[{state}] driver text") for state in SQLSTATE_RULES],
            ("ZZ999", "[ZZ999] an SQLSTATE nobody handles"),
            ("No results.  Previous SQL was not a query.",),
            (),
        ],
    )
    def test_map_is_total(self, cls: type[Exception], args: tuple[str, ...]) -> None:
        """Every pyodbc class with every handled, unknown or missing SQLSTATE maps to ours."""
        with pytest.raises(SourceError) as caught, map_pyodbc_errors():
            raise cls(*args)
        assert type(caught.value) in {SourceUnavailable, SourceMisconfigured}

    def test_every_pyodbc_error_class_is_covered(self) -> None:
        """The totality test above lists every exception class pyodbc exports."""
        exported = {
            value
            for value in vars(pyodbc).values()
            if isinstance(value, type) and issubclass(value, Exception)
        }
        covered = {
            pyodbc.Error,
            pyodbc.Warning,
            *pyodbc.Error.__subclasses__(),
            *pyodbc.DatabaseError.__subclasses__(),
        }
        assert exported <= covered

    @pytest.mark.parametrize(("native", "rule"), sorted(NATIVE_RULES.items()))
    def test_native_rules_win_over_sqlstate(self, native: int, rule: Any) -> None:
        """A known SQL Server error number decides the type whatever the SQLSTATE."""
        error = classify(
            "ProgrammingError", ("42000", f"[42000] text ({native}) (SQLExecDirectW)")
        )
        assert type(error) is rule[0]

    def test_password_never_in_message(self) -> None:
        """A secret echoed by a driver is masked in our message."""
        error = classify(
            "Error",
            ("28000", "[28000] bad PWD=hunter22; (18456) (SQLDriverConnect)"),
            secrets=("hunter22",),
        )
        assert "hunter22" not in str(error)

    @pytest.mark.parametrize(
        ("message", "native"),
        [
            ("[28000] Login failed for user 'x'. (18456) (SQLDriverConnect)", 18456),
            ("[08001] SSL Provider: bad (-1) (SQLDriverConnect)", -1),
            ("[42000] a; [01000] b (5701) (SQLExecDirectW)", 5701),
            ("No results.  Previous SQL was not a query.", None),
        ],
    )
    def test_native_error_number(self, message: str, native: int | None) -> None:
        """The SQL Server error number is read from pyodbc's message suffix."""
        assert native_error(message) == native
