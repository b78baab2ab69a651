"""Harnesses that run the ChangeSource contract against each implementation.

A harness owns one fresh PowerCampus-shaped database with change tracking on
TRANSCRIPTDETAIL: ``execute(statements)`` runs portable SQL in ONE transaction
and returns the current version after it, ``make_source()`` builds the
ChangeSource under test, ``invalidate_history()`` makes every version before
now invalid (TRUNCATE TABLE: CT info resets, min valid version jumps).

* sandbox: ``sandbox.powercampus`` (SQLite with CT reproduced), always runs.
* sqlserver: SQL Server 2022 in testcontainers; skipped with the reason when no
  Docker engine answers (as on our machines and CI).
"""

from __future__ import annotations

import gc
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import SecretStr

from cdc.ports import ChangeSource
from connectors.sqlserver.sql import CURRENT_VERSION
from enrolstream.settings import SqlServerSettings
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.source import SandboxChangeSource

SQLSERVER_IMAGE = "mcr.microsoft.com/mssql/server:2022-latest"
SA_PASSWORD = "Contract!Pass1"  # noqa: S105 - throwaway container


class ContractHarness(Protocol):
    """One database under test, reachable through portable SQL and a ChangeSource."""

    name: str

    def execute(self, statements: Sequence[str]) -> int:
        """Run ``statements`` in one transaction; the current version after it."""
        ...

    def current_version(self) -> int:
        """CHANGE_TRACKING_CURRENT_VERSION()."""
        ...

    def make_source(self) -> ChangeSource:
        """A new ChangeSource reading this database."""
        ...

    def invalidate_history(self) -> None:
        """Make every version before now invalid (min valid version jumps)."""
        ...


class SandboxHarness:
    """The PowerCampus sandbox (``sandbox.powercampus``)."""

    name = "sandbox"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sandbox = PowerCampusSandbox(path)
        self.sandbox.create()

    def execute(self, statements: Sequence[str]) -> int:
        self.sandbox.execute(";\n".join(statements))
        return self.current_version()

    def current_version(self) -> int:
        return self.sandbox.current_version()

    def make_source(self) -> ChangeSource:
        source: ChangeSource = SandboxChangeSource(self.path, name="contract")
        return source

    def invalidate_history(self) -> None:
        self.sandbox.truncate("TRANSCRIPTDETAIL")

    def close(self) -> None:
        self.sandbox.close()


SQLSERVER_SCHEMA = (
    (
        "CREATE TABLE dbo.TRANSCRIPTDETAIL ("
        " TranscriptDetailId int NOT NULL CONSTRAINT PK_TRANSCRIPTDETAIL PRIMARY KEY,"
        " PEOPLE_CODE nvarchar(1) NOT NULL DEFAULT 'P', PEOPLE_ID nvarchar(9) NOT NULL,"
        " PEOPLE_CODE_ID nvarchar(10) NOT NULL, ACADEMIC_YEAR nvarchar(4) NOT NULL,"
        " ACADEMIC_TERM nvarchar(10) NOT NULL,"
        " ACADEMIC_SESSION nvarchar(10) NOT NULL DEFAULT '',"
        " EVENT_ID nvarchar(15) NOT NULL, EVENT_SUB_TYPE nvarchar(4) NOT NULL,"
        " SECTION nvarchar(4) NOT NULL, CREDIT_TYPE nvarchar(6) NULL,"
        " MID_GRADE nvarchar(4) NULL, FINAL_GRADE nvarchar(4) NULL,"
        " ADD_DROP_WAIT nvarchar(1) NOT NULL,"
        " TRANSCRIPT_SEQ nvarchar(3) NOT NULL DEFAULT '001')"
    ),
    (
        "CREATE TABLE dbo.SECTIONPER (ACADEMIC_YEAR nvarchar(4) NOT NULL,"
        " ACADEMIC_TERM nvarchar(10) NOT NULL, ACADEMIC_SESSION nvarchar(10) NOT NULL,"
        " EVENT_ID nvarchar(15) NOT NULL, EVENT_SUB_TYPE nvarchar(4) NOT NULL,"
        " SECTION nvarchar(4) NOT NULL, PERSON_CODE_ID nvarchar(10) NOT NULL,"
        " PERCENTAGE numeric(6, 2) NULL,"
        " CONSTRAINT SECTIONPER_PK PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM,"
        " ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID))"
    ),
    (
        "CREATE TABLE dbo.CODE_ENROLLMENT (CODE_VALUE_KEY nvarchar(8) NOT NULL"
        " PRIMARY KEY, LONG_DESC nvarchar(40) NULL,"
        " REQUIRE_SEPDATE nvarchar(1) NOT NULL DEFAULT 'N')"
    ),
    (
        "CREATE TABLE dbo.ACADEMIC (PEOPLE_CODE_ID nvarchar(10) NOT NULL,"
        " ACADEMIC_YEAR nvarchar(4) NOT NULL, ACADEMIC_TERM nvarchar(10) NOT NULL,"
        " ACADEMIC_SESSION nvarchar(10) NOT NULL, TRANSCRIPT_SEQ nvarchar(3) NOT NULL,"
        " ENROLL_SEPARATION nvarchar(8) NULL,"
        " CONSTRAINT ACADEMIC_PK PRIMARY KEY (PEOPLE_CODE_ID, ACADEMIC_YEAR,"
        " ACADEMIC_TERM, ACADEMIC_SESSION, TRANSCRIPT_SEQ))"
    ),
    (
        "CREATE TABLE dbo.PEOPLE (PEOPLE_CODE_ID nvarchar(10) NOT NULL PRIMARY KEY,"
        " PEOPLE_ID nvarchar(9) NULL, PersonId int NOT NULL UNIQUE,"
        " FIRST_NAME nvarchar(60) NULL, MIDDLE_NAME nvarchar(60) NULL,"
        " LAST_NAME nvarchar(60) NULL, Nickname nvarchar(60) NULL,"
        " PrimaryEmailId int NULL)"
    ),
    (
        "CREATE TABLE dbo.EmailAddress (EmailAddressId int NOT NULL PRIMARY KEY,"
        " PeopleOrgCodeId nvarchar(10) NOT NULL, EmailType nvarchar(10) NULL,"
        " Email nvarchar(100) NOT NULL, IsActive bit NOT NULL DEFAULT 1)"
    ),
    (
        "CREATE TABLE dbo.PersonUser (PersonUserId int NOT NULL PRIMARY KEY,"
        " PersonId int NOT NULL, UserName nvarchar(100) NOT NULL)"
    ),
    (
        "CREATE TABLE dbo.ACADEMICCALENDAR (ACADEMIC_YEAR nvarchar(4) NOT NULL,"
        " ACADEMIC_TERM nvarchar(10) NOT NULL, ACADEMIC_SESSION nvarchar(10) NOT NULL,"
        " SessionPeriodId int NULL, START_DATE datetime NULL, END_DATE datetime NULL,"
        " FINAL_END_DATE datetime NULL,"
        " PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION))"
    ),
    *(
        f"ALTER TABLE dbo.{table} ENABLE CHANGE_TRACKING"
        for table in (
            "TRANSCRIPTDETAIL",
            "SECTIONPER",
            "ACADEMIC",
            "PEOPLE",
            "EmailAddress",
            "PersonUser",
        )
    ),
)


