"""Connection options shared by every Kafka client we build, from the kafka settings.

Kept free of aiokafka imports: the adapters (``cdc/kafka.py``,
``consumers/kafka.py``) pass these keyword arguments to their clients.
"""

from __future__ import annotations

from typing import Any

from enrolstream.settings import KafkaSettings


def client_options(kafka: KafkaSettings, bootstrap_servers: str) -> dict[str, Any]:
    """Keyword arguments common to aiokafka producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": int(kafka.request_timeout_s * 1000),
    }
    if kafka.sasl_mechanism is not None:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    return options
