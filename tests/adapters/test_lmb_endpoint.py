"""The LMB endpoint on a real loopback listener, over the real intake with in-memory ports."""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from connectors.lmb.endpoint import EndpointOptions, LmbEndpoint, server_tls
from connectors.lmb.ims import parse_ims
from connectors.local.message_log import DatedMessageLog
from lmb.book import Book
from lmb.errors import EndpointRefused, PublishFailed
from lmb.intake import LmbIntake
from sandbox.lmb import messages as ims
from sandbox.lmb.client import LmbClient
from schemas.events import EnrolmentEvent
from schemas.lmb import LmbDeadLetter
from tests.pki import ThrowawayCa

DATA = Path(__file__).resolve().parents[1] / "data" / "lmb"
USER, PASSWORD = "lmb", "s3cret-lmb"
ADD = ims.enterprise(ims.member("14482.201510", "p1"))


@dataclass
class Kafka:
    """The three Kafka ports in memory; ``down`` makes every call fail."""

    events: list[EnrolmentEvent] = field(default_factory=list)
    state: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead: list[LmbDeadLetter] = field(default_factory=list)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise PublishFailed("broker down")

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        self._check()
        self.events.extend(events)

    async def save(self, rows: Sequence[tuple[bytes, bytes]]) -> None:
        self._check()
        self.state.extend(rows)

    async def dead_letter(self, letter: LmbDeadLetter) -> None:
        self._check()
        self.dead.append(letter)


@dataclass
class Served:
    kafka: Kafka
    endpoint: LmbEndpoint
    log_dir: Path


