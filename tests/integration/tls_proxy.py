"""A TLS-terminating proxy in front of a dedicated embedded broker, on loopback.

The embedded broker speaks plaintext only; ``tls_cluster`` puts an asyncio TLS
server in front of it and starts the broker with the proxy's address as its
advertised listener, so every connection a client makes (bootstrap and the
per-broker ones from the metadata) goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sandbox.broker import EmbeddedBroker
from tests.pki import Issued

_CHUNK = 64 * 1024


def server_context(server: Issued, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """The proxy's TLS side; with ``client_ca`` it requires a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsProxy:
    """Accepts TLS on 127.0.0.1 and forwards the bytes to a plaintext port."""

    def __init__(self, context: ssl.SSLContext, target_port: int) -> None:
        self.context = context
        self.target_port = target_port
        self.port = 0
        #: One entry per TLS session accepted: the client certificate's subject or None.
        self.sessions: list[dict[str, Any] | None] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._accepted, "127.0.0.1", 0, ssl=self.context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accepted(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = client_writer.get_extra_info("peercert")
        self.sessions.append(peer or None)
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            await _close(client_writer)
            return
        pumps = {
            asyncio.create_task(_pump(client_reader, broker_writer)),
            asyncio.create_task(_pump(broker_reader, client_writer)),
        }
        try:
            # Either side closing ends the session, as a TCP proxy does.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await _close(broker_writer)
            await _close(client_writer)
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def tls_cluster(
    context: ssl.SSLContext, log_path: Path
) -> AsyncIterator[tuple[str, TlsProxy]]:
    """A fresh broker reachable only through a TLS proxy: (bootstrap servers, proxy)."""
    broker = EmbeddedBroker(log_path)
    async with TlsProxy(context, broker.port) as proxy:
        broker.advertised = f"127.0.0.1:{proxy.port}"
        async with broker:
            yield f"127.0.0.1:{proxy.port}", proxy
