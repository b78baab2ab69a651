"""``enrolstream mapping generate | publish | reveal`` wired: PowerCampus, Moodle, Kafka.

``run_generate`` reads the term from the configured source (the sandbox or SQL
Server: ``SectionCatalog``), looks its courses up in Moodle and, with
``create_missing``, creates shells (their records in the created topic). It
writes nothing else: the command prints the plan and writes the file.
``run_publish`` validates a mapping file with every other term's mapping in
force, puts it on the mappings topic (running consumers follow it) and
republishes the full state of everyone in the courses it maps anew or
otherwise, so they are decided at once. ``run_reveal`` shows the shells whose
day has come.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from cdc.reprocess import course_events
from connectors.kafka import KafkaRecordSink, KafkaTable, read_topic
from connectors.kafka.publisher import KafkaEventPublisher
from consumers.courses.catalog import SectionCatalog
from consumers.courses.generate import Generated, GenerateOptions, generate
from consumers.courses.shells import ShellMaker, ShellPolicy
from consumers.created_book import CreatedBook
from consumers.errors import MappingError
from consumers.live_mapping import LiveMapping, changed_courses
from consumers.mapping import (
    MappingSet,
    build_mapping,
    entries_by_term,
    load_mappings,
    parse_mapping_text,
)
from consumers.mapping_file import MappingEntry
from enrolstream.settings import Settings
from enrolstream.wiring.capture import build_source
from enrolstream.wiring.common import ensure_all_topics, kafka_options, moodle_client
from sandbox.powercampus.catalog import SandboxCatalog
from schemas.collation import collate
from schemas.events import SectionKey, TermKey
from schemas.mappings import PublishedMapping, digest_of, mapping_snapshot_id

__all__ = [
    "PublishResult",
    "configured_file",
    "effective_mapping",
    "mapping_text",
    "other_terms",
    "run_generate",
    "run_publish",
    "run_reveal",
    "validate_document",
]


def build_catalog(settings: Settings) -> SectionCatalog:
    """The configured source's sections, cross-tallies and calendar."""
    columns = settings.courses.crosstally.columns()
    if settings.source.kind == "sqlserver":
        # Imported here: pyodbc needs unixODBC, which only SQL Server sites install.
        from connectors.sqlserver.catalog import SqlServerCatalog  # noqa: PLC0415

        return SqlServerCatalog(settings.source.sqlserver, columns)
    return SandboxCatalog(settings.source.sandbox.path, columns)


def mapping_text(document: dict[str, dict[str, object]]) -> str:
    """A mapping document as its file holds it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _term_of(label: str) -> TermKey:
    return TermKey.parse(label)


def configured_file(settings: Settings, term: TermKey) -> Path | None:
    """The term's file in ``consumer.mappings`` (None: not configured)."""
    for label, path in settings.consumer.mappings.items():
        if _term_of(label).matches(term):
            return path
    return None


def _current_entries(path: Path | None, term: TermKey) -> list[MappingEntry]:
    if path is None or not path.is_file():
        return []
    return load_mappings({term.label(): path}).entries_in(term)


def validate_document(
    text: str, file: Path, term: TermKey, others: MappingSet
) -> MappingSet:
    """The set with ``text`` as the term's mapping; ``MappingError`` naming file and key."""
    entries = parse_mapping_text(text, file, term)
    terms = {t: e for t, e in entries_by_term(others).items() if not t.matches(term)}
    terms[term] = entries
    return build_mapping(terms)


def other_terms(settings: Settings, term: TermKey) -> MappingSet:
    """The configured files of every other term."""
    return load_mappings(
        {
            label: path
            for label, path in settings.consumer.mappings.items()
            if not _term_of(label).matches(term)
        }
    )


@contextlib.asynccontextmanager
async def _created_book(
    settings: Settings, bootstrap_servers: str
) -> AsyncIterator[CreatedBook]:
    options = kafka_options(settings, bootstrap_servers)
    await ensure_all_topics(settings, bootstrap_servers)
    async with KafkaRecordSink(options, settings.kafka.created_topic) as sink:
        book = CreatedBook(KafkaTable(options, settings.kafka.created_topic, sink))
        await book.load()
        yield book


def _shell_policy(settings: Settings) -> ShellPolicy:
    courses = settings.courses
    return ShellPolicy(
        naming=courses.naming(settings.consumer.group_name),
        category_parent=courses.category_parent,
        visible_days_before=courses.visible_days_before,
    )


