"""The look-up calls' request shapes and answer checks, over a scripted ``call``."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from connectors.moodle.errors import MoodleBadResponse
from connectors.moodle.form import encode_params
from connectors.moodle.reads import MoodleReads


class ScriptedMoodle(MoodleReads):
    """Answers each call with the next scripted answer and records the params."""

    def __init__(self, answers: list[object], max_input_vars: int = 1000) -> None:
        self.answers = answers
        self.max_input_vars = max_input_vars
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """Record the call as form fields; return the next answer (the last repeats)."""
        self.calls.append((function, dict(encode_params(params))))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class TestEnrolledUsers:
    """Paging and options of core_enrol_get_enrolled_users."""

    async def test_options_sent(self) -> None:
        """userfields, sort by id, onlyactive and paging go as name/value options."""
        moodle = ScriptedMoodle([[]])
        await moodle.get_enrolled_users(7, page_size=50, onlyactive=True)
        function, fields = moodle.calls[0]
        assert function == "core_enrol_get_enrolled_users"
        options = {
            fields[f"options[{i}][name]"]: fields[f"options[{i}][value]"]
            for i in range(5)
        }
        assert fields["courseid"] == "7"
        assert options == {
            "userfields": "id,idnumber,username",
            "sortby": "id",
            "onlyactive": "1",
            "limitfrom": "0",
            "limitnumber": "50",
        }

    async def test_server_ignoring_limit_does_not_loop(self) -> None:
        """A server answering the same full page forever ends after one repeat."""
        page = [{"id": 1}, {"id": 2}]
        moodle = ScriptedMoodle([page])
        assert await moodle.get_enrolled_users(7, page_size=2) == page
        assert len(moodle.calls) == 2


class TestAnswerShapes:
    """An answer of the wrong shape is a MoodleBadResponse, never iterated blindly."""

    @pytest.mark.parametrize(
        "answer", [{"courses": "x"}, None, [1, 2], {"id": 1}, "text"]
    )
    async def test_users_by_field_shape(self, answer: object) -> None:
        """Only a list of objects is a user list."""
        with pytest.raises(MoodleBadResponse):
            await ScriptedMoodle([answer]).get_users_by_field("idnumber", ["x"])

    @pytest.mark.parametrize("answer", [[], None, {"courses": None}, {"warnings": []}])
    async def test_courses_shape(self, answer: object) -> None:
        """Only {courses: [...]} is a course answer."""
        with pytest.raises(MoodleBadResponse):
            await ScriptedMoodle([answer]).get_courses_by_field("shortname", "C1")

    async def test_site_info_shape(self) -> None:
        """Site info must be an object."""
        with pytest.raises(MoodleBadResponse):
            await ScriptedMoodle([[]]).get_site_info()

    async def test_no_values_no_call(self) -> None:
        """Nothing to look up makes no request; duplicates are sent once."""
        moodle = ScriptedMoodle([[]])
        assert await moodle.get_users_by_field("idnumber", ["", ""]) == []
        await moodle.get_users_by_field("idnumber", ["a", "a", "b"])
        assert moodle.calls == [
            (
                "core_user_get_users_by_field",
                {"field": "idnumber", "values[0]": "a", "values[1]": "b"},
            )
        ]
