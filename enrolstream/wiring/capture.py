"""The capture side wired: ``poll``, ``snapshot`` and ``source check``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import date

import structlog

from cdc.errors import LeaseLost, PublishFailed, SourceMisconfigured
from cdc.poller import Poller, PollResult, parse_terms
from cdc.ports import ChangeSource
from cdc.replica import StateReplica, catch_up
from cdc.snapshot import publish_snapshot
from connectors.kafka.lease import KafkaLease
from connectors.kafka.poller_state import KafkaStateLog
from connectors.kafka.publisher import (
    KafkaEventPublisher,
    KafkaSnapshotSink,
    ensure_topics,
)
from connectors.local.replica_cache import ReplicaCacheStore
from enrolstream.crashpoints import crash_point
from enrolstream.settings import Settings, SourceSettings
from enrolstream.startup import wait_for_broker
from enrolstream.wiring.common import kafka_options
from enrolstream.wiring.operations import (
    alive,
    build_metrics,
    heartbeat,
    probe_broker,
    probe_source,
    serve,
)
from operations.health import Heartbeat
from operations.metrics import NO_METRICS, Metrics
from sandbox.powercampus.source import SandboxChangeSource
from schemas.events import TermKey
from schemas.snapshot import SnapshotMarker

__all__ = ["build_source", "check_source", "run_poller", "run_snapshot"]

log = structlog.get_logger()


def build_source(source: SourceSettings) -> ChangeSource:
    """The configured ``ChangeSource``: the PowerCampus sandbox or SQL Server."""
    if source.kind == "sqlserver":
        # Imported here: pyodbc needs unixODBC, which only SQL Server sites install.
        from connectors.sqlserver.source import SqlServerChangeSource  # noqa: PLC0415

        return SqlServerChangeSource(
            source.sqlserver, name=source.name, tables=source.tables
        )
    return SandboxChangeSource(
        source.sandbox.path, name=source.name, tables=source.tables
    )


async def run_poller(
    settings: Settings,
    bootstrap_servers: str,
    *,
    once: bool,
    stop: asyncio.Event,
) -> PollResult | None:
    """Wire source, publisher and checkpoint store; poll once or until ``stop``.

    Until ``stop`` (not ``once``), an unreachable Kafka is waited for with
    backoff; with ``once`` it raises ``PublishFailed`` at once. Returns the
    iteration's result with ``once``. Polling until ``stop`` also serves
    ``/metrics``, ``/livez`` and ``/readyz`` (source, broker) on
    ``operations.poll_port`` from before Kafka is waited for.
    """
    if once:
        return await _poll(settings, bootstrap_servers, once=True, stop=stop)
    metrics = build_metrics()
    beat = heartbeat(settings)
    probe = build_source(settings.source)
    try:
        async with serve(
            settings,
            port=settings.operations.poll_port,
            live=alive(beat),
            probes={
                "source": probe_source(probe),
                "broker": probe_broker(settings, bootstrap_servers),
            },
            metrics=metrics,
        ):
            return await _poll(
                settings,
                bootstrap_servers,
                once=False,
                stop=stop,
                metrics=metrics,
                beat=beat,
            )
    finally:
        await probe.close()


async def _poll(
    settings: Settings,
    bootstrap_servers: str,
    *,
    once: bool,
    stop: asyncio.Event,
    metrics: Metrics = NO_METRICS,
    beat: Heartbeat | None = None,
) -> PollResult | None:
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)

    async def create_topics() -> None:
        await ensure_topics(
            options,
            [kafka.events_topic],
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
        )
        # One partition each: the state is read in one order, the lease is one.
        await ensure_topics(
            options,
            [kafka.state_topic(), kafka.lease_topic()],
            partitions=1,
            replication_factor=kafka.replication_factor,
            compacted=[kafka.state_topic()],
        )

    if once:
        await create_topics()
    elif not await wait_for_broker(
        create_topics,
        stop=stop,
        retriable=(PublishFailed,),
        bootstrap_servers=bootstrap_servers,
        max_backoff_s=settings.poller.max_backoff_s,
    ):
        log.info("poller_stopped", reason="stopped before Kafka answered")
        return None
    source = build_source(settings.source)
    try:
        with ReplicaCacheStore(settings.poller.state_path, source.name) as store:
            async with (
                KafkaEventPublisher(
                    options,
                    kafka.events_topic,
                    enable_idempotence=kafka.enable_idempotence,
                    ack_timeout_s=kafka.request_timeout_s,
                ) as publisher,
                KafkaStateLog(
                    options,
                    kafka.state_topic(),
                    ack_timeout_s=kafka.request_timeout_s,
                ) as state_log,
                KafkaLease(
                    options,
                    kafka.lease_topic(),
                    lease_group(settings),
                    session_timeout_s=settings.poller.lease_timeout_s,
                ) as lease,
            ):
                result = await _lead_or_stand_by(
                    settings,
                    Poller(
                        source,
                        publisher,
                        store,
                        live_terms=parse_terms(settings.poller.live_terms),
                        crash_point=crash_point,
                        metrics=metrics,
                        heartbeat=beat,
                        replica=StateReplica(state_log, lease, source.name),
                    ),
                    lease,
                    once=once,
                    stop=stop,
                )
    finally:
        await source.close()
    log.info("poller_stopped")
    return result


def lease_group(settings: Settings) -> str:
    """The pollers' consumer group: configured, else named after the events topic."""
    return (
        settings.poller.lease_group
        or f"enrolstream-poller.{settings.kafka.events_topic}"
    )


