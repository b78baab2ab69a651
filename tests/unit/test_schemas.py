"""The versioned event contract: frozen models, and JSON Schema files kept in sync."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.events import (
    EnrolmentEvent,
    Registration,
    SectionKey,
    TableChange,
    TermKey,
    change_event_id,
)
from schemas.export import CONTRACTS, HERE, render

SECTION = SectionKey(
    academic_year="2021",
    academic_term="Winter",
    academic_session="01",
    event_id="BSC5102",
    event_sub_type="LEC",
    section="01",
)


def event() -> EnrolmentEvent:
    return EnrolmentEvent(
        event_id=change_event_id("pc", 7, 12, "update"),
        kind="change",
        source="pc",
        people_code_id="P000000001",
        term=TermKey(academic_year="2021", academic_term="Winter"),
        state_version=15,
        registrations=(
            Registration(transcript_detail_id=7, section=SECTION, add_drop_wait="D"),
        ),
        change=TableChange(
            table="TRANSCRIPTDETAIL",
            key="7",
            operation="update",
            change_version=12,
            section=SECTION,
        ),
        captured_at=datetime(2021, 1, 11, 9, tzinfo=UTC),
    )


class TestExportedSchemas:
    """The checked-in JSON Schema files are what the models say."""

    @pytest.mark.parametrize("name", list(CONTRACTS))
    def test_file_matches_model(self, name: str) -> None:
        """A model change without `python -m schemas.export` fails here."""
        checked_in = (HERE / name).read_text(encoding="utf-8")
        assert checked_in == render(name), f"run `python -m schemas.export` ({name})"

    def test_event_schema_states_the_version_and_the_key_fields(self) -> None:
        """The event schema requires what a consumer needs to decide without PowerCampus."""
        text = render("enrolment_event.v1.schema.json")
        for field in (
            "schema_version",
            "event_id",
            "people_code_id",
            "registrations",
            "state_version",
            "kind",
        ):
            assert f'"{field}"' in text


class TestEventContract:
    """Events are frozen value objects with a deterministic identity."""

    def test_round_trips_through_json(self) -> None:
        """What the poller writes is what the consumer reads."""
        original = event()
        assert (
            EnrolmentEvent.model_validate_json(original.model_dump_json()) == original
        )

    def test_is_frozen(self) -> None:
        """An event cannot be changed after it is built."""
        with pytest.raises(ValidationError):
            event().state_version = 16  # type: ignore[misc]

    def test_unknown_fields_are_refused(self) -> None:
        """A producer that adds a field without a new version is caught."""
        data = event().model_dump(mode="json") | {"surprise": 1}
        with pytest.raises(ValidationError, match="surprise"):
            EnrolmentEvent.model_validate(data)

    def test_keyed_by_person(self) -> None:
        """The Kafka key is PEOPLE_CODE_ID, so one person's events stay in order."""
        assert event().kafka_key() == b"P000000001"

    @pytest.mark.parametrize(
        ("args", "same"),
        [
            (("pc", 7, 12, "update"), True),
            (("pc", 7, 13, "update"), False),
            (("pc", 8, 12, "update"), False),
            (("other", 7, 12, "update"), False),
            (("pc", 7, 12, "delete"), False),
        ],
    )
    def test_event_id_depends_on_the_row_version_only(
        self, args: tuple[str, int, int, str], same: bool
    ) -> None:
        """Re-polling the same row version gives the same id; anything else another."""
        assert (change_event_id(*args) == event().event_id) is same  # type: ignore[arg-type]
