"""``reprocess``: decide a person or a Moodle course again from PowerCampus now.

Reads the live terms once from the configured source and publishes full-state
events (``cdc.reprocess``) on the event topic, keyed by person like every event,
so the running consumer applies them in order with the person's other changes.
Used by the status page's action and by ``enrolstream reprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from cdc.poller import parse_terms
from cdc.ports import ChangeSource
from cdc.reprocess import course_events, person_events
from connectors.kafka.publisher import KafkaEventPublisher
from enrolstream.settings import Settings
from enrolstream.wiring.capture import build_source
from enrolstream.wiring.common import kafka_options
from enrolstream.wiring.mapping import effective_mapping
from schemas.collation import collate
from schemas.events import SectionKey

__all__ = ["ReprocessResult", "run_reprocess"]


@dataclass(frozen=True, slots=True)
class ReprocessResult:
    """What was published."""

    events: int
    persons: int
    version: int

    def describe(self, what: str) -> str:
        """One sentence for a person."""
        return (
            f"{what}: {self.events} events for {self.persons} persons published at "
            f"change-tracking version {self.version}; the consumer decides them again"
        )


async def run_reprocess(
    settings: Settings,
    bootstrap_servers: str,
    *,
    person: str | None = None,
    course: str | None = None,
    source: ChangeSource | None = None,
    today: date | None = None,
) -> ReprocessResult:
    """Publish the chosen person's or course's state; ``ValueError`` for a bad choice.

    ``source``: an open source to read from (closed by its owner); otherwise one
    is built from the settings and closed here.
    """
    if (person is None) == (course is None):
        raise ValueError("name one person or one course")
    in_course = None
    if course is not None:
        mapping = await effective_mapping(settings, bootstrap_servers)
        wanted = collate(course)
        if not any(collate(e.course.shortname) == wanted for e in mapping.entries()):
            raise ValueError(f"no mapped Moodle course has the shortname {course!r}")

        def in_course(section: SectionKey) -> bool:
            return any(
                collate(c.shortname) == wanted for c in mapping.courses_for(section)
            )

    owned = source is None
    reader = source or build_source(settings.source)
    try:
        terms = parse_terms(settings.poller.live_terms) or list(
            await reader.live_terms(today or datetime.now(UTC).date())
        )
        if not terms:
            raise ValueError("no live term: configure poller.live_terms")
        snapshot = await reader.read_snapshot(terms)
    finally:
        if owned:
            await reader.close()
    now = datetime.now(UTC)
    request = f"reprocess-{now:%Y%m%dT%H%M%S}"
    if person is not None:
        events = person_events(
            snapshot,
            person.strip(),
            source=reader.name,
            captured_at=now,
            request_id=request,
        )
    else:
        assert in_course is not None  # noqa: S101 - set for a course above
        events = course_events(
            snapshot, in_course, source=reader.name, captured_at=now, request_id=request
        )
    if not events:
        raise ValueError(f"PowerCampus registers nobody in {course} in the live terms")
    async with KafkaEventPublisher(
        kafka_options(settings, bootstrap_servers),
        settings.kafka.events_topic,
        enable_idempotence=settings.kafka.enable_idempotence,
        ack_timeout_s=settings.kafka.request_timeout_s,
    ) as publisher:
        await publisher.publish(events)
    return ReprocessResult(
        events=len(events),
        persons=len({collate(e.people_code_id) for e in events}),
        version=snapshot.version,
    )