def options(**changes: object) -> EndpointOptions:
    base = EndpointOptions(
        username=USER, password=SecretStr(PASSWORD), port=0, max_body_bytes=4096
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(name="served")
async def _served(tmp_path: Path) -> AsyncIterator[Served]:
    kafka = Kafka()
    intake = LmbIntake(
        parse=parse_ims,
        book=Book(),
        publisher=kafka,
        state=kafka,
        dead_letters=kafka,
        message_log=DatedMessageLog(tmp_path / "log"),
        source="banner",
    )
    async with LmbEndpoint(intake, options()) as endpoint:
        yield Served(kafka, endpoint, tmp_path / "log")


async def post(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TestWhoMay:
    """Only LMB with the credentials gets anything published."""

    @pytest.mark.parametrize(
        "authorization",
        [None, basic(USER, "wrong"), basic("other", PASSWORD), f"Bearer {PASSWORD}"],
    )
    async def test_refused_credentials(
        self, served: Served, authorization: str | None
    ) -> None:
        """Missing or wrong credentials: 401 with a Basic challenge, nothing published or logged."""
        headers = {"RDI-Message-Id": "m1"}
        if authorization:
            headers["Authorization"] = authorization
        status, answer = await post(served.endpoint.url, ADD, headers)
        assert status == 401
        assert answer["WWW-Authenticate"].startswith("Basic realm=")
        assert (served.kafka.events, served.kafka.state) == ([], [])
        assert not served.log_dir.exists()

    async def test_post_only(self, served: Served) -> None:
        """GET is 405 and says POST."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(served.endpoint.url) as r,
        ):
            assert (r.status, r.headers["Allow"]) == (405, "POST")

    @pytest.mark.parametrize(
        "changes",
        [{"username": ""}, {"password": SecretStr("")}, {"host": "0.0.0.0"}],  # noqa: S104
    )
    def test_refuses_to_start(self, changes: dict[str, object]) -> None:
        """Blank credentials, or off loopback without TLS: EndpointRefused naming the setting."""
        with pytest.raises(EndpointRefused, match=r"lmb\.(username|host)"):
            LmbEndpoint.check(options(**changes))

    async def test_tls(self, tmp_path: Path) -> None:
        """With TLS, LMB reaches it over HTTPS and the certificate verifies."""
        ca = ThrowawayCa(tmp_path, "lmb")
        issued = ca.issue("127.0.0.1", ips=("127.0.0.1",))
        kafka = Kafka()
        intake = LmbIntake(
            parse=parse_ims,
            book=Book(),
            publisher=kafka,
            state=kafka,
            dead_letters=kafka,
            message_log=DatedMessageLog(tmp_path / "log"),
            source="banner",
        )
        tls = server_tls(issued.cert, issued.key)
        async with LmbEndpoint(intake, options(tls=tls)) as endpoint:
            client_tls = ssl.create_default_context(cafile=str(ca.cert_path))
            async with LmbClient(endpoint.url, USER, PASSWORD, tls=client_tls) as lmb:
                assert (await lmb.post(ADD, "m1"))[0] == 200
        assert endpoint.url.startswith("https://")
        assert len(kafka.events) == 1


class TestWhatItTakes:
    """Size, body and headers are checked before anything is applied."""

    async def test_oversize_by_content_length(self, served: Served) -> None:
        """A body over the limit is 413, unread, nothing published."""
        headers = {"Authorization": basic(USER, PASSWORD), "RDI-Message-Id": "m1"}
        status, _ = await post(
            served.endpoint.url, b"<a>" + b" " * 5000 + b"</a>", headers
        )
        assert status == 413
        assert (served.kafka.events, served.kafka.dead) == ([], [])

    async def test_oversize_chunked(self, served: Served) -> None:
        """A chunked body (no Content-Length) over the limit is 413 too."""

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        headers = {"Authorization": basic(USER, PASSWORD), "RDI-Message-Id": "m1"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                served.endpoint.url, data=chunks(), headers=headers
            ) as response,
        ):
            assert response.status == 413
        assert (served.kafka.events, served.kafka.dead) == ([], [])

    @pytest.mark.parametrize(
        ("body", "headers"),
        [(b"", {"RDI-Message-Id": "m1"}), (ADD, {})],
    )
    async def test_bad_request(
        self, served: Served, body: bytes, headers: dict[str, str]
    ) -> None:
        """An empty body, or neither RDI header (as SHEBanG): 400."""
        headers = {"Authorization": basic(USER, PASSWORD), **headers}
        status, _ = await post(served.endpoint.url, body, headers)
        assert status == 400
        assert served.kafka.events == []


class TestAnswers:
    """Answers keep LMB sending, and come only once Kafka holds the message."""

    async def test_applied_then_duplicate(self, served: Served) -> None:
        """A membership is published and saved; the same message again changes nothing."""
        async with LmbClient(served.endpoint.url, USER, PASSWORD) as lmb:
            assert await lmb.send(ADD, "m1") == "applied: 1 events\n"
            assert await lmb.send(ADD, "m1") == "duplicate: 0 events\n"
        (event,) = served.kafka.events
        assert [r.add_drop_wait for r in event.registrations] == ["A"]
        assert [key for key, _ in served.kafka.state] == [b"person:p1"]

    @pytest.mark.parametrize(
        ("name", "error"),
        [
            ("billion_laughs.xml", "HostileMessage"),
            ("external_entity.xml", "HostileMessage"),
            ("malformed.xml", "MalformedMessage"),
        ],
    )
    async def test_hostile_and_malformed_are_dead_lettered(
        self, served: Served, name: str, error: str
    ) -> None:
        """200, the message verbatim in a dead letter with its reason, nothing published."""
        body = (DATA / name).read_bytes()
        async with LmbClient(served.endpoint.url, USER, PASSWORD) as lmb:
            assert await lmb.send(body, "m1") == "dead_lettered: 0 events\n"
        (letter,) = served.kafka.dead
        assert (letter.error_type, letter.message_id) == (error, "m1")
        assert letter.body == body.decode()
        assert served.kafka.events == []

    async def test_kafka_down_is_503_then_the_retry_applies(
        self, served: Served
    ) -> None:
        """Unacknowledged: 503 with Retry-After, nothing counted; LMB's retry applies it."""
        served.kafka.down = True
        async with LmbClient(served.endpoint.url, USER, PASSWORD) as lmb:
            status, _ = await lmb.post(ADD, "m1")
            assert status == 503
            served.kafka.down = False
            assert await lmb.send(ADD, "m1") == "applied: 1 events\n"
        assert len(served.kafka.events) == 1

    async def test_message_log_is_private(self, served: Served) -> None:
        """Every message and its answer are in the day's log, mode 0600."""
        async with LmbClient(served.endpoint.url, USER, PASSWORD) as lmb:
            await lmb.send(ADD, "m1")
        (path,) = served.log_dir.iterdir()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(served.log_dir.stat().st_mode) == 0o700
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        assert [e["entry"] for e in entries] == ["received", "answered"]
        assert entries[0]["body"] == ADD.decode()
        assert entries[1]["answer"] == "applied"
