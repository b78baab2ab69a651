"""Operations wired: metrics, the listener with its probes, the alarm and its channels.

``poll`` and ``consume`` each serve ``/metrics``, ``/livez`` and ``/readyz`` on their
own port (``operations.poll_port`` / ``consume_port``); ``consume`` (and the demo)
also serves the status page and raises the staleness alarm. A port that cannot
be bound is logged as an error and the process carries on without its listener:
the pipeline's work matters more than its dashboard (``/livez`` then fails to
answer, which is how an orchestrator notices). The batch commands write their
figures as a node-exporter textfile (``operations.textfile_dir``).

Readiness probes, by the dependency each process has:

* ``source``: the configured ``ChangeSource`` answers (its current version);
* ``broker``: the Kafka cluster answers a metadata request;
* ``moodle``: ``core_webservice_get_site_info`` accepts the token;
* ``mapping``: the mapping files were loaded and map at least one course.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import time as clock_time
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from zoneinfo import ZoneInfo

import structlog

from cdc.errors import CdcError
from cdc.ports import ChangeSource
from connectors.kafka.health import check_broker
from connectors.moodle.client import MoodleClient
from connectors.moodle.errors import MoodleAuthError
from connectors.notify import EmailNotifier, WebhookNotifier
from connectors.prometheus import BatchMetrics, PrometheusMetrics
from connectors.web import OpsServer, PortUnavailable, StatusBackend
from connectors.web.guard import Credentials
from consumers.errors import ConsumerError
from consumers.mapping import MappingSet
from consumers.reconcile.driver import ReconcileResult
from consumers.reconcile.report import summarise
from enrolstream.settings import WEEKDAYS, Settings
from enrolstream.wiring.common import kafka_options
from operations.alarm import AlarmPolicy, BusinessHours
from operations.health import Heartbeat, Probe, ProbeFailed
from operations.watch import Notifier
from schemas.snapshot import SnapshotMarker

__all__ = [
    "alarm_policy",
    "build_metrics",
    "heartbeat",
    "notifiers",
    "probe_broker",
    "probe_mapping",
    "probe_moodle",
    "probe_source",
    "reconcile_textfile",
    "replay_textfile",
    "serve",
    "snapshot_textfile",
    "write_textfile",
]

log = structlog.get_logger()


def _version() -> str:
    try:
        return version("enrolstream")
    except PackageNotFoundError:
        return "unknown"


def build_metrics() -> PrometheusMetrics:
    """The process's metrics registry."""
    return PrometheusMetrics(version=_version())


def heartbeat(settings: Settings) -> Heartbeat:
    """The loop's heartbeat, stale after ``operations.loop_stale_after_s``."""
    return Heartbeat(settings.operations.loop_stale_after_s)


def probe_source(source: ChangeSource) -> Probe:
    """Ready while the source answers (reading its current version)."""

    async def probe() -> None:
        try:
            await source.read_snapshot(())
        except CdcError as exc:
            raise ProbeFailed(f"PowerCampus unreachable: {exc}") from exc

    return probe


def probe_broker(settings: Settings, bootstrap_servers: str) -> Probe:
    """Ready while the Kafka cluster answers."""
    options = kafka_options(settings, bootstrap_servers)

    async def probe() -> None:
        try:
            await check_broker(options)
        except ConsumerError as exc:
            raise ProbeFailed(str(exc)) from exc

    return probe


def probe_moodle(client: MoodleClient) -> Probe:
    """Ready while Moodle accepts the token."""

    async def probe() -> None:
        try:
            await client.get_site_info()
        except MoodleAuthError as exc:
            raise ProbeFailed(f"Moodle refused the token: {exc}") from exc
        except ConsumerError as exc:
            raise ProbeFailed(f"Moodle unreachable: {exc}") from exc

    return probe


def probe_mapping(mapping: MappingSet, *, allow_empty: bool) -> Probe:
    """Ready once a mapping is loaded (one that maps a course, unless allowed empty)."""

    async def probe() -> None:
        if not mapping.entries() and not allow_empty:
            raise ProbeFailed("the mapping maps no Moodle course")

    return probe


def alarm_policy(settings: Settings) -> AlarmPolicy:
    """The staleness alarm's limits from ``[alarm]``."""
    alarm = settings.alarm
    start, end = alarm.hours()
    return AlarmPolicy(
        hours=BusinessHours(
            days=frozenset(WEEKDAYS.index(day) for day in alarm.business_days),
            start=clock_time(start.hour, start.minute),
            end=clock_time(end.hour, end.minute),
            zone=ZoneInfo(alarm.timezone),
        ),
        quiet_in_hours=timedelta(minutes=alarm.quiet_minutes_in_hours),
        quiet_out_of_hours=timedelta(minutes=alarm.quiet_minutes_out_of_hours),
        lag=timedelta(minutes=alarm.lag_minutes),
        repeat=timedelta(minutes=alarm.repeat_minutes),
        dead_letters=alarm.dead_letters,
    )


