"""Ports of the apply side: what the runner needs, as Protocols (fakes need no inheritance)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from consumers.accounts import NewAccount
from consumers.decisions import Held
from consumers.errors import ActionRejected, TargetError
from consumers.identity import Resolution, UserField
from schemas.actions import MoodleAction

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One Kafka record as the runner sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

    @property
    def tp(self) -> Partition:
        """(topic, partition)."""
        return (self.topic, self.partition)


RosterStatus = Literal["active", "inactive"]


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One participant of a Moodle course as Moodle reports it."""

    userid: int
    idnumber: str
    username: str
    roleids: frozenset[int]
    status: RosterStatus
    fullname: str = ""
    #: The groups of the course the user is in (any group, ours or not).
    groupids: frozenset[int] = frozenset()


class Rosters(Protocol):
    """Who a Moodle course holds, with status and roles (the reconcile, replay, adopt)."""

    async def read_rosters(
        self,
        course_ids: Iterable[int],
        *,
        progress: Callable[[int], None] | None = None,
        attempts: int = 1,
        retry_delay_s: float = 1.0,
        failed: dict[int, str] | None = None,
    ) -> dict[int, dict[int, RosterEntry]]:
        """The roster of every course; see ``connectors.moodle.rosters.read_rosters``."""
        ...


class EventStream(Protocol):
    """The event topic as a consumer-group member sees it."""

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        """The next records per partition."""
        ...

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read, per partition."""
        ...

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Seek back to where an unfinished batch began."""
        ...

    def take_reassigned(self) -> bool:
        """True once after each assignment (reload the ledger and parked tables)."""
        ...

    def assignment_epoch(self) -> int:
        """A number that changes whenever a rebalance revokes or assigns partitions."""
        ...

    def write_turn(self) -> AbstractAsyncContextManager[None]:
        """This member's exclusive turn to write; a rebalance waits for it to end.

        A batch, a parked retry or a late-write recheck runs inside it, so the
        partitions move to another member only after this one stopped writing.
        """
        ...

    def ensure_held(self, epoch: int) -> None:
        """Raise ``PartitionsRevoked`` if a rebalance began since ``epoch``.

        Called before every write is started (never between a write and its
        outcome's record).
        """
        ...

    def owns(self, key: bytes) -> bool:
        """Whether records with this key are on this member's partitions."""
        ...

    async def lag(self) -> int:
        """Records not yet read on the assigned partitions (-1: none assigned yet)."""
        ...

    async def lags(self) -> dict[int, int]:
        """Records not yet read, per assigned partition (empty: none assigned yet)."""
        ...


@dataclass(slots=True)
class ActionOutcomes:
    """What became of each action sent: applied, rejected, or unknown.

    ``rejected``: Moodle refused it (not applied, or only partly: see
    ``partly_applied``; dead-letter it).
    ``unknown``: its request got no usable answer; Moodle may have applied it.
    """

    applied: list[MoodleAction] = field(default_factory=list)
    rejected: list[tuple[MoodleAction, ActionRejected]] = field(default_factory=list)
    unknown: list[tuple[MoodleAction, TargetError]] = field(default_factory=list)
    #: (course, user) of rejected actions whose earlier calls did apply (a role
    #: assigned, then its old role's removal refused): Moodle holds neither the
    #: state before nor the one intended, so the ledger must read it back.
    partly_applied: set[tuple[int, int]] = field(default_factory=set)


class MoodleGateway(Protocol):
    """Moodle as the apply side needs it (``connectors.moodle.client.MoodleClient``).

    It takes the domain's actions and owns their translation to web-service calls.
    """

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Carry out the actions; every one is reported, none raises."""
        ...

    async def holdings(
        self, pairs: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], Held]:
        """What Moodle holds for each (course, user) pair; absent: not enrolled."""
        ...


@dataclass(slots=True)
class AccountOutcomes:
    """What became of each account created or updated, by PEOPLE_CODE_ID.

    ``done``: created (the new user id) or updated; ``rejected``: Moodle refused
    it (the typed error, whose message says why); ``unknown``: no usable answer.
    """

    done: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, ActionRejected] = field(default_factory=dict)
    unknown: dict[str, TargetError] = field(default_factory=dict)


class MoodleAccounts(Protocol):
    """Moodle's user accounts as the apply side needs them (the Moodle client)."""

    async def get_users_by_field(
        self, field: UserField, values: Sequence[str]
    ) -> list[dict[str, object]]:
        """Users whose ``field`` equals one of ``values``; unknown values are absent."""
        ...

    async def create_accounts(self, accounts: Sequence[NewAccount]) -> AccountOutcomes:
        """Create each account (none with a password); every one is reported."""
        ...

    async def update_accounts(
        self, updates: Sequence[tuple[str, int, Mapping[str, str]]]
    ) -> AccountOutcomes:
        """Set fields of accounts: (PEOPLE_CODE_ID, user id, fields) each; all reported."""
        ...


