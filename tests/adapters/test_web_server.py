"""The operations listener over a fake backend: who may see and do what, and how often."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp
import pytest
from pydantic import SecretStr

from connectors.web import OpsServer, PageView, WebRefused
from connectors.web.guard import Credentials
from operations.status import LetterRow, ParkedRow, PipelineStatus

NOW = datetime(2021, 1, 11, 15, 0, tzinfo=UTC)
TOKEN = "t0ken-for-the-page"  # noqa: S105 - a test credential


class FakeBackend:
    """A StatusBackend that records what the page asked of it."""

    def __init__(self) -> None:
        self.redriven: list[list[str]] = []
        self.reprocessed: list[tuple[str | None, str | None]] = []

    async def view(self) -> PageView:
        """A parked person whose reason carries markup, and one dead letter."""
        return PageView(
            status=PipelineStatus(generated_at=NOW, parked=1, dead_letters=1),
            parked=[
                ParkedRow("P1", "2021/Winter", "<b>no</b> user", "no_user", NOW, 2)
            ],
            dead_letters=[
                LetterRow(
                    "0:7",
                    NOW,
                    "P2",
                    "MoodleNoManualInstance",
                    "wsnoinstance",
                    "x",
                    True,
                )
            ],
        )

    async def redrive(self, positions: Sequence[str]) -> str:
        """Recorded."""
        self.redriven.append(list(positions))
        return "re-queued"

    async def reprocess(self, *, person: str | None, course: str | None) -> str:
        """Recorded."""
        self.reprocessed.append((person, course))
        return "published"

    def report_html(self) -> str | None:
        """No report yet."""
        return None


def csrf_of(page: str) -> str:
    """The anti-forgery token the page embeds."""
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


class TestStartUp:
    """The page is never served unauthenticated beyond loopback."""

    def test_refused_without_credentials_off_loopback(self) -> None:
        """0.0.0.0 with no credentials refuses to start, naming what to set."""
        with pytest.raises(WebRefused, match=r"operations\.token"):
            OpsServer(host="0.0.0.0", backend=FakeBackend())  # noqa: S104 - the point

    def test_health_alone_needs_no_credentials(self) -> None:
        """Without a status page any address may serve health and metrics."""
        OpsServer(host="0.0.0.0")  # noqa: S104 - health only


class TestAccess:
    """Tokens, basic auth, the cross-site check, the rate limit, the headers."""

    async def test_token_basic_csrf_and_rate_limit(self) -> None:
        """A bearer token reads the page; actions need its token; reprocess is limited."""
        backend = FakeBackend()
        clock = [0.0]
        async with OpsServer(
            backend=backend,
            credentials=Credentials(token=SecretStr(TOKEN)),
            reprocess_per_minute=2,
            rate_clock=lambda: clock[0],
        ) as server:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            basic = {
                "Authorization": "Basic "
                + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
            }
            async with aiohttp.ClientSession() as session:
                async with session.get(server.url, headers=basic) as page:
                    assert page.status == 200
                    html = await page.text()
                    assert "&lt;b&gt;no&lt;/b&gt; user" in html
                    assert TOKEN not in html
                    csp = page.headers["Content-Security-Policy"]
                    assert "default-src 'none'" in csp
                    assert "frame-ancestors 'none'" in csp
                csrf = csrf_of(html)
                action = f"{server.url}/actions/reprocess"
                async with session.post(
                    action, data={"person": "P1"}, headers=bearer
                ) as forged:
                    assert forged.status == 403
                for _ in range(2):
                    async with session.post(
                        action,
                        data={"person": "P1", "csrf": csrf},
                        headers=bearer,
                        allow_redirects=False,
                    ) as done:
                        assert done.status == 303
                async with session.post(
                    action, data={"person": "P1", "csrf": csrf}, headers=bearer
                ) as limited:
                    assert limited.status == 429
                clock[0] = 61.0
                async with session.post(
                    action,
                    data={"course": "BSC", "csrf": csrf},
                    headers=bearer,
                    allow_redirects=False,
                ) as again:
                    assert again.status == 303
                async with session.post(
                    f"{server.url}/actions/redrive",
                    data={"position": "0:7", "csrf": csrf},
                    headers={**bearer, "Origin": "http://evil.example"},
                ) as cross:
                    assert cross.status == 403
        assert backend.reprocessed == [("P1", None), ("P1", None), (None, "BSC")]
        assert backend.redriven == []
