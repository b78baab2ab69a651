"""``enrolstream mapping generate``: the seeded term, cross-tallies, ambiguity, shells.

PowerCampus is the sandbox seeded as the demo seeds it; Moodle is the simulator
(replaying the recorded course calls, sequence 5); shells need the created
topic, so those tests use the real broker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from enrolstream.cli import root as cli
from enrolstream.demo_site import build_site
from enrolstream.settings import (
    ConsumerSettings,
    KafkaSettings,
    MoodleSettings,
    Settings,
    SourceSettings,
)
from enrolstream.wiring.mapping import run_generate
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState
from sandbox.powercampus.database import PowerCampusSandbox
from sandbox.powercampus.seed import SeedSummary, seed_term
from schemas.events import TermKey

TERM = TermKey(academic_year="2021", academic_term="Winter")


@dataclass
class World:
    """A seeded sandbox, a simulator and settings naming both."""

    summary: SeedSummary
    state: MoodleState
    sim: MoodleSimulator
    settings: Settings
    demo_mapping: Path


def _settings(tmp_path: Path, sim: MoodleSimulator, mapping: Path) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        kafka=KafkaSettings(created_topic=f"created-{suffix}"),
        moodle=MoodleSettings(
            url=sim.url, token=SecretStr(sim.token), max_backoff_s=0.5
        ),
        consumer=ConsumerSettings(mappings={"2021/Winter": mapping}),
        source=SourceSettings.model_validate(
            {"kind": "sandbox", "sandbox": {"path": tmp_path / "powercampus.sqlite"}}
        ),
    )


@pytest.fixture(name="world")
async def _world(tmp_path: Path) -> AsyncIterator[World]:
    sandbox = PowerCampusSandbox(tmp_path / "powercampus.sqlite")
    sandbox.create()
    summary = seed_term(sandbox, people=20, courses=8, crosslisted_pairs=2)
    state = MoodleState()
    (tmp_path / "site").mkdir()
    site = build_site(summary, state, tmp_path / "site", held_back=())
    async with MoodleSimulator(state) as sim:
        yield World(
            summary,
            state,
            sim,
            _settings(tmp_path, sim, site.mapping_file),
            site.mapping_file,
        )


def _env(settings: Settings, bootstrap: str | None = None) -> dict[str, str]:
    env = {
        "ENROLSTREAM_MOODLE__URL": settings.moodle.url,
        "ENROLSTREAM_MOODLE__TOKEN": settings.moodle.token.get_secret_value(),
        "ENROLSTREAM_SOURCE__KIND": "sandbox",
        "ENROLSTREAM_SOURCE__SANDBOX__PATH": str(settings.source.sandbox.path),
        "ENROLSTREAM_CONSUMER__MAPPINGS": json.dumps(
            {k: str(v) for k, v in settings.consumer.mappings.items()}
        ),
        "ENROLSTREAM_KAFKA__CREATED_TOPIC": settings.kafka.created_topic,
        "ENROLSTREAM_LOG_FORMAT": "json",
    }
    if bootstrap is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


async def invoke(args: list[str], env: dict[str, str]) -> Result:
    """The CLI in a thread: it runs its own event loop; the simulator serves here."""
    return await asyncio.to_thread(CliRunner().invoke, cli.app, args, env=env)


class TestSeededTerm:
    """The generated mapping of the seeded term is the demo's hand-written one."""

    async def test_equals_the_demo_mapping(self, world: World) -> None:
        """Same shortnames, courses, sections and Moodle ids; no difference shown.

        The one difference, explained: the demo maps a cross-listed course's
        shared section only, so its other section (01) has no Moodle course;
        generate proposes one for it, reported missing (``--create-missing``
        would make it), never guessed into another course.
        """
        plan = await run_generate(world.settings, TERM, against=None)
        hand_written = json.loads(world.demo_mapping.read_text())
        assert plan.document == hand_written
        assert not plan.difference
        assert not plan.of("ambiguous")
        unshared = {
            f"{event_id}01{TERM.academic_term}{TERM.academic_year}"
            for group in world.summary.crosslisted
            for event_id in group.event_ids
        }
        assert {m.course.shortname for m in plan.of("missing")} == unshared

    async def test_cross_tallied_sections_are_one_course(self, world: World) -> None:
        """Each cross-listed pair (SECTIONCROSSTALLY) is one Moodle course, its section."""
        plan = await run_generate(world.settings, TERM, against=None)
        for group in world.summary.crosslisted:
            entry = plan.document[group.shortname(TERM)]
            assert entry["courses"] == list(group.event_ids)
            assert entry["section"] == group.section
        merged = [m for m in plan.matches if m.course.proposal.kind == "crosstally"]
        assert len(merged) == len(world.summary.crosslisted)

    async def test_cli_prints_the_plan_and_writes_only_when_asked(
        self, world: World, tmp_path: Path
    ) -> None:
        """Without --write nothing is written; --write writes a valid file."""
        target = tmp_path / "generated.json"
        env = _env(world.settings)
        args = ["mapping", "generate", "--term", "2021/Winter", "--file", str(target)]
        shown = await invoke(args, env)
        assert shown.exit_code == 0, shown.output
        assert "found" in shown.output
        assert not target.exists()
        written = await invoke([*args, "--write"], env)
        assert written.exit_code == 0, written.output
        assert json.loads(target.read_text()) == json.loads(
            world.demo_mapping.read_text()
        )
        assert "mapping publish" in written.output


