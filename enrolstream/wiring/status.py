"""The pipeline's state for people: the status page's backend, ``status``, ``parked list``.

Facts come from where they live: the source's current version from the source;
the saved version and the newest change from the poller's checkpoint file (when
this host has it); lag, parked persons and dead letters from Kafka, or from the
running consumer's memory when the page is served by ``consume``; the last
reconcile from the newest ``summary.json`` under ``reconcile.report_dir``. A fact
that cannot be read is left unknown with the reason (``PipelineStatus.unknown``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cdc.errors import CdcError
from cdc.ports import ChangeSource
from connectors.kafka import read_topic
from connectors.kafka.groups import group_lag
from connectors.local.checkpoint import read_checkpoint
from consumers.dead_letters import pending_letters
from consumers.errors import ConsumerError
from consumers.parked import ParkedEvent
from enrolstream.settings import Settings
from enrolstream.wiring.common import kafka_options
from enrolstream.wiring.operations import alarm_policy
from operations.alarm import Observation, conditions
from operations.status import LetterRow, ParkedRow, PipelineStatus, ReconcileGlance
from schemas.dead_letter import DeadLetter

__all__ = [
    "Facts",
    "gather_status",
    "latest_reconcile",
    "letter_rows",
    "parked_rows",
    "read_parked",
]


def parked_rows(parked: Iterable[ParkedEvent]) -> list[ParkedRow]:
    """Parked entries as rows, the longest-waiting first."""
    return sorted(
        (
            ParkedRow(
                people_code_id=p.event.people_code_id,
                term=p.event.term.label(),
                reason=p.reason,
                reason_code=p.reason_code,
                since=p.parked_at,
                attempts=p.attempts,
            )
            for p in parked
        ),
        key=lambda row: (row.since, row.people_code_id),
    )


def letter_rows(letters: Sequence[tuple[str, DeadLetter]]) -> list[LetterRow]:
    """Waiting dead letters as rows, the oldest first."""
    return [
        LetterRow(
            position=position,
            dead_lettered_at=letter.dead_lettered_at,
            person=letter.key,
            error_type=letter.error_type,
            errorcode=letter.errorcode,
            reason=letter.reason,
            redrivable=letter.value is not None,
        )
        for position, letter in sorted(letters, key=lambda pl: pl[1].dead_lettered_at)
    ]


async def read_parked(settings: Settings, bootstrap_servers: str) -> list[ParkedEvent]:
    """Every parked person-term, read from the parked topic."""
    table = await read_topic(
        kafka_options(settings, bootstrap_servers), settings.kafka.parked_topic
    )
    latest: dict[bytes, bytes | None] = {}
    for record in sorted(table, key=lambda r: (r.partition, r.offset)):
        if record.key is not None:
            latest[record.key] = record.value
    return [ParkedEvent.model_validate_json(v) for v in latest.values() if v]


def latest_reconcile(report_dir: Path) -> tuple[ReconcileGlance, Path] | None:
    """The newest reconcile report under ``report_dir`` (its summary and directory)."""
    if not report_dir.is_dir():
        return None
    summaries = sorted(
        report_dir.rglob("summary.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in summaries:
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            totals = summary["totals"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        attention = summary.get("needs_attention")
        count = (
            len(attention)
            if isinstance(attention, list)
            else int(totals.get("unresolved_persons", 0))
            + len(summary.get("errors", []))
        )
        glance = ReconcileGlance(
            directory=str(path.parent),
            finished_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            mode=str(summary.get("mode", "")),
            changes=int(totals.get("changes", 0)),
            by_outcome=dict(totals.get("by_outcome", {})),
            guard_tripped=bool(summary.get("guard", {}).get("tripped")),
            needs_attention=count,
        )
        return glance, path.parent
    return None


@dataclass(slots=True)
class Facts:
    """What a running consumer knows in memory (the status page in ``consume``)."""

    lags: dict[int, int] | None = None
    lag_age_s: float | None = None
    parked: list[ParkedEvent] | None = None
    newest_change_at: datetime | None = None
    alarms: tuple[str, ...] | None = None


async def _source_version(
    source: ChangeSource | None, unknown: dict[str, str]
) -> int | None:
    if source is None:
        unknown["source_version"] = "no source configured here"
        return None
    try:
        return (await source.read_snapshot(())).version
    except CdcError as exc:
        unknown["source_version"] = f"the source did not answer: {exc}"
        return None


async def gather_status(
    settings: Settings,
    bootstrap_servers: str,
    *,
    source: ChangeSource | None,
    facts: Facts | None = None,
    letters: Sequence[tuple[str, DeadLetter]] | None = None,
    now: datetime | None = None,
) -> PipelineStatus:
    """The at-a-glance block, from the running consumer's ``facts`` where given."""
    now = now or datetime.now(UTC)
    facts = facts or Facts()
    unknown: dict[str, str] = {}
    options = kafka_options(settings, bootstrap_servers)
    version = await _source_version(source, unknown)
    checkpoint = read_checkpoint(settings.poller.state_path, settings.source.name)
    if checkpoint is None:
        unknown["saved_version"] = (
            f"no poller state at {settings.poller.state_path} on this host"
        )
    newest = max(
        (
            t
            for t in (
                facts.newest_change_at,
                checkpoint and checkpoint.newest_change_at,
            )
            if t
        ),
        default=None,
    )
    if newest is None:
        unknown["newest_change_at"] = "no change seen yet"
    lags, lag_age = facts.lags, facts.lag_age_s
    if lags is None:
        try:
            measured = await group_lag(
                options, settings.kafka.events_topic, settings.consumer.group_id
            )
        except ConsumerError as exc:
            unknown["consumer_lag"] = f"Kafka did not answer: {exc}"
        else:
            lags = measured.by_partition
            oldest = measured.oldest_waiting_s
            lag_age = 0.0 if oldest is None else max(0.0, now.timestamp() - oldest)
    parked = facts.parked
    if parked is None:
        try:
            parked = await read_parked(settings, bootstrap_servers)
        except ConsumerError as exc:
            unknown["parked"] = f"Kafka did not answer: {exc}"
    if letters is None:
        try:
            letters = pending_letters(
                await read_topic(options, settings.kafka.dead_letter_topic)
            )
        except ConsumerError as exc:
            unknown["dead_letters"] = f"Kafka did not answer: {exc}"
    alarms = facts.alarms
    if alarms is None:
        # Outside the consumer nobody holds the alarm's book: say which hold now.
        observation = Observation(
            now=now,
            since=now,
            newest_change_at=newest,
            lag_age=timedelta(seconds=lag_age or 0),
            dead_letters_waiting=len(letters or ()),
        )
        alarms = tuple(c.alarm for c in conditions(observation, alarm_policy(settings)))
    reconcile = latest_reconcile(settings.reconcile.report_dir)
    return PipelineStatus(
        generated_at=now,
        source_version=version,
        saved_version=checkpoint.version if checkpoint else None,
        poller_saved_at=checkpoint.saved_at if checkpoint else None,
        newest_change_at=newest,
        consumer_lag=lags,
        lag_age_s=lag_age,
        parked=None if parked is None else len(parked),
        dead_letters=None if letters is None else len(letters),
        alarms=alarms,
        last_reconcile=reconcile[0] if reconcile else None,
        unknown=unknown,
    )
