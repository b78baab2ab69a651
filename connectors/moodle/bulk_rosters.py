"""Rosters of many courses per call, through the companion plugin's bulk read.

``local_enrolstream_get_course_enrolments`` (``moodle/local_enrolstream``,
version 2026120200) answers, for several courses in one call, one row per
(course, enrolled user) with idnumber, username, full name, ``active`` (false
exactly when ``core_enrol_get_enrolled_users`` with ``onlysuspended=1`` lists
the user), role ids and group ids, in course then user id order, paged by
``limitfrom``/``limitnumber``. A course it may not read (unknown, the front
page, a capability missing there) comes back as a warning; the other courses
are answered. Recorded on a real Moodle 5.1 with the core listings of the same
courses beside each answer: sequence 6 of ``tests/data/moodle-golden``.

The rosters it gives are the ones ``connectors.moodle.rosters.read_roster``
builds from the two core listings per course; ``read_rosters_bulk`` has the
same contract as ``read_rosters`` (retries, ``failed``, ``progress``), per
call instead of per course.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import structlog

from connectors.moodle.batch import balanced_chunks
from connectors.moodle.errors import (
    MoodleAuthError,
    MoodleBadResponse,
    MoodleError,
    classify_moodle_error,
)
from connectors.moodle.form import ROUTING_FIELDS
from consumers.ports import RosterEntry
from consumers.tasks import run_all

__all__ = [
    "BULK_ROSTER",
    "BulkRosterReads",
    "bulk_roster_listed",
    "read_rosters_bulk",
    "roster_rows",
]

log = structlog.get_logger()

BULK_ROSTER = "local_enrolstream_get_course_enrolments"
#: The plugin's largest page (``limitnumber`` 0 means it).
MAX_PAGE = 10000
#: Courses per call: the recorded cost is ~0.27 ms per course asked for and
#: ~0.017 ms per row, against ~18 ms per call (``latency_rosters.json``).
COURSES_PER_CALL = 40
#: Fewer courses than this per call do not pay for the call's own cost.
MIN_COURSES_PER_CALL = 10
_PAGING_FIELDS = 2  # limitfrom, limitnumber
Record = dict[str, object]


class BulkRosterReads(Protocol):
    """The one call the bulk path needs (``connectors.moodle.reads.MoodleReads``)."""

    max_input_vars: int

    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call."""
        ...


def bulk_roster_listed(site_info: Mapping[str, object]) -> bool:
    """Whether ``core_webservice_get_site_info`` lists the bulk read in the token's service.

    Recorded: not listed on a site whose plugin predates it nor while the
    function is not in the service (``bulkroster_site_info_without``), listed
    once it is (``bulkroster_site_info_with``).
    """
    functions = site_info.get("functions")
    if not isinstance(functions, list):
        return False
    return any(isinstance(f, dict) and f.get("name") == BULK_ROSTER for f in functions)


def _ids(value: object) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise MoodleBadResponse(f"{BULK_ROSTER}: expected a list of ids")
    return frozenset(value)


def roster_rows(
    answer: object,
) -> tuple[list[tuple[int, RosterEntry]], dict[int, MoodleError]]:
    """One answer's (course id, entry) rows and its warnings as typed errors by course.

    A warning becomes the error the same code would raise as an exception
    (``invalidcourseid`` is ``MoodleNotFound``, ``nopermissions`` a
    ``MoodleRejected``), so callers treat an unreadable course as they treat a
    core listing that failed.
    """
    if not isinstance(answer, dict):
        raise MoodleBadResponse(f"{BULK_ROSTER}: expected an object")
    rows, warnings = answer.get("enrolments"), answer.get("warnings", [])
    if not isinstance(rows, list) or not isinstance(warnings, list):
        raise MoodleBadResponse(f"{BULK_ROSTER}: expected enrolments and warnings")
    entries: list[tuple[int, RosterEntry]] = []
    for row in rows:
        if not isinstance(row, dict):
            raise MoodleBadResponse(f"{BULK_ROSTER}: expected rows of objects")
        try:
            courseid, userid = int(row["courseid"]), int(row["userid"])
            active = row["active"]
        except (KeyError, TypeError, ValueError) as exc:
            raise MoodleBadResponse(f"{BULK_ROSTER}: a row lacks its ids") from exc
        entries.append(
            (
                courseid,
                RosterEntry(
                    userid=userid,
                    idnumber=str(row.get("idnumber") or ""),
                    username=str(row.get("username") or ""),
                    roleids=_ids(row.get("roleids", [])),
                    status="active" if active is True else "inactive",
                    fullname=str(row.get("fullname") or ""),
                    groupids=_ids(row.get("groupids", [])),
                ),
            )
        )
    refused: dict[int, MoodleError] = {}
    for warning in warnings:
        if isinstance(warning, dict) and isinstance(warning.get("itemid"), int):
            body = {
                "exception": "",
                "errorcode": warning.get("warningcode", ""),
                "message": warning.get("message", ""),
            }
            refused[int(warning["itemid"])] = classify_moodle_error(
                body, function=BULK_ROSTER
            )
    return entries, refused


