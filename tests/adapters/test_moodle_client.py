"""MoodleClient against a real local HTTP server that answers like Moodle 5.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
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
from tests.adapters.moodle_stub_server import Fault, MoodleStub, start

TOKEN = "0123456789abcdef-s3cret-token"  # noqa: S105 - a test fixture value
ENROL_OPTIONAL = ("suspend", "timestart", "timeend")


@pytest.fixture(name="stub")
async def _stub() -> AsyncIterator[MoodleStub]:
    """A Moodle stub with users 4..43 (idnumber P0000000NN) and courses 2, 3, 4."""
    stub = MoodleStub(token=TOKEN)
    for userid in range(4, 44):
        stub.add_user(userid, f"P{userid:09d}", f"p{userid:09d}")
    stub.add_course(2, "C1")
    stub.add_course(3, "C2")
    stub.add_course(4, "NOMANUAL", manual=False)
    runner = await start(stub)
    yield stub
    stub.release()
    await runner.cleanup()


def client_for(stub: MoodleStub, **options: float) -> MoodleClient:
    """A client for the stub with the right token."""
    return MoodleClient(stub.url, SecretStr(TOKEN), **options)  # type: ignore[arg-type]


@pytest.fixture(name="free_port")
def _free_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Elsewhere:
    """Another local server that records whatever reaches it."""

    url: str = ""
    received: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        """Record method, path and body; answer like Moodle would, to tempt a client."""
        self.received.append((request.method, request.path, await request.read()))
        return web.json_response({"sitename": "elsewhere", "userid": 3})


@pytest.fixture(name="elsewhere")
async def _elsewhere() -> AsyncIterator[Elsewhere]:
    """A recording server on its own port (a redirect target)."""
    server = Elsewhere()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    yield server
    await runner.cleanup()


class TestWireFormat:
    """What goes on the wire: routing first, every enrol key, bounded field counts."""

    async def test_routing_fields_first(self, stub: MoodleStub) -> None:
        """wstoken, wsfunction and moodlewsrestformat=json lead every request."""
        async with client_for(stub) as moodle:
            await moodle.enrol([EnrolRow(4, 2, 5)])
            await moodle.get_site_info()
        for request in stub.requests:
            assert [key for key, _ in request.fields[:3]] == [
                "wstoken",
                "wsfunction",
                "moodlewsrestformat",
            ]
            assert request.fields[2] == ("moodlewsrestformat", "json")

    async def test_enrol_always_sends_suspend_and_times(self, stub: MoodleStub) -> None:
        """Defaults are sent explicitly; given values arrive as integers and 0/1."""
        async with client_for(stub) as moodle:
            await moodle.enrol([EnrolRow(4, 2, 5), EnrolRow(5, 2, 5, True, 100, 200)])
        sent = dict(stub.requests[0].fields)
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
        assert stub.enrolments[5, 2] == {
            "roleid": 5,
            "suspend": 1,
            "timestart": 100,
            "timeend": 200,
        }

    async def test_enrol_chunks_balanced_over_concurrent_requests(
        self, stub: MoodleStub
    ) -> None:
        """167 rows at concurrency 4 go as 4 requests of 41-42 rows, not 166 + 1."""
        for courseid in range(10, 15):
            stub.add_course(courseid, f"K{courseid}")
        rows = [EnrolRow(4 + i % 40, 10 + i // 40, 5) for i in range(167)]
        async with client_for(stub, concurrency=4) as moodle:
            result = await moodle.enrol(rows)
        sizes = sorted((len(r.fields) - 3) // 6 for r in stub.requests)
        assert sizes == [41, 42, 42, 42]
        assert result.applied == rows

    @pytest.mark.parametrize(
        ("max_input_vars", "count", "requests"),
        [(1000, 40, 1), (1000, 166, 1), (1000, 167, 2), (63, 40, 4), (21, 40, 14)],
    )
    async def test_enrol_within_max_input_vars(
        self, stub: MoodleStub, max_input_vars: int, count: int, requests: int
    ) -> None:
        """No request exceeds max_input_vars, so PHP truncates nothing: all rows land."""
        stub.max_input_vars = max_input_vars
        for courseid in range(10, 15):
            stub.add_course(courseid, f"K{courseid}")
        rows = [EnrolRow(4 + i % 40, 10 + i // 40, 5) for i in range(count)]
        async with client_for(
            stub, max_input_vars=max_input_vars, concurrency=1
        ) as moodle:
            result = await moodle.enrol(rows)
        assert len(stub.requests) == requests
        assert max(len(r.fields) for r in stub.requests) <= max_input_vars
        assert result.applied == rows
        assert len(stub.enrolments) == len(rows)

    async def test_site_limit_below_setting_loses_rows(self, stub: MoodleStub) -> None:
        """Why the setting must match the site: PHP drops whole rows without error."""
        stub.max_input_vars = 63  # 3 routing fields + exactly 10 rows
        rows = [EnrolRow(u, 2, 5) for u in range(4, 44)]
        async with client_for(stub, max_input_vars=1000) as moodle:
            result = await moodle.enrol(rows)
        assert len(result.applied) == 40
        assert len(stub.enrolments) == 10

    async def test_unenrol_within_max_input_vars(self, stub: MoodleStub) -> None:
        """Unenrol rows cost 2 fields: 40 rows at max_input_vars=23 need 4 requests."""
        stub.max_input_vars = 23
        async with client_for(stub, max_input_vars=23) as moodle:
            await moodle.enrol([EnrolRow(u, 2, 5) for u in range(4, 44)])
            stub.requests.clear()
            result = await moodle.unenrol([UnenrolRow(u, 2) for u in range(4, 44)])
        assert len(stub.requests) == 4
        assert max(len(r.fields) for r in stub.requests) <= 23
        assert len(result.applied) == 40
        assert stub.enrolments == {}

    async def test_call_refuses_oversized_request(self, stub: MoodleStub) -> None:
        """A raw call that would be truncated by PHP is refused before sending."""
        async with client_for(stub, max_input_vars=10) as moodle:
            with pytest.raises(ValueError, match="max_input_vars"):
                await moodle.call("core_user_get_users_by_field", {"values": ["a"] * 8})
        assert stub.requests == []


class TestBisection:
    """A rejected request rolls back; splitting it lands the good rows."""

    async def test_good_rows_land_bad_rows_reported(self, stub: MoodleStub) -> None:
        """An unknown user and a course without manual instance are the only rejects."""
        rows = [EnrolRow(u, 2, 5) for u in range(4, 14)]
        rows[3] = EnrolRow(999999, 2, 5)
        rows[7] = EnrolRow(11, 4, 5)
        async with client_for(stub) as moodle:
            result = await moodle.enrol(rows)
        assert result.applied == [r for i, r in enumerate(rows) if i not in {3, 7}]
        assert [(row, type(error)) for row, error in result.rejected] == [
            (rows[3], MoodleNotFound),
            (rows[7], MoodleNoManualInstance),
        ]
        assert set(stub.enrolments) == {(r.userid, r.courseid) for r in result.applied}
        assert stub.requests[0].function == "enrol_manual_enrol_users"
        assert len(dict(stub.requests[0].fields)) == 3 + 6 * 10

    async def test_unenrol_bisects(self, stub: MoodleStub) -> None:
        """Unenrol of an unknown user rejects that row only."""
        async with client_for(stub) as moodle:
            await moodle.enrol([EnrolRow(4, 2, 5), EnrolRow(5, 2, 5)])
            result = await moodle.unenrol(
                [UnenrolRow(4, 2), UnenrolRow(999999, 2), UnenrolRow(5, 2)]
            )
        assert result.applied == [UnenrolRow(4, 2), UnenrolRow(5, 2)]
        assert [row for row, _ in result.rejected] == [UnenrolRow(999999, 2)]
        assert stub.enrolments == {}

    async def test_unavailable_mid_batch_is_unknown(self, stub: MoodleStub) -> None:
        """A 503 on a request: its rows are unknown, never reported applied."""
        stub.faults.append(Fault.HTTP_503)
        async with client_for(stub) as moodle:
            result = await moodle.enrol([EnrolRow(4, 2, 5)])
        assert [row for row, _ in result.unknown] == [EnrolRow(4, 2, 5)]
        assert isinstance(result.unknown[0][1], MoodleUnavailable)
        assert result.applied == []
        assert stub.enrolments == {}


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
            (Fault.HTTP_503, MoodleUnavailable),
            (Fault.DROP, MoodleUnavailable),
            (Fault.HANG, MoodleUnavailable),
            (Fault.HTML, MoodleUnavailable),
            (Fault.HTTP_404, MoodleUnavailable),
            (Fault.ECHO, MoodleRejected),
        ],
    )
    async def test_fault(
        self, stub: MoodleStub, fault: Fault, expected: type[MoodleError]
    ) -> None:
        """Each misbehaviour raises exactly this error type."""
        stub.faults.append(fault)
        async with client_for(stub, request_timeout_s=0.3) as moodle:
            with pytest.raises(MoodleError) as caught:
                await moodle.get_site_info()
        assert type(caught.value) is expected

    async def test_503_carries_retry_after(self, stub: MoodleStub) -> None:
        """Retry-After seconds are passed on to the caller."""
        stub.faults.append(Fault.HTTP_503)
        async with client_for(stub) as moodle:
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
        self, stub: MoodleStub, token: str, function: str, expected: type[MoodleError]
    ) -> None:
        """Error objects sent with HTTP 200 are raised, not returned."""
        async with MoodleClient(stub.url, SecretStr(token)) as moodle:
            with pytest.raises(expected):
                await moodle.call(function, {})

    async def test_null_success(self, stub: MoodleStub) -> None:
        """Enrol's JSON null answer comes back as None from call."""
        params = {"enrolments": [EnrolRow(4, 2, 5).as_param()]}
        async with client_for(stub) as moodle:
            assert await moodle.call("enrol_manual_enrol_users", params) is None


