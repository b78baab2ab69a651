"""The Kafka cluster's settings: where it is and how to reach it securely.

A section of ``enrolstream.settings.Settings`` (``[kafka]``, ``ENROLSTREAM_KAFKA__*``),
defined beside the adapter that uses it. ``security_problems`` names every
incomplete or contradictory combination at once, by setting and file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "SASL_PROTOCOLS",
    "TLS_PROTOCOLS",
    "KafkaSettings",
    "SaslMechanism",
    "SecurityProtocol",
    "security_problems",
]


class _Section(BaseModel):
    # hide_input_in_errors: a validation error names the key, never the value
    # (a misspelt or mistyped secret would otherwise be printed).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
TLS_PROTOCOLS: frozenset[str] = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS: frozenset[str] = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSettings(_Section):
    """The Kafka cluster. No bootstrap servers: start the embedded broker."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]; unset means: start the embedded broker",
    )
    events_topic: str = "enrolstream.enrolments"
    snapshot_topic: str = "enrolstream.snapshots"
    ledger_topic: str = "enrolstream.ledger"
    parked_topic: str = "enrolstream.parked"
    dead_letter_topic: str = "enrolstream.dead-letters"
    accounts_topic: str = "enrolstream.accounts"
    created_topic: str = Field(
        default="enrolstream.created",
        description="section groups and course shells enrolstream created (compacted)",
    )
    mappings_topic: str = Field(
        default="enrolstream.mappings",
        description="the published mapping of each term (compacted): running "
        "consumers follow it",
    )
    poller_state_topic: str | None = Field(
        default=None,
        description="the poller's resume point and shadow map (one partition, "
        "compacted); unset: <events_topic>.poller-state",
    )
    poller_lease_topic: str | None = Field(
        default=None,
        description="empty; its one partition is the lease the active poller "
        "holds; unset: <events_topic>.poller-lease",
    )

    def state_topic(self) -> str:
        """The poller's state topic: it describes what the events topic holds."""
        return self.poller_state_topic or f"{self.events_topic}.poller-state"

    def lease_topic(self) -> str:
        """The topic whose one partition is the pollers' lease."""
        return self.poller_lease_topic or f"{self.events_topic}.poller-lease"

    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    enable_idempotence: bool = Field(
        default=False,
        description="on for a real cluster; the embedded broker does not support it",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="SSL and SASL_SSL encrypt; SASL_* authenticate with sasl_*",
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="required with SASL_PLAINTEXT and SASL_SSL"
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that sign the brokers' certificates; "
        "unset: the system's trusted CAs (enough for MSK, Confluent Cloud)",
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description="PEM client certificate, for brokers that require mutual TLS",
    )
    ssl_keyfile: Path | None = Field(
        default=None,
        description="PEM private key of ssl_certfile (unset: the key is in ssl_certfile)",
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="the password of an encrypted ssl_keyfile"
    )
    ssl_check_hostname: bool = Field(
        default=True,
        description="check that the broker's certificate names the host connected "
        "to; turning it off (warned at start-up) still verifies the CA",
    )
    request_timeout_s: float = Field(default=30.0, gt=0)
    broker_log: Path = Path("var/broker.log")

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")


def security_problems(kafka: KafkaSettings) -> list[str]:
    """What is missing or contradictory in the TLS/SASL settings, one sentence each.

    Settings that the chosen ``security_protocol`` would silently ignore are
    problems too: a CA file with PLAINTEXT means someone believes the traffic is
    encrypted. Secrets are named, never shown.
    """
    return _sasl_problems(kafka) + _tls_problems(kafka)


def _sasl_problems(kafka: KafkaSettings) -> list[str]:
    protocol = kafka.security_protocol
    if protocol in SASL_PROTOCOLS:
        missing = [
            f"kafka.{name}"
            for name in _SASL_FIELDS
            if not _is_set(getattr(kafka, name))
        ]
        if missing:
            return [
                (
                    f"kafka.security_protocol {protocol} needs {', '.join(missing)} "
                    "(mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                )
            ]
        return []
    given = [name for name in _SASL_FIELDS if getattr(kafka, name) is not None]
    if given:
        return [
            (
                f"{_named(given)} set, but kafka.security_protocol is {protocol}: "
                "SASL is used only with SASL_SSL or SASL_PLAINTEXT"
            )
        ]
    return []


def _tls_problems(kafka: KafkaSettings) -> list[str]:
    protocol = kafka.security_protocol
    if protocol not in TLS_PROTOCOLS:
        given = [name for name in _TLS_FIELDS if getattr(kafka, name) is not None]
        if not kafka.ssl_check_hostname:
            given.append("ssl_check_hostname")
        if given:
            return [
                (
                    f"{_named(given)} set, but kafka.security_protocol is {protocol}: "
                    "TLS is used only with SSL or SASL_SSL"
                )
            ]
        return []
    problems: list[str] = []
    if kafka.ssl_keyfile is not None and kafka.ssl_certfile is None:
        problems.append(
            "kafka.ssl_keyfile needs kafka.ssl_certfile (the client certificate)"
        )
    if kafka.ssl_key_password is not None and kafka.ssl_certfile is None:
        problems.append(
            "kafka.ssl_key_password needs kafka.ssl_certfile (and kafka.ssl_keyfile "
            "unless the key is in the certificate file)"
        )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path: Path | None = getattr(kafka, name)
        if path is not None and not path.is_file():
            state = "is not a file" if path.exists() else "does not exist"
            problems.append(f"kafka.{name} names {path}, which {state}")
    return problems


def _named(fields: list[str]) -> str:
    return ", ".join(f"kafka.{name}" for name in fields)


def _is_set(value: str | SecretStr | None) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)
