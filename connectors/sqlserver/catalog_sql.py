"""The T-SQL ``mapping generate`` sends, apart from the driver so a test parses it.

Sections, the calendar and the cross-tallies of one term, with ODBC ``?``
markers. The cross-tally table and column names come from settings
(``courses.crosstally``), checked to be plain identifiers and bracket-quoted.
"""

from __future__ import annotations

from consumers.courses.catalog import OFFERED_STATUSES, CrossTallyColumns

__all__ = ["CALENDAR", "SECTIONS", "catalog_statements", "crosstally_query"]

#: The term's offered sections (year, term, then each offered EVENT_STATUS).
SECTIONS = (
    "SELECT s.ACADEMIC_YEAR, s.ACADEMIC_TERM, s.ACADEMIC_SESSION, s.EVENT_ID,"
    " s.EVENT_SUB_TYPE, s.SECTION, s.EVENT_LONG_NAME, s.DEPARTMENT,"
    " CAST(s.START_DATE AS DATE) AS START_DAY, CAST(s.END_DATE AS DATE) AS END_DAY"
    " FROM dbo.SECTIONS AS s WHERE s.ACADEMIC_YEAR = ? AND s.ACADEMIC_TERM = ?"
    f" AND s.EVENT_STATUS IN ({', '.join('?' for _ in OFFERED_STATUSES)})"
)

#: The term's first and last day over its sessions (year, term).
CALENDAR = (
    "SELECT CAST(MIN(ac.START_DATE) AS DATE) AS FIRST_DAY,"
    " CAST(MAX(ac.END_DATE) AS DATE) AS LAST_DAY"
    " FROM dbo.ACADEMICCALENDAR AS ac"
    " WHERE ac.ACADEMIC_YEAR = ? AND ac.ACADEMIC_TERM = ?"
)


def _quoted(name: str) -> str:
    return f"[{name}]"


def crosstally_query(columns: CrossTallyColumns) -> tuple[str, int]:
    """The cross-tally rows of the term and how many markers it binds (year, term).

    Rows: tally code, session (``N''`` when the table has none), EVENT_ID,
    EVENT_SUB_TYPE, SECTION. ``ValueError`` for a name that is not an identifier.
    """
    problems = columns.problems()
    if problems:
        name, problem = problems[0]
        raise ValueError(f"courses.crosstally.{name}: {problem}")
    session = f"ct.{_quoted(columns.session)}" if columns.session else "N''"
    where = [
        f"ct.{_quoted(column)} = ?" for column in (columns.year, columns.term) if column
    ]
    text = (
        f"SELECT ct.{_quoted(columns.group)} AS TALLY, {session} AS SESSION,"
        " ct.EVENT_ID, ct.EVENT_SUB_TYPE, ct.SECTION"
        f" FROM dbo.{_quoted(columns.table)} AS ct"
    )
    if where:
        text += " WHERE " + " AND ".join(where)
    return text, len(where)


def catalog_statements() -> dict[str, str]:
    """Every statement, by name, for the parse test."""
    default, _ = crosstally_query(CrossTallyColumns())
    bare, _ = crosstally_query(
        CrossTallyColumns(year="", term="", session="", group="CODE")
    )
    return {
        "SECTIONS": SECTIONS,
        "CALENDAR": CALENDAR,
        "crosstally_query(default)": default,
        "crosstally_query(no term columns)": bare,
    }
