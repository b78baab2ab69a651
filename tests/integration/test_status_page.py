"""The status page in a real browser: Debian's chromium driven by Playwright.

A real run (sandbox → broker → consumer → Moodle simulator) leaves a parked
person and a dead letter; the page shows both, its redrive button lands the
enrolment once the cause is fixed, its reprocess action publishes the person's
state from PowerCampus, and it refuses strangers and cross-site forms. The
screenshot is kept as ``var/test-output/status-page.png``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from connectors.kafka import read_topic
from connectors.web import OpsServer
from connectors.web.guard import Credentials
from enrolstream.settings import Settings
from enrolstream.wiring.apply import read_dead_letters
from enrolstream.wiring.status_page import ConsumerStatusPage, StatusMetrics
from operations.latency import LatencyWindow
from schemas.events import EnrolmentEvent
from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, NO_ACCOUNT, Pipeline, open_pipeline

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed"
)
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or ""
if not CHROMIUM:
    pytest.skip(
        "Debian's chromium is not installed: `apt-get install chromium` (./run test "
        "installs it when run as root)",
        allow_module_level=True,
    )

USER, PASSWORD = "registrar", "page-s3cret"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test-output"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def page_settings(pipe: Pipeline, capture: CaptureStack, tmp_path: Path) -> Settings:
    """The pipeline's settings, pointed at the capture stack's sandbox and checkpoint."""
    base = pipe.settings
    return base.model_copy(
        update={
            "source": base.source.model_copy(
                update={
                    "name": "pc",
                    "sandbox": base.source.sandbox.model_copy(
                        update={"path": capture.path}
                    ),
                }
            ),
            "poller": base.poller.model_copy(
                update={
                    "state_path": capture.state_path,
                    "live_terms": ("2021/Winter",),
                }
            ),
            "reconcile": base.reconcile.model_copy(
                update={"report_dir": tmp_path / "reports"}
            ),
        }
    )


@pytest.fixture(name="browser")
async def _browser() -> AsyncIterator[Any]:
    """Headless chromium, launched through Playwright."""
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(name="attacker")
async def _attacker() -> AsyncIterator[dict[str, str]]:
    """Another site (another port) whose page holds a form aimed at the status page."""
    pages: dict[str, str] = {}

    async def serve(_: web.Request) -> web.Response:
        return web.Response(text=pages["html"], content_type="text/html")

    app = web.Application()
    app.router.add_get("/", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    pages["url"] = f"http://127.0.0.1:{port}/"
    yield pages
    await runner.cleanup()


async def until_idle(runner: Any) -> None:
    """Let the consumer apply everything published so far."""
    await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)


class TestStatusPageInABrowser:
    """What an integration team sees and does on the page."""

    async def test_parked_dead_letter_redrive_reprocess(
        self,
        capture: CaptureStack,
        tmp_path: Path,
        browser: Any,
        attacker: dict[str, str],
    ) -> None:
        """The page shows a real run's parked person and dead letter and acts on them."""
        async with open_pipeline(capture, tmp_path, people=(ALICE, BOB)) as pipe:
            settings = page_settings(pipe, capture, tmp_path)
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, BOB, "BSC5102"),
                registration(3, NO_ACCOUNT, "BSC5102"),  # no Moodle user: parked
                registration(4, BOB, "NOMAN101"),  # no manual instance: dead letter
            )
            await capture.poll()
            window = LatencyWindow()
            async with pipe.runner(StatusMetrics(window)) as runner:
                await until_idle(runner)
                page_backend = ConsumerStatusPage(
                    settings, pipe.bootstrap, source=capture.source, window=window
                )
                page_backend.attach(runner, None)
                credentials = Credentials(username=USER, password=SecretStr(PASSWORD))
                async with OpsServer(
                    backend=page_backend, credentials=credentials
                ) as server:
                    await self._strangers_refused(server.url)
                    context = await browser.new_context(
                        extra_http_headers={"Authorization": BASIC},
                        viewport={"width": 1280, "height": 900},
                    )
                    page = await context.new_page()
                    await page.goto(server.url)
                    parked = page.locator("#parked")
                    assert await parked.locator("td", has_text=NO_ACCOUNT).count() == 1
                    assert "no Moodle user has idnumber" in await parked.inner_text()
                    letters = page.locator("#dead-letters")
                    assert "Dead letters (1)" in await letters.inner_text()
                    assert "wsnoinstance" in await letters.inner_text()
                    assert "PowerCampus → Moodle" in await page.inner_text("header")
                    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                    await page.screenshot(
                        path=str(SCREENSHOTS / "status-page.png"), full_page=True
                    )

                    await self._cross_site_refused(context, attacker, server.url)
                    assert len(await read_dead_letters(settings, pipe.bootstrap)) == 1

                    await self._redrive(page, letters, pipe, runner, settings)
                    await self._reprocess(page, pipe, runner, settings)
                    await page.goto(server.url)
                    assert "Nobody is parked." in await page.inner_text("main")
                    await page.screenshot(
                        path=str(SCREENSHOTS / "status-page-after.png"), full_page=True
                    )
                    body = await page.content()
                    assert PASSWORD not in body
                    assert pipe.sim.token not in body
                    await context.close()

    @staticmethod
    async def _redrive(
        page: Any, letters: Any, pipe: Pipeline, runner: Any, settings: Settings
    ) -> None:
        """The cause fixed in Moodle, the letter redriven from the page, applied."""
        noman = pipe.course("NOMAN")
        pipe.sim.state.set_manual_instance(noman, "enabled")
        await letters.get_by_role("button", name="Redrive").first.click()
        await page.wait_for_url("**/?message=*")
        flash = await page.inner_text(".flash")
        assert "re-queued 1 events for 1 dead letters" in flash
        await until_idle(runner)
        assert pipe.sim.state.is_active(noman, pipe.userid(BOB))
        assert await read_dead_letters(settings, pipe.bootstrap) == []

    async def _reprocess(
        self, page: Any, pipe: Pipeline, runner: Any, settings: Settings
    ) -> None:
        """The missing account created, the person reprocessed from the page."""
        pipe.sim.state.add_user(
            NO_ACCOUNT.lower(), idnumber=NO_ACCOUNT[1:], firstname="Ned"
        )
        await page.fill("input[name=person]", NO_ACCOUNT)
        await page.get_by_role("button", name="Reprocess").first.click()
        await page.wait_for_url("**/?message=*")
        assert "1 events for 1 persons" in await page.inner_text(".flash")
        published = await self._reprocess_events(settings, pipe.bootstrap)
        assert [e.people_code_id for e in published] == [NO_ACCOUNT]
        await until_idle(runner)
        assert pipe.userid(NO_ACCOUNT) in pipe.moodle()[pipe.course("BSC")]

    @staticmethod
    async def _strangers_refused(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as anonymous:
                assert anonymous.status == 401
                assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
            wrong = {
                "Authorization": "Basic " + base64.b64encode(b"registrar:no").decode()
            }
            async with session.get(url, headers=wrong) as refused:
                assert refused.status == 401
            async with session.post(
                f"{url}/actions/redrive", data={"position": "all"}
            ) as post:
                assert post.status == 401

    @staticmethod
    async def _cross_site_refused(
        context: Any, attacker: dict[str, str], url: str
    ) -> None:
        attacker["html"] = (
            f'<form method="post" action="{url}/actions/redrive">'
            '<input type="hidden" name="position" value="all">'
            '<input type="hidden" name="csrf" value="guessed">'
            '<button type="submit">win a prize</button></form>'
        )
        page = await context.new_page()
        await page.goto(attacker["url"])
        async with page.expect_response(f"{url}/actions/redrive") as answer:
            await page.click("button")
        response = await answer.value
        assert response.status == 403
        assert "cross-site request refused" in await response.text()
        await page.close()

    @staticmethod
    async def _reprocess_events(
        settings: Settings, bootstrap: str
    ) -> list[EnrolmentEvent]:
        records = await read_topic(
            {"bootstrap_servers": bootstrap}, settings.kafka.events_topic
        )
        events = [EnrolmentEvent.model_validate_json(r.value or b"") for r in records]
        return [e for e in events if (e.snapshot_id or "").startswith("reprocess-")]
