"""seed_term writes a realistic, deterministic PowerCampus term."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from sandbox.powercampus.database import PowerCampusSandbox, SandboxError
from sandbox.powercampus.seed import CrossListGroup, SeedSummary, seed_term
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import TermKey

WINTER = TermKey(academic_year="2021", academic_term="Winter")
TABLES = ("TRANSCRIPTDETAIL", "SECTIONS", "PEOPLE", "ACADEMICCALENDAR")


@pytest.fixture(name="sandbox")
def sandbox_fixture(tmp_path: Path) -> Iterator[PowerCampusSandbox]:
    """A fresh sandbox."""
    with PowerCampusSandbox(tmp_path / "pc.sqlite") as sandbox:
        sandbox.create()
        yield sandbox


def dump(sandbox: PowerCampusSandbox) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the PowerCampus tables, in key order."""
    return {
        t: sandbox.query(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4, 5, 6") for t in TABLES
    }


def seeded(
    path: Path, **kwargs: object
) -> tuple[SeedSummary, dict[str, list[tuple[object, ...]]]]:
    """Seed a new sandbox at ``path``; the summary and the table dump."""
    with PowerCampusSandbox(path) as sandbox:
        sandbox.create()
        summary = seed_term(sandbox, **kwargs)  # type: ignore[arg-type]
        return summary, dump(sandbox)


class TestDeterminism:
    """The same random seed gives the same data; another seed gives other data."""

    def test_same_seed_same_rows(self, tmp_path: Path) -> None:
        """Two databases seeded alike hold identical rows and summaries."""
        first = seeded(tmp_path / "a.sqlite", people=60, random_seed=7)
        second = seeded(tmp_path / "b.sqlite", people=60, random_seed=7)
        assert first == second

    def test_other_seed_other_rows(self, tmp_path: Path) -> None:
        """A different seed changes the registrations."""
        first = seeded(tmp_path / "a.sqlite", people=60, random_seed=7)
        second = seeded(tmp_path / "b.sqlite", people=60, random_seed=8)
        assert first[1]["TRANSCRIPTDETAIL"] != second[1]["TRANSCRIPTDETAIL"]


class TestContent:
    """The data looks like PowerCampus and the summary matches the database."""

    @pytest.mark.parametrize(
        ("people", "courses", "sections", "pairs", "per_person"),
        [(500, 40, 2, 3, 4), (10, 4, 1, 1, 2), (30, 8, 3, 4, 5)],
    )
    def test_counts(
        self,
        sandbox: PowerCampusSandbox,
        people: int,
        courses: int,
        sections: int,
        pairs: int,
        per_person: int,
    ) -> None:
        """Sizes follow the arguments and the summary counts what was written."""
        summary = seed_term(
            sandbox,
            people=people,
            courses=courses,
            sections_per_course=sections,
            crosslisted_pairs=pairs,
            enrolments_per_person=per_person,
        )
        counts = sandbox.row_counts()
        assert summary.people_summary is not None
        faculty = len(summary.people_summary.faculty)
        assert counts == {
            "TRANSCRIPTDETAIL": people * per_person,
            "SECTIONS": courses * sections,
            "SECTIONPER": len(summary.people_summary.instructors),
            "ACADEMIC": people,
            "CODE_ENROLLMENT": 4,
            "PEOPLE": people + faculty,
            "EmailAddress": people + faculty,
            "PersonUser": people + faculty,
            "ACADEMICCALENDAR": 1,
        }
        assert counts["SECTIONPER"] >= courses * sections  # one instructor each
        assert summary.enrolments == people * per_person
        assert len(summary.people) == people
        assert len(summary.sections) == courses * sections
        assert len(summary.crosslisted) == pairs
        by_status = sandbox.query(
            "SELECT ADD_DROP_WAIT, COUNT(*) FROM TRANSCRIPTDETAIL GROUP BY 1 ORDER BY 1"
        )
        assert dict(by_status) == summary.by_add_drop_wait

    def test_realistic_mix(self, sandbox: PowerCampusSandbox) -> None:
        """Mostly A with some D and W, a few withdrawn and audit grades, some padding."""
        summary = seed_term(sandbox)
        statuses = summary.by_add_drop_wait
        assert statuses["A"] > 0.75 * summary.enrolments
        assert 0 < statuses["D"] < 0.15 * summary.enrolments
        assert 0 < statuses["W"] < 0.15 * summary.enrolments
        assert 0 < summary.withdrawn_grades < 0.06 * summary.enrolments
        assert 0 < summary.audits < 0.06 * summary.enrolments
        padded = sandbox.query(
            "SELECT COUNT(*) FROM TRANSCRIPTDETAIL WHERE EVENT_ID <> rtrim(EVENT_ID)"
        )
        assert padded == [(summary.padded_values,)]
        assert summary.padded_values > 0
        assert summary.sections[0].event_id == "BSC5102"
        assert summary.people[0].people_code_id == "P000074000"

    def test_crosslisted_courses_share_a_section(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """COUN6552 and COUN8552 share section 02, a LEC, with registrations in both."""
        summary = seed_term(sandbox)
        group = summary.crosslisted[0]
        assert group == CrossListGroup(("COUN6552", "COUN8552"), "02")
        assert group.shortname(WINTER) == "COUN6552COUN855202Winter2021"
        for event_id in group.event_ids:
            rows = sandbox.query(
                "SELECT EVENT_SUB_TYPE, (SELECT COUNT(*) FROM TRANSCRIPTDETAIL td "
                "WHERE rtrim(td.EVENT_ID) = s.EVENT_ID AND td.SECTION = s.SECTION) "
                "FROM SECTIONS s WHERE EVENT_ID = ? AND SECTION = '02'",
                (event_id,),
            )
            assert rows[0][0] == "LEC"
            assert rows[0][1] > 0

    async def test_one_version_and_normalised_reads(
        self, sandbox: PowerCampusSandbox
    ) -> None:
        """The seed is one transaction; the source reads it back without padding."""
        summary = seed_term(sandbox, people=50)
        assert summary.version == sandbox.current_version() == 1
        async with SandboxChangeSource(sandbox.path) as source:
            snapshot = await source.read_snapshot([WINTER])
        assert len(snapshot.rows) == summary.enrolments
        assert all(
            r.section.event_id == r.section.event_id.rstrip() for r in snapshot.rows
        )
        assert {r.section for r in snapshot.rows} <= set(summary.sections)

    @pytest.mark.parametrize(
        ("covers", "today", "live"),
        [
            (date(2030, 3, 1), date(2030, 3, 1), True),
            (None, date(2021, 2, 1), True),
            (None, date(2030, 3, 1), False),
        ],
    )
    async def test_calendar(
        self, sandbox: PowerCampusSandbox, covers: date | None, today: date, live: bool
    ) -> None:
        """calendar_covers makes the term live on that day; by default it is Winter 2021."""
        seed_term(
            sandbox, people=5, courses=2, crosslisted_pairs=1, calendar_covers=covers
        )
        async with SandboxChangeSource(sandbox.path) as source:
            assert (await source.live_terms(today) == [WINTER]) is live


class TestRefusals:
    """Seeding refuses what PowerCampus would not hold."""

    def test_same_term_twice(self, sandbox: PowerCampusSandbox) -> None:
        """A term is seeded once; another term shares the people."""
        seed_term(sandbox, people=10, courses=4, crosslisted_pairs=1)
        with pytest.raises(SandboxError, match="already seeded"):
            seed_term(sandbox, people=10, courses=4, crosslisted_pairs=1)
        spring = TermKey(academic_year="2021", academic_term="Spring")
        summary = seed_term(
            sandbox, term=spring, people=10, courses=4, crosslisted_pairs=1
        )
        assert summary.version == 2
        assert summary.people_summary is not None
        faculty = len(summary.people_summary.faculty)
        counts = sandbox.row_counts()
        assert counts["PEOPLE"] == counts["EmailAddress"] == 10 + faculty

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"courses": 4, "crosslisted_pairs": 3},
            {"people": 0},
            {"sections_per_course": 0},
        ],
    )
    def test_bad_sizes(
        self, sandbox: PowerCampusSandbox, kwargs: dict[str, int]
    ) -> None:
        """Impossible sizes are rejected before anything is written."""
        with pytest.raises(SandboxError):
            seed_term(sandbox, **kwargs)  # type: ignore[arg-type]
        assert sandbox.current_version() == 0
