"""MoodleClient over HTTP against the Moodle simulator (proven on recorded Moodle 5.1).

The simulator records each request as it arrived (``record_requests``) and
injects what proxies and failing servers do (``sim.faults``); the site is its
state, read back after each call.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from connectors.moodle.batch import EnrolRow, UnenrolRow
from connectors.moodle.client import (
    REST_PATH,
    MoodleClient,
    check_answer,
    sends_token_in_clear,
)
from connectors.moodle.errors import (
    MoodleAuthError,
    MoodleBadResponse,
    MoodleError,
    MoodleNoManualInstance,
    MoodleNotFound,
    MoodleRejected,
    MoodleUnavailable,
)
from connectors.moodle.reads import has_enabled_manual_instance
from consumers.identity import Ambiguous, Found, IdentityResolver, Missing
from sandbox.moodle_sim.faults import FaultPlan
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState, UserEnrolment

TOKEN = "0123456789abcdef-s3cret-token"  # noqa: S105 - a test fixture value
ENROL_OPTIONAL = ("suspend", "timestart", "timeend")
C1, C2, NOMANUAL = 2, 3, 4  # course ids; NOMANUAL has no manual instance
STUDENT = 5
ENROL = "enrol_manual_enrol_users"
# Moodle's error object from a debug handler that repeats the request it got,
# token included, as the client sent it (what redaction must catch).
ECHOED_ERROR = json.dumps(
    {
        "exception": "moodle_exception",
        "errorcode": "echo",
        "message": "debug",
        "debuginfo": f"wstoken={TOKEN}&wsfunction=core_webservice_get_site_info"
        "&moodlewsrestformat=json",
    }
)
# A proxy's page that shows the request back (HTML, so not Moodle's answer).
ECHOED_PAGE = f"<html><body>Bad request: wstoken={TOKEN}</body></html>"

#: Faults by name, each queued for the next request.
INJECT: dict[str, Callable[[FaultPlan], None]] = {
    "http_503": lambda faults: faults.fail_next(1, 503),
    "dropped": lambda faults: faults.drop_next(1),
    "dropped_after_commit": lambda faults: faults.drop_next(1, after=True),
    "hang": lambda faults: faults.hang_next(1),
    "php_fatal_page": lambda faults: faults.php_fatal_next(1),
    "terminated_page": lambda faults: faults.terminate_next(1),
    "http_404": lambda faults: faults.page_next(1, "<html>Not found</html>", 404),
    "echoed_error": lambda faults: faults.page_next(
        1, ECHOED_ERROR, content_type="application/json"
    ),
    "echoed_page": lambda faults: faults.page_next(1, ECHOED_PAGE, 400),
}


@pytest.fixture(name="sim")
async def _sim() -> AsyncIterator[MoodleSimulator]:
    """A site with users 4..43 (idnumber P0000000NN) and courses 2, 3, 4, recording."""
    state = MoodleState()
    for userid in range(4, 44):
        assert state.add_user(f"p{userid:09d}", idnumber=f"P{userid:09d}") == userid
    assert state.add_course("C1") == C1
    assert state.add_course("C2") == C2
    assert state.add_course("NOMANUAL", manual="absent") == NOMANUAL
    async with MoodleSimulator(state, token=TOKEN, record_requests=True) as sim:
        yield sim


def client_for(sim: MoodleSimulator, **options: float) -> MoodleClient:
    """A client for the simulated site with the right token."""
    return MoodleClient(sim.url, SecretStr(TOKEN), **options)  # type: ignore[arg-type]


def enrolled(sim: MoodleSimulator) -> set[tuple[int, int]]:
    """Every (userid, courseid) the site holds a manual enrolment for."""
    state = sim.state
    return {
        (row.userid, course.id)
        for course in state.courses()
        for row in state.enrolments(course.id)
    }


def add_courses(sim: MoodleSimulator, count: int) -> list[int]:
    """``count`` more courses with a manual instance; their ids."""
    return [sim.state.add_course(f"K{n}") for n in range(count)]


@pytest.fixture(name="free_port")
def _free_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(name="elsewhere")
async def _elsewhere() -> AsyncIterator[MoodleSimulator]:
    """A second site on its own port that accepts the token: a redirect's bait."""
    async with MoodleSimulator(
        MoodleState(), token=TOKEN, record_requests=True
    ) as other:
        yield other