class TestSecrecy:
    """The token never appears in logs, exception text or repr."""

    async def test_token_never_leaks(self, stub: MoodleStub) -> None:
        """Across successes, rejections and every fault, no log or error shows it."""
        errors: list[BaseException] = []
        stub.faults.extend([Fault.ECHO, Fault.HTTP_503, Fault.DROP, Fault.HTML])
        with capture_logs() as logs:
            async with client_for(stub) as moodle:
                assert TOKEN not in repr(moodle)
                for _ in range(4):
                    try:
                        await moodle.get_site_info()
                    except MoodleError as caught:
                        errors.append(caught)
                result = await moodle.enrol([EnrolRow(4, 2, 5), EnrolRow(999999, 2, 5)])
        errors.extend(rejection for _, rejection in result.rejected)
        assert len(errors) == 5
        chained = [*errors, *(e.__cause__ for e in errors if e.__cause__)]
        assert len(chained) > len(errors)  # the dropped connection's aiohttp error
        for error in chained:
            assert TOKEN not in str(error)
            assert TOKEN not in repr(error)
            assert TOKEN not in repr(vars(error))
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
        self, stub: MoodleStub, elsewhere: Elsewhere, status: int
    ) -> None:
        """A 3xx to another port delivers nothing there and raises MoodleBadResponse."""
        stub.redirect_to = f"{elsewhere.url}{REST_PATH}?next=1#top"
        stub.redirect_status = status
        stub.faults.append(Fault.REDIRECT)
        async with client_for(stub) as moodle:
            with pytest.raises(MoodleBadResponse) as caught:
                await moodle.get_site_info()
        assert elsewhere.received == []
        assert len(stub.requests) == 1
        assert caught.value.status == status
        assert caught.value.reason == (
            f"core_webservice_get_site_info: Moodle answered a redirect to "
            f"{elsewhere.url}{REST_PATH}; set moodle.url to the final address"
        )
        assert TOKEN not in str(caught.value)

    async def test_relative_location_resolved(self, stub: MoodleStub) -> None:
        """A relative Location is shown as the absolute address it names."""
        stub.redirect_to = "/moodle/webservice/rest/server.php?wstoken=" + TOKEN
        stub.faults.append(Fault.REDIRECT)
        async with client_for(stub) as moodle:
            with pytest.raises(MoodleBadResponse) as caught:
                await moodle.get_site_info()
        assert f"redirect to {stub.url}/moodle/webservice/rest/server.php;" in str(
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

    async def test_loopback_not_warned(self, stub: MoodleStub) -> None:
        """The local stub (http://127.0.0.1) starts without a warning."""
        with capture_logs() as logs:
            async with client_for(stub) as moodle:
                await moodle.get_site_info()
        assert [e for e in logs if e["log_level"] == "warning"] == []


class TestConcurrency:
    """At most `concurrency` requests are in flight."""

    async def test_bounded(self, stub: MoodleStub) -> None:
        """Six chunks at concurrency 2 never put a third request in flight."""
        stub.hold_s = 0.2  # long enough for a third request to arrive if allowed
        rows = [EnrolRow(u, 2, 5) for u in range(4, 16)]
        async with client_for(stub, concurrency=2, max_input_vars=15) as moodle:
            result = await moodle.enrol(rows)
        assert len(stub.requests) == 6
        assert stub.max_in_flight == 2
        assert result.applied == rows


class TestReads:
    """Look-ups: chunked, paged, shaped."""

    async def test_users_by_field_chunks(self, stub: MoodleStub) -> None:
        """40 values at max_input_vars=20 take 3 requests of at most 16 values."""
        values = [f"P{u:09d}" for u in range(4, 44)]
        async with client_for(stub, max_input_vars=20) as moodle:
            users = await moodle.get_users_by_field("idnumber", [*values, "P000000999"])
        assert sorted(u["id"] for u in users) == list(range(4, 44))  # type: ignore[type-var]
        assert len(stub.requests) == 3
        assert max(len(r.fields) for r in stub.requests) <= 20

    async def test_uppercase_usernames_not_sent(self, stub: MoodleStub) -> None:
        """An uppercase username cannot exist and would fail the whole request."""
        async with client_for(stub) as moodle:
            users = await moodle.get_users_by_field(
                "username", ["P000000004", "p000000005"]
            )
        assert [u["id"] for u in users] == [5]

    @pytest.mark.parametrize(("enrolled", "requests"), [(7, 3), (6, 3), (0, 1)])
    async def test_enrolled_users_paged(
        self, stub: MoodleStub, enrolled: int, requests: int
    ) -> None:
        """Pages of 3 are fetched until a short page."""
        async with client_for(stub) as moodle:
            if enrolled:
                await moodle.enrol([EnrolRow(u, 2, 5) for u in range(4, 4 + enrolled)])
            stub.requests.clear()
            users = await moodle.get_enrolled_users(2, page_size=3)
        assert [u["id"] for u in users] == list(range(4, 4 + enrolled))
        assert len(stub.requests) == requests

    async def test_enrolled_users_onlyactive(self, stub: MoodleStub) -> None:
        """onlyactive leaves suspended enrolments out."""
        async with client_for(stub) as moodle:
            await moodle.enrol([EnrolRow(4, 2, 5), EnrolRow(5, 2, 5, suspend=True)])
            users = await moodle.get_enrolled_users(2, onlyactive=True)
            with pytest.raises(ValueError, match="exclude"):
                await moodle.get_enrolled_users(2, onlyactive=True, onlysuspended=True)
        assert [u["id"] for u in users] == [4]

    async def test_courses_and_manual_instance(self, stub: MoodleStub) -> None:
        """Course look-up tells whether an enabled manual instance exists."""
        async with client_for(stub) as moodle:
            (c1,) = await moodle.get_courses_by_field("shortname", "C1")
            (nomanual,) = await moodle.get_courses_by_field("id", 4)
            assert await moodle.get_courses_by_field("shortname", "NOPE") == []
        assert has_enabled_manual_instance(c1)
        assert not has_enabled_manual_instance(nomanual)

    async def test_create_users(self, stub: MoodleStub) -> None:
        """Created users come back in order; uppercase usernames never leave."""
        new = {"username": "p000200001", "idnumber": "P000200001", "email": "a@b.c"}
        async with client_for(stub) as moodle:
            assert await moodle.create_users([new]) == [
                {"id": 44, "username": "p000200001"}
            ]
            with pytest.raises(ValueError, match="lowercase"):
                await moodle.create_users([{**new, "username": "P000200002"}])
        assert len(stub.requests) == 1

    async def test_create_courses_chunked_and_rejected(self, stub: MoodleStub) -> None:
        """Courses are created in field-bounded requests; a taken shortname raises."""
        courses = [
            {"fullname": f"Course {n}", "shortname": f"N{n}", "categoryid": 1}
            for n in range(5)
        ]
        async with client_for(stub, max_input_vars=10) as moodle:  # 2 courses/request
            created = await moodle.create_courses(courses)
            with pytest.raises(MoodleRejected) as caught:
                await moodle.create_courses([courses[0]])
        assert [c["shortname"] for c in created] == [f"N{n}" for n in range(5)]
        assert len(stub.requests) == 3 + 1
        assert caught.value.errorcode == "shortnametaken"


class TestIdentityOverHttp:
    """IdentityResolver batches its look-ups and caches only what it found."""

    async def test_resolve(self, stub: MoodleStub) -> None:
        """Found, Missing and Ambiguous over HTTP; found ids are not asked again."""
        stub.add_user(50, "000000004", "p000000050")  # strip_p view of P000000004
        stub.add_user(51, "000000004", "p000000051")  # ... held by two accounts
        for userid in range(60, 66):
            stub.add_user(userid, f"{userid:09d}", f"p{userid:09d}")
        ids = ["P000000004", "P000000777", *(f"P{u:09d}" for u in range(60, 66))]
        async with client_for(stub, max_input_vars=9) as moodle:  # 5 values/request
            resolver = IdentityResolver(moodle)
            first = await resolver.resolve(ids)
            assert len(stub.requests) == 2
            stub.requests.clear()
            stub.add_user(77, "000000777", "p000000077")
            second = await resolver.resolve(ids)
        ambiguous = first["P000000004"]
        assert isinstance(ambiguous, Ambiguous)
        assert ambiguous.userids == (50, 51)
        assert isinstance(first["P000000777"], Missing)
        assert [first[f"P{u:09d}"] for u in range(60, 66)] == [
            Found(u) for u in range(60, 66)
        ]
        assert second["P000000777"] == Found(77)
        assert [dict(r.fields).get("values[0]") for r in stub.requests] == ["000000004"]
        assert len(dict(stub.requests[0].fields)) == 3 + 1 + 2
