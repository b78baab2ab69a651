"""The seed's people beyond registrations: instructors, term records, e-mail and logins.

Written by ``seed_term`` in its one transaction, from a random generator of its
own (so the registrations of a given seed are what they were before these
tables existed):

* **Instructors** (SECTIONPER): faculty ``P0000900xx``, one primary instructor
  per section (PERCENTAGE 100) and a secondary one (PERCENTAGE 0) for about a
  fifth of the sections; the first student with registrations also teaches one
  section of a course they do not take (a graduate teaching assistant).
* **Term records** (ACADEMIC): one per student for the term's session, with
  ENROLL_SEPARATION ``ENRL``, and about 2 % withdrawn (``WITH``) or on leave
  (``LOA``) whose registrations stay ``A``; CODE_ENROLLMENT lists the codes
  (``REQUIRE_SEPDATE = 'Y'`` for the separations).
* **Accounts** (EmailAddress, PersonUser): every person has a primary e-mail
  (``PEOPLE.PrimaryEmailId``) and a portal login name ``first.lastNN``. About 2 %
  of the students have no Moodle account yet (``without_account``), one of whom
  has a login name that a Moodle account outside PowerCampus already uses (an
  alumnus's: ``collision``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sandbox.powercampus.database import TrackedTransaction
from schemas.events import SectionKey, TermKey

_FACULTY_FIRST = ("Ada", "Bruno", "Carmen", "Dev", "Eun-ji", "Femi", "Greta", "Hugo")
_FACULTY_LAST = ("Achebe", "Borges", "Curie", "Dahl", "Euler", "Fanon", "Gauss")
_SECONDARY, _SEPARATED, _NO_ACCOUNT = 0.2, 0.02, 0.02
#: ENROLL_SEPARATION codes: code → (description, REQUIRE_SEPDATE)
CODES = {
    "ENRL": ("Enrolled", "N"),
    "WITH": ("Withdrawn", "Y"),
    "LOA": ("Leave of absence", "Y"),
    "AWIT": ("Administrative withdrawal", "Y"),
}
STUDENT_DOMAIN = "students.example.edu"
STAFF_DOMAIN = "example.edu"


@dataclass(frozen=True, slots=True)
class SeededInstructor:
    """One SECTIONPER row the seed wrote."""

    people_code_id: str
    section: SectionKey
    percentage: float


@dataclass(frozen=True, slots=True)
class PeopleSummary:
    """What ``seed_people`` wrote beyond registrations."""

    instructors: tuple[SeededInstructor, ...]
    faculty: tuple[tuple[str, str, str], ...]  # (PEOPLE_CODE_ID, first, last)
    separated: tuple[str, ...]
    without_account: tuple[str, ...]
    collision: tuple[str, str] | None  # (PEOPLE_CODE_ID, the taken login name)
    usernames: dict[str, str]


def _next_id(tx: TrackedTransaction, table: str, column: str) -> int:
    return int(
        tx.execute(f"SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}").fetchone()[0]
    )


def seed_people(
    tx: TrackedTransaction,
    *,
    term: TermKey,
    session: str,
    students: list[tuple[str, str, str]],
    sections: list[SectionKey],
    taking: dict[str, set[str]],
    random_seed: int,
) -> PeopleSummary:
    """Write instructors, term records, e-mail addresses and login names.

    ``students`` are (PEOPLE_CODE_ID, first, last) already in PEOPLE; ``taking``
    maps a student to the EVENT_IDs they registered for.
    """
    rng = random.Random(f"{random_seed}-people")  # noqa: S311 - synthetic data
    tx.executemany(
        "INSERT OR IGNORE INTO CODE_ENROLLMENT (CODE_VALUE_KEY, LONG_DESC, "
        "REQUIRE_SEPDATE) VALUES (?, ?, ?)",
        [(code, desc, sep) for code, (desc, sep) in CODES.items()],
    )
    faculty = [
        (f"P{90000 + i:09d}", rng.choice(_FACULTY_FIRST), rng.choice(_FACULTY_LAST))
        for i in range(max(2, len(sections) // 2))
    ]
    _write_faculty(tx, faculty)
    instructors = _instructors(rng, faculty, students, sections, taking)
    tx.executemany(
        "INSERT OR IGNORE INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, "
        "ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, "
        "PERCENTAGE) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                i.section.academic_year, i.section.academic_term,
                i.section.academic_session, i.section.event_id,
                i.section.event_sub_type, i.section.section, i.people_code_id,
                i.percentage,
            )
            for i in instructors
        ],
    )  # fmt: skip
    separated = _academic(tx, rng, term, session, students)
    usernames = _accounts(tx, rng, students, faculty)
    without = [p for p, _, _ in students[1:] if rng.random() < _NO_ACCOUNT]
    # The first of them logs in as a name a Moodle account outside PowerCampus
    # has (the demo site makes that account: an alumnus's).
    collision = (without[0], usernames[without[0]]) if without else None
    return PeopleSummary(
        instructors=tuple(instructors),
        faculty=tuple(faculty),
        separated=tuple(separated),
        without_account=tuple(without),
        collision=collision,
        usernames=usernames,
    )


def _write_faculty(tx: TrackedTransaction, faculty: list[tuple[str, str, str]]) -> None:
    first_id = _next_id(tx, "PEOPLE", "PersonId")
    tx.executemany(
        "INSERT OR IGNORE INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_CODE, PEOPLE_ID, PersonId, "
        "FIRST_NAME, LAST_NAME) VALUES (?, 'P', ?, ?, ?, ?)",
        [(p, p[1:], first_id + i, f, last) for i, (p, f, last) in enumerate(faculty)],
    )


def _instructors(
    rng: random.Random,
    faculty: list[tuple[str, str, str]],
    students: list[tuple[str, str, str]],
    sections: list[SectionKey],
    taking: dict[str, set[str]],
) -> list[SeededInstructor]:
    found: list[SeededInstructor] = []
    for index, section in enumerate(sections):
        primary = faculty[index % len(faculty)][0]
        found.append(SeededInstructor(primary, section, 100.0))
        if rng.random() < _SECONDARY:
            others = [p for p, _, _ in faculty if p != primary]
            found.append(SeededInstructor(rng.choice(others), section, 0.0))
    assistant = next((p for p, _, _ in students if taking.get(p)), None)
    if assistant is not None:
        taught = next(
            (s for s in sections if s.event_id.strip() not in taking[assistant]), None
        )
        if taught is not None:
            found.append(SeededInstructor(assistant, taught, 0.0))
    return found


def _academic(
    tx: TrackedTransaction,
    rng: random.Random,
    term: TermKey,
    session: str,
    students: list[tuple[str, str, str]],
) -> list[str]:
    rows: list[tuple[Any, ...]] = []
    separated: list[str] = []
    for person, _, _ in students:
        code = "ENRL"
        if rng.random() < _SEPARATED:
            code = rng.choice(("WITH", "LOA"))
            separated.append(person)
        rows.append(
            (person, person[1:], term.academic_year, term.academic_term, session, code)
        )
    tx.executemany(
        "INSERT OR IGNORE INTO ACADEMIC (PEOPLE_CODE_ID, PEOPLE_ID, ACADEMIC_YEAR, "
        "ACADEMIC_TERM, ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION, STATUS, "
        "PRIMARY_FLAG) VALUES (?, ?, ?, ?, ?, '001', ?, 'A', 'Y')",
        rows,
    )
    return separated


def _accounts(
    tx: TrackedTransaction,
    rng: random.Random,
    students: list[tuple[str, str, str]],
    faculty: list[tuple[str, str, str]],
) -> dict[str, str]:
    """A primary e-mail and a login name per person; the names by PEOPLE_CODE_ID."""
    usernames: dict[str, str] = {}
    taken = {str(name) for (name,) in tx.execute("SELECT UserName FROM PersonUser")}
    existing = {
        str(person): str(name)
        for person, name in tx.execute(
            "SELECT p.PEOPLE_CODE_ID, u.UserName FROM PEOPLE AS p "
            "JOIN PersonUser AS u ON u.PersonId = p.PersonId"
        )
    }
    for kind, people in (("student", students), ("staff", faculty)):
        domain = STUDENT_DOMAIN if kind == "student" else STAFF_DOMAIN
        for person, first, last in people:
            if person in existing:  # seeded with an earlier term
                usernames[person] = existing[person]
                continue
            base = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
            name = base
            while name in taken:
                name = f"{base}{rng.randrange(2, 100)}"
            taken.add(name)
            usernames[person] = name
            email = tx.execute(
                "INSERT INTO EmailAddress (PeopleOrgCodeId, EmailType, Email, IsActive) "
                "VALUES (?, ?, ?, 1)",
                (
                    person,
                    "UWSSTU" if kind == "student" else "UWSFAC",
                    f"{name}@{domain}",
                ),
            ).lastrowid
            tx.execute(
                "UPDATE PEOPLE SET PrimaryEmailId = ? WHERE PEOPLE_CODE_ID = ?",
                (email, person),
            )
            tx.execute(
                "INSERT INTO PersonUser (PersonId, UserName) SELECT PersonId, ? "
                "FROM PEOPLE WHERE PEOPLE_CODE_ID = ?",
                (name, person),
            )
    return usernames
