"""A small real HTTP server that answers like Moodle 5.1's REST endpoint, for client tests.

It records every request (the raw form fields, before PHP's ``max_input_vars``
cut), answers errors with HTTP 200 and Moodle's error object, runs enrol/unenrol
batches all-or-nothing (the first bad row rolls back the request), and can be
told to misbehave on the next requests: ``Fault.HTTP_503``, ``DROP`` (close the
connection), ``HANG`` (never answer), ``HTML`` (a 200 page that is not JSON),
``HTTP_404``, ``ECHO`` (an error whose debuginfo echoes the raw request,
as a debug page might), ``REDIRECT`` (``redirect_status`` to ``redirect_to``).
Shapes and error codes follow tests/data/moodle-golden.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

REST_PATH = "/webservice/rest/server.php"
_BRACKETS = re.compile(r"^(\w+)\[(\d+)\](?:\[(\w+)\])?$")
ENROL_KEYS = {"roleid", "userid", "courseid", "timestart", "timeend", "suspend"}


class Fault(enum.Enum):
    """A misbehaviour for one request."""

    HTTP_503 = "503"
    DROP = "drop"
    HANG = "hang"
    HTML = "html"
    HTTP_404 = "404"
    ECHO = "echo"
    REDIRECT = "redirect"


@dataclass
class Recorded:
    """One request as it arrived on the wire."""

    fields: list[tuple[str, str]]

    @property
    def function(self) -> str:
        """The wsfunction asked for."""
        return dict(self.fields).get("wsfunction", "")


class MoodleError(Exception):
    """Raised inside a handler; becomes the HTTP-200 error body."""

    def __init__(self, exception: str, errorcode: str, message: str) -> None:
        super().__init__(errorcode)
        self.body = {"exception": exception, "errorcode": errorcode, "message": message}


def _missing() -> MoodleError:
    return MoodleError(
        "dml_missing_record_exception",
        "invalidrecordunknown",
        "Can't find data record in database.",
    )


def _invalid(message: str = "Invalid parameter value detected") -> MoodleError:
    return MoodleError(
        "core\\exception\\invalid_parameter_exception", "invalidparameter", message
    )


def _moodle(errorcode: str, message: str) -> MoodleError:
    return MoodleError("core\\exception\\moodle_exception", errorcode, message)


def _items(fields: list[tuple[str, str]], name: str) -> list[dict[str, str]]:
    """``name[i][key]=v`` (or ``name[i]=v`` under key "") grouped by index in order."""
    items: dict[int, dict[str, str]] = {}
    for key, value in fields:
        match = _BRACKETS.match(key)
        if match and match.group(1) == name:
            items.setdefault(int(match.group(2)), {})[match.group(3) or ""] = value
    return [items[index] for index in sorted(items)]


def _int(value: str | None) -> int:
    if value is None or not re.fullmatch(r"-?\d+", value):
        raise _invalid()
    return int(value)


@dataclass
class MoodleStub:
    """The server's state and behaviour; tests set users, courses and faults."""

    token: str
    max_input_vars: int = 1000
    assignable_roles: set[int] = field(default_factory=lambda: {3, 4, 5})
    users: dict[int, dict[str, object]] = field(default_factory=dict)
    courses: dict[int, dict[str, object]] = field(default_factory=dict)
    enrolments: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    hold_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    redirect_to: str = ""
    redirect_status: int = 307
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def add_user(self, userid: int, idnumber: str, username: str | None = None) -> None:
        """A user with the given idnumber (username defaults to a lowercase form)."""
        name = username or f"user{userid}"
        self.users[userid] = {"id": userid, "idnumber": idnumber, "username": name}

    def add_course(self, courseid: int, shortname: str, *, manual: bool = True) -> None:
        """A course; ``manual=False`` means no enabled manual instance."""
        self.courses[courseid] = {
            "id": courseid,
            "shortname": shortname,
            "manual": manual,
        }

    def release(self) -> None:
        """Let every held or hanging handler finish (called at teardown)."""
        self._release.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The REST endpoint."""
        fields = parse_qsl((await request.read()).decode(), keep_blank_values=True)
        self.requests.append(Recorded(fields))
        fault = self.faults.popleft() if self.faults else None
        if fault is Fault.DROP:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if fault is Fault.HANG:
            await self._release.wait()
        canned = self._canned(fault, fields)
        if canned is not None:
            return canned
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), self.hold_s)
            body = self._answer(fields[: self.max_input_vars])  # PHP drops the rest
        finally:
            self.in_flight -= 1
        return web.Response(text=json.dumps(body), content_type="application/json")

    def _canned(
        self, fault: Fault | None, fields: list[tuple[str, str]]
    ) -> web.Response | None:
        """The answer a misbehaving fault gives instead of Moodle's, if any."""
        if fault is Fault.HTTP_503:
            return web.Response(status=503, headers={"Retry-After": "7"}, text="busy")
        if fault is Fault.HTTP_404:
            return web.Response(status=404, text="<html>Not found</html>")
        if fault is Fault.ECHO:
            echo = {"exception": "moodle_exception", "errorcode": "echo"}
            echo |= {"message": "debug", "debuginfo": repr(fields)}
            return web.json_response(echo)
        if fault is Fault.REDIRECT:
            headers = {"Location": self.redirect_to}
            return web.Response(status=self.redirect_status, headers=headers)
        if fault is Fault.HTML:
            return web.Response(
                text="<html>Fatal error</html>", content_type="text/html"
            )
        return None

    def _answer(self, fields: list[tuple[str, str]]) -> object:
        params = dict(fields)
        if params.get("wstoken") != self.token:
            return _moodle("invalidtoken", "Invalid token - token not found").body
        handler = {
            "enrol_manual_enrol_users": self._enrol,
            "enrol_manual_unenrol_users": self._unenrol,
            "core_user_get_users_by_field": self._users_by_field,
            "core_enrol_get_enrolled_users": self._enrolled_users,
            "core_course_get_courses_by_field": self._courses_by_field,
            "core_webservice_get_site_info": self._site_info,
            "core_user_create_users": self._create_users,
            "core_course_create_courses": self._create_courses,
        }.get(params.get("wsfunction", ""))
        if handler is None:
            return MoodleError(
                "webservice_access_exception",
                "accessexception",
                "Access control exception",
            ).body
        try:
            return handler(fields)
        except MoodleError as error:
            return error.body

    def _course(self, courseid: int) -> dict[str, object]:
        if courseid not in self.courses:
            raise _invalid()
        return self.courses[courseid]

    def _enrol(self, fields: list[tuple[str, str]]) -> None:
        rows = _items(fields, "enrolments")
        if not rows:
            raise _invalid()
        staged = dict(self.enrolments)  # committed only if every row passes
        for row in rows:
            if not set(row) <= ENROL_KEYS:
                raise _invalid("Unexpected keys detected in parameter array.")
            userid, courseid = _int(row.get("userid")), _int(row.get("courseid"))
            roleid = _int(row.get("roleid"))
            course = self._course(courseid)
            if roleid not in self.assignable_roles:
                raise _moodle("wsusercannotassign", "You don't have the permission")
            if not course["manual"]:
                raise _moodle("wsnoinstance", "Manual enrolment plugin instance")
            if userid == 1:
                raise _moodle("guestsarenotallowed", "The guest user is not allowed")
            if userid not in self.users:
                raise _missing()
            staged[userid, courseid] = {
                "roleid": roleid,
                "suspend": _int(row.get("suspend", "0")),
                "timestart": _int(row.get("timestart", "0")),
                "timeend": _int(row.get("timeend", "0")),
            }
        self.enrolments = staged

    def _unenrol(self, fields: list[tuple[str, str]]) -> None:
        staged = dict(self.enrolments)
        for row in _items(fields, "enrolments"):
            userid, courseid = _int(row.get("userid")), _int(row.get("courseid"))
            if userid not in self.users or courseid not in self.courses:
                raise _missing()
            staged.pop((userid, courseid), None)
        self.enrolments = staged

    def _users_by_field(self, fields: list[tuple[str, str]]) -> list[dict[str, object]]:
        name = dict(fields).get("field", "")
        if name not in {"id", "idnumber", "username", "email"}:
            raise MoodleError(
                "core\\exception\\coding_exception", "codingerror", "invalid field"
            )
        values = [item[""] for item in _items(fields, "values")]
        if name == "username" and any(value != value.lower() for value in values):
            raise _invalid()
        return [u for u in self.users.values() if str(u.get(name)) in values]

    def _enrolled_users(self, fields: list[tuple[str, str]]) -> list[dict[str, object]]:
        courseid = _int(dict(fields).get("courseid"))
        if courseid not in self.courses:
            raise _missing()
        options = {o["name"]: o["value"] for o in _items(fields, "options")}
        wanted = options.get("userfields", "id").split(",")
        start, count = _int(options.get("limitfrom", "0")), options.get("limitnumber")
        ids = sorted(
            userid
            for (userid, course), row in self.enrolments.items()
            if course == courseid
            and not (options.get("onlyactive") == "1" and row["suspend"])
            and not (options.get("onlysuspended") == "1" and not row["suspend"])
        )
        page = ids[start:] if count is None else ids[start : start + _int(count)]
        users = [self.users[userid] for userid in page]
        return [{k: v for k, v in u.items() if k in wanted} for u in users]

    def _courses_by_field(self, fields: list[tuple[str, str]]) -> dict[str, object]:
        params = dict(fields)
        if params.get("field") not in {"id", "shortname"}:
            raise _invalid()
        found = [
            {
                "id": c["id"],
                "shortname": c["shortname"],
                "enrollmentmethods": ["manual"] if c["manual"] else [],
            }
            for c in self.courses.values()
            if str(c[params["field"]]) == params.get("value")
        ]
        return {"courses": found, "warnings": []}

    def _site_info(self, fields: list[tuple[str, str]]) -> dict[str, object]:
        del fields
        return {"sitename": "stub", "userid": 3, "release": "5.1+", "functions": []}

    def _create_users(self, fields: list[tuple[str, str]]) -> list[dict[str, object]]:
        created: list[dict[str, object]] = []
        staged = dict(self.users)
        for item in _items(fields, "users"):
            username = item.get("username", "")
            taken = any(u["username"] == username for u in staged.values())
            if username != username.lower() or taken:
                raise _invalid()
            userid = max(staged, default=3) + 1
            staged[userid] = {"id": userid, "idnumber": item.get("idnumber", "")}
            staged[userid]["username"] = username
            created.append({"id": userid, "username": username})
        self.users = staged
        return created

    def _create_courses(self, fields: list[tuple[str, str]]) -> list[dict[str, object]]:
        created: list[dict[str, object]] = []
        staged = dict(self.courses)
        for item in _items(fields, "courses"):
            shortname = item.get("shortname", "")
            if any(c["shortname"] == shortname for c in staged.values()):
                raise _moodle(
                    "shortnametaken", f"Short name is already used ({shortname})"
                )
            courseid = max(staged, default=1) + 1
            staged[courseid] = {"id": courseid, "shortname": shortname, "manual": True}
            created.append({"id": courseid, "shortname": shortname})
        self.courses = staged
        return created


async def start(stub: MoodleStub) -> web.AppRunner:
    """Serve ``stub`` on 127.0.0.1 at a free port and set ``stub.url``."""
    app = web.Application()
    app.router.add_post(REST_PATH, stub.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    stub.url = f"http://{host}:{port}"
    return runner
