"""Ports of the capture side: what the poller needs from the world, as Protocols.

``ChangeSource`` is implemented by the PowerCampus sandbox
(``sandbox/powercampus/source.py``) and by the SQL Server adapter
(``connectors/sqlserver/source.py``); both must pass the same contract suite
(``tests/contract/``). The poller never sees a driver.

Rows are normalised by the adapters exactly as PowerCampus would compare them:
trailing spaces removed from every string (nvarchar padding), case kept as
stored (compare case-insensitively: the collation is ``..._CI_AS``).

Besides TRANSCRIPTDETAIL a source may track SECTIONPER (instructors), ACADEMIC
(term withdrawals) and the person tables PEOPLE, EmailAddress and PersonUser
(accounts), all read in the same consistent poll. A change of those tables is a
``KeyChange`` resolved to the person (and term) it is about: SECTIONPER's and
ACADEMIC's keys carry both; a key-only delete of EmailAddress or PersonUser is
resolved through the shadow map's row owners (``ShadowLookup.owners``), as a
TRANSCRIPTDETAIL delete is through its shadow entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from schemas.events import EnrolmentEvent, PersonDetails, SectionKey, TermKey

CtOperation = Literal["I", "U", "D"]
TrackedTable = Literal[
    "TRANSCRIPTDETAIL", "SECTIONPER", "ACADEMIC", "PEOPLE", "EmailAddress", "PersonUser"
]
#: Every table a source can track, TRANSCRIPTDETAIL first (always tracked).
TRACKED_TABLES: tuple[TrackedTable, ...] = (
    "TRANSCRIPTDETAIL",
    "SECTIONPER",
    "ACADEMIC",
    "PEOPLE",
    "EmailAddress",
    "PersonUser",
)
#: The tables whose rows are about a person, not a term.
PERSON_TABLES: frozenset[TrackedTable] = frozenset(
    {"PEOPLE", "EmailAddress", "PersonUser"}
)


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
    transcript_seq: str | None = None

    @property
    def term(self) -> TermKey:
        """The term of the row's section."""
        return self.section.term


@dataclass(frozen=True, slots=True)
class TeachingRow:
    """One SECTIONPER row: a person teaching a section (PERCENTAGE their share)."""

    people_code_id: str
    section: SectionKey
    percentage: float | None = None

    @property
    def term(self) -> TermKey:
        """The term of the section."""
        return self.section.term


@dataclass(frozen=True, slots=True)
class StandingRow:
    """One ACADEMIC row with its ENROLL_SEPARATION and CODE_ENROLLMENT's verdict."""

    people_code_id: str
    term: TermKey
    academic_session: str
    transcript_seq: str
    enroll_separation: str | None = None
    #: CODE_ENROLLMENT.REQUIRE_SEPDATE = 'Y' (None: the code is not listed there).
    separation: bool | None = None


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One net change of SECTIONPER, ACADEMIC or a person table, and whom it is about.

    ``key`` is the row's primary key as text, in key order. ``people_code_id`` is
    None for a key-only delete no one can resolve (a row never read: nothing to
    undo). ``term`` (SECTIONPER, ACADEMIC) is None for the person tables, whose
    change concerns every term of the person; ``section`` is SECTIONPER's.
    """

    table: TrackedTable
    key: tuple[str, ...]
    operation: CtOperation
    change_version: int
    creation_version: int | None
    people_code_id: str | None
    term: TermKey | None = None
    section: SectionKey | None = None


@dataclass(frozen=True, slots=True)
class RowOwner:
    """Whose row of a person table a key is: what a later key-only delete needs."""

    table: TrackedTable
    key: str
    people_code_id: str


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
    deletes, and every term of a person-table change's person); a person with no
    rows left in the term maps to an empty tuple. ``teaching``, ``standing`` and
    ``people`` hold the other tracked tables' state of the same persons.
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
    #: Changes of the other tracked tables, in change order.
    key_changes: Sequence[KeyChange] = ()
    #: SECTIONPER rows of every touched person-term (None: not tracked).
    teaching: Mapping[PersonTerm, Sequence[TeachingRow]] | None = None
    #: ACADEMIC rows of every touched person-term (None: not tracked).
    standing: Mapping[PersonTerm, Sequence[StandingRow]] | None = None
    #: Account details of every touched person, by PEOPLE_CODE_ID (None: not read).
    people: Mapping[str, PersonDetails] | None = None
    #: The terms each person of a person-table change has rows in (and that are
    #: live, when the caller named live terms): one event per term.
    person_terms: Mapping[str, Sequence[TermKey]] = field(default_factory=dict)
    #: Person-table rows read, for the shadow map's row owners.
    owners: Sequence[RowOwner] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The full current state of the live terms, consistent with ``version``."""

    version: int
    terms: Sequence[TermKey]
    rows: Sequence[TranscriptRow] = field(default_factory=tuple)
    #: SECTIONPER rows of the terms (None: not tracked).
    teaching: Sequence[TeachingRow] | None = None
    #: ACADEMIC rows of the terms (None: not tracked).
    standing: Sequence[StandingRow] | None = None
    #: Account details of every person with rows, by PEOPLE_CODE_ID (None: not read).
    people: Mapping[str, PersonDetails] | None = None
    #: Person-table rows read, for the shadow map's row owners.
    owners: Sequence[RowOwner] = ()


class ShadowLookup(Protocol):
    """Read access to the poller's shadow map, used inside the source's transaction.

    Thread-safe: a source may call it from the event loop or from its worker thread.
    """

    def lookup(self, transcript_detail_ids: Sequence[int]) -> Mapping[int, ShadowEntry]:
        """Entries for the ids the map knows; unknown ids are absent."""
        ...

    def owners(self, table: TrackedTable, keys: Sequence[str]) -> Mapping[str, str]:
        """PEOPLE_CODE_ID of each person-table row key the map knows."""
        ...


class ChangeSource(Protocol):
    """A PowerCampus database with change tracking on TRANSCRIPTDETAIL (and more)."""

    name: str
    #: The tables it tracks, TRANSCRIPTDETAIL first.
    tables: tuple[TrackedTable, ...]

    async def fetch_since(
        self,
        last_version: int,
        shadow: ShadowLookup,
        *,
        live_terms: Sequence[TermKey] = (),
    ) -> ChangeBatch:
        """Read the net changes after ``last_version`` and the state they touch.

        One consistent read (one snapshot transaction on SQL Server) over every
        tracked table. A person-table change touches the person's terms that
        have TRANSCRIPTDETAIL or SECTIONPER rows, only ``live_terms`` when given.
        Raises ``ChangeTrackingVersionTooOld`` when ``last_version`` is below
        a tracked table's min valid version (re-initialise), ``SourceUnavailable``
        when the database cannot be reached (retriable).
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
        owners: Sequence[RowOwner] = (),
        owners_gone: Sequence[tuple[TrackedTable, str]] = (),
    ) -> None:
        """Atomically save ``version`` and apply shadow-map changes.

        ``replace_terms`` first removes those terms' entries: a re-initialisation
        replaces the terms it read and leaves the others' entries alone.
        ``newest_change_at``: the commit time of the newest change the batch read,
        kept for the status page when later than the one saved.
        ``owners`` and ``owners_gone`` update the person-table row owners.
        """
        ...
