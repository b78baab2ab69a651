"""The registrar's morning the demo plays: plain SQL against PowerCampus, checked in Moodle.

Each scene is what a registrar (or a trigger cascade) commits, and what Moodle
must show afterwards. Rows are chosen from the seeded term so the scenes work
whatever the seed's size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enrolstream.demo import Demo


@dataclass
class Scene:
    """One change: its SQL, what Moodle must show, and how to tell."""

    title: str
    explain: str
    sql: list[str]
    done: Callable[[Demo], bool]
    outcome: str
    before: Callable[[Demo], Awaitable[None]] | None = None
    settle: float = 0.0
    baseline: dict[str, int] = field(default_factory=dict)


def _insert(person: str, event_id: str, section: str, sub_type: str, adw: str) -> str:
    return (
        "INSERT INTO TRANSCRIPTDETAIL (PEOPLE_CODE, PEOPLE_ID, PEOPLE_CODE_ID, ACADEMIC_YEAR, "
        "ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, ADD_DROP_WAIT) "
        f"VALUES ('P', '{person[1:]}', '{person}', '2021', 'Winter', '01', '{event_id}', "
        f"'{sub_type}', '{section}', '{adw}')"
    )


def _set(person: str, event_id: str, section: str, assignment: str) -> str:
    return (
        f"UPDATE TRANSCRIPTDETAIL SET {assignment} WHERE PEOPLE_CODE_ID = '{person}' "
        f"AND rtrim(EVENT_ID) = '{event_id}' AND SECTION = '{section}'"
    )


def _people_without(demo: Demo, event_ids: tuple[str, ...]) -> list[str]:
    marks = ", ".join(f"'{e}'" for e in event_ids)
    rows = demo.sandbox.query(
        "SELECT PEOPLE_CODE_ID FROM PEOPLE WHERE PEOPLE_CODE_ID NOT IN (SELECT "
        f"PEOPLE_CODE_ID FROM TRANSCRIPTDETAIL WHERE rtrim(EVENT_ID) IN ({marks})) "
        "ORDER BY PEOPLE_CODE_ID"
    )
    accounts = {f"P{u.idnumber}" for u in demo.sim.state.users() if u.idnumber}
    return [row[0] for row in rows if row[0] in accounts]


def _withdrawable(demo: Demo, event_id: str) -> tuple[str, str]:
    """A person with exactly one enrolled registration in the course: (person, section)."""
    rows = demo.sandbox.query(
        "SELECT PEOPLE_CODE_ID, min(SECTION) FROM TRANSCRIPTDETAIL WHERE rtrim(EVENT_ID) = ? "
        "AND ADD_DROP_WAIT = 'A' AND FINAL_GRADE IS NULL GROUP BY PEOPLE_CODE_ID "
        "HAVING count(*) = 1 ORDER BY PEOPLE_CODE_ID",
        (event_id,),
    )
    accounts = {f"P{u.idnumber}" for u in demo.sim.state.users() if u.idnumber}
    person, section = next((p, s) for p, s in rows if p in accounts)
    return str(person), str(section)


#: A term withdrawal shows best for someone in several courses.
_SEVERAL = 2


def _courses_of(demo: Demo, person: str) -> list[str]:
    """The Moodle courses a person is active in now."""
    return [name for name in demo.course_ids if demo.active(name, person)]


def _term_leaver(demo: Demo, avoid: set[str]) -> str:
    """A student active in at least two courses, none of the other scenes' people."""
    rows = demo.sandbox.query(
        "SELECT PEOPLE_CODE_ID FROM TRANSCRIPTDETAIL WHERE ADD_DROP_WAIT = 'A' AND "
        "FINAL_GRADE IS NULL GROUP BY PEOPLE_CODE_ID HAVING count(*) >= 2 "
        "ORDER BY PEOPLE_CODE_ID"
    )
    return next(
        str(p)
        for (p,) in rows
        if p not in avoid and len(_courses_of(demo, str(p))) >= _SEVERAL
    )


def _new_instructor(demo: Demo, event_id: str) -> str:
    """A faculty member with a Moodle account who does not teach ``event_id`` yet."""
    extra = demo.summary.people_summary
    assert extra is not None  # noqa: S101 - the demo seeds people
    teaching = {
        i.people_code_id for i in extra.instructors if i.section.event_id == event_id
    }
    accounts = {f"P{u.idnumber}" for u in demo.sim.state.users() if u.idnumber}
    return next(p for p, _, _ in extra.faculty if p not in teaching and p in accounts)


