"""Files that hold student data are readable by the service account only.

The poller's state file (its shadow map holds every tracked registration:
person, course, section) and the reconcile reports (names, courses, outcomes)
were created 0644 under the usual umask 022: readable by every local account.
Here files are created 0600 and the directories we create 0700, whatever the
umask; a file that already exists is tightened when it is rewritten or opened.
Directories that already exist are left as they are: they are someone else's
(``/var/log``, a mounted volume), and their mode is theirs to choose.

SQLite creates its ``-wal`` and ``-shm`` side files with the database file's
mode, so a database created here (``prepare_private_file``) gets 0600 side files
too; side files left by an older, looser version are tightened as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
#: What SQLite may create beside a database file.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (existing ones untouched)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: theirs
        # mkdir's mode is filtered by the umask; a lax one must not loosen it
        directory.chmod(DIRECTORY_MODE)


def _tighten(descriptor: int) -> None:
    # O_CREAT's mode applies only to a file it creates; an older file keeps its
    # mode unless told otherwise.
    os.fchmod(descriptor, FILE_MODE)


def open_private(path: Path, *, newline: str | None = None) -> IO[str]:
    """``path`` opened for writing text (truncated), mode 0600, its directory made private."""
    make_private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        _tighten(descriptor)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "w", encoding="utf-8", newline=newline)


def write_private_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8), mode 0600."""
    with open_private(path) as handle:
        handle.write(text)


def write_private_bytes(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path``, mode 0600, flushed to the disk before returning."""
    make_private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        _tighten(descriptor)
        with os.fdopen(descriptor, "wb", closefd=False) as handle:
            handle.write(content)
            handle.flush()
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prepare_private_file(path: Path, side_suffixes: tuple[str, ...] = ()) -> None:
    """Make sure ``path`` exists with mode 0600 before a library opens it.

    For files another library creates (SQLite): created empty if missing, made
    0600 if present, and so are the side files named by ``side_suffixes`` that
    exist already.
    """
    make_private_directory(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        _tighten(descriptor)
    finally:
        os.close(descriptor)
    for suffix in side_suffixes:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.chmod(FILE_MODE)


__all__ = [
    "DIRECTORY_MODE",
    "FILE_MODE",
    "SQLITE_SIDE_FILES",
    "make_private_directory",
    "open_private",
    "prepare_private_file",
    "write_private_bytes",
    "write_private_text",
]


def replace_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; a reader sees the old
    file or the new one, never half of one. For files without student data (a
    mapping file): the mode is the umask's, as an editor would leave it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
