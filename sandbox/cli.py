"""Sub-commands of the embedded stand-ins: the PowerCampus sandbox and the Moodle simulator."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``sandbox …`` and ``moodle-sim`` to the root command."""
    from sandbox.moodle_sim.cli import register as register_moodle_sim  # noqa: PLC0415
    from sandbox.powercampus.cli import register as register_powercampus  # noqa: PLC0415

    register_powercampus(app)
    register_moodle_sim(app)
