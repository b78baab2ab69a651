"""The aiokafka keyword arguments built from the kafka settings: SASL and TLS.

SASL cannot be tested against a broker here. The embedded broker (Tansu 0.6)
runs without authentication; its ``--authentication`` flag offers SCRAM only (PLAIN:
"NoSharedMechanism"), and with its memory-only storage no user can be created on
such a broker (``tansu user create`` is itself refused as not authenticated). So
PLAIN and SCRAM are checked as the options they produce, and by handing those
options to aiokafka's own client, whose constructor refuses incomplete security
options (it is where "ssl_context is mandatory" came from). TLS against a real listener is in
``tests/integration/test_kafka_tls.py``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient
from pydantic import SecretStr

from connectors.kafka.errors import KafkaTlsUnusable
from connectors.kafka.options import _host_port, build_ssl_context, client_options
from enrolstream.settings import KafkaSettings
from tests.pki import ThrowawayCa

BOOTSTRAP = "kafka-1.example.edu:9093,kafka-2.example.edu:9093"
PASSWORD = "s3cret-kafka-pass"  # noqa: S105 - a test value


def sasl(protocol: str, mechanism: str) -> KafkaSettings:
    """Settings for SASL with ``mechanism`` over ``protocol``, system CAs for TLS."""
    return KafkaSettings(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="enrolstream",
        sasl_password=SecretStr(PASSWORD),
    )


class TestSaslOptions:
    """Each mechanism reaches aiokafka with the credentials it expects."""

    @pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    @pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
    async def test_mechanism_and_credentials(
        self, protocol: str, mechanism: str
    ) -> None:
        """The mechanism and the sasl_plain_* pair (aiokafka's names for SCRAM too)."""
        options = client_options(sasl(protocol, mechanism), BOOTSTRAP)
        assert options["security_protocol"] == protocol
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "enrolstream"
        assert options["sasl_plain_password"] == PASSWORD
        assert ("ssl_context" in options) == (protocol == "SASL_SSL")
        AIOKafkaClient(**options)  # aiokafka accepts them: nothing is missing

    async def test_plaintext_has_no_security_options(self) -> None:
        """PLAINTEXT (the embedded broker) passes neither SASL nor TLS options."""
        options = client_options(KafkaSettings(), "127.0.0.1:9092")
        assert options == {
            "bootstrap_servers": "127.0.0.1:9092",
            "security_protocol": "PLAINTEXT",
            "request_timeout_ms": 30_000,
        }
        AIOKafkaClient(**options)


class TestTlsOptions:
    """One SSLContext, built from the settings with the standard library."""

    async def test_ssl_gets_a_verifying_context(self, tmp_path: Path) -> None:
        """SSL with a CA file: chain and hostname verified; aiokafka accepts it."""
        ca = ThrowawayCa(tmp_path, "campus")
        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=ca.cert_path)
        options = client_options(kafka, BOOTSTRAP)
        context: Any = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        assert "sasl_mechanism" not in options
        AIOKafkaClient(**options)

    def test_hostname_check_off_still_verifies_the_chain(self, tmp_path: Path) -> None:
        """ssl_check_hostname = false drops the name check, not the CA check."""
        ca = ThrowawayCa(tmp_path, "campus")
        kafka = KafkaSettings(
            security_protocol="SSL", ssl_cafile=ca.cert_path, ssl_check_hostname=False
        )
        context = build_ssl_context(kafka)
        assert not context.check_hostname
        assert context.verify_mode == ssl.CERT_REQUIRED

    def test_no_ca_file_trusts_the_system_store(self) -> None:
        """Without ssl_cafile the system's CAs are loaded (MSK, Confluent Cloud)."""
        context = build_ssl_context(KafkaSettings(security_protocol="SSL"))
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname

    def test_client_certificate_with_an_encrypted_key(self, tmp_path: Path) -> None:
        """A client certificate and its password-protected key load into the context."""
        ca = ThrowawayCa(tmp_path, "campus")
        client = ca.issue("enrolstream", client=True, key_password=PASSWORD)
        kafka = KafkaSettings(
            security_protocol="SSL",
            ssl_certfile=client.cert,
            ssl_keyfile=client.key,
            ssl_key_password=SecretStr(PASSWORD),
        )
        assert isinstance(build_ssl_context(kafka), ssl.SSLContext)

    def test_a_wrong_key_password_names_the_files_not_the_password(
        self, tmp_path: Path
    ) -> None:
        """A key that does not decrypt: the settings and files named, no secret shown."""
        ca = ThrowawayCa(tmp_path, "campus")
        client = ca.issue("enrolstream", client=True, key_password=PASSWORD)
        kafka = KafkaSettings(
            security_protocol="SSL",
            ssl_certfile=client.cert,
            ssl_keyfile=client.key,
            ssl_key_password=SecretStr("not-the-password"),
        )
        with pytest.raises(KafkaTlsUnusable) as error:
            build_ssl_context(kafka)
        message = str(error.value)
        assert "kafka.ssl_certfile/ssl_keyfile" in message
        assert str(client.key) in message
        assert "kafka.ssl_key_password is wrong" in message
        assert "not-the-password" not in message
        assert PASSWORD not in message

    def test_a_ca_file_that_is_not_pem_is_named(self, tmp_path: Path) -> None:
        """A CA file with no certificate in it: refused naming the setting and file."""
        bogus = tmp_path / "ca.pem"
        bogus.write_text("not a certificate\n")
        kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=bogus)
        with pytest.raises(KafkaTlsUnusable, match=r"kafka\.ssl_cafile") as error:
            build_ssl_context(kafka)
        assert str(bogus) in str(error.value)


class TestBootstrapServerNames:
    """check_tls reads each bootstrap server as aiokafka does."""

    @pytest.mark.parametrize(
        ("server", "expected"),
        [
            ("kafka-1.example.edu:9093", ("kafka-1.example.edu", 9093)),
            ("kafka-1.example.edu", ("kafka-1.example.edu", 9092)),
            ("[::1]:9093", ("::1", 9093)),
            ("[::1]", ("::1", 9092)),
        ],
    )
    def test_host_and_port(self, server: str, expected: tuple[str, int]) -> None:
        """host:port, a bare host (port 9092), bracketed IPv6 with or without port."""
        assert _host_port(server) == expected
