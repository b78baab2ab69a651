"""The ChangeSource contract: the same scenarios, the same batches, on every source.

Each scenario is portable SQL: ``setup`` transactions run before the baseline
(the version the poller saved, with a shadow map built from ``read_snapshot``),
``window`` transactions run after it, each list in ONE transaction. The
expected batch is what any ChangeSource must return for
``fetch_since(baseline)``: net changes per key (CT gives state, not history)
and the complete term state of every person a change touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from cdc.errors import ChangeTrackingVersionTooOld
from cdc.ports import ChangeBatch, ShadowEntry, TrackedTable
from schemas.events import TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")
P1, P2 = "P000000001", "P000000002"


def enrol(
    tid: int, person: str, event: str, adw: str = "A", section: str = "01"
) -> str:
    """A portable INSERT of one TRANSCRIPTDETAIL row in 2021/Winter."""
    return (
        "INSERT INTO TRANSCRIPTDETAIL (TranscriptDetailId, PEOPLE_ID, PEOPLE_CODE_ID,"
        " ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION, EVENT_ID, EVENT_SUB_TYPE,"
        f" SECTION, ADD_DROP_WAIT) VALUES ({tid}, '{person[1:]}', '{person}', '2021',"
        f" 'Winter', '01', '{event}', 'LEC', '{section}', '{adw}')"
    )


def set_adw(tid: int, adw: str) -> str:
    """A portable UPDATE of one row's ADD_DROP_WAIT."""
    return f"UPDATE TRANSCRIPTDETAIL SET ADD_DROP_WAIT = '{adw}' WHERE TranscriptDetailId = {tid}"


def delete(tid: int) -> str:
    """A portable DELETE of one row."""
    return f"DELETE FROM TRANSCRIPTDETAIL WHERE TranscriptDetailId = {tid}"


@dataclass(frozen=True)
class Scenario:
    """Portable SQL and the batch every ChangeSource must return for it."""

    setup: Sequence[Sequence[str]]
    window: Sequence[Sequence[str]]
    #: (TranscriptDetailId, operation, shadow known) in key order
    changes: Sequence[tuple[int, str, bool]] = ()
    #: person -> {(TranscriptDetailId, EVENT_ID, ADD_DROP_WAIT)} in 2021/Winter
    state: Mapping[str, set[tuple[int, str, str]]] = field(default_factory=dict)
    #: keys whose changes share one change_version (one transaction)
    same_version: Sequence[int] = ()
    invalidate: bool = False


SCENARIOS = {
    "enrol": Scenario(
        setup=[],
        window=[[enrol(1, P1, "BSC5102")]],
        changes=[(1, "I", False)],
        state={P1: {(1, "BSC5102", "A")}},
    ),
    "drop A->D": Scenario(
        setup=[[enrol(1, P1, "BSC5102")]],
        window=[[set_adw(1, "D")]],
        changes=[(1, "U", True)],
        state={P1: {(1, "BSC5102", "D")}},
    ),
    "waitlist": Scenario(
        setup=[[enrol(1, P1, "BSC5102")]],
        window=[[enrol(2, P1, "COUN6552", adw="W")]],
        changes=[(2, "I", False)],
        state={P1: {(1, "BSC5102", "A"), (2, "COUN6552", "W")}},
    ),
    "delete row": Scenario(
        setup=[[enrol(1, P1, "BSC5102"), enrol(2, P2, "BSC5102")]],
        window=[[delete(1)]],
        changes=[(1, "D", True)],
        state={P1: set()},
    ),
    "A->D->A in one window": Scenario(
        setup=[[enrol(1, P1, "BSC5102")]],
        window=[[set_adw(1, "D")], [set_adw(1, "A")]],
        changes=[(1, "U", True)],
        state={P1: {(1, "BSC5102", "A")}},
    ),
    "insert then delete": Scenario(
        setup=[],
        window=[[enrol(1, P1, "BSC5102")], [delete(1)]],
        changes=[(1, "D", False)],
        state={},
    ),
    "cross-list swap in one transaction": Scenario(
        setup=[[enrol(1, P1, "COUN6552", section="02")]],
        window=[[set_adw(1, "D"), enrol(2, P1, "COUN8552", section="02")]],
        changes=[(1, "U", True), (2, "I", False)],
        state={P1: {(1, "COUN6552", "D"), (2, "COUN8552", "A")}},
        same_version=[1, 2],
    ),
    "truncate below saved version": Scenario(
        setup=[[enrol(1, P1, "BSC5102")]],
        window=[[enrol(2, P2, "BSC5102")]],
        invalidate=True,
    ),
}


