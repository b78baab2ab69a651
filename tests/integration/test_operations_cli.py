"""`status`, `parked list` and `ledger show` read a real run's state, as the page does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, NO_ACCOUNT, open_pipeline
from tests.integration.test_reconcile import cli_env, invoke

pytestmark = pytest.mark.integration


class TestOperationsCommands:
    """The status page's views on the command line."""

    async def test_status_parked_and_ledger(
        self, capture: CaptureStack, tmp_path: Path, bootstrap_servers: str
    ) -> None:
        """After a run: lag 0, one parked, one dead letter; the ledger by course and person."""
        async with open_pipeline(capture, tmp_path, people=(ALICE, BOB)) as pipe:
            capture.sql(
                registration(1, ALICE, "BSC5102"),
                registration(2, NO_ACCOUNT, "BSC5102"),
                registration(3, BOB, "NOMAN101"),
            )
            async with pipe.runner() as runner:
                await pipe.sync(runner)
            env = {
                **cli_env(pipe, bootstrap_servers, tmp_path),
                "ENROLSTREAM_SOURCE__NAME": "pc",
                "ENROLSTREAM_SOURCE__SANDBOX__PATH": str(capture.path),
                "ENROLSTREAM_POLLER__STATE_PATH": str(capture.state_path),
            }
            status = await invoke(["status", "--json"], env)
            assert status.exit_code == 0, status.output
            found = json.loads(status.stdout)
            assert found["source_version"] == found["saved_version"] == 1
            assert found["total_lag"] == 0
            assert (found["parked"], found["dead_letters"]) == (1, 1)
            assert found["alarms"] == ["dead_letters"]
            text = await invoke(["status"], env)
            assert "saved version   1 (0 behind)" in text.stdout

            parked = await invoke(["parked", "list"], env)
            assert parked.exit_code == 0, parked.output
            assert f"{NO_ACCOUNT} 2021/Winter" in parked.stdout
            assert "no Moodle user has idnumber" in parked.stdout

            course = await invoke(
                ["ledger", "show", "--course", "BSC5102Winter2021"], env
            )
            assert course.exit_code == 0, course.output
            line = f"BSC5102Winter2021 user {pipe.userid(ALICE)}: active, Student"
            assert line in course.stdout
            person = await invoke(["ledger", "show", "--person", ALICE, "--json"], env)
            rows = [
                json.loads(x) for x in person.stdout.splitlines() if x.startswith("{")
            ]
            assert [(r["course"], r["status"]) for r in rows] == [
                ("BSC5102Winter2021", "active")
            ]
