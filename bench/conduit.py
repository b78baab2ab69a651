"""The Conduit sink's costs: queuing actions in the outbox, delivering windows over SFTP.

    .venv/bin/python -m bench.conduit [--actions 20000] [--batch 100] [--rows 1000,10000,50000]

Queuing: ``ConduitGateway.apply`` over batches of enrol actions, as the runner
calls it (each batch one SQLite transaction, synchronous=FULL: an fsync per
batch). Delivery: one window of N rows to a real sshd on loopback
(tests/sftp_server.py; needs Debian's openssh-server), onto an empty slot and
appended to a file Conduit has not taken (read back, merged, replaced).
Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from connectors.conduit.files import ConduitFormat, ConduitLayout
from connectors.conduit.gateway import ConduitGateway
from connectors.conduit.identity import conduit_userid
from connectors.local.outbox import SqliteOutboxStore
from connectors.sftp.folder import SftpFolder, SftpLogin
from consumers.outbox import Outbox
from schemas.actions import EnrolAction
from tests.sftp_server import PASSPHRASE, SftpServer, skip_reason

FORMAT = ConduitFormat(ConduitLayout())


class _NoFolder:
    async def read(self, name: str) -> bytes | None:
        del name
        return None

    async def publish(self, name: str, content: bytes, *, replace: bool) -> bool:
        del name, content, replace
        return True


async def queuing(actions: int, batch: int) -> None:
    """Actions per second through the gateway into the outbox."""
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteOutboxStore(Path(directory))
        outbox = Outbox(store, _NoFolder(), FORMAT, window_s=3600)
        idnumbers = {conduit_userid(f"{n:09d}"): f"{n:09d}" for n in range(actions)}
        gateway = ConduitGateway(
            outbox,
            store,
            FORMAT,
            shortnames={c: f"COURSE{c}" for c in range(1, 51)},
            role_names={5: "student"},
            idnumbers=idnumbers,
        )
        todo = [
            EnrolAction(courseid=1 + n % 50, userid=userid, roleid=5)
            for n, userid in enumerate(idnumbers)
        ]
        started = time.perf_counter()
        for start in range(0, len(todo), batch):
            outcomes = await gateway.apply(todo[start : start + batch])
            if len(outcomes.applied) != len(todo[start : start + batch]):
                raise SystemExit(f"the outbox refused actions: {outcomes}")
        took = time.perf_counter() - started
        store.close()
    print(
        f"queue: {actions} enrol actions in batches of {batch}: {took:.2f} s "
        f"({actions / took:,.0f} actions/s, {took / (actions / batch) * 1000:.1f} ms "
        "per batch)"
    )


async def delivery(sizes: list[int]) -> None:
    """Seconds to deliver a window of N rows, onto an empty slot and appended."""
    reason = skip_reason()
    if reason is not None:
        print(f"delivery: skipped: {reason}")
        return
    server = SftpServer()
    await server.start()
    login = SftpLogin(
        host="127.0.0.1",
        port=server.port,
        username=server.user,
        private_key=server.client_key,
        passphrase=PASSPHRASE,
        known_hosts=server.known_hosts,
    )
    try:
        for rows in sizes:
            with tempfile.TemporaryDirectory() as directory:
                store = SqliteOutboxStore(Path(directory))
                async with SftpFolder(login, str(server.folder)) as folder:
                    outbox = Outbox(store, folder, FORMAT, window_s=3600)
                    figures = []
                    for wave in range(2):  # the second appends to the untaken first
                        outbox.queue(
                            [
                                FORMAT.enrolment(
                                    add=True,
                                    shortname=f"COURSE{n % 50}",
                                    idnumber=f"{wave}{n:08d}",
                                    role="student",
                                )
                                for n in range(rows)
                            ],
                            {},
                        )
                        started = time.perf_counter()
                        await outbox.deliver(flush=True)
                        figures.append(time.perf_counter() - started)
                store.close()
            size = server.path("enrollments.csv").stat().st_size
            server.take("enrollments.csv")
            print(
                f"deliver: {rows} rows: {figures[0]:.2f} s onto an empty slot; "
                f"{figures[1]:.2f} s appended to the untaken file ({2 * rows} rows, "
                f"{size / 1e6:.1f} MB)"
            )
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rows", default="1000,10000,50000")
    args = parser.parse_args()
    asyncio.run(queuing(args.actions, args.batch))
    asyncio.run(delivery([int(n) for n in args.rows.split(",")]))


if __name__ == "__main__":
    main()
