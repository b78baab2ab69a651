"""What Moodle holds: the roster of a course, with status and roles, read-only.

``core_enrol_get_enrolled_users`` lists everyone enrolled by any method and
does not say who is suspended, so a roster is two listings: everyone (with
roles), then ``onlysuspended=1`` (suspended, or outside the enrolment's time
window: "not currently active"). Users in the second are ``inactive``.

Used by the nightly reconcile, ``ledger adopt`` and replay's ledger check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

RosterStatus = Literal["active", "inactive"]


class RosterReads(Protocol):
    """The one read a roster needs (``consumers.moodle.MoodleClient``)."""

    async def get_enrolled_users(
        self,
        courseid: int,
        *,
        userfields: tuple[str, ...] = ...,
        page_size: int = ...,
        onlyactive: bool = ...,
        onlysuspended: bool = ...,
    ) -> list[dict[str, object]]:
        """Participants of the course, paged."""
        ...


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One participant of a Moodle course as Moodle reports it."""

    userid: int
    idnumber: str
    username: str
    roleids: frozenset[int]
    status: RosterStatus


def _roles(user: dict[str, object]) -> frozenset[int]:
    roles = user.get("roles")
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(
        int(role["roleid"])
        for role in roles
        if isinstance(role, dict) and "roleid" in role
    )


async def read_roster(
    client: RosterReads, courseid: int, *, page_size: int = 500
) -> dict[int, RosterEntry]:
    """The participants of one course keyed by user id, each active or inactive."""
    everyone = await client.get_enrolled_users(
        courseid,
        userfields=("id", "idnumber", "username", "roles"),
        page_size=page_size,
    )
    inactive = await client.get_enrolled_users(
        courseid, userfields=("id",), page_size=page_size, onlysuspended=True
    )
    inactive_ids = {int(str(user["id"])) for user in inactive}
    roster: dict[int, RosterEntry] = {}
    for user in everyone:
        userid = int(str(user["id"]))
        roster[userid] = RosterEntry(
            userid=userid,
            idnumber=str(user.get("idnumber") or ""),
            username=str(user.get("username") or ""),
            roleids=_roles(user),
            status="inactive" if userid in inactive_ids else "active",
        )
    return roster


async def read_rosters(
    client: RosterReads,
    course_ids: Iterable[int],
    *,
    concurrency: int = 8,
    page_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> dict[int, dict[int, RosterEntry]]:
    """Rosters of many courses, at most ``concurrency`` courses in flight.

    ``progress`` is called with 1 after each course (for a progress bar).
    """
    gate = asyncio.Semaphore(concurrency)
    result: dict[int, dict[int, RosterEntry]] = {}

    async def one(courseid: int) -> None:
        async with gate:
            result[courseid] = await read_roster(client, courseid, page_size=page_size)
        if progress is not None:
            progress(1)

    async with asyncio.TaskGroup() as group:
        for courseid in dict.fromkeys(course_ids):
            group.create_task(one(courseid))
    return result