class TestAmbiguous:
    """Two Moodle courses answering for one proposed course: reported, not guessed."""

    async def test_idnumber_and_shortname_name_different_courses(
        self, world: World
    ) -> None:
        """The course is left out of the document and both candidates are named."""
        group = world.summary.crosslisted[0]
        shortname = group.shortname(TERM)
        other = world.state.add_course("Elsewhere", idnumber=shortname)
        plan = await run_generate(world.settings, TERM, against=None)
        ambiguous = plan.of("ambiguous")
        assert [m.course.shortname for m in ambiguous] == [shortname]
        assert any(str(other) in c for c in ambiguous[0].candidates)
        assert shortname not in plan.document
        assert plan.difference.removed == [shortname]


class TestShells:
    """--create-missing creates each missing course once, hidden, dated, findable."""

    async def test_second_run_creates_nothing(
        self, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """The first run creates every course hidden, with the idnumber; the second,
        in the week before the term, finds them by idnumber and shows them."""
        sandbox = PowerCampusSandbox(tmp_path / "powercampus.sqlite")
        sandbox.create()
        seed_term(sandbox, people=10, courses=6, crosslisted_pairs=1)
        state = MoodleState()
        async with MoodleSimulator(state) as sim:
            settings = _settings(tmp_path, sim, tmp_path / "none.json")
            first = await run_generate(
                settings,
                TERM,
                against=None,
                create_missing=True,
                bootstrap_servers=bootstrap_servers,
                today=date(2020, 6, 1),
            )
            # one course per EVENT_ID, the pair's shared section as one more and
            # each paired course's other section on its own
            assert len(first.created) == len(first.matches) == 6 - 2 + 1 + 2
            assert not first.of("missing")
            term_start = first.catalog.start
            assert term_start is not None
            shells = [c for c in state.courses() if c.shortname in first.document]
            assert len(shells) == len(first.created)
            assert {c.visible for c in shells} == {0}  # hidden until its week
            assert {c.idnumber for c in shells} == set(first.document)
            courses_before = len(state.courses())
            second = await run_generate(
                settings,
                TERM,
                against=None,
                create_missing=True,
                bootstrap_servers=bootstrap_servers,
                today=term_start - timedelta(days=7),
            )
            shown = {
                c.visible for c in state.courses() if c.shortname in first.document
            }
        assert second.created == []
        assert len(state.courses()) == courses_before
        assert {m.by for m in second.matches} == {"idnumber"}
        assert second.document == first.document
        assert sorted(second.revealed) == sorted(first.created)
        assert shown == {1}
