"""The Conduit sink: the domain's actions as rows in the outbox (``MoodleGateway``).

``apply`` turns each action into enrolment rows (``translate.rows_for``) and
queues them, with what the site is told each pair holds afterwards, in the
outbox's open window in one durable step. *Applied* here means **queued for
Conduit**: the rows are on this machine's disk and will reach Conduit's folder in
order; the Kafka offsets of their events are committed only once they are there
(``consumers.outbox``). What Conduit then does with them, and when, it does not
tell: see docs/conduit.md.

``holdings`` answers from the same book: what Conduit was told, exactly, with no
remote read. An action is rejected (and dead-lettered) when its course has no
shortname in the mapping, its person no idnumber, or a role no Conduit name
(``conduit.roles``); a failing disk leaves every action of the batch unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from connectors.conduit.files import ConduitFormat
from connectors.conduit.translate import rows_for
from consumers.decisions import Held
from consumers.errors import ActionRejected, TargetError
from consumers.outbox import Outbox
from consumers.ports import ActionOutcomes, OutboxRow, OutboxStore
from schemas.actions import MoodleAction

__all__ = ["ConduitGateway", "ConduitRowRejected"]


class ConduitRowRejected(ActionRejected):
    """The action cannot be written as a Conduit row (the reason says what is missing)."""

    errorcode = "conduit_row"


class ConduitGateway:
    """``consumers.ports.MoodleGateway`` that writes Conduit's files."""

    def __init__(
        self,
        outbox: Outbox,
        store: OutboxStore,
        file_format: ConduitFormat,
        *,
        shortnames: Mapping[int, str],
        role_names: Mapping[int, str],
        idnumbers: Mapping[int, str],
    ) -> None:
        """``idnumbers``: the idnumber behind each ledger number (the identities')."""
        self.outbox = outbox
        self.store = store
        self.format = file_format
        self.shortnames = shortnames
        self.role_names = role_names
        self.idnumbers = idnumbers

    async def holdings(
        self, pairs: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], Held]:
        """What Conduit was told each pair holds (absent: nothing)."""
        return self.store.held(pairs)

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Queue every action's rows at once; every action is reported."""
        outcomes = ActionOutcomes()
        rows: list[OutboxRow] = []
        told: dict[tuple[int, int], tuple[str, Held | None]] = {}
        queued: list[MoodleAction] = []
        try:
            for action in actions:
                pair = action.key()
                before = told.get(pair)
                held = before[1] if before else self.store.held([pair]).get(pair)
                try:
                    made, after, idnumber = self._rows(action, held)
                except ConduitRowRejected as error:
                    outcomes.rejected.append((action, error))
                    continue
                rows += made
                told[pair] = (idnumber, after)
                queued.append(action)
            self.outbox.queue(rows, told)
        except TargetError as error:
            outcomes.unknown = [(action, error) for action in queued]
            return outcomes
        outcomes.applied = queued
        return outcomes

    def _rows(
        self, action: MoodleAction, held: Held | None
    ) -> tuple[list[OutboxRow], Held | None, str]:
        courseid, userid = action.key()
        shortname = self.shortnames.get(courseid)
        if shortname is None:
            raise ConduitRowRejected(
                f"course {courseid} is in no mapping file: no shortname to write"
            )
        idnumber = self.idnumbers.get(userid) or self.store.idnumber(courseid, userid)
        if idnumber is None:
            raise ConduitRowRejected(f"no idnumber is known for ledger user {userid}")
        role_rows, after = rows_for(action, held)
        made = []
        for verb, roleid in role_rows:
            role = self.role_names.get(roleid)
            if role is None:
                raise ConduitRowRejected(
                    f"role {roleid} has no Conduit name: add it to conduit.roles"
                )
            made.append(
                self.format.enrolment(
                    add=verb == "add", shortname=shortname, idnumber=idnumber, role=role
                )
            )
        return made, after, idnumber
