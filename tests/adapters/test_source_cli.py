"""``enrolstream source check`` through Typer's CliRunner, against real failures."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enrolstream.cli import root as root_cli
from enrolstream.cli.capture import register

PASSWORD = "Sup3r;Secret}pw"  # noqa: S105 - a test value that must never be printed


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(root_cli._root)  # the real root callback: reads the settings
    register(app)
    return app


@pytest.fixture(name="sqlserver_env")
def fixture_sqlserver_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "ENROLSTREAM_SOURCE__KIND": "sqlserver",
        "ENROLSTREAM_SOURCE__SQLSERVER__DRIVER": "FreeTDS",
        "ENROLSTREAM_SOURCE__SQLSERVER__SERVER": "127.0.0.1",
        "ENROLSTREAM_SOURCE__SQLSERVER__PORT": str(_closed_port()),
        "ENROLSTREAM_SOURCE__SQLSERVER__USER": "enrolstream",
        "ENROLSTREAM_SOURCE__SQLSERVER__PASSWORD": PASSWORD,
        "ENROLSTREAM_SOURCE__SQLSERVER__LOGIN_TIMEOUT_S": "2",
    }
    monkeypatch.delenv("ENROLSTREAM_CONFIG", raising=False)
    monkeypatch.chdir("/")  # no enrolstream.toml from the working tree
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class TestSourceCheck:
    """`source check` prints one clear line and exits non-zero when the source is unusable."""

    def test_unreachable_server_fails_fast_with_one_line(
        self, sqlserver_env: dict[str, str]
    ) -> None:
        """A closed port gives one 'cannot reach' line within the login timeout, no traceback."""
        started = time.monotonic()
        result = CliRunner().invoke(_app(), ["source", "check"])
        elapsed = time.monotonic() - started
        output = result.stderr.strip()
        assert result.exit_code == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)
        # besides the start-up warning that FreeTDS does not check the certificate
        warning, failure = output.splitlines()
        assert json.loads(warning)["event"] == "sqlserver_certificate_not_checked"
        assert failure.startswith("source check failed (sqlserver):")
        assert "08S01" in output or "08001" in output
        assert "Traceback" not in output
        assert PASSWORD not in output
        assert elapsed < 2 + 3  # login timeout plus start-up slack

    def test_missing_driver_lists_installed_drivers(
        self, sqlserver_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A driver name unixODBC does not know is reported with the installed ones."""
        monkeypatch.setenv(
            "ENROLSTREAM_SOURCE__SQLSERVER__DRIVER", "ODBC Driver 99 for SQL Server"
        )
        result = CliRunner().invoke(_app(), ["source", "check"])
        assert result.exit_code == 1
        assert "'ODBC Driver 99 for SQL Server' is not installed" in result.output
        assert "installed: FreeTDS" in result.output


class TestSandboxSourceCheck:
    """`source check` on the sandbox says how to create one when there is none."""

    def test_missing_sandbox_names_the_command(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """No sandbox file: exit 1 with the path and `enrolstream sandbox init`."""
        monkeypatch.delenv("ENROLSTREAM_CONFIG", raising=False)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("ENROLSTREAM_SOURCE__KIND", "sandbox")
        result = CliRunner().invoke(_app(), ["source", "check"])
        assert result.exit_code == 1
        assert "var/powercampus.sqlite" in result.output
        assert "enrolstream sandbox init" in result.output
        assert "Traceback" not in result.output
