"""One term's mapping file: its entries, as campus-enrollment-sync wrote them and more.

File format, one JSON object per term, keyed by the Moodle course shortname::

    {"COUN6552COUN855202Winter2021": {"courses": ["COUN6552", "COUN8552"],
                                      "section": "02", "id": 4766},
     "BSC5102Winter2021": {"courses": ["BSC5102"], "id": 4748}}

A section feeds a Moodle course when its EVENT_ID is in ``courses`` and the entry
has no ``section`` or the same one. Several ``courses`` are cross-listed courses
merged into one Moodle course. Optional keys beyond campus-enrollment-sync's,
written by ``enrolstream mapping generate``:

* ``sections``: ``["COUN6552/02", "COUN8552/03"]``, exactly the (EVENT_ID,
  SECTION) pairs that feed the course, for a cross-tally whose sections differ
  (instead of ``section``; every EVENT_ID must be in ``courses``);
* ``groups``: ``false`` to go without a group per section in this course;
* ``starts`` / ``ends``: ``"2021-01-04"``, the dates enrolments get when
  ``consumer.enrolment_dates = "mapping"`` (UTC: from the start of ``starts`` to
  the end of ``ends``).

Matching follows PowerCampus's collation (``SQL_Latin1_General_CP1_CI_AS``):
case-insensitive, trailing spaces ignored; the text as written is kept for
display.

``parse_mapping_text`` raises ``MappingError`` (file, key, problem) on: invalid
JSON (line and column), a non-object document or entry, an unknown or repeated
key, ``courses`` not a non-empty list of non-empty strings, ``section`` not a
non-empty string, ``sections`` not a list of ``EVENT_ID/SECTION`` of the entry's
courses or given with ``section``, ``groups`` not a boolean, a date not
``YYYY-MM-DD`` or ending before it starts, ``id`` not a positive integer, and
values with leading spaces (PowerCampus pads only on the right, so they could
never match).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from consumers.errors import MappingError
from schemas.collation import collate
from schemas.events import SectionKey, TermKey

__all__ = [
    "WHOLE_FILE",
    "MappingEntry",
    "MoodleCourse",
    "normalise",
    "parse_mapping_text",
    "read_mapping_file",
]

_ENTRY_KEYS = ("courses", "section", "sections", "groups", "starts", "ends", "id")

#: The ``key`` of a MappingError about the whole file rather than one entry.
WHOLE_FILE = "(file)"


def normalise(value: str) -> str:
    """A PowerCampus value as its collation compares it (``schemas.collation``)."""
    return collate(value)


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
    #: Exactly the (EVENT_ID, SECTION) pairs that feed it, when the file says so.
    sections: tuple[tuple[str, str], ...] | None = None
    #: False: no group per section in this course, whatever the settings say.
    groups: bool = True
    starts: date | None = None
    ends: date | None = None

    def feeds(self, section: SectionKey) -> bool:
        """Whether registrations in ``section`` count toward this course."""
        if section.term.key() != self.course.term.key():
            return False
        wanted = normalise(section.event_id)
        if self.sections is not None:
            code = normalise(section.section)
            return any(
                normalise(e) == wanted and normalise(s) == code
                for e, s in self.sections
            )
        if self.section is not None and normalise(self.section) != normalise(
            section.section
        ):
            return False
        return any(normalise(event_id) == wanted for event_id in self.event_ids)

    def several_sections(self) -> bool:
        """Whether more than one section may feed it (the course gets section groups)."""
        if self.sections is not None:
            return len(self.sections) > 1
        return len(self.event_ids) > 1 or self.section is None


def read_mapping_file(path: Path, term: TermKey) -> list[MappingEntry]:
    """The entries of ``path`` for ``term``; ``MappingError`` on the first problem."""
    try:
        # utf-8-sig: tolerate the BOM that Windows editors write
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(
            str(path), WHOLE_FILE, f"cannot read the file: {exc}"
        ) from None
    return parse_mapping_text(text, path, term)


class _JsonObject(dict[str, object]):
    """A decoded JSON object that remembers keys the file repeats."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, object]]) -> _JsonObject:
    decoded = _JsonObject(pairs)
    counts = Counter(key for key, _ in pairs)
    decoded.repeated = tuple(key for key, count in counts.items() if count > 1)
    return decoded


def parse_mapping_text(text: str, path: Path, term: TermKey) -> list[MappingEntry]:
    """The entries of a mapping document (named ``path`` in errors and entries)."""
    file = str(path)
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
    unknown = sorted(set(value) - set(_ENTRY_KEYS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise _EntryError(f"unknown key(s) {names}; allowed: {', '.join(_ENTRY_KEYS)}")
    courses = _courses(value.get("courses"))
    section = value.get("section")
    if "section" in value and not (isinstance(section, str) and _padded_ok(section)):
        raise _EntryError(
            f"'section' is {section!r}: omit it to take every section, "
            'or give one like "02"'
        )
    sections = _sections(value, courses)
    groups = value.get("groups", True)
    if not isinstance(groups, bool):
        raise _EntryError(f"'groups' is {groups!r}: it must be true or false")
    starts, ends = _date(value, "starts"), _date(value, "ends")
    if starts is not None and ends is not None and ends < starts:
        raise _EntryError(f"'ends' {ends} is before 'starts' {starts}")
    course_id = value.get("id")
    if isinstance(course_id, bool) or not isinstance(course_id, int) or course_id <= 0:
        raise _EntryError(f"'id' is {course_id!r}: it must be the positive Moodle id")
    return MappingEntry(
        course=MoodleCourse(id=course_id, shortname=shortname, term=term),
        event_ids=courses,
        section=section if isinstance(section, str) else None,
        file=path,
        sections=sections,
        groups=groups,
        starts=starts,
        ends=ends,
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


def _sections(
    value: dict[str, object], courses: tuple[str, ...]
) -> tuple[tuple[str, str], ...] | None:
    if "sections" not in value:
        return None
    if "section" in value:
        raise _EntryError("give 'section' or 'sections', not both")
    items = value["sections"]
    if not isinstance(items, list) or not items:
        raise _EntryError(
            '\'sections\' must be a non-empty list like ["COUN6552/02", "COUN8552/03"]'
        )
    known = {normalise(course) for course in courses}
    pairs: list[tuple[str, str]] = []
    for item in items:
        event_id, slash, code = (
            item.rpartition("/") if isinstance(item, str) else ("", "", "")
        )
        if not slash or not _padded_ok(event_id) or not _padded_ok(code):
            raise _EntryError(
                f"'sections' holds {item!r}: each must be EVENT_ID/SECTION, e.g. "
                '"COUN6552/02"'
            )
        if normalise(event_id) not in known:
            raise _EntryError(f"'sections' names {event_id!r}, which 'courses' lacks")
        pairs.append((event_id, code))
    if len({(normalise(e), normalise(s)) for e, s in pairs}) != len(pairs):
        raise _EntryError("'sections' lists a section twice")
    return tuple(pairs)


def _date(value: dict[str, object], key: str) -> date | None:
    if key not in value:
        return None
    text = value[key]
    problem = _EntryError(f"{key!r} is {text!r}: give a date as YYYY-MM-DD")
    if not isinstance(text, str):
        raise problem
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise problem from None
