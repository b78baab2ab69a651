"""The per-term course mapping: which PowerCampus sections feed which Moodle course.

File format (campus-enrollment-sync's), one JSON object per term, keyed by the
Moodle course shortname::

    {"COUN6552COUN855202Winter2021": {"courses": ["COUN6552", "COUN8552"],
                                      "section": "02", "id": 4766},
     "BSC5102Winter2021": {"courses": ["BSC5102"], "id": 4748}}

A section feeds a Moodle course when its EVENT_ID is in ``courses`` and the entry
has no ``section`` or the same one. Several ``courses`` are cross-listed courses
merged into one Moodle course.

Matching follows PowerCampus's collation (``SQL_Latin1_General_CP1_CI_AS``):
case-insensitive, trailing spaces ignored (``rstrip`` + ``casefold``); the text
as written is kept for display. Term labels (``YEAR/TERM``) match the same way.

``load_mappings`` stops start-up with a ``MappingError`` (file, key, problem) on:
unreadable or invalid JSON (line and column), a non-object file or entry, an
unknown or repeated key, ``courses`` not a non-empty list of non-empty strings,
``section`` not a non-empty string, ``id`` not a positive integer, values with
leading spaces (PowerCampus pads only on the right, so they could never match),
a bad term label, and a shortname or Moodle course id used twice anywhere in
the set. The id rule spans terms on purpose: an event carries one term's
registrations, so a Moodle course fed from two terms could not be decided from
one event (dropping Fall would suspend someone still enrolled for Spring).

Decided, not an error: the same (course, section) may feed two Moodle courses
(e.g. a section also feeding a programme-wide course). Each is decided on its
own. ``MappingSet.overlaps()`` lists such pairs so the CLI and start-up can show
them as warnings; loading itself does not log.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from consumers.errors import MappingError
from schemas.collation import collate
from schemas.events import SectionKey, TermKey

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

_ENTRY_KEYS = frozenset({"courses", "section", "id"})
log = structlog.get_logger()

#: The ``key`` of a MappingError about the whole file rather than one entry.
WHOLE_FILE = "(file)"


def normalise(value: str) -> str:
    """A PowerCampus value as its collation compares it (``schemas.collation``)."""
    return collate(value)


def _term_norm(term: TermKey) -> tuple[str, str]:
    return term.key()


def parse_term_label(label: str) -> TermKey:
    """``"2021/Winter"`` → ``TermKey``; raises ``ValueError`` unless ``YEAR/TERM``."""
    return TermKey.parse(label)


@dataclass(frozen=True, slots=True)
class MoodleCourse:
    """One Moodle course of the mapping."""

    id: int
    shortname: str
    term: TermKey


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """One mapping-file entry: the course and the sections that feed it, as written."""

    course: MoodleCourse
    event_ids: tuple[str, ...]
    section: str | None
    file: Path

    def feeds(self, section: SectionKey) -> bool:
        """Whether registrations in ``section`` count toward this course."""
        if _term_norm(section.term) != _term_norm(self.course.term):
            return False
        if self.section is not None and normalise(self.section) != normalise(
            section.section
        ):
            return False
        wanted = normalise(section.event_id)
        return any(normalise(event_id) == wanted for event_id in self.event_ids)


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
        # Sections recur in every event of a term: decide each one once.
        self._courses_for: dict[SectionKey, tuple[MoodleCourse, ...]] = {}
        for entry in self._entries:
            term = _term_norm(entry.course.term)
            self._terms.setdefault(term, entry.course.term)
            for event_id in dict.fromkeys(normalise(e) for e in entry.event_ids):
                self._by_event.setdefault((term, event_id), []).append(entry)

    def courses_for(self, section: SectionKey) -> tuple[MoodleCourse, ...]:
        """The Moodle courses ``section``'s registrations feed, in file order."""
        known = self._courses_for.get(section)
        if known is not None:
            return known
        candidates = self._by_event.get(
            (_term_norm(section.term), normalise(section.event_id)), []
        )
        found = tuple(entry.course for entry in candidates if entry.feeds(section))
        self._courses_for[section] = found
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
            for entry in _read_file(path, term):
                _check_unique(entry, by_shortname, by_id)
                entries.append(entry)
    return MappingSet(terms, entries)


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


