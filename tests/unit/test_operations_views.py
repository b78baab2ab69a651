"""Health probes, the latency window and the at-a-glance status, as data."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from operations.health import Heartbeat, ProbeFailed, run_probes
from operations.latency import LatencyWindow
from operations.status import PipelineStatus, ReconcileGlance, render_text

NOW = datetime(2021, 1, 11, 15, 0, tzinfo=UTC)


class TestProbes:
    """Readiness probes report each dependency by name, with the reason."""

    async def test_each_probe_by_name(self) -> None:
        """A passing, a failing and a hanging probe give ok, the reason, a timeout."""
        hang = asyncio.Event()

        async def ok() -> None:
            return None

        async def refused() -> None:
            raise ProbeFailed("token refused")

        async def hangs() -> None:
            await hang.wait()

        results = await run_probes(
            {"source": ok, "moodle": refused, "broker": hangs}, timeout_s=0.05
        )
        assert [(r.name, r.ok, r.detail) for r in results] == [
            ("source", True, "ok"),
            ("moodle", False, "token refused"),
            ("broker", False, "no answer within 0.05 s"),
        ]


class TestHeartbeat:
    """The loop is alive until it has started and then stopped beating."""

    def test_alive_until_stale(self) -> None:
        """Not started is alive; a beat within the limit is alive; a stale one is not."""
        heart = Heartbeat(stale_after_s=60)
        assert heart.alive(1000.0)
        heart.beat(1000.0)
        assert heart.alive(1060.0)
        assert not heart.alive(1060.5)


class TestLatencyWindow:
    """Per-minute latencies of the last hour."""

    def test_minutes_and_forgetting(self) -> None:
        """Samples group by minute; minutes older than the window are dropped."""
        window = LatencyWindow(window=timedelta(minutes=10))
        window.add(NOW - timedelta(minutes=20), 9.0)
        for seconds in (0.2, 0.4, 0.6, 5.0):
            window.add(NOW, seconds)
        window.add(NOW + timedelta(minutes=1), 1.0)
        minutes = window.minutes(NOW + timedelta(minutes=1))
        assert [(m.minute, m.count) for m in minutes] == [
            (NOW, 4),
            (NOW + timedelta(minutes=1), 1),
        ]
        assert (minutes[0].median_s, minutes[0].p95_s, minutes[0].max_s) == (
            0.4,
            5.0,
            5.0,
        )


class TestPipelineStatus:
    """The at-a-glance block as text and JSON."""

    def test_text_names_every_figure(self) -> None:
        """Known figures are shown with derived ones; unknown ones say why."""
        status = PipelineStatus(
            generated_at=NOW,
            source_version=120,
            saved_version=118,
            newest_change_at=NOW - timedelta(minutes=3),
            consumer_lag={0: 2, 1: 0},
            lag_age_s=4.0,
            parked=1,
            dead_letters=None,
            alarms=("dead_letters",),
            last_reconcile=ReconcileGlance(
                directory="/var/log/r/2021-01-11",
                finished_at=NOW,
                mode="apply",
                changes=3,
                by_outcome={"applied": 3},
                guard_tripped=False,
                needs_attention=1,
            ),
            unknown={"dead_letters": "Kafka did not answer"},
        )
        text = render_text(status)
        assert "saved version   118 (2 behind)" in text
        assert "last change     3 min ago" in text
        assert "consumer lag    2 events (p0: 2, p1: 0), oldest waiting 4 s" in text
        assert "dead letters    unknown (Kafka did not answer)" in text
        assert "alarms          dead_letters" in text
        assert "3 changes, applied 3; 1 need a person's attention" in text
        data = status.to_json()
        assert data["versions_behind"] == 2
        assert data["consumer_lag"] == {"0": 2, "1": 0}
        assert data["last_reconcile"]["finished_at"] == NOW.isoformat()
