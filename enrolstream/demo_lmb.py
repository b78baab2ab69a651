"""``enrolstream demo --source lmb``: a Banner LMB session landing in Moodle, on the embedded stack.

Broker, the Moodle simulator (courses with Banner idnumbers), the LMB endpoint
on loopback and the consumer run in this process. A stand-in for LMB
(``sandbox/lmb``) POSTs the term, its sections and a cross-list; the term's
mapping is generated from them (``lmb mapping``); then people, adds, a drop, an
inactive status, a person update and a delete, each shown landing in Moodle.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr
from rich.console import Console

from consumers.mapping import load_mappings
from enrolstream.demo import DemoOptions, wait_until
from enrolstream.settings import Settings
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.lmb import (
    endpoint_options,
    ensure_lmb_topics,
    generate_mapping,
    open_lmb,
)
from sandbox.broker import kafka_bootstrap
from sandbox.lmb import messages as ims
from sandbox.lmb.client import LmbClient
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.state import MoodleState

console = Console(highlight=False)

TERM = "201510"
#: section CRN → (title, the Moodle course's idnumber)
SECTIONS = {
    "14482": ("MATH-101-001", f"14482.{TERM}"),
    "14483": ("HIST-200-001", f"XLSAA{TERM}"),
    "14484": ("HIST-200-002", f"XLSAA{TERM}"),
    "14485": ("CHEM-110-001", f"14485.{TERM}"),
}
COURSES = {
    f"14482.{TERM}": "MATH101-F14",
    f"XLSAA{TERM}": "HIST200-F14",
    f"14485.{TERM}": "CHEM110-F14",
}
PEOPLE = [f"B{n:03d}" for n in range(1, 13)]
TEACHER = "B900"


@dataclass
class Truth:
    """What Banner says after the messages so far: active memberships, per course."""

    active: dict[tuple[str, str], bool] = field(default_factory=dict)

    def member(
        self, crn: str, person: str, *, active: bool = True, delete: bool = False
    ) -> str:
        if delete:
            self.active.pop((crn, person), None)
        else:
            self.active[(crn, person)] = active
        return ims.member(
            f"{crn}.{TERM}",
            person,
            role="02" if person == TEACHER else "01",
            status=int(active),
            delete=delete,
        )

    def courses(self) -> dict[str, set[str]]:
        held: dict[str, set[str]] = {name: set() for name in COURSES.values()}
        for (crn, person), active in self.active.items():
            if active:
                held[COURSES[SECTIONS[crn][1]]].add(person)
        return held


def _moodle(state: MoodleState, ids: dict[str, int]) -> dict[str, set[str]]:
    users = {u.id: u.idnumber for u in state.users()}
    return {
        name: {
            users[e.userid]
            for e in state.enrolments(cid)
            if state.has_access(cid, e.userid)
        }
        for name, cid in ids.items()
    }


def _matches(
    state: MoodleState, ids: dict[str, int], expected: dict[str, set[str]]
) -> bool:
    return _moodle(state, ids) == expected


def _settings(base: Settings, options: DemoOptions, sim: MoodleSimulator) -> Settings:
    run = uuid.uuid4().hex[:6]
    kafka = base.kafka.model_copy(
        update={
            name: f"demo-{run}.{getattr(base.kafka, name).split('.', 1)[-1]}"
            for name in ("events_topic", "snapshot_topic", "ledger_topic", "parked_topic",
                         "dead_letter_topic", "accounts_topic")
        }
    )  # fmt: skip
    lmb = base.lmb.model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "username": "lmb",
            "password": SecretStr(secrets.token_urlsafe(16)),
            "tls_certfile": None,
            "tls_keyfile": None,
            "message_log_dir": options.workdir / "lmb-messages",
            "state_topic": f"demo-{run}.lmb-state",
            "dead_letter_topic": f"demo-{run}.lmb-dead-letters",
        }
    )
    moodle = base.moodle.model_copy(
        update={"url": sim.url, "token": SecretStr(sim.token), "user_transform": "none"}
    )
    consumer = base.consumer.model_copy(
        update={
            "group_id": f"demo-{run}",
            "session_timeout_s": 2.0,
            "parked_retry_s": 2.0,
        }
    )
    return base.model_copy(
        update={"kafka": kafka, "lmb": lmb, "moodle": moodle, "consumer": consumer}
    )


async def run_lmb_demo(base: Settings, options: DemoOptions) -> bool:
    """Run the Banner demo; True when every scene landed and Moodle matches Banner."""
    shutil.rmtree(options.workdir, ignore_errors=True)
    options.workdir.mkdir(parents=True)
    console.print(
        f"[bold]enrolstream demo --source lmb[/bold] — working directory {options.workdir}"
    )
    state = MoodleState()
    for person in (*PEOPLE, TEACHER):
        state.add_user(
            person.lower(), idnumber=person, firstname="Banner", lastname=person
        )
    ids = {
        name: state.add_course(name, idnumber=idnumber)
        for idnumber, name in COURSES.items()
    }
    async with (
        kafka_bootstrap(
            base.kafka.bootstrap_servers, options.workdir / "broker.log"
        ) as bootstrap,
        MoodleSimulator(state) as sim,
    ):
        settings = _settings(base, options, sim)
        await ensure_lmb_topics(settings, bootstrap)
        lmb = settings.lmb
        async with (
            open_lmb(settings, bootstrap, endpoint_options(lmb)) as (endpoint, _),
            LmbClient(
                endpoint.url, lmb.username, lmb.password.get_secret_value()
            ) as client,
        ):
            console.print(
                f"LMB endpoint {endpoint.url} (HTTP Basic); "
                f"Moodle simulator {sim.url}; Kafka {bootstrap}"
            )
            return await _session(settings, bootstrap, client, state, ids, options)


async def _post(client: LmbClient, elements: list[str], prefix: str) -> None:
    for number, element in enumerate(elements):
        await client.send(ims.enterprise(element), f"{prefix}-{number}")


async def _session(  # noqa: PLR0917 - the demo's parts, named
    settings: Settings,
    bootstrap: str,
    client: LmbClient,
    state: MoodleState,
    ids: dict[str, int],
    options: DemoOptions,
) -> bool:
    groups = [ims.term(TERM, "Fall 2014")]
    groups += [ims.section(crn, TERM, title) for crn, (title, _) in SECTIONS.items()]
    groups.append(ims.crosslist(f"XLSAA{TERM}", [f"14483.{TERM}", f"14484.{TERM}"]))
    await _post(client, groups, "groups")
    entries, _ = await generate_mapping(settings, bootstrap, TERM)
    mapping_file = options.workdir / f"mapping-{TERM}.json"
    mapping_file.write_text(json.dumps(entries, indent=2, sort_keys=True))
    console.print(
        f"\n[bold]1. The term, 4 sections and a cross-list[/bold] → mapping {mapping_file}:"
    )
    for shortname, entry in sorted(entries.items()):
        console.print(f"   {shortname}: CRNs {', '.join(entry['courses'])}")  # type: ignore[arg-type]
    consumer = settings.consumer.model_copy(
        update={"mappings": {"2015/10": mapping_file}}
    )
    settings = settings.model_copy(update={"consumer": consumer})
    truth = Truth()

    def enrol() -> list[str]:
        people = [
            ims.person(
                p, "Student", p, email=f"{p.lower()}@example.edu", logon=p.lower()
            )
            for p in PEOPLE
        ]
        crns = ("14482", "14483", "14484", "14485")
        adds = [truth.member(crns[i % 4], p) for i, p in enumerate(PEOPLE)]
        return [*people, *adds, truth.member("14483", TEACHER)]

    scenes: list[tuple[str, Callable[[], list[str]]]] = [
        ("people and their sections (adds), an instructor", enrol),
        (
            "a drop: B001 leaves MATH 101 (status 0: inactive)",
            lambda: [truth.member("14482", "B001", active=False)],
        ),
        (
            "a cross-list swap: B002 moves from HIST 200-001 to -002",
            lambda: [
                truth.member("14484", "B002"),
                truth.member("14483", "B002", delete=True),
            ],
        ),
        (
            "a person update: B003's name and e-mail",
            lambda: [
                ims.person(
                    "B003", "Grace", "Hopper", email="grace@example.edu", logon="b003"
                )
            ],
        ),
        (
            "a delete: B004's CHEM 110 membership (recstatus 3)",
            lambda: [truth.member("14485", "B004", delete=True)],
        ),
    ]
    stop = asyncio.Event()
    async with open_runner(
        settings, bootstrap, mapping=load_mappings(consumer.mappings)
    ) as runner:
        loop = asyncio.ensure_future(runner.run(stop))
        try:
            ok = True
            for number, (title, elements_of) in enumerate(scenes, start=2):
                console.print(f"\n[bold]{number}. {title}[/bold]")
                started = time.perf_counter()
                elements = elements_of()
                await _post(client, elements, f"scene{number}")
                if number == len(scenes) + 1:
                    again = await client.send(
                        ims.enterprise(elements[-1]), f"scene{number}-0"
                    )
                    console.print(
                        f"   LMB sends it again (its answer was lost): {again.strip()}"
                    )
                expected = truth.courses()
                seconds = await wait_until(
                    functools.partial(_matches, state, ids, expected), options.timeout_s
                )
                if seconds is None:
                    held = _moodle(state, ids)
                    console.print("   [red]✗ Moodle does not match Banner[/red]")
                    for name in sorted(expected):
                        if held[name] != expected[name]:
                            console.print(
                                f"     {name}: Moodle {sorted(held[name])}, "
                                f"Banner {sorted(expected[name])}"
                            )
                    ok = False
                    continue
                took = time.perf_counter() - started
                console.print(
                    f"   [green]✓ Moodle matches Banner[/green] after {took * 1000:.0f} ms"
                )
        finally:
            stop.set()
            await loop
    for name, people in sorted(_moodle(state, ids).items()):
        console.print(f"{name}: {', '.join(sorted(people))}")
    if ok:
        console.print("[green]Moodle matches Banner.[/green]")
    return ok
