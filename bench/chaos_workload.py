"""The registrar's workload of a fault-matrix run: a model of the term and the SQL of each change.

Pure: the model starts from the seeded term's rows and every change is drawn
from the ``random.Random`` it is given (``bench/chaos_plan.py`` seeds it). One
step is one transaction on TRANSCRIPTDETAIL, written as PowerCampus's own
application would: adds, drops, re-adds, wait-list entries moved W→A a little
later, moves to the cross-listed partner section and to another section of the
course (each in one transaction), withdrawn final grades, deletes, quick
drop/re-add flips and bursts over several people. Steps are drawn in time order,
so the model sees the changes as the database will.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

YEAR, TERM, SESSION = "2021", "Winter", "01"


@dataclass(frozen=True, slots=True)
class Section:
    """A section of the seeded term (the SECTIONS key the workload writes)."""

    event_id: str
    sub_type: str
    section: str


@dataclass(slots=True)
class Row:
    """One TRANSCRIPTDETAIL row as the registrar's model holds it."""

    person: str
    stored_event_id: str  # as stored: PowerCampus pads some EVENT_IDs
    sub_type: str
    section: str
    adw: str
    grade: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One registrar transaction at ``at_s`` seconds into the run."""

    at_s: float
    what: str
    statements: tuple[str, ...]


class Registrar:
    """The registrar's model of the term and the SQL each change takes."""

    def __init__(
        self,
        rng: random.Random,
        rows: Sequence[Row],
        sections: Sequence[Section],
        crosslisted: Sequence[tuple[tuple[str, ...], str]],
        people: Sequence[str],
    ) -> None:
        self.rng = rng
        self.rows = {_key(r.person, r.stored_event_id, r.section): r for r in rows}
        self.sections = list(sections)
        self.people = list(people)
        # event_id/section -> the partner section of its cross-listed group
        self.partner: dict[tuple[str, str], Section] = {}
        by_key = {(s.event_id, s.section): s for s in sections}
        for event_ids, shared in crosslisted:
            for a in event_ids:
                for b in event_ids:
                    if a != b and (b, shared) in by_key:
                        self.partner[(a, shared)] = by_key[(b, shared)]
        self._last_inserted: Row | None = None

    def step(self, at: float, *, purge: bool = False) -> list[Step]:
        """One transaction at ``at`` (plus follow-ups a flip or wait-list schedules)."""
        ops = [
            (self.add, 24), (self.drop, 18), (self.readd, 8), (self.waitlist, 7),
            (self.promote, 6), (self.swap_crosslisted, 9), (self.swap_section, 6),
            (self.delete, 8), (self.withdraw, 3), (self.flip, 6), (self.burst, 5),
        ]  # fmt: skip
        if purge:  # a delete among purged history is what the shadow map is for
            ops = [(self.delete, 3), (self.add, 2), (self.drop, 2)]
        for _ in range(20):
            chosen = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[
                0
            ]
            made = chosen(at)
            if made:
                return made
        return []

    # -- the changes ----------------------------------------------------------
    def add(self, at: float) -> list[Step]:
        """A new registration, A, in a course the person is not in."""
        change = self._new_registration("A")
        return [] if change is None else [Step(at, *change)]

    def waitlist(self, at: float) -> list[Step]:
        """A wait-listed registration now, moved W→A a little later."""
        change = self._new_registration("W")
        if change is None:
            return []
        what, statements = change
        row = self._last_inserted
        assert row is not None  # noqa: S101 - _new_registration just set it
        later = round(at + self.rng.uniform(0.2, 3.0), 2)
        return [Step(at, what, statements), Step(later, *self._set(row, "A"))]

    def drop(self, at: float) -> list[Step]:
        """An added registration dropped (A→D)."""
        row = self._pick(lambda r: r.adw == "A")
        return [] if row is None else [Step(at, *self._set(row, "D"))]

    def readd(self, at: float) -> list[Step]:
        """A dropped registration added again (D→A)."""
        row = self._pick(lambda r: r.adw == "D")
        return [] if row is None else [Step(at, *self._set(row, "A"))]

    def promote(self, at: float) -> list[Step]:
        """A wait-listed registration moved W→A."""
        row = self._pick(lambda r: r.adw == "W")
        return [] if row is None else [Step(at, *self._set(row, "A"))]

    def delete(self, at: float) -> list[Step]:
        """A registration row deleted (change tracking gives its key only)."""
        row = self._pick(lambda _: True)
        if row is None:
            return []
        del self.rows[_key(row.person, row.stored_event_id, row.section)]
        return [
            Step(
                at,
                f"delete {_label(row)}",
                (f"DELETE FROM TRANSCRIPTDETAIL {_where(row)}",),
            )
        ]

    def withdraw(self, at: float) -> list[Step]:
        """A withdrawn final grade (W) on an added registration: not enrolled."""
        row = self._pick(lambda r: r.adw == "A" and r.grade is None)
        if row is None:
            return []
        row.grade = "W"
        sql = f"UPDATE TRANSCRIPTDETAIL SET FINAL_GRADE = 'W' {_where(row)}"
        return [Step(at, f"grade W {_label(row)}", (sql,))]

    def flip(self, at: float) -> list[Step]:
        """Dropped and re-added (or the reverse) moments apart."""
        row = self._pick(lambda r: r.adw in {"A", "D"})
        if row is None:
            return []
        first, second = ("D", "A") if row.adw == "A" else ("A", "D")
        later = round(at + self.rng.uniform(0.05, 0.6), 2)
        return [Step(at, *self._set(row, first)), Step(later, *self._set(row, second))]

    def swap_crosslisted(self, at: float) -> list[Step]:
        """Moved to the cross-listed partner section in one transaction."""
        row = self._pick(
            lambda r: (
                r.adw == "A" and (r.stored_event_id.strip(), r.section) in self.partner
            )
        )
        if row is None:
            return []
        target = self.partner[(row.stored_event_id.strip(), row.section)]
        return self._move(at, row, target, "cross-listed swap")

    def swap_section(self, at: float) -> list[Step]:
        """Moved to another section of the same course in one transaction."""
        row = self._pick(lambda r: r.adw == "A")
        if row is None:
            return []
        others = [
            s
            for s in self.sections
            if s.event_id == row.stored_event_id.strip() and s.section != row.section
        ]
        if not others:
            return []
        return self._move(at, row, self.rng.choice(others), "section swap")

    def burst(self, at: float) -> list[Step]:
        """Several people's changes in one transaction."""
        whats: list[str] = []
        statements: list[str] = []
        for _ in range(self.rng.randint(3, 8)):
            op = self.rng.choice([self.add, self.drop, self.readd, self.delete])
            for made in op(at):
                whats.append(made.what)
                statements.extend(made.statements)
        if not statements:
            return []
        return [Step(at, "burst: " + "; ".join(whats), tuple(statements))]

    # -- helpers ----------------------------------------------------------------
    def _pick(self, wanted: Any) -> Row | None:
        rows = sorted(
            (r for r in self.rows.values() if wanted(r)),
            key=lambda r: (r.person, r.stored_event_id, r.section),
        )
        return self.rng.choice(rows) if rows else None

    def _new_registration(self, adw: str) -> tuple[str, tuple[str, ...]] | None:
        person = self.rng.choice(self.people)
        taken = {
            r.stored_event_id.strip() for r in self.rows.values() if r.person == person
        }
        free = [s for s in self.sections if s.event_id not in taken]
        if not free:
            return None
        section = self.rng.choice(free)
        row = Row(person, section.event_id, section.sub_type, section.section, adw)
        self.rows[_key(person, section.event_id, section.section)] = row
        self._last_inserted = row
        return f"{'add' if adw == 'A' else 'wait-list'} {_label(row)}", (_insert(row),)

    def _set(self, row: Row, adw: str) -> tuple[str, tuple[str, ...]]:
        row.adw = adw
        sql = f"UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = '{adw}' {_where(row)}"
        return f"{adw} {_label(row)}", (sql,)

    def _move(self, at: float, row: Row, target: Section, what: str) -> list[Step]:
        statements = [self._set(row, "D")[1][0]]
        existing = self.rows.get(_key(row.person, target.event_id, target.section))
        if existing is not None:
            statements.append(self._set(existing, "A")[1][0])
        else:
            new = Row(row.person, target.event_id, target.sub_type, target.section, "A")
            self.rows[_key(row.person, target.event_id, target.section)] = new
            statements.append(_insert(new))
        label = f"{what} {_label(row)} -> {target.event_id}/{target.section}"
        return [Step(at, label, tuple(statements))]


def _key(person: str, event_id: str, section: str) -> tuple[str, str, str]:
    return person, event_id.strip(), section


def _label(row: Row) -> str:
    return f"{row.person} {row.stored_event_id.strip()}/{row.section}"


def _where(row: Row) -> str:
    return (
        f"WHERE PEOPLE_CODE_ID = '{row.person}' AND rtrim(EVENT_ID) = "
        f"'{row.stored_event_id.strip()}' AND SECTION = '{row.section}' AND "
        f"ACADEMIC_YEAR = '{YEAR}' AND ACADEMIC_TERM = '{TERM}'"
    )


def _insert(row: Row) -> str:
    return (
        "INSERT INTO TRANSCRIPTDETAIL (PEOPLE_CODE, PEOPLE_ID, PEOPLE_CODE_ID, "
        "ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE, "
        "SECTION, ADD_DROP_WAIT) VALUES "
        f"('P', '{row.person[1:]}', '{row.person}', '{YEAR}', '{TERM}', '{SESSION}', "
        f"'{row.stored_event_id}', '{row.sub_type}', '{row.section}', '{row.adw}')"
    )
