"""Moodle's PHP bracket form encoding and the max_input_vars arithmetic."""

from __future__ import annotations

import pytest

from connectors.moodle.batch import ENROL_ROW_FIELDS, UNENROL_ROW_FIELDS, EnrolRow
from connectors.moodle.form import (
    ROUTING_FIELDS,
    chunk_by_fields,
    count_fields,
    encode_params,
    encode_value,
)


class TestEncodeParams:
    """Nested params flatten into ordered PHP bracket-notation fields."""

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({}, []),
            ({"courseid": 2}, [("courseid", "2")]),
            ({"field": "idnumber"}, [("field", "idnumber")]),
            (
                {"values": ["P1", "P2"]},
                [("values[0]", "P1"), ("values[1]", "P2")],
            ),
            (
                {"enrolments": [{"userid": 4, "courseid": 2, "roleid": 5}]},
                [
                    ("enrolments[0][userid]", "4"),
                    ("enrolments[0][courseid]", "2"),
                    ("enrolments[0][roleid]", "5"),
                ],
            ),
            (
                {"enrolments": [{"suspend": True}, {"suspend": False}]},
                [("enrolments[0][suspend]", "1"), ("enrolments[1][suspend]", "0")],
            ),
            (
                {"options": ({"name": "onlyactive", "value": True},)},
                [("options[0][name]", "onlyactive"), ("options[0][value]", "1")],
            ),
            (
                {"users": [{"customfields": [{"type": "t", "value": "v"}]}]},
                [
                    ("users[0][customfields][0][type]", "t"),
                    ("users[0][customfields][0][value]", "v"),
                ],
            ),
            ({"values": []}, []),
            ({"ratio": 1.5, "name": ""}, [("ratio", "1.5"), ("name", "")]),
        ],
    )
    def test_encodes(
        self, params: dict[str, object], expected: list[tuple[str, str]]
    ) -> None:
        """Each params shape encodes to exactly these fields, in input order."""
        assert encode_params(params) == expected

    def test_enrol_row_has_every_optional_key(self) -> None:
        """An EnrolRow always carries suspend, timestart and timeend, even at defaults."""
        fields = encode_params({"enrolments": [EnrolRow(4, 2, 5).as_param()]})
        assert dict(fields) == {
            "enrolments[0][userid]": "4",
            "enrolments[0][courseid]": "2",
            "enrolments[0][roleid]": "5",
            "enrolments[0][suspend]": "0",
            "enrolments[0][timestart]": "0",
            "enrolments[0][timeend]": "0",
        }
        assert len(fields) == ENROL_ROW_FIELDS

    @pytest.mark.parametrize("value", [None, b"x", object()])
    def test_refuses_values_without_encoding(self, value: object) -> None:
        """None, bytes and arbitrary objects raise TypeError rather than guess."""
        with pytest.raises(TypeError):
            encode_value(value)


class TestFieldCounting:
    """Requests are sized by counting form fields, routing fields included."""

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({}, 3),
            ({"enrolments": [EnrolRow(1, 2, 5).as_param()] * 166}, 999),
            ({"enrolments": [EnrolRow(1, 2, 5).as_param()] * 167}, 1005),
            ({"enrolments": [{"userid": 1, "courseid": 2}] * 498}, 999),
            ({"field": "idnumber", "values": ["a"] * 996}, 1000),
        ],
    )
    def test_counts(self, params: dict[str, object], expected: int) -> None:
        """The count is routing fields plus encoded fields."""
        assert count_fields(params) == expected

    def test_enrol_arithmetic_of_the_brief(self) -> None:
        """At max_input_vars=1000 an enrol request holds 166 rows, unenrol 498."""
        assert (1000 - ROUTING_FIELDS) // ENROL_ROW_FIELDS == 166
        assert (1000 - ROUTING_FIELDS) // UNENROL_ROW_FIELDS == 498


class TestChunkByFields:
    """Items are packed greedily, in order, into chunks within the field budget."""

    @pytest.mark.parametrize(
        ("sizes", "budget", "expected"),
        [
            ([], 10, []),
            ([1, 1, 1], 3, [[0, 1, 2]]),
            ([1, 1, 1], 2, [[0, 1], [2]]),
            ([2, 3, 2, 1], 5, [[0, 1], [2, 3]]),
            ([5, 5], 5, [[0], [1]]),
        ],
    )
    def test_chunks(
        self, sizes: list[int], budget: int, expected: list[list[int]]
    ) -> None:
        """Chunks keep order and never exceed the budget."""
        assert chunk_by_fields(list(range(len(sizes))), sizes, budget) == expected

    def test_item_larger_than_budget(self) -> None:
        """An item that no request could carry intact raises ValueError."""
        with pytest.raises(ValueError, match="budget"):
            chunk_by_fields(["big"], [6], 5)
