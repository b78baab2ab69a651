"""DDL of the PowerCampus sandbox: the PowerCampus tables and the change-tracking catalog.

Tables: TRANSCRIPTDETAIL (registrations), SECTIONS, SECTIONCROSSTALLY
(cross-tallied sections: one Moodle course), SECTIONPER (instructors),
ACADEMIC (term records: ENROLL_SEPARATION) with CODE_ENROLLMENT (which codes
separate: REQUIRE_SEPDATE), PEOPLE, EmailAddress, PersonUser and
ACADEMICCALENDAR. SECTIONCROSSTALLY's columns beyond the section's
(``TALLY_CODE``, the tally group) are not verified against a PowerCampus
database (docs/dba.md): the reader takes its column names from settings.
SECTIONPER's and ACADEMIC's keys are natural keys (a delete names the person
and the section or term); EmailAddress's and PersonUser's are surrogate ids (a
delete names a row only). Keys the domain notes mark as not
verified (ACADEMIC's, PersonUser's) are documented in ``docs/dba.md``.

The PowerCampus tables keep their real column names. SQL Server compares
``nvarchar`` values case-insensitively (``SQL_Latin1_General_CP1_CI_AS``) and
ignores trailing spaces (ANSI padding), so every key and unique index is built on
``rtrim(col) COLLATE NOCASE``: ``'BSC5102 '`` and ``'bsc5102'`` collide as they
would in PowerCampus. (SQLite's NOCASE folds ASCII only; the codes PowerCampus
keys on are ASCII.)

Change tracking is reproduced with three catalog tables and one side table per
tracked table:

* ``CT_STATE`` (one row): ``current_version`` = CHANGE_TRACKING_CURRENT_VERSION().
* ``CT_COMMIT`` (``syscommittab``): one row per committed transaction that changed
  a tracked row, with its commit time (age-based retention needs it).
* ``CT_TABLES`` (``sys.change_tracking_tables``): per tracked table its
  ``begin_version``, ``min_valid_version`` and ``cleanup_version``.
* ``CT_TRANSACTION``: the open write transaction's version; exists only inside
  a transaction (deleted before COMMIT), so no reader ever sees it.
* ``change_tracking_<TABLE>``: one entry per DML row operation, stamped with the
  transaction's version, carrying the primary key only (as SQL Server's does).

Triggers refuse DML outside a ``PowerCampusSandbox`` transaction: a write that
would not get a version must not happen silently.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

#: The six SECTIONS primary-key columns, also the section part of TRANSCRIPTDETAIL.
SECTION_COLUMNS = (
    "ACADEMIC_YEAR",
    "ACADEMIC_TERM",
    "ACADEMIC_SESSION",
    "EVENT_ID",
    "EVENT_SUB_TYPE",
    "SECTION",
)


def ci(column: str) -> str:
    """The expression PowerCampus keys compare on: trailing spaces ignored, case folded."""
    return f"rtrim({column}) COLLATE NOCASE"


_TEXT = "NVARCHAR"  # TEXT affinity; case-insensitivity lives in the indexes

POWERCAMPUS_TABLES = f"""
CREATE TABLE IF NOT EXISTS TRANSCRIPTDETAIL (
    TranscriptDetailId INTEGER PRIMARY KEY AUTOINCREMENT,
    PEOPLE_CODE {_TEXT}(1) NOT NULL DEFAULT 'P',
    PEOPLE_ID {_TEXT}(9) NOT NULL,
    PEOPLE_CODE_ID {_TEXT}(10) NOT NULL,
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    EVENT_ID {_TEXT}(15) NOT NULL,
    EVENT_SUB_TYPE {_TEXT}(4) NOT NULL,
    SECTION {_TEXT}(4) NOT NULL,
    TRANSCRIPT_SEQ {_TEXT}(3) NOT NULL DEFAULT '001',
    ORG_CODE_ID {_TEXT}(10),
    EVENT_TYPE {_TEXT}(4),
    EVENT_MED_NAME {_TEXT}(20),
    EVENT_LONG_NAME {_TEXT}(40),
    CREDIT_TYPE {_TEXT}(6),
    CREDIT NUMERIC(6, 3),
    MID_GRADE {_TEXT}(4),
    FINAL_GRADE {_TEXT}(4),
    ADD_DROP_WAIT {_TEXT}(1) NOT NULL,
    STATUS_DATE DATETIME,
    STATUS_TIME DATETIME,
    PREREG_REG_STATUS {_TEXT}(4),
    CREATE_DATE DATETIME,
    CREATE_TIME DATETIME,
    CREATE_OPID {_TEXT}(8),
    CREATE_TERMINAL {_TEXT}(4),
    REVISION_DATE DATETIME,
    REVISION_TIME DATETIME,
    REVISION_OPID {_TEXT}(8),
    REVISION_TERMINAL {_TEXT}(4),
    START_DATE DATETIME,
    END_DATE DATETIME
);
CREATE UNIQUE INDEX IF NOT EXISTS ixTranscriptDetail_UQ_PersonSection
    ON TRANSCRIPTDETAIL ({ci("PEOPLE_CODE_ID")}, {", ".join(ci(c) for c in SECTION_COLUMNS)});
