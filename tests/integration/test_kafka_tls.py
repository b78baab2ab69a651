"""Kafka over TLS against a real TLS listener: a TLS proxy in front of an embedded broker.

Each test makes a throw-away CA (``tests/pki.py``) and starts its own broker whose
advertised listener is the proxy, so every client connection is TLS. The options
come from ``KafkaSettings`` through ``client_options`` exactly as the commands
build them; the clients are the project's own adapters.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog
import typer
from pydantic import SecretStr

from connectors.kafka.errors import KafkaTlsRefused, ProducerFailed
from connectors.kafka.options import check_tls, client_options, warn_about_security
from connectors.kafka.producer import AckedProducer
from connectors.kafka.publisher import ensure_topics
from connectors.kafka.stream import read_topic
from enrolstream.cli.context import require_bootstrap
from enrolstream.settings import KafkaSettings, load_settings
from sandbox.broker import free_port
from tests.integration.tls_proxy import server_context, tls_cluster
from tests.pki import ThrowawayCa

pytestmark = pytest.mark.integration

KEY_PASSWORD = "k3y-pass"  # noqa: S105 - a test value
RECORDS = [(b"P000001", b"first"), (b"P000002", b"second")]


@pytest.fixture(name="campus_ca")
def _campus_ca(tmp_path: Path) -> ThrowawayCa:
    """The CA that signs the broker's (and the client's) certificates."""
    return ThrowawayCa(tmp_path, "campus")


async def round_trip(kafka: KafkaSettings, bootstrap: str, topic: str) -> list[bytes]:
    """Create ``topic``, produce RECORDS with acks=all, read them back; the values."""
    options = client_options(kafka, bootstrap)
    await ensure_topics(options, [topic], partitions=2, replication_factor=1)
    async with AckedProducer(options, ack_timeout_s=10) as producer:
        await producer.send_all(topic, RECORDS)
    records = await read_topic(options, topic)
    return sorted(record.value or b"" for record in records)


async def assert_client_refused(kafka: KafkaSettings, bootstrap: str) -> None:
    """The producer itself cannot connect (what check_tls explains ahead of it)."""
    with pytest.raises(ProducerFailed, match="cannot connect to Kafka at"):
        async with AckedProducer(client_options(kafka, bootstrap)):
            pass


class TestKafkaOverTls:
    """SSL with a CA file, refusals with their reason, and mutual TLS."""

    async def test_produce_and_consume_with_the_ca_file(
        self, tmp_path: Path, campus_ca: ThrowawayCa, topic: str
    ) -> None:
        """With the campus CA file, records go through TLS and come back."""
        server = campus_ca.issue("broker", dns=("localhost",), ips=("127.0.0.1",))
        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=campus_ca.cert_path)
        async with tls_cluster(server_context(server), tmp_path / "broker.log") as (
            bootstrap,
            proxy,
        ):
            await check_tls(kafka, bootstrap)
            assert await round_trip(kafka, bootstrap, topic) == [b"first", b"second"]
        assert proxy.sessions, "the clients went through the TLS listener"

    async def test_a_wrong_ca_is_refused_with_a_clear_error(
        self,
        tmp_path: Path,
        campus_ca: ThrowawayCa,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A CA that did not sign the broker's certificate: refused, naming the CA file."""
        server = campus_ca.issue("broker", ips=("127.0.0.1",))
        other = ThrowawayCa(tmp_path, "other")
        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=other.cert_path)
        async with tls_cluster(server_context(server), tmp_path / "broker.log") as (
            bootstrap,
            _,
        ):
            with pytest.raises(KafkaTlsRefused) as refused:
                await check_tls(kafka, bootstrap)
            await assert_client_refused(kafka, bootstrap)
            # What a command prints at start-up (run where no event loop runs).
            monkeypatch.chdir(tmp_path)
            settings = load_settings(
                kafka=kafka.model_copy(update={"bootstrap_servers": bootstrap})
            )
            with pytest.raises(typer.Exit) as exited:
                await asyncio.to_thread(require_bootstrap, settings, "poll")
        message = str(refused.value)
        assert f"TLS to Kafka at {bootstrap} refused" in message
        assert f"kafka.ssl_cafile = {other.cert_path}" in message
        assert "unable to get local issuer certificate" in message
        assert exited.value.exit_code == 2
        assert f"poll cannot start: {message}" in capsys.readouterr().err

    async def test_hostname_mismatch_refused_while_the_check_is_on(
        self, tmp_path: Path, campus_ca: ThrowawayCa, topic: str
    ) -> None:
        """A certificate for another name is refused; with the check off it is accepted."""
        server = campus_ca.issue("kafka.example.edu", dns=("kafka.example.edu",))
        checked = KafkaSettings(security_protocol="SSL", ssl_cafile=campus_ca.cert_path)
        unchecked = checked.model_copy(update={"ssl_check_hostname": False})
        async with tls_cluster(server_context(server), tmp_path / "broker.log") as (
            bootstrap,
            _,
        ):
            with pytest.raises(KafkaTlsRefused) as refused:
                await check_tls(checked, bootstrap)
            await assert_client_refused(checked, bootstrap)
            await check_tls(unchecked, bootstrap)
            assert await round_trip(unchecked, bootstrap, topic) == [
                b"first",
                b"second",
            ]
        assert "mismatch" in str(refused.value)
        assert "kafka.ssl_check_hostname = false" in str(refused.value)

    async def test_turning_the_hostname_check_off_is_warned(
        self, campus_ca: ThrowawayCa
    ) -> None:
        """Start-up warns that any certificate of the CA is accepted for any name."""
        kafka = KafkaSettings(
            security_protocol="SSL",
            ssl_cafile=campus_ca.cert_path,
            ssl_check_hostname=False,
        )
        with structlog.testing.capture_logs() as logs:
            warn_about_security(kafka)
        assert [entry["event"] for entry in logs] == ["kafka_hostname_check_off"]
        assert logs[0]["log_level"] == "warning"

    async def test_mutual_tls_with_a_client_certificate(
        self, tmp_path: Path, campus_ca: ThrowawayCa, topic: str
    ) -> None:
        """A listener that requires a client certificate refuses none, accepts ours."""
        server = campus_ca.issue("broker", ips=("127.0.0.1",))
        client = campus_ca.issue("enrolstream", client=True, key_password=KEY_PASSWORD)
        without = KafkaSettings(security_protocol="SSL", ssl_cafile=campus_ca.cert_path)
        with_cert = KafkaSettings(
            security_protocol="SSL",
            ssl_cafile=campus_ca.cert_path,
            ssl_certfile=client.cert,
            ssl_keyfile=client.key,
            ssl_key_password=SecretStr(KEY_PASSWORD),
        )
        context = server_context(server, client_ca=campus_ca.cert_path)
        async with tls_cluster(context, tmp_path / "broker.log") as (bootstrap, proxy):
            with pytest.raises(KafkaTlsRefused) as refused:
                await check_tls(without, bootstrap)
            await assert_client_refused(without, bootstrap)
            refused_sessions = len(proxy.sessions)
            await check_tls(with_cert, bootstrap)
            assert await round_trip(with_cert, bootstrap, topic) == [
                b"first",
                b"second",
            ]
        assert "requires a client certificate" in str(refused.value)
        assert "kafka.ssl_certfile" in str(refused.value)
        presented = proxy.sessions[refused_sessions:]
        assert presented
        assert all(
            session is not None
            and (("commonName", "enrolstream"),) in session["subject"]
            for session in presented
        )

    async def test_an_unreachable_broker_is_no_tls_verdict(
        self, campus_ca: ThrowawayCa
    ) -> None:
        """Nothing listening: check_tls leaves the waiting to the clients."""
        kafka = KafkaSettings(
            security_protocol="SSL",
            ssl_cafile=campus_ca.cert_path,
            request_timeout_s=2,
        )
        await check_tls(kafka, f"127.0.0.1:{free_port()}")

    async def test_a_listener_that_hangs_up_on_the_hello_is_refused(
        self, campus_ca: ThrowawayCa
    ) -> None:
        """A plaintext port that closes on a TLS hello (as Apache Kafka's does): refused."""

        async def hang_up(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await reader.read(1024)  # the TLS ClientHello, read as a bogus request
            writer.close()

        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=campus_ca.cert_path)
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(KafkaTlsRefused) as refused:
                await check_tls(kafka, f"127.0.0.1:{port}")
        assert "the TLS handshake failed" in str(refused.value)
        assert "TLS listener" in str(refused.value)
