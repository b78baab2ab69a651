"""The Conduit sink against a real OpenSSH SFTP server on loopback (tests/sftp_server.py).

The folder tests drive the outbox over the real server: files complete, in order,
appended while the last one is still there, nothing lost while the server is
down. The pipeline tests run PowerCampus → poller → broker → consumer → files, and
check them against what the web-service path does with the same events.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
import structlog
from pydantic import SecretStr

from bench.stack import run_command
from connectors.conduit.files import ConduitFormat, ConduitLayout
from connectors.kafka.groups import group_lag
from connectors.local.outbox import SqliteOutboxStore
from connectors.sftp.errors import SftpRefused, SftpUnavailable
from connectors.sftp.folder import SftpFolder, SftpLogin
from consumers.outbox import DeferredCommits, Outbox
from consumers.ports import OutboxRow
from consumers.runner import ApplyRunner
from enrolstream.settings import (
    AccountsSettings,
    ConduitSettings,
    KafkaSettings,
    Settings,
)
from enrolstream.wiring.apply import open_runner
from tests.integration.conftest import CaptureStack, registration, set_status
from tests.integration.pipeline import (
    ALICE,
    BOB,
    CAROL,
    NO_ACCOUNT,
    Pipeline,
    open_pipeline,
)
from tests.integration.test_apply import SCENARIOS
from tests.integration.test_people import person
from tests.sftp_server import PASSPHRASE, SftpServer, skip_reason

pytestmark = pytest.mark.integration

FORMAT = ConduitFormat(ConduitLayout())
NAME = "enrollments.csv"
ROLE_NAMES = {5: "student", 3: "editingteacher", 4: "teacher"}
COMPARED = [
    "drop by update",
    "A->D->A inside one interval",
    "cross-list swap in one transaction",
]


@pytest.fixture(name="sftp")
async def _sftp() -> AsyncIterator[SftpServer]:
    """A running sshd with one key-only SFTP user (skipped where sshd cannot run)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = SftpServer()
    try:
        await server.start()
        yield server
    finally:
        server.close()


def login(server: SftpServer, **changes: object) -> SftpLogin:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.user,
        "private_key": server.client_key,
        "passphrase": PASSPHRASE,
        "known_hosts": server.known_hosts,
        "connect_timeout_s": 5.0,
    }
    return SftpLogin(**{**values, **changes})  # type: ignore[arg-type]


def add(course: str, person: str) -> OutboxRow:
    return FORMAT.enrolment(add=True, shortname=course, idnumber=person, role="student")


def drop(course: str, person: str) -> OutboxRow:
    return FORMAT.enrolment(
        add=False, shortname=course, idnumber=person, role="student"
    )


@pytest.fixture(name="outbox")
async def _outbox(sftp: SftpServer, tmp_path: Path) -> AsyncIterator[Outbox]:
    with SqliteOutboxStore(tmp_path / "outbox") as store:
        async with SftpFolder(login(sftp), str(sftp.folder)) as folder:
            yield Outbox(store, folder, FORMAT, window_s=3600)


