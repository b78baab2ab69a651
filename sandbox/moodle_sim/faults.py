"""How slow and how unreliable the simulated Moodle is.

``LatencyModel`` is the cost of a call, fitted from ``latency.json`` (a real
Moodle 5.1 on ``php -S``): a fixed cost per call plus a cost per enrolment row,
served by ``workers`` PHP workers (one worker: requests queue behind each other).

``FaultPlan`` injects what proxies and overloaded servers do, for the next N
requests or for a time window: an HTTP status (503/502/500) instead of the
answer (503 with ``Retry-After``), a delay before the answer (longer than the
client timeout makes a timeout), a connection closed without any answer, a
redirect (a proxy sending ``http://`` to ``https://``, or a site that moved), or
a page where Moodle's JSON belongs: Moodle's shutdown handler (``Terminated: 15``,
what a request in flight gets when the web server is stopped: recorded as
``outage_stop_in_flight``, its transaction rolled back), a PHP fatal error, both
with HTTP 200, or any page a proxy or debug handler might send (any status and
content type, for instance one that repeats the request, token included).
``after=True`` faults hit *after* Moodle committed the call: the client sees a
failure for work that was done, which is what idempotent retries must survive.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

FaultKind = Literal["status", "delay", "drop", "page", "redirect"]

# Moodle's core_shutdown_manager::signal_handler echoes this on SIGTERM and
# exits; PHP's built-in server sends it with its default headers (200, HTML).
TERMINATED_PAGE = "Terminated: 15\n"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"  # PHP's default
# A PHP fatal error with display_errors and html_errors on (a development
# site): PHP answers 200 with the message and none of Moodle's JSON.
PHP_FATAL_PAGE = (
    "<br />\n<b>Fatal error</b>:  Allowed memory size of 134217728 bytes exhausted"
    " (tried to allocate 20480 bytes) in <b>/var/www/moodle/lib/dml/"
    "moodle_database.php</b> on line <b>1164</b><br />\n"
)

_FIT_SMALL = ("enrol_batch_1", "unenrol_batch_1")
_FIT_LARGE = (
    ("enrol_batch_100", "enrol_batch_1000"),
    ("unenrol_batch_100", "unenrol_batch_1000"),
)
_READ_BASE, _READ_1000 = "site_info_baseline", "get_enrolled_users_1000_default"


@dataclass(frozen=True)
class FunctionCost:
    """One function's recorded cost: per call, per request item, per answer row."""

    per_call_s: float
    per_item_s: float = 0.0
    per_read_row_s: float = 0.0
    #: Where the figures come from (printed by the benchmarks).
    source: str = ""


# Fits of ``latency_rosters.json`` (sequence 6): (function, small, large case).
_BULK = "local_enrolstream_get_course_enrolments"
_PER_FUNCTION = {
    "core_user_get_users_by_field": ("users_by_idnumber_10", "users_by_idnumber_990"),
    "core_enrol_get_enrolled_users": (
        "enrolled_users_roster_fields_x25",
        "enrolled_users_roster_fields_x1000",
    ),
}


def _rows_in(result: object) -> int:
    """Rows an answer carries: a list's items, or the items of a structure's lists."""
    if isinstance(result, list):
        return len(result)
    if isinstance(result, dict):
        return sum(len(v) for v in result.values() if isinstance(v, list))
    return 0


