"""What LMB does with its messages: POST each, in order, and send it again until answered 2xx."""

from __future__ import annotations

import asyncio
import base64
import ssl
from types import TracebackType
from typing import Self

import aiohttp


class LmbClient:
    """POSTs messages with the RDI headers and HTTP Basic, as LMB does."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "text/xml"}
        self.tls = tls
        self.sequence = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, body: bytes, message_id: str) -> tuple[int, str]:
        """One attempt: the HTTP status and body (a refused connection raises)."""
        if self._session is None:
            raise RuntimeError("use the client inside `async with`")
        self.sequence += 1
        headers = {
            **self.headers,
            "RDI-Message-Id": message_id,
            "RDI-Message-SeqNo": str(self.sequence),
        }
        async with self._session.post(
            self.url, data=body, headers=headers, ssl=self.tls or True
        ) as response:
            return response.status, await response.text()

    async def send(
        self,
        body: bytes,
        message_id: str,
        *,
        attempts: int = 200,
        pause_s: float = 0.05,
    ) -> str:
        """POST until answered 2xx (LMB's retry); the answer's text."""
        for _ in range(attempts):
            try:
                status, text = await self.post(body, message_id)
            except aiohttp.ClientError:
                status, text = 0, ""
            if 200 <= status < 300:  # noqa: PLR2004 - HTTP success
                return text
            await asyncio.sleep(pause_s)
        raise TimeoutError(
            f"message {message_id} not accepted after {attempts} attempts"
        )
