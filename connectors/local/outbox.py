"""The Conduit outbox on this machine: windows of rows, what the site was told, copies.

One SQLite file (``outbox.sqlite``) holds the windows not yet delivered, the
rows carried for another delivery, and per (course, user) what the site was
told it holds (the person's idnumber with it); rows and that book change in one
transaction, so a crash never leaves one without the other. Delivered windows'
rows are deleted: their exact files are kept as dated copies,
``sent/YYYY-MM-DD/HHMMSS.ffffff-w<window>-<name>`` (campus-enrollment-sync's
``log/`` CSVs), which the operator may archive or prune.

This directory is state, like the poller's: put it on a disk that outlives the
process (a volume in Kubernetes). Everything here is student data: files 0600,
the directories created 0700 (``connectors.local.files``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from connectors.local.files import (
    SQLITE_SIDE_FILES,
    make_private_directory,
    prepare_private_file,
    write_private_bytes,
)
from consumers.decisions import Held
from consumers.errors import TargetUnavailable
from consumers.ports import OutboxRow, OutboxWindow

__all__ = ["OutboxStoreFailed", "SqliteOutboxStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    seq INTEGER PRIMARY KEY,
    opened_at TEXT NOT NULL,
    cut_at TEXT,
    delivered_at TEXT
);
CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    file TEXT NOT NULL,
    key TEXT NOT NULL,
    cells TEXT NOT NULL,
    PRIMARY KEY (seq, position)
);
CREATE TABLE IF NOT EXISTS carried (
    position INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    key TEXT NOT NULL,
    cells TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS held (
    courseid INTEGER NOT NULL,
    userid INTEGER NOT NULL,
    idnumber TEXT NOT NULL,
    active INTEGER,
    roleids TEXT,
    PRIMARY KEY (courseid, userid)
);
"""


class OutboxStoreFailed(TargetUnavailable):
    """The outbox's file could not be read or written (disk full, I/O error)."""


def _row(file: str, key: str, cells: str) -> OutboxRow:
    return OutboxRow(
        file=file, key=tuple(json.loads(key)), cells=tuple(json.loads(cells))
    )


def _stamp(moment: datetime) -> str:
    return moment.isoformat()


