"""Reprocess: a person's or a course's state read from PowerCampus now, as events. Pure.

The status page's "reprocess" action (and ``enrolstream reprocess``) reads the
live terms once (``ChangeSource.read_snapshot``) and publishes, on the event
topic, one full-state event (``kind="snapshot"``, no ``change``) per chosen
person and term; the consumer then decides every course of those person-terms
again, as it does after the poller's initialisation.

* A person: every live term. A term where PowerCampus holds no row for them
  yields an event with no registrations, so what we own for them there is
  dropped: that is what PowerCampus says now.
* A course: every person with a registration (of any status) in, or teaching, a
  section the caller's predicate accepts (the mapping's sections of that Moodle
  course), with their whole term state: registrations, teaching, standing and
  account details (without the standing a term withdrawal would read as
  enrolled). Someone with no row left in those sections is not found this way:
  the nightly reconcile covers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from cdc.changes import fold, snapshot_events
from cdc.ports import Snapshot, StandingRow, TeachingRow, TranscriptRow
from schemas.collation import collate
from schemas.events import EnrolmentEvent, SectionKey, snapshot_event_id

__all__ = ["course_events", "person_events"]

R = TypeVar("R", TranscriptRow, TeachingRow, StandingRow)


def person_events(
    snapshot: Snapshot,
    people_code_id: str,
    *,
    source: str,
    captured_at: datetime,
    request_id: str,
) -> list[EnrolmentEvent]:
    """One full-state event per live term of the snapshot for one person."""
    wanted = collate(people_code_id)
    rows = [row for row in snapshot.rows if collate(row.people_code_id) == wanted]
    found = snapshot_events(
        Snapshot(snapshot.version, snapshot.terms, tuple(rows)),
        source=source,
        captured_at=captured_at,
        snapshot_id=request_id,
    )
    held = {event.person_term_key()[1:] for event in found}
    for term in snapshot.terms:
        if fold(people_code_id, term)[1:] in held:
            continue
        found.append(
            EnrolmentEvent(
                event_id=snapshot_event_id(
                    source, people_code_id, term, snapshot.version
                ),
                kind="snapshot",
                source=source,
                people_code_id=people_code_id,
                term=term,
                state_version=snapshot.version,
                registrations=(),
                snapshot_id=request_id,
                captured_at=captured_at,
            )
        )
    return found


def course_events(
    snapshot: Snapshot,
    in_course: Callable[[SectionKey], bool],
    *,
    source: str,
    captured_at: datetime,
    request_id: str,
) -> list[EnrolmentEvent]:
    """Full-state events of everyone registered in or teaching a section ``in_course``
    accepts."""
    chosen = {
        fold(row.people_code_id, row.term)
        for row in snapshot.rows
        if in_course(row.section)
    } | {
        fold(row.people_code_id, row.term)
        for row in snapshot.teaching or ()
        if in_course(row.section)
    }

    def mine(rows: Sequence[R] | None) -> tuple[R, ...] | None:
        if rows is None:
            return None
        return tuple(r for r in rows if fold(r.people_code_id, r.term) in chosen)

    persons = {key[0] for key in chosen}
    people = snapshot.people
    return snapshot_events(
        replace(
            snapshot,
            rows=mine(snapshot.rows) or (),
            teaching=mine(snapshot.teaching),
            standing=mine(snapshot.standing),
            people=None
            if people is None
            else {p: d for p, d in people.items() if collate(p) in persons},
        ),
        source=source,
        captured_at=captured_at,
        snapshot_id=request_id,
    )
