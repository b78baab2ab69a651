"""What several jobs build the same way from the settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from connectors.kafka.groups import describe_consumer_group
from connectors.kafka.options import client_options
from connectors.kafka.publisher import ensure_topics
from connectors.moodle.checks import moodle_ready
from connectors.moodle.client import MoodleClient
from consumers.accounts import AccountPolicy
from consumers.decisions import EnrolmentPolicy
from consumers.errors import BrokerUnavailable, LiveConsumerRefused
from consumers.identity import IdentityResolver
from consumers.reconcile.guard import GuardLimits
from enrolstream.settings import Settings
from operations.metrics import NO_METRICS, Metrics

__all__ = [
    "account_policy",
    "ensure_all_topics",
    "guard_limits",
    "identity_resolver",
    "kafka_options",
    "moodle_client",
    "open_moodle",
    "policy",
    "refuse_live_consumer",
]


def kafka_options(settings: Settings, bootstrap_servers: str) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client of this process."""
    return client_options(settings.kafka, bootstrap_servers)


async def ensure_all_topics(settings: Settings, bootstrap_servers: str) -> None:
    """Create every enrolstream topic that does not exist yet.

    ``BrokerUnavailable`` (retriable) when Kafka does not answer.
    """
    kafka = settings.kafka
    await ensure_topics(
        kafka_options(settings, bootstrap_servers),
        [
            kafka.events_topic,
            kafka.snapshot_topic,
            kafka.ledger_topic,
            kafka.parked_topic,
            kafka.dead_letter_topic,
            kafka.accounts_topic,
            kafka.created_topic,
            kafka.mappings_topic,
        ],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
        compacted=[
            kafka.ledger_topic,
            kafka.parked_topic,
            kafka.accounts_topic,
            kafka.created_topic,
            kafka.mappings_topic,
        ],
        failure=BrokerUnavailable,
    )


def policy(settings: Settings) -> EnrolmentPolicy:
    """The decision policy the consumer settings describe."""
    consumer = settings.consumer
    return EnrolmentPolicy(
        student_role_id=consumer.student_role_id,
        audit_role_id=consumer.audit_role_id,
        audit_grade=consumer.audit_grade,
        withdrawn_grades=frozenset(consumer.withdrawn_grades),
        drop_action=consumer.drop_action,
        instructor_role_id=consumer.instructor_role_id,
        secondary_role_id=consumer.secondary_instructor_role_id,
        secondary_percentage_at_most=consumer.secondary_percentage_at_most,
        separation_codes=frozenset(consumer.separation_codes),
        separations_from=consumer.separations_from,
        section_groups=consumer.section_groups,
        enrolment_dates=consumer.enrolment_dates == "mapping",
    )


def account_policy(settings: Settings) -> AccountPolicy:
    """The account settings as the consumer's ``AccountPolicy``."""
    accounts = settings.accounts
    return AccountPolicy(
        auth=accounts.auth,
        use_nickname=accounts.use_nickname,
        username_sources=accounts.username_sources,
        email_domains=frozenset(d.strip().lower() for d in accounts.email_domains),
        create_password=accounts.create_password,
    )


def guard_limits(settings: Settings) -> GuardLimits:
    """The mass-drop guard's limits from the reconcile settings."""
    return GuardLimits(
        per_course=settings.reconcile.max_drop_share_per_course,
        overall=settings.reconcile.max_drop_share_overall,
    )


def moodle_client(settings: Settings, metrics: Metrics = NO_METRICS) -> MoodleClient:
    """The Moodle client the settings describe (not yet open)."""
    moodle = settings.moodle
    return MoodleClient(
        moodle.url,
        moodle.token,
        max_input_vars=moodle.max_input_vars,
        concurrency=moodle.concurrency,
        request_timeout_s=moodle.request_timeout_s,
        metrics=metrics,
    )


@contextlib.asynccontextmanager
async def open_moodle(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    attempts: int | None = None,
    metrics: Metrics = NO_METRICS,
    reads_only: bool = False,
) -> AsyncIterator[MoodleClient]:
    """An open Moodle client that knows whether the companion plugin is there.

    Asks Moodle first (``connectors.moodle.checks.moodle_ready``): waits while it
    is down (until ``stop``, or for ``attempts``), refuses ``drop_action =
    "suspend"`` without the plugin (``StartupRefused``) unless the client only
    reads (a Conduit site: its files carry the drops).
    """
    async with moodle_client(settings, metrics) as client:
        client.status_function = await moodle_ready(
            client,
            drop_action="remove_role" if reads_only else settings.consumer.drop_action,
            stop=stop,
            attempts=attempts,
            max_backoff_s=settings.moodle.max_backoff_s,
        )
        yield client


def identity_resolver(client: MoodleClient, settings: Settings) -> IdentityResolver:
    """PEOPLE_CODE_ID → Moodle user, through the configured field and transform."""
    return IdentityResolver(
        client,
        field=settings.moodle.user_field,
        transform=settings.moodle.user_transform,
    )


async def refuse_live_consumer(
    settings: Settings, bootstrap_servers: str, command: str
) -> None:
    """Raise ``LiveConsumerRefused`` while the apply group has live members."""
    group_id = settings.consumer.group_id
    state = await describe_consumer_group(
        kafka_options(settings, bootstrap_servers), group_id
    )
    if state.live:
        raise LiveConsumerRefused(command, group_id, state.state, state.members)
