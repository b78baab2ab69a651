"""Ports of the capture side: what the poller needs from the world, as Protocols.

``ChangeSource`` is implemented by the PowerCampus sandbox
(``sandbox/powercampus/source.py``) and by the SQL Server adapter
(``connectors/sqlserver/source.py``); both must pass the same contract suite
(``tests/contract/``). The poller never sees a driver.

Rows are normalised by the adapters exactly as PowerCampus would compare them:
trailing spaces removed from every string (nvarchar padding), case kept as
stored (compare case-insensitively: the collation is ``..._CI_AS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from schemas.events import EnrolmentEvent, SectionKey, TermKey

CtOperation = Literal["I", "U", "D"]


@dataclass(frozen=True, slots=True)
class TranscriptRow:
    """The current values of one TRANSCRIPTDETAIL row that enrolment depends on."""

    transcript_detail_id: int
    people_code_id: str
    section: SectionKey
    add_drop_wait: str
    final_grade: str | None = None
    mid_grade: str | None = None
    credit_type: str | None = None

    @property
    def term(self) -> TermKey:
        """The term of the row's section."""
        return self.section.term


@dataclass(frozen=True, slots=True)
class ShadowEntry:
    """What the poller last saw of a row: enough to resolve a delete (CT gives the key only)."""

    transcript_detail_id: int
    people_code_id: str
    section: SectionKey


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One row of ``CHANGETABLE(CHANGES TRANSCRIPTDETAIL, @last)`` joined back to the table.

    ``current`` is the row as of the batch's ``to_version`` (None for a delete).
    ``shadow`` is the poller's shadow-map entry for the key, when it had one: the
    only way to know whose row a delete was.
    """

    transcript_detail_id: int
    operation: CtOperation
    change_version: int
    creation_version: int | None
    current: TranscriptRow | None
    shadow: ShadowEntry | None = None


@dataclass(frozen=True, slots=True)
class PersonTerm:
    """A person in a term: the unit of state an event carries."""

    people_code_id: str
    term: TermKey


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Everything one poll read, consistent with one change-tracking version.

    ``changes`` are the net changes with ``from_version < SYS_CHANGE_VERSION``;
    ``to_version`` is CHANGE_TRACKING_CURRENT_VERSION read in the same snapshot
    (the version to save once the events are acknowledged). ``term_state`` holds
    the complete TRANSCRIPTDETAIL rows, as of ``to_version``, of every person and
    term a change touched (including persons resolved from the shadow map for
    deletes); a person with no rows left in the term maps to an empty tuple.
    ``commit_times`` maps each change-tracking version of the batch to the UTC
    time its transaction committed, where the source knows it (SQL Server's
    ``sys.dm_tran_commit_table``; the sandbox's ``CT_COMMIT``); absent versions
    are unknown (history cleaned up, or no permission to read it).
    """

    from_version: int
    to_version: int
    changes: Sequence[ChangeRow]
    term_state: Mapping[PersonTerm, Sequence[TranscriptRow]]
    commit_times: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The full current state of the live terms, consistent with ``version``."""

    version: int
    terms: Sequence[TermKey]
    rows: Sequence[TranscriptRow] = field(default_factory=tuple)


class ShadowLookup(Protocol):
    """Read access to the poller's shadow map, used inside the source's transaction.

    Thread-safe: a source may call it from the event loop or from its worker thread.
    """

    def lookup(self, transcript_detail_ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        """Entries for the ids the map knows; unknown ids are absent."""
        ...


class ChangeSource(Protocol):
    """A PowerCampus database with change tracking on TRANSCRIPTDETAIL."""

    name: str

    async def fetch_since(self, last_version: int, shadow: ShadowLookup) -> ChangeBatch:
        """Read the net changes after ``last_version`` and the term state they touch.

        One consistent read (one snapshot transaction on SQL Server). Raises
        ``ChangeTrackingVersionTooOld`` when ``last_version`` is below the
        table's min valid version (re-initialise), ``SourceUnavailable`` when
        the database cannot be reached (retriable).
        """
        ...

    async def read_snapshot(self, terms: Sequence[TermKey]) -> Snapshot:
        """Every TRANSCRIPTDETAIL row of ``terms`` and the version it is consistent with."""
        ...

    async def live_terms(self, today: date) -> Sequence[TermKey]:
        """Terms whose ACADEMICCALENDAR dates include ``today`` (any session)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class EventPublisher(Protocol):
    """Publishes events and returns only once the broker acknowledged all of them."""

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send every event keyed by person; raise ``PublishFailed`` on any failure."""
        ...


class CheckpointStore(ShadowLookup, Protocol):
    """The poller's durable resume point and shadow map, saved together.

    Off-by-one rule: the stored version is the last change-tracking version whose
    changes are **already published and acknowledged**. The poller resumes
    strictly after it (CHANGETABLE(CHANGES t, @stored) returns versions > @stored).
    """

    def load_version(self) -> int | None:
        """The saved version, or None before the first initialisation."""
        ...

    def entries(self, terms: Sequence[TermKey]) -> list[ShadowEntry]:
        """The shadow map's entries in these terms (re-initialisation compares them)."""
        ...

    def stage(self, upserts: Sequence[ShadowEntry]) -> None:
        """Remember where rows are about to be published, before the version moves.

        Called before publishing: a crash after Kafka acknowledged and before
        ``commit`` must not leave rows that were published but that the shadow
        map never saw (their later delete, or a re-initialisation, would not know
        where to drop them). ``lookup`` and ``entries`` include staged entries
        (staged winning); ``commit`` clears them.
        """
        ...

    def commit(
        self,
        version: int,
        upserts: Sequence[ShadowEntry],
        deletes: Sequence[int],
        *,
        replace_terms: Sequence[TermKey] = (),
        newest_change_at: datetime | None = None,
    ) -> None:
        """Atomically save ``version`` and apply shadow-map changes.

        ``replace_terms`` first removes those terms' entries: a re-initialisation
        replaces the terms it read and leaves the others' entries alone.
        ``newest_change_at``: the commit time of the newest change the batch read,
        kept for the status page when later than the one saved.
        """
        ...
