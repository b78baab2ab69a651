"""The LMB state as a snapshot for reconcile: every person's whole term state. Pure.

``enrolstream lmb snapshot`` loads the compacted state topic (``Book.load``, as
``lmb serve`` does at start-up) and publishes, between the snapshot markers of
``schemas/snapshot.py``, one snapshot event per person and term: the same
registrations and teaching the person's latest change event carried
(``lmb.events.term_state``), so reconcile compares Moodle with what the consumer
was told.

LMB's ``state_version`` is per person (at least the arrival time in ms of the
last message applied to them): the snapshot's is the highest of them, so no
ledger entry written from the state read looks newer than the snapshot, while
one from a message that arrived after it does (reconcile counts it ``stale``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from lmb.book import Book
from lmb.errors import SnapshotRefused
from lmb.events import person_terms, term_state
from schemas.events import EnrolmentEvent, TermKey, snapshot_event_id

#: Unreadable keys named in the error.
_SHOWN = 5

__all__ = ["check_state", "snapshot_events", "snapshot_version", "state_terms"]


def check_state(book: Book, unreadable: Sequence[str]) -> None:
    """``SnapshotRefused`` unless the state is whole: not empty, every record read.

    A snapshot short of people would make reconcile drop them, so one record
    that cannot be read refuses the whole snapshot.
    """
    if unreadable:
        shown = ", ".join(unreadable[:_SHOWN]) + (
            " …" if len(unreadable) > _SHOWN else ""
        )
        raise SnapshotRefused(
            f"{len(unreadable)} records of the LMB state topic cannot be read "
            f"({shown}): a snapshot without them would drop those people"
        )
    if not book.people:
        raise SnapshotRefused(
            "the LMB state topic holds no person (missing, empty, or the wrong "
            "lmb.state_topic): has `lmb serve` received anything?"
        )


def state_terms(book: Book) -> list[TermKey]:
    """Every term someone has a membership in, in label order."""
    terms: dict[tuple[str, str], TermKey] = {}
    for record in book.people.values():
        for term in person_terms(record):
            terms.setdefault(term.key(), term)
    return sorted(terms.values(), key=TermKey.label)


def snapshot_version(book: Book) -> int:
    """The snapshot's version: the highest person ``state_version`` in the book."""
    return max((record.state_version for record in book.people.values()), default=0)


def snapshot_events(
    book: Book,
    terms: Iterable[TermKey],
    *,
    source: str,
    snapshot_id: str,
    captured_at: datetime,
) -> list[EnrolmentEvent]:
    """One snapshot event per person with a membership (any role or status) in a term."""
    wanted = list(terms)
    events = []
    for record in book.people.values():
        for term in person_terms(record):
            if not any(term.matches(w) for w in wanted):
                continue
            registrations, teaching = term_state(record, term)
            events.append(
                EnrolmentEvent(
                    event_id=snapshot_event_id(
                        source, record.people_code_id, term, record.state_version
                    ),
                    kind="snapshot",
                    source=source,
                    people_code_id=record.people_code_id,
                    term=term,
                    state_version=record.state_version,
                    registrations=registrations,
                    teaching=teaching,
                    person=record.details,
                    snapshot_id=snapshot_id,
                    captured_at=captured_at,
                )
            )
    return sorted(events, key=lambda e: (e.people_code_id, e.term.label()))
