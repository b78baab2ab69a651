"""The mapping a running consumer decides with, following each published revision.

Start-up reads the mapping files (``consumer.mappings``) as before; then every
revision published on the mappings topic (``enrolstream mapping publish``)
replaces its term's mapping, read in topic order. Before one is used it is
validated exactly as a file is, together with the other terms' mappings (a
Moodle course id mapped twice across terms is refused too). A revision that
cannot be used is refused with one log line naming the file, the key and the
problem, and the mapping in force stays. Why a compacted topic: every consumer
of the group (on any host) sees the same revisions in the same order without a
shared file system, the latest revision per term survives compaction, and
publishing is acknowledged (docs/courses.md).

``MappingFollower.refresh`` is the consumer's step; ``holds`` answers whether a
revision is in force (events republished because of a revision name it in
``snapshot_id``, and are decided only once it is, or once a newer one is).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog
from pydantic import ValidationError

from consumers.errors import MappingError
from consumers.mapping import (
    MappingSet,
    build_mapping,
    entries_by_term,
    parse_mapping_text,
)
from consumers.mapping_file import WHOLE_FILE, MappingEntry, normalise
from schemas.events import TermKey
from schemas.mappings import MAPPING_EVENT_PREFIX, PublishedMapping

__all__ = [
    "LiveMapping",
    "LiveShortnames",
    "MappingChange",
    "MappingFeed",
    "MappingFollower",
    "apply_revision",
    "changed_courses",
]

log = structlog.get_logger()


class MappingFeed(Protocol):
    """The mappings topic as one consumer reads it (``connectors.kafka``)."""

    async def read_new(self, *, wait: bool) -> list[bytes]:
        """Records not read yet; ``wait``: up to the topic's end as of now."""
        ...


@dataclass(frozen=True, slots=True)
class MappingChange:
    """A revision now in force, and the Moodle courses it maps anew or otherwise."""

    term: str
    digest: str
    file: str
    courses: int
    changed: tuple[int, ...]


def _feeding(entry: MappingEntry) -> tuple[object, ...]:
    """What decides who is in the course, as the collation compares it."""
    sections = (
        tuple(sorted((normalise(e), normalise(s)) for e, s in entry.sections))
        if entry.sections is not None
        else None
    )
    return (
        tuple(sorted(normalise(e) for e in entry.event_ids)),
        normalise(entry.section) if entry.section is not None else None,
        sections,
        entry.groups,
        entry.starts,
        entry.ends,
    )


def changed_courses(
    before: Sequence[MappingEntry], after: Sequence[MappingEntry]
) -> tuple[int, ...]:
    """Moodle ids newly mapped, or fed otherwise than before (their people are decided
    again); a course no longer mapped is left as it is (unmapping drops nobody)."""
    old = {e.course.id: _feeding(e) for e in before}
    return tuple(
        sorted(e.course.id for e in after if old.get(e.course.id) != _feeding(e))
    )


def apply_revision(
    current: MappingSet, published: PublishedMapping
) -> tuple[MappingSet, tuple[int, ...]]:
    """The set with ``published`` in force for its term, and the courses it changes.

    ``MappingError`` (file, key, problem) when it cannot be used.
    """
    try:
        term = TermKey.parse(published.term)
    except ValueError as exc:
        raise MappingError(published.file, "term", str(exc)) from None
    entries = parse_mapping_text(published.document, Path(published.file), term)
    terms = entries_by_term(current)
    same = [t for t in terms if t.matches(term)]
    before = terms.pop(same[0]) if same else []
    terms[same[0] if same else term] = entries
    return build_mapping(terms), changed_courses(before, entries)


@dataclass(slots=True)
class LiveMapping:
    """The mapping in force and the revision of each term."""

    current: MappingSet
    digests: dict[tuple[str, str], str] = field(default_factory=dict)

    def holds(self, term: str, digest: str) -> bool:
        """Whether that revision of that term is in force."""
        try:
            key = TermKey.parse(term).key()
        except ValueError:
            return True  # not a revision name: nothing to wait for
        return self.digests.get(key) == digest

    def apply(self, published: PublishedMapping) -> MappingChange:
        """Put ``published`` in force; ``MappingError`` leaves the mapping as it was."""
        mapping, changed = apply_revision(self.current, published)
        self.current = mapping
        self.digests[TermKey.parse(published.term).key()] = published.digest
        count = sum(
            1 for e in mapping.entries() if e.course.term.label() == published.term
        )
        return MappingChange(
            published.term, published.digest, published.file, count, changed
        )


class LiveShortnames(Mapping[int, str]):
    """Moodle id -> shortname of the mapping in force (a sink naming courses by
    shortname, Conduit's, follows published revisions through it)."""

    def __init__(self, live: LiveMapping) -> None:
        self.live = live
        self._of: MappingSet | None = None
        self._names: dict[int, str] = {}

    def _now(self) -> dict[int, str]:
        if self._of is not self.live.current:  # a revision came into force
            self._of = self.live.current
            self._names = {course.id: course.shortname for course in self._of}
        return self._names

    def __getitem__(self, courseid: int) -> str:
        return self._now()[courseid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def revision_of(snapshot_id: str | None) -> tuple[str, str] | None:
    """(term, digest) an event republished for a mapping revision names, else None."""
    if snapshot_id is None or not snapshot_id.startswith(MAPPING_EVENT_PREFIX):
        return None
    term, _, digest = snapshot_id[len(MAPPING_EVENT_PREFIX) :].rpartition(":")
    return (term, digest) if term and digest else None


@dataclass(slots=True)
class MappingFollower:
    """Reads the mappings topic and keeps ``live`` in step; logs what it does."""

    feed: MappingFeed
    live: LiveMapping
    refused: int = 0
    changes: list[MappingChange] = field(default_factory=list)

    async def refresh(self, *, wait: bool = False) -> list[MappingChange]:
        """Apply every revision published since the last refresh, in order."""
        done = []
        for value in await self.feed.read_new(wait=wait):
            change = self._apply(value)
            if change is not None:
                done.append(change)
        self.changes.extend(done)
        return done

    def _apply(self, value: bytes) -> MappingChange | None:
        outcome = self._try(value)
        if isinstance(outcome, MappingChange):
            log.info(
                "mapping_changed",
                term=outcome.term,
                file=outcome.file,
                revision=outcome.digest,
                courses=outcome.courses,
                decided_again=len(outcome.changed),
            )
            return outcome
        self.refused += 1
        # one line naming the file, the key and the problem; no traceback
        log.error(
            "mapping_refused",
            file=outcome.file,
            key=outcome.key,
            problem=outcome.problem,
            hint="the mapping in force stays; fix the file and publish it again",
        )
        return None

    def _try(self, value: bytes) -> MappingChange | MappingError:
        try:
            published = PublishedMapping.model_validate_json(value)
        except ValidationError as exc:
            problem = f"not a published mapping: {exc.errors()[0]['msg']}"
            return MappingError("(the mappings topic)", WHOLE_FILE, problem)
        try:
            return self.live.apply(published)
        except MappingError as exc:
            return exc
