"""The demo's world: a seeded PowerCampus term, its mapping file and a matching Moodle site.

Built from the sandbox seed: one Moodle course per PowerCampus course (all its
sections), and one per cross-listed group (its shared section only), exactly as
campus-enrollment-sync's mapping files describe them. Every person (students and
the faculty who teach) gets a Moodle account (idnumber = PEOPLE_CODE_ID without
the P) except the ones held back to show a student whose account is created
later; with accounts on, the seed's people without an account have none either,
and an alumna's account holds the login name one of them will want.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cdc.changes import snapshot_events
from cdc.ports import Snapshot
from consumers.decisions import EnrolmentPolicy, desired_enrolments
from consumers.mapping import MappingSet
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.seed import SeedSummary

EDITING_TEACHER = 3


@dataclass(frozen=True, slots=True)
class DemoSite:
    """What the demo built: the mapping file and the Moodle ids it refers to."""

    mapping_file: Path
    course_ids: dict[str, int]
    held_back: tuple[str, ...]


def mapping_entries(summary: SeedSummary) -> dict[str, dict[str, object]]:
    """The term's mapping in campus-enrollment-sync's format, without Moodle ids yet."""
    term = summary.term
    entries: dict[str, dict[str, object]] = {}
    crosslisted = {
        event_id for group in summary.crosslisted for event_id in group.event_ids
    }
    for group in summary.crosslisted:
        entries[group.shortname(term)] = {
            "courses": list(group.event_ids),
            "section": group.section,
        }
    for event_id in sorted({s.event_id.strip() for s in summary.sections}):
        if event_id not in crosslisted:
            entries[f"{event_id}{term.academic_term}{term.academic_year}"] = {
                "courses": [event_id]
            }
    return entries


def build_site(
    summary: SeedSummary,
    state: MoodleState,
    workdir: Path,
    *,
    held_back: Sequence[str],
    accounts: bool = False,
) -> DemoSite:
    """Create the Moodle users and courses and write the mapping file."""
    extra = summary.people_summary
    without = set(held_back)
    if accounts and extra is not None:
        without |= set(extra.without_account)
    faculty = [] if extra is None else list(extra.faculty)
    people = [(p.people_code_id, p.first_name, p.last_name) for p in summary.people]
    for person, first, last in people + faculty:
        if person in without:
            continue
        state.add_user(
            person.lower(), idnumber=person[1:], firstname=first, lastname=last
        )
    if accounts and extra is not None and extra.collision is not None:
        # an alumna's account, outside PowerCampus, holds the login name
        state.add_user(
            extra.collision[1],
            email="alumna@example.org",
            firstname="Former",
            lastname="Student",
        )
    teacher = state.add_user("teacher", firstname="Course", lastname="Teacher")
    entries = mapping_entries(summary)
    course_ids: dict[str, int] = {}
    for shortname, entry in entries.items():
        course_ids[shortname] = state.add_course(shortname, f"{shortname} (demo)")
        state.enrol(
            course_ids[shortname], teacher, EDITING_TEACHER
        )  # the welcome sender
        entry["id"] = course_ids[shortname]
    mapping_file = workdir / "mapping.json"
    mapping_file.write_text(json.dumps(entries, indent=2))
    return DemoSite(
        mapping_file=mapping_file, course_ids=course_ids, held_back=tuple(held_back)
    )


def expected_active(
    snapshot: Snapshot, mapping: MappingSet, policy: EnrolmentPolicy
) -> dict[int, set[str]]:
    """PowerCampus's truth: who should hold a role in each mapped Moodle course.

    Decided by the consumer's own rules (``desired_enrolments`` over the
    snapshot's events): students, instructors, term withdrawals alike.
    """
    expected: dict[int, set[str]] = {course.id: set() for course in mapping}
    events = snapshot_events(
        snapshot, source="truth", captured_at=datetime.now(UTC), snapshot_id="truth"
    )
    for event in events:
        for desired in desired_enrolments(event, mapping, policy):
            if desired.active:
                expected[desired.course.id].add(event.people_code_id)
    return expected


def moodle_active(state: MoodleState, course_ids: Sequence[int]) -> dict[int, set[str]]:
    """What Moodle holds: who has access (active, with a role) per course, as P-codes."""
    people = {user.id: f"P{user.idnumber}" for user in state.users() if user.idnumber}
    return {
        courseid: {
            people[e.userid]
            for e in state.enrolments(courseid)
            if e.userid in people and state.has_access(courseid, e.userid)
        }
        for courseid in course_ids
    }
