"""What ``consume`` checks before it reads an event: Moodle's answer and its functions."""

from __future__ import annotations

import asyncio

import pytest

from connectors.moodle.actions import SET_STATUS
from connectors.moodle.checks import moodle_ready
from connectors.moodle.errors import MoodleAuthError, MoodleUnavailable
from consumers.errors import StartupRefused
from sandbox.moodle_sim.inprocess import InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
    SiteConfig,
)
from sandbox.moodle_sim.state import MoodleState

TOKEN = "ab" * 16


def site(*, plugin: bool) -> InProcessMoodle:
    """The simulator in-process, with or without the companion plugin in the service."""
    state = MoodleState(site=SiteConfig(plugins=(COMPANION_PLUGIN,) if plugin else ()))
    if plugin:
        state.add_token(TOKEN, WSCLIENT_USER_ID, functions=COMPANION_SERVICE_FUNCTIONS)
    return InProcessMoodle(MoodleSimulator(state, token=TOKEN))


class TestMoodleReady:
    """The start-up question to Moodle: is it up, and does it have the plugin?"""

    async def test_suspend_without_the_plugin_is_refused(self) -> None:
        """drop_action=suspend on a site without the plugin stops, saying what to do."""
        with pytest.raises(StartupRefused, match="install moodle/local_enrolstream"):
            await moodle_ready(site(plugin=False), drop_action="suspend")

    @pytest.mark.parametrize(
        ("plugin", "expected"), [(True, SET_STATUS), (False, None)]
    )
    async def test_status_function_found(
        self, plugin: bool, expected: str | None
    ) -> None:
        """The plugin's function is used whenever the token's service lists it."""
        assert (
            await moodle_ready(site(plugin=plugin), drop_action="remove_role")
            == expected
        )

    async def test_waits_while_moodle_is_down(self) -> None:
        """Unavailable at start-up: retried, then the answer; nothing raised."""
        moodle = site(plugin=True)
        moodle.refuse(3)
        found = await moodle_ready(moodle, drop_action="suspend", first_backoff_s=0)
        assert found == SET_STATUS
        assert [fate for _, fate in moodle.log] == ["refuse"] * 3 + ["answer"]

    async def test_stop_ends_the_wait(self) -> None:
        """SIGTERM while Moodle is down: None, so the caller exits without a traceback."""
        moodle = site(plugin=False)
        moodle.refuse(1000)
        stop = asyncio.Event()
        stop.set()
        assert await moodle_ready(moodle, drop_action="remove_role", stop=stop) is None

    async def test_bounded_attempts_raise_the_last_error(self) -> None:
        """One-shot commands give up after their attempts with the typed error."""
        moodle = site(plugin=False)
        moodle.refuse(5)
        with pytest.raises(MoodleUnavailable):
            await moodle_ready(
                moodle, drop_action="remove_role", attempts=2, first_backoff_s=0
            )

    async def test_refused_token_is_not_waited_on(self) -> None:
        """A token Moodle does not know stops at once: waiting cannot fix it."""
        moodle = site(plugin=False)
        moodle.simulator.token = "not-the-token"  # noqa: S105 - a wrong test token
        with pytest.raises(MoodleAuthError):
            await moodle_ready(moodle, drop_action="remove_role", first_backoff_s=0)
