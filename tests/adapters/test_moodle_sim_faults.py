"""The simulator's latency model, injected faults and wire record, seen by a real aiohttp client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.moodle_sim.faults import FaultPlan, LatencyModel
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from tests.conftest import GOLDEN_DIR

LATENCY_JSON = GOLDEN_DIR / "latency.json"
TOKEN = "5" * 32


def _enrol_pairs(userids: list[int], courseid: int) -> list[tuple[str, str]]:
    pairs = [
        ("wstoken", TOKEN),
        ("wsfunction", "enrol_manual_enrol_users"),
        ("moodlewsrestformat", "json"),
    ]
    for n, userid in enumerate(userids):
        pairs += [
            (f"enrolments[{n}][roleid]", "5"),
            (f"enrolments[{n}][userid]", str(userid)),
            (f"enrolments[{n}][courseid]", str(courseid)),
        ]
    return pairs


def _site(users: int = 3) -> tuple[MoodleState, list[int], int]:
    state = MoodleState()
    ids = [state.add_user(f"p{n}") for n in range(users)]
    return state, ids, state.add_course("C1", "Course 1")


async def _post(
    session: aiohttp.ClientSession, sim: MoodleSimulator, pairs: list[tuple[str, str]]
) -> tuple[int, Any]:
    async with session.post(sim.url + ENDPOINT, data=pairs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class TestLatencyModel:
    """The cost model fitted from the recorded timings."""

    def test_fit_matches_recorded_figures(self) -> None:
        """Fitting latency.json gives 30-40 ms per call and 7-9 ms per row, as recorded."""
        fitted = LatencyModel.from_golden(LATENCY_JSON)
        assert 0.030 <= fitted.per_call_s <= 0.040
        assert 0.007 <= fitted.per_row_s <= 0.009
        recorded = LatencyModel.recorded()
        assert (
            fitted.per_call_s,
            fitted.per_row_s,
            fitted.per_read_row_s,
        ) == pytest.approx(
            (recorded.per_call_s, recorded.per_row_s, recorded.per_read_row_s), abs=1e-6
        )

    def test_fit_predicts_the_100_row_batch(self) -> None:
        """The fitted model predicts a 100-row enrol within 25 % of its recorded median."""
        fitted = LatencyModel.from_golden(LATENCY_JSON)
        assert fitted.cost(100) == pytest.approx(0.9505, rel=0.25)

    async def test_one_worker_serves_one_request_at_a_time(
        self, session: aiohttp.ClientSession
    ) -> None:
        """With one PHP worker two concurrent calls take twice the per-call cost."""
        state, _, _ = _site()
        async with MoodleSimulator(
            state, token=TOKEN, latency=LatencyModel(0.15, 0.0, workers=1)
        ) as sim:
            loop = asyncio.get_running_loop()
            started = loop.time()
            pairs = [
                ("wstoken", TOKEN),
                ("wsfunction", "core_webservice_get_site_info"),
            ]
            await asyncio.gather(_post(session, sim, pairs), _post(session, sim, pairs))
            assert loop.time() - started >= 0.3

    async def test_several_workers_overlap(
        self, session: aiohttp.ClientSession
    ) -> None:
        """With two workers two concurrent calls overlap instead of queueing."""
        state, _, _ = _site()
        async with MoodleSimulator(
            state, token=TOKEN, latency=LatencyModel(0.15, 0.0, workers=2)
        ) as sim:
            loop = asyncio.get_running_loop()
            started = loop.time()
            pairs = [
                ("wstoken", TOKEN),
                ("wsfunction", "core_webservice_get_site_info"),
            ]
            await asyncio.gather(_post(session, sim, pairs), _post(session, sim, pairs))
            assert 0.15 <= loop.time() - started < 0.3

    async def test_rows_cost_per_row(self, session: aiohttp.ClientSession) -> None:
        """An enrol batch costs per_row_s for each row it carries."""
        state, ids, course = _site(users=5)
        async with MoodleSimulator(
            state, token=TOKEN, latency=LatencyModel(0.0, 0.06)
        ) as sim:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await _post(session, sim, _enrol_pairs(ids, course)) == (200, None)
            assert loop.time() - started >= 0.3
            assert sim.rows_per_call("enrol_manual_enrol_users") == [5]


class TestFaults:
    """Injected HTTP errors, delays and dropped connections."""

    async def test_fail_next_answers_status_then_recovers(
        self, session: aiohttp.ClientSession
    ) -> None:
        """fail_next(2, 503) gives two 503s with Retry-After, Moodle untouched, then 200."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.fail_next(2, status=503)
            for _ in range(2):
                async with session.post(
                    sim.url + ENDPOINT, data=_enrol_pairs(ids[:1], course)
                ) as response:
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "1"
            assert state.enrolments(course) == []
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                None,
            )
            assert [e.userid for e in state.enrolments(course)] == ids[:1]

    async def test_fail_after_commit_reports_error_for_done_work(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A 502 injected after processing hides an enrolment that Moodle committed."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.fail_next(1, status=502, after=True)
            status, _ = await _post(session, sim, _enrol_pairs(ids[:2], course))
            assert status == 502
            assert [e.userid for e in state.enrolments(course)] == ids[:2]

    async def test_delay_beyond_client_timeout_times_out(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A request held longer than the client's timeout ends in a client timeout."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.hang_next(1, seconds=5.0)
            timeout = aiohttp.ClientTimeout(total=0.2)
            with pytest.raises(asyncio.TimeoutError):
                async with session.post(
                    sim.url + ENDPOINT,
                    timeout=timeout,
                    data=_enrol_pairs(ids[:1], course),
                ):
                    pass
            assert sim.faults.pending == 0

    async def test_drop_closes_connection_without_answer(
        self, session: aiohttp.ClientSession
    ) -> None:
        """drop_next closes the connection before Moodle sees the request."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.drop_next(1)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await _post(session, sim, _enrol_pairs(ids[:1], course))
            assert state.enrolments(course) == []
            assert sim.calls == []

    async def test_drop_after_commit_loses_only_the_answer(
        self, session: aiohttp.ClientSession
    ) -> None:
        """drop_next(after=True) commits the enrolment, then closes without an answer."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.drop_next(1, after=True)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await _post(session, sim, _enrol_pairs(ids[:1], course))
            assert [e.userid for e in state.enrolments(course)] == ids[:1]

    async def test_terminate_answers_like_a_stopped_server(
        self, session: aiohttp.ClientSession
    ) -> None:
        """terminate_next gives 200 text/html 'Terminated: 15' and leaves Moodle untouched."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.terminate_next(1)
            async with session.post(
                sim.url + ENDPOINT, data=_enrol_pairs(ids, course)
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                assert await response.text() == "Terminated: 15\n"
            assert state.enrolments(course) == []
            assert await _post(session, sim, _enrol_pairs(ids, course)) == (200, None)
            assert len(state.enrolments(course)) == len(ids)

    async def test_window_fails_until_it_ends(
        self, session: aiohttp.ClientSession
    ) -> None:
        """fail_for answers 503 while its window lasts (on the plan's clock), then 200."""
        now = [100.0]
        state, ids, course = _site()
        plan = FaultPlan(clock=lambda: now[0])
        async with MoodleSimulator(state, token=TOKEN, faults=plan) as sim:
            sim.faults.fail_for(30.0, status=500)
            assert (await _post(session, sim, _enrol_pairs(ids[:1], course)))[0] == 500
            now[0] = 129.0
            assert (await _post(session, sim, _enrol_pairs(ids[:1], course)))[0] == 500
            now[0] = 130.5
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                None,
            )

    async def test_clear_forgets_pending_faults(
        self, session: aiohttp.ClientSession
    ) -> None:
        """clear() removes queued faults so the next request is served normally."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.fail_next(3)
            sim.faults.drop_next(1)
            sim.faults.clear()
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                None,
            )
            assert sim.faults.injected == []


class TestHtmlPages:
    """HTML where Moodle's JSON belongs, with HTTP 200: a stopped server, a PHP fatal."""

    async def test_terminate_next_answers_like_moodles_shutdown_handler(
        self, session: aiohttp.ClientSession
    ) -> None:
        """terminate_next gives 200 text/html 'Terminated: 15', nothing applied, then JSON."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.terminate_next(2)
            for _ in range(2):
                async with session.post(
                    sim.url + ENDPOINT, data=_enrol_pairs(ids[:1], course)
                ) as response:
                    assert response.status == 200
                    assert response.content_type == "text/html"
                    assert await response.text() == "Terminated: 15\n"
            assert state.enrolments(course) == []
            assert sim.calls == []
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                None,
            )
            assert [e.userid for e in state.enrolments(course)] == ids[:1]

    async def test_terminate_after_commit_keeps_the_work(
        self, session: aiohttp.ClientSession
    ) -> None:
        """terminate_next(after=True): the enrolment committed, the answer is the page."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.terminate_next(1, after=True)
            assert await _post(session, sim, _enrol_pairs(ids[:2], course)) == (
                200,
                "Terminated: 15\n",
            )
            assert [e.userid for e in state.enrolments(course)] == ids[:2]
            assert sim.call_counts()["enrol_manual_enrol_users"] == 1

    async def test_php_fatal_page_is_html_with_status_200(
        self, session: aiohttp.ClientSession
    ) -> None:
        """php_fatal_next answers 200 with PHP's HTML error text and applies nothing."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.php_fatal_next(1)
            status, body = await _post(session, sim, _enrol_pairs(ids[:1], course))
            assert status == 200
            assert "<b>Fatal error</b>" in body
            assert state.enrolments(course) == []

    async def test_page_next_answers_any_page_and_status(
        self, session: aiohttp.ClientSession
    ) -> None:
        """page_next serves a proxy's own error page with the status it is given."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.page_next(1, "<html>Bad gateway</html>", status=502)
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                502,
                "<html>Bad gateway</html>",
            )
            assert [f.kind for f in sim.faults.injected] == ["page"]

    async def test_page_next_serves_any_content_type(
        self, session: aiohttp.ClientSession
    ) -> None:
        """page_next with a content type serves e.g. JSON in Moodle's error shape."""
        state, ids, course = _site()
        body = '{"exception": "moodle_exception", "errorcode": "x", "message": "m"}'
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.page_next(1, body, content_type="application/json")
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                {"exception": "moodle_exception", "errorcode": "x", "message": "m"},
            )
            assert state.enrolments(course) == []


