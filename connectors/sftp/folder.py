"""One folder on an SFTP server, as the outbox needs it (``consumers.ports.RemoteFolder``).

* **Files appear complete.** Content is written under a temporary name in the
  same folder (``.<name>.enrolstream-<random>.part``: a dot-file no site takes
  for its own), flushed (``fsync@openssh.com`` where the server has it), then
  renamed to its name. Without ``replace`` the plain SFTP rename is used, which
  never replaces an existing file; with it ``posix-rename@openssh.com`` replaces
  it in one step (a server without it: the old file is removed, then renamed).
* **The server is the one we know.** Its host key is checked against
  ``known_hosts`` (the file given, else ``~/.ssh/known_hosts``); there is no way
  to turn the check off. ``~/.ssh/config`` and an SSH agent are not used:
  everything comes from the settings.
* **Secrets stay secret.** The passphrase and password are handed to asyncssh
  and nowhere else; no message or log line carries them.

One connection is opened when first needed and kept; any error closes it, and
the next call opens a new one (a restarted server is reconnected to).
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncssh
import structlog

from connectors.sftp.errors import SftpRefused, SftpUnavailable, map_asyncssh_errors

__all__ = ["SftpFolder", "SftpLogin"]

log = structlog.get_logger()

TEMPORARY_MARK = ".enrolstream-"


@dataclass(frozen=True, slots=True)
class SftpLogin:
    """Where and as whom to log in. ``repr`` shows no secret."""

    host: str
    port: int
    username: str
    private_key: Path | None = None
    passphrase: str | None = None
    password: str | None = None
    known_hosts: Path | None = None
    connect_timeout_s: float = 30.0

    def __repr__(self) -> str:
        return (
            f"SftpLogin(host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, private_key={self.private_key!r})"
        )

    def options(self) -> dict[str, Any]:
        """asyncssh.connect's keyword arguments."""
        options: dict[str, Any] = {
            "port": self.port,
            "username": self.username,
            "connect_timeout": self.connect_timeout_s,
            "config": None,  # never ~/.ssh/config: the settings say everything
            "agent_path": None,  # nor an SSH agent's keys
            "client_keys": [str(self.private_key)] if self.private_key else None,
            "passphrase": self.passphrase or None,
            "password": self.password or None,
        }
        if self.known_hosts is not None:
            # asyncssh's known_hosts=None would turn the check off: never passed
            options["known_hosts"] = str(self.known_hosts)
        return options


class SftpFolder:
    """Read and publish files in ``folder`` on the server ``login`` names."""

    def __init__(self, login: SftpLogin, folder: str) -> None:
        self.login = login
        self.folder = folder
        self.where = f"sftp://{login.username}@{login.host}:{login.port}{folder}"
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        connection, self._connection, self._sftp = self._connection, None, None
        if connection is not None:
            connection.close()
            try:
                await connection.wait_closed()
            except (asyncssh.Error, OSError) as exc:
                log.debug("sftp_close_failed", error=str(exc))

    async def _client(self) -> asyncssh.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        with map_asyncssh_errors(self.where):
            self._connection = await asyncssh.connect(
                self.login.host, **self.login.options()
            )
            self._sftp = await self._connection.start_sftp_client()
        return self._sftp

    def _path(self, name: str) -> str:
        return posixpath.join(self.folder, name)

    async def check(self, *, tidy: bool = True) -> None:
        """Log in and make sure the folder is a directory; remove our leftovers
        (``tidy``: only while nothing of ours is being written).

        ``SftpRefused`` names what is wrong (login, host key, no such folder);
        ``SftpUnavailable`` when the server does not answer.
        """
        try:
            sftp = await self._client()
            with map_asyncssh_errors(self.where):
                is_folder = await sftp.isdir(self.folder)
                names = await sftp.listdir(self.folder) if is_folder and tidy else []
                for name in names:
                    if TEMPORARY_MARK in name and name.endswith(".part"):
                        # a temporary file of ours left by a crash mid-upload
                        await sftp.remove(self._path(name))
                        log.info("sftp_leftover_removed", file=name)
        except (SftpRefused, SftpUnavailable):
            await self.close()
            raise
        if not is_folder:
            await self.close()
            raise SftpRefused(
                f"{self.where}: the folder does not exist or is not a directory "
                "(conduit.folder: the absolute path the vendor gave)"
            )

    async def read(self, name: str) -> bytes | None:
        """The file's content; None when there is no such file."""
        try:
            sftp = await self._client()
            with map_asyncssh_errors(f"{self.where}/{name}"):
                try:
                    async with sftp.open(self._path(name), "rb") as handle:
                        content = await handle.read()
                except asyncssh.SFTPNoSuchFile:
                    return None
        except (SftpRefused, SftpUnavailable):
            await self.close()
            raise
        return content if isinstance(content, bytes) else content.encode()

    async def publish(self, name: str, content: bytes, *, replace: bool) -> bool:
        """Write under a temporary name, flush, rename to ``name``.

        Without ``replace``: False (and nothing left behind) when ``name`` exists.
        """
        temporary = self._path(f".{name}{TEMPORARY_MARK}{secrets.token_hex(6)}.part")
        final = self._path(name)
        try:
            sftp = await self._client()
            with map_asyncssh_errors(f"{self.where}/{name}"):
                async with sftp.open(temporary, "wb") as handle:
                    await handle.write(content)
                    await _fsync(handle)
                if replace:
                    await _replace(sftp, temporary, final)
                    return True
                return await _rename_unless_there(sftp, temporary, final)
        except (SftpRefused, SftpUnavailable):
            await self.close()
            raise


async def _fsync(handle: asyncssh.SFTPClientFile) -> None:
    try:
        await handle.fsync()
    except asyncssh.SFTPOpUnsupported:
        return  # the server cannot be asked; the rename still makes it whole


async def _replace(sftp: asyncssh.SFTPClient, temporary: str, final: str) -> None:
    try:
        await sftp.posix_rename(temporary, final)
    except asyncssh.SFTPOpUnsupported:
        # No atomic replace on this server: for a moment there is no file, which a
        # site reads as "nothing new" (never as half a file).
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(final)
        await sftp.rename(temporary, final)


async def _rename_unless_there(
    sftp: asyncssh.SFTPClient, temporary: str, final: str
) -> bool:
    try:
        await sftp.rename(temporary, final)
    except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
        # SFTP v3 (OpenSSH) refuses a rename onto an existing file with a bare
        # "failure": whether that was the reason is asked, not guessed.
        if not await sftp.exists(final):
            raise
        await sftp.remove(temporary)
        return False
    return True
