"""The Moodle web-service (REST) client; the one module of ``consumers`` using aiohttp.

Contract:
* every request is ``POST {url}/webservice/rest/server.php``, form-encoded, with
  ``wstoken`` first (PHP drops fields past ``max_input_vars``; a dropped token
  reads as ``invalidtoken``), then ``wsfunction`` and ``moodlewsrestformat=json``;
* no request carries more than ``max_input_vars`` form fields;
* at most ``concurrency`` requests are in flight; each has ``request_timeout_s``;
* redirects are never followed: on a 307/308 aiohttp would re-post the body, token
  included, to whatever host ``Location`` names. A 3xx is ``MoodleBadResponse``
  (configure the final address); an ``http://`` URL to a host other than loopback
  is warned about once at start-up (the token then travels in clear);
* every answer is checked: Moodle reports errors as HTTP 200 with a JSON object
  holding ``exception``; these, HTTP failures and transport failures become the
  typed errors of ``consumers.errors`` (``raise ... from`` the driver's error);
* the token never appears in a log line, an exception message or a ``repr``:
  logs carry the function name and row/field counts only;
* every call sent is reported to ``metrics`` (``Metrics.moodle_call``) with its
  function, its outcome (``ok``, ``rejected``, ``auth``, ``unavailable``,
  ``bad_response``, or ``cancelled`` when the caller gave up waiting; see
  ``call_outcome``) and its duration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Self
from urllib.parse import urlencode

import aiohttp
import structlog
from yarl import URL

from connectors.moodle.accounts import MoodleAccountWrites
from connectors.moodle.actions import MoodleWrites
from connectors.moodle.batch import ENROL_ROW_FIELDS
from connectors.moodle.errors import (
    MoodleAuthError,
    MoodleBadResponse,
    MoodleError,
    MoodleRejected,
    MoodleUnavailable,
    classify_moodle_error,
    is_moodle_error_body,
)
from connectors.moodle.form import ROUTING_FIELDS, encode_params
from connectors.moodle.reads import MoodleReads
from connectors.moodle.structure import MoodleStructure
from operations.metrics import NO_METRICS, Metrics

if TYPE_CHECKING:
    from types import TracebackType

    from pydantic import SecretStr

__all__ = [
    "REST_PATH",
    "MoodleClient",
    "check_answer",
    "map_aiohttp_errors",
    "sends_token_in_clear",
]

log = structlog.get_logger()

REST_PATH = "/webservice/rest/server.php"
_NOT_JSON = object()
_EXCERPT_CHARS = 80
_REDACTED = "<redacted>"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


@asynccontextmanager
async def map_aiohttp_errors() -> AsyncIterator[None]:
    """Translate transport failures into ``MoodleUnavailable`` (retriable).

    Timeouts, refused or dropped connections, truncated bodies and every other
    ``aiohttp.ClientError``: the request may or may not have been applied.
    """
    try:
        yield
    except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError
        raise MoodleUnavailable("request timed out") from exc
    except aiohttp.ClientConnectionError as exc:
        raise MoodleUnavailable(f"connection failed: {type(exc).__name__}") from exc
    except aiohttp.ClientError as exc:
        raise MoodleUnavailable(f"HTTP client error: {type(exc).__name__}") from exc


def sends_token_in_clear(url: URL | str) -> bool:
    """True when requests to ``url`` carry the token unencrypted over a network.

    That is plain ``http`` to any host but loopback (127.0.0.0/8, ::1, localhost).
    """
    url = URL(url)
    if url.scheme != "http":
        return False
    host = (url.host or "").lower()
    if host in _LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it resolves somewhere on the network
        return True


def _redirect_target(endpoint: URL, location: str | None) -> str:
    """Where a redirect points, resolved, without query, fragment or credentials."""
    if not location:
        return "(no Location header)"
    try:
        target = endpoint.join(URL(location))
    except ValueError:
        return "(an unparseable Location header)"
    return str(
        target.with_query(None).with_fragment(None).with_user(None).with_password(None)
    )


def _excerpt(text: str) -> str:
    """The start of an answer, on one line, for a log line or an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…"


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is not honoured (None)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0)


def call_outcome(error: MoodleError) -> str:
    """The ``outcome`` label of a call that ended with ``error``."""
    if isinstance(error, MoodleRejected):
        return "rejected"
    if isinstance(error, MoodleAuthError):
        return "auth"
    if isinstance(error, MoodleUnavailable):
        return "unavailable"
    return "bad_response"


