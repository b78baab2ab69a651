"""The domain's status changes translated to calls, run against the simulator in-process.

``MoodleWrites.apply`` is driven through ``InProcessMoodle`` (the consumer's own
Moodle adapter with HTTP replaced by a direct call into the simulator). The
course has an editing teacher, so every enrol call sends "Welcome to <course>"
as on a real site: a welcome counted here is one Moodle would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from connectors.moodle.actions import (
    ENROL,
    ROLE_ASSIGN,
    ROLE_UNASSIGN,
    SET_STATUS,
    status_function_listed,
)
from connectors.moodle.errors import (
    MoodleAuthError,
    MoodleFunctionMissing,
    MoodleNoManualInstance,
    MoodleRejected,
)
from sandbox.moodle_sim.inprocess import InProcessMoodle
from sandbox.moodle_sim.server import MoodleSimulator
from sandbox.moodle_sim.site import (
    COMPANION_PLUGIN,
    COMPANION_SERVICE_FUNCTIONS,
    DEFAULT_SERVICE_FUNCTIONS,
    WSCLIENT_USER_ID,
    SiteConfig,
)
from sandbox.moodle_sim.state import EDITING_TEACHER, MoodleState
from schemas.actions import MoodleAction, ReactivateAction, SuspendAction
from tests.adapters.golden import load

STUDENT, TEACHER = 5, 4
TOKEN = "c0ffee" * 5 + "00"


@dataclass
class Site:
    """A course with a contact, two enrolled students and one who never enrolled."""

    plugin: bool = True
    in_service: bool = True
    state: MoodleState = field(init=False)
    course: int = field(init=False)
    alice: int = field(init=False)
    bob: int = field(init=False)
    carol: int = field(init=False)

    def __post_init__(self) -> None:
        plugins = (COMPANION_PLUGIN,) if self.plugin else ()
        self.state = MoodleState(site=SiteConfig(plugins=plugins))
        functions = (
            COMPANION_SERVICE_FUNCTIONS
            if self.in_service
            else DEFAULT_SERVICE_FUNCTIONS
        )
        self.state.add_token(TOKEN, WSCLIENT_USER_ID, functions=functions)
        teacher = self.state.add_user("teacher")
        self.alice = self.state.add_user("alice")
        self.bob = self.state.add_user("bob")
        self.carol = self.state.add_user("carol")
        self.course = self.state.add_course("BSC5102Winter2021", "BSC5102 Winter 2021")
        self.state.enrol(self.course, teacher, EDITING_TEACHER)
        self.state.enrol(self.course, self.alice, STUDENT)
        self.state.enrol(self.course, self.bob, STUDENT)

    def moodle(self, status_function: str | None = SET_STATUS) -> InProcessMoodle:
        """The consumer's adapter to this site."""
        simulator = MoodleSimulator(self.state, token=TOKEN)
        return InProcessMoodle(simulator, status_function=status_function)

    def welcomes(self) -> int:
        """Welcome messages sent so far (the set-up's included)."""
        return len(self.state.notifications)

    def suspend(self, userid: int) -> SuspendAction:
        """A drop by suspension of ``userid``'s student enrolment."""
        return SuspendAction(courseid=self.course, userid=userid, roleid=STUDENT)

    def reactivate(
        self, userid: int, roleid: int = STUDENT, previous: int | None = STUDENT
    ) -> ReactivateAction:
        """A re-add of ``userid``'s suspended enrolment."""
        return ReactivateAction(
            courseid=self.course, userid=userid, roleid=roleid, previous_roleid=previous
        )

    def status(self, userid: int) -> int | None:
        """The enrolment's status (0 active, 1 suspended), None when not enrolled."""
        enrolment = self.state.enrolment(self.course, userid)
        return None if enrolment is None else enrolment.status