class TestDelivery:
    """Files on a real SFTP server: complete, in order, never overwritten unread."""

    async def test_files_arrive_complete_and_in_order(
        self, outbox: Outbox, sftp: SftpServer
    ) -> None:
        """Each window's file, taken by Conduit in turn, holds that window's rows."""
        taken = []
        for rows in ([add("A", "1"), add("A", "2")], [drop("A", "1")], [add("B", "1")]):
            outbox.queue(rows, {})
            assert await outbox.deliver(flush=True) == 1
            assert sftp.names() == [NAME]  # no temporary file left beside it
            taken.append(sftp.take(NAME))
        header = "action,shortname,idnumber,role\n"
        assert taken == [
            header + "add,A,1,student\nadd,A,2,student\n",
            header + "drop,A,1,student\n",
            header + "add,B,1,student\n",
        ]

    async def test_the_previous_file_still_there_is_appended_to(
        self, outbox: Outbox, sftp: SftpServer
    ) -> None:
        """Conduit has not taken window 1: window 2 is appended, nothing skipped."""
        outbox.queue([add("A", "1")], {})
        await outbox.deliver(flush=True)
        outbox.queue([add("B", "2")], {})
        await outbox.deliver(flush=True)
        assert sftp.take(NAME) == (
            "action,shortname,idnumber,role\nadd,A,1,student\nadd,B,2,student\n"
        )

    async def test_nothing_is_lost_while_the_server_is_down(
        self, outbox: Outbox, sftp: SftpServer
    ) -> None:
        """Windows cut during an outage wait; once it is back they arrive in order."""
        outbox.queue([add("A", "1")], {})
        await outbox.deliver(flush=True)
        sftp.stop()
        outbox.queue([add("A", "2")], {})
        with pytest.raises(SftpUnavailable):
            await outbox.deliver(flush=True)
        outbox.queue([drop("A", "1")], {})
        with pytest.raises(SftpUnavailable):
            await outbox.deliver(flush=True)
        assert outbox.waiting_windows() == 2
        await sftp.start()
        assert await outbox.deliver() == 2
        assert sftp.take(NAME) == (
            "action,shortname,idnumber,role\ndrop,A,1,student\nadd,A,2,student\n"
        )


class TestLogin:
    """The server is the one known_hosts names; a refusal says why, never a secret."""

    async def test_an_unknown_host_key_is_refused(
        self, sftp: SftpServer, tmp_path: Path
    ) -> None:
        """A known_hosts naming another key for the server: SftpRefused."""
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key()
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{sftp.port} {other.decode().strip()}\n")
        async with SftpFolder(login(sftp, known_hosts=known), str(sftp.folder)) as f:
            with pytest.raises(SftpRefused, match="HostKeyNotVerifiable"):
                await f.check()

    async def test_a_wrong_passphrase_is_refused_without_showing_it(
        self, sftp: SftpServer
    ) -> None:
        """The key cannot be decrypted: refused, and the message names no secret."""
        wrong = "not-the-passphrase-91b2"
        async with SftpFolder(login(sftp, passphrase=wrong), str(sftp.folder)) as f:
            with pytest.raises(SftpRefused) as refused:
                await f.check()
        assert wrong not in str(refused.value)

    async def test_a_password_is_refused_by_a_key_only_server(
        self, sftp: SftpServer
    ) -> None:
        """No password login on the server: refused; the password is not shown."""
        secret = "hunter2-password-5d1e"  # noqa: S105 - a test password
        folder = SftpFolder(
            login(sftp, private_key=None, passphrase=None, password=secret),
            str(sftp.folder),
        )
        async with folder:
            with pytest.raises(SftpRefused, match="PermissionDenied") as refused:
                await folder.check()
        assert secret not in str(refused.value)
        assert secret not in repr(folder.login)

    async def test_a_missing_folder_is_refused(self, sftp: SftpServer) -> None:
        """conduit.folder naming nothing on the server: refused at start-up."""
        async with SftpFolder(login(sftp), str(sftp.folder / "nope")) as folder:
            with pytest.raises(SftpRefused, match="does not exist"):
                await folder.check()


# --- the pipeline ------------------------------------------------------------------


def conduit_settings(
    pipe: Pipeline, sftp: SftpServer, tmp_path: Path, **conduit: object
) -> Settings:
    """The pipeline's settings with the Conduit sink and topics of its own."""
    suffix = uuid.uuid4().hex[:8]
    base = pipe.settings
    kafka = base.kafka.model_copy(
        update={
            "ledger_topic": f"cledger-{suffix}",
            "parked_topic": f"cparked-{suffix}",
            "dead_letter_topic": f"cdlq-{suffix}",
            "accounts_topic": f"caccounts-{suffix}",
        }
    )
    assert isinstance(kafka, KafkaSettings)
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sftp.port,
        "username": sftp.user,
        "private_key_path": sftp.client_key,
        "private_key_passphrase": SecretStr(PASSPHRASE),
        "known_hosts_path": sftp.known_hosts,
        "folder": str(sftp.folder),
        "window_s": 3600.0,
        "outbox_dir": tmp_path / "conduit-outbox",
        "connect_timeout_s": 5.0,
    }
    return base.model_copy(
        update={
            "kafka": kafka,
            "consumer": base.consumer.model_copy(
                update={"sink": "conduit", "group_id": f"conduit-{suffix}"}
            ),
            # a wrong token: a Conduit site without web services never calls Moodle
            "moodle": base.moodle.model_copy(update={"token": SecretStr("unused")}),
            "conduit": ConduitSettings(**{**values, **conduit}),
        }
    )


