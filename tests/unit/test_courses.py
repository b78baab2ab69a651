"""The pure parts of courses and groups: proposal, match, document, live mapping, dates.

``mapping generate``'s steps on hand-made catalogs and Moodle answers; a
published mapping revision put in force or refused; section groups and
enrolment dates in the decisions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from consumers.courses.catalog import CatalogSection, CrossTally, TermCatalog
from consumers.courses.document import NamedCourse, document, match, resolve
from consumers.courses.generate import named
from consumers.courses.naming import CourseNaming
from consumers.courses.proposal import propose
from consumers.desired import EnrolmentPolicy, desired_enrolments, group_idnumber
from consumers.errors import MappingError
from consumers.live_mapping import (
    LiveMapping,
    LiveShortnames,
    MappingFollower,
    changed_courses,
    revision_of,
)
from consumers.mapping import build_mapping, parse_mapping_text
from schemas.events import EnrolmentEvent, Registration, SectionKey, TermKey
from schemas.mappings import PublishedMapping, digest_of, mapping_snapshot_id

TERM = TermKey(academic_year="2021", academic_term="Winter")


def sec(event_id: str, code: str) -> SectionKey:
    """A 2021/Winter lecture section."""
    return SectionKey(
        academic_year="2021",
        academic_term="Winter",
        academic_session="01",
        event_id=event_id,
        event_sub_type="LEC",
        section=code,
    )


def catalog(*sections: SectionKey, tallies: tuple[CrossTally, ...] = ()) -> TermCatalog:
    """The term with those sections offered."""
    return TermCatalog(TERM, tuple(CatalogSection(s) for s in sections), tallies)


class TestProposal:
    """Which sections make one Moodle course, and its default names."""

    def test_cross_tallied_sections_are_one_course(self) -> None:
        """A tally code merges its sections; the courses' other sections stand alone."""
        term = catalog(
            sec("COUN6552", "01"),
            sec("COUN6552", "02"),
            sec("COUN8552 ", "02"),  # trailing blank, as PowerCampus stores some
            sec("BSC5102", "01"),
            sec("BSC5102", "02"),
            tallies=(
                CrossTally("XT1", (sec("COUN6552", "02"), sec("COUN8552", "02"))),
            ),
        )
        names = [named(p, CourseNaming()).shortname for p in propose(term)]
        assert names == [
            "COUN6552COUN855202Winter2021",
            "BSC5102Winter2021",
            "COUN655201Winter2021",
        ]

    def test_a_tally_of_one_offered_section_merges_nothing(self) -> None:
        """A code whose partner is not offered this term is no cross-listing."""
        term = catalog(
            sec("COUN6552", "02"),
            tallies=(
                CrossTally("XT1", (sec("COUN6552", "02"), sec("COUN8552", "02"))),
            ),
        )
        (only,) = propose(term)
        assert only.kind == "course"
        assert only.every_section

    def test_share_by_section(self) -> None:
        """share = section: one Moodle course per section code."""
        term = catalog(sec("BSC5102", "01"), sec("BSC5102", "02"))
        names = [
            named(p, CourseNaming()).shortname for p in propose(term, share="section")
        ]
        assert names == ["BSC510201Winter2021", "BSC510202Winter2021"]


def _course(event_id: str = "BSC5102") -> NamedCourse:
    (proposal,) = propose(catalog(sec(event_id, "01")))
    return named(proposal, CourseNaming())


def rec(courseid: int, shortname: str = "x", idnumber: str = "") -> dict[str, object]:
    """A course as core_course_get_courses_by_field lists it (the keys read)."""
    return {"id": courseid, "shortname": shortname, "idnumber": idnumber}


class TestMatch:
    """Found by idnumber, then shortname; two candidates are ambiguous, never guessed."""

    def test_idnumber_first(self) -> None:
        """The idnumber's course wins when the shortname finds the same one."""
        course = _course()
        found = match(course, [rec(7)], [rec(7)])
        assert (found.status, found.moodle_id, found.by) == ("found", 7, "idnumber")

    def test_shortname_when_no_idnumber(self) -> None:
        """Found by shortname, its own idnumber noted."""
        found = match(_course(), [], [rec(9, idnumber="OTHER")])
        assert (found.status, found.moodle_id, found.by) == ("found", 9, "shortname")
        assert "OTHER" in found.note

    def test_idnumber_and_shortname_disagree(self) -> None:
        """Two different courses: ambiguous, both named, no id chosen."""
        found = match(_course(), [rec(7)], [rec(9)])
        assert found.status == "ambiguous"
        assert found.moodle_id is None
        assert len(found.candidates) == 2

    def test_one_moodle_course_for_two_proposals(self) -> None:
        """resolve marks both as ambiguous; the document leaves both out."""
        one = match(_course("BSC5102"), [], [rec(7)])
        two = match(_course("EDU2828"), [], [rec(7)])
        resolved = resolve([one, two])
        assert [m.status for m in resolved] == ["ambiguous", "ambiguous"]
        assert document(resolved) == {}

    def test_missing(self) -> None:
        """Nothing answers: missing, not in the document."""
        found = match(_course(), [], [])
        assert found.status == "missing"
        assert document([found]) == {}


