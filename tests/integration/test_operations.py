"""Operations on the embedded stack: /metrics during a real run, /readyz as dependencies fail.

A real poller and consumer (sandbox → broker → Moodle simulator) report to
Prometheus registries served by the operations listener; the tests scrape them
over HTTP, as Prometheus would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc.poller import Poller
from connectors.prometheus import PrometheusMetrics
from connectors.web import OpsServer
from enrolstream.wiring.consume import consumer_probes
from enrolstream.wiring.operations import probe_source
from sandbox.broker import EmbeddedBroker
from tests.integration.conftest import TERM, CaptureStack, registration, set_status
from tests.integration.pipeline import (
    ALICE,
    BOB,
    CAROL,
    NO_ACCOUNT,
    Pipeline,
    open_pipeline,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    """GET /metrics and parse it as Prometheus does."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """One metric's samples keyed by one label's value."""
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples.items()
        if sample == name and label in dict(labels)
    }


async def readyz(url: str) -> tuple[int, str]:
    """GET /readyz: the status and the body."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as resp:
        return resp.status, await resp.text()


@pytest.fixture(name="pipe")
async def _pipe(capture: CaptureStack, tmp_path: Path) -> AsyncIterator[Pipeline]:
    """The pipeline: five people with accounts, one without, three mapped courses."""
    async with open_pipeline(capture, tmp_path, people=(ALICE, BOB, CAROL)) as pipe:
        yield pipe


class TestMetricsDuringARun:
    """The counters a scrape shows equal what happened."""

    async def test_histogram_and_counters_match_the_run(
        self, pipe: Pipeline, capture: CaptureStack
    ) -> None:
        """The latency histogram counts every change applied; call counts match the simulator."""
        poll_metrics, apply_metrics = PrometheusMetrics(), PrometheusMetrics()
        poller = Poller(
            capture.source,
            capture.publisher,
            capture.store,
            live_terms=[TERM],
            metrics=poll_metrics,
        )
        pipe.sim.calls.clear()
        async with (
            OpsServer(metrics=poll_metrics.exposition) as poll_server,
            OpsServer(metrics=apply_metrics.exposition) as apply_server,
        ):
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, BOB, "BSC5102"),
                registration(3, CAROL, "COUN6552", "02"),
                registration(4, NO_ACCOUNT, "BSC5102"),  # parked: no Moodle user
                registration(5, ALICE, "NOMAN101"),  # dead letter: no manual instance
            )
            capture.sql(set_status(2, "D"))
            await poller.run_once()
            async with pipe.runner(apply_metrics) as runner:
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                stats = runner.stats
                capture.sql(set_status(2, "A"), set_status(3, "D"))
                await poller.run_once()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
            captured = await scrape(poll_server.url)
            applied = await scrape(apply_server.url)

        # capture: every row read, every event published, the versions
        assert captured[("enrolstream_changes_read_total", ())] == 5 + 2
        published = by_label(captured, "enrolstream_events_published_total", "kind")
        assert published == {"change": 7}
        current = capture.sandbox.current_version()
        assert captured[("enrolstream_saved_version", ())] == current
        assert captured[("enrolstream_source_version", ())] == current
        assert 0 <= captured[("enrolstream_newest_change_age_seconds", ())] < 60

        # apply: one latency observation per change applied in Moodle
        actions = by_label(applied, "enrolstream_moodle_actions_total", "action")
        assert actions == {k: float(v) for k, v in stats.applied.items()}
        # Bob's A then D between two polls is one net insert, dropped: no call;
        # his A again enrols him; Carol's drop takes her role away.
        assert actions == {"enrol": 3.0, "remove_role": 1.0}
        assert applied[("enrolstream_commit_to_applied_seconds_count", ())] == sum(
            actions.values()
        )
        # every web-service call, by function, as the simulator recorded them
        calls: dict[str, float] = {}
        for (name, labels), value in applied.items():
            if name == "enrolstream_moodle_call_duration_seconds_count":
                function = dict(labels)["function"]
                calls[function] = calls.get(function, 0) + value
        assert calls == {f: float(n) for f, n in pipe.sim.call_counts().items()}
        # what Moodle holds agrees with the action counters
        bsc, coun = pipe.course("BSC"), pipe.course("COUN")
        assert pipe.moodle()[bsc] == {pipe.userid(ALICE), pipe.userid(BOB)}
        assert pipe.moodle()[coun] == set()
        parked = by_label(applied, "enrolstream_parked_persons", "reason")
        assert parked == {"no_user": 1.0}
        letters = by_label(applied, "enrolstream_dead_letters_total", "error_type")
        assert letters == {"MoodleNoManualInstance": 1.0}
        lag = by_label(applied, "enrolstream_consumer_lag_records", "partition")
        assert set(lag) == {"0", "1", "2", "3"}  # sampled per partition held


class TestReadiness:
    """/readyz turns 503 with the reason while a dependency fails, and 200 again after."""

    async def test_broker_moodle_and_source(
        self,
        pipe: Pipeline,
        capture: CaptureStack,
        broker_process: EmbeddedBroker | None,
    ) -> None:
        """Pausing the broker, revoking the token, losing the source: each says so."""
        if broker_process is None:
            pytest.skip("needs the embedded broker to pause it")
        probes = {
            "source": probe_source(capture.source),
            **consumer_probes(pipe.settings, pipe.bootstrap, pipe.mapping),
        }
        async with OpsServer(probes=probes, probe_timeout_s=1.5) as server:
            assert await readyz(server.url) == (
                200,
                "[+]source ok\n[+]broker ok\n[+]moodle ok\n[+]mapping ok\nready\n",
            )

            broker_process.pause()
            try:
                status, body = await readyz(server.url)
            finally:
                broker_process.resume()
            assert status == 503
            assert "[-]broker failed: no answer within 1.5 s" in body
            assert "[+]moodle ok" in body
            assert (await readyz(server.url))[0] == 200

            token = pipe.sim.state.revoke_token(pipe.sim.token)
            assert token is not None
            status, body = await readyz(server.url)
            assert status == 503
            assert "[-]moodle failed: Moodle refused the token" in body
            assert pipe.sim.token not in body
            pipe.sim.state.add_token(token.token, token.userid)
            assert (await readyz(server.url))[0] == 200

            moved = capture.path.with_suffix(".away")
            await capture.source.close()
            capture.path.rename(moved)
            try:
                status, body = await readyz(server.url)
            finally:
                moved.rename(capture.path)
            assert status == 503
            assert "[-]source failed: PowerCampus unreachable" in body
            assert (await readyz(server.url))[0] == 200

    async def test_livez_asks_no_dependency(
        self, broker_process: EmbeddedBroker | None
    ) -> None:
        """/livez answers from the loop's heartbeat alone, even with the broker frozen."""
        if broker_process is None:
            pytest.skip("needs the embedded broker to pause it")
        beating = [True]
        async with OpsServer(live=lambda: beating[0]) as server:
            broker_process.pause()
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{server.url}/livez") as ok:
                        assert ok.status == 200
                    beating[0] = False
                    async with session.get(f"{server.url}/livez") as stalled:
                        assert stalled.status == 503
            finally:
                broker_process.resume()
