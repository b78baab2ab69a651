"""Mapping changes without a restart: published once, followed by every running consumer.

Two consumers of one group run against a real broker; ``mapping publish`` puts
a new revision on the mappings topic and republishes the people of the course
it maps anew, and one pass of the consumers enrols them. A revision that cannot
be used is refused by the consumers with the mapping in force kept.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.kafka import KafkaRecordSink
from consumers.errors import MappingError
from enrolstream.settings import Settings, SourceSettings
from enrolstream.wiring.mapping import effective_mapping, run_publish
from schemas.events import TermKey
from schemas.mappings import PublishedMapping, digest_of
from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, STUDENT, Pipeline, open_pipeline
from tests.integration.test_reconcile import cli_env, invoke

TERM = TermKey(academic_year="2021", academic_term="Winter")
NEW_COURSE = "EDU2828Winter2021"


def _with_source(pipe: Pipeline, capture: CaptureStack) -> Settings:
    """The pipeline's settings reading the capture stack's sandbox (publish reads it)."""
    source = SourceSettings.model_validate(
        {"kind": "sandbox", "name": "pc", "sandbox": {"path": capture.path}}
    )
    return pipe.settings.model_copy(update={"source": source})


def _mapping_with(pipe: Pipeline, extra: dict[str, object]) -> str:
    path = pipe.settings.consumer.mappings["2021/Winter"]
    assert isinstance(path, Path)
    document = json.loads(path.read_text())
    document.update(extra)
    return json.dumps(document, indent=2)


async def _both_until_idle(*runners: object) -> None:
    await asyncio.gather(
        *(
            r.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)  # type: ignore[attr-defined]
            for r in runners
        )
    )


class TestPublishedMapping:
    """A published revision reaches every running consumer and is decided at once."""

    async def test_two_consumers_follow_and_the_new_course_is_populated(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """Both consumers hold the new revision; its course is filled in one pass."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = _with_source(pipe, capture)
            edu = pipe.sim.state.add_course(NEW_COURSE)
            capture.sql(
                registration(1, ALICE, "BSC5102"), registration(2, BOB, "EDU2828")
            )
            async with pipe.runner() as first, pipe.runner() as second:
                await capture.poll()
                await _both_until_idle(first, second)
                bob = pipe.userid(BOB)
                assert bob not in {e.userid for e in pipe.sim.state.enrolments(edu)}

                file = tmp_path / "mapping-v2.json"
                text = _mapping_with(
                    pipe, {NEW_COURSE: {"courses": ["EDU2828"], "id": edu}}
                )
                file.write_text(text)
                result = await run_publish(
                    settings, bootstrap_servers, TERM, file, text
                )
                assert result.changed == (edu,)
                assert result.events == 1  # Bob, the one person of the new course

                # one pass: the member that reads Bob's event holds the revision first
                await _both_until_idle(first, second)
                assert pipe.sim.state.has_access(edu, bob)
                assert STUDENT in pipe.sim.state.roles_of(edu, bob)
                # the other member reads it on its next look at the topic (every
                # consumer.mapping_refresh_s in `run`; here called as `run` does)
                for runner in (first, second):
                    await runner.refresh_mapping(wait=True)
                    follower = runner.mapping_follower
                    assert follower is not None
                    assert follower.live.holds("2021/Winter", result.digest)
                    assert any(c.id == edu for c in runner.mapping)

    async def test_publish_refuses_a_bad_file(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """A Moodle id mapped twice: MappingError naming file and key, nothing published."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = _with_source(pipe, capture)
            taken = pipe.course("BSC")
            text = _mapping_with(
                pipe, {NEW_COURSE: {"courses": ["EDU2828"], "id": taken}}
            )
            file = tmp_path / "bad.json"
            with pytest.raises(MappingError) as refused:
                await run_publish(settings, bootstrap_servers, TERM, file, text)
            assert refused.value.file == str(file)
            assert (
                NEW_COURSE in refused.value.key or str(taken) in refused.value.problem
            )
            in_force = await effective_mapping(settings, bootstrap_servers)
            assert NEW_COURSE not in {c.shortname for c in in_force}
            file.write_text(text)
            shown = await invoke(
                ["mapping", "publish", "--term", "2021/Winter", str(file)],
                {
                    **cli_env(pipe, bootstrap_servers, tmp_path),
                    "ENROLSTREAM_KAFKA__MAPPINGS_TOPIC": settings.kafka.mappings_topic,
                    "ENROLSTREAM_KAFKA__CREATED_TOPIC": settings.kafka.created_topic,
                    "ENROLSTREAM_KAFKA__ACCOUNTS_TOPIC": settings.kafka.accounts_topic,
                },
            )
            assert shown.exit_code == 1, shown.output
            (line,) = [x for x in shown.output.splitlines() if x.startswith("ERROR")]
            assert line.startswith(f"ERROR {file}: ")
            assert "Traceback" not in shown.output

    async def test_consumers_refuse_a_bad_revision_and_keep_theirs(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """A revision put on the topic by hand that cannot be used changes nothing."""
        async with open_pipeline(capture, tmp_path) as pipe, pipe.runner() as runner:
            before = sorted(c.id for c in runner.mapping)
            text = _mapping_with(pipe, {NEW_COURSE: {"courses": ["EDU2828"]}})  # no id
            record = PublishedMapping(
                term="2021/Winter",
                file="by-hand.json",
                document=text,
                digest=digest_of(text),
                published_at=datetime.now(UTC),
            )
            topic = pipe.settings.kafka.mappings_topic
            async with KafkaRecordSink(capture.options, topic) as sink:
                await sink.append([(record.key(), record.model_dump_json().encode())])
            await runner.refresh_mapping(wait=True)
            follower = runner.mapping_follower
            assert follower is not None
            assert follower.refused == 1
            assert sorted(c.id for c in runner.mapping) == before
