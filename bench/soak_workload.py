"""The soak's steady registrar: every table churns, the same people come back, sizes hover.

Pure (no I/O): each step is drawn from the ``random.Random`` it is given and
returned as the SQL of one tracked transaction, like ``bench/chaos_workload.py``
whose ``Registrar`` it drives for TRANSCRIPTDETAIL (adds, drops, re-adds,
wait-list moves, section and cross-listed swaps, withdrawn grades, deletes,
flips, bursts). Beside it:

* **instructor changes** (SECTIONPER): a faculty member added to a section
  (primary, or secondary at PERCENTAGE 0), removed, or moved between primary
  and secondary;
* **term withdrawals** (ACADEMIC): a student's ENROLL_SEPARATION set to WITH or
  LOA, and cleared back to ENRL later;

Poison records (on the event topic, not events: dead-lettered) are the
harness's, on a clock of their own (``bench/soak.py --poison-every-s``).

Unresolvable people (no Moodle user: parked) are the seed's people the site
holds back; the registrar picks them as anyone else.

Stationary on purpose: a step that would take the registrations, the
instructors or the withdrawn students past their seeded count (plus a margin)
removes one instead, so state that is bounded by the population stays at a
level, and a size that still climbs over a long run is the product's, not the
workload's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.chaos_workload import SESSION, TERM, YEAR, Registrar, Row, Section, Step

#: Step mix: (kind, weight).
MIX = (("registration", 79), ("instructor", 12), ("withdrawal", 9))
#: How far above its seeded count a table may drift before steps shrink it.
MARGIN = 1.05


class SteadyRegistrar(Registrar):
    """The fault matrix's registrar, each person's registrations kept to a fixed set
    of courses (those seeded and ``extra`` more): the (course, person) pairs the
    ledger may hold are all reached early in the run, and come back again and again.
    """

    def __init__(
        self,
        rng: random.Random,
        rows: Sequence[Row],
        sections: Sequence[Section],
        crosslisted: Sequence[tuple[tuple[str, ...], str]],
        people: Sequence[str],
        *,
        extra: int = 1,
    ) -> None:
        super().__init__(rng, rows, sections, crosslisted, people)
        courses = sorted({s.event_id for s in sections})
        self.allowed: dict[str, list[Section]] = {}
        for person in people:
            mine = {r.stored_event_id.strip() for r in rows if r.person == person}
            mine |= set(rng.sample(courses, min(extra, len(courses))))
            self.allowed[person] = [s for s in sections if s.event_id in mine]

    def _new_registration(self, adw: str) -> tuple[str, tuple[str, ...]] | None:
        everyone, every_section = self.people, self.sections
        person = self.rng.choice(everyone)
        self.people, self.sections = [person], self.allowed[person]
        try:
            return super()._new_registration(adw)
        finally:
            self.people, self.sections = everyone, every_section


@dataclass(frozen=True, slots=True)
class Teaching:
    """One SECTIONPER row: a person teaching a section at a percentage."""

    person: str
    section: Section
    percentage: int


@dataclass(frozen=True, slots=True)
class SoakStep:
    """One step: the SQL of one sandbox transaction."""

    what: str
    statements: tuple[str, ...]


class SoakWorkload:
    """The registrar's model (registrations, instructors, term standings) and its steps."""

    def __init__(
        self,
        rng: random.Random,
        registrar: Registrar,
        *,
        faculty: Sequence[str],
        sections: Sequence[Section],
        teaching: Sequence[Teaching],
        standings: dict[str, str],
    ) -> None:
        self.rng = rng
        self.registrar = registrar
        self.faculty = list(faculty)
        self.sections = list(sections)
        self.teaching = {(t.person, t.section): t for t in teaching}
        # who may teach what: the seeded rows and one more section per faculty member
        self.may_teach = sorted(
            {(t.person, t.section) for t in teaching}
            | {(person, rng.choice(self.sections)) for person in self.faculty},
            key=lambda pair: (pair[0], pair[1].event_id, pair[1].section),
        )
        self.standings = dict(standings)
        self.registrations_at = len(registrar.rows)
        self.teaching_at = len(self.teaching)
        self.withdrawn_at = max(2, self._withdrawn())
        self.counts: dict[str, int] = {kind: 0 for kind, _ in MIX}
        self._later: list[Step] = []

    def step(self, at: float) -> list[SoakStep]:
        """The transactions due at ``at`` seconds: follow-ups first, then a new step."""
        due = [s for s in self._later if s.at_s <= at]
        self._later = [s for s in self._later if s.at_s > at]
        made = [SoakStep(s.what, s.statements) for s in due]
        kind = self.rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
        self.counts[kind] += 1
        if kind == "instructor":
            made += self._instructor()
        elif kind == "withdrawal":
            made += self._withdrawal()
        else:
            made += self._registration(at)
        return made

    # -- TRANSCRIPTDETAIL ---------------------------------------------------------
    def _registration(self, at: float) -> list[SoakStep]:
        registrar = self.registrar
        if len(registrar.rows) > self.registrations_at * MARGIN:
            steps = registrar.delete(at)
        else:
            steps = registrar.step(at)
        now = [s for s in steps if s.at_s <= at]
        self._later += [s for s in steps if s.at_s > at]
        return [SoakStep(s.what, s.statements) for s in now]

    # -- SECTIONPER -----------------------------------------------------------------
    def _instructor(self) -> list[SoakStep]:
        roll = self.rng.random()
        if len(self.teaching) > self.teaching_at * MARGIN or (
            roll < 0.35 and self.teaching  # noqa: PLR2004 - a third are removals
        ):
            return self._unassign()
        if roll < 0.6 and self.teaching:  # noqa: PLR2004 - a quarter change share
            return self._reshare()
        return self._assign()

    def _assign(self) -> list[SoakStep]:
        free = [pair for pair in self.may_teach if pair not in self.teaching]
        if not free:
            return []
        person, section = self.rng.choice(free)
        teaching = Teaching(person, section, self.rng.choice((100, 100, 0)))
        self.teaching[(person, section)] = teaching
        sql = (
            "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, "
            "EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES "
            f"('{YEAR}', '{TERM}', '{SESSION}', '{section.event_id}', "
            f"'{section.sub_type}', '{section.section}', '{person}', "
            f"{teaching.percentage})"
        )
        return [SoakStep(f"teaches {_label(teaching)}", (sql,))]

    def _unassign(self) -> list[SoakStep]:
        teaching = self._pick_teaching()
        del self.teaching[(teaching.person, teaching.section)]
        sql = f"DELETE FROM SECTIONPER {_where_teaching(teaching)}"
        return [SoakStep(f"no longer teaches {_label(teaching)}", (sql,))]

    def _reshare(self) -> list[SoakStep]:
        teaching = self._pick_teaching()
        changed = Teaching(
            teaching.person, teaching.section, 0 if teaching.percentage else 100
        )
        self.teaching[(teaching.person, teaching.section)] = changed
        sql = (
            f"UPDATE SECTIONPER SET PERCENTAGE = {changed.percentage} "
            f"{_where_teaching(teaching)}"
        )
        return [SoakStep(f"percentage {_label(changed)}", (sql,))]

    def _pick_teaching(self) -> Teaching:
        ordered = sorted(
            self.teaching.values(),
            key=lambda t: (t.person, t.section.event_id, t.section.section),
        )
        return self.rng.choice(ordered)

    # -- ACADEMIC ----------------------------------------------------------------------
    def _withdrawal(self) -> list[SoakStep]:
        withdrawn = sorted(p for p, code in self.standings.items() if code != "ENRL")
        staying = sorted(p for p, code in self.standings.items() if code == "ENRL")
        restore = withdrawn and (
            len(withdrawn) >= self.withdrawn_at * 2 or self.rng.random() < 0.5  # noqa: PLR2004
        )
        if restore or not staying:
            person, code = self.rng.choice(withdrawn), "ENRL"
        else:
            person, code = self.rng.choice(staying), self.rng.choice(("WITH", "LOA"))
        self.standings[person] = code
        sql = (
            f"UPDATE ACADEMIC SET ENROLL_SEPARATION = '{code}' WHERE PEOPLE_CODE_ID = "
            f"'{person}' AND ACADEMIC_YEAR = '{YEAR}' AND ACADEMIC_TERM = '{TERM}'"
        )
        return [SoakStep(f"separation {code} {person}", (sql,))]

    def _withdrawn(self) -> int:
        return sum(code != "ENRL" for code in self.standings.values())


def _label(teaching: Teaching) -> str:
    section = teaching.section
    return (
        f"{teaching.person} {section.event_id}/{section.section} "
        f"at {teaching.percentage}"
    )


def _where_teaching(teaching: Teaching) -> str:
    section = teaching.section
    return (
        f"WHERE PERSON_CODE_ID = '{teaching.person}' AND rtrim(EVENT_ID) = "
        f"'{section.event_id.strip()}' AND SECTION = '{section.section}' AND "
        f"ACADEMIC_YEAR = '{YEAR}' AND ACADEMIC_TERM = '{TERM}'"
    )
