"""Start-up checks of a PowerCampus source, and the driver-error classification.

Both are pure: the checks read through any object shaped like a pyodbc cursor
(``CursorLike``), and ``classify`` takes the parts of a ``pyodbc.Error``
(class name, SQLSTATE, message), so both are tested without a server. The
pyodbc-facing wrapper, ``map_pyodbc_errors``, lives in ``connectors/sqlserver/source.py``.

Every failure is a ``SourceMisconfigured`` (a person must act; the message says
what to do) or a ``SourceUnavailable`` (retry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cdc.errors import SourceError, SourceMisconfigured, SourceUnavailable
from cdc.ports import TrackedTable
from cdc.rows import TABLE_KEYS
from connectors.sqlserver import sql

if TYPE_CHECKING:
    from collections.abc import Sequence


class CursorLike(Protocol):
    """The part of a DB-API cursor the checks use."""

    def execute(self, sql: str, *params: Any) -> Any:
        """Run one statement."""
        ...

    def fetchone(self) -> Sequence[Any] | None:
        """The next row, or None."""
        ...

    def fetchall(self) -> Sequence[Sequence[Any]]:
        """The remaining rows."""
        ...


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What the checks found on a healthy source."""

    database: str
    current_version: int
    min_valid_version: int
    snapshot_isolation: str


_SNAPSHOT_ON = 1
_ENABLE_CT = (
    "ALTER DATABASE {db} SET CHANGE_TRACKING = ON "
    "(CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON); "
    f"ALTER TABLE {sql.TRACKED_TABLE} ENABLE CHANGE_TRACKING (see docs/dba.md)"
)


def check_driver(driver: str, installed: Sequence[str]) -> None:
    """Fail when the configured ODBC driver is not registered with unixODBC."""
    if driver in installed:
        return
    listed = ", ".join(installed) if installed else "none"
    raise SourceMisconfigured(
        f"ODBC driver {driver!r} is not installed (installed: {listed}); install "
        "msodbcsql18 or tdsodbc, or set ENROLSTREAM_SOURCE__SQLSERVER__DRIVER to "
        "one of the installed drivers"
    )


def run_checks(
    cursor: CursorLike,
    *,
    snapshot_required: bool,
    tables: Sequence[TrackedTable] = ("TRANSCRIPTDETAIL",),
) -> CheckReport:
    """Run every database-side check in order; raise at the first failure.

    Each of ``tables`` must exist, be tracked and have the primary key change
    tracking reports (``cdc.rows.TABLE_KEYS``).
    """
    database, state, state_desc, current = _database_state(cursor)
    if current is None:
        raise SourceMisconfigured(
            f"change tracking is off for database {database}: ask the DBA to run "
            + _ENABLE_CT.format(db=database)
        )
    if snapshot_required and state != _SNAPSHOT_ON:
        raise SourceMisconfigured(
            f"snapshot isolation is not allowed in database {database} "
            f"(snapshot_isolation_state={state_desc}): ask the DBA to run ALTER "
            f"DATABASE {database} SET ALLOW_SNAPSHOT_ISOLATION ON, or set "
            "ENROLSTREAM_SOURCE__SQLSERVER__SNAPSHOT_ISOLATION=false (fallback: "
            "duplicates possible)"
        )
    min_valid = check_table(cursor, database)
    check_primary_key(cursor)
    for table in tables:
        if table != "TRANSCRIPTDETAIL":
            min_valid = max(min_valid, check_table(cursor, database, table))
            check_primary_key(cursor, table)
    probes = [*sql.READ_PROBES, *(sql.TABLE_PROBES[t] for t in tables[1:])]
    for probe in probes:
        cursor.execute(probe)
        cursor.fetchall()
    return CheckReport(
        database=database,
        current_version=int(current),
        min_valid_version=min_valid,
        snapshot_isolation=str(state_desc),
    )