class MoodleClient(MoodleReads, MoodleWrites, MoodleAccountWrites, MoodleStructure):
    """Async context manager around one ``aiohttp.ClientSession`` to one Moodle site.

    ``async with MoodleClient(url, token) as moodle: await moodle.apply(actions)``.
    """

    def __init__(
        self,
        url: str,
        token: SecretStr,
        *,
        max_input_vars: int = 1000,
        concurrency: int = 4,
        request_timeout_s: float = 30.0,
        status_function: str | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        """``status_function``: ``SET_STATUS`` when the site has the companion
        plugin's function (see ``MoodleWrites.status_function``); ``metrics``
        hears of every call sent."""
        base = URL(url)
        if base.scheme not in {"http", "https"} or not base.host:
            raise ValueError(f"Moodle URL must be http(s)://host[/path], got {url!r}")
        if max_input_vars < ROUTING_FIELDS + ENROL_ROW_FIELDS:
            raise ValueError("max_input_vars is too small for a single enrol row")
        if concurrency < 1 or request_timeout_s <= 0:
            raise ValueError("concurrency must be >= 1 and request_timeout_s > 0")
        self._endpoint = base.with_path(base.path.rstrip("/") + REST_PATH)
        self._token = token
        self.max_input_vars = max_input_vars
        self.concurrency = concurrency
        self.status_function = status_function
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.metrics = metrics

    def __repr__(self) -> str:
        return (
            f"MoodleClient(url={str(self._endpoint)!r}, "
            f"concurrency={self.concurrency}, max_input_vars={self.max_input_vars})"
        )

    async def __aenter__(self) -> Self:
        if sends_token_in_clear(self._endpoint):
            log.warning(
                "moodle_token_in_clear",
                url=str(self._endpoint),
                hint="use https:// for a Moodle that is not on this machine",
            )
        # The semaphore, not the connector's pool limit, bounds requests in flight.
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """Call ``function`` once; return the decoded JSON answer (``None`` for null).

        Raises ``ValueError`` if the request would exceed ``max_input_vars`` fields
        (split it first), ``MoodleUnavailable``, ``MoodleAuthError``,
        ``MoodleBadResponse`` or a ``MoodleRejected`` subclass.
        """
        fields = encode_params(params)
        if ROUTING_FIELDS + len(fields) > self.max_input_vars:
            raise ValueError(
                f"{function}: {ROUTING_FIELDS + len(fields)} form fields exceed "
                f"max_input_vars={self.max_input_vars}"
            )
        if self._session is None:
            raise RuntimeError("MoodleClient used outside 'async with'")
        token = self._token.get_secret_value()
        body = urlencode(
            [
                ("wstoken", token),
                ("wsfunction", function),
                ("moodlewsrestformat", "json"),
                *fields,
            ]
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        async with self._semaphore:
            started = time.perf_counter()
            outcome = "cancelled"  # unless it answers or fails below
            try:
                answer = await self._post(function, body, headers, token, len(fields))
                outcome = "ok"
            except MoodleError as exc:
                outcome = call_outcome(exc)
                raise
            finally:
                self.metrics.moodle_call(
                    function, outcome, time.perf_counter() - started
                )
            return answer

    async def _post(
        self,
        function: str,
        body: str,
        headers: Mapping[str, str],
        token: str,
        field_count: int,
    ) -> object:
        """One POST and its checked answer (the caller holds the semaphore)."""
        if self._session is None:
            raise RuntimeError("MoodleClient used outside 'async with'")
        async with map_aiohttp_errors():
            log.debug("moodle_request", function=function, fields=field_count)
            # Never follow: a 307/308 would re-post the token to another address.
            async with self._session.post(
                self._endpoint, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                location = resp.headers.get("Location")
                text = await resp.text()
        if 300 <= status < 400:  # noqa: PLR2004 - the HTTP 3xx class
            target = self._redact(_redirect_target(self._endpoint, location), token)
            log.warning("moodle_redirect", function=function, status=status)
            raise MoodleBadResponse(
                f"{function}: Moodle answered a redirect to {target}; "
                "set moodle.url to the final address",
                status=status,
            )
        return check_answer(function, status, retry_after, self._redact(text, token))

    @staticmethod
    def _redact(text: str, token: str) -> str:
        # A misbehaving proxy or debug page could echo the request; never let it out.
        return text.replace(token, _REDACTED) if token else text


def check_answer(
    function: str, status: int, retry_after: str | None, text: str
) -> object:
    """Moodle's decoded answer to ``function``, or the typed error it stands for.

    Pure but for logging: any answer that is not Moodle's JSON (whatever its
    status) is ``MoodleUnavailable``; Moodle's error object (sent with HTTP 200)
    is classified by ``classify_moodle_error``. Also used by the in-process
    transport that tests drive the simulator through.
    """
    try:
        decoded: object = json.loads(text)
    except json.JSONDecodeError:
        decoded = _NOT_JSON
    if status != 200 or decoded is _NOT_JSON:  # noqa: PLR2004 - REST answers 200
        # A 5xx, a proxy's page, PHP's fatal-error page, Moodle's shutdown
        # handler ("Terminated: 15" with 200 while its server stops): not
        # Moodle's answer to the request, which may or may not have run.
        log.warning(
            "moodle_unavailable",
            function=function,
            status=status,
            answer=_excerpt(text),
        )
        raise MoodleUnavailable(
            f"{function}: HTTP {status}, not Moodle's JSON answer ({_excerpt(text)!r})",
            retry_after_s=_retry_after_s(retry_after),
        )
    if is_moodle_error_body(decoded):
        error = classify_moodle_error(decoded, function=function)
        log.warning(
            "moodle_error",
            function=function,
            error=type(error).__name__,
            errorcode=decoded.get("errorcode"),
        )
        raise error
    return decoded
