"""SQL Server's settings (``[source.sqlserver]``) and the ODBC connection strings from them.

Two driver families, two conventions (``docs/sqlserver-change-tracking.md`` §9):

* Microsoft ODBC Driver 17/18: ``SERVER=tcp:host,port``, ``Encrypt`` /
  ``TrustServerCertificate`` (v18 encrypts and validates by default),
  ``ApplicationIntent=ReadOnly``, ``Trusted_Connection=yes`` for Kerberos.
* FreeTDS (``tdsodbc``): ``SERVER=host;PORT=port``, an explicit ``TDS_Version``,
  ``Encryption=off|request|require|strict``; FreeTDS does not validate the
  server certificate unless a CA file is configured in ``freetds.conf``, and a
  connection string with ``SERVER=`` does not read ``freetds.conf`` at all (the
  ODBC driver has no CA-file keyword; checked on FreeTDS 1.3). With
  ``freetds_servername`` the string names a ``freetds.conf`` section instead
  (``SERVERNAME=``), where ``ca file`` can be set. ``tls_caveat`` says when the
  server's certificate goes unchecked, for a start-up warning.

The password is only ever unwrapped into the string handed to the driver;
``connection_string(..., masked=True)`` is the form to log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cdc.errors import SourceMisconfigured


class _Section(BaseModel):
    # hide_input_in_errors: a validation error names the key, never the value
    # (a misspelt or mistyped secret would otherwise be printed).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class SqlServerSettings(_Section):
    """PowerCampus on Microsoft SQL Server, read through pyodbc."""

    driver: str = "ODBC Driver 18 for SQL Server"
    server: str = "localhost"
    port: int = 1433
    database: str = "Campus6"
    user: str | None = None
    password: SecretStr | None = None
    kerberos: bool = Field(default=False, description="Trusted_Connection after kinit")
    encrypt: Literal["yes", "no", "strict", "mandatory", "optional"] = "yes"
    trust_server_certificate: bool = False
    read_only_intent: bool = Field(
        default=False, description="ApplicationIntent=ReadOnly"
    )
    tds_version: str = Field(default="7.4", description="FreeTDS only")
    freetds_servername: str | None = Field(
        default=None,
        description="FreeTDS only: connect through this freetds.conf section "
        "(SERVERNAME=) instead of server/port; its `ca file` makes FreeTDS check "
        "SQL Server's certificate, which it does not do otherwise (docs/dba.md)",
    )
    login_timeout_s: int = Field(default=15, ge=1)
    query_timeout_s: int = Field(default=60, ge=0)
    snapshot_isolation: bool = Field(
        default=True,
        description="poll in one SNAPSHOT transaction; off: the documented fallback "
        "(read the current version first, tolerate duplicates)",
    )


MASK = "**********"

#: ``SqlServerSettings.encrypt`` in FreeTDS's vocabulary.
_FREETDS_ENCRYPTION = {
    "yes": "require",
    "mandatory": "require",
    "strict": "strict",
    "optional": "request",
    "no": "off",
}


def is_freetds(driver: str) -> bool:
    """Whether ``driver`` names the FreeTDS ODBC driver (by name or library)."""
    lowered = driver.lower()
    return "freetds" in lowered or "tdsodbc" in lowered


def odbc_value(value: str) -> str:
    """``value`` as an ODBC attribute value: braced, with ``}`` doubled, when needed."""
    if any(char in value for char in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def connection_string(settings: SqlServerSettings, *, masked: bool = False) -> str:
    """The ODBC connection string for ``settings``; ``masked`` hides the password.

    Raises ``SourceMisconfigured`` when neither a login nor Kerberos is set, or both.
    """
    parts: list[tuple[str, str]] = [("DRIVER", "{" + settings.driver + "}")]
    if is_freetds(settings.driver):
        if settings.freetds_servername:
            # host, port and `ca file` come from that freetds.conf section
            parts.append(("SERVERNAME", odbc_value(settings.freetds_servername)))
        else:
            parts += [("SERVER", settings.server), ("PORT", str(settings.port))]
        parts += [
            ("TDS_Version", settings.tds_version),
            ("Encryption", _FREETDS_ENCRYPTION[settings.encrypt]),
        ]
    else:
        parts += [
            ("SERVER", f"tcp:{settings.server},{settings.port}"),
            ("Encrypt", settings.encrypt),
            ("TrustServerCertificate", _yes_no(settings.trust_server_certificate)),
        ]
    parts += [("DATABASE", odbc_value(settings.database)), ("APP", "enrolstream")]
    if settings.read_only_intent:
        parts.append(("ApplicationIntent", "ReadOnly"))
    parts += _credentials(settings, masked=masked)
    return "".join(f"{key}={value};" for key, value in parts)


def tls_caveat(settings: SqlServerSettings) -> str | None:
    """Why SQL Server's certificate goes unchecked with these settings, or None.

    Encryption without a checked certificate stops eavesdroppers but not a man in
    the middle, who then reads the login and every row. FreeTDS checks the
    certificate only with a ``ca file`` from ``freetds.conf``, which a ``SERVER=``
    connection never reads; the Microsoft driver does not check it when told to
    trust it.
    """
    if settings.encrypt == "no":
        return None
    if is_freetds(settings.driver):
        if settings.freetds_servername:
            return None
        return (
            "FreeTDS encrypts the connection but does not check SQL Server's "
            "certificate: set `ca file` in a freetds.conf section and name it in "
            "source.sqlserver.freetds_servername, or use ODBC Driver 18 "
            "(docs/dba.md, section 5)"
        )
    if settings.trust_server_certificate:
        return (
            "trust_server_certificate is true: SQL Server's certificate is not "
            "checked; install the CA that signed it and set it to false "
            "(docs/dba.md, section 5)"
        )
    return None


def secrets_of(settings: SqlServerSettings) -> tuple[str, ...]:
    """The secret strings that must never appear in a message (for scrubbing)."""
    if settings.password is None or not settings.password.get_secret_value():
        return ()
    return (settings.password.get_secret_value(),)


def _credentials(settings: SqlServerSettings, *, masked: bool) -> list[tuple[str, str]]:
    if settings.kerberos:
        if settings.user is not None:
            raise SourceMisconfigured(
                "source.sqlserver: set either kerberos=true or user/password, not both"
            )
        return [("Trusted_Connection", "yes")]
    if settings.user is None or settings.password is None:
        raise SourceMisconfigured(
            "source.sqlserver: set user and password "
            "(ENROLSTREAM_SOURCE__SQLSERVER__USER / __PASSWORD), or kerberos=true "
            "after kinit"
        )
    password = MASK if masked else odbc_value(settings.password.get_secret_value())
    return [("UID", odbc_value(settings.user)), ("PWD", password)]


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
