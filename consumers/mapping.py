"""The per-term course mapping: which PowerCampus sections feed which Moodle course.

One file per term (``consumers.mapping_file`` reads and validates each, and
documents the format, campus-enrollment-sync's with a few optional keys).
Term labels (``YEAR/TERM``) match under PowerCampus's collation.

``load_mappings`` stops start-up with a ``MappingError`` (file, key, problem) on
any problem of a file (``mapping_file``), a bad term label, and a shortname or
Moodle course id used twice anywhere in the set. The id rule spans terms on
purpose: an event carries one term's registrations, so a Moodle course fed
from two terms could not be decided from one event (dropping Fall would
suspend someone still enrolled for Spring).

Decided, not an error: the same (course, section) may feed two Moodle courses
(e.g. a section also feeding a programme-wide course). Each is decided on its
own. ``MappingSet.overlaps()`` lists such pairs so the CLI and start-up can show
them as warnings; loading itself does not log.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from consumers.errors import MappingError
from consumers.mapping_file import (
    WHOLE_FILE,
    MappingEntry,
    MoodleCourse,
    normalise,
    parse_mapping_text,
    read_mapping_file,
)
from schemas.events import SectionKey, TermKey

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

log = structlog.get_logger()

_SectionFields = tuple[str, str, str, str, str, str]


def _term_norm(term: TermKey) -> tuple[str, str]:
    return term.key()


def parse_term_label(label: str) -> TermKey:
    """``"2021/Winter"`` → ``TermKey``; raises ``ValueError`` unless ``YEAR/TERM``."""
    return TermKey.parse(label)


@dataclass(frozen=True, slots=True)
class MappingOverlap:
    """Two Moodle courses fed by one (course, section): allowed, worth a warning."""

    term: TermKey
    event_id: str
    section: str | None
    shortnames: tuple[str, str]


class MappingSet:
    """Every live term's mapping, validated; lookups follow PowerCampus's collation."""

    def __init__(
        self, terms: Iterable[TermKey], entries: Iterable[MappingEntry]
    ) -> None:
        """Index validated entries; ``load_mappings`` builds one from files."""
        self._terms = {_term_norm(term): term for term in terms}
        self._entries = tuple(entries)
        self._by_id = {entry.course.id: entry for entry in self._entries}
        self._by_event: dict[tuple[tuple[str, str], str], list[MappingEntry]] = {}
        # Sections recur in every event of a term: decide each one once. Keyed by
        # the six values as written (what SectionKey's equality compares): a
        # tuple hashes and compares in C, a model through pydantic's __eq__.
        self._courses_for: dict[_SectionFields, tuple[MoodleCourse, ...]] = {}
        for entry in self._entries:
            term = _term_norm(entry.course.term)
            self._terms.setdefault(term, entry.course.term)
            for event_id in dict.fromkeys(normalise(e) for e in entry.event_ids):
                self._by_event.setdefault((term, event_id), []).append(entry)

    def courses_for(self, section: SectionKey) -> tuple[MoodleCourse, ...]:
        """The Moodle courses ``section``'s registrations feed, in file order."""
        fields = (
            section.academic_year,
            section.academic_term,
            section.academic_session,
            section.event_id,
            section.event_sub_type,
            section.section,
        )
        known = self._courses_for.get(fields)
        if known is not None:
            return known
        candidates = self._by_event.get(
            (_term_norm(section.term), normalise(section.event_id)), []
        )
        found = tuple(entry.course for entry in candidates if entry.feeds(section))
        self._courses_for[fields] = found
        return found

    def course(self, course_id: int) -> MoodleCourse | None:
        """The mapped Moodle course with this id, or None."""
        entry = self._by_id.get(course_id)
        return None if entry is None else entry.course

    def entry(self, course_id: int) -> MappingEntry | None:
        """The entry (sources and file) of the Moodle course with this id, or None."""
        return self._by_id.get(course_id)

    def entries(self) -> tuple[MappingEntry, ...]:
        """Every entry, in file order."""
        return self._entries

    def entries_in(self, term: TermKey) -> list[MappingEntry]:
        """The entries of one term, in file order."""
        return [e for e in self._entries if e.course.term.matches(term)]

    def terms(self) -> tuple[TermKey, ...]:
        """The terms the mapping covers (including terms whose file is empty)."""
        return tuple(self._terms.values())

    def covers(self, term: TermKey) -> bool:
        """Whether ``term`` has a mapping file (events of other terms are ignored)."""
        return _term_norm(term) in self._terms

    def overlaps(self) -> tuple[MappingOverlap, ...]:
        """Pairs of Moodle courses fed by the same (course, section) in one term."""
        found: list[MappingOverlap] = []
        for entries in self._by_event.values():
            for first, second in combinations(entries, 2):
                if _sections_overlap(first.section, second.section):
                    found.append(_overlap(first, second))
        return tuple(found)

    def __iter__(self) -> Iterator[MoodleCourse]:
        """Every mapped Moodle course, in file order."""
        return (entry.course for entry in self._entries)

    def __len__(self) -> int:
        """How many Moodle courses are mapped."""
        return len(self._entries)