class DictShadow:
    """The poller's shadow map as of the baseline."""

    def __init__(self, entries: Sequence[ShadowEntry]) -> None:
        self.entries = {entry.transcript_detail_id: entry for entry in entries}

    def lookup(self, ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        return {i: self.entries[i] for i in ids if i in self.entries}

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        return {}


def _state(batch: ChangeBatch) -> dict[str, set[tuple[int, str, str]]]:
    assert all(key.term.matches(WINTER) for key in batch.term_state)
    return {
        key.people_code_id: {
            (row.transcript_detail_id, row.section.event_id, row.add_drop_wait)
            for row in rows
        }
        for key, rows in batch.term_state.items()
    }


class TestChangeSourceContract:
    """Every ChangeSource returns the same batch for the same PowerCampus history."""

    @pytest.mark.parametrize("name", list(SCENARIOS))
    async def test_scenario(self, harness: Any, name: str) -> None:
        """The scenario's net changes and term state come back exactly."""
        scenario = SCENARIOS[name]
        for transaction in scenario.setup:
            harness.execute(transaction)
        source = harness.make_source()
        try:
            snapshot = await source.read_snapshot([WINTER])
            baseline = snapshot.version
            assert baseline == harness.current_version()
            shadow = DictShadow(
                [
                    ShadowEntry(
                        row.transcript_detail_id, row.people_code_id, row.section
                    )
                    for row in snapshot.rows
                ]
            )
            for transaction in scenario.window:
                harness.execute(transaction)
            if scenario.invalidate:
                harness.invalidate_history()
                with pytest.raises(ChangeTrackingVersionTooOld):
                    await source.fetch_since(baseline, shadow)
                return
            batch = await source.fetch_since(baseline, shadow)
        finally:
            await source.close()
        assert (batch.from_version, batch.to_version) == (
            baseline,
            harness.current_version(),
        )
        got = sorted(
            (c.transcript_detail_id, c.operation, c.shadow is not None)
            for c in batch.changes
        )
        assert got == sorted(scenario.changes)
        assert all(
            baseline < c.change_version <= batch.to_version for c in batch.changes
        )
        assert _state(batch) == scenario.state
        versions = {
            c.change_version
            for c in batch.changes
            if c.transcript_detail_id in scenario.same_version
        }
        assert len(versions) <= 1


def session(
    period: int, year: str, term: str, start: str, end: str | None, final: str | None
) -> str:
    """A portable INSERT of one ACADEMICCALENDAR session (ISO 8601 with T: any DATEFORMAT)."""

    def when(day: str | None) -> str:
        return "NULL" if day is None else f"'{day}T00:00:00'"

    return (
        "INSERT INTO ACADEMICCALENDAR (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION,"
        " SessionPeriodId, START_DATE, END_DATE, FINAL_END_DATE) VALUES"
        f" ('{year}', '{term}', '01', {period}, {when(start)}, {when(end)},"
        f" {when(final)})"
    )


CALENDAR = [
    # exams: past END_DATE, before FINAL_END_DATE -> live
    session(1, "2021", "Winter", "2021-01-04", "2021-04-16", "2021-04-30"),
    # no FINAL_END_DATE: END_DATE alone -> live
    session(2, "2021", "Spring", "2021-04-19", "2021-06-25", None),
    # FINAL_END_DATE before END_DATE: END_DATE, the later, -> live
    session(3, "2020", "Annual", "2020-09-08", "2021-04-30", "2021-04-16"),
    # over, even counting FINAL_END_DATE -> not live
    session(4, "2020", "Fall", "2020-09-08", "2020-12-11", "2020-12-22"),
    # not started -> not live
    session(5, "2021", "Summer", "2021-05-03", "2021-08-13", "2021-08-20"),
    # no end date at all -> not live
    session(6, "2021", "Open", "2021-01-04", None, None),
]


class TestLiveTermsContract:
    """Every ChangeSource reads the same live terms from the same ACADEMICCALENDAR."""

    async def test_live_until_the_later_end_date(self, harness: Any) -> None:
        """A session is live from START_DATE to the later of END_DATE and FINAL_END_DATE."""
        harness.execute(CALENDAR)
        source = harness.make_source()
        try:
            terms = await source.live_terms(date(2021, 4, 23))
        finally:
            await source.close()
        assert sorted(t.label() for t in terms) == [
            "2020/Annual",
            "2021/Spring",
            "2021/Winter",
        ]


def teaches(person: str, event: str, share: int = 100) -> str:
    """A portable INSERT of one SECTIONPER row in 2021/Winter."""
    return (
        "INSERT INTO SECTIONPER (ACADEMIC_YEAR, ACADEMIC_TERM, ACADEMIC_SESSION,"
        " EVENT_ID, EVENT_SUB_TYPE, SECTION, PERSON_CODE_ID, PERCENTAGE) VALUES"
        f" ('2021', 'Winter', '01', '{event}', 'LEC', '01', '{person}', {share})"
    )


def term_record(person: str, code: str) -> str:
    """A portable INSERT of one ACADEMIC row for 2021/Winter."""
    return (
        "INSERT INTO ACADEMIC (PEOPLE_CODE_ID, ACADEMIC_YEAR, ACADEMIC_TERM,"
        " ACADEMIC_SESSION, TRANSCRIPT_SEQ, ENROLL_SEPARATION) VALUES"
        f" ('{person}', '2021', 'Winter', '', '001', '{code}')"
    )


def person_row(person: str, n: int) -> list[str]:
    """Portable INSERTs of a person, their primary e-mail and login name."""
    people = (
        "INSERT INTO PEOPLE (PEOPLE_CODE_ID, PEOPLE_ID, PersonId, FIRST_NAME, LAST_NAME)"
        f" VALUES ('{person}', '{person[1:]}', {n}, 'Ada', 'Byron')"
    )
    email = (
        "INSERT INTO EmailAddress (EmailAddressId, PeopleOrgCodeId, Email, IsActive)"
        f" VALUES ({n}, '{person}', 'ada{n}@example.edu', 1)"
    )
    return [
        people,
        email,
        f"UPDATE PEOPLE SET PrimaryEmailId = {n} WHERE PEOPLE_CODE_ID = '{person}'",
        f"INSERT INTO PersonUser (PersonUserId, PersonId, UserName) VALUES ({n}, {n}, 'ada{n}')",
    ]


@dataclass(frozen=True)
class RelatedScenario:
    """Portable SQL on the other tables and what every ChangeSource must return."""

    setup: Sequence[Sequence[str]]
    window: Sequence[Sequence[str]]
    #: (table, operation, person) in key order
    changes: Sequence[tuple[str, str, str | None]]
    #: person -> {(EVENT_ID, PERCENTAGE)} teaching in 2021/Winter
    teaching: Mapping[str, set[tuple[str, float | None]]] = field(default_factory=dict)
    #: person -> {ENROLL_SEPARATION} in 2021/Winter
    standing: Mapping[str, set[str | None]] = field(default_factory=dict)
    #: person -> last name read
    people: Mapping[str, str | None] = field(default_factory=dict)


RELATED = {
    "instructor added": RelatedScenario(
        setup=[],
        window=[[teaches(P1, "BSC5102", 0)]],
        changes=[("SECTIONPER", "I", P1)],
        teaching={P1: {("BSC5102", 0.0)}},
        standing={P1: set()},
    ),
    "instructor removed (a key-only delete that names them)": RelatedScenario(
        setup=[[teaches(P1, "BSC5102")]],
        window=[["DELETE FROM SECTIONPER"]],
        changes=[("SECTIONPER", "D", P1)],
        teaching={P1: set()},
        standing={P1: set()},
    ),
    "term withdrawal": RelatedScenario(
        setup=[[enrol(1, P1, "BSC5102"), term_record(P1, "ENRL")]],
        window=[
            [
                f"UPDATE ACADEMIC SET ENROLL_SEPARATION = 'WITH' WHERE PEOPLE_CODE_ID = '{P1}'"
            ]
        ],
        changes=[("ACADEMIC", "U", P1)],
        teaching={P1: set()},
        standing={P1: {"WITH"}},
    ),
    "name change": RelatedScenario(
        setup=[[*person_row(P1, 7), enrol(1, P1, "BSC5102")]],
        window=[
            [f"UPDATE PEOPLE SET LAST_NAME = 'King' WHERE PEOPLE_CODE_ID = '{P1}'"]
        ],
        changes=[("PEOPLE", "U", P1)],
        teaching={P1: set()},
        standing={P1: set()},
        people={P1: "King"},
    ),
}


class TestOtherTablesContract:
    """SECTIONPER, ACADEMIC and the person tables read alike by every ChangeSource."""

    @pytest.mark.parametrize("name", list(RELATED))
    async def test_scenario(self, harness: Any, name: str) -> None:
        """The key changes and the other tables' state come back exactly."""
        scenario = RELATED[name]
        for transaction in scenario.setup:
            harness.execute(transaction)
        baseline = harness.current_version()
        for transaction in scenario.window:
            harness.execute(transaction)
        source = harness.make_source()
        try:
            batch = await source.fetch_since(baseline, DictShadow([]))
        finally:
            await source.close()
        got = [(c.table, c.operation, c.people_code_id) for c in batch.key_changes]
        assert got == list(scenario.changes)
        assert batch.teaching is not None
        assert batch.standing is not None
        assert {
            key.people_code_id: {(t.section.event_id, t.percentage) for t in rows}
            for key, rows in batch.teaching.items()
        } == scenario.teaching
        assert {
            key.people_code_id: {s.enroll_separation for s in rows}
            for key, rows in batch.standing.items()
        } == scenario.standing
        for person, last_name in scenario.people.items():
            assert batch.people is not None
            assert batch.people[person].last_name == last_name
