"""The reconcile on a Conduit site: Moodle's rosters where web services exist, else what was sent.

Conduit's cron, not enrolstream, changes Moodle, so only Moodle can say what was
applied. With ``conduit.web_services`` the rosters are read through web services
and each participant is keyed as the Conduit sink keys people (the number derived
from their idnumber); ``--apply`` queues the differences as rows in the outbox and
delivers them. Without web services nothing can be read: the reconcile says so
plainly (``NOTE_SENT_ONLY``), compares PowerCampus with what enrolstream *sent*
(the outbox's book), and refuses to apply.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from connectors.conduit.gateway import ConduitGateway
from connectors.conduit.identity import ConduitIdentities, conduit_userid
from connectors.local.outbox import SqliteOutboxStore
from consumers.errors import ConsumerError
from consumers.mapping import MappingSet
from consumers.outbox import Outbox
from consumers.ports import ActionOutcomes, RosterEntry, Rosters
from enrolstream.settings import Settings
from enrolstream.wiring.common import open_moodle
from enrolstream.wiring.conduit import open_conduit
from schemas.actions import MoodleAction

__all__ = ["NOTE_SENT_ONLY", "ConduitSite", "SentOnly", "open_conduit_site"]

NOTE_SENT_ONLY = (
    "This Conduit site has no web services (conduit.web_services = false): Moodle's "
    "rosters cannot be read, so enrolstream can only report what it sent. The "
    "differences below compare PowerCampus with what was sent to Conduit, not with "
    "what Moodle holds; nothing can be applied."
)


class SentOnly(ConsumerError):
    """A write asked of a Conduit site whose Moodle cannot be read."""


def rekeyed(roster: dict[int, RosterEntry]) -> dict[int, RosterEntry]:
    """A roster keyed as the Conduit sink keys people (participants without an
    idnumber are never ours: left out)."""
    result = {}
    for entry in roster.values():
        if entry.idnumber:
            userid = conduit_userid(entry.idnumber)
            result[userid] = RosterEntry(
                userid=userid,
                idnumber=entry.idnumber,
                username=entry.username,
                roleids=entry.roleids,
                status=entry.status,
                fullname=entry.fullname,
            )
    return result


@dataclass(slots=True)
class ConduitSite:
    """``ReconcileMoodle`` for a Conduit site (see the module docstring)."""

    store: SqliteOutboxStore
    moodle: Rosters | None = None
    outbox: Outbox | None = None
    gateway: ConduitGateway | None = None

    async def read_rosters(
        self,
        course_ids: Iterable[int],
        *,
        progress: Callable[[int], None] | None = None,
        attempts: int = 1,
        retry_delay_s: float = 1.0,
        failed: dict[int, str] | None = None,
    ) -> dict[int, dict[int, RosterEntry]]:
        """Moodle's rosters re-keyed, or (no web services) what Conduit was told."""
        courses = list(course_ids)
        if self.moodle is not None:
            read = await self.moodle.read_rosters(
                courses,
                progress=progress,
                attempts=attempts,
                retry_delay_s=retry_delay_s,
                failed=failed,
            )
            return {course: rekeyed(roster) for course, roster in read.items()}
        rosters: dict[int, dict[int, RosterEntry]] = {c: {} for c in courses}
        for courseid, idnumber, held in self.store.sent_pairs():
            if courseid in rosters:
                userid = conduit_userid(idnumber)
                rosters[courseid][userid] = RosterEntry(
                    userid=userid,
                    idnumber=idnumber,
                    username="",
                    roleids=held.roleids,
                    status="active" if held.active else "inactive",
                )
        if progress is not None:
            progress(len(courses))
        return rosters

    async def apply(self, actions: Sequence[MoodleAction]) -> ActionOutcomes:
        """Queue the rows and deliver them now; refused without web services."""
        if self.outbox is None or self.gateway is None:
            raise SentOnly(NOTE_SENT_ONLY)
        outcomes = await self.gateway.apply(actions)
        await self.outbox.deliver(flush=True)
        return outcomes


@contextlib.asynccontextmanager
async def open_conduit_site(
    settings: Settings, mapping: MappingSet, *, attempts: int
) -> AsyncIterator[tuple[ConduitSite, ConduitIdentities]]:
    """The site and the resolver the reconcile uses on a Conduit site."""
    if not settings.conduit.web_services:
        with SqliteOutboxStore(settings.conduit.outbox_dir) as store:
            yield (
                ConduitSite(store),
                ConduitIdentities(settings.moodle.user_transform),
            )
        return
    async with (
        open_moodle(settings, attempts=attempts, reads_only=True) as moodle,
        open_conduit(settings, mapping) as sink,
    ):
        site = ConduitSite(
            sink.store, moodle=moodle, outbox=sink.outbox, gateway=sink.gateway
        )
        yield site, sink.identities