def check_table(
    cursor: CursorLike, database: str, table: TrackedTable = "TRANSCRIPTDETAIL"
) -> int:
    """Check a tracked table exists and is tracked; return its min valid version."""
    named = sql.qualified(table)
    row = _one(cursor, sql.table_state(named))
    object_id, tracked, min_valid = row[0], row[1], row[2]
    if object_id is None:
        raise SourceMisconfigured(
            f"table {named} does not exist in {database} or the login "
            f"cannot see it: GRANT SELECT ON {named} TO <login>"
        )
    if not tracked:
        also = (
            ""
            if table == "TRANSCRIPTDETAIL"
            else f", or leave {table} out of source.tables"
        )
        raise SourceMisconfigured(
            f"change tracking is off for table {named}: ask the DBA to "
            f"run ALTER TABLE {named} ENABLE CHANGE_TRACKING{also}"
        )
    if min_valid is None:
        raise view_change_tracking_missing(named)
    return int(min_valid)


def check_primary_key(
    cursor: CursorLike, table: TrackedTable = "TRANSCRIPTDETAIL"
) -> None:
    """The primary key is exactly the one change tracking reports deletes by."""
    named = sql.qualified(table)
    cursor.execute(sql.primary_key_columns(named))
    columns = [str(row[0]) for row in cursor.fetchall()]
    expected = TABLE_KEYS[table]
    if [column.casefold() for column in columns] != [k.casefold() for k in expected]:
        found = ", ".join(columns) if columns else "no primary key"
        raise SourceMisconfigured(
            f"{named} must have the primary key ({', '.join(expected)}) that "
            f"change tracking reports deletes by; found: {found}. This PowerCampus "
            "version is not supported without a code change (check sp_pkeys)"
        )


def view_change_tracking_missing(table: str = sql.TRACKED_TABLE) -> SourceMisconfigured:
    """The error for a NULL min valid version on a table that exists."""
    return SourceMisconfigured(
        f"CHANGE_TRACKING_MIN_VALID_VERSION({table}) is NULL: the login "
        f"lacks VIEW CHANGE TRACKING (GRANT VIEW CHANGE TRACKING ON "
        f"{table} TO <login>) or change tracking is off for the table "
        "or the database; run `enrolstream source check`"
    )


def _database_state(cursor: CursorLike) -> tuple[str, Any, Any, Any]:
    row = _one(cursor, sql.DATABASE_STATE)
    return str(row[0]), row[1], row[2], row[3]


def _one(cursor: CursorLike, statement: str) -> Sequence[Any]:
    cursor.execute(statement)
    row = cursor.fetchone()
    if row is None:
        raise SourceMisconfigured(f"no row from a catalog query: {statement}")
    return row


# --- driver errors ---------------------------------------------------------------

Rule = tuple[type[SourceError], str]

#: By SQL Server error number (the ``(nnnn)`` before ``(SQLxxx)`` in the message).
NATIVE_RULES: dict[int, Rule] = {
    18456: (
        SourceMisconfigured,
        (
            "login failed: check user/password or the Kerberos "
            "ticket (kinit), and that the login is enabled"
        ),
    ),
    4060: (
        SourceMisconfigured,
        (
            "cannot open the database: check the database name "
            "and that the login is a user in it"
        ),
    ),
    229: (
        SourceMisconfigured,
        (
            "permission denied: run the grant script of "
            "docs/dba.md (SELECT, VIEW CHANGE TRACKING)"
        ),
    ),
    230: (
        SourceMisconfigured,
        "permission denied on a column: run the grant script of docs/dba.md",
    ),
    3952: (
        SourceMisconfigured,
        (
            "snapshot isolation is not allowed in this database: "
            "ALTER DATABASE ... SET ALLOW_SNAPSHOT_ISOLATION ON, or set "
            "snapshot_isolation=false"
        ),
    ),
    22105: (
        SourceMisconfigured,
        (
            "change tracking is not enabled on the table: ALTER "
            "TABLE ... ENABLE CHANGE_TRACKING"
        ),
    ),
    20009: (
        SourceUnavailable,
        (
            "cannot reach the server (FreeTDS): check server, port, firewall "
            "and that SQL Server listens on TCP"
        ),
    ),
    1205: (SourceUnavailable, "chosen as deadlock victim; retrying"),
    3960: (SourceUnavailable, "snapshot update conflict; retrying"),
    3961: (
        SourceUnavailable,
        "snapshot read of an object altered since the transaction began; retrying",
    ),
}

