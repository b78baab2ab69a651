"""Every T-SQL statement the SQL Server change source sends, and nothing else.

The text lives here, apart from the driver, so a unit test can parse each
statement (``tests/unit/test_sqlserver_statements.py``) without a server.
Parameters are ODBC ``?`` markers bound by pyodbc; no value is ever formatted
into the text. Builders that take a count return text with that many markers.

SQL Server accepts at most 2,100 parameters per request, so key lists are sent
in chunks of ``KEYS_PER_CHUNK`` (three markers per person-term key).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from cdc.ports import TrackedTable
from cdc.rows import (
    ACADEMIC_COLUMNS,
    SECTIONPER_COLUMNS,
    TABLE_KEYS,
    TRANSCRIPT_COLUMNS,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

T = TypeVar("T")

#: The tracked table, schema-qualified as every statement names it.
TRACKED_TABLE = "dbo.TRANSCRIPTDETAIL"
#: The only primary-key column CHANGETABLE reports for TRANSCRIPTDETAIL.
TRACKED_KEY = "TranscriptDetailId"

#: SQL Server's limit on parameters in one request.
MAX_PARAMETERS = 2100
#: Person-term keys per term-state query: 3 markers each, well under the limit.
KEYS_PER_CHUNK = 600
#: Terms per snapshot query: 2 markers each.
TERMS_PER_CHUNK = 500


#: Persons per person-table query: 1 marker each (2 with SECTIONPER).
PERSONS_PER_CHUNK = 1000


def _check_count(count: int, markers_each: int) -> None:
    if count < 1 or count * markers_each > MAX_PARAMETERS:
        raise ValueError(
            f"{count} keys need {count * markers_each} parameters; "
            f"SQL Server accepts 1..{MAX_PARAMETERS}"
        )


def _td_columns() -> str:
    return ", ".join(f"td.{column}" for column in TRANSCRIPT_COLUMNS)


def qualified(table: TrackedTable) -> str:
    """The tracked table as every statement names it (``dbo.``)."""
    return f"dbo.{table}"


# --- transactions -----------------------------------------------------------------

SET_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT"
SET_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
BEGIN_TRANSACTION = "BEGIN TRANSACTION"
COMMIT_TRANSACTION = "COMMIT TRANSACTION"
#: Safe to send whether or not a transaction is open (fallback mode opens none).
ROLLBACK_IF_OPEN = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION"

# --- change tracking --------------------------------------------------------------

MIN_VALID_VERSION = (
    f"SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{TRACKED_TABLE}'))"
    " AS min_valid_version"
)
CURRENT_VERSION = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version"

#: Net changes after ``?`` (the saved version) joined back to the current row.
#: Columns: SYS_CHANGE_VERSION, SYS_CHANGE_CREATION_VERSION,
#: SYS_CHANGE_OPERATION, ct.TranscriptDetailId, then TRANSCRIPT_COLUMNS
#: (all NULL when the row no longer exists).
CHANGES = (
    "SELECT ct.SYS_CHANGE_VERSION, ct.SYS_CHANGE_CREATION_VERSION,"
    f" ct.SYS_CHANGE_OPERATION, ct.{TRACKED_KEY}, {_td_columns()}"
    f" FROM CHANGETABLE(CHANGES {TRACKED_TABLE}, ?) AS ct"
    f" LEFT JOIN {TRACKED_TABLE} AS td ON td.{TRACKED_KEY} = ct.{TRACKED_KEY}"
    f" ORDER BY ct.SYS_CHANGE_VERSION, ct.{TRACKED_KEY}"
)

#: Commit times of the versions in ``(?, ?]`` (the saved version, the current one):
#: change tracking's ``commit_ts`` is the SYS_CHANGE_VERSION. ``commit_time`` is
#: the server's local time, so the server's offset from UTC comes with it (read
#: in the same statement; a commit within the hour of a daylight-saving switch
#: may be off by that hour). Reading the view needs VIEW SERVER STATE (VIEW
#: SERVER PERFORMANCE STATE on SQL Server 2022); without it the source carries on
#: without commit times (docs/dba.md).
COMMIT_TIMES = (
    "SELECT tc.commit_ts, tc.commit_time,"
    " DATEDIFF(MINUTE, SYSUTCDATETIME(), SYSDATETIME()) AS utc_offset_minutes"
    " FROM sys.dm_tran_commit_table AS tc"
    " WHERE tc.commit_ts > ? AND tc.commit_ts <= ?"
)


def term_state_query(key_count: int) -> str:
    """Every TRANSCRIPTDETAIL row of ``key_count`` (person, year, term) keys.

    Bind ``PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM`` per key, in order.
    Equality follows the column collation (case-insensitive, trailing spaces
    ignored), as PowerCampus compares.
    """
    _check_count(key_count, 3)
    values = ", ".join(["(?, ?, ?)"] * key_count)
    return (
        f"SELECT {_td_columns()} FROM {TRACKED_TABLE} AS td"
        f" INNER JOIN (VALUES {values})"
        " AS k (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM)"
        " ON td.PEOPLE_CODE_ID = k.PEOPLE_CODE_ID"
        " AND td.ACADEMIC_YEAR = k.ACADEMIC_YEAR"
        " AND td.ACADEMIC_TERM = k.ACADEMIC_TERM"
        f" ORDER BY td.PEOPLE_CODE_ID, td.{TRACKED_KEY}"
    )


def snapshot_query(term_count: int) -> str:
    """Every TRANSCRIPTDETAIL row of ``term_count`` (year, term) keys."""
    _check_count(term_count, 2)
    values = ", ".join(["(?, ?)"] * term_count)
    return (
        f"SELECT {_td_columns()} FROM {TRACKED_TABLE} AS td"
        f" INNER JOIN (VALUES {values}) AS k (ACADEMIC_YEAR, ACADEMIC_TERM)"
        " ON td.ACADEMIC_YEAR = k.ACADEMIC_YEAR"
        " AND td.ACADEMIC_TERM = k.ACADEMIC_TERM"
        f" ORDER BY td.{TRACKED_KEY}"
    )


#: A session's last day: the later of END_DATE and FINAL_END_DATE (exams run past
#: END_DATE), whichever is not NULL when one is; NULL only when both are.
SESSION_LAST_DAY = (
    "CAST(CASE WHEN ac.FINAL_END_DATE IS NULL OR ac.FINAL_END_DATE < ac.END_DATE"
    " THEN ac.END_DATE ELSE ac.FINAL_END_DATE END AS DATE)"
)

#: Terms with a session whose dates include ``?`` (bound twice: the same date):
#: START_DATE <= day <= the session's last day, as the sandbox source reads them.
LIVE_TERMS = (
    "SELECT DISTINCT ac.ACADEMIC_YEAR, ac.ACADEMIC_TERM FROM dbo.ACADEMICCALENDAR AS ac"
    f" WHERE CAST(ac.START_DATE AS DATE) <= ? AND {SESSION_LAST_DAY} >= ?"
    " ORDER BY ac.ACADEMIC_YEAR, ac.ACADEMIC_TERM"
)

# --- the other tracked tables --------------------------------------------------------

_SP = ", ".join(f"sp.{c}" for c in SECTIONPER_COLUMNS)
_AC = ", ".join(f"ac.{c}" for c in ACADEMIC_COLUMNS)
#: Where a surrogate-keyed row that still exists belongs (its join and owner).
_OWNER_JOIN = {
    "EmailAddress": (
        " LEFT JOIN dbo.EmailAddress AS r ON r.EmailAddressId = ct.EmailAddressId",
        "r.PeopleOrgCodeId",
    ),
    "PersonUser": (
        (
            " LEFT JOIN dbo.PersonUser AS r ON r.PersonUserId = ct.PersonUserId"
            " LEFT JOIN dbo.PEOPLE AS p ON p.PersonId = r.PersonId"
        ),
        "p.PEOPLE_CODE_ID",
    ),
}


def min_valid_version(table: TrackedTable) -> str:
    """CHANGE_TRACKING_MIN_VALID_VERSION of one tracked table."""
    return (
        f"SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{qualified(table)}'))"
        " AS min_valid_version"
    )


def versions_query(tables: Sequence[TrackedTable]) -> str:
    """The current version and each table's min valid version, in one statement.

    Columns: ``current_version``, then ``min_valid_<n>`` in ``tables`` order.
    A poll reads it first; when the current version is the saved one nothing
    was committed since, and the CHANGETABLE reads are skipped (in the
    snapshot, CHANGETABLE holds no version above the current one).
    """
    if not tables:
        raise ValueError("versions_query needs at least one tracked table")
    min_valid = ", ".join(
        f"CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{qualified(table)}'))"
        f" AS min_valid_{index}"
        for index, table in enumerate(tables)
    )
    return f"SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version, {min_valid}"


def key_changes_query(table: TrackedTable) -> str:
    """Net changes of a table other than TRANSCRIPTDETAIL after ``?``.

    Columns: SYS_CHANGE_VERSION, SYS_CHANGE_CREATION_VERSION, SYS_CHANGE_OPERATION,
    the owner (PEOPLE_CODE_ID of a surrogate-keyed row that still exists, else
    NULL), then the key's columns (``cdc.rows.key_change`` reads them).
    """
    join, owner = _OWNER_JOIN.get(table, ("", "NULL"))
    keys = ", ".join(f"ct.{c}" for c in TABLE_KEYS[table])
    return (
        "SELECT ct.SYS_CHANGE_VERSION, ct.SYS_CHANGE_CREATION_VERSION,"
        f" ct.SYS_CHANGE_OPERATION, {owner} AS owner, {keys}"
        f" FROM CHANGETABLE(CHANGES {qualified(table)}, ?) AS ct{join}"
        " ORDER BY ct.SYS_CHANGE_VERSION"
    )


def _person_term_join(alias: str, person: str, key_count: int) -> str:
    _check_count(key_count, 3)
    values = ", ".join(["(?, ?, ?)"] * key_count)
    return (
        f" INNER JOIN (VALUES {values})"
        " AS k (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM)"
        f" ON {alias}.{person} = k.PEOPLE_CODE_ID"
        f" AND {alias}.ACADEMIC_YEAR = k.ACADEMIC_YEAR"
        f" AND {alias}.ACADEMIC_TERM = k.ACADEMIC_TERM"
    )


def _term_join(alias: str, term_count: int) -> str:
    _check_count(term_count, 2)
    values = ", ".join(["(?, ?)"] * term_count)
    return (
        f" INNER JOIN (VALUES {values}) AS k (ACADEMIC_YEAR, ACADEMIC_TERM)"
        f" ON {alias}.ACADEMIC_YEAR = k.ACADEMIC_YEAR"
        f" AND {alias}.ACADEMIC_TERM = k.ACADEMIC_TERM"
    )


def teaching_query(key_count: int) -> str:
    """Every SECTIONPER row of ``key_count`` (person, year, term) keys."""
    return f"SELECT {_SP} FROM dbo.SECTIONPER AS sp" + _person_term_join(
        "sp", "PERSON_CODE_ID", key_count
    )


def teaching_snapshot_query(term_count: int) -> str:
    """Every SECTIONPER row of ``term_count`` (year, term) keys."""
    return f"SELECT {_SP} FROM dbo.SECTIONPER AS sp" + _term_join("sp", term_count)


_ACADEMIC = (
    f"SELECT {_AC}, ce.REQUIRE_SEPDATE FROM dbo.ACADEMIC AS ac"
    " LEFT JOIN dbo.CODE_ENROLLMENT AS ce ON ce.CODE_VALUE_KEY = ac.ENROLL_SEPARATION"
)


def standing_query(key_count: int) -> str:
    """Every ACADEMIC row (and CODE_ENROLLMENT's verdict) of person-term keys."""
    return _ACADEMIC + _person_term_join("ac", "PEOPLE_CODE_ID", key_count)


def standing_snapshot_query(term_count: int) -> str:
    """Every ACADEMIC row (and CODE_ENROLLMENT's verdict) of (year, term) keys."""
    return _ACADEMIC + _term_join("ac", term_count)


def person_terms_query(person_count: int, *, teaching: bool) -> str:
    """The (person, year, term) of every TRANSCRIPTDETAIL (and SECTIONPER) row of persons.

    Bind the persons once per table (twice with ``teaching``).
    """
    _check_count(person_count, 2 if teaching else 1)
    marks = ", ".join(["?"] * person_count)
    query = (
        "SELECT DISTINCT td.PEOPLE_CODE_ID, td.ACADEMIC_YEAR, td.ACADEMIC_TERM"
        f" FROM {TRACKED_TABLE} AS td WHERE td.PEOPLE_CODE_ID IN ({marks})"
    )
    if teaching:
        query += (
            " UNION SELECT sp.PERSON_CODE_ID, sp.ACADEMIC_YEAR, sp.ACADEMIC_TERM"
            f" FROM dbo.SECTIONPER AS sp WHERE sp.PERSON_CODE_ID IN ({marks})"
        )
    return query


def people_query(person_count: int) -> str:
    """Account details (``cdc.rows.PERSON_COLUMNS``) of ``person_count`` persons."""
    _check_count(person_count, 1)
    marks = ", ".join(["?"] * person_count)
    return (
        "SELECT p.PEOPLE_CODE_ID, p.FIRST_NAME, p.MIDDLE_NAME, p.LAST_NAME,"
        " p.Nickname, e.EmailAddressId, e.Email, u.PersonUserId, u.UserName"
        " FROM dbo.PEOPLE AS p"
        " LEFT JOIN dbo.EmailAddress AS e ON e.EmailAddressId = p.PrimaryEmailId"
        " AND e.IsActive = 1"
        " LEFT JOIN dbo.PersonUser AS u ON u.PersonId = p.PersonId"
        f" WHERE p.PEOPLE_CODE_ID IN ({marks})"
    )


# --- start-up checks ---------------------------------------------------------------

#: Database name, snapshot_isolation_state (1 = ON) and CT's current version
#: (NULL when change tracking is off for the database).
DATABASE_STATE = (
    "SELECT d.name, d.snapshot_isolation_state, d.snapshot_isolation_state_desc,"
    " CHANGE_TRACKING_CURRENT_VERSION() AS current_version"
    " FROM sys.databases AS d WHERE d.database_id = DB_ID()"
)


def table_state(table: str = TRACKED_TABLE) -> str:
    """The table's object id (NULL: missing or not visible), whether CT tracks it,
    and its min valid version (NULL: CT off, or VIEW CHANGE TRACKING missing)."""
    return (
        f"SELECT OBJECT_ID(N'{table}') AS object_id,"
        " (SELECT COUNT(*) FROM sys.change_tracking_tables AS t"
        f" WHERE t.object_id = OBJECT_ID(N'{table}')) AS tracked,"
        f" CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{table}'))"
        " AS min_valid_version"
    )


def primary_key_columns(table: str = TRACKED_TABLE) -> str:
    """The primary-key columns of a tracked table, in key order."""
    return (
        "SELECT c.name FROM sys.indexes AS i"
        " INNER JOIN sys.index_columns AS ic"
        " ON ic.object_id = i.object_id AND ic.index_id = i.index_id"
        " INNER JOIN sys.columns AS c"
        " ON c.object_id = ic.object_id AND c.column_id = ic.column_id"
        f" WHERE i.object_id = OBJECT_ID(N'{table}') AND i.is_primary_key = 1"
        " ORDER BY ic.key_ordinal"
    )


TABLE_STATE = table_state()
PRIMARY_KEY_COLUMNS = primary_key_columns()

#: Zero-row reads proving SELECT on every column the source reads.
READ_PROBES = (
    f"SELECT TOP (0) {_td_columns()} FROM {TRACKED_TABLE} AS td",
    (
        "SELECT TOP (0) ac.ACADEMIC_YEAR, ac.ACADEMIC_TERM, ac.ACADEMIC_SESSION,"
        " ac.START_DATE, ac.END_DATE, ac.FINAL_END_DATE"
        " FROM dbo.ACADEMICCALENDAR AS ac"
    ),
)

#: Zero-row reads of the other tracked tables, by table (run when tracked).
TABLE_PROBES: dict[TrackedTable, str] = {
    "SECTIONPER": f"SELECT TOP (0) {_SP} FROM dbo.SECTIONPER AS sp",
    "ACADEMIC": _ACADEMIC.replace("SELECT ", "SELECT TOP (0) ", 1),
    "PEOPLE": people_query(1).replace("SELECT ", "SELECT TOP (0) ", 1),
    "EmailAddress": (
        "SELECT TOP (0) e.EmailAddressId, e.PeopleOrgCodeId, e.Email, e.IsActive"
        " FROM dbo.EmailAddress AS e"
    ),
    "PersonUser": (
        "SELECT TOP (0) u.PersonUserId, u.PersonId, u.UserName FROM dbo.PersonUser AS u"
    ),
}


def all_statements() -> dict[str, str]:
    """Every statement the adapter can send, builders at their smallest and largest."""
    return {
        "SET_SNAPSHOT": SET_SNAPSHOT,
        "SET_READ_COMMITTED": SET_READ_COMMITTED,
        "BEGIN_TRANSACTION": BEGIN_TRANSACTION,
        "COMMIT_TRANSACTION": COMMIT_TRANSACTION,
        "ROLLBACK_IF_OPEN": ROLLBACK_IF_OPEN,
        "MIN_VALID_VERSION": MIN_VALID_VERSION,
        "CURRENT_VERSION": CURRENT_VERSION,
        "CHANGES": CHANGES,
        "COMMIT_TIMES": COMMIT_TIMES,
        "term_state_query(1)": term_state_query(1),
        "term_state_query(max)": term_state_query(KEYS_PER_CHUNK),
        "snapshot_query(1)": snapshot_query(1),
        "snapshot_query(max)": snapshot_query(TERMS_PER_CHUNK),
        "LIVE_TERMS": LIVE_TERMS,
        "DATABASE_STATE": DATABASE_STATE,
        "TABLE_STATE": TABLE_STATE,
        "PRIMARY_KEY_COLUMNS": PRIMARY_KEY_COLUMNS,
        **{f"READ_PROBES[{index}]": probe for index, probe in enumerate(READ_PROBES)},
        **{f"TABLE_PROBES[{table}]": probe for table, probe in TABLE_PROBES.items()},
        **_related_statements(),
    }


def _related_statements() -> dict[str, str]:
    """The statements of the tables beside TRANSCRIPTDETAIL, builders at both ends."""
    found: dict[str, str] = {
        "versions_query(TRANSCRIPTDETAIL)": versions_query(["TRANSCRIPTDETAIL"]),
        "versions_query(all)": versions_query(list(TABLE_KEYS)),
    }
    for table in TABLE_KEYS:
        found[f"min_valid_version({table})"] = min_valid_version(table)
        found[f"table_state({table})"] = table_state(qualified(table))
        found[f"primary_key_columns({table})"] = primary_key_columns(qualified(table))
        if table != "TRANSCRIPTDETAIL":
            found[f"key_changes_query({table})"] = key_changes_query(table)
    for name, size in (("1", 1), ("max", KEYS_PER_CHUNK)):
        found[f"teaching_query({name})"] = teaching_query(size)
        found[f"standing_query({name})"] = standing_query(size)
    for name, size in (("1", 1), ("max", TERMS_PER_CHUNK)):
        found[f"teaching_snapshot_query({name})"] = teaching_snapshot_query(size)
        found[f"standing_snapshot_query({name})"] = standing_snapshot_query(size)
    for name, size in (("1", 1), ("max", PERSONS_PER_CHUNK)):
        found[f"person_terms_query({name})"] = person_terms_query(size, teaching=True)
        found[f"person_terms_query({name}, td only)"] = person_terms_query(
            size, teaching=False
        )
        found[f"people_query({name})"] = people_query(size)
    return found


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
