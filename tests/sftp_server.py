"""A real OpenSSH SFTP server on loopback for the Conduit tests (Debian's openssh-server).

``SftpServer`` writes a throw-away host key, a passphrase-protected client key and
an ``sshd_config`` that allows exactly one non-root user, by key only, to SFTP
only (``ForceCommand internal-sftp``, no root login, no passwords, no TTY, no
forwarding), then runs ``sshd -D`` on a free loopback port. Run as root (CI), the
user is ``nobody``; run as anyone else, sshd can only log that user in, so it is
that user. ``stop``/``start`` take the server down and bring it back on the same
port (a server outage); ``take`` plays Conduit: reads a file and removes it.

``StrictModes no``: the key files live under /tmp, which is world-writable, and
sshd would refuse them there; nothing else is loosened. ``skip_reason`` says why
the tests cannot run (no sshd binary, no privilege separation directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncssh

SSHD = Path("/usr/sbin/sshd")
PASSPHRASE = "correct horse battery staple 7f3c"  # noqa: S105 - a throw-away test key's


def skip_reason() -> str | None:
    """Why the SFTP tests cannot run here (None: they can)."""
    if not SSHD.exists():
        return (
            "OpenSSH's sshd is not installed (Debian: apt-get install openssh-server; "
            "./run test installs it when run as root)"
        )
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:
            Path("/run/sshd").mkdir(mode=0o755)
        except OSError as exc:
            return f"sshd's privilege separation directory /run/sshd: {exc}"
    return None


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, and by them, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    wanted = {pid}
    while wanted:
        children = [child for child, parent in parents.items() if parent in wanted]
        found += children
        wanted = set(children)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SftpServer:
    """sshd with one key-only SFTP user and one upload folder."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: its parents are 0700 root, and the SFTP user
        # (nobody) must reach the folder and read its authorized_keys.
        self.root = Path(tempfile.mkdtemp(prefix="enrolstream-sftp-"))
        self.root.chmod(0o711)
        self.port = _free_port()
        self.user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        account = pwd.getpwnam(self.user)
        self.folder = self.root / "conduit"
        self.folder.mkdir(mode=0o700)
        os.chown(self.folder, account.pw_uid, account.pw_gid)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_path = self.root / "ssh_host_ed25519_key"
        self.host_key_path.write_bytes(host_key.export_private_key())
        self.host_key_path.chmod(0o600)
        self.known_hosts = self.root / "known_hosts"
        public = host_key.export_public_key().decode().strip()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public}\n")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = self.root / "client_ed25519"
        self.client_key.write_bytes(
            client_key.export_private_key(passphrase=PASSPHRASE)
        )
        self.client_key.chmod(0o600)
        authorized = self.root / "authorized_keys"
        authorized.write_bytes(client_key.export_public_key())
        authorized.chmod(0o644)
        self.config = self.root / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    f"AllowUsers {self.user}",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "ForceCommand internal-sftp",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        self.log = self.root / "sshd.log"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Run sshd and wait until it accepts connections."""
        with self.log.open("ab") as log:
            # Popen, not asyncio's: stop() must work outside the loop (fixture teardown)
            self._process = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed binary and config
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        async with asyncio.timeout(15):
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Take the server down, its open sessions with it."""
        if self._process is None:
            return
        # each connection's sshd is a session of its own: killed by pid, not group
        for pid in [*_descendants(self._process.pid), self._process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._process.wait()
        self._process = None

    def close(self) -> None:
        """Stop the server and remove its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, name: str) -> Path:
        """A file in the upload folder."""
        return self.folder / name

    def names(self) -> list[str]:
        """What the upload folder holds."""
        return sorted(p.name for p in self.folder.iterdir())

    def take(self, name: str) -> str | None:
        """What Conduit does: read the file, then remove it (None: no file)."""
        path = self.path(name)
        if not path.exists():
            return None
        text = path.read_text()
        path.unlink()
        return text
