"""Start-up checks against Moodle: is it there, what does it offer, are the courses right.

``moodle_ready`` asks ``core_webservice_get_site_info`` (waiting while Moodle is
down) whether the companion plugin's function is in the token's service, and
refuses ``drop_action = "suspend"`` without it. ``preflight`` looks every mapped
course up, so a missing course or a disabled manual instance is named at start-up
instead of through dead letters; ``check_against_moodle`` is its pure core,
shared with ``mapping validate --against-moodle``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connectors.moodle.actions import status_function_listed
from connectors.moodle.errors import MoodleError
from connectors.moodle.reads import has_enabled_manual_instance
from consumers.errors import StartupRefused
from consumers.tasks import run_all

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from connectors.moodle.reads import MoodleReads
    from consumers.mapping import MappingSet, MoodleCourse

__all__ = [
    "SUSPEND_NEEDS_PLUGIN",
    "MoodleCheckProblem",
    "check_against_moodle",
    "check_courses",
    "moodle_ready",
    "preflight",
]

SUSPEND_NEEDS_PLUGIN = (
    'consumer.drop_action = "suspend" needs the companion Moodle plugin\'s function '
    "local_enrolstream_set_enrolment_status in the token's web service, and "
    "core_webservice_get_site_info does not list it: install moodle/local_enrolstream "
    "on the Moodle site and add the function to the service (see "
    'moodle/local_enrolstream/README.md), or set consumer.drop_action to "remove_role" '
    '(the default) or "unenrol". Suspending through enrol_manual_enrol_users would '
    "send every dropped student the course welcome message."
)


log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class MoodleCheckProblem:
    """A mapped course Moodle disagrees with."""

    course: MoodleCourse
    file: Path
    problem: str

    def __str__(self) -> str:
        """``file: 'shortname': problem``, like a ``MappingError``."""
        return f"{self.file}: {self.course.shortname!r}: {self.problem}"


async def check_against_moodle(
    mapping: MappingSet,
    fetch_course_by_id: Callable[[int], Awaitable[Mapping[str, object] | None]],
) -> list[MoodleCheckProblem]:
    """Every mapped course exists in Moodle with that id and shortname, with an
    enabled manual enrolment instance; the problems, in file order.

    ``fetch_course_by_id`` returns the ``core_course_get_courses_by_field``
    record, or None when there is no such course; its errors propagate. The
    fetches run concurrently; bound them in the fetcher (the client does).
    """
    entries = mapping.entries()

    async def fetch(course_id: int) -> Mapping[str, object] | None:
        return await fetch_course_by_id(course_id)

    records = await run_all(fetch(entry.course.id) for entry in entries)
    problems: list[MoodleCheckProblem] = []
    for entry, record in zip(entries, records, strict=True):
        course = entry.course
        if record is None:
            problem = f"Moodle has no course with id {course.id}"
        elif record.get("shortname") != course.shortname:
            shortname = record.get("shortname")
            problem = f"Moodle course {course.id} is {shortname!r}, not this shortname"
        elif not has_enabled_manual_instance(record):
            problem = (
                f"Moodle course {course.id} has no enabled manual enrolment "
                "instance (enrol calls would fail with wsnoinstance)"
            )
        else:
            continue
        problems.append(MoodleCheckProblem(course, entry.file, problem))
    return problems


async def check_courses(
    mapping: MappingSet, moodle: MoodleReads
) -> list[MoodleCheckProblem]:
    """``check_against_moodle`` through the client (``get_courses_by_field`` by id).

    Moodle's errors propagate (typed).
    """

    async def fetch(course_id: int) -> Mapping[str, object] | None:
        courses = await moodle.get_courses_by_field("id", str(course_id))
        return courses[0] if courses else None

    return await check_against_moodle(mapping, fetch)


async def preflight(
    mapping: MappingSet, moodle: MoodleReads
) -> list[MoodleCheckProblem]:
    """Look every mapped course up in Moodle; log each problem and return them.

    A course Moodle does not have, or whose manual instance is disabled, is an
    error line naming the mapping file (its enrolments would be dead-lettered).
    Moodle not answering is a warning: the apply loop waits for it anyway.
    """
    try:
        problems = await check_courses(mapping, moodle)
    except MoodleError as exc:
        log.warning("preflight_skipped", error=str(exc), hint="Moodle not checked now")
        return []
    for problem in problems:
        log.error(
            "mapped_course_problem",
            file=str(problem.file),
            shortname=problem.course.shortname,
            problem=problem.problem,
        )
    return problems


async def moodle_ready(
    moodle: MoodleReads,
    *,
    drop_action: str,
    stop: asyncio.Event | None = None,
    max_backoff_s: float = 30.0,
    attempts: int | None = None,
    first_backoff_s: float = 0.5,
) -> str | None:
    """Ask Moodle what it offers (``core_webservice_get_site_info``); wait while it is down.

    Returns the companion plugin's status function when the token's service has
    it (drops and reactivations then change the status without a welcome), else
    None. Raises ``StartupRefused`` for ``drop_action = "suspend"`` without it.
    Moodle unavailable is retried with backoff, one log line per attempt, until
    it answers, ``stop`` is set (then None, and the caller exits) or
    ``attempts`` are used up (the last error is raised); a refused token raises.
    """
    delay, attempt = first_backoff_s, 0
    while True:
        attempt += 1
        try:
            info = await moodle.get_site_info()
            break
        except MoodleError as exc:
            if not exc.retriable or (attempts is not None and attempt >= attempts):
                raise
            log.warning(
                "moodle_unreachable",
                attempt=attempt,
                error=str(exc),
                retry_in_s=delay,
                hint="waiting for Moodle before reading any event",
            )
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                if stop.is_set():
                    return None
            delay = min(max_backoff_s, delay * 2)
    status_function = status_function_listed(info)
    log.info("moodle_status_function", present=status_function is not None)
    if drop_action == "suspend" and status_function is None:
        raise StartupRefused(SUSPEND_NEEDS_PLUGIN)
    return status_function