def outbox_of(runner: ApplyRunner) -> Outbox:
    assert isinstance(runner.stream, DeferredCommits)
    return runner.stream.outbox


async def sync_both(
    pipe: Pipeline, web: ApplyRunner, conduit: ApplyRunner, sftp: SftpServer
) -> list[str]:
    """Poll once, apply through both sinks, deliver; the data lines Conduit takes."""
    await pipe.capture.poll()
    await web.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
    await conduit.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
    await outbox_of(conduit).deliver(flush=True)
    taken = sftp.take(NAME)
    return [] if taken is None else taken.splitlines()[1:]


def fold(lines: list[str], state: set[tuple[str, str, str]]) -> None:
    """Conduit applying rows in order: add holds the role, drop takes it away."""
    for line in lines:
        action, shortname, idnumber, role = line.split(",")
        if action == "add":
            state.add((shortname, idnumber, role))
        else:
            state.discard((shortname, idnumber, role))


def moodle_roles(pipe: Pipeline) -> set[tuple[str, str, str]]:
    """What the web-service path left in Moodle: (shortname, idnumber, role name)."""
    idnumbers = {u.id: u.idnumber for u in pipe.sim.state.users()}
    held = set()
    for shortname, courseid in pipe.course_ids.items():
        for enrolment in pipe.sim.state.enrolments(courseid):
            if enrolment.status == 0:
                held |= {
                    (shortname, idnumbers[enrolment.userid], ROLE_NAMES[role])
                    for role in enrolment.roleids
                }
    return held


