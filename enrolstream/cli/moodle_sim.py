"""``enrolstream moodle-sim``: run the Moodle web-service simulator until stopped.

With ``--state FILE`` the simulator is a site that can be stopped and started
again: it loads FILE at start (when it exists), and SIGTERM or Ctrl-C stops it
as a real Moodle's web server stops (requests in flight answered HTTP 200
``text/html`` ``Terminated: 15``, the port closed) and saves the whole site to
FILE before it exits 0. Start it again with the same ``--state``, ``--port``
and ``--token`` and clients find the same site at the same URL; another
process reads the site with ``MoodleState.load(FILE)``. A SIGKILL saves
nothing: the writes since the last start are lost.

For a fault-matrix harness (``bench/chaos.py``), off unless given:
``--control-token T`` opens loopback-only routes that queue fault-plan entries
and report counters and holdings (``sandbox/moodle_sim/control.py``), and
``--audit FILE`` appends a journal line per committed write (did the enrolment
exist, did it send a welcome message, had the client already given up:
``sandbox/moodle_sim/audit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from enrolstream.cli.context import settings_of
from sandbox.moodle_sim.audit import WriteAudit
from sandbox.moodle_sim.faults import LatencyModel
from sandbox.moodle_sim.persist import StateFileError
from sandbox.moodle_sim.server import ENDPOINT, MoodleSimulator
from sandbox.moodle_sim.state import MoodleState


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the root command."""
    app.command("moodle-sim")(moodle_sim)


def load_seed(path: Path) -> MoodleState:
    """A site preloaded from JSON: ``{"users": [{username, …}], "courses": [{shortname, …}]}``.

    Users take ``username`` plus optional ``firstname``, ``lastname``, ``email``,
    ``idnumber``, ``suspended``; courses ``shortname`` plus optional ``fullname``,
    ``idnumber`` and ``manual`` (``enabled``/``disabled``/``absent``). Ids are
    given in file order after the built-in guest (1), admin (2), wsclient (3)
    and front page (course 1).
    """
    data: dict[str, Any] = json.loads(path.read_text())
    state = MoodleState()
    for user in data.get("users", []):
        state.add_user(
            user["username"],
            email=user.get("email"),
            firstname=user.get("firstname", ""),
            lastname=user.get("lastname", ""),
            idnumber=user.get("idnumber", ""),
            suspended=bool(user.get("suspended", False)),
        )
    for course in data.get("courses", []):
        state.add_course(
            course["shortname"],
            course.get("fullname"),
            idnumber=course.get("idnumber", ""),
            manual=course.get("manual", "enabled"),
        )
    return state


def moodle_sim(
    ctx: typer.Context,
    *,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port; 0 picks a free one")] = 8081,
    token: Annotated[
        str | None, typer.Option(help="wsclient token (default: random)")
    ] = None,
    admin_token: Annotated[
        str | None, typer.Option(help="also issue an admin token")
    ] = None,
    latency: Annotated[
        Literal["zero", "real"],
        typer.Option(help="real: the recorded Moodle 5.1 timings"),
    ] = "zero",
    workers: Annotated[int, typer.Option(help="simulated PHP workers")] = 1,
    debug: Annotated[
        bool, typer.Option(help="site debugging: debuginfo in errors")
    ] = False,
    max_input_vars: Annotated[
        int | None,
        typer.Option(help="PHP max_input_vars (default: settings moodle section)"),
    ] = None,
    state_from: Annotated[
        Path | None, typer.Option(help="JSON file with users/courses to preload")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="the site's file: loaded at start if it exists (else --state-from "
            "seeds it), saved on SIGTERM / Ctrl-C",
        ),
    ] = None,
    control_token: Annotated[
        str | None,
        typer.Option(
            help="open the loopback-only fault/status routes under /_control, "
            "guarded by this bearer token (test harnesses only)",
        ),
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            help="append a JSON line per committed write: what it found, whether "
            "it welcomed, whether its client had given up (test harnesses only)",
        ),
    ] = None,
) -> None:
    """Run the Moodle web-service simulator until SIGTERM or Ctrl-C."""
    limit = max_input_vars or settings_of(ctx).moodle.max_input_vars
    model = (
        LatencyModel.recorded(workers=workers)
        if latency == "real"
        else LatencyModel(0.0, 0.0, workers)
    )
    if state is not None and state.exists():
        try:
            site = MoodleState.load(state)
        except (OSError, StateFileError) as error:
            typer.echo(f"moodle-sim: cannot load --state: {error}", err=True)
            raise typer.Exit(1) from error
    else:
        site = load_seed(state_from) if state_from else MoodleState()
    wstoken = token or secrets.token_hex(16)

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        async with MoodleSimulator(
            site,
            token=wstoken,
            host=host,
            port=port,
            latency=model,
            debug=debug,
            max_input_vars=limit,
            admin_token=admin_token,
            state_path=state,
            control_token=control_token,
            audit=WriteAudit(audit) if audit else None,
        ) as sim:
            typer.echo(f"Moodle simulator: {sim.url}{ENDPOINT}")
            typer.echo(f"wwwroot: {sim.url}")
            typer.echo(f"token: {sim.token}")
            if admin_token:
                typer.echo(f"admin token: {admin_token}")
            if control_token:
                typer.echo(f"control routes: {sim.url}/_control (loopback only)")
            kept = f"saved to {state}" if state else "memory only"
            typer.echo(f"(SIGTERM or Ctrl-C stops it; {kept})")
            await stopping.wait()
        # Leaving the block stopped the site and saved it (sim.stop()).
        if state is not None:
            typer.echo(f"stopped; state saved to {state}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