def notifiers(settings: Settings) -> list[Notifier]:
    """The alarm's channels the settings configure (none: log lines and metrics only)."""
    alarm = settings.alarm
    found: list[Notifier] = []
    email = alarm.email
    if email.host and email.recipients:
        found.append(
            EmailNotifier(
                host=email.host,
                port=email.port,
                sender=email.sender,
                recipients=email.recipients,
                security=email.security,
                username=email.username or None,
                password=email.password if email.password.get_secret_value() else None,
            )
        )
    if alarm.webhook_url.get_secret_value():
        found.append(WebhookNotifier(alarm.webhook_url))
    return found


def credentials(settings: Settings) -> Credentials:
    """The status page's credentials from ``[operations]``."""
    ops = settings.operations
    return Credentials(
        token=ops.token if ops.token.get_secret_value() else None,
        username=ops.username or None,
        password=ops.password if ops.password.get_secret_value() else None,
    )


@contextlib.asynccontextmanager
async def serve(
    settings: Settings,
    *,
    port: int | None,
    live: Callable[[], bool],
    probes: Mapping[str, Probe],
    metrics: PrometheusMetrics | None,
    backend: StatusBackend | None = None,
) -> AsyncIterator[OpsServer | None]:
    """The listener while the block runs; None when disabled or the port is taken.

    ``connectors.web.WebRefused`` for a status page on a non-loopback address
    without credentials: that is a configuration error, not a busy port.
    """
    if port is None:
        yield None
        return
    ops = settings.operations
    server = OpsServer(
        host=ops.host,
        port=port,
        live=live,
        probes=probes,
        probe_timeout_s=ops.probe_timeout_s,
        metrics=metrics.exposition if metrics is not None else None,
        backend=backend,
        credentials=credentials(settings),
        reprocess_per_minute=ops.reprocess_per_minute,
    )
    failure: str | None = None
    try:
        await server.__aenter__()
    except PortUnavailable as exc:
        failure = str(exc)
    if failure is not None:
        log.error(
            "ops_server_not_started",
            error=failure,
            consequence="no /metrics, /livez, /readyz or status page from this process",
        )
        yield None
        return
    try:
        yield server
    finally:
        await server.__aexit__(None, None, None)


def alive(beat: Heartbeat) -> Callable[[], bool]:
    """``/livez``'s question for a heartbeat."""
    return lambda: beat.alive(time.monotonic())


def write_textfile(settings: Settings, batch: BatchMetrics) -> None:
    """Write a batch command's textfile when ``operations.textfile_dir`` is set."""
    directory = settings.operations.textfile_dir
    if directory is None:
        return
    path = batch.write(directory)
    log.info("textfile_written", path=str(path))


def snapshot_textfile(settings: Settings, end: SnapshotMarker) -> None:
    """``enrolstream_snapshot.prom`` for a published snapshot."""
    batch = BatchMetrics("snapshot")
    batch.snapshot(
        events=end.events or 0,
        persons=end.persons or 0,
        registrations=end.registrations or 0,
        state_version=end.state_version,
    )
    write_textfile(settings, batch)


def reconcile_textfile(settings: Settings, result: ReconcileResult) -> None:
    """``enrolstream_reconcile.prom`` for a finished reconcile."""
    summary = summarise(result)
    trips: dict[str, int] = {}
    for trip in result.plan.guard.trips:
        trips[trip.scope] = trips.get(trip.scope, 0) + 1
    batch = BatchMetrics("reconcile")
    batch.reconcile(
        planned=summary["totals"]["by_action"],
        outcomes=summary["totals"]["by_outcome"],
        guard_trips=trips,
        guard_blocked=result.blocked,
        unowned=len(result.plan.unowned),
        unresolved=len(result.plan.unresolved),
        needs_attention=len(summary["needs_attention"]),
    )
    write_textfile(settings, batch)


def replay_textfile(
    settings: Settings, *, events: int, partitions: int, dry_run: bool
) -> None:
    """``enrolstream_replay.prom`` for a replay (or its dry run)."""
    batch = BatchMetrics("replay")
    batch.replay(events=events, partitions=partitions, dry_run=dry_run)
    write_textfile(settings, batch)