async def run_generate(
    settings: Settings,
    term: TermKey,
    *,
    against: Path | None,
    create_missing: bool = False,
    bootstrap_servers: str | None = None,
    today: date | None = None,
) -> Generated:
    """The term's plan; with ``create_missing`` (and Kafka) the missing shells made.

    ``against``: the mapping file the plan is compared with (default: the term's
    configured file).
    """
    current = _current_entries(against or configured_file(settings, term), term)
    options = GenerateOptions(
        share=settings.courses.share,
        naming=settings.courses.naming(settings.consumer.group_name),
        dates_from=settings.courses.dates_from,
        create_missing=create_missing,
    )
    day = today or datetime.now(UTC).date()
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(moodle_client(settings))
        shells = None
        if bootstrap_servers is not None:
            book = await stack.enter_async_context(
                _created_book(settings, bootstrap_servers)
            )
            shells = ShellMaker(client, book, _shell_policy(settings))
        return await generate(
            term,
            build_catalog(settings),
            client,
            current,
            options=options,
            shells=shells,
            today=day,
        )


async def run_reveal(
    settings: Settings, bootstrap_servers: str, today: date | None = None
) -> list[str]:
    """Show the hidden shells of ours whose day has come; their shortnames."""
    async with (
        moodle_client(settings) as client,
        _created_book(settings, bootstrap_servers) as book,
    ):
        maker = ShellMaker(client, book, _shell_policy(settings))
        return await maker.reveal(today or datetime.now(UTC).date())


async def published_mappings(
    settings: Settings, bootstrap_servers: str
) -> dict[str, PublishedMapping]:
    """The latest published mapping of each term, by collated term label."""
    options = kafka_options(settings, bootstrap_servers)
    latest: dict[str, PublishedMapping] = {}
    for record in await read_topic(options, settings.kafka.mappings_topic):
        if record.value is None:
            continue
        with contextlib.suppress(ValueError):
            published = PublishedMapping.model_validate_json(record.value)
            latest[collate(published.term)] = published
    return latest


async def effective_mapping(settings: Settings, bootstrap_servers: str) -> MappingSet:
    """The configured files with every published revision in force, as consumers hold it.

    A revision that cannot be used is skipped, as a consumer refuses it.
    """
    live = LiveMapping(load_mappings(settings.consumer.mappings))
    for published in (await published_mappings(settings, bootstrap_servers)).values():
        with contextlib.suppress(MappingError):
            live.apply(published)
    return live.current


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What ``mapping publish`` did."""

    term: str
    digest: str
    courses: int
    changed: tuple[int, ...]
    events: int
    unchanged: bool


async def run_publish(
    settings: Settings, bootstrap_servers: str, term: TermKey, file: Path, text: str
) -> PublishResult:
    """Validate ``text`` (read from ``file``) as the term's mapping, publish it,
    decide its courses anew. ``MappingError`` (nothing published) when it cannot
    be used.
    """
    await ensure_all_topics(settings, bootstrap_servers)
    in_force = await effective_mapping(settings, bootstrap_servers)
    new = validate_document(text, file, term, in_force)
    before, after = in_force.entries_in(term), new.entries_in(term)
    changed = changed_courses(before, after)
    digest = digest_of(text)
    published = await published_mappings(settings, bootstrap_servers)
    previous = published.get(collate(term.label()))
    if previous is not None and previous.digest == digest:
        return PublishResult(term.label(), digest, len(after), (), 0, unchanged=True)
    record = PublishedMapping(
        term=term.label(),
        file=str(file),
        document=text,
        digest=digest,
        published_at=datetime.now(UTC),
    )
    options = kafka_options(settings, bootstrap_servers)
    async with KafkaRecordSink(options, settings.kafka.mappings_topic) as sink:
        await sink.append([(record.key(), record.model_dump_json().encode())])
    events = await _decide_again(
        settings,
        bootstrap_servers,
        term,
        entries=[*before, *after],
        changed=changed,
        digest=digest,
    )
    return PublishResult(term.label(), digest, len(after), changed, events, False)


async def _decide_again(
    settings: Settings,
    bootstrap_servers: str,
    term: TermKey,
    *,
    entries: Sequence[MappingEntry],
    changed: Sequence[int],
    digest: str,
) -> int:
    """Republish the full state of everyone in a changed course's sections (old or new)."""
    feeding = [e for e in entries if e.course.id in set(changed)]
    if not feeding:
        return 0

    def in_course(section: SectionKey) -> bool:
        return any(entry.feeds(section) for entry in feeding)

    source = build_source(settings.source)
    try:
        snapshot = await source.read_snapshot([term])
    finally:
        await source.close()
    events = course_events(
        snapshot,
        in_course,
        source=source.name,
        captured_at=datetime.now(UTC),
        request_id=mapping_snapshot_id(term.label(), digest),
    )
    if events:
        async with KafkaEventPublisher(
            kafka_options(settings, bootstrap_servers),
            settings.kafka.events_topic,
            enable_idempotence=settings.kafka.enable_idempotence,
            ack_timeout_s=settings.kafka.request_timeout_s,
        ) as publisher:
            await publisher.publish(events)
    return len(events)
