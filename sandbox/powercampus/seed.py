"""A realistic synthetic PowerCampus term, deterministic from a random seed.

People ``P0000xxxxx``, courses with real-looking EVENT_IDs (``BSC5102``), two or
more sections each (``01``, ``02`` …), cross-listed pairs that share a section
(``COUN6552`` + ``COUN8552`` section ``02``, cross-tallied in SECTIONCROSSTALLY:
one Moodle course in the mapping), each section's DEPARTMENT (the EVENT_ID's
letters),
registrations mostly ``A`` with some ``D`` and ``W``, a few withdrawn final grades
(``W``) and audits (``AU``). A few EVENT_IDs and names carry trailing spaces, as
PowerCampus data does, to exercise normalisation. Instructors, term records
(some withdrawals), e-mail addresses and login names (some people without a
Moodle account, one login name taken in Moodle) come from ``seed_people``.
Everything is written in ONE tracked transaction, so a seed consumes exactly one
change-tracking version.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sandbox.powercampus.database import (
    PowerCampusSandbox,
    SandboxError,
    TrackedTransaction,
)
from sandbox.powercampus.schema import ci
from sandbox.powercampus.seed_people import PeopleSummary, seed_people
from schemas.events import SectionKey, TermKey

_FIRST = (
    "Aiden", "Amara", "Ben", "Chloe", "Dmitri", "Elena", "Farah", "Gabriel", "Hana",
    "Isaac", "Jade", "Kofi", "Lena", "Mateo", "Nadia", "Owen", "Priya", "Quinn",
    "Rosa", "Sami", "Tess", "Umar", "Vera", "Wes", "Xin", "Yara", "Zoe",
)  # fmt: skip
_LAST = (
    "Anderson", "Baptiste", "Chen", "Diaz", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ivanova", "Johnson", "Kowalski", "Larsen", "Mensah", "Nguyen", "O'Brien",
    "Patel", "Quispe", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Walsh",
    "Yilmaz", "Zhang",
)  # fmt: skip
_DEPARTMENTS = (
    "BSC", "PSY", "NURS", "EDU", "MATH", "ENG", "HIST", "CHEM", "SOC", "ACCT",
    "BIOL", "PHIL", "ECON", "MGMT", "ART",
)  # fmt: skip
_CROSSLIST_DEPARTMENTS = ("COUN", "PSY", "EDU", "NURS", "SOC", "MGMT")
#: Shares of the synthetic data: registrations added/dropped (rest wait-listed),
#: withdrawn and audit grades among the added, padded EVENT_IDs, online sections.
_ADDED, _DROPPED = 0.84, 0.92
_WITHDRAWN, _AUDIT = 0.03, 0.06
_PADDED, _ONLINE, _MIDDLE_NAME = 0.05, 0.2, 0.3
_TERM_MONTHS = {"winter": (1, 4), "spring": (5, 6), "summer": (6, 8), "fall": (9, 12)}


@dataclass(frozen=True, slots=True)
class SeededPerson:
    """A person the seed created."""

    people_code_id: str
    first_name: str
    last_name: str


@dataclass(frozen=True, slots=True)
class CrossListGroup:
    """Courses taught together in one section: one Moodle course in the mapping file."""

    event_ids: tuple[str, ...]
    section: str

    def shortname(self, term: TermKey) -> str:
        """campus-enrollment-sync's shortname: ``COUN6552COUN855202Winter2021``."""
        return f"{''.join(self.event_ids)}{self.section}{term.academic_term}{term.academic_year}"


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """What ``seed_term`` wrote."""

    term: TermKey
    version: int | None
    people: tuple[SeededPerson, ...]
    sections: tuple[SectionKey, ...]
    crosslisted: tuple[CrossListGroup, ...]
    enrolments: int
    by_add_drop_wait: dict[str, int]
    withdrawn_grades: int
    audits: int
    padded_values: int
    #: Instructors, term records, e-mail and logins (``seed_people``).
    people_summary: PeopleSummary | None = None


def _term_dates(term: TermKey, covers: date | None) -> tuple[date, date]:
    if covers is not None:
        return covers - timedelta(days=30), covers + timedelta(days=60)
    year = int(term.academic_year) if term.academic_year.isdigit() else 2021
    first, last = _TERM_MONTHS.get(term.academic_term.strip().casefold(), (1, 4))
    return date(year, first, 4), date(year, last, 23)


