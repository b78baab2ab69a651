"""Enrol/unenrol rows and the batching that lets good rows land past bad ones.

Moodle runs ``enrol_manual_enrol_users`` / ``enrol_manual_unenrol_users`` in one
transaction per request and throws at the first bad row, rolling back every row
of the request. ``apply_rows`` therefore sends chunks, and when a chunk is
rejected for a reason one row can cause, splits it in halves until each
rejection is pinned on a single row. With k bad rows among n, that costs about
2·k·log2(n/k) extra requests; the good rows still land.

Every chunk reports its own outcome: a chunk whose request went unanswered (or
failed for a reason that is not about its rows) never hides what its sibling
chunks achieved. Its rows are reported ``unknown``: Moodle may have applied them.

No aiohttp here: the sending is a callable, so this is tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from connectors.moodle.errors import MoodleError, MoodleRejected
from consumers.tasks import run_all

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "ENROL_ROW_FIELDS",
    "MEMBER_ROW_FIELDS",
    "ROLE_ROW_FIELDS",
    "STATUS_ROW_FIELDS",
    "UNENROL_ROW_FIELDS",
    "BatchResult",
    "EnrolRow",
    "MemberRow",
    "RoleRow",
    "StatusRow",
    "UnenrolRow",
    "apply_rows",
    "balanced_chunks",
]

_T = TypeVar("_T")
RowT = TypeVar("RowT")

#: Form fields per enrol row: userid, courseid, roleid, suspend, timestart, timeend.
ENROL_ROW_FIELDS = 6
#: Form fields per unenrol row: userid, courseid.
UNENROL_ROW_FIELDS = 2
#: Form fields per role row: roleid, userid, contextlevel, instanceid.
ROLE_ROW_FIELDS = 4
#: Form fields per status row (the companion plugin's function): courseid, userid, suspend.
STATUS_ROW_FIELDS = 3
#: Form fields per group member row: groupid, userid.
MEMBER_ROW_FIELDS = 2


@dataclass(frozen=True, slots=True)
class EnrolRow:
    """One manual enrolment as it must be after the call.

    ``suspend``, ``timestart`` and ``timeend`` are always sent: Moodle treats a
    missing key as "active, no dates" and would silently reactivate a suspended
    enrolment or clear its dates. Times are Unix seconds, 0 meaning unset.
    """

    userid: int
    courseid: int
    roleid: int
    suspend: bool = False
    timestart: int = 0
    timeend: int = 0

    def as_param(self) -> dict[str, object]:
        """The row as one ``enrolments[i]`` item, every optional key present."""
        return {
            "userid": self.userid,
            "courseid": self.courseid,
            "roleid": self.roleid,
            "suspend": self.suspend,
            "timestart": self.timestart,
            "timeend": self.timeend,
        }


@dataclass(frozen=True, slots=True)
class UnenrolRow:
    """Remove the user's manual enrolment from the course (roles, groups, and, if it
    was the last enrolment there, grades go too)."""

    userid: int
    courseid: int

    def as_param(self) -> dict[str, object]:
        """The row as one ``enrolments[i]`` item."""
        return {"userid": self.userid, "courseid": self.courseid}


@dataclass(frozen=True, slots=True)
class RoleRow:
    """One role assignment in a course's context (``core_role_assign_roles`` and
    ``core_role_unassign_roles``). Neither fires Moodle's enrolment hook, so
    neither sends the course welcome message."""

    userid: int
    courseid: int
    roleid: int

    def as_param(self) -> dict[str, object]:
        """The row as one ``assignments[i]`` / ``unassignments[i]`` item."""
        return {
            "roleid": self.roleid,
            "userid": self.userid,
            "contextlevel": "course",
            "instanceid": self.courseid,
        }


@dataclass(frozen=True, slots=True)
class StatusRow:
    """An existing manual enrolment's status, set by the companion plugin's function
    (``local_enrolstream_set_enrolment_status``): no enrolment hook, so no welcome
    message; it never creates an enrolment and never touches roles."""

    userid: int
    courseid: int
    suspend: bool

    def as_param(self) -> dict[str, object]:
        """The row as one ``enrolments[i]`` item (``suspend`` is required there)."""
        return {
            "courseid": self.courseid,
            "userid": self.userid,
            "suspend": self.suspend,
        }


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One group membership (``core_group_add_group_members`` and
    ``core_group_delete_group_members``): adding needs an enrolment in the
    group's course, and both are idempotent (recorded, sequence 5)."""

    groupid: int
    userid: int

    def as_param(self) -> dict[str, object]:
        """The row as one ``members[i]`` item."""
        return {"groupid": self.groupid, "userid": self.userid}


