"""``enrolstream consume`` wired: the consumer, its listener, its status page and alarm.

Order of start-up: the mapping is read (a configuration error is reported before
any waiting); the listener starts (``/livez`` answers and ``/readyz`` says what is
missing while Kafka and Moodle are waited for); then the consumer; once it is
ready the status page shows what it holds and the staleness alarm starts
watching. With ``--until-idle`` (a one-shot run) there is neither listener nor
alarm: nobody scrapes or is alarmed by a script that ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from cdc.ports import ChangeSource
from connectors.local.checkpoint import read_checkpoint
from consumers.errors import BrokerUnavailable, ConsumerError
from consumers.mapping import MappingSet, load_mappings
from consumers.runner import ApplyRunner
from enrolstream.settings import Settings
from enrolstream.startup import entered_unless_stopped, wait_for_broker
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.capture import build_source
from enrolstream.wiring.common import ensure_all_topics, moodle_client
from enrolstream.wiring.conduit import sftp_folder
from enrolstream.wiring.operations import (
    alarm_policy,
    alive,
    heartbeat,
    notifiers,
    probe_broker,
    probe_mapping,
    probe_moodle,
    serve,
)
from enrolstream.wiring.status_page import ConsumerStatusPage, StatusMetrics
from operations.alarm import Observation
from operations.health import Probe, ProbeFailed
from operations.latency import LatencyWindow
from operations.watch import AlarmWatch

__all__ = [
    "ConsumeResult",
    "alarm_watch",
    "consumer_probes",
    "run_consume",
    "source_for_status",
]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    """How a ``consume`` run ended: the summary line, or why it never started."""

    summary: str | None


def source_for_status(settings: Settings) -> ChangeSource | None:
    """The source the status page reads versions and reprocesses from, if usable here."""
    try:
        return build_source(settings.source)
    except ImportError as exc:  # pyodbc without unixODBC on this host
        log.warning("status_without_source", error=str(exc))
        return None


def consumer_probes(
    settings: Settings, bootstrap: str, mapping: MappingSet
) -> dict[str, Probe]:
    """``/readyz`` of ``consume``: broker, Moodle token (or Conduit's folder), mapping."""

    async def moodle() -> None:
        # A short-lived client: the probe must answer while the consumer's own
        # client is still waiting for Moodle at start-up.
        async with moodle_client(settings) as client:
            await probe_moodle(client)()

    async def conduit() -> None:
        try:
            async with sftp_folder(settings.conduit) as folder:
                # tidy=False: the consumer may be writing a temporary file right now
                await folder.check(tidy=False)
        except ConsumerError as exc:
            raise ProbeFailed(f"Conduit's SFTP folder: {exc}") from exc

    probes: dict[str, Probe] = {"broker": probe_broker(settings, bootstrap)}
    if settings.consumer.sink == "conduit":
        probes["conduit"] = conduit
    if settings.consumer.sink != "conduit" or settings.conduit.web_services:
        probes["moodle"] = moodle
    probes["mapping"] = probe_mapping(
        mapping, allow_empty=settings.consumer.allow_empty_mapping
    )
    return probes


def alarm_watch(
    settings: Settings,
    runner: ApplyRunner,
    page: ConsumerStatusPage,
    metrics: StatusMetrics,
    *,
    started: datetime,
) -> AlarmWatch:
    """The staleness alarm over a running consumer.

    Quiet is measured from the newest change the consumer saw, or the poller's
    checkpoint on this host, or else from when watching began.
    """
    seen = read_checkpoint(settings.poller.state_path, settings.source.name)
    seed = seen.newest_change_at if seen else None
    waiting = 0

    async def observe() -> Observation:
        nonlocal waiting
        try:
            waiting = len(await page.letters(max_age_s=settings.alarm.check_interval_s))
        except ConsumerError as exc:
            log.warning("dead_letters_not_read", error=str(exc))
        metrics.dead_letters_waiting(waiting)
        newest = max((t for t in (runner.newest_change_at, seed) if t), default=None)
        return Observation(
            now=datetime.now(UTC),
            since=started,
            newest_change_at=newest,
            lag_age=timedelta(seconds=runner.lag_age_s()),
            dead_letters_waiting=waiting,
        )

    return AlarmWatch(
        alarm_policy(settings),
        observe,
        notifiers(settings),
        label=settings.alarm.label,
        metrics=metrics,
    )


async def run_consume(
    settings: Settings,
    bootstrap_servers: str,
    *,
    until_idle: bool,
    stop: asyncio.Event,
) -> ConsumeResult:
    """``enrolstream consume``: apply events until ``stop`` (or idle).

    Kafka is waited for with backoff (unless ``until_idle``, which fails fast).
    Returns the summary line (None when stopped before starting).
    """
    mapping = load_mappings(settings.consumer.mappings)
    window = LatencyWindow()
    metrics = StatusMetrics(window)
    beat = heartbeat(settings)
    source = source_for_status(settings)
    page = ConsumerStatusPage(settings, bootstrap_servers, source=source, window=window)
    started = datetime.now(UTC)
    try:
        async with serve(
            settings,
            # a one-shot run (--until-idle) serves nothing: scripts scrape nothing
            port=None if until_idle else settings.operations.consume_port,
            live=alive(beat),
            probes=consumer_probes(settings, bootstrap_servers, mapping),
            metrics=metrics,
            backend=page,
        ):

            async def create_topics() -> None:
                await ensure_all_topics(settings, bootstrap_servers)

            if until_idle:
                await create_topics()
            elif not await wait_for_broker(
                create_topics,
                stop=stop,
                retriable=(BrokerUnavailable,),
                bootstrap_servers=bootstrap_servers,
                max_backoff_s=settings.moodle.max_backoff_s,
            ):
                return ConsumeResult(summary=None)
            # Every wait of the start-up (Moodle, the tables, the group join, a
            # broker frozen meanwhile) ends at SIGTERM; the loop checks ``stop`` itself.
            async with entered_unless_stopped(
                open_runner(
                    settings,
                    bootstrap_servers,
                    mapping=mapping,
                    stop=stop,
                    metrics=metrics,
                    heartbeat=beat,
                ),
                stop,
            ) as runner:
                if runner is None:
                    return ConsumeResult(summary=None)
                watch = None
                if settings.alarm.enabled and not until_idle:
                    watch = alarm_watch(
                        settings, runner, page, metrics, started=started
                    )
                page.attach(runner, watch)
                async with _watching(watch, settings.alarm.check_interval_s):
                    await runner.run(stop, until_idle=until_idle)
                return ConsumeResult(summary=_summary(runner))
    finally:
        if source is not None:
            await source.close()


def _summary(runner: ApplyRunner) -> str:
    """The run's one-line summary: what was applied, who waits, accounts made."""
    summary = f"{runner.stats.summary()}, parked {len(runner.parked)}"
    if runner.provisioning is not None:
        made = runner.provisioning.stats
        summary += (
            f", accounts created {made.created}, updated {made.updated}, "
            f"refused {made.refused}"
        )
    return summary


@contextlib.asynccontextmanager
async def _watching(watch: AlarmWatch | None, interval_s: float) -> AsyncIterator[None]:
    """The alarm's loop beside the block; stopped with it."""
    if watch is None:
        yield None
        return
    halt = asyncio.Event()
    task = asyncio.ensure_future(watch.run(halt, interval_s=interval_s))
    try:
        yield None
    finally:
        halt.set()
        await task
