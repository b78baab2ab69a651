"""Control routes of a simulator process, for a fault-matrix harness in another process.

``MoodleSimulator(..., control_token=T)`` (``enrolstream moodle-sim
--control-token T``) adds two routes beside the web-service endpoint; without a
control token they do not exist (404, as on any Moodle). Never enabled unless
asked, and guarded twice: only a loopback peer (127.0.0.1, ::1) is served, and
every request must carry ``Authorization: Bearer T`` (compared in constant time);
anything else gets 403 with no detail.

``POST /_control/faults`` with a JSON object queues entries of the fault plan
(``sandbox.moodle_sim.faults.FaultPlan``) as the in-process API does::

    {"fault": "fail_next", "n": 2, "status": 503}    {"fault": "fail_for", "seconds": 3}
    {"fault": "hang_next", "n": 1, "seconds": 4}     {"fault": "delay_next", "n": 3, "seconds": 0.5}
    {"fault": "drop_next", "n": 1, "after": true}    {"fault": "drop_for", "seconds": 2}
    {"fault": "terminate_next", "n": 1, "after": false}
    {"fault": "php_fatal_next", "n": 1}              {"fault": "clear"}

and answers the status below. Unknown faults or arguments are 400 with the reason.
``hang_next`` holds a request longer than the client's timeout, and Moodle still
does the work afterwards (what the ``audit`` journal marks ``client_gone``).

``GET /_control/status`` answers what the harness waits on: ``in_flight``
(requests being handled, e.g. hung ones), ``pending_faults``, ``injected`` (faults
used so far, by kind), ``calls`` (answered calls by function) and ``enrolments``
(``{courseid: {userid: [status, [roleids]]}}``, every manual enrolment and role
holder of every course): enough to compare the site with the truth without a
web-service read that the fault plan would hit.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.moodle_sim.faults import Fault

if TYPE_CHECKING:
    from sandbox.moodle_sim.server import MoodleSimulator

CONTROL_PREFIX = "/_control"
_LOOPBACK = frozenset({"127.0.0.1", "::1"})

#: fault name -> (FaultPlan method, argument names it takes); ``after`` is keyword-only.
_FAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fail_next": ("fail_next", ("n", "status", "after")),
    "fail_for": ("fail_for", ("seconds", "status")),
    "delay_next": ("delay_next", ("n", "seconds")),
    "hang_next": ("hang_next", ("n", "seconds")),
    "drop_next": ("drop_next", ("n", "after")),
    "drop_for": ("drop_for", ("seconds",)),
    "terminate_next": ("terminate_next", ("n", "after")),
    "php_fatal_next": ("php_fatal_next", ("n", "after")),
    "clear": ("clear", ()),
}
_KEYWORD_ONLY = frozenset({"after"})


def add_control_routes(
    app: web.Application, simulator: MoodleSimulator, token: str
) -> None:
    """Serve ``/_control/faults`` and ``/_control/status`` for ``simulator``."""

    def guarded(
        handler: Callable[[web.Request], Any],
    ) -> Callable[[web.Request], Any]:
        async def check(request: web.Request) -> web.StreamResponse:
            given = request.headers.get("Authorization", "")
            if not is_allowed(request.remote, given, token):
                return web.Response(status=HTTPStatus.FORBIDDEN)
            response: web.StreamResponse = await handler(request)
            return response

        return check

    async def faults(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            inject(simulator, body)
        except (ValueError, TypeError) as error:
            return web.json_response(
                {"error": str(error)}, status=HTTPStatus.BAD_REQUEST
            )
        return web.json_response(status_of(simulator))

    async def status(_: web.Request) -> web.StreamResponse:
        return web.json_response(status_of(simulator))

    app.router.add_route("POST", f"{CONTROL_PREFIX}/faults", guarded(faults))
    app.router.add_route("GET", f"{CONTROL_PREFIX}/status", guarded(status))


def is_allowed(remote: str | None, authorization: str, token: str) -> bool:
    """A loopback peer with ``Authorization: Bearer <token>`` (constant-time compare)."""
    return remote in _LOOPBACK and hmac.compare_digest(
        authorization.encode(), f"Bearer {token}".encode()
    )


def inject(simulator: MoodleSimulator, body: object) -> None:
    """Queue the fault ``body`` describes; ``ValueError``/``TypeError`` say what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("fault"), str):
        raise TypeError('expected a JSON object with "fault"')
    name = body["fault"]
    if name not in _FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {sorted(_FAULTS)}")
    method, accepted = _FAULTS[name]
    extra = set(body) - {"fault", *accepted}
    if extra:
        raise ValueError(f"{name} takes {list(accepted)}, not {sorted(extra)}")
    for key in ("n", "status"):
        if key in body and not isinstance(body[key], int):
            raise TypeError(f"{key} must be an integer")
    if "seconds" in body and not isinstance(body["seconds"], int | float):
        raise TypeError("seconds must be a number")
    positional = [body[k] for k in accepted if k in body and k not in _KEYWORD_ONLY]
    keywords = {k: bool(body[k]) for k in _KEYWORD_ONLY & set(body)}
    getattr(simulator.faults, method)(*positional, **keywords)


def status_of(simulator: MoodleSimulator) -> dict[str, Any]:
    """The counters and holdings ``GET /_control/status`` answers (JSON-ready)."""
    state = simulator.state
    holdings: dict[str, dict[str, Any]] = {}
    for course in state.courses():
        rows = {
            str(view.userid): [view.status, list(view.roleids)]
            for view in state.enrolments(course.id)
        }
        if rows:
            holdings[str(course.id)] = rows
    return {
        "in_flight": simulator.in_flight,
        "pending_faults": simulator.faults.pending,
        "injected": dict(Counter(_label(f) for f in simulator.faults.injected)),
        "calls": dict(simulator.call_counts()),
        "notifications": len(state.notifications),
        "enrolments": holdings,
    }


def _label(fault: Fault) -> str:
    suffix = "_after" if fault.after else ""
    return f"{fault.kind}{suffix}"