class TestThroughTheCompanion:
    """With the plugin's function, a status change sends no message."""

    async def test_suspend_sends_no_welcome(self) -> None:
        """A suspend is one call of the plugin's function: suspended, role kept, no welcome."""
        site = Site()
        moodle, before = site.moodle(), site.welcomes()

        outcomes = await moodle.apply([site.suspend(site.alice)])

        assert outcomes.applied == [site.suspend(site.alice)]
        assert site.status(site.alice) == 1
        assert site.state.roles_of(site.course, site.alice) == {STUDENT}
        assert site.welcomes() == before
        assert moodle.log == [(SET_STATUS, "answer")]

    async def test_reactivate_sends_no_welcome(self) -> None:
        """A reactivation is the plugin's function then a role assign: no welcome."""
        site = Site()
        site.state.set_enrolment_status(site.course, site.alice, 1)
        moodle, before = site.moodle(), site.welcomes()

        outcomes = await moodle.apply([site.reactivate(site.alice)])

        assert outcomes.applied == [site.reactivate(site.alice)]
        assert site.status(site.alice) == 0
        assert site.state.roles_of(site.course, site.alice) == {STUDENT}
        assert site.welcomes() == before
        assert [function for function, _ in moodle.log] == [SET_STATUS, ROLE_ASSIGN]

    async def test_reactivate_with_another_role(self) -> None:
        """The new role is assigned and the previous one taken away, still no welcome."""
        site = Site()
        site.state.set_enrolment_status(site.course, site.alice, 1)
        moodle, before = site.moodle(), site.welcomes()
        action = site.reactivate(site.alice, roleid=TEACHER, previous=STUDENT)

        outcomes = await moodle.apply([action])

        assert outcomes.applied == [action]
        assert site.status(site.alice) == 0
        assert site.state.roles_of(site.course, site.alice) == {TEACHER}
        assert site.welcomes() == before
        functions = [function for function, _ in moodle.log]
        assert functions == [SET_STATUS, ROLE_ASSIGN, ROLE_UNASSIGN]

    async def test_reactivate_restores_a_removed_role(self) -> None:
        """A suspended enrolment whose role went is active with the role again."""
        site = Site()
        site.state.set_enrolment_status(site.course, site.alice, 1)
        site.state.unassign_role(site.course, site.alice, STUDENT)

        await site.moodle().apply([site.reactivate(site.alice)])

        assert site.status(site.alice) == 0
        assert site.state.roles_of(site.course, site.alice) == {STUDENT}

    async def test_drop_and_readd_in_one_batch_each(self) -> None:
        """Suspends and reactivations of several students go out batched, no welcome."""
        site = Site()
        moodle, before = site.moodle(), site.welcomes()

        await moodle.apply([site.suspend(site.alice), site.suspend(site.bob)])
        await moodle.apply([site.reactivate(site.alice), site.reactivate(site.bob)])

        assert (site.status(site.alice), site.status(site.bob)) == (0, 0)
        assert site.welcomes() == before
        assert [function for function, _ in moodle.log] == [
            SET_STATUS,
            SET_STATUS,
            ROLE_ASSIGN,
        ]

    async def test_never_enrolled_is_rejected_and_nothing_created(self) -> None:
        """A suspend or a reactivation of someone not enrolled is refused; nothing appears."""
        site = Site()
        moodle = site.moodle()
        actions: list[MoodleAction] = [
            site.suspend(site.alice),
            site.reactivate(site.carol),
        ]

        outcomes = await moodle.apply(actions)

        assert outcomes.applied == [site.suspend(site.alice)]
        [(action, error)] = outcomes.rejected
        assert action == site.reactivate(site.carol)
        assert type(error) is MoodleRejected
        assert error.errorcode == "notenrolled"
        assert site.status(site.carol) is None
        assert site.state.roles_of(site.course, site.carol) == set()

    async def test_a_refused_status_change_sends_no_role_call(self) -> None:
        """When the status call is refused, the role calls after it are not sent."""
        site = Site()
        site.state.set_enrolment_status(site.course, site.alice, 1)
        site.state.set_manual_instance(site.course, "absent")
        moodle = site.moodle()

        outcomes = await moodle.apply([site.reactivate(site.alice)])

        [(_, error)] = outcomes.rejected
        assert isinstance(error, MoodleNoManualInstance)
        assert [function for function, _ in moodle.log] == [SET_STATUS]


class TestWithoutTheCompanion:
    """Without the plugin's function: the default path, and what a site lacking it says."""

    async def test_suspend_is_refused_before_anything_is_sent(self) -> None:
        """A SuspendAction without status_function raises ValueError; no call is made."""
        site = Site(plugin=False, in_service=False)
        moodle = site.moodle(status_function=None)

        with pytest.raises(ValueError, match="companion plugin"):
            await moodle.apply([site.suspend(site.alice)])

        assert moodle.log == []
        assert site.status(site.alice) == 0

    async def test_reactivate_through_enrol_welcomes(self) -> None:
        """The default reactivation re-enrols, which sends the welcome message."""
        site = Site(plugin=False, in_service=False)
        site.state.set_enrolment_status(site.course, site.alice, 1)
        moodle, before = site.moodle(status_function=None), site.welcomes()

        await moodle.apply([site.reactivate(site.alice)])

        assert site.status(site.alice) == 0
        assert site.welcomes() == before + 1
        assert [function for function, _ in moodle.log] == [ENROL]

    async def test_site_without_the_plugin_stops_not_rejects(self) -> None:
        """Calling the function on a site without it is an operator's problem, not a row's."""
        site = Site(plugin=False, in_service=True)

        outcomes = await site.moodle().apply([site.suspend(site.alice)])

        assert outcomes.applied == []
        assert outcomes.rejected == []
        [(_, error)] = outcomes.unknown
        assert isinstance(error, MoodleFunctionMissing)
        assert not error.retriable
        assert site.status(site.alice) == 0

    async def test_function_not_in_service_is_an_auth_error(self) -> None:
        """The plugin installed but its function not in the service: accessexception."""
        site = Site(plugin=True, in_service=False)

        outcomes = await site.moodle().apply([site.suspend(site.alice)])

        [(_, error)] = outcomes.unknown
        assert type(error) is MoodleAuthError
        assert error.errorcode == "accessexception"
        assert site.status(site.alice) == 0


class TestDetection:
    """Whether the site offers the function, read from site_info's function list."""

    @pytest.mark.parametrize(
        ("case", "expected"),
        [
            ("companion_site_info_with_plugin", SET_STATUS),
            ("companion_site_info_without_plugin", None),
            ("site_info", None),
        ],
    )
    def test_recorded_site_info(self, case: str, expected: str | None) -> None:
        """The recorded answers with and without the function are told apart."""
        assert status_function_listed(load(case)["response_body"]) == expected

    async def test_simulated_site_info(self) -> None:
        """The simulator lists it only where the plugin is installed and in the service."""
        found = {}
        for plugin, in_service in ((True, True), (True, False), (False, True)):
            moodle = Site(plugin=plugin, in_service=in_service).moodle()
            found[plugin, in_service] = status_function_listed(
                await moodle.get_site_info()
            )
        assert found == {
            (True, True): SET_STATUS,
            (True, False): None,
            (False, True): None,
        }
