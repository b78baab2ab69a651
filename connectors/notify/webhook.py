"""Alarm notices as a JSON POST that Slack and Microsoft Teams incoming webhooks take.

The body is ``{"text": "<subject>\\n<message>", "enrolstream": {...}}``: Slack's
incoming webhooks and Teams' incoming-webhook connector show ``text``; the
``enrolstream`` object carries the same notice as fields for any other receiver
(alarm, state, message, raised_at, at). The URL is a secret (it carries the
receiver's key): it never appears in a log line or an error.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import SecretStr

from operations.alarm import Notice
from operations.watch import NotificationFailed

__all__ = ["WebhookNotifier", "webhook_payload"]


def webhook_payload(notice: Notice, *, label: str) -> dict[str, Any]:
    """The JSON body for one notice."""
    return {
        "text": f"{notice.subject(label)}\n{notice.message}",
        "enrolstream": {
            "alarm": notice.alarm,
            "state": notice.kind,
            "message": notice.message,
            "raised_at": notice.raised_at.isoformat(),
            "at": notice.at.isoformat(),
        },
    }


class WebhookNotifier:
    """``Notifier`` that POSTs JSON to one URL."""

    channel = "webhook"

    def __init__(self, url: SecretStr, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        """Never shows the URL."""
        return "WebhookNotifier(url=**********)"

    async def send(self, notice: Notice, *, label: str) -> None:
        """POST one notice; ``NotificationFailed`` unless the receiver answers 2xx."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self._url.get_secret_value(),
                    json=webhook_payload(notice, label=label),
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotificationFailed(f"webhook: {type(exc).__name__}") from exc
        if not 200 <= status < 300:  # noqa: PLR2004 - the 2xx class
            raise NotificationFailed(f"webhook answered HTTP {status}")
