"""Crash points: unarmed they never fire; armed they name only points that exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from enrolstream import crashpoints


class TestArm:
    """Parsing ``ENROLSTREAM_CRASH_POINTS``."""

    def test_parses_names_and_chances(self) -> None:
        """``name=p`` pairs, a bare name meaning always."""
        try:
            armed = crashpoints.arm("consumer.after_moodle=0.25, poller.after_publish")
            assert armed == {"consumer.after_moodle": 0.25, "poller.after_publish": 1.0}
        finally:
            crashpoints.arm("")

    def test_unknown_point_is_refused(self) -> None:
        """A misspelt point would silently never fire: it is an error instead."""
        with pytest.raises(ValueError, match=r"unknown crash point 'consumer\.aftr'"):
            crashpoints.arm("consumer.aftr=1")

    def test_unarmed_never_fires(self) -> None:
        """Without the variable every point is a no-op (this process survives)."""
        crashpoints.arm("")
        for name in crashpoints.CRASH_POINTS:
            crashpoints.crash_point(name)

    def test_armed_point_kills_with_sigkill(self) -> None:
        """An armed point ends the process as kill -9 does: no cleanup runs."""
        code = (
            "from enrolstream.crashpoints import crash_point\n"
            "try:\n    crash_point('consumer.after_ledger')\n"
            "finally:\n    print('cleanup ran')\n"
        )
        env = {**os.environ, crashpoints.ENVIRONMENT_VARIABLE: "consumer.after_ledger"}
        done = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == -9
        assert "cleanup ran" not in done.stdout