#: By SQLSTATE, when the error number has no rule.
SQLSTATE_RULES: dict[str, Rule] = {
    "08001": (
        SourceUnavailable,
        (
            "cannot reach the server: check server, port, "
            "firewall and that SQL Server listens on TCP"
        ),
    ),
    "08S01": (SourceUnavailable, "the connection to the server failed or was lost"),
    "08004": (SourceUnavailable, "the server rejected the connection"),
    "08003": (SourceUnavailable, "the connection is closed"),
    "08007": (SourceUnavailable, "the connection failed during a transaction"),
    "HYT00": (SourceUnavailable, "timeout expired (login_timeout_s / query_timeout_s)"),
    "HYT01": (SourceUnavailable, "connection timeout expired"),
    "HY008": (SourceUnavailable, "the operation was cancelled"),
    "40001": (
        SourceUnavailable,
        "serialization failure (deadlock or snapshot conflict); retrying",
    ),
    "28000": (SourceMisconfigured, "login failed: check user/password or Kerberos"),
    "42000": (
        SourceMisconfigured,
        (
            "the server refused the statement (permission or "
            "syntax): run `enrolstream source check`"
        ),
    ),
    "42S02": (SourceMisconfigured, "a table is missing or not visible to the login"),
    "42S22": (
        SourceMisconfigured,
        "a column is missing: unexpected PowerCampus schema",
    ),
    "IM002": (
        SourceMisconfigured,
        "ODBC driver or DSN not found: check the driver name against `odbcinst -q -d`",
    ),
    "IM003": (
        SourceMisconfigured,
        "the ODBC driver library could not be loaded: reinstall msodbcsql18 or tdsodbc",
    ),
    "01000": (
        SourceMisconfigured,
        (
            "the ODBC driver manager reported a problem "
            "loading the driver: check the driver name and installation"
        ),
    ),
}

#: pyodbc classes whose unknown SQLSTATEs are worth a retry.
_RETRIABLE_CLASSES = frozenset({"OperationalError", "InternalError"})
_MIN_SCRUBBED = 4
_NATIVE = re.compile(r"\((-?\d+)\)\s*\(SQL\w+\)")
_CERTIFICATE = re.compile(r"certificate|SSL Provider|TLS", re.IGNORECASE)


def native_error(message: str) -> int | None:
    """The SQL Server error number pyodbc appends to the driver's message, if any."""
    match = _NATIVE.search(message)
    return int(match.group(1)) if match else None


def classify(
    class_name: str, args: Sequence[Any], secrets: Sequence[str] = ()
) -> SourceError:
    """The error of ours for a pyodbc error; total over every class and SQLSTATE.

    ``args`` is the exception's ``args``: ``(sqlstate, message)`` from the driver,
    or a lone message from pyodbc itself. ``secrets`` are removed from the text.
    """
    sqlstate, message = _state_and_message(args)
    for secret in secrets:
        if len(secret) >= _MIN_SCRUBBED:  # shorter ones would mangle every message
            message = message.replace(secret, "**********")
    message = " ".join(message.split())
    message = message.removeprefix(f"[{sqlstate}] ") if sqlstate else message
    native = native_error(message)
    rule = _rule(class_name, sqlstate, native, message)
    kind, hint = rule
    code = f"{sqlstate or class_name}" + (f"/{native}" if native is not None else "")
    return kind(f"{hint} [{code}] {message}")


def _rule(class_name: str, sqlstate: str, native: int | None, message: str) -> Rule:
    if native is not None and native in NATIVE_RULES:
        return NATIVE_RULES[native]
    if sqlstate.startswith("08") and _CERTIFICATE.search(message):
        return (
            SourceMisconfigured,
            (
                "TLS handshake failed: trust the server "
                "certificate, or set trust_server_certificate=true / encrypt"
            ),
        )
    if sqlstate in SQLSTATE_RULES:
        return SQLSTATE_RULES[sqlstate]
    if sqlstate.startswith(("08", "HYT")) or class_name in _RETRIABLE_CLASSES:
        return (SourceUnavailable, "the database did not answer")
    return (SourceMisconfigured, "the database refused the request")


def _state_and_message(args: Sequence[Any]) -> tuple[str, str]:
    texts = [str(arg) for arg in args]
    if len(texts) >= 2 and re.fullmatch(r"[0-9A-Z]{5}", texts[0]):  # noqa: PLR2004
        return texts[0], " ".join(texts[1:])
    return "", " ".join(texts)
