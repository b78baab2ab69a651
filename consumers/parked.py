"""Events waiting for a Moodle user: a person with no account yet, or with two.

Never dropped and never guessed: the person's latest event per term is kept on a
keyed topic (``PEOPLE_CODE_ID|YEAR/TERM``) with the reason, retried on a
schedule, and removed once applied or superseded by a newer applied event.
Because an event carries the person's complete term state, the latest one is
enough, and a retry decides every course of the person's registrations (the
earlier events' sections are covered by that state).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from consumers.ledger import TableStore
from schemas.events import EnrolmentEvent, as_event

log = structlog.get_logger()


class ParkedEvent(BaseModel):
    """One parked person-term."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Entries parked before version 2 hold a version 1 event: read as version 2.
    event: Annotated[EnrolmentEvent, BeforeValidator(as_event)] = Field(
        description="The latest event of the person-term."
    )
    reason: str = Field(description="Why it waits: no Moodle user, or two.")
    reason_code: str = Field(
        default="other",
        description="The reason as a closed vocabulary (no_user, several_users, "
        "empty_id, not_looked_up); 'other' in entries written before it existed.",
    )
    parked_at: datetime = Field(description="When it was first parked.")
    attempts: int = Field(
        default=1,
        description="Resolution attempts so far (on the topic: as of the last "
        "change of event or reason; retries that change nothing are not written).",
    )


def parked_key(event: EnrolmentEvent) -> bytes:
    """One slot per person and term."""
    return f"{event.people_code_id}|{event.term.label()}".encode()


def _same_wait(before: ParkedEvent | None, after: ParkedEvent) -> bool:
    """The same event waits for the same reason (only the attempt count differs)."""
    return (
        before is not None
        and before.event == after.event
        and before.reason == after.reason
        and before.reason_code == after.reason_code
    )


class ParkedEvents:
    """In-memory view of the parked topic, written through."""

    def __init__(self, table: TableStore) -> None:
        self._table = table
        self._parked: dict[bytes, ParkedEvent] = {}

    async def load(self) -> int:
        """Read the parked topic; returns how many person-terms wait."""
        rows = await self._table.load()
        self._parked = {
            key: ParkedEvent.model_validate_json(value) for key, value in rows.items()
        }
        if self._parked:
            log.warning("parked_events_loaded", count=len(self._parked))
        return len(self._parked)

    def __len__(self) -> int:
        return len(self._parked)

    def holds(self, event: EnrolmentEvent) -> bool:
        """Whether the event's person-term is parked (it has decisions pending)."""
        return parked_key(event) in self._parked

    def get(self, people_code_id: str, term_label: str) -> ParkedEvent | None:
        """The parked entry of one person-term, if any."""
        return self._parked.get(f"{people_code_id}|{term_label}".encode())

    def all(self) -> list[ParkedEvent]:
        """Every parked person-term."""
        return list(self._parked.values())

    def reasons(self) -> dict[str, int]:
        """How many wait for each reason (for the log and the demo summary)."""
        counts: dict[str, int] = {}
        for parked in self._parked.values():
            counts[parked.reason] = counts.get(parked.reason, 0) + 1
        return counts

    def reason_codes(self) -> dict[str, int]:
        """How many wait for each reason code (a metric's label values)."""
        counts: dict[str, int] = {}
        for parked in self._parked.values():
            counts[parked.reason_code] = counts.get(parked.reason_code, 0) + 1
        return counts

    async def park(
        self, items: Sequence[tuple[EnrolmentEvent, str, str]], now: datetime
    ) -> None:
        """Park (event, reason, reason code) items, acknowledged.

        The newest state per person-term wins; the first parking time is kept.
        A retry that finds the same event waiting for the same reason writes
        nothing: only its ``attempts`` count goes up, in memory (the topic keeps
        the count of the last write). Rewriting every parked person on every
        retry round put a record per person per round on the topic (10,000
        parked at a 30 s retry: 1.2 million records an hour), all re-read at
        every assignment.
        """
        rows: dict[bytes, ParkedEvent] = {}
        for event, reason, code in items:
            key = parked_key(event)
            before = rows.get(key) or self._parked.get(key)
            if before is not None and before.event.state_version > event.state_version:
                continue
            rows[key] = ParkedEvent(
                event=event,
                reason=reason,
                reason_code=code,
                parked_at=before.parked_at if before else now,
                attempts=before.attempts + 1 if before else 1,
            )
        changed = [
            (key, parked.model_dump_json().encode())
            for key, parked in rows.items()
            if not _same_wait(self._parked.get(key), parked)
        ]
        if changed:
            await self._table.put(changed)
        self._parked.update(rows)

    async def release(self, events: Sequence[EnrolmentEvent]) -> None:
        """Remove the person-terms these applied events supersede."""
        keys = {parked_key(e) for e in events}
        done = [
            key
            for key in keys
            if key in self._parked
            and self._parked[key].event.state_version
            <= max(e.state_version for e in events if parked_key(e) == key)
        ]
        if not done:
            return
        await self._table.put([(key, None) for key in done])
        for key in done:
            self._parked.pop(key, None)
