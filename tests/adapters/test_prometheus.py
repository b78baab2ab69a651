"""The Prometheus adapter: the port's calls become the documented series."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connectors.prometheus import BatchMetrics, PrometheusMetrics
from operations.metrics import Metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class TestPrometheusMetrics:
    """The long-running processes' metrics."""

    def test_port_calls_become_series(self) -> None:
        """Counters end _total, times are seconds, labels are closed vocabularies."""
        metrics = PrometheusMetrics(version="0.1.0", clock=lambda: 1_000_100.0)
        port: Metrics = metrics
        port.changes_read(3)
        port.events_published("change", 3)
        port.versions(source=12, saved=11)
        port.change_seen(datetime.fromtimestamp(1_000_000, UTC))
        port.change_seen(datetime.fromtimestamp(999_000, UTC))  # older: ignored
        port.actions_applied("enrol", 2)
        port.commit_to_applied(0.4)
        port.commit_to_applied(1.5)
        port.moodle_call("enrol_manual_enrol_users", "ok", 0.03)
        port.parked({"no_user": 2})
        port.parked({"several_users": 1})
        port.consumer_lag({0: 4, 1: 0})
        port.alarm_active("dead_letters", True)
        body, content_type = metrics.exposition()
        assert content_type.startswith("text/plain")
        found = samples(body.decode())
        assert found[("enrolstream_changes_read_total", ())] == 3
        assert found[("enrolstream_events_published_total", (("kind", "change"),))] == 3
        assert found[("enrolstream_source_version", ())] == 12
        assert found[("enrolstream_newest_change_age_seconds", ())] == 100
        assert found[("enrolstream_moodle_actions_total", (("action", "enrol"),))] == 2
        assert found[("enrolstream_commit_to_applied_seconds_count", ())] == 2
        assert (
            found[("enrolstream_commit_to_applied_seconds_bucket", (("le", "1.0"),))]
            == 1
        )
        call = (("function", "enrol_manual_enrol_users"), ("outcome", "ok"))
        assert found[("enrolstream_moodle_call_duration_seconds_count", call)] == 1
        assert found[("enrolstream_parked_persons", (("reason", "no_user"),))] == 0
        assert (
            found[("enrolstream_parked_persons", (("reason", "several_users"),))] == 1
        )
        assert found[("enrolstream_consumer_lag_records", (("partition", "0"),))] == 4
        assert found[("enrolstream_alarm_active", (("alarm", "dead_letters"),))] == 1
        assert found[("enrolstream_build_info", (("version", "0.1.0"),))] == 1


class TestBatchMetrics:
    """The one-shot commands' textfile."""

    def test_reconcile_textfile(self, tmp_path: Path) -> None:
        """The file is named for the job, holds its gauges and the success time."""
        batch = BatchMetrics("reconcile", clock=lambda: 1234.0)
        batch.reconcile(
            planned={"enrol": 2},
            outcomes={"applied": 2},
            guard_trips={"course": 1},
            guard_blocked=False,
            unowned=0,
            unresolved=1,
            needs_attention=1,
        )
        path = batch.write(tmp_path / "textfiles")
        assert path.name == "enrolstream_reconcile.prom"
        found = samples(path.read_text())
        assert (
            found[("enrolstream_reconcile_planned_changes", (("action", "enrol"),))]
            == 2
        )
        assert found[("enrolstream_reconcile_guard_trips", (("scope", "course"),))] == 1
        assert (
            found[("enrolstream_reconcile_guard_trips", (("scope", "overall"),))] == 0
        )
        assert (
            found[("enrolstream_reconcile_last_success_timestamp_seconds", ())] == 1234
        )