def _mapping_text(extra: dict[str, object] | None = None) -> str:
    document_ = {
        "BSC5102Winter2021": {"courses": ["BSC5102"], "id": 10},
        **(extra or {}),
    }
    return json.dumps(document_)


def published(text: str, file: str = "m.json") -> PublishedMapping:
    """A revision of 2021/Winter."""
    return PublishedMapping(
        term="2021/Winter",
        file=file,
        document=text,
        digest=digest_of(text),
        published_at=datetime(2021, 1, 4, tzinfo=UTC),
    )


def live() -> LiveMapping:
    """The mapping in force: one course from the file."""
    entries = parse_mapping_text(_mapping_text(), Path("start.json"), TERM)
    return LiveMapping(build_mapping({TERM: entries}))


class FakeFeed:
    """The mappings topic: records handed out once."""

    def __init__(self, *values: bytes) -> None:
        self.values = list(values)

    async def read_new(self, *, wait: bool) -> list[bytes]:
        out, self.values = self.values, []
        return out


class TestLiveMapping:
    """A revision is put in force when valid; refused, with the old kept, when not."""

    def test_new_course_is_in_force_and_reported_changed(self) -> None:
        """The course mapped anew is in force and listed to be decided again."""
        state = live()
        text = _mapping_text({"EDU2828Winter2021": {"courses": ["EDU2828"], "id": 11}})
        change = state.apply(published(text))
        assert change.changed == (11,)
        assert [c.id for c in state.current.courses_for(sec("EDU2828", "01"))] == [11]
        assert state.holds("2021/Winter", digest_of(text))

    def test_bad_revision_refused_old_kept(self) -> None:
        """A Moodle id mapped twice: MappingError naming file and key; nothing changes."""
        state = live()
        text = _mapping_text({"EDU2828Winter2021": {"courses": ["EDU2828"], "id": 10}})
        with pytest.raises(MappingError) as refused:
            state.apply(published(text, file="bad.json"))
        assert refused.value.file == "bad.json"
        assert "EDU2828Winter2021" in str(refused.value)
        assert not state.current.courses_for(sec("EDU2828", "01"))
        assert not state.holds("2021/Winter", digest_of(text))

    async def test_follower_logs_one_line_and_keeps_the_mapping(self) -> None:
        """Not JSON, then a bad document, then a good one: two refusals, one change."""
        good = _mapping_text({"EDU2828Winter2021": {"courses": ["EDU2828"], "id": 11}})
        bad = published('{"X": {"courses": ["A"]}}', file="bad.json")
        follower = MappingFollower(
            FakeFeed(
                b"not json",
                bad.model_dump_json().encode(),
                published(good).model_dump_json().encode(),
            ),
            live(),
        )
        with structlog.testing.capture_logs() as logs:
            changes = await follower.refresh()
        refusals = [e for e in logs if e["event"] == "mapping_refused"]
        assert follower.refused == 2
        assert [r["file"] for r in refusals] == ["(the mappings topic)", "bad.json"]
        assert all(r["key"] and r["problem"] for r in refusals)
        assert [c.changed for c in changes] == [(11,)]

    def test_changed_courses_ignores_unchanged_and_unmapped(self) -> None:
        """Same feeding: not decided again; removed: left alone; sections changed: again."""
        before = parse_mapping_text(
            _mapping_text({"E": {"courses": ["EDU2828"], "id": 11}}), Path("a"), TERM
        )
        after = parse_mapping_text(
            json.dumps(
                {
                    "BSC5102Winter2021": {"courses": ["bsc5102 "], "id": 10},
                    "N": {"courses": ["NURS1839"], "section": "01", "id": 12},
                }
            ),
            Path("b"),
            TERM,
        )
        assert changed_courses(before, after) == (12,)

    def test_shortnames_follow_the_revision_in_force(self) -> None:
        """Conduit's course names: a course mapped by a revision is named at once."""
        state = live()
        names = LiveShortnames(state)
        assert dict(names) == {10: "BSC5102Winter2021"}
        text = _mapping_text({"EDU2828Winter2021": {"courses": ["EDU2828"], "id": 11}})
        state.apply(published(text))
        assert names[11] == "EDU2828Winter2021"
        assert len(names) == 2

    def test_revision_named_by_republished_events(self) -> None:
        """The snapshot id of a republished event names the term and the digest."""
        assert revision_of(mapping_snapshot_id("2021/Winter", "abc")) == (
            "2021/Winter",
            "abc",
        )
        assert revision_of("snapshot-1") is None
        assert revision_of(None) is None