class TestProxyAnswers:
    """What a proxy in front of Moodle answers: redirects, and 503 with its Retry-After."""

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    async def test_redirect_next_names_the_location(
        self, session: aiohttp.ClientSession, status: int
    ) -> None:
        """redirect_next answers the 3xx with Location; Moodle never sees the request."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            elsewhere = "https://moodle.example.invalid/webservice/rest/server.php"
            sim.faults.redirect_next(1, elsewhere, status)
            async with session.post(
                sim.url + ENDPOINT,
                data=_enrol_pairs(ids[:1], course),
                allow_redirects=False,
            ) as response:
                assert response.status == status
                assert response.headers["Location"] == elsewhere
            assert state.enrolments(course) == []
            assert sim.calls == []
            assert await _post(session, sim, _enrol_pairs(ids[:1], course)) == (
                200,
                None,
            )

    async def test_fail_next_retry_after(self, session: aiohttp.ClientSession) -> None:
        """fail_next(retry_after_s=7) sends Retry-After: 7 with its 503."""
        state, ids, course = _site()
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.fail_next(1, 503, retry_after_s=7)
            async with session.post(
                sim.url + ENDPOINT, data=_enrol_pairs(ids[:1], course)
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "7"


class TestWireRecord:
    """What the simulator keeps of the wire: requests as sent, and the most at once."""

    async def test_requests_recorded_as_sent(
        self, session: aiohttp.ClientSession
    ) -> None:
        """Fields in order and uncut by max_input_vars, faulted requests included."""
        state, ids, course = _site()
        pairs = _enrol_pairs(ids, course)  # 3 + 3 * 3 fields
        async with MoodleSimulator(
            state, token=TOKEN, max_input_vars=5, record_requests=True
        ) as sim:
            sim.faults.drop_next(1)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await _post(session, sim, pairs)
            await _post(session, sim, pairs)
            assert [r.fields for r in sim.requests] == [tuple(pairs)] * 2
            assert [r.method for r in sim.requests] == ["POST", "POST"]
            assert sim.requests[0].function == "enrol_manual_enrol_users"

    async def test_requests_need_recording_on(self) -> None:
        """Without record_requests, reading sim.requests fails instead of showing []."""
        async with MoodleSimulator(MoodleState(), token=TOKEN) as sim:
            with pytest.raises(RuntimeError, match="record_requests"):
                _ = sim.requests

    async def test_max_in_flight_is_the_high_water_mark(
        self, session: aiohttp.ClientSession
    ) -> None:
        """Three held requests at once make max_in_flight 3; it stays after they end."""
        state, _, _ = _site()
        pairs = [("wstoken", TOKEN), ("wsfunction", "core_webservice_get_site_info")]
        async with MoodleSimulator(state, token=TOKEN) as sim:
            sim.faults.delay_next(3, 0.1)
            await asyncio.gather(*(_post(session, sim, pairs) for _ in range(3)))
            await _post(session, sim, pairs)
            assert (sim.max_in_flight, sim.in_flight) == (3, 0)
