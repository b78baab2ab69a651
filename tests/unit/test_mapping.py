"""The per-term course mapping: loading, validation errors, collation-aware lookups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from connectors.moodle.checks import check_against_moodle
from consumers.errors import MappingError
from consumers.mapping import (
    WHOLE_FILE,
    MappingSet,
    load_mappings,
    parse_term_label,
)
from enrolstream.cli.mapping import register
from schemas.events import SectionKey, TermKey

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "mapping.example.json"
COUN = "COUN6552COUN855202Winter2021"
BSC = "BSC5102Winter2021"


def _write(tmp_path: Path, text: str, name: str = "mapping.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _section(
    event_id: str,
    section: str,
    *,
    year: str = "2021",
    term: str = "Winter",
    sub_type: str = "LEC",
) -> SectionKey:
    return SectionKey(
        academic_year=year,
        academic_term=term,
        academic_session="",
        event_id=event_id,
        event_sub_type=sub_type,
        section=section,
    )


@pytest.fixture(name="example")
def _example() -> MappingSet:
    """The example mapping of 2021/Winter."""
    return load_mappings({"2021/Winter": EXAMPLE})


class TestLoadMappings:
    """Loading valid files."""

    def test_example_loads_both_courses(self, example: MappingSet) -> None:
        """The example file yields its two courses with ids, shortnames and term."""
        assert [(c.id, c.shortname) for c in example] == [(4766, COUN), (4748, BSC)]
        assert len(example) == 2
        assert {c.term.label() for c in example} == {"2021/Winter"}

    def test_course_by_id(self, example: MappingSet) -> None:
        """``course`` finds a mapped course by Moodle id and answers None otherwise."""
        course = example.course(4748)
        assert course is not None
        assert course.shortname == BSC
        assert example.course(1) is None

    def test_terms_and_covers_follow_collation(self, example: MappingSet) -> None:
        """The covered term matches whatever case or padding an event uses."""
        assert example.terms() == (
            TermKey(academic_year="2021", academic_term="Winter"),
        )
        assert example.covers(TermKey(academic_year="2021", academic_term="WINTER "))
        assert not example.covers(TermKey(academic_year="2021", academic_term="Fall"))

    def test_empty_file_still_covers_its_term(self, tmp_path: Path) -> None:
        """A term whose file maps nothing yet is covered with no course."""
        mapping = load_mappings({"2022/Fall": _write(tmp_path, "{}")})
        assert len(mapping) == 0
        assert mapping.covers(TermKey(academic_year="2022", academic_term="FALL"))

    def test_byte_order_mark_is_tolerated(self, tmp_path: Path) -> None:
        """A file saved with a UTF-8 BOM (Windows editors) loads."""
        path = tmp_path / "bom.json"
        path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.read_bytes())
        assert len(load_mappings({"2021/Winter": path})) == 2

    def test_several_files_of_one_term_merge(self, tmp_path: Path) -> None:
        """Files given together for one term form one mapping."""
        first = _write(tmp_path, '{"A": {"courses": ["X1"], "id": 1}}', "a.json")
        second = _write(tmp_path, '{"B": {"courses": ["X2"], "id": 2}}', "b.json")
        mapping = load_mappings({"2021/Winter": [first, second]})
        assert [c.shortname for c in mapping] == ["A", "B"]


def _one(**value: object) -> str:
    return json.dumps({"A": value})


_OK = '"courses": ["X"], "id": 1'

BAD_FILES = [
    pytest.param('{"A": {' + _OK + "},\n  }", WHOLE_FILE, "line 2 column 3", id="json"),
    pytest.param("[1, 2]", WHOLE_FILE, "one JSON object", id="not-object"),
    pytest.param('{"A": 5}', "A", "must be an object", id="entry-not-object"),
    pytest.param(_one(id=1), "A", "'courses' must be", id="no-courses"),
    pytest.param(_one(courses=[], id=1), "A", "non-empty", id="courses-empty"),
    pytest.param(_one(courses="X", id=1), "A", "'courses'", id="courses-str"),
    pytest.param(_one(courses=[""], id=1), "A", "''", id="course-empty"),
    pytest.param(_one(courses=["  "], id=1), "A", "non-empty", id="course-blank"),
    pytest.param(_one(courses=[7], id=1), "A", "holds 7", id="course-int"),
    pytest.param(_one(courses=[" X"], id=1), "A", "leading", id="lead-space"),
    pytest.param(_one(courses=["X", "x "], id=1), "A", "twice", id="course-repeated"),
    pytest.param(_one(courses=["X"]), "A", "'id' is None", id="no-id"),
    pytest.param(_one(courses=["X"], id=0), "A", "positive", id="id-zero"),
    pytest.param(_one(courses=["X"], id=-3), "A", "positive", id="id-negative"),
    pytest.param(_one(courses=["X"], id="1"), "A", "'1'", id="id-str"),
    pytest.param(_one(courses=["X"], id=True), "A", "True", id="id-bool"),
    pytest.param(_one(courses=["X"], id=1.5), "A", "1.5", id="id-float"),
    pytest.param(_one(courses=["X"], id=1, section=2), "A", "is 2", id="section-int"),
    pytest.param(_one(courses=["X"], id=1, section=None), "A", "None", id="sec-null"),
    pytest.param(_one(courses=["X"], id=1, section=""), "A", "''", id="section-empty"),
    pytest.param(_one(courses=["X"], id=1, sections="02"), "A", "'sections'", id="key"),
    pytest.param('{"A": {' + _OK + ', "id": 2}}', "A", "'id' appears twice", id="k2"),
    pytest.param(
        '{"A": {' + _OK + '}, "A": {"courses": ["Y"], "id": 2}}',
        "A",
        "appears twice",
        id="shortname-twice",
    ),
    pytest.param(
        '{"A": {' + _OK + '}, "B": {"courses": ["Y"], "id": 1}}',
        "B",
        "id 1 is also mapped by 'A'",
        id="moodle-id-twice",
    ),
    pytest.param('{"": {' + _OK + "}}", "", "shortname is empty", id="shortname-empty"),
]


class TestValidation:
    """Every problem stops loading with the file, the key and the problem named."""

    @pytest.mark.parametrize(("text", "key", "fragment"), BAD_FILES)
    def test_bad_file(self, tmp_path: Path, text: str, key: str, fragment: str) -> None:
        """A bad file raises MappingError naming this file, the key and the problem."""
        path = _write(tmp_path, text)
        with pytest.raises(MappingError) as caught:
            load_mappings({"2021/Winter": path})
        assert (caught.value.file, caught.value.key) == (str(path), key)
        assert fragment in caught.value.problem
        assert str(path) in str(caught.value)

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing file is reported as unreadable, naming it."""
        path = tmp_path / "missing.json"
        with pytest.raises(MappingError) as caught:
            load_mappings({"2021/Winter": path})
        assert caught.value.file == str(path)
        assert "cannot read" in caught.value.problem

    @pytest.mark.parametrize(
        "label", ["2021", "21/Winter", "2021/", "2021/ ", "2021/Win/ter", ""]
    )
    def test_bad_term_label(self, label: str) -> None:
        """A term label that is not YEAR/TERM is reported with its file."""
        with pytest.raises(MappingError) as caught:
            load_mappings({label: EXAMPLE})
        assert (caught.value.file, caught.value.key) == (str(EXAMPLE), label)
        assert "YEAR/TERM" in caught.value.problem

    def test_shortname_in_two_files_of_a_term(self, tmp_path: Path) -> None:
        """A shortname repeated in a second file of the term names both files."""
        second = _write(tmp_path, json.dumps({BSC: {"courses": ["X"], "id": 9}}))
        with pytest.raises(MappingError) as caught:
            load_mappings({"2021/Winter": [EXAMPLE, second]})
        assert (caught.value.file, caught.value.key) == (str(second), BSC)
        assert str(EXAMPLE) in caught.value.problem

    def test_term_labels_differing_in_case_are_one_term(self, tmp_path: Path) -> None:
        """Two labels of the same term are merged, so their duplicates are caught."""
        second = _write(tmp_path, json.dumps({COUN: {"courses": ["X"], "id": 9}}))
        with pytest.raises(MappingError, match="also mapped in"):
            load_mappings({"2021/Winter": EXAMPLE, "2021/WINTER": second})

    def test_moodle_id_in_two_terms(self, tmp_path: Path) -> None:
        """One Moodle course fed from two terms is refused: no event could decide it."""
        spring = _write(
            tmp_path,
            json.dumps({"BSC5102Spring": {"courses": ["BSC5102"], "id": 4748}}),
        )
        with pytest.raises(MappingError) as caught:
            load_mappings({"2021/Winter": EXAMPLE, "2021/Spring": spring})
        assert caught.value.key == "BSC5102Spring"
        assert "cannot be decided" in caught.value.problem


