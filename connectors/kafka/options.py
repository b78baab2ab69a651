"""Connection options shared by every Kafka client we build, from the kafka settings.

Kept free of aiokafka imports: the adapters (``connectors/kafka/publisher.py``,
``consumers/kafka.py``) pass these keyword arguments to their clients.

TLS: the ``ssl.SSLContext`` is built here and only here (``build_ssl_context``),
with the standard library: the CA file (or the system's trusted CAs), an optional
client certificate and key, hostname check on unless turned off. aiokafka needs
the context for SSL and SASL_SSL and refuses to start without one.

aiokafka reports a refused TLS handshake only as "Unable to bootstrap" (the
reason goes to its log), so ``check_tls`` makes one TLS connection of its own at
start-up and turns a refusal into ``KafkaTlsRefused`` with the reason and the
setting to change. A broker that does not answer is no verdict: the clients
wait for it as they do without TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from typing import Any

import structlog

from connectors.kafka.config import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings
from connectors.kafka.errors import KafkaTlsRefused, KafkaTlsUnusable

log = structlog.get_logger()

# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH (OpenSSL's x509_vfy.h)
_NAME_MISMATCH = frozenset({62, 64})


def client_options(kafka: KafkaSettings, bootstrap_servers: str) -> dict[str, Any]:
    """Keyword arguments common to aiokafka producers, consumers and admin clients.

    The dict holds the SASL password in plain text, as aiokafka wants it: pass it
    to a client, never to a log call. Raises ``KafkaTlsUnusable`` when a TLS file
    cannot be loaded.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": int(kafka.request_timeout_s * 1000),
    }
    if kafka.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = build_ssl_context(kafka)
    if kafka.security_protocol in SASL_PROTOCOLS:
        # The settings refuse SASL without all three; aiokafka names the SCRAM
        # credentials sasl_plain_* too.
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return options