def _course_ids(
    rng: random.Random, courses: int, pairs: int
) -> tuple[list[str], list[tuple[str, str]]]:
    taken: set[str] = set()
    crosslisted: list[tuple[str, str]] = []
    for index in range(pairs):
        while True:
            dept = "COUN" if index == 0 else rng.choice(_CROSSLIST_DEPARTMENTS)
            tail = 552 if index == 0 else rng.randrange(100, 1000)
            pair = (f"{dept}6{tail:03d}", f"{dept}8{tail:03d}")
            if not taken & set(pair):
                break
        taken.update(pair)
        crosslisted.append(pair)
    regular: list[str] = []
    while len(regular) < courses - 2 * pairs:
        event_id = (
            "BSC5102"
            if not regular
            else (f"{rng.choice(_DEPARTMENTS)}{rng.randrange(1000, 6000)}")
        )
        if event_id not in taken:
            taken.add(event_id)
            regular.append(event_id)
    return regular + [e for pair in crosslisted for e in pair], crosslisted


def seed_term(
    sandbox: PowerCampusSandbox,
    *,
    term: TermKey | None = None,
    people: int = 500,
    courses: int = 40,
    sections_per_course: int = 2,
    crosslisted_pairs: int = 3,
    enrolments_per_person: int = 4,
    random_seed: int = 42,
    calendar_covers: date | None = None,
    academic_session: str = "01",
) -> SeedSummary:
    """Write one term (calendar, people, sections, registrations) in one transaction.

    The same arguments give the same rows. ``calendar_covers`` makes the term's
    ACADEMICCALENDAR dates include that day (so ``live_terms`` finds it).
    Raises ``SandboxError`` when the term already has sections.
    """
    term = term or TermKey(academic_year="2021", academic_term="Winter")
    if 2 * crosslisted_pairs > courses or min(people, courses, sections_per_course) < 1:
        raise SandboxError("need courses >= 2 * crosslisted_pairs and positive sizes")
    existing = sandbox.query(
        f"SELECT COUNT(*) FROM SECTIONS WHERE {ci('ACADEMIC_YEAR')} = ? "
        f"AND {ci('ACADEMIC_TERM')} = ?",
        (term.academic_year, term.academic_term),
    )
    if existing[0][0]:
        raise SandboxError(f"term {term.label()} is already seeded")
    rng = random.Random(random_seed)  # noqa: S311 - synthetic data, not secrets
    start, end = _term_dates(term, calendar_covers)
    event_ids, pairs = _course_ids(rng, courses, crosslisted_pairs)
    section_codes = [f"{n:02d}" for n in range(1, sections_per_course + 1)]
    shared = "02" if "02" in section_codes else section_codes[-1]
    shared_sections = {(event_id, shared) for pair in pairs for event_id in pair}
    persons = [
        SeededPerson(f"P{74000 + i:09d}", rng.choice(_FIRST), rng.choice(_LAST))
        for i in range(people)
    ]
    sections = {
        (event_id, code): SectionKey(
            academic_year=term.academic_year,
            academic_term=term.academic_term,
            academic_session=academic_session,
            event_id=event_id,
            # cross-listed courses meet together, so their shared section is one LEC
            event_sub_type="ONLN"
            if rng.random() < _ONLINE and (event_id, code) not in shared_sections
            else "LEC",
            section=code,
        )
        for event_id in event_ids
        for code in section_codes
    }
    crosslisted = tuple(CrossListGroup(pair, shared) for pair in pairs)
    registrations = _registrations(
        rng, persons, event_ids, section_codes, enrolments_per_person
    )
    with sandbox.transaction() as tx:
        _write_calendar(tx, term, academic_session, start, end)
        _write_people(tx, persons, rng)
        _write_sections(
            tx,
            sections=sections,
            registrations=registrations,
            start=start,
            end=end,
            rng=rng,
        )
        _write_crosstally(tx, sections, crosslisted)
        padded = _write_registrations(
            tx,
            sections=sections,
            registrations=registrations,
            start=start,
            end=end,
            rng=rng,
        )
        taking: dict[str, set[str]] = {}
        for r in registrations:
            taking.setdefault(r["person"].people_code_id, set()).add(r["event_id"])
        people_summary = seed_people(
            tx,
            term=term,
            session=academic_session,
            students=[(p.people_code_id, p.first_name, p.last_name) for p in persons],
            sections=list(sections.values()),
            taking=taking,
            random_seed=random_seed,
        )
    statuses = Counter(r["adw"] for r in registrations)
    return SeedSummary(
        term=term,
        version=tx.committed_version,
        people=tuple(persons),
        sections=tuple(sections.values()),
        crosslisted=crosslisted,
        enrolments=len(registrations),
        by_add_drop_wait=dict(sorted(statuses.items())),
        withdrawn_grades=sum(r["grade"] == "W" for r in registrations),
        audits=sum(r["grade"] == "AU" for r in registrations),
        padded_values=padded,
        people_summary=people_summary,
    )


