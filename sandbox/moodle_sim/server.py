"""An aiohttp server speaking Moodle's REST web-service protocol.

``POST``/``GET {url}/webservice/rest/server.php`` with the params in the query
string or a form body, answered as Moodle 5.1 answers (always HTTP 200; JSON
with ``moodlewsrestformat=json``, XML otherwise). Order of checks as recorded:
token, ``wsfunction`` present, function exists on the site, function in the
token's service, parameters, then the function itself.

    async with MoodleSimulator(token="t0k") as sim:
        ...  # sim.url, sim.state, sim.calls, sim.faults.fail_next(2)

What a client put on the wire is kept with ``record_requests=True``: each
request's form fields as they arrived, in order and before PHP's
``max_input_vars`` cut (``sim.requests``), as a packet capture would show them.

Stopped and started like a real site's web server: ``await sim.stop()``
answers every request in flight as Moodle's shutdown handler does (HTTP 200,
``text/html``, ``Terminated: 15``), then closes the port, so connections are
refused; ``await sim.start()`` listens again on the same port with the state
as it was: the state is Moodle's database, which outlives its web server.

A cut request's work is not applied, as PHP killed before ``COMMIT`` leaves
Moodle's transaction rolled back: the functions run synchronously, with no
await between their first write and their commit, so a cut always lands before
it (in the body read, the queue for a worker, the simulated latency or a
``delay`` fault). A write that committed and then lost its answer to the
shutdown is ``faults.terminate_next(1, after=True)``. With ``state_path``,
``stop()`` saves the whole state there before closing the port, so a process
started on that port afterwards finds the file complete
(``enrolstream moodle-sim --state FILE``; ``MoodleState.load`` reads it).

For a fault-matrix harness in another process, two opt-in extras:
``control_token`` adds loopback-only routes to inject fault-plan entries and
read counters and holdings (``control.py``), and ``audit`` journals every
committed write with what it found and whether its client was still waiting
(``audit.py``). Neither exists unless asked.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from sandbox.moodle_sim import errors
from sandbox.moodle_sim.api import CallContext, WsFunction
from sandbox.moodle_sim.audit import Caller, WriteAudit
from sandbox.moodle_sim.control import add_control_routes
from sandbox.moodle_sim.external import validate_parameters
from sandbox.moodle_sim.faults import (
    HTML_CONTENT_TYPE,
    TERMINATED_PAGE,
    Fault,
    FaultPlan,
    LatencyModel,
)
from sandbox.moodle_sim.protocol import (
    Rendered,
    decode_php_vars,
    parse_form,
    render_error,
    render_success,
    truncate_input_vars,
)
from sandbox.moodle_sim.registry import all_functions
from sandbox.moodle_sim.state import (
    ADMIN_ASSIGNABLE_ROLES,
    ADMIN_USER_ID,
    WSCLIENT_USER_ID,
    MoodleState,
)

ENDPOINT = "/webservice/rest/server.php"
_ROUTING_KEYS = ("wstoken", "wsfunction", "moodlewsrestformat")
# Real functions of the site that the simulator does not implement: calling
# one is "not in the service" (accessexception), not "unknown function".
OTHER_SITE_FUNCTIONS = frozenset(
    {
        "core_enrol_get_users_courses",
        "core_user_update_users",
        "core_user_delete_users",
        "core_course_get_courses",
        "core_group_delete_groups",
        "core_group_get_course_user_groups",
    }
)
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class WireRequest:
    """One request as it arrived: method and form fields (query, then body), uncut."""

    method: str
    fields: tuple[tuple[str, str], ...]

    @property
    def function(self) -> str:
        """The ``wsfunction`` asked for (the last one, as PHP keeps it), or ""."""
        names = [value for key, value in self.fields if key == "wsfunction"]
        return names[-1] if names else ""


@dataclass(frozen=True)
class CallRecord:
    """One call naming a simulated function: rows carried, error code (None: success)."""

    function: str
    rows: int
    errorcode: str | None


class MoodleSimulator:
    """The simulated site on a local port; an async context manager."""

    def __init__(
        self,
        state: MoodleState | None = None,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: LatencyModel | None = None,
        faults: FaultPlan | None = None,
        debug: bool = False,
        max_input_vars: int = 1000,
        admin_token: str | None = None,
        state_path: Path | None = None,
        record_requests: bool = False,
        control_token: str | None = None,
        audit: WriteAudit | None = None,
    ) -> None:
        self.state = state or MoodleState()
        self.state_path = state_path
        self.control_token = control_token
        self.audit = audit
        self.token = token or secrets.token_hex(16)
        if self.state.token(self.token) is None:
            self.state.add_token(self.token, WSCLIENT_USER_ID)
        if admin_token is not None:
            self.state.add_token(
                admin_token, ADMIN_USER_ID, assignable_roles=ADMIN_ASSIGNABLE_ROLES
            )
        self.admin_token = admin_token
        self.latency = latency or LatencyModel.zero()
        self.faults = faults or FaultPlan()
        self.debug = debug
        self.max_input_vars = max_input_vars
        self.calls: list[CallRecord] = []
        # Off by default: a long-running site would keep every batch it was sent.
        self._requests: list[WireRequest] | None = [] if record_requests else None
        self.max_in_flight = 0
        self._host, self._port = host, port
        self._functions = all_functions()
        self._workers = asyncio.Semaphore(self.latency.workers)
        self._runner: web.AppRunner | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.url = ""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether the site listens (between ``start()`` and ``stop()``)."""
        return self._runner is not None

    @property
    def in_flight(self) -> int:
        """Requests being handled now (what ``stop()`` would cut)."""
        return len(self._inflight)

    @property
    def requests(self) -> list[WireRequest]:
        """Every request received, in arrival order (faulted ones included).

        Only with ``record_requests=True``; otherwise ``RuntimeError``, so that
        no test can read an empty list as "nothing was sent".
        """
        if self._requests is None:
            raise RuntimeError("start the simulator with record_requests=True")
        return self._requests

    async def start(self) -> None:
        """Listen on the host and port; again after ``stop()``, on the port it had."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("GET", ENDPOINT, self._handle)
        app.router.add_route("POST", ENDPOINT, self._handle)
        if self.control_token:
            add_control_routes(app, self, self.control_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._stopping = runner, False
        # Port 0 picks a free port once; a restart keeps it, as a site keeps its URL.
        self._port = runner.addresses[0][1]
        self.url = f"http://{self._host}:{self._port}"

    async def stop(self) -> None:
        """Stop like Moodle's web server on SIGTERM, saving to ``state_path`` if set.

        Requests in flight are answered ``Terminated: 15`` (200, ``text/html``)
        and none of them is applied; the state is saved, then the port closed.
        The state stays in ``self.state`` for the next ``start()``.
        """
        runner = self._runner
        if runner is None:
            return
        self._stopping = True
        for handler in self._inflight:
            handler.cancel()
        # From here no request can commit (new ones are answered the page, the
        # cut ones get CancelledError at their next await), so this is the
        # final state, written before the port closes.
        try:
            if self.state_path is not None:
                self.state.save(self.state_path)
        finally:
            # Closes the port, then waits (shutdown_timeout) for the cut
            # requests' answers to be written before closing their connections.
            await runner.cleanup()
            self._runner = None

    async def serve(self, params: dict[str, Any]) -> Rendered:
        """Answer decoded request parameters as the site would, without HTTP.

        For ``sandbox.moodle_sim.inprocess``: the same checks, latency model and
        call records as a request over the socket, minus the fault plan.
        """
        json_format = params.get("moodlewsrestformat") == "json"
        async with self._workers:
            return await self._serve(params, json_format=json_format)

    def call_counts(self) -> Counter[str]:
        """Calls per function name (calls Moodle answered, errors included)."""
        return Counter(call.function for call in self.calls)

    def rows_per_call(self, function: str) -> list[int]:
        """Rows carried by each call of ``function``, in arrival order."""
        return [call.rows for call in self.calls if call.function == function]

    # -- request handling -------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return _terminated()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request handler runs outside a task")
        # aiohttp runs each request in its own task: stop() cancels it while it
        # is in here, and the handler answers as PHP's shutdown handler does.
        self._inflight.add(task)
        self.max_in_flight = max(self.max_in_flight, len(self._inflight))
        try:
            return await self._answer(request)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            task.uncancel()
            return _terminated()
        finally:
            self._inflight.discard(task)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self._requests is not None:
            query, body = await _read_pairs(request)
            self._requests.append(WireRequest(request.method, (*query, *body)))
        # Stamped before any injected delay; the client is gone once aiohttp
        # has seen its connection close (a request that outlived its timeout).
        caller = Caller(time.time(), lambda: request.transport is None)
        fault = self.faults.take()
        if fault is not None and not fault.after and fault.kind != "delay":
            return await self._fail(request, fault)
        # The body is read before a delay, as a web server hands PHP the whole
        # request before the script runs: a request held past its client's
        # timeout is still applied once the hold ends (the client long gone).
        params = await self._read_params(request)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        json_format = params.get("moodlewsrestformat") == "json"
        async with self._workers:
            rendered = await self._serve(params, json_format=json_format, caller=caller)
        if fault is not None and fault.after:
            return await self._fail(request, fault)
        return web.Response(
            body=rendered.body.encode(), headers={"Content-Type": rendered.content_type}
        )

    @staticmethod
    async def _fail(request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise web.HTTPServiceUnavailable  # never written: the socket is gone
        if fault.kind == "page":
            return _html_page(fault.body, fault.status, fault.content_type)
        if fault.kind == "redirect":
            reason = HTTPStatus(fault.status).phrase
            page = f"<html><body><h1>{fault.status} {reason}</h1></body></html>"
            headers = {"Location": fault.location, "Content-Type": HTML_CONTENT_TYPE}
            return web.Response(status=fault.status, text=page, headers=headers)
        page = f"<html><body><h1>{fault.status}</h1>Service unavailable</body></html>"
        return web.Response(
            status=fault.status,
            text=page,
            content_type="text/html",
            headers={"Retry-After": str(fault.retry_after_s)}
            if fault.status == HTTPStatus.SERVICE_UNAVAILABLE
            else None,
        )

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        """PHP's ``$_GET`` + ``$_POST`` (POST wins), each cut at max_input_vars."""
        limit = self.max_input_vars
        query_pairs, pairs = await _read_pairs(request)
        query = decode_php_vars(truncate_input_vars(query_pairs, limit))
        body: dict[str, Any] = {}
        if pairs:
            body = decode_php_vars(truncate_input_vars(pairs, limit))
        return {**query, **body}

    async def _serve(
        self, params: dict[str, Any], *, json_format: bool, caller: Caller | None = None
    ) -> Rendered:
        name = params.get("wsfunction")
        function: WsFunction | None = None
        rows = 0
        try:
            ctx, function, args = self._resolve(params)
            rows = function.rows(args)
            await asyncio.sleep(self.latency.call_cost(function.name, rows))
            watch = None
            if self.audit is not None and caller is not None:
                watch = self.audit.before(function.name, args, self.state, caller)
            result = function.handler(ctx, args)
            if watch is not None and self.audit is not None:
                self.audit.after(watch, self.state)
            read_s = self.latency.read_cost(function.name, result)
            if read_s:
                await asyncio.sleep(read_s)
        except errors.MoodleError as error:
            if function is None:
                await asyncio.sleep(self.latency.per_call_s)
            self._record(name, rows, error.errorcode)
            return render_error(error, json_format=json_format, debug=self.debug)
        self._record(name, rows, None)
        return render_success(function.returns, result, json_format=json_format)

    def _resolve(self, params: dict[str, Any]) -> tuple[CallContext, WsFunction, Any]:
        token = self.state.token(str(params.get("wstoken", "")))
        if token is None or isinstance(params.get("wstoken"), dict):
            raise errors.invalid_token()
        name = params.get("wsfunction")
        if not isinstance(name, str) or not name:
            raise errors.invalid_parameter("Missing wsfunction")
        function = self._functions.get(name)
        if function is not None and not function.exists_on(
            self.state.site.plugins, self.state.site.plugin_version
        ):
            function = None  # a plugin this site has not installed
        if function is None and name not in OTHER_SITE_FUNCTIONS:
            raise errors.missing_record("external_functions", name, "name")
        if function is None or name not in token.functions:
            raise errors.access_exception(name)
        args = {k: v for k, v in params.items() if k not in _ROUTING_KEYS}
        validated = validate_parameters(function.parameters, args)
        context = CallContext(self.state, token, self.url, self._functions)
        return context, function, validated

    def _record(self, name: Any, rows: int, errorcode: str | None) -> None:
        if isinstance(name, str) and name in self._functions:
            self.calls.append(CallRecord(name, rows, errorcode))


async def _read_pairs(
    request: web.Request,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The query string's and the form body's fields, in order, none dropped.

    aiohttp keeps the body once read, so this may run twice for one request.
    """
    query = list(request.query.items())
    if request.method == "POST" and request.content_type == _URLENCODED:
        # Parsed here, not by request.post(): aiohttp refuses > 1000 fields
        # with 413, where PHP silently keeps max_input_vars + 1 of them.
        text = (await request.read()).decode("utf-8", errors="replace")
        return query, parse_form(text)
    if request.method == "POST" and request.content_type == _MULTIPART:
        form = await request.post()
        return query, [(k, v) for k, v in form.items() if isinstance(v, str)]
    return query, []


def _html_page(
    body: str, status: int = HTTPStatus.OK, content_type: str = HTML_CONTENT_TYPE
) -> web.Response:
    """A page where Moodle's answer belongs; HTML with PHP's default type unless told."""
    return web.Response(
        status=status, text=body, headers={"Content-Type": content_type}
    )


def _terminated() -> web.Response:
    """What a request cut by ``stop()`` gets: the page, then the connection closes.

    The PHP process that answered is gone, so the connection cannot be reused.
    """
    response = _html_page(TERMINATED_PAGE)
    response.force_close()
    return response
