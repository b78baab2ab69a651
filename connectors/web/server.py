"""``OpsServer``: one aiohttp listener per process for operators and their tools.

Routes:

* ``GET /livez``: 200 while ``live()`` says the process's loop goes round; 503
  when it stalled. Asks no dependency (a restart would not bring one back).
* ``GET /readyz``: every readiness probe (``operations.health``); 200 when all
  pass, else 503; the body names each check and, for a failed one, why.
* ``GET /metrics``: the Prometheus exposition (when the process has metrics).
* with a ``StatusBackend``: ``GET /`` the status page, ``GET /reports/latest`` the
  last reconcile's HTML report, ``POST /actions/redrive`` and ``POST
  /actions/reprocess``. These need the configured credentials, and actions pass
  the cross-site check (``connectors.web.guard``); reprocess is rate-limited.

Health and metrics need no credentials (Kubernetes probes and Prometheus
scrapers present none) and show no person, course or secret. Without
credentials the status page is only served on a loopback address:
``WebRefused`` otherwise. Responses carry a strict Content-Security-Policy (no
script may run, nothing may be fetched from elsewhere, no framing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, Self
from urllib.parse import quote

import structlog
from aiohttp import web

from connectors.web.guard import Credentials, CsrfGuard, RateLimit, authorised
from connectors.web.page import PageView, render_page
from operations.health import Probe, run_probes

__all__ = [
    "OpsServer",
    "PortUnavailable",
    "StatusBackend",
    "WebRefused",
    "is_loopback",
]

log = structlog.get_logger()

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class WebRefused(Exception):
    """The server cannot start as configured (credentials missing, port taken)."""


class PortUnavailable(WebRefused):
    """The address cannot be bound (the port is taken, or not ours to bind)."""


class StatusBackend(Protocol):
    """What the status page shows and what its actions do (the wiring implements it)."""

    async def view(self) -> PageView:
        """Everything the page shows, as of now."""
        ...

    async def redrive(self, positions: Sequence[str]) -> str:
        """Redrive these dead letters (``["all"]``: every one); a sentence saying what."""
        ...

    async def reprocess(self, *, person: str | None, course: str | None) -> str:
        """Decide a person or a course again from PowerCampus now; a sentence saying what.

        Raises ``ValueError`` with a message for a person to read when the
        request cannot be done (an unknown course, nothing found).
        """
        ...

    def report_html(self) -> str | None:
        """The last reconcile's ``report.html``, if there is one."""
        ...


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpsServer:
    """The listener; an async context manager (``url`` once entered)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        live: Callable[[], bool] = lambda: True,
        probes: Mapping[str, Probe] | None = None,
        probe_timeout_s: float = 3.0,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        backend: StatusBackend | None = None,
        credentials: Credentials | None = None,
        reprocess_per_minute: int = 6,
        rate_clock: Callable[[], float] | None = None,
    ) -> None:
        credentials = credentials or Credentials()
        if backend is not None and not credentials.configured and not is_loopback(host):
            raise WebRefused(
                f"the status page would listen on {host} without credentials: set "
                "operations.token (or operations.username and operations.password), or "
                "bind it to 127.0.0.1"
            )
        self.host, self.port = host, port
        self._live = live
        self._probes = dict(probes or {})
        self._probe_timeout_s = probe_timeout_s
        self._metrics = metrics
        self._backend = backend
        self._credentials = credentials
        self._csrf = CsrfGuard()
        self._limit = (
            RateLimit(reprocess_per_minute, rate_clock)
            if rate_clock
            else RateLimit(reprocess_per_minute)
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics_page)
        if self._backend is not None:
            app.router.add_get("/", self._page)
            app.router.add_get("/reports/latest", self._report)
            app.router.add_post("/actions/redrive", self._redrive)
            app.router.add_post("/actions/reprocess", self._reprocess)
        return app

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise PortUnavailable(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._runner = runner
        server = site._server  # noqa: SLF001 - the only way to learn port 0's choice
        sockets = getattr(server, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.port
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        log.info("ops_server_listening", url=self.url, status_page=bool(self._backend))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware and plain routes ------------------------------------------------
    @web.middleware
    async def _headers(
        self,
        request: web.Request,
        handler: Callable[[web.Request], object],
    ) -> web.StreamResponse:
        response = await handler(request)  # type: ignore[misc]
        assert isinstance(response, web.StreamResponse)  # noqa: S101 - aiohttp's contract
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _livez(self, _: web.Request) -> web.Response:
        if self._live():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="the loop has stopped going round\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        results = await run_probes(self._probes, timeout_s=self._probe_timeout_s)
        ready = all(result.ok for result in results)
        lines = [
            f"[{'+' if r.ok else '-'}]{r.name} {'ok' if r.ok else 'failed: ' + r.detail}"
            for r in results
        ]
        body = "\n".join([*lines, "ready" if ready else "not ready"]) + "\n"
        if not ready:
            log.warning(
                "not_ready", failed={r.name: r.detail for r in results if not r.ok}
            )
        return web.Response(status=200 if ready else 503, text=body)

    async def _metrics_page(self, _: web.Request) -> web.Response:
        assert self._metrics is not None  # noqa: S101 - routed only with metrics
        body, content_type = self._metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    # -- the status page ------------------------------------------------------------
    def _refuse_unauthorised(self, request: web.Request) -> web.Response | None:
        if not self._credentials.configured or authorised(
            self._credentials, request.headers
        ):
            return None
        return web.Response(
            status=401,
            text="authentication required\n",
            headers={"WWW-Authenticate": 'Basic realm="enrolstream", charset="UTF-8"'},
        )

    @property
    def backend(self) -> StatusBackend:
        """The status page's backend (routed only when there is one)."""
        assert self._backend is not None  # noqa: S101 - routed only with a backend
        return self._backend

    async def _page(self, request: web.Request) -> web.Response:
        refused = self._refuse_unauthorised(request)
        if refused is not None:
            return refused
        view = await self.backend.view()
        message = request.query.get("message")
        html = render_page(
            view,
            csrf=self._csrf.token,
            message=message,
            error=request.query.get("error") == "1",
        )
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _report(self, request: web.Request) -> web.Response:
        refused = self._refuse_unauthorised(request)
        if refused is not None:
            return refused
        report = self.backend.report_html()
        if report is None:
            return web.Response(status=404, text="no reconcile report found\n")
        return web.Response(text=report, content_type="text/html", charset="utf-8")

    async def _checked_form(
        self, request: web.Request
    ) -> tuple[Mapping[str, str], web.Response | None]:
        refused = self._refuse_unauthorised(request)
        if refused is not None:
            return {}, refused
        form = await request.post()
        values = {key: str(value) for key, value in form.items()}
        own = f"{request.scheme}://{request.host}"
        why = self._csrf.refusal(request.headers, values.get("csrf", ""), own)
        if why is not None:
            log.warning("status_action_refused", path=request.path, reason=why)
            return values, web.Response(status=403, text=why + "\n")
        return values, None

    @staticmethod
    def _back(message: str, *, error: bool = False) -> web.Response:
        location = "/?message=" + quote(message) + ("&error=1" if error else "")
        return web.Response(status=303, headers={"Location": location})

    async def _redrive(self, request: web.Request) -> web.Response:
        form, refused = await self._checked_form(request)
        if refused is not None:
            return refused
        position = form.get("position", "").strip()
        if not position:
            return self._back("nothing to redrive was chosen", error=True)
        message = await self.backend.redrive([position])
        log.info("status_redrive", position=position, result=message)
        return self._back(message)

    async def _reprocess(self, request: web.Request) -> web.Response:
        form, refused = await self._checked_form(request)
        if refused is not None:
            return refused
        person = form.get("person", "").strip() or None
        course = form.get("course", "").strip() or None
        if (person is None) == (course is None):
            return self._back("name one person or one course", error=True)
        if not self._limit.allow():
            return web.Response(
                status=429,
                text=f"at most {self._limit.per_minute} reprocess requests a minute: "
                "try again shortly\n",
                headers={"Retry-After": "60"},
            )
        try:
            message = await self.backend.reprocess(person=person, course=course)
        except ValueError as exc:
            return self._back(str(exc), error=True)
        log.info("status_reprocess", person=person, course=course, result=message)
        return self._back(message)