def _registrations(
    rng: random.Random,
    persons: list[SeededPerson],
    event_ids: list[str],
    section_codes: list[str],
    per_person: int,
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for person in persons:
        for event_id in rng.sample(event_ids, min(per_person, len(event_ids))):
            roll = rng.random()
            adw = "A" if roll < _ADDED else "D" if roll < _DROPPED else "W"
            grade = None
            if adw == "A":
                grade_roll = rng.random()
                if grade_roll < _WITHDRAWN:
                    grade = "W"
                elif grade_roll < _AUDIT:
                    grade = "AU"
            result.append(
                {
                    "person": person,
                    "event_id": event_id,
                    "section": rng.choice(section_codes),
                    "adw": adw,
                    "grade": grade,
                }
            )
    return result


def _stamp(day: date, rng: random.Random | None = None) -> str:
    """A PowerCampus datetime (no zone); with ``rng``, a time of day in office hours."""
    minutes = 0 if rng is None else rng.randrange(8 * 60, 20 * 60)
    return f"{day.isoformat()} {minutes // 60:02d}:{minutes % 60:02d}:00"


def _next_id(tx: TrackedTransaction, table: str, column: str) -> int:
    return int(
        tx.execute(f"SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}").fetchone()[0]
    )


def _write_calendar(
    tx: TrackedTransaction, term: TermKey, session: str, start: date, end: date
) -> None:
    tx.execute(
        "INSERT INTO ACADEMICCALENDAR (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
        "SessionPeriodId, START_DATE, END_DATE, FINAL_END_DATE, PRE_REG_DATE, REG_DATE, "
        "FIN_AID_YEAR) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            term.academic_year, term.academic_term, session,
            _next_id(tx, "ACADEMICCALENDAR", "SessionPeriodId"), _stamp(start),
            _stamp(end), _stamp(end + timedelta(days=7)),
            _stamp(start - timedelta(days=60)), _stamp(start - timedelta(days=14)),
            term.academic_year,
        ),
    )  # fmt: skip


def _write_people(
    tx: TrackedTransaction, persons: list[SeededPerson], rng: random.Random
) -> None:
    first_id = _next_id(tx, "PEOPLE", "PersonId")
    tx.executemany(
        "INSERT OR IGNORE INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_CODE, PEOPLE_ID, PersonId, "
        "FIRST_NAME, MIDDLE_NAME, LAST_NAME) VALUES (?, 'P', ?, ?, ?, ?, ?)",
        [
            (
                p.people_code_id, p.people_code_id[1:], first_id + i, p.first_name,
                rng.choice(_FIRST) if rng.random() < _MIDDLE_NAME else None,
                p.last_name + ("  " if rng.random() < _PADDED else ""),
            )
            for i, p in enumerate(persons)
        ],
    )  # fmt: skip