class TestParseTermLabel:
    """Term labels."""

    def test_parses_year_and_term(self) -> None:
        """``2021/Winter`` becomes the TermKey events carry."""
        assert parse_term_label(" 2021/Winter ") == TermKey(
            academic_year="2021", academic_term="Winter"
        )


class TestCoursesFor:
    """Which Moodle courses a section feeds."""

    @pytest.mark.parametrize(
        ("section", "expected"),
        [
            pytest.param(_section("COUN6552", "02"), [COUN], id="listed-course"),
            pytest.param(_section("COUN8552", "02"), [COUN], id="cross-listed"),
            pytest.param(_section("coun8552", "02"), [COUN], id="lower-case"),
            pytest.param(_section("COUN8552  ", "02  "), [COUN], id="padded"),
            pytest.param(_section("COUN6552", "01"), [], id="other-section"),
            pytest.param(_section("BSC5102", "01"), [BSC], id="sectionless-01"),
            pytest.param(_section("BSC5102", "7", sub_type="LAB"), [BSC], id="any-sec"),
            pytest.param(
                _section("bsc5102", "1", term="WINTER"), [BSC], id="term-case"
            ),
            pytest.param(_section("BSC5102", "01", term="Fall"), [], id="other-term"),
            pytest.param(_section("BSC5102", "01", year="2022"), [], id="other-year"),
            pytest.param(_section("BSC510", "01"), [], id="prefix-only"),
        ],
    )
    def test_courses_for(
        self, example: MappingSet, section: SectionKey, expected: list[str]
    ) -> None:
        """A section feeds the courses listing its EVENT_ID with no or its section."""
        assert [c.shortname for c in example.courses_for(section)] == expected

    def test_padded_values_in_the_file_match(self, tmp_path: Path) -> None:
        """Course ids and sections written padded in the file still match."""
        path = _write(
            tmp_path, '{"A": {"courses": ["bsc5102  "], "section": "02 ", "id": 1}}'
        )
        mapping = load_mappings({"2021/Winter": path})
        assert [c.id for c in mapping.courses_for(_section("BSC5102", "02"))] == [1]
        entry = mapping.entry(1)
        assert entry is not None
        assert entry.event_ids == ("bsc5102  ",)  # kept as written, for display

    def test_one_section_feeding_two_courses(self, tmp_path: Path) -> None:
        """A section may feed two Moodle courses; both are returned and reported."""
        path = _write(
            tmp_path,
            '{"A": {"courses": ["X"], "id": 1}, '
            '"B": {"courses": ["Y", "x"], "section": "02", "id": 2}, '
            '"C": {"courses": ["X"], "section": "03", "id": 3}}',
        )
        mapping = load_mappings({"2021/Winter": path})
        assert [c.id for c in mapping.courses_for(_section("X", "02"))] == [1, 2]
        assert [o.shortnames for o in mapping.overlaps()] == [("A", "B"), ("A", "C")]

    def test_distinct_sections_do_not_overlap(self, example: MappingSet) -> None:
        """The example mapping has no overlap."""
        assert example.overlaps() == ()


