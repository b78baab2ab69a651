"""Which records a redrive publishes: the newest state per person-term."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.dead_letters import plan_redrive
from consumers.ports import RawMessage
from schemas.dead_letter import DeadLetter
from schemas.events import (
    EnrolmentEvent,
    Registration,
    SectionKey,
    TableChange,
    TermKey,
)

ALICE, BOB = "P000000001", "P000000002"
CAPTURED = datetime(2021, 1, 10, 9, 0, tzinfo=UTC)


def section(course: str, term: str = "Winter") -> SectionKey:
    """Section 01 (lecture) of a course in 2021/<term>."""
    return SectionKey(
        academic_year="2021",
        academic_term=term,
        academic_session="01",
        event_id=course,
        event_sub_type="LEC",
        section="01",
    )


def event(
    person: str, state_version: int, courses: dict[str, str], term: str = "Winter"
) -> EnrolmentEvent:
    """A change event of ``person`` in 2021/<term>: course -> ADD_DROP_WAIT."""
    registrations = tuple(
        Registration(
            transcript_detail_id=row_id,
            section=section(course, term),
            add_drop_wait=status,
        )
        for row_id, (course, status) in enumerate(courses.items(), start=1)
    )
    return EnrolmentEvent(
        event_id=f"{person}-{term}-{state_version}",
        kind="change",
        source="pc",
        people_code_id=person,
        term=TermKey(academic_year="2021", academic_term=term),
        state_version=state_version,
        registrations=registrations,
        change=TableChange(
            table="TRANSCRIPTDETAIL",
            key=str(1),
            operation="update",
            change_version=state_version,
            section=registrations[0].section,
        ),
        captured_at=CAPTURED,
    )


def letter(
    value: str, *, key: str | None = ALICE, error_type: str = "MoodleNoManualInstance"
) -> DeadLetter:
    """A dead letter holding ``value`` verbatim."""
    return DeadLetter(
        reason="rejected",
        error_type=error_type,
        source_topic="events",
        source_partition=0,
        source_offset=0,
        key=key,
        value=value,
        dead_lettered_at=CAPTURED,
    )


def raw(partition: int, offset: int, published: EnrolmentEvent) -> RawMessage:
    """The event as a record read from the event topic."""
    return RawMessage(
        topic="events",
        partition=partition,
        offset=offset,
        key=published.kafka_key(),
        value=published.model_dump_json().encode(),
        timestamp_ms=0,
    )


class TestPlanRedrive:
    """The pure choice of records: newest per person-term, verbatim otherwise."""

    def test_term_compared_case_insensitively(self) -> None:
        """A newer event spelling the term in another case supersedes the letter."""
        old = event(ALICE, 5, {"BSC5102": "A"})
        newer = event(ALICE, 12, {"BSC5102": "D"}, term="WINTER ")
        [(key, value)] = _plan([letter(old.model_dump_json())], [raw(0, 0, newer)])
        assert key == ALICE.encode()
        assert EnrolmentEvent.model_validate_json(value).state_version == 12

    def test_letter_newer_than_topic_wins(self) -> None:
        """When the topic holds only older events, the letter's own state is used."""
        letter_event = event(ALICE, 12, {"BSC5102": "A"})
        older = event(ALICE, 5, {"BSC5102": "A"})
        [(_, value)] = _plan(
            [letter(letter_event.model_dump_json())], [raw(0, 0, older)]
        )
        assert EnrolmentEvent.model_validate_json(value).state_version == 12

    def test_one_record_per_person_term_in_letter_order(self) -> None:
        """Letters of two person-terms and an invalid one keep their first order."""
        bob = event(BOB, 7, {"BSC5102": "A"})
        alice_winter = event(ALICE, 5, {"BSC5102": "A"})
        alice_spring = event(ALICE, 6, {"BSC5102": "A"}, term="Spring")
        letters = [
            letter(bob.model_dump_json(), key=BOB),
            letter(alice_winter.model_dump_json()),
            letter("garbage", key=None, error_type="InvalidEvent"),
            letter(bob.model_dump_json(), key=BOB),
            letter(alice_spring.model_dump_json()),
        ]
        planned = _plan(letters, [])
        assert [key for key, _ in planned] == [
            BOB.encode(),
            ALICE.encode(),
            None,
            ALICE.encode(),
        ]
        assert planned[2] == (None, b"garbage")


def _plan(
    letters: list[DeadLetter], events: list[RawMessage]
) -> list[tuple[bytes | None, bytes]]:
    """plan_redrive, with every value present (as a redrive of valued letters)."""
    planned = plan_redrive(letters, events)
    assert all(value is not None for _, value in planned)
    return [(key, value or b"") for key, value in planned]
