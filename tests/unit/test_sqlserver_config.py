"""ODBC connection strings for both driver families, and secret handling."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from cdc.errors import SourceMisconfigured
from connectors.sqlserver.config import connection_string, odbc_value, tls_caveat
from enrolstream.settings import SqlServerSettings

LOGIN: dict[str, Any] = {"user": "enrolstream", "password": SecretStr("s3cret;pw")}


class TestConnectionString:
    """Settings become the connection string each driver expects."""

    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            (
                {},
                (
                    "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:localhost,1433;"
                    "Encrypt=yes;TrustServerCertificate=no;DATABASE=Campus6;APP=enrolstream;"
                    "UID=enrolstream;PWD={s3cret;pw};"
                ),
            ),
            (
                {
                    "driver": "FreeTDS",
                    "server": "pc.example.edu",
                    "port": 1500,
                    "tds_version": "7.3",
                    "encrypt": "no",
                },
                (
                    "DRIVER={FreeTDS};SERVER=pc.example.edu;PORT=1500;TDS_Version=7.3;"
                    "Encryption=off;DATABASE=Campus6;APP=enrolstream;UID=enrolstream;"
                    "PWD={s3cret;pw};"
                ),
            ),
            (
                {"driver": "FreeTDS", "freetds_servername": "campus6", "port": 1500},
                (
                    "DRIVER={FreeTDS};SERVERNAME=campus6;TDS_Version=7.4;"
                    "Encryption=require;DATABASE=Campus6;APP=enrolstream;"
                    "UID=enrolstream;PWD={s3cret;pw};"
                ),
            ),
            (
                {
                    "trust_server_certificate": True,
                    "read_only_intent": True,
                    "encrypt": "strict",
                },
                (
                    "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:localhost,1433;"
                    "Encrypt=strict;TrustServerCertificate=yes;DATABASE=Campus6;"
                    "APP=enrolstream;ApplicationIntent=ReadOnly;UID=enrolstream;"
                    "PWD={s3cret;pw};"
                ),
            ),
            (
                {"user": None, "password": None, "kerberos": True},
                (
                    "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:localhost,1433;"
                    "Encrypt=yes;TrustServerCertificate=no;DATABASE=Campus6;APP=enrolstream;"
                    "Trusted_Connection=yes;"
                ),
            ),
        ],
    )
    def test_driver_conventions(self, overrides: dict[str, Any], expected: str) -> None:
        """Each combination of settings gives the documented keywords."""
        settings = SqlServerSettings(**(LOGIN | overrides))
        assert connection_string(settings) == expected

    def test_masked_form_hides_the_password(self) -> None:
        """The form we log shows stars where the password is."""
        masked = connection_string(SqlServerSettings(**LOGIN), masked=True)
        assert "s3cret" not in masked
        assert "PWD=**********;" in masked

    @pytest.mark.parametrize(
        "overrides",
        [{"user": None, "password": None}, {"password": None}, {"kerberos": True}],
    )
    def test_credentials_must_be_one_kind(self, overrides: dict[str, Any]) -> None:
        """Neither a login nor Kerberos, or both, is a configuration error."""
        with pytest.raises(SourceMisconfigured, match=r"source\.sqlserver"):
            connection_string(SqlServerSettings(**(LOGIN | overrides)))

    @pytest.mark.parametrize(
        ("value", "escaped"),
        [("plain", "plain"), ("a;b", "{a;b}"), ("a}b", "{a}}b}"), (" pad", "{ pad}")],
    )
    def test_odbc_value_escaping(self, value: str, escaped: str) -> None:
        """Values with ODBC metacharacters are braced, closing braces doubled."""
        assert odbc_value(value) == escaped

    def test_settings_repr_hides_the_password(self) -> None:
        """The settings model never shows the password."""
        assert "s3cret" not in repr(SqlServerSettings(**LOGIN))


class TestTlsCaveat:
    """When encryption does not authenticate the server, start-up must say so."""

    @pytest.mark.parametrize(
        ("overrides", "mentions"),
        [
            ({"driver": "FreeTDS"}, "freetds_servername"),
            ({"driver": "FreeTDS", "encrypt": "strict"}, "freetds_servername"),
            ({"driver": "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so"}, "ca file"),
            ({"trust_server_certificate": True}, "trust_server_certificate"),
            ({"driver": "FreeTDS", "freetds_servername": "campus6"}, None),
            ({"driver": "FreeTDS", "encrypt": "no"}, None),
            ({}, None),
            ({"encrypt": "strict"}, None),
        ],
    )
    def test_caveat(self, overrides: dict[str, Any], mentions: str | None) -> None:
        """FreeTDS without a freetds.conf section, or a trusted certificate, is a caveat."""
        caveat = tls_caveat(SqlServerSettings(**(LOGIN | overrides)))
        if mentions is None:
            assert caveat is None
        else:
            assert caveat is not None
            assert mentions in caveat