class TestValidateCommand:
    """``enrolstream mapping validate``."""

    @staticmethod
    def _run(*args: str) -> tuple[int, str, str]:
        app = typer.Typer()
        app.callback()(lambda: None)
        register(app)
        result = CliRunner().invoke(app, ["mapping", "validate", *args])
        return result.exit_code, result.stdout, result.stderr

    def test_valid_file_prints_counts(self) -> None:
        """A valid file is reported OK with its number of Moodle courses."""
        code, out, _ = self._run(str(EXAMPLE), "--term", "2021/Winter")
        assert code == 0
        assert f"OK {EXAMPLE}: 2 Moodle course(s)" in out

    def test_invalid_file_exits_1_naming_file_key_problem(self, tmp_path: Path) -> None:
        """An invalid file prints file, key and problem and exits 1."""
        path = _write(tmp_path, '{"A": {"courses": ["X"], "id": 0}}')
        code, _, err = self._run(str(path))
        assert code == 1
        assert f"ERROR {path}: A: 'id' is 0" in err

    def test_bad_term_exits_1(self) -> None:
        """A bad --term is an error too."""
        code, _, err = self._run(str(EXAMPLE), "--term", "Winter")
        assert code == 1
        assert "YEAR/TERM" in err

    def test_overlap_is_a_warning(self, tmp_path: Path) -> None:
        """A section feeding two courses is printed as a warning, exit 0."""
        path = _write(
            tmp_path,
            '{"A": {"courses": ["X"], "id": 1}, "B": {"courses": ["X"], "id": 2}}',
        )
        code, _, err = self._run(str(path))
        assert code == 0
        assert "warning: X (every section) feeds both 'A' and 'B'" in err