class TestPipeline:
    """PowerCampus → Conduit files: the same decisions as the web-service path."""

    # three of test_apply's scenarios (each runs two consumers: about 11 s): a drop,
    # a state that comes back within one interval, a cross-listed swap
    @pytest.mark.parametrize("scenario", COMPARED)
    async def test_files_equal_what_web_services_did(
        self, scenario: str, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """After every round, Conduit's rows applied in order hold what Moodle holds."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(pipe, sftp, tmp_path)
            async with (
                pipe.runner() as web,
                open_runner(settings, pipe.bootstrap, mapping=pipe.mapping) as conduit,
            ):
                conduit_state: set[tuple[str, str, str]] = set()
                for round_ in SCENARIOS[scenario]:
                    for transaction in round_:
                        capture.sql(*transaction)
                    fold(await sync_both(pipe, web, conduit, sftp), conduit_state)
                    assert conduit_state == moodle_roles(pipe)
                assert conduit.stats.applied == web.stats.applied
                assert conduit.stats.dead_lettered == web.stats.dead_lettered == 0

    async def test_columns_are_the_configured_ones(
        self, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """Conduit's own mapping names and order, and its words for the actions."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(
                pipe,
                sftp,
                tmp_path,
                enrolments_file="enrol.csv",
                enrolment_columns=(
                    "role=rolename",
                    "idnumber=useridnumber",
                    "shortname=course",
                    "action=op",
                ),
                add="create",
                drop="delete",
                roles={5: "learner", 3: "editingteacher", 4: "teacher"},
            )
            async with open_runner(
                settings, pipe.bootstrap, mapping=pipe.mapping
            ) as runner:
                capture.sql(registration(1, ALICE, "BSC5102"))
                await pipe.capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                await outbox_of(runner).deliver(flush=True)
                capture.sql(set_status(1, "D"))
                await pipe.capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
        # open_runner's end delivered the last window onto the file not yet taken
        assert sftp.take("enrol.csv") == (
            "rolename,useridnumber,course,op\nlearner,000000001,BSC5102Winter2021,delete\n"
        )

    async def test_secrets_are_in_no_log_and_no_file(
        self,
        capture: CaptureStack,
        tmp_path: Path,
        sftp: SftpServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The passphrase and the private key appear in no log record, outbox file
        or file sent, through a whole run with an outage."""
        caplog.set_level(logging.DEBUG)
        key_text = sftp.client_key.read_text().splitlines()[1]
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(pipe, sftp, tmp_path)
            with structlog.testing.capture_logs() as events:
                async with open_runner(
                    settings, pipe.bootstrap, mapping=pipe.mapping
                ) as runner:
                    capture.sql(registration(1, ALICE, "BSC5102"))
                    capture.sql(registration(2, BOB, "BSC5102"))
                    await pipe.capture.poll()
                    await runner.run(
                        asyncio.Event(), until_idle=True, poll_timeout_ms=300
                    )
                    sftp.stop()
                    with pytest.raises(SftpUnavailable):
                        await outbox_of(runner).deliver(flush=True)
                    await sftp.start()
                    capture.sql(registration(3, CAROL, "BSC5102"))
                    await pipe.capture.poll()
                    await runner.run(
                        asyncio.Event(), until_idle=True, poll_timeout_ms=300
                    )
        logged = repr(events) + caplog.text
        written = b"".join(_every_file(tmp_path / "conduit-outbox", sftp.folder))
        for secret in (PASSPHRASE, key_text):
            assert secret not in logged
            assert secret.encode() not in written
        assert b"000000003" in written  # the files were looked at, not empty


def _every_file(*roots: Path) -> Iterator[bytes]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path.read_bytes()


def environment(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The settings a child ``enrolstream`` needs, as ENROLSTREAM_* variables."""
    kafka, consumer, conduit = settings.kafka, settings.consumer, settings.conduit
    [(term, mapping)] = consumer.mappings.items()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ENROLSTREAM_KAFKA__EVENTS_TOPIC": kafka.events_topic,
        "ENROLSTREAM_KAFKA__LEDGER_TOPIC": kafka.ledger_topic,
        "ENROLSTREAM_KAFKA__PARKED_TOPIC": kafka.parked_topic,
        "ENROLSTREAM_KAFKA__DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
        "ENROLSTREAM_KAFKA__ACCOUNTS_TOPIC": kafka.accounts_topic,
        "ENROLSTREAM_KAFKA__SNAPSHOT_TOPIC": kafka.snapshot_topic,
        "ENROLSTREAM_CONSUMER__SINK": "conduit",
        "ENROLSTREAM_CONSUMER__GROUP_ID": consumer.group_id,
        "ENROLSTREAM_CONSUMER__SESSION_TIMEOUT_S": "2",
        "ENROLSTREAM_CONSUMER__MAPPINGS": f'{{"{term}": "{mapping}"}}',
        "ENROLSTREAM_CONDUIT__HOST": conduit.host,
        "ENROLSTREAM_CONDUIT__PORT": str(conduit.port),
        "ENROLSTREAM_CONDUIT__USERNAME": conduit.username,
        "ENROLSTREAM_CONDUIT__PRIVATE_KEY_PATH": str(conduit.private_key_path),
        "ENROLSTREAM_CONDUIT__PRIVATE_KEY_PASSPHRASE": PASSPHRASE,
        "ENROLSTREAM_CONDUIT__KNOWN_HOSTS_PATH": str(conduit.known_hosts_path),
        "ENROLSTREAM_CONDUIT__FOLDER": conduit.folder,
        "ENROLSTREAM_CONDUIT__OUTBOX_DIR": str(conduit.outbox_dir),
        "ENROLSTREAM_CONDUIT__WINDOW_S": "3600",
    }


