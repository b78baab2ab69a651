"""Section groups made in Moodle when first needed, with the ledger's fault discipline.

``SectionGroups.ensure`` makes sure every section group a batch's decisions
need exists in its course and is in the created book before the batch is
planned. Per group:

* **intent first**: an ``uncertain`` record (course, idnumber, name) is written
  (acknowledged) before ``core_group_create_groups`` is sent, alone in its
  request (a batch rolled back leaves a group behind in Moodle's cache,
  recorded); the answer's id settles it;
* **an unknown outcome is read back, never guessed**: a record still uncertain
  (the call timed out, the process died) is settled by listing the course's
  groups and finding its idnumber; only if it is not there is it created again,
  so a group is never made twice;
* a refusal is read back too: two consumers creating the same group race, and
  the loser is told the name (checked first) or the idnumber is taken; a group
  carrying the section's key is then ours, and adopted. A name some other group
  of the course already has (a teacher's) leaves the section without a group of
  ours for this process's lifetime, with a warning: its members are not managed;
* Moodle unavailable raises its retriable error: nothing was decided, the batch
  is read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from consumers.created_book import CreatedBook
from consumers.errors import ActionRejected
from consumers.groups import group_name
from schemas.created import CreatedGroup
from schemas.events import SectionKey

__all__ = ["MoodleGroups", "SectionGroups"]

log = structlog.get_logger()


class MoodleGroups(Protocol):
    """The group calls (``connectors.moodle.structure.MoodleStructure``)."""

    async def get_course_groups(self, courseid: int) -> list[dict[str, object]]:
        """The course's groups."""
        ...

    async def create_group(self, courseid: int, name: str, idnumber: str) -> int:
        """Create one group; its id."""
        ...


@dataclass(slots=True)
class SectionGroups:
    """Creates section groups on demand; answers which groups are ours."""

    moodle: MoodleGroups
    book: CreatedBook
    name_template: str
    created: int = 0
    #: (course, idnumber) left without a group of ours in this process (a name
    #: taken by another group): not tried again, warned once.
    unavailable: set[tuple[int, str]] = field(default_factory=set)

    def ids(self, courseid: int) -> dict[str, int]:
        """idnumber -> group id of the course's groups of ours."""
        return self.book.group_ids(courseid)

    def ours(self, courseid: int) -> frozenset[int]:
        """The course's groups of ours."""
        return self.book.ours(courseid)

    async def ensure(self, wanted: Mapping[int, Mapping[str, SectionKey]]) -> None:
        """Every wanted (course → idnumber → section) group exists and is ours."""
        for courseid, sections in wanted.items():
            missing = {
                idnumber: section
                for idnumber, section in sections.items()
                if idnumber not in self.book.group_ids(courseid)
                and (courseid, idnumber) not in self.unavailable
            }
            if missing:
                await self._ensure_course(courseid, missing)

    async def _ensure_course(
        self, courseid: int, missing: Mapping[str, SectionKey]
    ) -> None:
        listed: dict[str, int] | None = None
        for idnumber, section in missing.items():
            earlier = self.book.group(courseid, idnumber)
            if earlier is not None:  # an intent whose outcome is unknown
                listed = listed if listed is not None else await self._list(courseid)
                if idnumber in listed:
                    await self._settle(earlier, listed[idnumber])
                    continue
            await self._create(
                courseid, idnumber, group_name(section, self.name_template)
            )

    async def _list(self, courseid: int) -> dict[str, int]:
        groups = await self.moodle.get_course_groups(courseid)
        return {
            str(g.get("idnumber")): int(str(g["id"]))
            for g in groups
            if g.get("idnumber") and "id" in g
        }

    async def _settle(self, intent: CreatedGroup, groupid: int) -> None:
        await self.book.record(
            [intent.model_copy(update={"groupid": groupid, "uncertain": False})]
        )

    async def _create(self, courseid: int, idnumber: str, name: str) -> None:
        intent = CreatedGroup(
            courseid=courseid, idnumber=idnumber, name=name, uncertain=True
        )
        await self.book.record([intent])
        try:
            groupid = await self.moodle.create_group(courseid, name, idnumber)
        except ActionRejected as refused:
            listed = await self._list(courseid)
            if idnumber in listed:  # another consumer made it first: ours
                await self._settle(intent, listed[idnumber])
                return
            self.unavailable.add((courseid, idnumber))
            log.warning(
                "section_group_not_created",
                courseid=courseid,
                idnumber=idnumber,
                name=name,
                error=str(refused),
                hint="another group of the course may have this name: rename it, or "
                "change consumer.group_name; the section's members are not managed",
            )
            return
        await self._settle(intent, groupid)
        self.created += 1
        log.info(
            "section_group_created",
            courseid=courseid,
            idnumber=idnumber,
            groupid=groupid,
        )
