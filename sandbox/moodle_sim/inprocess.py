"""The Moodle simulator reached in-process: the consumer's own Moodle adapter, no socket.

``InProcessMoodle`` is the project's Moodle client with HTTP replaced by a direct
call into ``MoodleSimulator.serve``, the way httpx's ``MockTransport`` replaces
the network: the request is form-encoded and decoded exactly as over the
socket (``max_input_vars`` included), the answer is checked by the client's own
``check_answer``, and the domain's actions go through the real translation
(``connectors.moodle.actions``). Tests and the property test drive the apply
side through it without a server, with the simulator's recorded behaviour.

Faults a network adds are injected per call: ``lose_replies(n)`` (the request is
applied, its answer is lost: ``MoodleUnavailable``), ``refuse(n)`` (nothing is
applied: ``MoodleUnavailable``), or any rule given to ``on_call``. ``after_serve``
runs once Moodle has applied a call and before its answer is read (a test can
end the consumer there, as kill -9 would).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from connectors.moodle.accounts import MoodleAccountWrites
from connectors.moodle.actions import MoodleWrites
from connectors.moodle.client import check_answer
from connectors.moodle.errors import MoodleUnavailable
from connectors.moodle.form import ROUTING_FIELDS, encode_params
from connectors.moodle.reads import MoodleReads
from connectors.moodle.structure import MoodleStructure
from sandbox.moodle_sim.protocol import decode_php_vars, truncate_input_vars
from sandbox.moodle_sim.server import MoodleSimulator

#: What happens to one call: answered, applied with its answer lost, refused, or
#: cut off and applied later (``release_late``), as a hung PHP request is.
CallFate = Literal["answer", "lose_reply", "refuse", "apply_later"]


def _nothing(function: str) -> None:
    del function


class InProcessMoodle(MoodleReads, MoodleWrites, MoodleAccountWrites, MoodleStructure):
    """``MoodleClient``'s reads and writes (accounts too) over a direct call into a simulator."""

    def __init__(
        self,
        simulator: MoodleSimulator,
        *,
        max_input_vars: int | None = None,
        concurrency: int = 4,
        status_function: str | None = None,
    ) -> None:
        self.simulator = simulator
        self.max_input_vars = max_input_vars or simulator.max_input_vars
        self.concurrency = concurrency
        self.status_function = status_function
        self._lose = 0
        self._refuse = 0
        self.rule: Callable[[str, Mapping[str, object]], CallFate] | None = None
        self.after_serve: Callable[[str], None] = _nothing
        self._late: list[dict[str, object]] = []
        #: Every call made: (function, fate).
        self.log: list[tuple[str, CallFate]] = []

    async def release_late(self) -> int:
        """Apply the calls cut off with ``apply_later`` now; how many there were."""
        late, self._late = self._late, []
        for params in late:
            await self.simulator.serve(params)
        return len(late)

    def lose_replies(self, n: int) -> None:
        """The next ``n`` calls are applied by Moodle and their answers lost."""
        self._lose += n

    def refuse(self, n: int) -> None:
        """The next ``n`` calls never reach Moodle (connection refused)."""
        self._refuse += n

    def on_call(
        self, rule: Callable[[str, Mapping[str, object]], CallFate] | None
    ) -> None:
        """Decide each call's fate with ``rule(function, params)`` (None: no rule)."""
        self.rule = rule

    def _fate(self, function: str, params: Mapping[str, object]) -> CallFate:
        if self._refuse:
            self._refuse -= 1
            return "refuse"
        if self._lose:
            self._lose -= 1
            return "lose_reply"
        return self.rule(function, params) if self.rule is not None else "answer"

    async def call(self, function: str, params: Mapping[str, object]) -> object:
        """One web-service call, decoded and checked as ``MoodleClient.call`` does."""
        fields = encode_params(params)
        if ROUTING_FIELDS + len(fields) > self.max_input_vars:
            raise ValueError(
                f"{function}: {ROUTING_FIELDS + len(fields)} form fields exceed "
                f"max_input_vars={self.max_input_vars}"
            )
        fate = self._fate(function, params)
        self.log.append((function, fate))
        if fate == "refuse":
            raise MoodleUnavailable(f"{function}: connection refused (in-process)")
        pairs = [
            ("wstoken", self.simulator.token),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *fields,
        ]
        decoded = decode_php_vars(
            truncate_input_vars(pairs, self.simulator.max_input_vars)
        )
        if fate == "apply_later":
            self._late.append(decoded)
            raise MoodleUnavailable(f"{function}: request timed out (in-process)")
        rendered = await self.simulator.serve(decoded)
        self.after_serve(function)
        if fate == "lose_reply":
            raise MoodleUnavailable(f"{function}: reply lost (in-process)")
        return check_answer(function, 200, None, rendered.body)