def _event(*registrations: Registration) -> EnrolmentEvent:
    return EnrolmentEvent(
        event_id="e-1",
        kind="snapshot",
        source="test",
        people_code_id="P000000001",
        term=TERM,
        state_version=1,
        registrations=registrations,
        captured_at=datetime(2021, 1, 4, tzinfo=UTC),
    )


def _reg(section: SectionKey, row: int, adw: str = "A") -> Registration:
    return Registration(transcript_detail_id=row, section=section, add_drop_wait=adw)


class TestGroupsAndDates:
    """Section groups and enrolment dates in the decision."""

    MAPPING = json.dumps(
        {
            "BSC5102Winter2021": {
                "courses": ["BSC5102"],
                "starts": "2021-01-04",
                "ends": "2021-04-23",
                "id": 10,
            },
            "NURS183901Winter2021": {
                "courses": ["NURS1839"],
                "section": "01",
                "id": 12,
            },
            "EDU2828Winter2021": {"courses": ["EDU2828"], "groups": False, "id": 13},
        }
    )

    def _decide(
        self,
        event: EnrolmentEvent,
        *,
        section_groups: bool = False,
        enrolment_dates: bool = False,
    ) -> dict[int, tuple[tuple[str, ...] | None, int, int]]:
        mapping = build_mapping(
            {TERM: parse_mapping_text(self.MAPPING, Path("m"), TERM)}
        )
        rules = EnrolmentPolicy(
            student_role_id=5,
            audit_role_id=5,
            section_groups=section_groups,
            enrolment_dates=enrolment_dates,
        )
        return {
            d.course.id: (d.groups, d.timestart, d.timeend)
            for d in desired_enrolments(event, mapping, rules)
        }

    def test_groups_of_the_enrolled_sections_only(self) -> None:
        """A swap: the group of the section enrolled in, not of the dropped one."""
        event = _event(
            _reg(sec("BSC5102", "01"), 1, "D"),
            _reg(sec("BSC5102", "02"), 2),
            _reg(sec("NURS1839", "01"), 3),
            _reg(sec("EDU2828", "01"), 4),
        )
        decided = self._decide(event, section_groups=True)
        assert decided[10][0] == (group_idnumber(sec("BSC5102", "02")),)
        assert decided[12][0] is None  # one section feeds it: no groups
        assert decided[13][0] is None  # "groups": false
        assert self._decide(event)[10][0] is None  # off globally

    def test_group_idnumber_is_the_collated_key(self) -> None:
        """Any spelling of a section gives the same idnumber."""
        assert group_idnumber(sec("bsc5102  ", "01")) == group_idnumber(
            sec("BSC5102", "01")
        )

    def test_enrolment_dates_from_the_entry(self) -> None:
        """starts at 00:00 UTC of its day, ends at the end of the ends day."""
        event = _event(_reg(sec("BSC5102", "01"), 1), _reg(sec("NURS1839", "01"), 2))
        decided = self._decide(event, enrolment_dates=True)
        start = int(datetime(2021, 1, 4, tzinfo=UTC).timestamp())
        end = int(datetime(2021, 4, 24, tzinfo=UTC).timestamp())
        assert decided[10][1:] == (start, end)
        assert decided[12][1:] == (0, 0)  # no dates in its entry
        assert self._decide(event)[10][1:] == (0, 0)  # policy off


def test_default_shortname_is_the_seed_convention() -> None:
    """COUN6552COUN855202Winter2021 for a cross-listed pair's section 02."""
    term = catalog(
        sec("COUN6552", "02"),
        sec("COUN8552", "02"),
        tallies=(CrossTally("XT1", (sec("COUN6552", "02"), sec("COUN8552", "02"))),),
    )
    (course,) = propose(term)
    assert named(course, CourseNaming()).shortname == "COUN6552COUN855202Winter2021"