CREATE INDEX IF NOT EXISTS ixTranscriptDetail_SectionADW
    ON TRANSCRIPTDETAIL ({", ".join(ci(c) for c in SECTION_COLUMNS)}, {ci("ADD_DROP_WAIT")});
CREATE INDEX IF NOT EXISTS ixTranscriptDetail_Term
    ON TRANSCRIPTDETAIL ({ci("ACADEMIC_YEAR")}, {ci("ACADEMIC_TERM")});

CREATE TABLE IF NOT EXISTS SECTIONS (
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    EVENT_ID {_TEXT}(15) NOT NULL,
    EVENT_SUB_TYPE {_TEXT}(4) NOT NULL,
    SECTION {_TEXT}(4) NOT NULL,
    SectionId INTEGER NOT NULL UNIQUE,
    EVENT_LONG_NAME {_TEXT}(40),
    EVENT_MED_NAME {_TEXT}(20),
    EVENT_STATUS {_TEXT}(1) NOT NULL DEFAULT 'A',
    START_DATE DATETIME,
    END_DATE DATETIME,
    CREDITS NUMERIC(6, 3),
    CREDIT_TYPE {_TEXT}(6),
    ORG_CODE_ID {_TEXT}(10),
    MAX_PARTICIPANT INTEGER,
    ADDS INTEGER NOT NULL DEFAULT 0,
    DROPS INTEGER NOT NULL DEFAULT 0,
    WAIT_LIST INTEGER NOT NULL DEFAULT 0,
    CANCEL_REASON {_TEXT}(10),
    DEPARTMENT {_TEXT}(10),
    PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION,
                 EVENT_ID, EVENT_SUB_TYPE, SECTION)
);
CREATE UNIQUE INDEX IF NOT EXISTS SECTIONS_PK_CI
    ON SECTIONS ({", ".join(ci(c) for c in SECTION_COLUMNS)});

CREATE TABLE IF NOT EXISTS SECTIONCROSSTALLY (
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    EVENT_ID {_TEXT}(15) NOT NULL,
    EVENT_SUB_TYPE {_TEXT}(4) NOT NULL,
    SECTION {_TEXT}(4) NOT NULL,
    TALLY_CODE {_TEXT}(10) NOT NULL,
    PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION,
                 EVENT_ID, EVENT_SUB_TYPE, SECTION)
);
CREATE UNIQUE INDEX IF NOT EXISTS SECTIONCROSSTALLY_PK_CI
    ON SECTIONCROSSTALLY ({", ".join(ci(c) for c in SECTION_COLUMNS)});

