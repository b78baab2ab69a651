"""Reprocess: a person's or a course's state read from PowerCampus now, as events. Pure.

The status page's "reprocess" action (and ``enrolstream reprocess``) reads the
live terms once (``ChangeSource.read_snapshot``) and publishes, on the event
topic, one full-state event (``kind="snapshot"``, no ``change``) per chosen
person and term; the consumer then decides every course of those person-terms
again, as it does after the poller's initialisation.

* A person: every live term. A term where PowerCampus holds no row for them
  yields an event with no registrations, so what we own for them there is
  dropped: that is what PowerCampus says now.
* A course: every person with a registration (of any status) in a section the
  caller's predicate accepts (the mapping's sections of that Moodle course), with
  their whole term state. Someone with no row left in those sections is not
  found this way: the nightly reconcile covers them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cdc.changes import fold, snapshot_events
from cdc.ports import Snapshot
from schemas.collation import collate
from schemas.events import EnrolmentEvent, SectionKey, snapshot_event_id

__all__ = ["course_events", "person_events"]


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
    """Full-state events of everyone registered in a section ``in_course`` accepts."""
    chosen = {
        fold(row.people_code_id, row.term)
        for row in snapshot.rows
        if in_course(row.section)
    }
    rows = tuple(
        row for row in snapshot.rows if fold(row.people_code_id, row.term) in chosen
    )
    return snapshot_events(
        Snapshot(snapshot.version, snapshot.terms, rows),
        source=source,
        captured_at=captured_at,
        snapshot_id=request_id,
    )