class _JsonObject(dict[str, object]):
    """A decoded JSON object that remembers keys the file repeats."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, object]]) -> _JsonObject:
    decoded = _JsonObject(pairs)
    counts = Counter(key for key, _ in pairs)
    decoded.repeated = tuple(key for key, count in counts.items() if count > 1)
    return decoded


def _read_file(path: Path, term: TermKey) -> list[MappingEntry]:
    file = str(path)
    try:
        # utf-8-sig: tolerate the BOM that Windows editors write
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(file, WHOLE_FILE, f"cannot read the file: {exc}") from None
    try:
        document = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        problem = f"invalid JSON at {where}: {exc.msg}"
        raise MappingError(file, WHOLE_FILE, problem) from None
    if not isinstance(document, _JsonObject):
        problem = "the file must hold one JSON object keyed by Moodle shortname"
        raise MappingError(file, WHOLE_FILE, problem)
    if document.repeated:
        problem = "shortname appears twice in the file"
        raise MappingError(file, document.repeated[0], problem)
    entries = []
    for shortname, value in document.items():
        try:
            entries.append(_entry(path, term, shortname, value))
        except _EntryError as exc:
            raise MappingError(file, shortname, str(exc)) from None
    return entries


class _EntryError(Exception):
    """One entry's problem, before the file and key are attached."""


def _entry(path: Path, term: TermKey, shortname: str, value: object) -> MappingEntry:
    """One validated entry; raises ``_EntryError`` naming the problem."""
    if not shortname.strip():
        raise _EntryError("shortname is empty")
    if not isinstance(value, _JsonObject):
        raise _EntryError('entry must be an object like {"courses": [...], "id": 123}')
    if value.repeated:
        raise _EntryError(f"key {value.repeated[0]!r} appears twice")
    unknown = sorted(set(value) - _ENTRY_KEYS)
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise _EntryError(f"unknown key(s) {names}; allowed: courses, section, id")
    courses = _courses(value.get("courses"))
    section = value.get("section")
    if "section" in value and not (isinstance(section, str) and _padded_ok(section)):
        raise _EntryError(
            f"'section' is {section!r}: omit it to take every section, "
            'or give one like "02"'
        )
    course_id = value.get("id")
    if isinstance(course_id, bool) or not isinstance(course_id, int) or course_id <= 0:
        raise _EntryError(f"'id' is {course_id!r}: it must be the positive Moodle id")
    return MappingEntry(
        course=MoodleCourse(id=course_id, shortname=shortname, term=term),
        event_ids=courses,
        section=section if isinstance(section, str) else None,
        file=path,
    )


def _padded_ok(value: str) -> bool:
    # PowerCampus pads on the right only: a leading space could never match.
    return bool(value.strip()) and value == value.lstrip()


def _courses(courses: object) -> tuple[str, ...]:
    if not isinstance(courses, list) or not courses:
        raise _EntryError(
            "'courses' must be a non-empty list of PowerCampus course ids"
        )
    for item in courses:
        if not isinstance(item, str) or not _padded_ok(item):
            raise _EntryError(
                f"'courses' holds {item!r}: each must be a non-empty course id "
                "without leading spaces"
            )
    counts = Counter(normalise(item) for item in courses)
    repeated = [item for item, count in counts.items() if count > 1]
    if repeated:
        raise _EntryError(f"'courses' lists {repeated[0]!r} twice")
    return tuple(str(item) for item in courses)


__all__ = [
    "WHOLE_FILE",
    "MappingEntry",
    "MappingError",
    "MappingOverlap",
    "MappingSet",
    "MoodleCourse",
    "check_mapping",
    "load_mappings",
    "normalise",
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