def _teach(person: str, event_id: str, section: str, sub_type: str) -> str:
    return (
        "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
        "EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
        f"('2021', 'Winter', '01', '{event_id}', '{sub_type}', '{section}', "
        f"'{person}', 100)"
    )


def _people_scenes(demo: Demo, course: str, short: str, avoid: set[str]) -> list[Scene]:
    """A new instructor (then secondary), a term withdrawal and its reversal."""
    instructor = _new_instructor(demo, course)
    sub_type = _sub_type(demo, course, "01")
    leaver = _term_leaver(demo, avoid)
    courses = _courses_of(demo, leaver)
    separation = (
        "UPDATE ACADEMIC SET ENROLL_SEPARATION = '{code}' "
        f"WHERE PEOPLE_CODE_ID = '{leaver}'"
    )
    return [
        Scene(
            f"New instructor: {instructor} is assigned to teach {course} section 01",
            "a SECTIONPER row (no role column: enrolstream's policy makes a "
            "primary instructor an editing teacher)",
            [_teach(instructor, course, "01", sub_type)],
            lambda d: d.roles(short, instructor) == {d.policy.instructor_role_id},
            f"enrolled in {short} as editing teacher",
        ),
        Scene(
            f"Secondary instructor: {instructor}'s share of {course} 01 becomes 0",
            "PERCENTAGE 0 makes them a secondary instructor: teacher, and the "
            "editing-teacher role is taken away",
            [
                f"UPDATE SECTIONPER SET PERCENTAGE = 0 WHERE PERSON_CODE_ID = '{instructor}'"
            ],
            lambda d: d.roles(short, instructor) == {d.policy.secondary_role_id},
            f"exactly one role in {short}: teacher",
        ),
        Scene(
            f"Term withdrawal: {leaver} withdraws from the term",
            f"ACADEMIC.ENROLL_SEPARATION = 'WITH'; TRANSCRIPTDETAIL still says 'A' "
            f"in {len(courses)} courses: dropped from every one of them",
            [separation.format(code="WITH")],
            lambda d: not any(d.active(c, leaver) for c in courses),
            f"dropped from {', '.join(courses)}",
        ),
        Scene(
            f"Back in the term: {leaver}'s withdrawal is reversed",
            "ENROLL_SEPARATION back to 'ENRL': the roles are given back (no "
            "welcome message)",
            [separation.format(code="ENRL")],
            lambda d: all(d.active(c, leaver) for c in courses),
            f"active again in {', '.join(courses)}",
        ),
    ]


def _sub_type(demo: Demo, event_id: str, section: str) -> str:
    return next(
        s.event_sub_type
        for s in demo.summary.sections
        if s.event_id.strip() == event_id and s.section == section
    )


def _pending(_: Demo) -> bool:
    """Placeholder until the scene's real check is set (below)."""
    return False


def _parked_with(demo: Demo, person: str, event_id: str) -> bool:
    """The person waits, and what waits already includes the new registration."""
    entry = demo.runner.parked.get(person, demo.summary.term.label())
    return entry is not None and any(
        r.section.event_id.strip() == event_id for r in entry.event.registrations
    )


def _consumed(demo: Demo, scene: Scene, extra: int) -> bool:
    return demo.runner.stats.events >= scene.baseline.get("events", 0) + extra


def _note_events(scene: Scene) -> Callable[[Demo], Awaitable[None]]:
    async def note(demo: Demo) -> None:
        scene.baseline["events"] = demo.runner.stats.events

    return note


