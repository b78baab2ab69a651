"""The [conduit] section: what is refused, by name, and what stays secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enrolstream.settings import SettingsError, load_settings, masked
from enrolstream.settings_conduit import ConduitSettings, pairs

PASSPHRASE = "a-passphrase-never-shown-93c1"  # noqa: S105 - a test value


@pytest.fixture(name="clean_env", autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings leak in from the machine running the tests."""
    for name in [*os.environ]:
        if name.upper().startswith("ENROLSTREAM_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def load(tmp_path: Path, text: str) -> ConduitSettings:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return load_settings(path).conduit


class TestColumns:
    """Conduit's mappings: every field once, headings it can read."""

    def test_the_order_given_is_the_column_order(self, tmp_path: Path) -> None:
        """A TOML table keeps its order; that is the file's."""
        conduit = load(
            tmp_path,
            '[conduit]\nenrolment_columns = ["role=r", "idnumber", "shortname=c", '
            '"action"]\n',
        )
        assert pairs(conduit.enrolment_columns) == (
            ("role", "r"),
            ("idnumber", "idnumber"),
            ("shortname", "c"),
            ("action", "action"),
        )

    @pytest.mark.parametrize(
        ("table", "problem"),
        [
            ('"action", "shortname=action", "idnumber", "role"', "share"),
            ('"action", "shortname", "idnumber"', "missing: role"),
            ('"action", "shortname=s,t", "idnumber", "role"', "commas"),
            ('"action", "course", "idnumber", "role"', "course"),
            ('"action", "shortname", "idnumber", "role", "role=r"', "twice"),
        ],
    )
    def test_unusable_columns_are_named(
        self, tmp_path: Path, table: str, problem: str
    ) -> None:
        """A shared heading, a missing field, a comma, an unknown field: refused."""
        with pytest.raises(SettingsError, match=r"conduit\.enrolment_columns") as error:
            load(tmp_path, f"[conduit]\nenrolment_columns = [{table}]\n")
        assert problem in str(error.value)

    def test_a_relative_folder_is_refused(self, tmp_path: Path) -> None:
        """The vendor gives an absolute path."""
        with pytest.raises(SettingsError, match=r"conduit\.folder"):
            load(tmp_path, '[conduit]\nfolder = "conduit"\n')


class TestProblems:
    """What stops the sink from starting, one line each."""

    def test_an_empty_section_names_every_missing_setting(self) -> None:
        """Host, user, folder and a key or password."""
        assert ConduitSettings().problems({5}) == [
            "conduit.host: not set",
            "conduit.username: not set",
            "conduit.folder: not set",
            "conduit.private_key_path: not set (nor conduit.password)",
        ]

    def test_files_that_do_not_exist_and_roles_without_names(
        self, tmp_path: Path
    ) -> None:
        """A key path naming nothing; a policy role Conduit has no name for."""
        conduit = ConduitSettings(
            host="h",
            username="u",
            folder="/f",
            private_key_path=tmp_path / "missing",
        )
        assert conduit.problems({5, 3, 9}) == [
            f"conduit.private_key_path: {tmp_path / 'missing'} is not a file",
            "conduit.roles: no Conduit name for role id(s) 9 (consumer.*_role_id)",
        ]


class TestSecrets:
    """The passphrase and password are masked and never echoed."""

    def test_config_show_masks_them(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``config show`` prints stars for both."""
        monkeypatch.setenv("ENROLSTREAM_CONDUIT__PRIVATE_KEY_PASSPHRASE", PASSPHRASE)
        monkeypatch.setenv("ENROLSTREAM_CONDUIT__PASSWORD", PASSPHRASE)
        shown = masked(load_settings())["conduit"]
        stars = "*" * 10
        assert shown["private_key_passphrase"] == shown["password"] == stars
        assert PASSPHRASE not in repr(load_settings())

    def test_a_bad_value_is_named_not_shown(self, tmp_path: Path) -> None:
        """A wrongly typed secret is reported by its key, never by its value."""
        with pytest.raises(SettingsError) as error:
            load(tmp_path, f'[conduit]\nport = "{PASSPHRASE}"\n')
        assert "conduit.port" in str(error.value)
        assert PASSPHRASE not in str(error.value)