def build_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The client-side TLS context: verify the broker, optionally present our certificate.

    The broker's chain is always verified (``CERT_REQUIRED``); ``ssl_check_hostname``
    only decides whether its certificate must also name the host we connected to.
    """
    cafile = kafka.ssl_cafile
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaTlsUnusable(
            f"kafka.ssl_cafile: cannot load CA certificates from {cafile}: {exc}"
        ) from exc
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        password = kafka.ssl_key_password
        try:
            context.load_cert_chain(
                kafka.ssl_certfile,
                kafka.ssl_keyfile,
                password=password.get_secret_value() if password else None,
            )
        except (ssl.SSLError, OSError) as exc:
            # OpenSSL's reasons never contain the password; the message names files.
            hint = (
                ", or kafka.ssl_key_password is wrong"
                if password
                else " (an encrypted key needs kafka.ssl_key_password)"
            )
            raise KafkaTlsUnusable(
                "kafka.ssl_certfile/ssl_keyfile: cannot load the client certificate "
                f"{kafka.ssl_certfile} with key {kafka.ssl_keyfile or 'in the same file'}: "
                f"{exc.__class__.__name__}: {exc}; check both are PEM and belong "
                f"together{hint}"
            ) from exc
    return context


def warn_about_security(kafka: KafkaSettings) -> None:
    """Log a warning for each weakened protection the settings allow (start-up only)."""
    if kafka.security_protocol in TLS_PROTOCOLS and not kafka.ssl_check_hostname:
        log.warning(
            "kafka_hostname_check_off",
            detail="kafka.ssl_check_hostname = false: any certificate signed by the "
            "trusted CA is accepted for any broker name",
        )
    if kafka.security_protocol == "SASL_PLAINTEXT" and kafka.sasl_mechanism == "PLAIN":
        log.warning(
            "kafka_sasl_plain_unencrypted",
            detail="SASL PLAIN over SASL_PLAINTEXT sends the Kafka password in clear; "
            "use SASL_SSL or a SCRAM mechanism",
        )


async def check_tls(kafka: KafkaSettings, bootstrap_servers: str) -> None:
    """Connect once over TLS and ask for the API versions; raise if TLS is refused.

    Returns at the first bootstrap server that answers over TLS, and also when
    none can be reached (connection refused or timed out is not a TLS verdict).
    Raises ``KafkaTlsRefused`` at the first server whose certificate fails to
    verify, whose TLS handshake fails (no protocol or cipher in common, or a
    listener that is not TLS and hangs up on the hello), or that closes the
    session unanswered (how a broker refuses a missing or unknown client
    certificate under TLS 1.3), and ``KafkaTlsUnusable`` when the files cannot be
    loaded. No-op without TLS.
    """
    if kafka.security_protocol not in TLS_PROTOCOLS:
        return
    context = build_ssl_context(kafka)
    for entry in bootstrap_servers.split(","):
        server = entry.strip()
        try:
            async with asyncio.timeout(kafka.request_timeout_s):
                if await _ask_over_tls(server, context, kafka):
                    return
        except TimeoutError:
            continue  # slow or hanging: no verdict, the clients wait themselves


async def _ask_over_tls(
    server: str, context: ssl.SSLContext, kafka: KafkaSettings
) -> bool:
    """True when ``server`` answered over TLS, False when it could not be reached."""
    host, port = _host_port(server)
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False  # not reachable (yet): the clients wait for it themselves
    try:
        # TCP first, TLS second: a failure from here on is the broker's verdict.
        try:
            await writer.start_tls(context, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise KafkaTlsRefused(server, _why_not_verified(exc, kafka)) from exc
        except (ssl.SSLError, ConnectionError, EOFError) as exc:
            raise KafkaTlsRefused(
                server,
                f"the TLS handshake failed ({_reason(exc)}): check that this is the "
                "brokers' TLS listener (a plaintext port hangs up so) and, if it "
                "requires a client certificate, set kafka.ssl_certfile and "
                "kafka.ssl_keyfile",
            ) from exc
        try:
            writer.write(_API_VERSIONS_V0)
            await writer.drain()
            await reader.readexactly(4)  # the answer's size: the broker accepted us
        except (ssl.SSLError, ConnectionError, EOFError) as exc:
            # An alert or a close before any answer: the broker's verdict on our
            # certificate, which TLS 1.3 delivers only after the handshake.
            raise KafkaTlsRefused(
                server,
                f"the broker accepted the TLS handshake, then closed the session "
                f"without answering ({_reason(exc)}): it requires a client "
                "certificate (set kafka.ssl_certfile and kafka.ssl_keyfile to one "
                "signed by a CA it trusts) or refused the one given",
            ) from exc
    finally:
        # Aborted, not closed: a probe needs no TLS goodbye, and a graceful close
        # of a handshake still in flight (cancelled by the timeout) can hang.
        writer.transport.abort()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await writer.wait_closed()
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _why_not_verified(exc: ssl.SSLCertVerificationError, kafka: KafkaSettings) -> str:
    if exc.verify_code in _NAME_MISMATCH:
        return (
            f"{exc.verify_message}: name the brokers in kafka.bootstrap_servers as "
            "their certificates do (the brokers' advertised names must match too); "
            "kafka.ssl_check_hostname = false turns this check off"
        )
    trusted = (
        f"the CA file kafka.ssl_cafile = {kafka.ssl_cafile}"
        if kafka.ssl_cafile is not None
        else "the system's trusted CAs (kafka.ssl_cafile is unset)"
    )
    return (
        f"the broker's certificate did not verify against {trusted}: "
        f"{exc.verify_message}"
    )


def _host_port(server: str) -> tuple[str, int]:
    host, colon, port = server.rpartition(":")
    if not colon or host.endswith(":") or server.endswith("]"):
        return server.strip("[]"), 9092  # no port given: Kafka's, as aiokafka does
    return host.strip("[]"), int(port)


# ApiVersions v0 (api key 18), correlation id 1, client id "enrolstream-tls-check".
# A broker answers it before any SASL exchange, so it works for SSL and SASL_SSL.
_CLIENT_ID = b"enrolstream-tls-check"
_REQUEST = struct.pack(">hhih", 18, 0, 1, len(_CLIENT_ID)) + _CLIENT_ID
_API_VERSIONS_V0 = struct.pack(">i", len(_REQUEST)) + _REQUEST