class SqlServerHarness:
    """A fresh database with CT and snapshot isolation on, in a SQL Server container."""

    name = "sqlserver"

    def __init__(self, host: str, port: int) -> None:
        from connectors.sqlserver.source import connect, installed_drivers  # noqa: PLC0415 - pyodbc needs unixODBC (optional)

        driver = (
            "ODBC Driver 18 for SQL Server"
            if "ODBC Driver 18 for SQL Server" in installed_drivers()
            else "FreeTDS"
        )
        self.database = f"ct_{uuid.uuid4().hex[:12]}"
        self.settings = SqlServerSettings(
            driver=driver,
            server=host,
            port=port,
            database=self.database,
            user="sa",
            password=SecretStr(SA_PASSWORD),
            trust_server_certificate=True,
            login_timeout_s=10,
        )
        master = connect(self.settings.model_copy(update={"database": "master"}))
        for statement in (
            f"CREATE DATABASE {self.database}",
            f"ALTER DATABASE {self.database} SET ALLOW_SNAPSHOT_ISOLATION ON",
            (
                f"ALTER DATABASE {self.database} SET CHANGE_TRACKING = ON "
                "(CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)"
            ),
        ):
            master.execute(statement)
        master.close()
        self.connection: Any = connect(self.settings)
        for statement in SQLSERVER_SCHEMA:
            self.connection.execute(statement)

    def execute(self, statements: Sequence[str]) -> int:
        body = ";\n".join(statements)
        self.connection.execute(f"BEGIN TRANSACTION;\n{body};\nCOMMIT TRANSACTION")
        return self.current_version()

    def current_version(self) -> int:
        row = self.connection.execute(sql_current()).fetchone()
        return int(row[0])

    def make_source(self) -> ChangeSource:
        from connectors.sqlserver.source import SqlServerChangeSource  # noqa: PLC0415 - pyodbc needs unixODBC (optional)

        return SqlServerChangeSource(self.settings, name="contract")

    def invalidate_history(self) -> None:
        self.connection.execute("TRUNCATE TABLE dbo.TRANSCRIPTDETAIL")

    def close(self) -> None:
        self.connection.close()


def sql_current() -> str:
    return CURRENT_VERSION


def _docker_answers() -> str | None:
    """None when a Docker engine answers, else why not."""
    import docker  # noqa: PLC0415 - only where Docker may answer

    # The docker SDK leaks its socket when the engine is absent; collect it here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env()  # type: ignore[attr-defined]
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
            return (
                f"no Docker engine answers ({type(exc).__name__}): "
                "SQL Server contract skipped"
            )
        finally:
            gc.collect()
    return None


@pytest.fixture(name="sqlserver_container", scope="session")
def fixture_sqlserver_container() -> Iterator[tuple[str, int]]:
    reason = _docker_answers()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.community.mssql import SqlServerContainer  # noqa: PLC0415 - only where Docker answers

    container = SqlServerContainer(SQLSERVER_IMAGE, password=SA_PASSWORD)
    with container:
        yield container.get_container_host_ip(), int(container.get_exposed_port(1433))


@pytest.fixture(name="harness", params=["sandbox", "sqlserver"])
def fixture_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ContractHarness]:
    harness: SandboxHarness | SqlServerHarness
    if request.param == "sandbox":
        harness = SandboxHarness(tmp_path / "powercampus.sqlite")
    else:
        host, port = request.getfixturevalue("sqlserver_container")
        harness = SqlServerHarness(host, port)
    try:
        yield harness
    finally:
        harness.close()