@dataclass(frozen=True)
class LatencyModel:
    """Simulated cost: ``per_call_s + per_row_s * rows (+ per_read_row_s * users read)``.

    ``functions`` replaces that fit, for the functions it names, by each one's
    own recorded cost (``FunctionCost``); the others keep the shared fit.
    """

    per_call_s: float
    per_row_s: float
    workers: int = 1
    per_read_row_s: float = 0.0
    functions: Mapping[str, FunctionCost] = field(default_factory=dict)

    @classmethod
    def zero(cls) -> LatencyModel:
        """No simulated cost (tests of behaviour, not of timing)."""
        return cls(0.0, 0.0)

    @classmethod
    def recorded(cls, *, workers: int = 1) -> LatencyModel:
        """``from_golden`` applied to the shared ``latency.json`` (values kept here)."""
        return cls(0.0336918, 0.0073082, workers, 0.0044057)

    @classmethod
    def from_golden(cls, path: Path, *, workers: int = 1) -> LatencyModel:
        """Fit the model to a recorded ``latency.json``.

        ``per_row_s`` is the slope between the 100- and 1000-row medians (enrol
        and unenrol averaged); ``per_call_s`` is what a 1-row call costs beyond
        one row; ``per_read_row_s`` the slope of a 1000-user roster read.
        """
        results = json.loads(path.read_text())["results"]

        def median(name: str) -> float:
            return float(results[name]["median_s"])

        slopes = [(median(big) - median(small)) / 900 for small, big in _FIT_LARGE]
        per_row = sum(slopes) / len(slopes)
        per_call = sum(median(name) for name in _FIT_SMALL) / len(_FIT_SMALL) - per_row
        per_read_row = (median(_READ_1000) - median(_READ_BASE)) / 1000
        return cls(per_call, per_row, workers, per_read_row)

    def with_functions(self, path: Path) -> LatencyModel:
        """This model, with the functions ``latency_rosters.json`` recorded fitted on their own.

        The bulk roster read: ``per_read_row_s`` from 1 course x 25 to 1 x 1,000
        rows, ``per_item_s`` (a course asked for) from 1 x 1,000 to 40 x 25 (the
        same rows over 40 courses); each other function: the slope between its
        small and large case per answer row.
        """
        results = json.loads(path.read_text())["results"]

        def median(name: str) -> float:
            return float(results[name]["median_s"])

        def rows(name: str) -> int:
            return int(name.rsplit("_", 1)[1].lstrip("x"))

        source = f"measured: {path.name}"
        costs: dict[str, FunctionCost] = {}
        per_row = (median("bulk_1_course_x1000") - median("bulk_1_course_x25")) / 975
        per_course = (
            median("bulk_40_courses_x25") - median("bulk_1_course_x1000")
        ) / 39
        costs[_BULK] = FunctionCost(
            median("bulk_1_course_x25") - 25 * per_row - per_course,
            per_course,
            per_row,
            source,
        )
        for function, (small, large) in _PER_FUNCTION.items():
            slope = (median(large) - median(small)) / (rows(large) - rows(small))
            costs[function] = FunctionCost(
                median(small) - rows(small) * slope, 0.0, slope, source
            )
        return replace(self, functions={**self.functions, **costs})

    def cost(self, rows: int) -> float:
        """Seconds a call carrying ``rows`` items takes before it commits."""
        return self.per_call_s + self.per_row_s * rows

    def call_cost(self, function: str, rows: int) -> float:
        """Seconds ``function`` carrying ``rows`` request items takes before it answers."""
        own = self.functions.get(function)
        if own is None:
            return self.cost(rows)
        return own.per_call_s + own.per_item_s * rows

    def read_cost(self, function: str, result: object) -> float:
        """Seconds added for the rows the answer carries.

        The shared fit charges ``per_read_row_s`` per item of a list answer (it
        was fitted on a roster read); a function of ``functions`` its own rate
        per row of any answer.
        """
        own = self.functions.get(function)
        if own is not None:
            return own.per_read_row_s * _rows_in(result)
        return self.per_read_row_s * len(result) if isinstance(result, list) else 0.0

    def describe(self) -> dict[str, str]:
        """Which cost each function named in ``functions`` uses, and the rest."""
        shared = (
            f"shared fit of latency.json: {self.per_call_s * 1000:.1f} ms/call"
            f" + {self.per_row_s * 1000:.2f} ms/request row"
            f" + {self.per_read_row_s * 1000:.2f} ms/listed item"
        )
        described = {
            name: (
                f"{cost.per_call_s * 1000:.1f} ms/call"
                f" + {cost.per_item_s * 1000:.2f} ms/request item"
                f" + {cost.per_read_row_s * 1000:.3f} ms/answer row; {cost.source}"
            )
            for name, cost in sorted(self.functions.items())
        }
        return {**described, "every other function": shared}