def _course_record(
    course_id: int, shortname: str, methods: list[str]
) -> dict[str, object]:
    return {"id": course_id, "shortname": shortname, "enrollmentmethods": methods}


class TestCheckAgainstMoodle:
    """The ``--against-moodle`` check, with an injected fetcher."""

    @pytest.mark.parametrize(
        ("record", "fragment"),
        [
            pytest.param(None, "no course with id 4748", id="missing"),
            pytest.param(
                _course_record(4748, "BSC5102W21", ["manual"]),
                "'BSC5102W21'",
                id="other-shortname",
            ),
            pytest.param(
                _course_record(4748, BSC, ["self", "guest"]),
                "no enabled manual",
                id="no-manual",
            ),
            pytest.param(_course_record(4748, BSC, []), "wsnoinstance", id="disabled"),
        ],
    )
    async def test_problem(
        self, example: MappingSet, record: dict[str, object] | None, fragment: str
    ) -> None:
        """A course Moodle lacks, names otherwise or cannot enrol into is reported."""
        records = {4766: _course_record(4766, COUN, ["manual", "self"]), 4748: record}

        async def fetch(course_id: int) -> dict[str, object] | None:
            return records[course_id]

        problems = await check_against_moodle(example, fetch)
        assert [(p.course.id, p.file) for p in problems] == [(4748, EXAMPLE)]
        assert fragment in problems[0].problem

    async def test_all_good(self, example: MappingSet) -> None:
        """Courses that exist with their shortname and a manual instance pass."""
        records = {c.id: _course_record(c.id, c.shortname, ["manual"]) for c in example}
        fetched: list[int] = []

        async def fetch(course_id: int) -> dict[str, object] | None:
            fetched.append(course_id)
            return records[course_id]

        assert await check_against_moodle(example, fetch) == []
        assert sorted(fetched) == [4748, 4766]


def test_example_file_is_the_documented_format() -> None:
    """The example file is the format the notes document (guards the fixture itself)."""
    assert set(json.loads(EXAMPLE.read_text())) == {COUN, BSC}
