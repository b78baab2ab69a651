"""What PowerCampus offers in a term: its sections, cross-tallies and calendar.

``SectionCatalog`` is the port ``enrolstream mapping generate`` reads it
through, implemented by the PowerCampus sandbox (``sandbox.powercampus.catalog``)
and the SQL Server adapter (``connectors.sqlserver.catalog``). Values come as
PowerCampus stores them with trailing spaces removed (compare under its
collation, ``schemas.collation``).

Sections are the term's *offered* ones: ``EVENT_STATUS`` ``A`` (active) or ``P``,
as public PowerCampus code keeps them; a cancelled (inactive) section feeds no
Moodle course. Cross-tallies come from ``SECTIONCROSSTALLY`` (PowerCampus's word
for cross-listing), read through the column names in ``CrossTallyColumns``
because the table's columns beyond the section's are not verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from schemas.events import SectionKey, TermKey

__all__ = [
    "OFFERED_STATUSES",
    "CatalogSection",
    "CrossTally",
    "CrossTallyColumns",
    "SectionCatalog",
    "TermCatalog",
    "match_tallies",
]

#: SECTIONS.EVENT_STATUS values of sections that are offered.
OFFERED_STATUSES = ("A", "P")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True, slots=True)
class CatalogSection:
    """One offered section of the term (a row of SECTIONS)."""

    key: SectionKey
    long_name: str = ""
    department: str = ""
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True, slots=True)
class CrossTally:
    """Sections PowerCampus tallies together (one tally code): one Moodle course."""

    code: str
    sections: tuple[SectionKey, ...]


@dataclass(frozen=True, slots=True)
class TermCatalog:
    """A term as ``mapping generate`` needs it."""

    term: TermKey
    sections: tuple[CatalogSection, ...]
    crosstallies: tuple[CrossTally, ...] = ()
    #: The term's first START_DATE and last END_DATE in ACADEMICCALENDAR (any
    #: session); None when the calendar has no row for the term.
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True, slots=True)
class CrossTallyColumns:
    """Where SECTIONCROSSTALLY keeps what: the table and its column names.

    ``group`` names the tally code's column; the year, term and session columns
    may be ``""`` when the table has none (rows are then matched to the term's
    sections by EVENT_ID, EVENT_SUB_TYPE and SECTION). ``table = ""`` reads no
    cross-tallies at all. Every name must be a plain SQL identifier.
    """

    table: str = "SECTIONCROSSTALLY"
    group: str = "TALLY_CODE"
    year: str = "ACADEMIC_YEAR"
    term: str = "ACADEMIC_TERM"
    session: str = "ACADEMIC_SESSION"

    def problems(self) -> list[tuple[str, str]]:
        """(name, problem) for every value that is not a usable identifier."""
        found = []
        for name in ("table", "group", "year", "term", "session"):
            value = getattr(self, name)
            optional = name in {"year", "term", "session"} or self.table == ""
            if (value or not optional) and not _IDENTIFIER.fullmatch(value):
                found.append(
                    (
                        name,
                        f"{value!r} is not a plain SQL identifier (letters, digits, _)",
                    )
                )
        return found


class SectionCatalog(Protocol):
    """PowerCampus's sections, cross-tallies and calendar, term by term."""

    async def read_term(self, term: TermKey) -> TermCatalog:
        """The term's offered sections, its cross-tallies and its dates.

        Raises the adapter's unavailable error (retriable) when the database
        cannot be read.
        """
        ...


def _rstripped(value: object) -> str:
    return "" if value is None else str(value).rstrip()


def match_tallies(
    rows: list[tuple[object, ...]],
    sections: tuple[CatalogSection, ...],
    *,
    with_session: bool,
) -> tuple[CrossTally, ...]:
    """Cross-tally rows ``(code, session, EVENT_ID, EVENT_SUB_TYPE, SECTION)`` matched
    to the term's sections (by session too when the table has one), per code."""
    by_key: dict[tuple[str, ...], list[SectionKey]] = {}
    for section in sections:
        k = section.key.key()
        match = (k[2], k[3], k[4], k[5]) if with_session else (k[3], k[4], k[5])
        by_key.setdefault(match, []).append(section.key)
    groups: dict[str, list[SectionKey]] = {}
    for code, session, event_id, sub_type, number in rows:
        wanted = SectionKey(
            academic_year="",
            academic_term="",
            academic_session=_rstripped(session),
            event_id=_rstripped(event_id),
            event_sub_type=_rstripped(sub_type),
            section=_rstripped(number),
        ).key()
        match = wanted[2:] if with_session else wanted[3:]
        for key in by_key.get(tuple(match), []):
            groups.setdefault(_rstripped(code), []).append(key)
    return tuple(CrossTally(code, tuple(keys)) for code, keys in groups.items())