class Identities(Protocol):
    """PEOPLE_CODE_ID → Moodle user (``consumers.identity.IdentityResolver``)."""

    async def resolve(self, people_code_ids: Iterable[str]) -> dict[str, Resolution]:
        """A resolution for every id given."""
        ...

    def forget(self, people_code_id: str) -> None:
        """Drop the cached user id (Moodle said that user does not exist)."""
        ...


class RecordSink(Protocol):
    """Acknowledged appends of (key, value) records (the dead-letter topic)."""

    async def append(
        self, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> None:
        """Send and wait for the acknowledgements."""
        ...


# --- Sites fed by files (Open LMS Conduit): the outbox's ports -------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One row of a file for a site that applies files on its own schedule.

    ``file`` names which of the site's files it belongs to (``users``,
    ``enrolments``); ``key`` what the row is about: rows are states, so a later
    row with the same key replaces an earlier one; ``cells`` its values in the
    file's column order.
    """

    file: str
    key: tuple[str, ...]
    cells: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutboxWindow:
    """The rows decided during one window, cut and waiting to be delivered."""

    seq: int
    rows: tuple[OutboxRow, ...]


class RemoteFolder(Protocol):
    """The folder a file-fed site takes its files from (``connectors.sftp``).

    Errors are the target's categories: ``TargetUnavailable`` (retriable: the
    server is down, the connection dropped), ``TargetRefused`` (credentials, host
    key, permissions: an operator acts).
    """

    async def read(self, name: str) -> bytes | None:
        """The file's content; None when there is none (the site took it)."""
        ...

    async def publish(self, name: str, content: bytes, *, replace: bool) -> bool:
        """Write ``content`` under a temporary name, then rename it to ``name``.

        Without ``replace`` nothing is replaced: False when ``name`` exists (the
        temporary file is removed). With it the rename replaces ``name`` at once.
        True once the file is complete under ``name``.
        """
        ...


class FileFormat(Protocol):
    """How a file-fed site's files are written and read back (``connectors.conduit``)."""

    #: The site's files in the order they are delivered (users before enrolments).
    files: tuple[str, ...]

    def remote_name(self, file: str) -> str:
        """The file's name in the site's folder."""
        ...

    def compose(self, file: str, rows: Sequence[OutboxRow]) -> bytes:
        """The file's content: its header and the latest row of each key."""
        ...

    def parse(self, file: str, content: bytes) -> list[OutboxRow]:
        """The rows of a file we wrote; ``TargetRefused`` when it is not ours."""
        ...


class OutboxStore(Protocol):
    """The outbox's durable side on this machine (``connectors.local.outbox``).

    Windows are numbered in the order they were opened; rows and what the site
    was told each (course, user) holds change in one transaction.
    """

    def queue(
        self,
        rows: Sequence[OutboxRow],
        held: Mapping[tuple[int, int], tuple[str, Held | None]],
        now: datetime,
    ) -> int:
        """Add rows to the open window (opened now if none) and record, per
        (course, user), the person's idnumber and what the site will hold; durable
        on return. Returns the window's number."""
        ...

    def held(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Held]:
        """What the site was told each pair holds (absent: nothing)."""
        ...

    def idnumber(self, courseid: int, userid: int) -> str | None:
        """The idnumber recorded with the pair, if any row was ever queued for it."""
        ...

    def opened_at(self) -> datetime | None:
        """When the open window got its first row (None: no open window)."""
        ...

    def cut(self, now: datetime) -> int | None:
        """Close the open window (it waits for delivery); its number, or None."""
        ...

    def pending(self) -> list[OutboxWindow]:
        """The windows cut and not delivered yet, oldest first."""
        ...

    def last_seq(self) -> int:
        """The newest window's number (open or cut; 0: none yet)."""
        ...

    def delivered_through(self) -> int:
        """Every window up to this number is delivered (0: none)."""
        ...

    def carried(self) -> list[OutboxRow]:
        """Rows delivered over a file the site had not taken yet: not confirmed."""
        ...

    def keep_copy(self, name: str, content: bytes, seq: int, now: datetime) -> None:
        """Keep the exact file sent, dated, readable by the service only."""
        ...

    def delivered(
        self, seq: int | None, carried: Sequence[OutboxRow], now: datetime
    ) -> None:
        """Mark window ``seq`` delivered (None: only the carried rows changed) and
        replace the carried rows, in one transaction."""
        ...
