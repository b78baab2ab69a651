"""What every sub-command shares: the settings the root read, and the Kafka check.

The root callback reads the settings once and puts them on the command context
(``ctx.obj``); sub-commands take ``ctx: typer.Context`` and call ``settings_of``.
Nothing reads the settings a second time or from a global.
"""

from __future__ import annotations

import asyncio

import typer

from connectors.kafka.config import TLS_PROTOCOLS
from connectors.kafka.errors import KafkaTlsError
from connectors.kafka.options import check_tls, warn_about_security
from enrolstream.settings import Settings

__all__ = ["CONFIG_ERROR_EXIT", "require_bootstrap", "settings_of"]

#: Exit code of a command refused because of its configuration (settings, mapping).
CONFIG_ERROR_EXIT = 2


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of this process, as the root callback read them."""
    found = ctx.find_root().obj
    if not isinstance(found, Settings):
        raise TypeError("the root callback did not read the settings")
    return found


def require_bootstrap(config: Settings, command: str) -> str:
    """The Kafka cluster ``command`` needs; says how to get one and exits 2 if unset.

    Also the start-up check of the Kafka security settings: warns about weakened
    protections, and exits 2 with the reason when TLS cannot work (a file that
    does not load, a certificate refused by either side).
    """
    bootstrap = config.kafka.bootstrap_servers
    if not bootstrap:
        typer.echo(
            f"{command} needs a Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS (or "
            "kafka.bootstrap_servers in the settings), or run `enrolstream broker` "
            "for the embedded one",
            err=True,
        )
        raise typer.Exit(CONFIG_ERROR_EXIT)
    warn_about_security(config.kafka)
    if config.kafka.security_protocol in TLS_PROTOCOLS:
        try:
            asyncio.run(check_tls(config.kafka, bootstrap))
        except KafkaTlsError as exc:
            typer.echo(f"{command} cannot start: {exc}", err=True)
            raise typer.Exit(CONFIG_ERROR_EXIT) from exc
    return bootstrap