async def read_bulk(
    client: BulkRosterReads, course_ids: Sequence[int], *, page_size: int = MAX_PAGE
) -> tuple[dict[int, dict[int, RosterEntry]], dict[int, MoodleError]]:
    """The rosters of ``course_ids`` (one call per page), and the courses refused."""
    rosters: dict[int, dict[int, RosterEntry]] = {c: {} for c in course_ids}
    refused: dict[int, MoodleError] = {}
    limitfrom = 0
    while True:
        params = {
            "courseids": list(course_ids),
            "limitfrom": limitfrom,
            "limitnumber": page_size,
        }
        entries, refused = roster_rows(await client.call(BULK_ROSTER, params))
        for courseid, entry in entries:
            rosters.setdefault(courseid, {})[entry.userid] = entry
        if len(entries) < page_size:
            break
        limitfrom += page_size
    for courseid in refused:
        rosters.pop(courseid, None)
    return rosters, refused


async def read_rosters_bulk(
    client: BulkRosterReads,
    course_ids: Iterable[int],
    *,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
    attempts: int = 1,
    retry_delay_s: float = 1.0,
    failed: dict[int, str] | None = None,
    page_size: int = MAX_PAGE,
) -> dict[int, dict[int, RosterEntry]]:
    """Rosters of many courses, ``COURSES_PER_CALL`` per call, ``concurrency`` calls at once.

    As ``connectors.moodle.rosters.read_rosters``: a call failing with a
    retriable error is sent again (``attempts`` in all, ``retry_delay_s``
    apart, doubling); without ``failed`` the first error that remains is
    raised, with it each course not read is recorded there with the reason (a
    course the plugin warned about, or every course of a call that failed), and
    only a refused token (``MoodleAuthError``) is raised. ``progress`` hears of
    each call's courses.
    """
    courses = list(dict.fromkeys(course_ids))
    budget = min(
        COURSES_PER_CALL, client.max_input_vars - ROUTING_FIELDS - _PAGING_FIELDS
    )
    chunks = balanced_chunks(
        courses, budget, lanes=concurrency, min_items=MIN_COURSES_PER_CALL
    )
    gate = asyncio.Semaphore(concurrency)
    result: dict[int, dict[int, RosterEntry]] = {}

    def not_read(courseid: int, exc: MoodleError) -> None:
        if failed is None:
            raise exc
        failed[courseid] = f"{type(exc).__name__}: {exc}"
        log.warning("roster_not_read", courseid=courseid, error=str(exc))

    async def one(chunk: Sequence[int]) -> None:
        delay = retry_delay_s
        for attempt in range(1, attempts + 1):
            try:
                async with gate:
                    rosters, refused = await read_bulk(
                        client, chunk, page_size=page_size
                    )
            except MoodleAuthError:
                raise
            except MoodleError as exc:
                if exc.retriable and attempt < attempts:
                    log.warning(
                        "roster_read_retry",
                        courses=len(chunk),
                        attempt=attempt,
                        error=str(exc),
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                for courseid in chunk:
                    not_read(courseid, exc)
                break
            result.update(rosters)
            for courseid, error in refused.items():
                not_read(courseid, error)
            break
        if progress is not None:
            progress(len(chunk))

    await run_all(one(chunk) for chunk in chunks)
    return result
