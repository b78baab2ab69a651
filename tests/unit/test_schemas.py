"""The versioned event contract: frozen models, and JSON Schema files kept in sync."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from consumers.parked import ParkedEvent
from schemas.events import (
    EVENT_ID_NAMESPACE,
    EnrolmentEvent,
    PersonDetails,
    Registration,
    SectionKey,
    Standing,
    TableChange,
    Teaching,
    TermKey,
    change_event_id,
    parse_event,
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


class TestVersionTwo:
    """Version 2 carries instructors, standing and account details; version 1 still reads."""

    def v1_json(self, *, with_version: bool = True) -> bytes:
        """A version 1 event as a producer before the upgrade wrote it."""
        data = {
            "event_id": "e-1",
            "kind": "change",
            "source": "pc",
            "people_code_id": "P000000001",
            "term": {"academic_year": "2021", "academic_term": "Winter"},
            "state_version": 15,
            "registrations": [
                {
                    "transcript_detail_id": 7,
                    "section": SECTION.model_dump(),
                    "add_drop_wait": "A",
                }
            ],
            "change": {
                "transcript_detail_id": 7,
                "operation": "update",
                "change_version": 12,
                "section": SECTION.model_dump(),
            },
            "captured_at": "2021-01-11T09:00:00Z",
        }
        if with_version:
            data["schema_version"] = 1
        return json.dumps(data).encode()

    @pytest.mark.parametrize("with_version", [True, False])
    def test_version_one_reads_as_current(self, with_version: bool) -> None:
        """A v1 event is read as v3: its change names TRANSCRIPTDETAIL, the new parts None."""
        event = parse_event(self.v1_json(with_version=with_version))
        assert event.schema_version == 3
        assert (event.teaching, event.standing, event.person) == (None, None, None)
        assert event.change is not None
        assert (event.change.table, event.change.key) == ("TRANSCRIPTDETAIL", "7")
        assert event.change.transcript_detail_id == 7

    def test_version_two_round_trips(self) -> None:
        """Every new part survives JSON."""
        original = event().model_copy(
            update={
                "teaching": (Teaching(section=SECTION, percentage=0.0),),
                "standing": (
                    Standing(
                        academic_session="01",
                        transcript_seq="001",
                        enroll_separation="WITH",
                    ),
                ),
                "person": PersonDetails(first_name="Ada", email="ada@example.edu"),
            }
        )
        assert parse_event(original.model_dump_json()) == original

    def test_parked_entries_of_version_one_still_load(self) -> None:
        """A person parked before the upgrade is read back with a current event."""
        record = {
            "event": json.loads(self.v1_json()),
            "reason": "no Moodle user",
            "parked_at": "2021-01-11T09:00:00Z",
        }
        parked = ParkedEvent.model_validate_json(json.dumps(record))
        assert parked.event.schema_version == 3

    def test_both_versions_are_exported(self) -> None:
        """The schema export holds v1 and v2; v2 names what it adds."""
        assert {
            "enrolment_event.v1.schema.json",
            "enrolment_event.v2.schema.json",
        } <= set(CONTRACTS)
        text = render("enrolment_event.v2.schema.json")
        for name in (
            "teaching",
            "standing",
            "person",
            "PERCENTAGE",
            "ENROLL_SEPARATION",
        ):
            assert name in text

    def test_transcript_ids_keep_their_version_one_form(self) -> None:
        """A row re-polled across the upgrade gets the same event id."""
        assert change_event_id("pc", 7, 12, "update") == str(
            uuid.uuid5(EVENT_ID_NAMESPACE, "pc|TRANSCRIPTDETAIL|7|12|update")
        )


BANNER_SECTION = SectionKey(
    academic_year="2015",
    academic_term="10",
    academic_session="",
    event_id="14482",
    event_sub_type="",
    section="",
)


class TestVersionThree:
    """Version 3 carries Banner's LMB memberships; versions 1 and 2 still read."""

    def v2_json(self) -> bytes:
        """A version 2 event as a producer before the upgrade wrote it."""
        data = event().model_dump(mode="json") | {"schema_version": 2}
        return json.dumps(data).encode()

    def banner_event(self) -> EnrolmentEvent:
        """A Banner learner membership as the LMB source publishes it."""
        return event().model_copy(
            update={
                "registrations": (
                    Registration(
                        transcript_detail_id=None,
                        section=BANNER_SECTION,
                        add_drop_wait="A",
                    ),
                ),
                "teaching": (),
                "change": TableChange(
                    table="LMB_MEMBERSHIP",
                    key="14482.201510|banner-1|01",
                    operation="insert",
                    change_version=16,
                    section=BANNER_SECTION,
                ),
            }
        )

    def test_version_two_reads_as_three_unchanged(self) -> None:
        """A v2 event is read as v3 with every field as it was."""
        read = parse_event(self.v2_json())
        assert read.schema_version == 3
        assert read == event()

    def test_version_three_reads_the_same_however_it_is_spaced(self) -> None:
        """Read directly (the producers' compact JSON) or through the union of
        versions (other spacing), a v3 event is the same event."""
        original = self.banner_event()
        compact = original.model_dump_json()
        spaced = json.dumps(json.loads(compact))
        assert '"schema_version":3' in compact
        assert '"schema_version":3' not in spaced
        assert parse_event(compact) == parse_event(spaced.encode()) == original

    def test_producers_write_version_three(self) -> None:
        """A new event says version 3."""
        assert json.loads(event().model_dump_json())["schema_version"] == 3

    def test_banner_event_round_trips(self) -> None:
        """A membership without TranscriptDetailId, changed by an LMB message, survives JSON."""
        original = self.banner_event()
        assert parse_event(original.model_dump_json()) == original

    def test_version_two_refuses_a_banner_event(self) -> None:
        """Labelled version 2, a Banner event does not validate: an old reader dead-letters it."""
        data = self.banner_event().model_dump(mode="json") | {"schema_version": 2}
        with pytest.raises(ValidationError):
            parse_event(json.dumps(data))

    def test_version_three_is_exported_with_what_it_adds(self) -> None:
        """The export holds v3, naming the IMS objects; v1 and v2 files are unchanged."""
        text = render("enrolment_event.v3.schema.json")
        for name in ("LMB_MEMBERSHIP", "LMB_PERSON", '"const": 3'):
            assert name in text
        assert "LMB_" not in render("enrolment_event.v2.schema.json")