class TestWireFormat:
    """What goes on the wire: routing first, every enrol key, bounded field counts."""

    async def test_routing_fields_first(self, sim: MoodleSimulator) -> None:
        """wstoken, wsfunction and moodlewsrestformat=json lead every request."""
        async with client_for(sim) as moodle:
            await moodle.enrol([EnrolRow(4, C1, STUDENT)])
            await moodle.get_site_info()
        assert len(sim.requests) == 2
        for request in sim.requests:
            assert [key for key, _ in request.fields[:3]] == [
                "wstoken",
                "wsfunction",
                "moodlewsrestformat",
            ]
            assert request.fields[2] == ("moodlewsrestformat", "json")

    async def test_enrol_always_sends_suspend_and_times(
        self, sim: MoodleSimulator
    ) -> None:
        """Defaults are sent explicitly; given values arrive as integers and 0/1."""
        async with client_for(sim) as moodle:
            await moodle.enrol(
                [EnrolRow(4, C1, STUDENT), EnrolRow(5, C1, STUDENT, True, 100, 200)]
            )
        sent = dict(sim.requests[0].fields)
        assert {key: sent[f"enrolments[0][{key}]"] for key in ENROL_OPTIONAL} == {
            "suspend": "0",
            "timestart": "0",
            "timeend": "0",
        }
        assert {key: sent[f"enrolments[1][{key}]"] for key in ENROL_OPTIONAL} == {
            "suspend": "1",
            "timestart": "100",
            "timeend": "200",
        }
        assert sim.state.enrolment(C1, 5) == UserEnrolment(1, 100, 200)
        assert sim.state.roles_of(C1, 5) == {STUDENT}

    async def test_enrol_chunks_balanced_over_concurrent_requests(
        self, sim: MoodleSimulator
    ) -> None:
        """167 rows at concurrency 4 go as 4 requests of 41-42 rows, not 166 + 1."""
        courses = add_courses(sim, 5)
        rows = [EnrolRow(4 + i % 40, courses[i // 40], STUDENT) for i in range(167)]
        async with client_for(sim, concurrency=4) as moodle:
            result = await moodle.enrol(rows)
        assert sorted(sim.rows_per_call(ENROL)) == [41, 42, 42, 42]
        assert sorted((len(r.fields) - 3) // 6 for r in sim.requests) == [
            41,
            42,
            42,
            42,
        ]
        assert result.applied == rows

    @pytest.mark.parametrize(
        ("max_input_vars", "count", "requests"),
        [(1000, 40, 1), (1000, 166, 1), (1000, 167, 2), (63, 40, 4), (21, 40, 14)],
    )
    async def test_enrol_within_max_input_vars(
        self, sim: MoodleSimulator, max_input_vars: int, count: int, requests: int
    ) -> None:
        """No request exceeds max_input_vars, so PHP truncates nothing: all rows land."""
        sim.max_input_vars = max_input_vars
        courses = add_courses(sim, 5)
        rows = [EnrolRow(4 + i % 40, courses[i // 40], STUDENT) for i in range(count)]
        async with client_for(
            sim, max_input_vars=max_input_vars, concurrency=1
        ) as moodle:
            result = await moodle.enrol(rows)
        assert len(sim.requests) == requests
        assert max(len(r.fields) for r in sim.requests) <= max_input_vars
        assert result.applied == rows
        assert len(enrolled(sim)) == len(rows)

    async def test_site_limit_below_setting_loses_rows(
        self, sim: MoodleSimulator
    ) -> None:
        """Why the setting must match the site: PHP drops whole rows without error."""
        # PHP keeps max_input_vars + 1 fields (recorded: 5001 of 5100 at 5000),
        # so 62 keeps 63: the 3 routing fields and exactly 10 rows.
        sim.max_input_vars = 62
        rows = [EnrolRow(u, C1, STUDENT) for u in range(4, 44)]
        async with client_for(sim, max_input_vars=1000) as moodle:
            result = await moodle.enrol(rows)
        assert len(result.applied) == 40
        assert len(enrolled(sim)) == 10

    async def test_unenrol_within_max_input_vars(self, sim: MoodleSimulator) -> None:
        """Unenrol rows cost 2 fields: 40 rows at max_input_vars=23 need 4 requests."""
        sim.max_input_vars = 23
        async with client_for(sim, max_input_vars=23) as moodle:
            await moodle.enrol([EnrolRow(u, C1, STUDENT) for u in range(4, 44)])
            sim.requests.clear()
            result = await moodle.unenrol([UnenrolRow(u, C1) for u in range(4, 44)])
        assert len(sim.requests) == 4
        assert max(len(r.fields) for r in sim.requests) <= 23
        assert len(result.applied) == 40
        assert enrolled(sim) == set()

    async def test_call_refuses_oversized_request(self, sim: MoodleSimulator) -> None:
        """A raw call that would be truncated by PHP is refused before sending."""
        async with client_for(sim, max_input_vars=10) as moodle:
            with pytest.raises(ValueError, match="max_input_vars"):
                await moodle.call("core_user_get_users_by_field", {"values": ["a"] * 8})
        assert sim.requests == []


class TestBisection:
    """A rejected request rolls back; splitting it lands the good rows."""

    async def test_good_rows_land_bad_rows_reported(self, sim: MoodleSimulator) -> None:
        """An unknown user and a course without manual instance are the only rejects."""
        rows = [EnrolRow(u, C1, STUDENT) for u in range(4, 14)]
        rows[3] = EnrolRow(999999, C1, STUDENT)
        rows[7] = EnrolRow(11, NOMANUAL, STUDENT)
        async with client_for(sim) as moodle:
            result = await moodle.enrol(rows)
        assert result.applied == [r for i, r in enumerate(rows) if i not in {3, 7}]
        assert [(row, type(error)) for row, error in result.rejected] == [
            (rows[3], MoodleNotFound),
            (rows[7], MoodleNoManualInstance),
        ]
        assert enrolled(sim) == {(r.userid, r.courseid) for r in result.applied}
        assert sim.requests[0].function == ENROL
        assert len(dict(sim.requests[0].fields)) == 3 + 6 * 10

    async def test_unenrol_bisects(self, sim: MoodleSimulator) -> None:
        """Unenrol of an unknown user rejects that row only."""
        async with client_for(sim) as moodle:
            await moodle.enrol([EnrolRow(4, C1, STUDENT), EnrolRow(5, C1, STUDENT)])
            result = await moodle.unenrol(
                [UnenrolRow(4, C1), UnenrolRow(999999, C1), UnenrolRow(5, C1)]
            )
        assert result.applied == [UnenrolRow(4, C1), UnenrolRow(5, C1)]
        assert [row for row, _ in result.rejected] == [UnenrolRow(999999, C1)]
        assert enrolled(sim) == set()

    @pytest.mark.parametrize(
        ("fault", "applied_by_moodle"),
        [("http_503", False), ("dropped_after_commit", True)],
    )
    async def test_unavailable_mid_batch_is_unknown(
        self, sim: MoodleSimulator, fault: str, *, applied_by_moodle: bool
    ) -> None:
        """An unanswered request: its rows are unknown, never reported applied.

        Whether or not Moodle committed them (a 503 before, a connection
        dropped after the commit).
        """
        INJECT[fault](sim.faults)
        async with client_for(sim) as moodle:
            result = await moodle.enrol([EnrolRow(4, C1, STUDENT)])
        assert [row for row, _ in result.unknown] == [EnrolRow(4, C1, STUDENT)]
        assert isinstance(result.unknown[0][1], MoodleUnavailable)
        assert result.applied == []
        assert enrolled(sim) == ({(4, C1)} if applied_by_moodle else set())


class TestFailures:
    """Transport and protocol failures become the right typed errors."""

    @pytest.mark.parametrize(
        ("status", "body"),
        [
            (200, "Terminated: 15"),  # Moodle's shutdown handler while its server stops
            (200, "<html><body><b>Fatal error</b>: Allowed memory size</body></html>"),
            (502, "<html><body>Bad Gateway</body></html>"),
            (404, "<html><body>Not Found</body></html>"),
            (503, '{"error": "maintenance"}'),
        ],
    )
    def test_anything_but_moodles_json_is_unavailable(
        self, status: int, body: str
    ) -> None:
        """Not Moodle's JSON answer, whatever its status: retriable, outcome unknown."""
        with pytest.raises(MoodleUnavailable) as caught:
            check_answer("enrol_manual_enrol_users", status, None, body)
        assert caught.value.retriable
        assert f"HTTP {status}" in str(caught.value)

    @pytest.mark.parametrize(
        ("fault", "expected"),
        [
            ("http_503", MoodleUnavailable),
            ("dropped", MoodleUnavailable),
            ("hang", MoodleUnavailable),
            ("php_fatal_page", MoodleUnavailable),
            ("terminated_page", MoodleUnavailable),
            ("http_404", MoodleUnavailable),
            ("echoed_error", MoodleRejected),
        ],
    )
    async def test_fault(
        self, sim: MoodleSimulator, fault: str, expected: type[MoodleError]
    ) -> None:
        """Each misbehaviour raises exactly this error type."""
        INJECT[fault](sim.faults)
        async with client_for(sim, request_timeout_s=0.3) as moodle:
            with pytest.raises(MoodleError) as caught:
                await moodle.get_site_info()
        assert type(caught.value) is expected

    async def test_503_carries_retry_after(self, sim: MoodleSimulator) -> None:
        """Retry-After seconds are passed on to the caller."""
        sim.faults.fail_next(1, 503, retry_after_s=7)
        async with client_for(sim) as moodle:
            with pytest.raises(MoodleUnavailable) as caught:
                await moodle.get_site_info()
        assert caught.value.retry_after_s == 7.0

    async def test_connection_refused(self, free_port: int) -> None:
        """Nothing listening is MoodleUnavailable."""
        client = MoodleClient(f"http://127.0.0.1:{free_port}", SecretStr(TOKEN))
        async with client as moodle:
            with pytest.raises(MoodleUnavailable):
                await moodle.get_site_info()

    @pytest.mark.parametrize(
        ("token", "function", "expected"),
        [
            ("wrong", "core_webservice_get_site_info", MoodleAuthError),
            (TOKEN, "core_enrol_get_users_courses", MoodleAuthError),
        ],
    )
    async def test_http_200_errors(
        self,
        sim: MoodleSimulator,
        token: str,
        function: str,
        expected: type[MoodleError],
    ) -> None:
        """Error objects sent with HTTP 200 are raised, not returned."""
        async with MoodleClient(sim.url, SecretStr(token)) as moodle:
            with pytest.raises(expected):
                await moodle.call(function, {})

    async def test_null_success(self, sim: MoodleSimulator) -> None:
        """Enrol's JSON null answer comes back as None from call."""
        params = {"enrolments": [EnrolRow(4, C1, STUDENT).as_param()]}
        async with client_for(sim) as moodle:
            assert await moodle.call(ENROL, params) is None


class TestSecrecy:
    """The token never appears in logs, exception text or repr."""

    async def test_token_never_leaks(self, sim: MoodleSimulator) -> None:
        """Across successes, rejections and every fault, no log or error shows it."""
        errors: list[BaseException] = []
        faults = ["echoed_error", "http_503", "dropped", "php_fatal_page"]
        for fault in [*faults, "echoed_page"]:
            INJECT[fault](sim.faults)
        with capture_logs() as logs:
            async with client_for(sim) as moodle:
                assert TOKEN not in repr(moodle)
                for _ in range(5):
                    try:
                        await moodle.get_site_info()
                    except MoodleError as caught:
                        errors.append(caught)
                result = await moodle.enrol(
                    [EnrolRow(4, C1, STUDENT), EnrolRow(999999, C1, STUDENT)]
                )
        errors.extend(rejection for _, rejection in result.rejected)
        assert len(errors) == 6
        chained = [*errors, *(e.__cause__ for e in errors if e.__cause__)]
        assert len(chained) > len(errors)  # the dropped connection's aiohttp error
        for error in chained:
            assert TOKEN not in str(error)
            assert TOKEN not in repr(error)
            assert TOKEN not in repr(vars(error))
        # Both echoes did carry the token: they reach the caller redacted.
        assert "<redacted>" in repr(vars(errors[0]))  # the error's debuginfo
        assert "<redacted>" in str(errors[-2])  # the page's excerpt
        assert logs
        assert TOKEN not in repr(logs)
        applied = [e for e in logs if e["event"] == "moodle_rows_sent"]
        assert applied == [
            {
                "event": "moodle_rows_sent",
                "log_level": "info",
                "function": "enrol_manual_enrol_users",
                "applied": 1,
                "rejected": 1,
                "unknown": 0,
            }
        ]


class TestRedirects:
    """A redirect is reported, never followed: the token stays with the configured URL."""

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    async def test_redirect_not_followed(
        self, sim: MoodleSimulator, elsewhere: MoodleSimulator, status: int
    ) -> None:
        """A 3xx to another port delivers nothing there and raises MoodleBadResponse."""
        sim.faults.redirect_next(1, f"{elsewhere.url}{REST_PATH}?next=1#top", status)
        async with client_for(sim) as moodle:
            with pytest.raises(MoodleBadResponse) as caught:
                await moodle.get_site_info()
        assert elsewhere.requests == []
        assert len(sim.requests) == 1
        assert caught.value.status == status
        assert caught.value.reason == (
            f"core_webservice_get_site_info: Moodle answered a redirect to "
            f"{elsewhere.url}{REST_PATH}; set moodle.url to the final address"
        )
        assert TOKEN not in str(caught.value)

    async def test_relative_location_resolved(self, sim: MoodleSimulator) -> None:
        """A relative Location is shown as the absolute address it names."""
        location = "/moodle/webservice/rest/server.php?wstoken=" + TOKEN
        sim.faults.redirect_next(1, location, 307)
        async with client_for(sim) as moodle:
            with pytest.raises(MoodleBadResponse) as caught:
                await moodle.get_site_info()
        assert f"redirect to {sim.url}/moodle/webservice/rest/server.php;" in str(
            caught.value
        )
        assert TOKEN not in str(caught.value)


class TestCleartextWarning:
    """An http:// URL to a host off this machine is warned about at start-up."""

    @pytest.mark.parametrize(
        ("url", "in_clear"),
        [
            ("http://moodle.example.invalid", True),
            ("http://moodle.example.invalid/moodle", True),
            ("http://10.1.2.3:8080", True),
            ("http://[2001:db8::1]", True),
            ("http://127.0.0.1:8080", False),
            ("http://127.3.2.1", False),
            ("http://[::1]:8080", False),
            ("http://localhost:8080", False),
            ("http://LOCALHOST", False),
            ("https://moodle.example.invalid", False),
            ("https://10.1.2.3", False),
        ],
    )
    def test_sends_token_in_clear(self, url: str, *, in_clear: bool) -> None:
        """Plain http counts as clear text unless the host is loopback."""
        assert sends_token_in_clear(url) is in_clear

    async def test_warned_once_at_start_up(self) -> None:
        """Entering a client for http://moodle.example.invalid logs one warning."""
        client = MoodleClient("http://moodle.example.invalid", SecretStr(TOKEN))
        with capture_logs() as logs:
            async with client:  # no request: nothing connects
                pass
        assert logs == [
            {
                "event": "moodle_token_in_clear",
                "log_level": "warning",
                "url": f"http://moodle.example.invalid{REST_PATH}",
                "hint": "use https:// for a Moodle that is not on this machine",
            }
        ]

    async def test_loopback_not_warned(self, sim: MoodleSimulator) -> None:
        """The local simulator (http://127.0.0.1) starts without a warning."""
        with capture_logs() as logs:
            async with client_for(sim) as moodle:
                await moodle.get_site_info()
        assert [e for e in logs if e["log_level"] == "warning"] == []


class TestConcurrency:
    """At most `concurrency` requests are in flight."""

    async def test_bounded(self, sim: MoodleSimulator) -> None:
        """Six chunks at concurrency 2 never put a third request in flight."""
        # Each held long enough for a third request to arrive if allowed.
        sim.faults.delay_next(6, 0.2)
        rows = [EnrolRow(u, C1, STUDENT) for u in range(4, 16)]
        async with client_for(sim, concurrency=2, max_input_vars=15) as moodle:
            result = await moodle.enrol(rows)
        assert len(sim.requests) == 6
        assert sim.max_in_flight == 2
        assert result.applied == rows


class TestReads:
    """Look-ups: chunked, paged, shaped."""

    async def test_users_by_field_chunks(self, sim: MoodleSimulator) -> None:
        """40 values at max_input_vars=20 take 3 requests of at most 16 values."""
        values = [f"P{u:09d}" for u in range(4, 44)]
        async with client_for(sim, max_input_vars=20) as moodle:
            users = await moodle.get_users_by_field("idnumber", [*values, "P000000999"])
        assert sorted(u["id"] for u in users) == list(range(4, 44))  # type: ignore[type-var]
        assert len(sim.requests) == 3
        assert max(len(r.fields) for r in sim.requests) <= 20

    async def test_uppercase_usernames_not_sent(self, sim: MoodleSimulator) -> None:
        """An uppercase username cannot exist and would fail the whole request."""
        async with client_for(sim) as moodle:
            users = await moodle.get_users_by_field(
                "username", ["P000000004", "p000000005"]
            )
        assert [u["id"] for u in users] == [5]

    @pytest.mark.parametrize(("enrolled_count", "requests"), [(7, 3), (6, 3), (0, 1)])
    async def test_enrolled_users_paged(
        self, sim: MoodleSimulator, enrolled_count: int, requests: int
    ) -> None:
        """Pages of 3 are fetched until a short page."""
        userids = range(4, 4 + enrolled_count)
        async with client_for(sim) as moodle:
            if enrolled_count:
                await moodle.enrol([EnrolRow(u, C1, STUDENT) for u in userids])
            sim.requests.clear()
            users = await moodle.get_enrolled_users(C1, page_size=3)
        assert [u["id"] for u in users] == list(userids)
        assert len(sim.requests) == requests

    async def test_enrolled_users_onlyactive(self, sim: MoodleSimulator) -> None:
        """onlyactive leaves suspended enrolments out."""
        async with client_for(sim) as moodle:
            await moodle.enrol(
                [EnrolRow(4, C1, STUDENT), EnrolRow(5, C1, STUDENT, suspend=True)]
            )
            users = await moodle.get_enrolled_users(C1, onlyactive=True)
            with pytest.raises(ValueError, match="exclude"):
                await moodle.get_enrolled_users(C1, onlyactive=True, onlysuspended=True)
        assert [u["id"] for u in users] == [4]

    async def test_courses_and_manual_instance(self, sim: MoodleSimulator) -> None:
        """Course look-up tells whether an enabled manual instance exists."""
        async with client_for(sim) as moodle:
            (c1,) = await moodle.get_courses_by_field("shortname", "C1")
            (nomanual,) = await moodle.get_courses_by_field("id", NOMANUAL)
            assert await moodle.get_courses_by_field("shortname", "NOPE") == []
        assert has_enabled_manual_instance(c1)
        assert not has_enabled_manual_instance(nomanual)

    async def test_create_users(self, sim: MoodleSimulator) -> None:
        """Created users come back in order; uppercase usernames never leave."""
        # Moodle requires names and a password (or createpassword), as recorded.
        new = {
            "username": "p000200001",
            "idnumber": "P000200001",
            "email": "p000200001@example.com",
            "firstname": "First",
            "lastname": "Last",
            "createpassword": True,
        }
        async with client_for(sim) as moodle:
            assert await moodle.create_users([new]) == [
                {"id": 44, "username": "p000200001"}
            ]
            with pytest.raises(ValueError, match="lowercase"):
                await moodle.create_users([{**new, "username": "P000200002"}])
        assert len(sim.requests) == 1

    async def test_create_courses_chunked_and_rejected(
        self, sim: MoodleSimulator
    ) -> None:
        """Courses are created in field-bounded requests; a taken shortname raises."""
        courses = [
            {"fullname": f"Course {n}", "shortname": f"N{n}", "categoryid": 1}
            for n in range(5)
        ]
        async with client_for(sim, max_input_vars=10) as moodle:  # 2 courses/request
            created = await moodle.create_courses(courses)
            with pytest.raises(MoodleRejected) as caught:
                await moodle.create_courses([courses[0]])
        assert [c["shortname"] for c in created] == [f"N{n}" for n in range(5)]
        assert len(sim.requests) == 3 + 1
        assert caught.value.errorcode == "shortnametaken"


class TestIdentityOverHttp:
    """IdentityResolver batches its look-ups and caches only what it found."""

    async def test_resolve(self, sim: MoodleSimulator) -> None:
        """Found, Missing and Ambiguous over HTTP; found ids are not asked again."""
        state = sim.state
        # The strip_p view of P000000004, held by two accounts.
        twins = tuple(state.add_user(f"twin{n}", idnumber="000000004") for n in (1, 2))
        found = {
            n: state.add_user(f"p{n:09d}", idnumber=f"{n:09d}") for n in range(60, 66)
        }
        ids = ["P000000004", "P000000777", *(f"P{n:09d}" for n in found)]
        async with client_for(sim, max_input_vars=9) as moodle:  # 5 values/request
            resolver = IdentityResolver(moodle)
            first = await resolver.resolve(ids)
            assert len(sim.requests) == 2
            sim.requests.clear()
            late = state.add_user("p000000777", idnumber="000000777")
            second = await resolver.resolve(ids)
        ambiguous = first["P000000004"]
        assert isinstance(ambiguous, Ambiguous)
        assert ambiguous.userids == twins
        assert isinstance(first["P000000777"], Missing)
        assert [first[f"P{n:09d}"] for n in found] == [Found(u) for u in found.values()]
        assert second["P000000777"] == Found(late)
        assert [dict(r.fields).get("values[0]") for r in sim.requests] == ["000000004"]
        assert len(dict(sim.requests[0].fields)) == 3 + 1 + 2
