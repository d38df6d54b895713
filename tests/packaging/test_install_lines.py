"""The README's one-line installs: each parses, names only settings polar-mcp reads, and launches it."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from polar_mcp.config import OPTIONS
from tests.helpers.packaging import ROOT, SIGN_IN_VARIABLES, offline_environment, pyproject_version

README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL = README.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
CLONE = "/path/to/polar-mcp"


@dataclass(frozen=True)
class Entry:
    host: str
    command: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict[str, str])


def _claude_code(line: str) -> Entry:
    words = shlex.split(line)
    split = words.index("--")
    options, (command, *args) = words[4:split], words[split + 1 :]
    assert words[:4] == ["claude", "mcp", "add", "polar"], line
    assert options[::2] == ["-e"] * (len(options) // 2), line
    env = dict(pair.split("=", 1) for pair in options[1::2])
    return Entry("Claude Code", command, tuple(args), env)


def _vs_code(config: str) -> Entry:
    server = json.loads(config)
    assert server["name"] == "polar"
    return Entry("VS Code", server["command"], tuple(server["args"]), server.get("env", {}))


def _cursor(block: str) -> Entry:
    (name, server), *others = json.loads(block)["mcpServers"].items()
    assert (name, others) == ("polar", [])
    return Entry("Cursor", server["command"], tuple(server["args"]), server.get("env", {}))


ENTRIES = [
    *(_claude_code(line) for line in re.findall(r"claude mcp add [^`\n]*", INSTALL)),
    *(_vs_code(config) for config in re.findall(r"code --add-mcp '([^'\n]*)'", INSTALL)),
    *(_cursor(block) for block in re.findall(r"```json\n(.*?)```", INSTALL, re.DOTALL)),
]


def test_the_install_section_comes_first_and_covers_every_host() -> None:
    assert README.index("## Install") < README.index("## What the assistant gets")
    assert README[: README.index("## Install")].count("\n## ") == 0
    assert "make mcpb" in INSTALL
    assert "dist/polar-mcp-<version>.mcpb" in INSTALL
    assert f"pipx install {CLONE}" in INSTALL
    assert [entry.host for entry in ENTRIES] == ["Claude Code", "Claude Code", "VS Code", "VS Code", "Cursor"]


def test_every_install_line_sets_only_variables_polar_mcp_reads_and_one_signs_in_without_a_token() -> None:
    known = {option.env for option in OPTIONS} | SIGN_IN_VARIABLES
    for entry in ENTRIES:
        assert set(entry.env) <= known, entry
    signing_in = [entry.host for entry in ENTRIES if set(entry.env) == SIGN_IN_VARIABLES]
    assert signing_in == ["Claude Code", "VS Code"]


def test_pipx_installs_the_console_script_the_hosts_run() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        scripts = tomllib.load(file)["project"]["scripts"]
    assert scripts == {"polar-mcp": "polar_mcp.cli:main"}
    assert all(entry.args[-1] == "polar-mcp" for entry in ENTRIES)


@pytest.mark.parametrize(
    "launch", sorted({(entry.command, entry.args) for entry in ENTRIES}), ids=lambda launch: " ".join(launch[1])
)
def test_each_install_line_starts_polar_mcp_from_the_clone(
    launch: tuple[str, tuple[str, ...]], wheelhouse: Path, tmp_path: Path
) -> None:
    command, args = launch
    environment = offline_environment(wheelhouse, tmp_path)
    executable = shutil.which(command, path=environment["PATH"])
    assert executable is not None, f"{command!r} is not on PATH"
    result = subprocess.run(
        [executable, *(str(ROOT) if arg == CLONE else arg for arg in args), "--version"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"polar-mcp {pyproject_version()}\n"