CREATE TABLE IF NOT EXISTS PEOPLE (
    PEOPLE_CODE_ID {_TEXT}(10) NOT NULL PRIMARY KEY,
    PEOPLE_CODE {_TEXT}(1) NOT NULL DEFAULT 'P',
    PEOPLE_ID {_TEXT}(9) NOT NULL,
    PersonId INTEGER NOT NULL UNIQUE,
    PREFIX {_TEXT}(6),
    FIRST_NAME {_TEXT}(60),
    MIDDLE_NAME {_TEXT}(60),
    LAST_NAME {_TEXT}(60),
    SUFFIX {_TEXT}(6),
    Nickname {_TEXT}(60),
    PrimaryEmailId INTEGER,
    BIRTH_DATE DATETIME,
    DECEASED_FLAG {_TEXT}(1) NOT NULL DEFAULT 'N',
    CREATE_DATE DATETIME,
    REVISION_DATE DATETIME
);
CREATE UNIQUE INDEX IF NOT EXISTS PEOPLE_PK_CI ON PEOPLE ({ci("PEOPLE_CODE_ID")});

CREATE TABLE IF NOT EXISTS SECTIONPER (
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    EVENT_ID {_TEXT}(15) NOT NULL,
    EVENT_SUB_TYPE {_TEXT}(4) NOT NULL,
    SECTION {_TEXT}(4) NOT NULL,
    PERSON_CODE_ID {_TEXT}(10) NOT NULL,
    PERCENTAGE NUMERIC(6, 2),
    CREATE_DATE DATETIME,
    REVISION_DATE DATETIME,
    PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION,
                 EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID)
);
CREATE UNIQUE INDEX IF NOT EXISTS SECTIONPER_PK_CI ON SECTIONPER (
    {", ".join(ci(c) for c in SECTION_COLUMNS)}, {ci("PERSON_CODE_ID")});
CREATE INDEX IF NOT EXISTS SECTIONPER_PERSON ON SECTIONPER ({ci("PERSON_CODE_ID")});

CREATE TABLE IF NOT EXISTS CODE_ENROLLMENT (
    CODE_VALUE_KEY {_TEXT}(8) NOT NULL PRIMARY KEY,
    LONG_DESC {_TEXT}(40),
    REQUIRE_SEPDATE {_TEXT}(1) NOT NULL DEFAULT 'N'
);
CREATE UNIQUE INDEX IF NOT EXISTS CODE_ENROLLMENT_CI ON CODE_ENROLLMENT (
    {ci("CODE_VALUE_KEY")});

CREATE TABLE IF NOT EXISTS ACADEMIC (
    PEOPLE_CODE_ID {_TEXT}(10) NOT NULL,
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    TRANSCRIPT_SEQ {_TEXT}(3) NOT NULL DEFAULT '001',
    PEOPLE_ID {_TEXT}(9),
    ENROLL_SEPARATION {_TEXT}(8),
    SEPARATION_DATE DATETIME,
    STATUS {_TEXT}(1),
    PRIMARY_FLAG {_TEXT}(1),
    CREDITS NUMERIC(6, 3),
    PRIMARY KEY (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM,
                 ACADEMIC_SESSION, TRANSCRIPT_SEQ)
);
CREATE UNIQUE INDEX IF NOT EXISTS ACADEMIC_PK_CI ON ACADEMIC (
    {ci("PEOPLE_CODE_ID")}, {ci("ACADEMIC_YEAR")}, {ci("ACADEMIC_TERM")},
    {ci("ACADEMIC_SESSION")}, {ci("TRANSCRIPT_SEQ")});

CREATE TABLE IF NOT EXISTS EmailAddress (
    EmailAddressId INTEGER PRIMARY KEY AUTOINCREMENT,
    PeopleOrgCodeId {_TEXT}(10) NOT NULL,
    PeopleOrgId INTEGER,
    EmailType {_TEXT}(10),
    Email {_TEXT}(100) NOT NULL,
    IsActive INTEGER NOT NULL DEFAULT 1,
    CREATE_DATE DATETIME
);
CREATE INDEX IF NOT EXISTS EmailAddress_Owner ON EmailAddress ({ci("PeopleOrgCodeId")});

