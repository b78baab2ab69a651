"""The SFTP adapter's errors, in the apply side's categories; asyncssh's mapped here.

::

    TargetError (consumers.errors)
    ├── TargetUnavailable
    │   └── SftpUnavailable     retriable: no connection, dropped, timed out, a
    │                           server-side failure; the windows wait and are sent again
    └── TargetRefused
        └── SftpRefused         the server refuses us (login, host key, a key file
                                that cannot be read, no permission on the folder):
                                an operator must act

``map_asyncssh_errors`` translates every asyncssh error, ``OSError`` and timeout at
the boundary; ``tests/unit/test_sftp_errors.py`` checks the map covers every
asyncssh error class. Messages name the server, the file and the problem, never a
passphrase or password (asyncssh's own messages carry none).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncssh

from consumers.errors import TargetRefused, TargetUnavailable

__all__ = ["REFUSALS", "SftpRefused", "SftpUnavailable", "map_asyncssh_errors"]


class SftpUnavailable(TargetUnavailable):
    """The SFTP server cannot be used now; the same delivery may succeed later."""


class SftpRefused(TargetRefused):
    """The SFTP server refuses us: credentials, host key or permissions must be fixed."""


#: asyncssh errors that an operator must act on; every other one is retriable.
REFUSALS: tuple[type[Exception], ...] = (
    asyncssh.PermissionDenied,  # login refused
    asyncssh.HostKeyNotVerifiable,  # the server is not the one known_hosts names
    asyncssh.KeyImportError,  # the private key cannot be read (format, passphrase)
    asyncssh.KeyEncryptionError,  # the passphrase does not decrypt the key
    asyncssh.SFTPPermissionDenied,  # the folder or file is not ours to write
    asyncssh.SFTPNoSuchPath,  # the folder does not exist
    asyncssh.SFTPNotADirectory,
    asyncssh.SFTPWriteProtect,
    asyncssh.SFTPQuotaExceeded,
    asyncssh.SFTPNoSpaceOnFilesystem,
    asyncssh.ConfigParseError,
)


@contextlib.contextmanager
def map_asyncssh_errors(where: str) -> Iterator[None]:
    """Raise ``SftpRefused`` or ``SftpUnavailable`` for what asyncssh or the network
    raise inside; ``where`` names the server (and file) in the message."""
    try:
        yield
    except REFUSALS as exc:
        raise SftpRefused(f"{where}: {type(exc).__name__}: {_reason(exc)}") from exc
    except (asyncssh.Error, OSError, TimeoutError) as exc:
        raise SftpUnavailable(f"{where}: {type(exc).__name__}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason) or "no reason given"
