"""The Conduit sink wired (``consumer.sink = "conduit"``): outbox, SFTP folder, gateway.

``open_conduit`` refuses settings it cannot use (``StartupRefused``: one line per
problem), opens the outbox on this machine, logs in to the SFTP server once
(refused credentials or host key: ``StartupRefused``; a server that does not
answer is only warned about: rows are queued meanwhile and delivered once it
answers) and builds the gateway the runner applies through. ``delivering`` runs
the outbox's deliveries beside the runner and, when the runner ends, delivers
once more with the open window cut, so ``consume --until-idle`` leaves nothing
behind that the server can take.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import structlog

from connectors.conduit.files import ConduitFormat, ConduitLayout
from connectors.conduit.gateway import ConduitGateway
from connectors.conduit.identity import ConduitIdentities
from connectors.local.outbox import SqliteOutboxStore
from connectors.sftp.errors import SftpRefused, SftpUnavailable
from connectors.sftp.folder import SftpFolder, SftpLogin
from consumers.errors import ConsumerError, StartupRefused
from consumers.mapping import MappingSet
from consumers.outbox import Outbox
from consumers.ports import Identities
from enrolstream.crashpoints import crash_point
from enrolstream.settings import Settings
from enrolstream.settings_conduit import ConduitSettings, pairs

__all__ = ["ConduitSink", "conduit_format", "delivering", "open_conduit", "sftp_folder"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ConduitSink:
    """The parts of the Conduit sink one process holds open."""

    store: SqliteOutboxStore
    folder: SftpFolder
    format: ConduitFormat
    outbox: Outbox
    gateway: ConduitGateway
    identities: ConduitIdentities


def conduit_format(conduit: ConduitSettings) -> ConduitFormat:
    """The file layout the settings describe."""
    return ConduitFormat(
        ConduitLayout(
            enrolments_file=conduit.enrolments_file,
            users_file=conduit.users_file,
            enrolment_columns=pairs(conduit.enrolment_columns),
            user_columns=pairs(conduit.user_columns),
            add=conduit.add,
            drop=conduit.drop,
            create=conduit.create,
            update=conduit.update,
        )
    )


def sftp_folder(conduit: ConduitSettings) -> SftpFolder:
    """The SFTP folder the settings name (not connected yet)."""
    login = SftpLogin(
        host=conduit.host,
        port=conduit.port,
        username=conduit.username,
        private_key=conduit.private_key_path,
        passphrase=conduit.private_key_passphrase.get_secret_value() or None,
        password=conduit.password.get_secret_value() or None,
        known_hosts=conduit.known_hosts_path,
        connect_timeout_s=conduit.connect_timeout_s,
    )
    return SftpFolder(login, conduit.folder)


def _role_ids(settings: Settings) -> set[int]:
    consumer = settings.consumer
    return {
        consumer.student_role_id,
        consumer.audit_role_id,
        consumer.instructor_role_id,
        consumer.secondary_instructor_role_id,
    }


def refuse_unusable(settings: Settings) -> None:
    """``StartupRefused`` listing what stops the Conduit sink from working."""
    problems = settings.conduit.problems(_role_ids(settings))
    if settings.accounts.enabled and not settings.conduit.web_services:
        problems.append(
            "accounts.enabled with the Conduit sink needs conduit.web_services = "
            "true (and moodle.url, moodle.token): without reading Moodle nobody "
            "can tell who has no account yet, and asking Conduit to create an "
            "existing one could rename it"
        )
    if problems:
        raise StartupRefused("; ".join(problems))


@contextlib.asynccontextmanager
async def open_conduit(
    settings: Settings,
    mapping: MappingSet,
    *,
    lookup: Identities | None = None,
    asked_to_create: Callable[[str], bool] = lambda _: False,
    shortnames: Mapping[int, str] | None = None,
) -> AsyncIterator[ConduitSink]:
    """The outbox, the folder (logged in to once) and the gateway.

    ``lookup`` and ``asked_to_create``: with accounts on, who has no Moodle
    account yet (``ConduitIdentities``). ``shortnames``: Moodle id -> shortname
    (default: ``mapping``'s; the consumer passes the mapping in force, which
    follows published revisions).
    """
    refuse_unusable(settings)
    conduit = settings.conduit
    file_format = conduit_format(conduit)
    with SqliteOutboxStore(conduit.outbox_dir) as store:
        async with sftp_folder(conduit) as folder:
            try:
                await folder.check()
            except SftpRefused as exc:
                raise StartupRefused(str(exc)) from exc
            except SftpUnavailable as exc:
                log.warning(
                    "conduit_server_unreachable",
                    error=str(exc),
                    hint="decisions are queued in the outbox and delivered once "
                    "the server answers",
                )
            outbox = Outbox(
                store,
                folder,
                file_format,
                window_s=conduit.window_s,
                max_backoff_s=settings.moodle.max_backoff_s,
                crash_point=crash_point,
            )
            identities = ConduitIdentities(
                settings.moodle.user_transform,
                lookup=lookup,
                asked_to_create=asked_to_create,
            )
            gateway = ConduitGateway(
                outbox,
                store,
                file_format,
                shortnames=shortnames
                if shortnames is not None
                else {course.id: course.shortname for course in mapping},
                role_names=conduit.roles,
                idnumbers=identities.idnumbers,
            )
            yield ConduitSink(store, folder, file_format, outbox, gateway, identities)


@contextlib.asynccontextmanager
async def delivering(
    outbox: Outbox, *, check_every_s: float = 1.0
) -> AsyncIterator[None]:
    """Deliver in the background; at the end, one more round with the window cut."""
    halt = asyncio.Event()
    task = asyncio.ensure_future(outbox.run(halt, check_every_s=check_every_s))
    try:
        yield None
    finally:
        halt.set()
        await task
        try:
            await outbox.deliver(flush=True)
        except ConsumerError as exc:
            log.warning(
                "conduit_windows_left_in_outbox",
                waiting_windows=outbox.waiting_windows(),
                error=str(exc),
                hint="delivered by the next run; their offsets are not committed",
            )