CREATE TABLE IF NOT EXISTS PersonUser (
    PersonUserId INTEGER PRIMARY KEY AUTOINCREMENT,
    PersonId INTEGER NOT NULL,
    UserName {_TEXT}(100) NOT NULL,
    USERSTOREID INTEGER
);
CREATE INDEX IF NOT EXISTS PersonUser_Person ON PersonUser (PersonId);

CREATE TABLE IF NOT EXISTS ACADEMICCALENDAR (
    ACADEMIC_YEAR {_TEXT}(4) NOT NULL,
    ACADEMIC_TERM {_TEXT}(10) NOT NULL,
    ACADEMIC_SESSION {_TEXT}(10) NOT NULL DEFAULT '',
    SessionPeriodId INTEGER NOT NULL UNIQUE,
    START_DATE DATETIME,
    END_DATE DATETIME,
    FINAL_END_DATE DATETIME,
    PRE_REG_DATE DATETIME,
    REG_DATE DATETIME,
    FIN_AID_YEAR {_TEXT}(4),
    PRIMARY KEY (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION)
);
CREATE UNIQUE INDEX IF NOT EXISTS ACADEMICCALENDAR_PK_CI ON ACADEMICCALENDAR (
    {ci("ACADEMIC_YEAR")}, {ci("ACADEMIC_TERM")}, {ci("ACADEMIC_SESSION")});