class SqliteOutboxStore:
    """``consumers.ports.OutboxStore`` in ``directory/outbox.sqlite``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        make_private_directory(directory)
        self.path = directory / "outbox.sqlite"
        prepare_private_file(self.path, SQLITE_SIDE_FILES)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        try:
            # FULL: a queued row must survive a power cut (its offsets may be committed
            # once the window is delivered, and the ledger already says it was sent)
            self._db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA
            )
        except sqlite3.Error as exc:
            self._db.close()
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _one(self, sql: str, *args: object) -> object:
        try:
            row = self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc
        return None if row is None else row[0]

    def _open_seq(self) -> int | None:
        seq = self._one("SELECT seq FROM windows WHERE cut_at IS NULL")
        return None if seq is None else int(str(seq))

    def queue(
        self,
        rows: Sequence[OutboxRow],
        held: Mapping[tuple[int, int], tuple[str, Held | None]],
        now: datetime,
    ) -> int:
        """Rows into the open window and the book updated, in one transaction."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._open_seq()
                if seq is None and rows:
                    cursor = self._db.execute(
                        "INSERT INTO windows (opened_at) VALUES (?)", (_stamp(now),)
                    )
                    seq = int(cursor.lastrowid or 0)
                if rows:
                    start = self._db.execute(
                        "SELECT COALESCE(MAX(position), -1) + 1 FROM rows WHERE seq = ?",
                        (seq,),
                    ).fetchone()[0]
                    self._db.executemany(
                        "INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
                        [
                            (
                                seq,
                                start + i,
                                r.file,
                                json.dumps(r.key),
                                json.dumps(r.cells),
                            )
                            for i, r in enumerate(rows)
                        ],
                    )
                self._db.executemany(
                    "INSERT OR REPLACE INTO held VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            courseid,
                            userid,
                            idnumber,
                            None if state is None else int(state.active),
                            None
                            if state is None
                            else json.dumps(sorted(state.roleids)),
                        )
                        for (courseid, userid), (idnumber, state) in held.items()
                    ],
                )
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc
        return seq or self.last_seq()

    def held(self, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Held]:
        """What the site was told each pair holds (absent: nothing)."""
        result: dict[tuple[int, int], Held] = {}
        try:
            for courseid, userid in pairs:
                row = self._db.execute(
                    "SELECT active, roleids FROM held WHERE courseid = ? AND userid = ?",
                    (courseid, userid),
                ).fetchone()
                if row is not None and row[0] is not None:
                    roles = frozenset(int(r) for r in json.loads(row[1]))
                    result[(courseid, userid)] = Held(bool(row[0]), roles)
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc
        return result

    def idnumber(self, courseid: int, userid: int) -> str | None:
        """The idnumber queued with the pair (None: never)."""
        value = self._one(
            "SELECT idnumber FROM held WHERE courseid = ? AND userid = ?",
            courseid,
            userid,
        )
        return None if value is None else str(value)

    def sent_pairs(self) -> list[tuple[int, str, Held]]:
        """(course id, idnumber, what the site holds) of every pair told it holds some."""
        try:
            rows = self._db.execute(
                "SELECT courseid, idnumber, active, roleids FROM held "
                "WHERE active IS NOT NULL ORDER BY courseid, idnumber"
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc
        return [
            (int(c), str(i), Held(bool(a), frozenset(int(r) for r in json.loads(ro))))
            for c, i, a, ro in rows
        ]

    def opened_at(self) -> datetime | None:
        """When the open window was opened (None: none open)."""
        value = self._one("SELECT opened_at FROM windows WHERE cut_at IS NULL")
        return None if value is None else datetime.fromisoformat(str(value))

    def cut(self, now: datetime) -> int | None:
        """Close the open window; its number (None: none open)."""
        seq = self._open_seq()
        if seq is not None:
            self._write(
                "UPDATE windows SET cut_at = ? WHERE seq = ?", (_stamp(now), seq)
            )
        return seq

    def pending(self) -> list[OutboxWindow]:
        """Windows cut and not delivered, oldest first, with their rows in order."""
        try:
            seqs = [
                int(row[0])
                for row in self._db.execute(
                    "SELECT seq FROM windows WHERE cut_at IS NOT NULL "
                    "AND delivered_at IS NULL ORDER BY seq"
                )
            ]
            return [
                OutboxWindow(
                    seq=seq,
                    rows=tuple(
                        _row(*row)
                        for row in self._db.execute(
                            "SELECT file, key, cells FROM rows WHERE seq = ? "
                            "ORDER BY position",
                            (seq,),
                        )
                    ),
                )
                for seq in seqs
            ]
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc

    def last_seq(self) -> int:
        """The newest window's number (0: none yet)."""
        return int(str(self._one("SELECT COALESCE(MAX(seq), 0) FROM windows")))

    def delivered_through(self) -> int:
        """Every window up to this number is delivered."""
        undelivered = self._one(
            "SELECT MIN(seq) FROM windows WHERE delivered_at IS NULL"
        )
        if undelivered is None:
            return self.last_seq()
        return int(str(undelivered)) - 1

    def carried(self) -> list[OutboxRow]:
        """Rows delivered over an untaken file, to deliver once more."""
        try:
            return [
                _row(*row)
                for row in self._db.execute(
                    "SELECT file, key, cells FROM carried ORDER BY position"
                )
            ]
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc

    def keep_copy(self, name: str, content: bytes, seq: int, now: datetime) -> None:
        """``sent/<date>/<time>-w<seq>-<name>``, 0600."""
        folder = self.directory / "sent" / now.strftime("%Y-%m-%d")
        make_private_directory(folder)
        path = folder / f"{now.strftime('%H%M%S.%f')}-w{seq:06d}-{name}"
        try:
            write_private_bytes(path, content)
        except OSError as exc:
            raise OutboxStoreFailed(f"{path}: {exc.strerror}") from exc

    def delivered(
        self, seq: int | None, carried: Sequence[OutboxRow], now: datetime
    ) -> None:
        """Window ``seq`` delivered (its rows deleted) and the carried rows replaced."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if seq is not None:
                    self._db.execute(
                        "UPDATE windows SET delivered_at = ? WHERE seq = ?",
                        (_stamp(now), seq),
                    )
                    self._db.execute("DELETE FROM rows WHERE seq = ?", (seq,))
                self._db.execute("DELETE FROM carried")
                self._db.executemany(
                    "INSERT INTO carried VALUES (?, ?, ?, ?)",
                    [
                        (i, r.file, json.dumps(r.key), json.dumps(r.cells))
                        for i, r in enumerate(carried)
                    ],
                )
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            with self._db:
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise OutboxStoreFailed(f"{self.path}: {exc}") from exc
