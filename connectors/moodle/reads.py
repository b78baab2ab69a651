"""Moodle look-ups and creations, built on one checked ``call`` (no aiohttp here).

What the recorded Moodle 5.1 answers teach, and this module respects:
* ``core_user_get_users_by_field`` silently omits unknown values, matches
  ``idnumber`` case-sensitively, may return TWO users for one idnumber, and
  rejects the whole request if a ``username`` value has an uppercase letter;
* usernames must be lowercase when creating users;
* ``core_enrol_get_course_enrolment_methods`` never lists manual instances: use
  ``get_courses_by_field`` and look for ``"manual"`` in ``enrollmentmethods``
  (it lists *enabled* instances only);
* ``core_enrol_get_enrolled_users`` includes suspended and future-start users
  unless ``onlyactive``; it is paged with ``limitfrom``/``limitnumber``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Literal

from connectors.moodle.batch import balanced_chunks
from connectors.moodle.bulk_rosters import bulk_roster_listed, read_rosters_bulk
from connectors.moodle.errors import MoodleAuthError, MoodleBadResponse, MoodleError
from connectors.moodle.form import ROUTING_FIELDS, chunk_by_fields, encode_params
from connectors.moodle.rosters import read_holdings, read_rosters
from consumers.identity import UserField
from consumers.tasks import run_all

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from consumers.decisions import Held
    from consumers.ports import RosterEntry

__all__ = ["CourseField", "MoodleReads", "has_enabled_manual_instance"]

CourseField = Literal["id", "ids", "shortname", "idnumber", "category"]
Record = dict[str, object]


def has_enabled_manual_instance(course: Mapping[str, object]) -> bool:
    """True when a ``get_courses_by_field`` record has an enabled manual instance."""
    methods = course.get("enrollmentmethods")
    return isinstance(methods, list) and "manual" in methods


def _records(function: str, answer: object) -> list[Record]:
    if not isinstance(answer, list) or not all(
        isinstance(item, dict) for item in answer
    ):
        raise MoodleBadResponse(f"{function}: expected a list of objects")
    return [dict(item) for item in answer]


class MoodleReads(ABC):
    """Read and create calls; subclasses provide ``call`` and ``max_input_vars``."""

    max_input_vars: int
    #: Requests the subclass lets run at once; look-ups are spread over them.
    concurrency: int = 1
    #: Whether rosters are read through the companion plugin's bulk read
    #: (``connectors.moodle.bulk_rosters``): None until site_info was asked.
    bulk_rosters: bool | None = None

    @abstractmethod
    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One checked web-service call (see ``MoodleClient.call``)."""

    async def holdings(
        self, pairs: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], Held]:
        """What Moodle holds for each (course, user): one roster read per course.

        Pairs without an enrolment are absent. See ``connectors.moodle.rosters``.
        """
        return await read_holdings(self, pairs, concurrency=self.concurrency)

    async def read_rosters(
        self,
        course_ids: Iterable[int],
        *,
        progress: Callable[[int], None] | None = None,
        attempts: int = 1,
        retry_delay_s: float = 1.0,
        failed: dict[int, str] | None = None,
    ) -> dict[int, dict[int, RosterEntry]]:
        """Every course's roster, ``concurrency`` requests at once.

        Through the companion plugin's bulk read, many courses per call, when
        ``core_webservice_get_site_info`` lists it in the token's service
        (``bulk_rosters``, asked once); otherwise two core listings per course
        (``rosters.read_rosters``). Both give the same rosters (recorded,
        sequence 6) and have the same contract. site_info not answering after
        ``attempts`` is what a course not read is (see ``read_rosters``).
        """
        course_ids = list(course_ids)
        try:
            bulk = await self._uses_bulk_rosters(attempts, retry_delay_s)
        except MoodleError as exc:
            if failed is None or isinstance(exc, MoodleAuthError):
                raise
            failed.update(dict.fromkeys(course_ids, f"{type(exc).__name__}: {exc}"))
            return {}
        if bulk:
            return await read_rosters_bulk(
                self,
                course_ids,
                concurrency=self.concurrency,
                progress=progress,
                attempts=attempts,
                retry_delay_s=retry_delay_s,
                failed=failed,
            )
        return await read_rosters(
            self,
            course_ids,
            concurrency=self.concurrency,
            progress=progress,
            attempts=attempts,
            retry_delay_s=retry_delay_s,
            failed=failed,
        )

    async def _uses_bulk_rosters(self, attempts: int, retry_delay_s: float) -> bool:
        """``bulk_rosters``, from site_info the first time (retried as a roster read)."""
        delay = retry_delay_s
        for attempt in range(1, attempts + 1):
            if self.bulk_rosters is not None:
                break
            try:
                self.bulk_rosters = bulk_roster_listed(await self.get_site_info())
            except MoodleError as exc:
                if not exc.retriable or attempt == attempts:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        return bool(self.bulk_rosters)

    async def get_site_info(self) -> Record:
        """``core_webservice_get_site_info``: release, token owner id, functions."""
        function = "core_webservice_get_site_info"
        answer = await self.call(function, {})
        if not isinstance(answer, dict):
            raise MoodleBadResponse(f"{function}: expected an object")
        return dict(answer)

    async def get_users_by_field(
        self, field: UserField, values: Sequence[str]
    ) -> list[Record]:
        """Users whose ``field`` equals one of ``values`` (exact, case-sensitive).

        Unknown values are simply absent, and one value may match several users.
        Values are de-duplicated and spread over ``concurrency`` concurrent requests
        (each within ``max_input_vars``; results in input order). For ``username``, values with an
        uppercase letter are not sent (no username has one, and Moodle would
        reject the whole request); empty values are never sent.
        """
        function = "core_user_get_users_by_field"
        wanted = [
            value
            for value in dict.fromkeys(values)
            if value and not (field == "username" and value != value.lower())
        ]
        budget = self.max_input_vars - ROUTING_FIELDS - 1  # the ``field`` field
        chunks = balanced_chunks(wanted, budget, lanes=self.concurrency, min_items=50)

        async def lookup(chunk: Sequence[str]) -> list[Record]:
            answer = await self.call(function, {"field": field, "values": list(chunk)})
            return _records(function, answer)

        return [
            user for part in await run_all(lookup(c) for c in chunks) for user in part
        ]

    async def get_courses_by_field(
        self, field: CourseField, value: str | int
    ) -> list[Record]:
        """Courses whose ``field`` equals ``value`` (``[]`` if none), full records.

        See ``has_enabled_manual_instance`` for the manual-instance pre-flight check.
        """
        function = "core_course_get_courses_by_field"
        answer = await self.call(function, {"field": field, "value": value})
        courses = answer.get("courses") if isinstance(answer, dict) else None
        return _records(function, courses)

    async def get_enrolled_users(
        self,
        courseid: int,
        *,
        userfields: Sequence[str] = ("id", "idnumber", "username"),
        page_size: int = 500,
        onlyactive: bool = False,
        onlysuspended: bool = False,
    ) -> list[Record]:
        """Everyone enrolled in the course by any method, paged until a short page.

        Pages are sorted by user id; a page adding no new user ends the listing
        (guards against a server that ignores ``limitnumber``). ``onlyactive`` and
        ``onlysuspended`` exclude each other (Moodle answers ``codingerror``).
        """
        if onlyactive and onlysuspended:
            raise ValueError("onlyactive and onlysuspended exclude each other")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        function = "core_enrol_get_enrolled_users"
        options: list[dict[str, object]] = [
            {"name": "userfields", "value": ",".join(userfields)},
            {"name": "sortby", "value": "id"},
        ]
        if onlyactive:
            options.append({"name": "onlyactive", "value": True})
        if onlysuspended:
            options.append({"name": "onlysuspended", "value": True})
        by_id: dict[object, Record] = {}
        limitfrom = 0
        while True:
            paging = [
                {"name": "limitfrom", "value": limitfrom},
                {"name": "limitnumber", "value": page_size},
            ]
            params = {"courseid": courseid, "options": options + paging}
            page = _records(function, await self.call(function, params))
            before = len(by_id)
            by_id.update((user.get("id"), user) for user in page)
            if len(page) < page_size or len(by_id) == before:
                return list(by_id.values())
            limitfrom += page_size

    async def create_users(self, users: Sequence[Mapping[str, object]]) -> list[Record]:
        """``core_user_create_users``: ``[{id, username}]`` in request order.

        Raises ``ValueError`` before sending if a username is not lowercase.
        Each request is one Moodle transaction: one bad user rolls back its
        request and raises; users of earlier requests stay created (requests are
        sent one after another).
        """
        for user in users:
            username = user.get("username")
            if not isinstance(username, str) or username != username.lower():
                raise ValueError("Moodle usernames must be lowercase strings")
        return await self._create("core_user_create_users", "users", users)

    async def create_courses(
        self, courses: Sequence[Mapping[str, object]]
    ) -> list[Record]:
        """``core_course_create_courses``: ``[{id, shortname}]`` in request order.

        A new course gets an enabled manual instance. Same transaction rule as
        ``create_users``.
        """
        return await self._create("core_course_create_courses", "courses", courses)

    async def _create(
        self, function: str, key: str, items: Sequence[Mapping[str, object]]
    ) -> list[Record]:
        sizes = [len(encode_params({key: [item]})) for item in items]
        created: list[Record] = []
        budget = self.max_input_vars - ROUTING_FIELDS
        for chunk in chunk_by_fields(items, sizes, budget):
            created.extend(_records(function, await self.call(function, {key: chunk})))
        return created