def _write_sections(
    tx: TrackedTransaction,
    *,
    sections: dict[tuple[str, str], SectionKey],
    registrations: list[dict[str, Any]],
    start: date,
    end: date,
    rng: random.Random,
) -> None:
    counts = Counter((r["event_id"], r["section"], r["adw"]) for r in registrations)
    first_id = _next_id(tx, "SECTIONS", "SectionId")
    tx.executemany(
        "INSERT INTO SECTIONS (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, "
        "EVENT_SUB_TYPE, SECTION, SectionId, EVENT_LONG_NAME, EVENT_MED_NAME, "
        "EVENT_STATUS, START_DATE, END_DATE, CREDITS, CREDIT_TYPE, ORG_CODE_ID, "
        "MAX_PARTICIPANT, ADDS, DROPS, WAIT_LIST, DEPARTMENT) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'A', ?, ?, 3, ?, 'O000000001', ?, ?, ?, ?, ?)",
        [
            (
                s.academic_year, s.academic_term, s.academic_session, s.event_id,
                s.event_sub_type, s.section, first_id + i, f"Topics in {s.event_id}",
                s.event_id, _stamp(start), _stamp(end), _credit_type(s.event_id),
                rng.randrange(30, 61), counts[(s.event_id, s.section, "A")],
                counts[(s.event_id, s.section, "D")], counts[(s.event_id, s.section, "W")],
                department(s.event_id),
            )
            for i, s in enumerate(sections.values())
        ],
    )  # fmt: skip


def department(event_id: str) -> str:
    """The seed's DEPARTMENT of a course: its EVENT_ID's letters (``COUN6552`` → COUN)."""
    return "".join(ch for ch in event_id if ch.isalpha())


def _write_crosstally(
    tx: TrackedTransaction,
    sections: dict[tuple[str, str], SectionKey],
    groups: tuple[CrossListGroup, ...],
) -> None:
    """One SECTIONCROSSTALLY row per cross-listed section, coded per group."""
    tx.executemany(
        "INSERT INTO SECTIONCROSSTALLY (ACADEMIC_YEAR, ACADEMIC_TERM, "
        "ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, SECTION, TALLY_CODE) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                s.academic_year, s.academic_term, s.academic_session, s.event_id,
                s.event_sub_type, s.section, f"XT{number:03d}",
            )
            for number, group in enumerate(groups, start=1)
            for s in (sections[(event_id, group.section)] for event_id in group.event_ids)
        ],
    )  # fmt: skip


def _credit_type(event_id: str) -> str:
    digits = "".join(ch for ch in event_id if ch.isdigit())
    return "GR" if digits[:1] in {"6", "7", "8", "9"} else "UG"


def _write_registrations(
    tx: TrackedTransaction,
    *,
    sections: dict[tuple[str, str], SectionKey],
    registrations: list[dict[str, Any]],
    start: date,
    end: date,
    rng: random.Random,
) -> int:
    rows = []
    padded = 0
    for r in registrations:
        s = sections[(r["event_id"], r["section"])]
        event_id = s.event_id
        if rng.random() < _PADDED:  # PowerCampus data has padded EVENT_IDs
            event_id += "  "
            padded += 1
        status_day = start - timedelta(days=rng.randrange(0, 45))
        person: SeededPerson = r["person"]
        rows.append((
            person.people_code_id[1:], person.people_code_id, s.academic_year,
            s.academic_term, s.academic_session, event_id, s.event_sub_type, s.section,
            f"Topics in {s.event_id}", "AUD" if r["grade"] == "AU" else _credit_type(s.event_id),
            r["grade"], r["adw"], _stamp(status_day), _stamp(date(1900, 1, 1), rng),
            "PRE" if status_day < start - timedelta(days=14) else "REG",
            _stamp(status_day), _stamp(start), _stamp(end),
        ))  # fmt: skip
    tx.executemany(
        "INSERT INTO TRANSCRIPTDETAIL (PEOPLE_CODE, PEOPLE_ID, PEOPLE_CODE_ID, "
        "ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, "
        "SECTION, TRANSCRIPT_SEQ, ORG_CODE_ID, EVENT_TYPE, EVENT_LONG_NAME, CREDIT_TYPE, "
        "CREDIT, FINAL_GRADE, ADD_DROP_WAIT, STATUS_DATE, STATUS_TIME, PREREG_REG_STATUS, "
        "CREATE_DATE, CREATE_OPID, CREATE_TERMINAL, START_DATE, END_DATE) VALUES "
        "('P', ?, ?, ?, ?, ?, ?, ?, ?, '001', 'O000000001', 'COUR', ?, ?, 3, ?, ?, ?, ?, "
        "?, ?, 'SEED', '0001', ?, ?)",
        rows,
    )
    return padded