@dataclass(frozen=True)
class Fault:
    """One injected fault: what happens and whether Moodle did the work first.

    ``body`` is what a ``page`` fault answers with (``status`` its HTTP status,
    ``content_type`` its type); ``location`` is where a ``redirect`` points;
    ``retry_after_s`` is the ``Retry-After`` of a 503 ``status`` fault.
    """

    kind: FaultKind
    status: int = 503
    seconds: float = 0.0
    after: bool = False
    body: str = ""
    content_type: str = HTML_CONTENT_TYPE
    location: str = ""
    retry_after_s: int = 1


@dataclass
class _Window:
    fault: Fault
    until: float


class FaultPlan:
    """Faults for the next N requests and/or a time window; safe to change while serving."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queue: deque[Fault] = deque()
        self._window: _Window | None = None
        self.injected: list[Fault] = []

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        after: bool = False,
        retry_after_s: int = 1,
    ) -> None:
        """Answer the next ``n`` requests with HTTP ``status`` (body: a short HTML page).

        A 503 carries ``Retry-After: retry_after_s``, as maintenance pages do.
        """
        fault = Fault("status", status=status, after=after, retry_after_s=retry_after_s)
        self._queue.extend([fault] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` requests ``seconds`` before Moodle handles them."""
        self._queue.extend([Fault("delay", seconds=seconds)] * n)

    def hang_next(self, n: int, seconds: float = 3600.0) -> None:
        """Hold longer than any client timeout; Moodle still does the work afterwards."""
        self.delay_next(n, seconds)

    def drop_next(self, n: int, *, after: bool = False) -> None:
        """Close the connection of the next ``n`` requests without any response."""
        self._queue.extend([Fault("drop", after=after)] * n)

    def page_next(
        self,
        n: int,
        body: str,
        status: int = 200,
        *,
        after: bool = False,
        content_type: str = HTML_CONTENT_TYPE,
    ) -> None:
        """Answer the next ``n`` requests with ``body`` instead of Moodle's answer.

        HTML unless ``content_type`` says otherwise: a proxy's or a debug
        handler's page, even JSON in Moodle's error shape.
        """
        fault = Fault(
            "page", status=status, after=after, body=body, content_type=content_type
        )
        self._queue.extend([fault] * n)

    def redirect_next(self, n: int, location: str, status: int = 301) -> None:
        """Answer the next ``n`` requests with a redirect to ``location`` (any 3xx).

        What a proxy in front of Moodle sends for ``http://`` when the site is
        served on ``https://``, or a web server for a site that moved. Moodle
        never sees the request.
        """
        self._queue.extend([Fault("redirect", status=status, location=location)] * n)

    def terminate_next(self, n: int, *, after: bool = False) -> None:
        """Answer as Moodle's shutdown handler does: 200, ``text/html``, ``Terminated: 15``.

        What a request in flight gets when the web server is stopped; with
        ``after=True`` the call had committed first (its work is kept).
        """
        self.page_next(n, TERMINATED_PAGE, after=after)

    def php_fatal_next(self, n: int, *, after: bool = False) -> None:
        """Answer with a PHP fatal error page (200, ``text/html``), as a debug site does."""
        self.page_next(n, PHP_FATAL_PAGE, after=after)

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer every request with ``status`` for the next ``seconds``."""
        self._window = _Window(Fault("status", status=status), self._clock() + seconds)

    def drop_for(self, seconds: float) -> None:
        """Drop every connection for the next ``seconds``."""
        self._window = _Window(Fault("drop"), self._clock() + seconds)

    def clear(self) -> None:
        """Forget every pending fault and window."""
        self._queue.clear()
        self._window = None

    @property
    def pending(self) -> int:
        """Queued one-shot faults not yet used."""
        return len(self._queue)

    def take(self) -> Fault | None:
        """The fault for the request arriving now, if any (consumes a queued one)."""
        if self._window is not None:
            if self._clock() < self._window.until:
                self.injected.append(self._window.fault)
                return self._window.fault
            self._window = None
        if not self._queue:
            return None
        fault = self._queue.popleft()
        self.injected.append(fault)
        return fault