"""

CHANGE_TRACKING_CATALOG = """
CREATE TABLE IF NOT EXISTS CT_STATE (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    current_version INTEGER NOT NULL
);
INSERT OR IGNORE INTO CT_STATE (id, current_version) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS CT_COMMIT (
    version INTEGER PRIMARY KEY,
    commit_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS CT_COMMIT_time ON CT_COMMIT (commit_time);
CREATE TABLE IF NOT EXISTS CT_TABLES (
    table_name TEXT PRIMARY KEY COLLATE NOCASE,
    begin_version INTEGER NOT NULL,
    min_valid_version INTEGER NOT NULL,
    cleanup_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS CT_TRANSACTION (
    version INTEGER NOT NULL,
    tracking INTEGER NOT NULL DEFAULT 1,
    changed INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class TrackableTable:
    """A table change tracking can be enabled on: SQL Server requires a primary key."""

    name: str
    primary_key: tuple[str, ...]

    @property
    def side_table(self) -> str:
        """The side table's name (SQL Server: ``change_tracking_<object_id>``)."""
        return f"change_tracking_{self.name}"


#: SECTIONPER's primary key: the section and the instructor.
SECTIONPER_KEY = (*SECTION_COLUMNS, "PERSON_CODE_ID")
#: ACADEMIC's primary key as the sandbox has it (person, term, session, transcript).
ACADEMIC_KEY = (
    "PEOPLE_CODE_ID",
    "ACADEMIC_YEAR",
    "ACADEMIC_TERM",
    "ACADEMIC_SESSION",
    "TRANSCRIPT_SEQ",
)

#: Every sandbox table CT can be enabled on; ``POWERCAMPUS_TRACKED`` are by default.
TRACKABLE_TABLES: dict[str, TrackableTable] = {
    "TRANSCRIPTDETAIL": TrackableTable("TRANSCRIPTDETAIL", ("TranscriptDetailId",)),
    "SECTIONS": TrackableTable("SECTIONS", SECTION_COLUMNS),
    "SECTIONCROSSTALLY": TrackableTable("SECTIONCROSSTALLY", SECTION_COLUMNS),
    "SECTIONPER": TrackableTable("SECTIONPER", SECTIONPER_KEY),
    "ACADEMIC": TrackableTable("ACADEMIC", ACADEMIC_KEY),
    "PEOPLE": TrackableTable("PEOPLE", ("PEOPLE_CODE_ID",)),
    "EmailAddress": TrackableTable("EmailAddress", ("EmailAddressId",)),
    "PersonUser": TrackableTable("PersonUser", ("PersonUserId",)),
    "ACADEMICCALENDAR": TrackableTable(
        "ACADEMICCALENDAR", ("ACADEMIC_YEAR", "ACADEMIC_TERM", "ACADEMIC_SESSION")
    ),
}

#: The tables a new sandbox tracks: what enrolstream reads.
POWERCAMPUS_TRACKED = (
    "TRANSCRIPTDETAIL",
    "SECTIONPER",
    "ACADEMIC",
    "PEOPLE",
    "EmailAddress",
    "PersonUser",
)

_OUTSIDE_TRANSACTION = (
    "SELECT RAISE(ABORT, 'change tracking: write through PowerCampusSandbox "
    "(execute/transaction or the sandbox sql command), not a bare connection') "
    "WHERE NOT EXISTS (SELECT 1 FROM CT_TRANSACTION);"
)


def _record(
    table: TrackableTable, row: str, operation: str, condition: str = "1"
) -> str:
    columns = ", ".join(table.primary_key)
    values = ", ".join(f"{row}.{c}" for c in table.primary_key)
    return (
        f"INSERT INTO {table.side_table} "
        f"(SYS_CHANGE_VERSION, SYS_CHANGE_OPERATION, {columns}) "
        f"SELECT version, '{operation}', {values} FROM CT_TRANSACTION "
        f"WHERE tracking = 1 AND ({condition});"
    )


_MARK_CHANGED = "UPDATE CT_TRANSACTION SET changed = 1 WHERE tracking = 1;"


def side_table_ddl(table: TrackableTable) -> str:
    """The side table and its three triggers for ``table``.

    An update that changes the primary key is recorded as a delete of the old key
    and an insert of the new one, as SQL Server reports it.
    """
    pk_defs = ", ".join(f"{c} NOT NULL" for c in table.primary_key)
    pk_list = ", ".join(table.primary_key)
    key_moved = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in table.primary_key)
    side, name = table.side_table, table.name
    return f"""
CREATE TABLE IF NOT EXISTS {side} (
    seq INTEGER PRIMARY KEY,
    SYS_CHANGE_VERSION INTEGER NOT NULL,
    SYS_CHANGE_OPERATION TEXT NOT NULL CHECK (SYS_CHANGE_OPERATION IN ('I','U','D')),
    {pk_defs}
);
CREATE INDEX IF NOT EXISTS {side}_key ON {side} ({pk_list}, seq);
CREATE INDEX IF NOT EXISTS {side}_version ON {side} (SYS_CHANGE_VERSION);
CREATE TRIGGER IF NOT EXISTS {side}_insert AFTER INSERT ON {name} BEGIN
    {_OUTSIDE_TRANSACTION}
    {_record(table, "NEW", "I")}
    {_MARK_CHANGED}
END;
CREATE TRIGGER IF NOT EXISTS {side}_delete AFTER DELETE ON {name} BEGIN
    {_OUTSIDE_TRANSACTION}
    {_record(table, "OLD", "D")}
    {_MARK_CHANGED}
END;
CREATE TRIGGER IF NOT EXISTS {side}_update AFTER UPDATE ON {name} BEGIN
    {_OUTSIDE_TRANSACTION}
    {_record(table, "NEW", "U", f"NOT ({key_moved})")}
    {_record(table, "OLD", "D", key_moved)}
    {_record(table, "NEW", "I", key_moved)}
    {_MARK_CHANGED}
END;
"""


def drop_side_table_ddl(table: TrackableTable) -> str:
    """Statements that disable tracking of ``table`` (triggers and side table go)."""
    side = table.side_table
    return (
        f"DROP TRIGGER IF EXISTS {side}_insert; DROP TRIGGER IF EXISTS {side}_delete; "
        f"DROP TRIGGER IF EXISTS {side}_update; DROP TABLE IF EXISTS {side};"
    )


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements, as sqlite3 itself would parse it.

    Semicolons inside string literals, comments and ``CREATE TRIGGER … END`` bodies
    do not split. A trailing fragment without a semicolon is the last statement.
    Blank statements are dropped.
    """
    statements: list[str] = []
    current = ""
    for piece in sql.split(";"):
        current = f"{current};{piece}" if current else piece
        if sqlite3.complete_statement(current + ";"):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