class TestKilledBetweenUploadAndCommit:
    """The file is on the server, the process dies before Kafka hears of it."""

    @pytest.mark.timeout(120)
    async def test_no_window_is_sent_twice_in_a_way_that_changes_the_outcome(
        self, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """Killed after the rename: the restart sends that window again unchanged,
        before anything newer, and a drop decided since still wins."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(pipe, sftp, tmp_path)
        env = environment(settings, pipe.bootstrap)
        capture.sql(registration(1, ALICE, "BSC5102"), registration(2, BOB, "BSC5102"))
        await capture.poll()
        killed, out = await run_command(
            ["consume", "--until-idle"],
            env={**env, "ENROLSTREAM_CRASH_POINTS": "conduit.after_upload=1"},
        )
        assert killed == -9, out
        assert await lag(settings, pipe.bootstrap) == 2  # the file is there, no commit
        first = sftp.take(NAME)  # Conduit applies window 1 meanwhile
        assert first is not None
        capture.sql(set_status(1, "D"))
        await capture.poll()
        done, out = await run_command(["consume", "--until-idle"], env=env)
        assert done == 0, out
        second = sftp.take(NAME)
        assert second is not None
        state: set[tuple[str, str, str]] = set()
        fold(first.splitlines()[1:] + second.splitlines()[1:], state)
        assert state == {("BSC5102Winter2021", "000000002", "student")}
        copies = sorted((tmp_path / "conduit-outbox" / "sent").rglob("*-w000001-*"))
        assert len(copies) == 2  # window 1 went twice...
        assert (
            copies[0].read_bytes() == copies[1].read_bytes()
        )  # ...the same both times
        assert await lag(settings, pipe.bootstrap) == 0  # committed once delivered


async def lag(settings: Settings, bootstrap: str) -> int:
    """Events the Conduit consumer group has not committed."""
    behind = await group_lag(
        {"bootstrap_servers": bootstrap},
        settings.kafka.events_topic,
        settings.consumer.group_id,
    )
    return sum(behind.by_partition.values())


class TestAccounts:
    """A person without a Moodle account gets a create row in the user file."""

    async def test_create_row_goes_before_the_enrolment(
        self, capture: CaptureStack, tmp_path: Path, sftp: SftpServer
    ) -> None:
        """Only the person Moodle lacks is created; auth.csv is delivered first."""
        async with open_pipeline(capture, tmp_path) as pipe:
            settings = conduit_settings(
                pipe, sftp, tmp_path, web_services=True
            ).model_copy(
                update={
                    "moodle": pipe.settings.moodle,
                    "accounts": AccountsSettings(enabled=True, auth="saml2"),
                }
            )
            async with open_runner(
                settings, pipe.bootstrap, mapping=pipe.mapping
            ) as runner:
                capture.sql(
                    person(NO_ACCOUNT, 9, "Nadia", "Newcomer", "nnewcomer"),
                    registration(1, NO_ACCOUNT, "BSC5102"),
                    registration(2, ALICE, "BSC5102"),
                )
                await capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                # seen again before Conduit made the account: not asked twice
                capture.sql(
                    set_status(2, "D"), registration(3, NO_ACCOUNT, "COUN6552", "02")
                )
                await capture.poll()
                await runner.run(asyncio.Event(), until_idle=True, poll_timeout_ms=300)
                await outbox_of(runner).deliver(flush=True)
            assert runner.provisioning is not None
            assert runner.provisioning.stats.created == 1
        assert sftp.take("auth.csv") == (
            "action,username,idnumber,firstname,lastname,email,auth\n"
            "create,nnewcomer,000000009,Nadia,Newcomer,"
            "nnewcomer@students.example.edu,saml2\n"
        )
        assert sftp.take(NAME) == (  # ALICE added, then dropped, in one window
            "action,shortname,idnumber,role\n"
            "drop,BSC5102Winter2021,000000001,student\n"
            "add,BSC5102Winter2021,000000009,student\n"
            "add,COUN6552COUN855202Winter2021,000000009,student\n"
        )
        sent = sorted(p.name for p in (tmp_path / "conduit-outbox" / "sent").rglob("*"))
        assert [name.split("-")[-1] for name in sent if "." in name] == [
            "auth.csv",
            "enrollments.csv",
        ]
