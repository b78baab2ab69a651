"""Conduit's CSV files: the columns as the site maps them, written and read back.

Conduit reads a file's columns by their headings, which are the names mapped in
its Settings > Mappings (the vendor recommends the field names themselves). The
layout says which of our fields goes under which heading, in which order, and
the words of its actions; by default campus-enrollment-sync's enrolment file
(``enrollments.csv``: ``action,shortname,idnumber,role``, ``add``/``drop``) and a
user file (``auth.csv``: ``action,username,idnumber,firstname,lastname,email,auth``,
``create``/``update``).

A file is UTF-8 with ``\\n`` line ends, quoted only where a value needs it
(``csv.QUOTE_MINIMAL``). Within a file a key has one row, the latest (rows are
states); drops come before adds, creates before updates, so a role change (a drop
and an add) ends with the new role whatever Conduit's ``drop`` does.
``parse`` reads back a file we wrote (the outbox appends to one Conduit has not
taken) and refuses, naming the columns, one whose header is not ours.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumers.errors import TargetRefused
from consumers.ports import OutboxRow

__all__ = [
    "ENROLMENTS",
    "ENROLMENT_FIELDS",
    "USERS",
    "USER_FIELDS",
    "ConduitFormat",
    "ConduitLayout",
    "ForeignFile",
]

ENROLMENTS = "enrolments"
USERS = "users"
#: Our fields of the enrolment file, and the default heading of each.
ENROLMENT_FIELDS: tuple[str, ...] = ("action", "shortname", "idnumber", "role")
#: Our fields of the user file.
USER_FIELDS: tuple[str, ...] = (
    "action",
    "username",
    "idnumber",
    "firstname",
    "lastname",
    "email",
    "auth",
)
_ENROLMENT_KEY = ("shortname", "idnumber", "role")
_USER_KEY = ("action", "idnumber")


class ForeignFile(TargetRefused):
    """A file on the server under our file's name was not written by us."""


@dataclass(frozen=True, slots=True)
class ConduitLayout:
    """File names, (field, heading) pairs in column order, and action words."""

    enrolments_file: str = "enrollments.csv"
    users_file: str = "auth.csv"
    enrolment_columns: tuple[tuple[str, str], ...] = tuple(
        (f, f) for f in ENROLMENT_FIELDS
    )
    user_columns: tuple[tuple[str, str], ...] = tuple((f, f) for f in USER_FIELDS)
    add: str = "add"
    drop: str = "drop"
    create: str = "create"
    update: str = "update"


class ConduitFormat:
    """``consumers.ports.FileFormat`` for Conduit's enrolment and user files."""

    files: tuple[str, ...] = (USERS, ENROLMENTS)

    def __init__(self, layout: ConduitLayout) -> None:
        self.layout = layout
        self._columns = {
            ENROLMENTS: layout.enrolment_columns,
            USERS: layout.user_columns,
        }
        self._keys = {ENROLMENTS: _ENROLMENT_KEY, USERS: _USER_KEY}

    def remote_name(self, file: str) -> str:
        """The file's name in Conduit's folder."""
        if file == USERS:
            return self.layout.users_file
        return self.layout.enrolments_file

    def headings(self, file: str) -> list[str]:
        """The file's header row."""
        return [heading for _, heading in self._columns[file]]

    def row(self, file: str, values: Mapping[str, str]) -> OutboxRow:
        """A row of ``file`` from our field values (a field left out is empty)."""
        cells = tuple(values.get(field, "") for field, _ in self._columns[file])
        return OutboxRow(file=file, key=self._key(file, cells), cells=cells)

    def enrolment(
        self, *, add: bool, shortname: str, idnumber: str, role: str
    ) -> OutboxRow:
        """One row of the enrolment file."""
        word = self.layout.add if add else self.layout.drop
        values = {"action": word, "shortname": shortname, "idnumber": idnumber}
        return self.row(ENROLMENTS, {**values, "role": role})

    def _key(self, file: str, cells: Sequence[str]) -> tuple[str, ...]:
        position = {field: i for i, (field, _) in enumerate(self._columns[file])}
        return tuple(cells[position[field]] for field in self._keys[file])

    def _first(self, file: str, row: OutboxRow) -> bool:
        """Whether the row goes in the first part of its file (drops; creates)."""
        action = row.cells[[f for f, _ in self._columns[file]].index("action")]
        if file == ENROLMENTS:
            return action == self.layout.drop
        return action == self.layout.create

    def compose(self, file: str, rows: Sequence[OutboxRow]) -> bytes:
        """The header, then the latest row of each key: drops (creates) first."""
        latest: dict[tuple[str, ...], OutboxRow] = {}
        for row in rows:
            latest.pop(row.key, None)
            latest[row.key] = row
        ordered = sorted(latest.values(), key=lambda r: not self._first(file, r))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.headings(file))
        writer.writerows(row.cells for row in ordered)
        return buffer.getvalue().encode()

    def parse(self, file: str, content: bytes) -> list[OutboxRow]:
        """The rows of a file we wrote; ``ForeignFile`` when its header is not ours."""
        name = self.remote_name(file)
        try:
            lines = list(csv.reader(io.StringIO(content.decode())))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ForeignFile(f"{name} on the server cannot be read: {exc}") from exc
        wanted = self.headings(file)
        if not lines or lines[0] != wanted:
            found = ",".join(lines[0]) if lines else "(empty)"
            raise ForeignFile(
                f"{name} on the server has the columns {found!r}, not "
                f"{','.join(wanted)!r}: it was not written by enrolstream with these "
                "settings; leave it to Conduit (or move it away), then deliveries "
                "resume"
            )
        rows = []
        for cells in lines[1:]:
            if len(cells) != len(wanted):
                raise ForeignFile(
                    f"{name} on the server has a row of {len(cells)} cells, "
                    f"not {len(wanted)}"
                )
            rows.append(
                OutboxRow(file=file, key=self._key(file, cells), cells=tuple(cells))
            )
        return rows