async def _lead_or_stand_by(
    settings: Settings,
    poller: Poller,
    lease: KafkaLease,
    *,
    once: bool,
    stop: asyncio.Event,
) -> PollResult | None:
    """Stand by until this poller holds the lease, catch up, poll; again when it is lost.

    ``once``: one iteration, waiting for the lease at most three lease timeouts.
    """
    replica = poller.replica
    assert replica is not None  # noqa: S101 - built with one just above
    store = poller.store
    assert isinstance(store, ReplicaCacheStore)  # noqa: S101 - likewise
    failures = 0
    while not stop.is_set():
        if not await _acquire(settings, lease, poller.heartbeat, once=once, stop=stop):
            return None
        try:
            await catch_up(store, replica.state_log, replica)
            if once:
                return await poller.run_once()
            await poller.run(
                stop,
                interval_s=settings.poller.poll_interval_s,
                max_backoff_s=settings.poller.max_backoff_s,
            )
        except LeaseLost as exc:
            if once:
                raise
            log.warning(
                "lease_lost",
                reason=str(exc),
                consequence="standing by: the active poller resumes from the state topic",
            )
        except PublishFailed as exc:
            if once:
                raise
            failures += 1
            delay = min(settings.poller.max_backoff_s, 0.5 * 2 ** min(failures, 8))
            log.warning("poller_state_unavailable", error=str(exc), retry_in_s=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        else:
            return None
    return None


async def _acquire(
    settings: Settings,
    lease: KafkaLease,
    beat: Heartbeat | None,
    *,
    once: bool,
    stop: asyncio.Event,
) -> bool:
    """Stand by for the lease (beating the liveness heartbeat); False once stopped."""

    def waiting() -> None:
        if beat is not None:
            beat.beat(time.monotonic())

    wait_s = 3 * settings.poller.lease_timeout_s if once else None
    acquiring = asyncio.create_task(lease.acquire(stop, waiting=waiting))
    stopping = asyncio.create_task(stop.wait())
    # A coordinator that does not answer may hold acquire() up: SIGTERM must not.
    done, _ = await asyncio.wait(
        {acquiring, stopping}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
    )
    stopping.cancel()
    if acquiring in done:
        return acquiring.result()
    acquiring.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await acquiring
    if stop.is_set() or wait_s is None:
        return False
    raise LeaseLost(
        f"another poller holds the lease of group {lease_group(settings)} "
        f"(waited {wait_s:.0f} s): stop it, or run without --once"
    )


async def run_snapshot(
    settings: Settings,
    bootstrap_servers: str,
    *,
    terms: Sequence[TermKey] = (),
    today: Callable[[], date] = date.today,
) -> SnapshotMarker:
    """Choose the terms, publish their state between markers; returns the end marker.

    Terms: ``terms``, else the configured live terms, else those whose
    ACADEMICCALENDAR dates include today (``ValueError`` when none).
    """
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    await ensure_topics(
        options,
        [kafka.snapshot_topic],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
    )
    source = build_source(settings.source)
    try:
        chosen = list(terms) or parse_terms(settings.poller.live_terms)
        if not chosen:
            chosen = list(await source.live_terms(today()))
        if not chosen:
            raise ValueError(
                "no live term today in ACADEMICCALENDAR and none configured: "
                "name one with --term YEAR/TERM"
            )
        async with KafkaEventPublisher(
            options,
            kafka.snapshot_topic,
            enable_idempotence=kafka.enable_idempotence,
            ack_timeout_s=kafka.request_timeout_s,
        ) as publisher:
            return await publish_snapshot(
                source, KafkaSnapshotSink(publisher), terms=chosen
            )
    finally:
        await source.close()


async def check_source(source: SourceSettings) -> str:
    """The one-line OK report for ``source``; raises ``SourceError`` when unusable."""
    if source.kind == "sqlserver":
        return await _check_sqlserver(source)
    return await _check_sandbox(source)


async def _check_sqlserver(source: SourceSettings) -> str:
    # Imported here: pyodbc needs unixODBC, which only SQL Server sites install.
    from connectors.sqlserver.source import SqlServerChangeSource  # noqa: PLC0415

    settings = source.sqlserver
    change_source = SqlServerChangeSource(
        settings, name=source.name, tables=source.tables
    )
    try:
        report = await change_source.open()
    finally:
        await change_source.close()
    return (
        f"source OK: sqlserver {settings.server}:{settings.port}/{report.database} "
        f"current_version={report.current_version} "
        f"min_valid_version={report.min_valid_version} "
        f"snapshot_isolation={report.snapshot_isolation}"
    )


async def _check_sandbox(source: SourceSettings) -> str:
    path = source.sandbox.path
    if not path.is_file():
        raise SourceMisconfigured(
            f"no PowerCampus sandbox at {path}: create one with `enrolstream sandbox "
            "init` (and `enrolstream sandbox seed`), or set source.sandbox.path"
        )
    sandbox_source = SandboxChangeSource(path, name=source.name, tables=source.tables)
    try:
        snapshot = await sandbox_source.read_snapshot(())
        min_valid = await sandbox_source.min_valid_version()
    finally:
        await sandbox_source.close()
    return (
        f"source OK: sandbox {source.sandbox.path} "
        f"current_version={snapshot.version} min_valid_version={min_valid}"
    )
