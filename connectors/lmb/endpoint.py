"""The endpoint Banner's LMB POSTs to: who may, what it accepts, and what it answers.

Refuses to start (``EndpointRefused``) without a user name and password (HTTP
Basic), and without TLS unless it listens on a loopback address (behind a TLS
proxy): enrol_lmb and SHEBanG accept anyone when their credentials are blank,
and SHEBanG's Digest nonce is never checked, so a captured request replays;
Basic over TLS has neither hole.

Per request, in this order:

* not ``POST`` → 405 (``Allow: POST``); missing or wrong credentials → 401 with
  a Basic challenge, the body unread and nothing published;
* a body over ``max_body_bytes`` → 413, unread (LMB retries it: raise the limit
  and nothing is lost); an empty body, or neither ``RDI-Message-Id`` nor
  ``RDI-Message-SeqNo`` (as SHEBanG) → 400;
* otherwise the intake applies it and the answer waits for Kafka's
  acknowledgements: 200 when applied, recognised as a repeat, or dead-lettered
  (a message we cannot apply must not suspend the feed); 503 with
  ``Retry-After`` when Kafka did not acknowledge (LMB sends it again).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import structlog
from aiohttp import web
from pydantic import SecretStr

from lmb.errors import EndpointRefused, LmbError
from lmb.intake import Receipt

__all__ = ["EndpointOptions", "LmbEndpoint", "Receiver", "is_loopback", "server_tls"]

log = structlog.get_logger()

REALM = "enrolstream LMB"
RETRY_AFTER_S = 5


class Receiver(Protocol):
    """What the endpoint hands each accepted message to (``lmb.intake.LmbIntake``)."""

    async def receive(
        self, body: bytes, *, message_id: str | None, seqno: str | None
    ) -> Receipt:
        """Apply the message; return once Kafka holds what it changed."""
        ...


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """Where the endpoint listens and what it demands."""

    username: str
    password: SecretStr
    host: str = "127.0.0.1"
    port: int = 8470
    path: str = "/lmb"
    max_body_bytes: int = 2 << 20
    tls: ssl.SSLContext | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_tls(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later); ``EndpointRefused`` naming the file."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise EndpointRefused(
            f"lmb.tls_certfile / lmb.tls_keyfile: cannot load {certfile} and "
            f"{keyfile}: {exc}"
        ) from exc
    return context


def check_options(options: EndpointOptions) -> None:
    """``EndpointRefused`` with the reason when the endpoint must not start."""
    if not options.username or not options.password.get_secret_value():
        raise EndpointRefused(
            "lmb.username and lmb.password must both be set: LMB authenticates with "
            "HTTP Basic (the Moodle plugins accept anyone when they are blank)"
        )
    if options.tls is None and not is_loopback(options.host):
        raise EndpointRefused(
            f"lmb.host {options.host} is not a loopback address and no TLS is "
            "configured: set lmb.tls_certfile and lmb.tls_keyfile, or listen on "
            "127.0.0.1 behind a TLS proxy (Basic auth sends the password in clear)"
        )


def _authorised(options: EndpointOptions, headers: Mapping[str, str]) -> bool:
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    username, _, password = decoded.partition(":")
    wanted = options.password.get_secret_value()
    same_user = hmac.compare_digest(username.encode(), options.username.encode())
    same_password = hmac.compare_digest(password.encode(), wanted.encode())
    return same_user & same_password


class LmbEndpoint:
    """The aiohttp listener, an async context manager; ``url`` once entered."""

    #: ``EndpointRefused`` with the reason when these options must not start.
    check = staticmethod(check_options)

    def __init__(self, receiver: Receiver, options: EndpointOptions) -> None:
        check_options(options)
        self.receiver = receiver
        self.options = options
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=self.options.max_body_bytes)
        app.router.add_route("*", self.options.path, self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.options.host,
            self.options.port,
            ssl_context=self.options.tls,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise EndpointRefused(
                f"lmb.port: cannot listen on {self.options.host}:{self.options.port}: "
                f"{exc.strerror}"
            ) from exc
        self._runner = runner
        server = site._server  # noqa: SLF001 - the only way to learn port 0's choice
        sockets = getattr(server, "sockets", None) or ()
        port = int(sockets[0].getsockname()[1]) if sockets else self.options.port
        scheme = "https" if self.options.tls else "http"
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{port}{self.options.path}"
        log.info("lmb_endpoint_listening", url=self.url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Finishes the requests in flight (their answers wait for Kafka) first.
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(
                status=405, text="POST only\n", headers={"Allow": "POST"}
            )
        if not _authorised(self.options, request.headers):
            log.warning(
                "lmb_unauthorised",
                remote=request.remote,
                credentials="Authorization" in request.headers,
            )
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body  # refused: too large or empty
        message_id = request.headers.get("RDI-Message-Id") or None
        seqno = request.headers.get("RDI-Message-SeqNo") or None
        if message_id is None and seqno is None:
            return web.Response(
                status=400, text="RDI-Message-Id or RDI-Message-SeqNo header needed\n"
            )
        try:
            receipt = await self.receiver.receive(
                body, message_id=message_id, seqno=seqno
            )
        except LmbError as exc:
            if not exc.retriable:
                raise
            log.warning("lmb_message_not_applied", reason=str(exc), retry=True)
            return web.Response(
                status=503,
                text="not applied: Kafka did not acknowledge; send it again\n",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return web.Response(text=f"{receipt.answer}: {receipt.events} events\n")

    async def _read(self, request: web.Request) -> bytes | web.Response:
        limit = self.options.max_body_bytes
        too_large = web.Response(status=413, text=f"body over {limit} bytes\n")
        if request.content_length is not None and request.content_length > limit:
            log.warning("lmb_message_too_large", bytes=request.content_length)
            return too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("lmb_message_too_large", bytes=None)
            return too_large
        if not body:
            return web.Response(status=400, text="empty body\n")
        return body
