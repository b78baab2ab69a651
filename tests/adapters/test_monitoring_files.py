"""The shipped Prometheus rules and Grafana dashboard: valid, and naming real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connectors.prometheus import BatchMetrics, PrometheusMetrics

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "prometheus" / "enrolstream.rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "enrolstream.rules.test.yml"
DASHBOARD = MONITORING / "grafana" / "enrolstream-dashboard.json"
PROMTOOL = shutil.which("promtool")
_NAME = re.compile(r"\benrolstream_[a-z_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def known_metrics() -> set[str]:
    """Every series name enrolstream can expose (processes and batch textfiles)."""
    live = PrometheusMetrics()
    live.parked({"no_user": 1})
    live.consumer_lag({0: 0})
    live.alarm_active("dead_letters", False)
    live.moodle_call("f", "ok", 0.1)
    live.events_published("change", 1)
    live.actions_applied("enrol", 1)
    live.dead_lettered("MoodleRejected", 1)
    live.notification("email", "sent")
    live.polls.labels(outcome="ok").inc()
    texts = [live.exposition()[0].decode()]
    snapshot, reconcile, replay = (
        BatchMetrics(j) for j in ("snapshot", "reconcile", "replay")
    )
    snapshot.snapshot(events=1, persons=1, registrations=1, state_version=1)
    reconcile.reconcile(
        planned={"enrol": 1},
        outcomes={"planned": 1},
        guard_trips={},
        guard_blocked=False,
        unowned=0,
        unresolved=0,
        needs_attention=0,
    )
    replay.replay(events=1, partitions=1, dry_run=True)
    texts += [
        generate_latest(b.registry).decode() for b in (snapshot, reconcile, replay)
    ]
    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
    return names


def referenced(text: str) -> set[str]:
    """Metric names a rules file or dashboard uses (histogram suffixes kept)."""
    return set(_NAME.findall(text))


class TestShippedFiles:
    """Rules and dashboard stay in step with the metrics."""

    def test_every_name_exists(self) -> None:
        """Each metric the rules and the dashboard query is one enrolstream exposes."""
        known = known_metrics()
        used = referenced(RULES.read_text()) | referenced(DASHBOARD.read_text())
        unknown = {
            name
            for name in used
            if name not in known and not any(name + s in known for s in _SUFFIXES)
        }
        assert unknown == set()

    def test_dashboard_is_grafana_json(self) -> None:
        """The dashboard parses, has panels with queries, and a data-source variable."""
        dashboard = json.loads(DASHBOARD.read_text())
        assert dashboard["uid"] == "enrolstream"
        assert all(panel["targets"] for panel in dashboard["panels"])
        assert dashboard["templating"]["list"][0]["type"] == "datasource"

    @pytest.mark.skipif(
        PROMTOOL is None,
        reason="promtool is not installed (Debian: apt-get install prometheus; "
        "./run test installs it when run as root)",
    )
    def test_promtool_checks_and_unit_tests(self) -> None:
        """promtool accepts the rules and their unit tests pass."""
        assert PROMTOOL is not None
        for args in (
            ["check", "rules", str(RULES)],
            ["test", "rules", str(RULE_TESTS)],
        ):
            done = subprocess.run(  # noqa: S603 - promtool, with our files
                [PROMTOOL, *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=RULES.parent,
            )
            assert done.returncode == 0, done.stdout + done.stderr