@dataclass(slots=True)
class BatchResult(Generic[RowT]):
    """What became of each row: applied, rejected with the reason, or unknown.

    Every input row is in exactly one of the three lists, in input order within
    each. ``rejected`` rows were answered with an error about that row: Moodle
    rolled them back. ``unknown`` rows went out in a request that got no usable
    answer (``MoodleUnavailable``: timeout, dropped connection, 5xx, an HTML page)
    or an answer that is not about its rows (token refused, a coding error, an
    unexpected body): whether Moodle applied them is not known.
    """

    applied: list[RowT] = field(default_factory=list)
    rejected: list[tuple[RowT, MoodleRejected]] = field(default_factory=list)
    unknown: list[tuple[RowT, MoodleError]] = field(default_factory=list)

    def extend(self, other: BatchResult[RowT]) -> None:
        """Append ``other``'s rows after this result's."""
        self.applied.extend(other.applied)
        self.rejected.extend(other.rejected)
        self.unknown.extend(other.unknown)


def balanced_chunks(
    items: Sequence[_T], max_items: int, *, lanes: int = 1, min_items: int = 1
) -> list[Sequence[_T]]:
    """Split ``items`` into chunks of at most ``max_items``, sized to keep ``lanes`` busy.

    As few chunks as ``max_items`` allows, rounded up to a multiple of ``lanes``
    (the requests in flight) so that concurrent requests finish together instead
    of one straggler holding a worker while the others idle, but never chunks
    smaller than ``min_items`` (each request has a fixed cost). Sizes differ by
    at most one; order is kept.
    """
    if max_items < 1 or lanes < 1 or min_items < 1:
        raise ValueError("max_items, lanes and min_items must be at least 1")
    if not items:
        return []
    count = -(-len(items) // max_items)
    if lanes > 1:
        spread = -(-count // lanes) * lanes
        count = max(count, min(spread, len(items) // min_items))
    size, extra = divmod(len(items), count)
    chunks: list[Sequence[_T]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


async def apply_rows(
    rows: Sequence[RowT],
    send: Callable[[Sequence[RowT]], Awaitable[None]],
    *,
    max_rows: int,
    lanes: int = 1,
    min_rows: int = 25,
) -> BatchResult[RowT]:
    """Send ``rows`` in chunks of at most ``max_rows`` and bisect rejected chunks.

    Chunks are balanced over ``lanes`` concurrent requests (``balanced_chunks``).

    ``send`` performs one request for the rows given and raises on failure. A
    ``MoodleRejected`` with ``row_level`` makes the chunk split until the culprit
    rows are alone; any other ``MoodleError`` (``MoodleUnavailable``,
    ``MoodleAuthError``, ``MoodleCodingError``, ...) makes that request's rows
    ``unknown`` while the other chunks go on: nothing is reported applied from a
    request that did not answer, and nothing another request achieved is lost.
    Chunks run concurrently; ``send`` bounds the concurrency.
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    chunks = balanced_chunks(rows, max_rows, lanes=lanes, min_items=min_rows)
    result: BatchResult[RowT] = BatchResult()
    for part in await run_all(_bisect(chunk, send) for chunk in chunks):
        result.extend(part)
    return result


async def _bisect(
    rows: Sequence[RowT], send: Callable[[Sequence[RowT]], Awaitable[None]]
) -> BatchResult[RowT]:
    try:
        await send(rows)
    except MoodleRejected as rejection:
        if not rejection.row_level:
            return BatchResult(unknown=[(row, rejection) for row in rows])
        if len(rows) == 1:
            return BatchResult(rejected=[(rows[0], rejection)])
        middle = len(rows) // 2
        left, right = await run_all(
            (_bisect(rows[:middle], send), _bisect(rows[middle:], send))
        )
        left.extend(right)
        return left
    except MoodleError as failure:
        return BatchResult(unknown=[(row, failure) for row in rows])
    return BatchResult(applied=list(rows))
