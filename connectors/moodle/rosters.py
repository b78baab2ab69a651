"""What Moodle holds: the roster of a course, with status and roles, read-only.

``core_enrol_get_enrolled_users`` lists everyone enrolled by any method and
does not say who is suspended, so a roster is two listings: everyone (with
roles and groups), then ``onlysuspended=1`` (suspended, or outside the
enrolment's time window: "not currently active"). Users in the second are
``inactive``. A user in no group has no ``groups`` key (recorded, sequence 5).

Used by the nightly reconcile, ``ledger adopt``, replay's ledger check, and the
consumer when a call's outcome is unknown (``read_holdings``). Where the token's
service has the companion plugin's bulk read, ``MoodleReads.read_rosters`` reads
the same rosters many courses per call instead (``connectors.moodle.bulk_rosters``);
``read_holdings`` (a few courses, the consumer's read-back) stays on this path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from connectors.moodle.errors import MoodleAuthError, MoodleError
from consumers.decisions import Held
from consumers.ports import RosterEntry
from consumers.tasks import run_all

log = structlog.get_logger()


class RosterReads(Protocol):
    """The one read a roster needs (``connectors.moodle.client.MoodleClient``)."""

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


def _groups(user: dict[str, object]) -> frozenset[int]:
    groups = user.get("groups")
    if not isinstance(groups, list):
        return frozenset()
    return frozenset(
        int(group["id"])
        for group in groups
        if isinstance(group, dict) and "id" in group
    )


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
        userfields=("id", "idnumber", "username", "fullname", "roles", "groups"),
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
            fullname=str(user.get("fullname") or ""),
            groupids=_groups(user),
        )
    return roster


async def read_rosters(
    client: RosterReads,
    course_ids: Iterable[int],
    *,
    concurrency: int = 8,
    page_size: int = 500,
    progress: Callable[[int], None] | None = None,
    attempts: int = 1,
    retry_delay_s: float = 1.0,
    failed: dict[int, str] | None = None,
) -> dict[int, dict[int, RosterEntry]]:
    """Rosters of many courses, at most ``concurrency`` courses in flight.

    A course whose read fails with a retriable error is read again, up to
    ``attempts`` reads in all, ``retry_delay_s`` apart (doubling). Without
    ``failed`` the first error that remains is raised (the typed error itself,
    not a group); with it, every course that could not be read is recorded there
    with the reason and left out of the result, and only a refused token
    (``MoodleAuthError``, nothing can be read) is raised. ``progress`` is called
    with 1 after each course (for a progress bar).
    """
    gate = asyncio.Semaphore(concurrency)
    result: dict[int, dict[int, RosterEntry]] = {}

    async def one(courseid: int) -> None:
        delay = retry_delay_s
        for attempt in range(1, attempts + 1):
            try:
                async with gate:
                    result[courseid] = await read_roster(
                        client, courseid, page_size=page_size
                    )
                break
            except MoodleAuthError:
                raise
            except MoodleError as exc:
                if exc.retriable and attempt < attempts:
                    log.warning(
                        "roster_read_retry",
                        courseid=courseid,
                        attempt=attempt,
                        error=str(exc),
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                if failed is None:
                    raise
                failed[courseid] = f"{type(exc).__name__}: {exc}"
                log.warning("roster_not_read", courseid=courseid, error=str(exc))
                break
        if progress is not None:
            progress(1)

    await run_all(one(courseid) for courseid in dict.fromkeys(course_ids))
    return result


async def read_holdings(
    client: RosterReads,
    pairs: Iterable[tuple[int, int]],
    *,
    concurrency: int = 4,
) -> dict[tuple[int, int], Held]:
    """What Moodle holds for each (course, user): one roster read per course.

    Pairs Moodle holds no enrolment for are absent from the result. Errors
    propagate (typed): the caller cannot decide without the answer.
    """
    wanted = set(pairs)
    rosters = await read_rosters(
        client, {courseid for courseid, _ in wanted}, concurrency=concurrency
    )
    return {
        (courseid, userid): Held(
            active=entry.status == "active",
            roleids=entry.roleids,
            groupids=entry.groupids,
        )
        for courseid, roster in rosters.items()
        for userid, entry in roster.items()
        if (courseid, userid) in wanted
    }
