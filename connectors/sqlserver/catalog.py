"""PowerCampus's sections, cross-tallies and calendar on SQL Server (``SectionCatalog``).

Reads with one short-lived connection per call (``mapping generate`` is run by
hand or by cron, once), each blocking pyodbc call in a worker thread; driver
errors become the capture side's typed errors (``map_pyodbc_errors``). The
statements are in ``catalog_sql``. SQL Server compares under the database's
collation (case-insensitive, trailing blanks ignored), as the sandbox does.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from connectors.sqlserver.catalog_sql import CALENDAR, SECTIONS, crosstally_query
from connectors.sqlserver.config import SqlServerSettings, secrets_of
from connectors.sqlserver.source import connect, map_pyodbc_errors
from consumers.courses.catalog import (
    OFFERED_STATUSES,
    CatalogSection,
    CrossTallyColumns,
    TermCatalog,
    match_tallies,
)
from schemas.events import SectionKey, TermKey

__all__ = ["SqlServerCatalog"]


def _day(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None if value is None else date.fromisoformat(str(value)[:10])


def _text(value: object) -> str:
    return "" if value is None else str(value).rstrip()


class SqlServerCatalog:
    """The PowerCampus database as a ``SectionCatalog``."""

    def __init__(
        self, settings: SqlServerSettings, columns: CrossTallyColumns | None = None
    ) -> None:
        self._settings = settings
        self._columns = columns or CrossTallyColumns()

    async def read_term(self, term: TermKey) -> TermCatalog:
        """The term's offered sections, cross-tallies and calendar dates."""
        return await asyncio.to_thread(self._read, term)

    def _read(self, term: TermKey) -> TermCatalog:
        args = (term.academic_year.strip(), term.academic_term.strip())
        with map_pyodbc_errors(secrets_of(self._settings)):
            connection = connect(self._settings)
            try:
                cursor = connection.cursor()
                rows = cursor.execute(SECTIONS, (*args, *OFFERED_STATUSES)).fetchall()
                first, last = cursor.execute(CALENDAR, args).fetchone() or (None, None)
                tallies: list[Any] = []
                if self._columns.table:
                    text, markers = crosstally_query(self._columns)
                    tallies = cursor.execute(text, args[:markers]).fetchall()
            finally:
                connection.close()
        sections = tuple(
            CatalogSection(
                key=SectionKey(
                    academic_year=_text(r[0]),
                    academic_term=_text(r[1]),
                    academic_session=_text(r[2]),
                    event_id=_text(r[3]),
                    event_sub_type=_text(r[4]),
                    section=_text(r[5]),
                ),
                long_name=_text(r[6]),
                department=_text(r[7]),
                start=_day(r[8]),
                end=_day(r[9]),
            )
            for r in rows
        )
        crosstallies = match_tallies(
            [tuple(row) for row in tallies],
            sections,
            with_session=bool(self._columns.session),
        )
        return TermCatalog(term, sections, crosstallies, _day(first), _day(last))