def registrar_morning(demo: Demo) -> list[Scene]:
    """The scenes, built from the seeded term."""
    term = demo.summary.term
    group = demo.summary.crosslisted[0]
    crosslisted = group.shortname(term)
    plain = sorted(
        name
        for name in demo.course_ids
        if name != crosslisted
        and not any(name == g.shortname(term) for g in demo.summary.crosslisted)
    )
    course_a = plain[0].removesuffix(f"{term.academic_term}{term.academic_year}")
    course_b = plain[1].removesuffix(f"{term.academic_term}{term.academic_year}")
    short_a, short_b = plain[0], plain[1]
    adder, waiter = _people_without(demo, (course_a,))[:2]
    swapper = _people_without(demo, group.event_ids)[0]
    withdrawn, w_section = _withdrawable(demo, course_b)
    late = demo.summary.people[-1].people_code_id
    late_course = next(
        c
        for c in plain
        if not demo.sandbox.query(
            "SELECT 1 FROM TRANSCRIPTDETAIL WHERE PEOPLE_CODE_ID = ? AND rtrim(EVENT_ID) = ?",
            (late, c.removesuffix(f"{term.academic_term}{term.academic_year}")),
        )
    )
    late_event = late_course.removesuffix(f"{term.academic_term}{term.academic_year}")
    sub_late = _sub_type(demo, late_event, "01")
    first, second = group.event_ids[0], group.event_ids[1]
    sub_a = _sub_type(demo, course_a, "01")
    sub_x1, sub_x2 = (_sub_type(demo, e, group.section) for e in (first, second))

    async def create_account(d: Demo) -> None:
        d.sim.state.add_user(
            late.lower(), idnumber=late[1:], firstname="Late", lastname="Student"
        )

    scenes = [
        Scene(
            f"Add: {adder} registers for {course_a} section 01",
            "a new TRANSCRIPTDETAIL row with ADD_DROP_WAIT = 'A'",
            [_insert(adder, course_a, "01", sub_a, "A")],
            lambda d: d.active(short_a, adder),
            f"enrolled in {short_a} as student",
        ),
        Scene(
            f"Wait-list: {waiter} joins the wait list of {course_a} 01",
            "ADD_DROP_WAIT = 'W': not enrolled in Moodle",
            [_insert(waiter, course_a, "01", sub_a, "W")],
            _pending,
            "not enrolled (wait-listed)",
        ),
        Scene(
            f"Promotion: a seat opens, {waiter} moves from the wait list to registered",
            "an update W → A on the same row",
            [_set(waiter, course_a, "01", "ADD_DROP_WAIT = 'A'")],
            lambda d: d.active(short_a, waiter),
            f"enrolled in {short_a}",
        ),
        Scene(
            f"Drop: {adder} drops {course_a}",
            "an update A → D: the student role is taken away (grades survive; no "
            "welcome message, which a suspend through enrol_users would send)",
            [_set(adder, course_a, "01", "ADD_DROP_WAIT = 'D'")],
            lambda d: not d.active(short_a, adder),
            f"dropped from {short_a} (role removed)",
        ),
        Scene(
            f"Cross-listed: {swapper} registers for {first} section {group.section}",
            f"{first} and {second} section {group.section} feed one Moodle course",
            [_insert(swapper, first, group.section, sub_x1, "A")],
            lambda d: d.active(crosslisted, swapper),
            f"enrolled in {crosslisted}",
        ),
        Scene(
            f"Cross-list swap: {swapper} moves from {first} to {second} in one transaction",
            "a drop in one section and an add in the other: never unenrolled, not even "
            "for a moment",
            [
                _set(swapper, first, group.section, "ADD_DROP_WAIT = 'D'"),
                _insert(swapper, second, group.section, sub_x2, "A"),
            ],
            _pending,
            f"still enrolled in {crosslisted}",
            settle=0.0,
        ),
        Scene(
            f"Withdrawal: {withdrawn} gets final grade W in {course_b}",
            "ADD_DROP_WAIT stays 'A' but a withdrawn grade is a drop for the LMS",
            [_set(withdrawn, course_b, w_section, "FINAL_GRADE = 'W'")],
            lambda d: not d.active(short_b, withdrawn),
            f"dropped from {short_b} (role removed)",
        ),
        Scene(
            f"No Moodle account yet: {late} registers for {late_event}",
            "the person is parked with the reason, never dropped, never guessed",
            [_insert(late, late_event, "01", sub_late, "A")],
            _pending,
            "parked until the account exists",
        ),
        Scene(
            f"IT creates {late}'s Moodle account",
            "the parked person is retried on a schedule and enrolled",
            [],
            lambda d: d.active(late_course, late) and not len(d.runner.parked),
            f"enrolled in {late_course}, no longer parked",
            before=create_account,
        ),
    ]
    scenes += _people_scenes(
        demo, course_b, short_b, {adder, waiter, swapper, withdrawn, late}
    )
    waitlist, swap, parked = scenes[1], scenes[5], scenes[7]
    waitlist.before = _note_events(waitlist)
    waitlist.done = lambda d: (
        _consumed(d, waitlist, 1) and not d.active(short_a, waiter)
    )
    swap.before = _note_events(swap)
    swap.done = lambda d: _consumed(d, swap, 2) and d.active(crosslisted, swapper)
    parked.before = _note_events(parked)
    parked.done = lambda d: _parked_with(d, late, late_event)
    return scenes
