"""Which sections share a Moodle course: a term's catalog in, proposed courses out. Pure.

Rules, in order:

1. **Cross-tallies** (SECTIONCROSSTALLY): the offered sections of one tally code
   are one Moodle course (``kind="crosstally"``). A code with a single offered
   section left is no tally: that section goes on to rule 2.
2. **The shared-course rule** (``courses.share``) for every other section:
   ``course`` (default, campus-enrollment-sync's convention): one Moodle course
   per EVENT_ID with all its sections; ``section``: one per EVENT_ID and SECTION
   code (its sub-types together, a lecture with its lab).

A course of rule 2 that has every offered section of its EVENT_ID takes *every*
section (``every_section``: its mapping entry names no section, so a section
added later feeds it too); the sections of a cross-tallied EVENT_ID that are not
tallied form a course of their own, limited to them.

Values compare under PowerCampus's collation; the text of the first section seen
is kept for names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from consumers.courses.catalog import CatalogSection, TermCatalog
from schemas.collation import collate
from schemas.events import TermKey

__all__ = ["ProposedCourse", "ShareRule", "propose"]

ShareRule = Literal["course", "section"]


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    """Values in first-seen order, one per collated value, trailing blanks removed."""
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(collate(value), value.rstrip())
    return tuple(seen.values())


@dataclass(frozen=True, slots=True)
class ProposedCourse:
    """A Moodle course the term needs, and the sections that feed it."""

    term: TermKey
    kind: Literal["crosstally", "course", "section"]
    sections: tuple[CatalogSection, ...]
    every_section: bool
    tally: str | None = None

    @property
    def event_ids(self) -> tuple[str, ...]:
        """The PowerCampus courses feeding it, in order."""
        return _unique([s.key.event_id for s in self.sections])

    @property
    def section_codes(self) -> tuple[str, ...]:
        """The SECTION codes feeding it, in order."""
        return _unique([s.key.section for s in self.sections])

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Its (EVENT_ID, SECTION) pairs, in order, each once."""
        seen: dict[tuple[str, str], tuple[str, str]] = {}
        for s in self.sections:
            key = (collate(s.key.event_id), collate(s.key.section))
            seen.setdefault(key, (s.key.event_id.rstrip(), s.key.section.rstrip()))
        return tuple(seen.values())

    @property
    def start(self) -> date | None:
        """The earliest START_DATE of its sections."""
        return min((s.start for s in self.sections if s.start), default=None)

    @property
    def end(self) -> date | None:
        """The latest END_DATE of its sections."""
        return max((s.end for s in self.sections if s.end), default=None)

    def fields(self) -> dict[str, str]:
        """The template fields (``naming.COURSE_FIELDS``, but ``shortname``)."""
        titles = _unique([s.long_name for s in self.sections if s.long_name.strip()])
        departments = _unique([s.department for s in self.sections if s.department])
        return {
            "courses": "".join(self.event_ids),
            "course": self.event_ids[0],
            "sections": "" if self.every_section else "".join(self.section_codes),
            "term": self.term.academic_term,
            "year": self.term.academic_year,
            "title": " / ".join(titles) or " / ".join(self.event_ids),
            "department": departments[0] if departments else "",
        }


def propose(
    catalog: TermCatalog, *, share: ShareRule = "course"
) -> list[ProposedCourse]:
    """The Moodle courses of the term: cross-tallies first (by code), then the rest
    by EVENT_ID and section."""
    offered = {s.key.key(): s for s in catalog.sections}
    proposals: list[ProposedCourse] = []
    tallied: set[tuple[str, ...]] = set()
    for tally in sorted(catalog.crosstallies, key=lambda t: collate(t.code)):
        members = [offered[k.key()] for k in tally.sections if k.key() in offered]
        members = list({m.key.key(): m for m in members}.values())
        if len(members) < 2:  # noqa: PLR2004 - a tally needs two sections
            continue
        tallied.update(m.key.key() for m in members)
        proposals.append(
            ProposedCourse(
                catalog.term, "crosstally", _ordered(members), False, tally.code
            )
        )
    rest = [s for k, s in offered.items() if k not in tallied]
    by_course: dict[str, list[CatalogSection]] = {}
    for section in rest:
        by_course.setdefault(collate(section.key.event_id), []).append(section)
    every = {
        collate(s.key.event_id) for s in catalog.sections
    } - {  # courses with a tallied section do not take every section
        collate(s.key.event_id) for s in catalog.sections if s.key.key() in tallied
    }
    for event_id in sorted(by_course):
        sections = by_course[event_id]
        if share == "course":
            proposals.append(
                ProposedCourse(
                    catalog.term, "course", _ordered(sections), event_id in every
                )
            )
            continue
        by_code: dict[str, list[CatalogSection]] = {}
        for section in sections:
            by_code.setdefault(collate(section.key.section), []).append(section)
        proposals.extend(
            ProposedCourse(catalog.term, "section", _ordered(by_code[code]), False)
            for code in sorted(by_code)
        )
    return proposals


def _ordered(sections: Sequence[CatalogSection]) -> tuple[CatalogSection, ...]:
    return tuple(sorted(sections, key=lambda s: s.key.key()))
