"""What ``consume`` refuses, warns about and checks before it reads an event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.moodle.checks import preflight
from consumers.errors import MappingError
from consumers.mapping import check_mapping, load_mappings
from sandbox.moodle_sim.inprocess import InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState


def mapping_file(tmp_path: Path, entries: dict[str, object]) -> Path:
    """A mapping file with these entries."""
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(entries))
    return path


class TestCheckMapping:
    """The mapping as ``consume`` takes it."""

    def test_empty_mapping_is_refused(self, tmp_path: Path) -> None:
        """No course mapped: start-up stops, naming the file and the setting to change."""
        files = {"2021/Winter": mapping_file(tmp_path, {})}
        with pytest.raises(MappingError) as refused:
            check_mapping(load_mappings(files), files)
        assert str(files["2021/Winter"]) in str(refused.value)
        assert "consumer.allow_empty_mapping" in str(refused.value)

    def test_empty_mapping_allowed_when_asked(self, tmp_path: Path) -> None:
        """consumer.allow_empty_mapping = true lets it start."""
        files = {"2021/Winter": mapping_file(tmp_path, {})}
        check_mapping(load_mappings(files), files, allow_empty=True)

    def test_a_section_feeding_two_courses_is_warned_about(
        self, tmp_path: Path
    ) -> None:
        """BSC5102 in two courses: both named in one warning at start-up."""
        files = {
            "2021/Winter": mapping_file(
                tmp_path,
                {
                    "BSC5102Winter2021": {"courses": ["BSC5102"], "id": 1},
                    "BSCALLWinter2021": {"courses": ["BSC5102", "BSC5103"], "id": 2},
                },
            )
        }
        with capture_logs() as logs:
            check_mapping(load_mappings(files), files)
        [warning] = [
            e for e in logs if e["event"] == "mapping_section_feeds_two_courses"
        ]
        assert warning["event_id"] == "BSC5102"
        assert set(warning["courses"]) == {"BSC5102Winter2021", "BSCALLWinter2021"}


class TestPreflight:
    """Every mapped course looked up in Moodle at start-up."""

    async def test_missing_course_and_disabled_instance_named(
        self, tmp_path: Path
    ) -> None:
        """A course Moodle lacks and one whose manual instance is off: error lines, by file."""
        state = MoodleState()
        good = state.add_course("BSC5102Winter2021")
        off = state.add_course("MAT2001Winter2021", manual="disabled")
        files = {
            "2021/Winter": mapping_file(
                tmp_path,
                {
                    "BSC5102Winter2021": {"courses": ["BSC5102"], "id": good},
                    "MAT2001Winter2021": {"courses": ["MAT2001"], "id": off},
                    "GONE101Winter2021": {"courses": ["GONE101"], "id": 999},
                },
            )
        }
        moodle = InProcessMoodle(MoodleSimulator(state))
        with capture_logs() as logs:
            problems = await preflight(load_mappings(files), moodle)
        assert sorted(p.course.shortname for p in problems) == [
            "GONE101Winter2021",
            "MAT2001Winter2021",
        ]
        errors = [e for e in logs if e["event"] == "mapped_course_problem"]
        assert {e["file"] for e in errors} == {str(files["2021/Winter"])}
        assert any(
            "no enabled manual enrolment instance" in e["problem"] for e in errors
        )

    async def test_moodle_down_is_a_warning_not_a_stop(self, tmp_path: Path) -> None:
        """Moodle not answering at start-up: a warning; the apply loop waits for it."""
        files = {
            "2021/Winter": mapping_file(
                tmp_path, {"BSC5102Winter2021": {"courses": ["BSC5102"], "id": 2}}
            )
        }
        moodle = InProcessMoodle(MoodleSimulator(MoodleState()))
        moodle.refuse(10)
        with capture_logs() as logs:
            assert await preflight(load_mappings(files), moodle) == []
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "preflight_skipped"
        ]
