"""The sandbox's sections, cross-tallies and calendar, as ``mapping generate`` reads them.

``SandboxCatalog`` implements ``consumers.courses.catalog.SectionCatalog`` over
the sandbox file with the same rules as the SQL Server reader: offered sections
(EVENT_STATUS ``A`` or ``P``) of the term, the cross-tally rows through the
configured column names, and the term's first and last calendar days. Reads run
in a worker thread (sqlite3 blocks).
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

from cdc.errors import SourceMisconfigured
from consumers.courses.catalog import (
    OFFERED_STATUSES,
    CatalogSection,
    CrossTally,
    CrossTallyColumns,
    TermCatalog,
    match_tallies,
)
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.schema import SECTION_COLUMNS, ci
from schemas.events import SectionKey, TermKey

__all__ = ["SandboxCatalog"]

_TERM = f"{ci('ACADEMIC_YEAR')} = ? AND {ci('ACADEMIC_TERM')} = ?"


def _day(value: object) -> date | None:
    """A PowerCampus datetime's day (``2021-01-04 00:00:00``), None when unset."""
    if value is None or not str(value).strip():
        return None
    return date.fromisoformat(str(value).strip()[:10])


def _text(value: object) -> str:
    return "" if value is None else str(value).rstrip()


def _key(row: tuple[object, ...]) -> SectionKey:
    return SectionKey(
        **{c.lower(): _text(v) for c, v in zip(SECTION_COLUMNS, row, strict=True)}
    )


class SandboxCatalog:
    """The sandbox at ``path`` as a ``SectionCatalog``."""

    def __init__(
        self, path: Path | str, columns: CrossTallyColumns | None = None
    ) -> None:
        self.path = Path(path)
        self.columns = columns or CrossTallyColumns()

    async def read_term(self, term: TermKey) -> TermCatalog:
        """The term's offered sections, cross-tallies and calendar dates."""
        return await asyncio.to_thread(self._read, term)

    def _read(self, term: TermKey) -> TermCatalog:
        if not self.path.is_file():
            raise SourceMisconfigured(
                f"no PowerCampus sandbox at {self.path}: run `enrolstream sandbox init` "
                "and `sandbox seed`, or set source.sandbox.path"
            )
        with PowerCampusSandbox(self.path) as sandbox:
            args = (term.academic_year.strip(), term.academic_term.strip())
            marks = ", ".join("?" for _ in OFFERED_STATUSES)
            rows = sandbox.query(
                f"SELECT {', '.join(SECTION_COLUMNS)}, EVENT_LONG_NAME, DEPARTMENT, "
                f"START_DATE, END_DATE FROM SECTIONS WHERE {_TERM} "
                f"AND upper(rtrim(EVENT_STATUS)) IN ({marks})",
                (*args, *OFFERED_STATUSES),
            )
            sections = tuple(
                CatalogSection(
                    key=_key(row[:6]),
                    long_name=_text(row[6]),
                    department=_text(row[7]),
                    start=_day(row[8]),
                    end=_day(row[9]),
                )
                for row in rows
            )
            calendar = sandbox.query(
                f"SELECT MIN(START_DATE), MAX(END_DATE) FROM ACADEMICCALENDAR WHERE {_TERM}",
                args,
            )
            tallies = self._crosstallies(sandbox, term, sections)
        start, end = calendar[0] if calendar else (None, None)
        return TermCatalog(term, sections, tallies, _day(start), _day(end))

    def _crosstallies(
        self,
        sandbox: PowerCampusSandbox,
        term: TermKey,
        sections: tuple[CatalogSection, ...],
    ) -> tuple[CrossTally, ...]:
        c = self.columns
        if not c.table:
            return ()
        where, args = [], []
        for column, value in (
            (c.year, term.academic_year),
            (c.term, term.academic_term),
        ):
            if column:
                where.append(f"{ci(column)} = ?")
                args.append(value.strip())
        session = c.session or "''"
        rows = sandbox.query(
            f"SELECT {c.group}, {session}, EVENT_ID, EVENT_SUB_TYPE, SECTION "
            f"FROM {c.table}" + (f" WHERE {' AND '.join(where)}" if where else ""),
            tuple(args),
        )
        return match_tallies(rows, sections, with_session=bool(c.session))