def _sections_overlap(first: str | None, second: str | None) -> bool:
    if first is None or second is None:
        return True
    return normalise(first) == normalise(second)


def _overlap(first: MappingEntry, second: MappingEntry) -> MappingOverlap:
    shared = {normalise(e) for e in second.event_ids}
    event_id = next(e for e in first.event_ids if normalise(e) in shared)
    return MappingOverlap(
        term=first.course.term,
        event_id=event_id.rstrip(),
        section=first.section if first.section is not None else second.section,
        shortnames=(first.course.shortname, second.course.shortname),
    )


def load_mappings(files: Mapping[str, Path | Sequence[Path]]) -> MappingSet:
    """Read and validate every term's mapping; ``MappingError`` on the first problem.

    ``files`` maps a term label ``YEAR/TERM`` to its file (or files, read as one
    term). Labels differing only in case or padding name the same term.
    """
    terms: list[TermKey] = []
    entries: list[MappingEntry] = []
    by_shortname: dict[str, MappingEntry] = {}
    by_id: dict[int, MappingEntry] = {}
    for label, given in files.items():
        paths = (given,) if isinstance(given, Path) else tuple(given)
        try:
            term = parse_term_label(label)
        except ValueError as exc:
            file = str(paths[0]) if paths else "(no file)"
            raise MappingError(file, label, str(exc)) from None
        terms.append(term)
        for path in paths:
            for entry in read_mapping_file(path, term):
                _check_unique(entry, by_shortname, by_id)
                entries.append(entry)
    return MappingSet(terms, entries)


def build_mapping(terms: Mapping[TermKey, Sequence[MappingEntry]]) -> MappingSet:
    """A set of every term's entries, checked as ``load_mappings`` checks files
    (a shortname or Moodle id used twice anywhere); ``MappingError`` otherwise."""
    by_shortname: dict[str, MappingEntry] = {}
    by_id: dict[int, MappingEntry] = {}
    entries: list[MappingEntry] = []
    for term_entries in terms.values():
        for entry in term_entries:
            _check_unique(entry, by_shortname, by_id)
            entries.append(entry)
    return MappingSet(terms.keys(), entries)


def entries_by_term(mapping: MappingSet) -> dict[TermKey, list[MappingEntry]]:
    """The set's entries per term (every term it covers, empty ones included)."""
    found: dict[TermKey, list[MappingEntry]] = {term: [] for term in mapping.terms()}
    for entry in mapping.entries():
        term = next(t for t in found if t.matches(entry.course.term))
        found[term].append(entry)
    return found


def _check_unique(
    entry: MappingEntry,
    by_shortname: dict[str, MappingEntry],
    by_id: dict[int, MappingEntry],
) -> None:
    course = entry.course
    other = by_shortname.setdefault(course.shortname, entry)
    if other is not entry:
        where = f"{other.file} (term {other.course.term.label()})"
        raise MappingError(
            str(entry.file), course.shortname, f"shortname is also mapped in {where}"
        )
    other = by_id.setdefault(course.id, entry)
    if other is not entry:
        problem = f"Moodle course id {course.id} is also mapped by "
        problem += f"{other.course.shortname!r} in {other.file}"
        if _term_norm(other.course.term) != _term_norm(course.term):
            problem += (
                f" for term {other.course.term.label()}; an event carries one term, "
                "so a course fed by two terms cannot be decided"
            )
        raise MappingError(str(entry.file), course.shortname, problem)


__all__ = [
    "WHOLE_FILE",
    "MappingEntry",
    "MappingError",
    "MappingOverlap",
    "MappingSet",
    "MoodleCourse",
    "build_mapping",
    "check_mapping",
    "entries_by_term",
    "load_mappings",
    "normalise",
    "parse_mapping_text",
    "parse_term_label",
]


def check_mapping(
    mapping: MappingSet, files: Mapping[str, object], *, allow_empty: bool = False
) -> None:
    """Refuse an empty mapping (``MappingError``); warn about shared sections."""
    if not len(mapping) and not allow_empty:
        names = ", ".join(str(f) for f in files.values()) or "(no files configured)"
        raise MappingError(
            names,
            "consumer.mappings",
            "no Moodle course is mapped: the consumer would apply nothing; map the "
            "live terms' courses, or set consumer.allow_empty_mapping = true",
        )
    for overlap in mapping.overlaps():
        first, second = overlap.shortnames
        log.warning(
            "mapping_section_feeds_two_courses",
            event_id=overlap.event_id,
            section=overlap.section or "every section",
            courses=[first, second],
            hint="students of that section are enrolled in both courses",
        )
