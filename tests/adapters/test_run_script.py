"""``./run``: its ODBC check has no pipe race, and it runs commands where the user is."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "run"

#: ldconfig -p with libodbc first and far more than a pipe buffer after it: a
#: `ldconfig -p | grep -q` under pipefail then fails every time, not 1 in 13.
FAKE_LDCONFIG = """#!/usr/bin/env bash
echo "	libodbc.so.2 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libodbc.so.2"
for _ in $(seq 2000); do
  echo "	libfiller.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libfiller.so.1 \
padding padding padding padding padding padding padding padding padding padding"
done
"""
#: apt-get and id stand-ins: record any install attempt; pretend to be root, where
#: a failed check would run apt-get.
FAKE_APT_GET = '#!/usr/bin/env bash\necho "$*" >> "$APT_LOG"\nexit 1\n'
FAKE_ID = "#!/usr/bin/env bash\necho 0\n"


@pytest.fixture(name="fake_bin")
def _fake_bin(tmp_path: Path) -> Path:
    """A directory of stand-ins for ldconfig, apt-get and id, to put first on PATH."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, text in (
        ("ldconfig", FAKE_LDCONFIG),
        ("apt-get", FAKE_APT_GET),
        ("id", FAKE_ID),
    ):
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return directory


def _env(fake_bin: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ENROLSTREAM_")
    }
    return {
        **env,
        "PATH": f"{fake_bin}:{env['PATH']}",
        "APT_LOG": str(tmp_path / "apt.log"),
        **extra,
    }


class TestOdbcCheck:
    """The libodbc check reads ldconfig's whole output before searching it."""

    def test_found_library_is_found_every_time(
        self, fake_bin: Path, tmp_path: Path
    ) -> None:
        """With libodbc listed first in a long list, the check passes and installs nothing."""
        for _ in range(5):
            done = subprocess.run(  # noqa: S603 - the project's own script
                ["bash", "-c", f'source "{RUN}" && ensure_odbc && echo present'],  # noqa: S607
                env=_env(fake_bin, tmp_path),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "present"
            assert done.stderr == ""
        assert not (tmp_path / "apt.log").exists()

    def test_no_pipeline_feeds_an_early_exiting_reader(self) -> None:
        """No `| grep -q` (or `| head`) is left anywhere in ./run."""
        code = [
            line
            for line in RUN.read_text().splitlines()
            if not line.lstrip().startswith("#")
        ]
        assert not [line for line in code if "| grep" in line or "| head" in line]


class TestWorkingDirectory:
    """Commands run from the caller's directory, so relative paths mean what was typed."""

    def run(
        self, args: list[str], cwd: Path, fake_bin: Path, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """./run called from ``cwd`` with ``args``."""
        return subprocess.run(  # noqa: S603 - the project's own script
            [str(RUN), *args],
            cwd=cwd,
            env=_env(fake_bin, cwd, **env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def test_relative_config_option(self, tmp_path: Path, fake_bin: Path) -> None:
        """`./run --config site.toml` from another directory reads that directory's file."""
        (tmp_path / "site.toml").write_text("[kafka]\npartitions = 7\n")
        done = self.run(["--config", "site.toml", "config", "show"], tmp_path, fake_bin)
        assert done.returncode == 0, done.stderr
        assert '"partitions": 7' in done.stdout

    def test_relative_config_variable(self, tmp_path: Path, fake_bin: Path) -> None:
        """A relative ENROLSTREAM_CONFIG is found from the caller's directory."""
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "site.toml").write_text("[kafka]\npartitions = 9\n")
        done = self.run(
            ["config", "show"], tmp_path, fake_bin, ENROLSTREAM_CONFIG="conf/site.toml"
        )
        assert done.returncode == 0, done.stderr
        assert '"partitions": 9' in done.stdout

    def test_missing_config_is_one_line(self, tmp_path: Path, fake_bin: Path) -> None:
        """A config file that is not there: one line naming it as resolved, exit 2."""
        done = self.run(["--config", "nope.toml", "config", "show"], tmp_path, fake_bin)
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"configuration error: --config: names nope.toml ({tmp_path}/nope.toml), "
            "which is not a file: correct the path (a relative one is relative to "
            "the directory you run from)"
        )
