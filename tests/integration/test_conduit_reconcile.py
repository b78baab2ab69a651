"""The reconcile on a Conduit site: rosters through web services, or only what was sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.conduit.identity import conduit_userid
from enrolstream.settings import ReconcileSettings
from enrolstream.wiring.apply import open_runner
from enrolstream.wiring.reconcile import run_reconcile
from enrolstream.wiring.reconcile_conduit import NOTE_SENT_ONLY, SentOnly
from tests.integration.conftest import CaptureStack, registration
from tests.integration.pipeline import ALICE, BOB, CAROL, STUDENT, open_pipeline
from tests.integration.test_conduit import (  # _sftp: the fixture, used by name
    NAME,
    _sftp,  # noqa: F401
    conduit_settings,
    outbox_of,
)
from tests.integration.test_reconcile import publish
from tests.sftp_server import SftpServer

pytestmark = pytest.mark.integration

LENIENT = ReconcileSettings(max_drop_share_per_course=1.0, max_drop_share_overall=1.0)


class TestConduitReconcile:
    """What the reconcile can know on a Conduit site, and what it says it cannot."""

    async def test_without_web_services_it_reports_only_what_was_sent(
        self, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """It says so plainly, lists what was never sent, and refuses to apply."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(pipe, sftp, tmp_path).model_copy(
                update={"reconcile": LENIENT}
            )
            async with open_runner(
                settings, pipe.bootstrap, mapping=pipe.mapping
            ) as runner:
                capture.sql(registration(1, ALICE, "BSC5102"))
                await capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
            # registered after the consumer stopped: never sent
            capture.sql(registration(2, BOB, "BSC5102"))
            await publish(pipe)
            result = await run_reconcile(settings, pipe.bootstrap)
            assert result.notes == [NOTE_SENT_ONLY]
            assert [(c.kind, c.userid) for c in result.plan.changes] == [
                ("enrol", conduit_userid(BOB[1:]))
            ]
            with pytest.raises(SentOnly, match="can only report what it sent"):
                await run_reconcile(settings, pipe.bootstrap, apply=True)

    async def test_with_web_services_it_reads_moodle_and_sends_the_difference(
        self, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """Rows Conduit has not applied show as differences; --apply queues and
        delivers them; what Conduit applied is left alone."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(
                pipe, sftp, tmp_path, web_services=True
            ).model_copy(update={"reconcile": LENIENT, "moodle": pipe.settings.moodle})
            async with open_runner(
                settings, pipe.bootstrap, mapping=pipe.mapping
            ) as runner:
                capture.sql(
                    registration(1, ALICE, "BSC5102"),
                    registration(2, CAROL, "BSC5102"),
                )
                await capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                await outbox_of(runner).deliver(flush=True)
            sftp.take(NAME)
            # Conduit applied ALICE's row and not (yet) CAROL's
            course = pipe.course("BSC5102")
            pipe.sim.state.enrol(course, pipe.userid(ALICE), STUDENT)
            await publish(pipe)
            result = await run_reconcile(settings, pipe.bootstrap, apply=True)
            assert result.notes == []
            assert [(c.kind, c.userid) for c in result.plan.changes] == [
                ("enrol", conduit_userid(CAROL[1:]))
            ]
            assert result.outcomes == ["applied"]
        assert sftp.take(NAME) == (
            "action,shortname,idnumber,role\nadd,BSC5102Winter2021,000000003,student\n"
        )
