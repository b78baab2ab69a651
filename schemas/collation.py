"""PowerCampus's collation, decided once: when two of its values are the same value.

PowerCampus runs on SQL Server with a case-insensitive, accent-sensitive
collation (``SQL_Latin1_General_CP1_CI_AS``) and ``CHAR`` columns padded with
spaces. SQL Server compares strings case-insensitively and ignores trailing
spaces (``'Winter' = 'WINTER  '``); leading spaces count. So two PowerCampus
values are the same when ``collate`` gives the same string:

* ``collate(value)``: trailing spaces removed, case folded. Every key built from
  PowerCampus values (a person, a term, a person-term, a section, an EVENT_ID in
  a mapping) goes through it, in the capture adapters, the sandbox, the
  consumer, the reconcile and the dead letters alike (``tests/unit/test_collation.py``
  proves each of them uses it);
* ``unpad(value)``: the value as stored, without the ``CHAR`` padding: the form
  events carry and people read.

Term labels (``2021/Winter``) are parsed in one place too: ``TermKey.parse``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.events import SectionKey, TermKey

__all__ = ["collate", "person_term_key", "section_key", "term_key", "unpad"]

#: SQL Server pads CHAR values with spaces, and ignores them when comparing.
_PADDING = " "


def unpad(value: str) -> str:
    """The value without the trailing spaces a ``CHAR`` column pads it with."""
    return value.rstrip(_PADDING)


def collate(value: str) -> str:
    """The value as PowerCampus's collation compares it: unpadded, case folded."""
    return unpad(value).casefold()


def term_key(term: TermKey) -> tuple[str, str]:
    """A term (ACADEMIC_YEAR, ACADEMIC_TERM) as the collation compares it."""
    return (collate(term.academic_year), collate(term.academic_term))


def person_term_key(people_code_id: str, term: TermKey) -> tuple[str, str, str]:
    """A person's term (PEOPLE_CODE_ID, year, term) as the collation compares it."""
    return (collate(people_code_id), *term_key(term))


def section_key(section: SectionKey) -> tuple[str, str, str, str, str, str]:
    """A section (the six columns of SECTIONS' key) as the collation compares it."""
    return (
        collate(section.academic_year),
        collate(section.academic_term),
        collate(section.academic_session),
        collate(section.event_id),
        collate(section.event_sub_type),
        collate(section.section),
    )
