"""Validation of the Kafka TLS/SASL settings: one clear message, no secret in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from enrolstream.cli import root as cli
from enrolstream.settings import KafkaSettings, load_settings, masked
from enrolstream.settings_errors import SettingsError

PASSWORD = "hunter2-kafka-long"  # noqa: S105 - a test value


@pytest.fixture(name="clean_env", autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings leak in from the machine running the tests."""
    for name in ("ENROLSTREAM_CONFIG", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def refusal(**fields: Any) -> str:
    """The validation message for KafkaSettings(**fields)."""
    with pytest.raises(ValidationError) as error:
        KafkaSettings(**fields)
    return str(error.value)


class TestIncompleteCombinations:
    """A combination that cannot work is refused, naming what is missing."""

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            (
                {"security_protocol": "SASL_SSL"},
                (
                    "kafka.security_protocol SASL_SSL needs kafka.sasl_mechanism, "
                    "kafka.sasl_username, kafka.sasl_password"
                ),
            ),
            (
                {
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_username": "enrolstream",
                },
                "kafka.security_protocol SASL_PLAINTEXT needs kafka.sasl_password",
            ),
            (
                {
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "",
                    "sasl_password": PASSWORD,
                },
                "kafka.security_protocol SASL_SSL needs kafka.sasl_username",
            ),
            (
                {"sasl_mechanism": "PLAIN", "sasl_password": PASSWORD},
                (
                    "kafka.sasl_mechanism, kafka.sasl_password set, but "
                    "kafka.security_protocol is PLAINTEXT: SASL is used only with SASL_SSL"
                ),
            ),
            (
                {"security_protocol": "SASL_PLAINTEXT", "ssl_check_hostname": False}
                | {"sasl_mechanism": "PLAIN", "sasl_username": "u"}
                | {"sasl_password": PASSWORD},
                (
                    "kafka.ssl_check_hostname set, but kafka.security_protocol is "
                    "SASL_PLAINTEXT: TLS is used only with SSL or SASL_SSL"
                ),
            ),
            (
                {"security_protocol": "SSL", "ssl_keyfile": "client.key"},
                "kafka.ssl_keyfile needs kafka.ssl_certfile",
            ),
            (
                {"security_protocol": "SSL", "ssl_key_password": PASSWORD},
                "kafka.ssl_key_password needs kafka.ssl_certfile",
            ),
        ],
    )
    def test_refused_with_the_settings_named(
        self, fields: dict[str, Any], expected: str
    ) -> None:
        """Each incomplete or contradictory combination gets its own sentence."""
        message = refusal(**fields)
        assert expected in message
        assert PASSWORD not in message

    def test_a_ca_file_given_with_plaintext_is_refused(self, tmp_path: Path) -> None:
        """A CA file with PLAINTEXT: someone believes the traffic is encrypted."""
        ca = tmp_path / "ca.pem"
        ca.write_text("")
        assert (
            "kafka.ssl_cafile set, but kafka.security_protocol is PLAINTEXT"
            in refusal(ssl_cafile=ca)
        )

    def test_every_problem_is_reported_at_once(self) -> None:
        """Several problems: one message listing them all, not one per run."""
        message = refusal(
            security_protocol="SASL_SSL",
            ssl_keyfile="client.key",
            ssl_cafile="/nowhere/ca.pem",
        )
        assert "needs kafka.sasl_mechanism" in message
        assert "kafka.ssl_keyfile needs kafka.ssl_certfile" in message
        assert "kafka.ssl_cafile names /nowhere/ca.pem, which does not exist" in message


class TestFiles:
    """TLS files must exist: the message names the setting and the file."""

    @pytest.mark.parametrize("setting", ["ssl_cafile", "ssl_certfile"])
    def test_a_missing_file(self, setting: str, tmp_path: Path) -> None:
        """A path to nothing is refused naming the setting and the path."""
        missing = tmp_path / "gone.pem"
        message = refusal(security_protocol="SSL", **{setting: missing})
        assert f"kafka.{setting} names {missing}, which does not exist" in message

    def test_a_directory_is_not_a_file(self, tmp_path: Path) -> None:
        """A directory where a key file belongs is named as such."""
        message = refusal(
            security_protocol="SSL", ssl_certfile=tmp_path, ssl_keyfile=tmp_path
        )
        assert f"kafka.ssl_keyfile names {tmp_path}, which is not a file" in message

    def test_complete_tls_and_sasl_settings_load(self, tmp_path: Path) -> None:
        """SASL_SSL with SCRAM, a CA file and a client certificate is accepted."""
        for name in ("ca.pem", "client.crt", "client.key"):
            (tmp_path / name).write_text("")
        kafka = KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="enrolstream",
            sasl_password=PASSWORD,
            ssl_cafile=tmp_path / "ca.pem",
            ssl_certfile=tmp_path / "client.crt",
            ssl_keyfile=tmp_path / "client.key",
            ssl_key_password=PASSWORD,
        )
        assert kafka.ssl_check_hostname


class TestSecretsNeverShown:
    """The SASL and key passwords appear in no error, repr or `config show`."""

    def test_a_refused_toml_section_does_not_echo_the_password(
        self, tmp_path: Path
    ) -> None:
        """The validation error of a section holding a password shows no input."""
        path = tmp_path / "site.toml"
        path.write_text(
            '[kafka]\nsecurity_protocol = "SASL_SSL"\n'
            f'sasl_password = "{PASSWORD}"\nssl_key_password = "{PASSWORD}"\n'
        )
        with pytest.raises(SettingsError) as error:
            load_settings(path)
        assert "needs kafka.sasl_mechanism, kafka.sasl_username" in str(error.value)
        assert PASSWORD not in str(error.value)

    def test_an_environment_password_is_not_echoed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENROLSTREAM_KAFKA__SASL_PASSWORD with an incomplete SASL set-up: not shown."""
        monkeypatch.setenv("ENROLSTREAM_KAFKA__SASL_PASSWORD", PASSWORD)
        with pytest.raises(SettingsError) as error:
            load_settings()
        assert "kafka.sasl_password set, but" in str(error.value)
        assert PASSWORD not in str(error.value)

    def test_config_show_masks_both_passwords(self, tmp_path: Path) -> None:
        """`config show` and repr() print stars for the SASL and key passwords."""
        for name in ("client.crt", "client.key"):
            (tmp_path / name).write_text("")
        path = tmp_path / "site.toml"
        path.write_text(
            '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
            f'sasl_username = "enrolstream"\nsasl_password = "{PASSWORD}"\n'
            f'ssl_certfile = "{tmp_path / "client.crt"}"\n'
            f'ssl_keyfile = "{tmp_path / "client.key"}"\n'
            f'ssl_key_password = "{PASSWORD}"\n'
        )
        settings = load_settings(path)
        shown = masked(settings)["kafka"]
        assert shown["sasl_password"] == shown["ssl_key_password"] == "*" * 10
        assert PASSWORD not in repr(settings)
        result = CliRunner().invoke(cli.app, ["--config", str(path), "config", "show"])
        assert result.exit_code == 0, result.output
        assert '"ssl_check_hostname": true' in result.output
        assert PASSWORD not in result.output
