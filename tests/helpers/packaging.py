"""The MCP Bundle as a host sees it: built by the official packer, unpacked, its `mcp_config` filled in as a
host fills it, and launched with uv offline from the local wheelhouse."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parents[2]


MCPB = ROOT / ".tools" / "node" / "node_modules" / ".bin" / "mcpb"


# Kept between runs like .venv: uv unpacks each wheel once, so a launch takes about a second.
UV_CACHE = ROOT / ".cache" / "uv"


REFERENCE = re.compile(r"\$\{([^}]*)\}")


# Settings of the buyer sign-in (issue 14): the bundle and the README offer them before polar-mcp reads them.
SIGN_IN_VARIABLES = {"POLAR_ORGANIZATION", "POLAR_CUSTOMER_EMAIL"}


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("polar_mcp_bundle_build", ROOT / "packaging" / "mcpb" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def pyproject_version() -> str:
    return str(build.project_version())


def require_mcpb() -> None:
    """Fail (never skip) when the packer is missing: `make test` installs it first."""
    if not MCPB.exists() or shutil.which("node") is None:
        pytest.fail(f"the MCP Bundle CLI is not installed ({MCPB}): run `make node-tools`", pytrace=False)


def run_mcpb(*args: str) -> subprocess.CompletedProcess[str]:
    require_mcpb()
    return subprocess.run([str(MCPB), *args], capture_output=True, text=True, timeout=60, check=False)


@dataclass(frozen=True)
class Launch:
    """A server entry as a host writes it after substitution: command, arguments, environment."""

    command: str
    args: list[str]
    env: dict[str, str]


def host_config(manifest: Mapping[str, Any], dirname: Path, user_config: Mapping[str, str | bool]) -> Launch:
    """`mcp_config` with `${__dirname}` and the given `${user_config.x}` filled in as a host fills them.

    A field not given keeps its literal reference, the worst a host does with a setting the user left
    empty; booleans become "true"/"false".
    """
    fields = manifest["user_config"]
    assert set(user_config) <= set(fields), set(user_config) - set(fields)

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "__dirname":
                return str(dirname)
            key = name.removeprefix("user_config.")
            if key not in user_config:
                return match.group(0)
            value = user_config[key]
            return ("true" if value else "false") if isinstance(value, bool) else value

        return REFERENCE.sub(one, text)

    config = manifest["server"]["mcp_config"]
    return Launch(
        command=fill(config["command"]),
        args=[fill(arg) for arg in config.get("args", [])],
        env={name: fill(value) for name, value in config.get("env", {}).items()},
    )


def offline_environment(wheelhouse: Path, home: Path) -> dict[str, str]:
    """What the launch may use besides the host's env: this machine's Python, the wheelhouse, no index.

    The venv's scripts come first on PATH so `uv` is the one pinned in the dev extras.
    """
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "UV_OFFLINE": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": str(wheelhouse),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(UV_CACHE),
        "UV_NO_CONFIG": "1",
    }


@asynccontextmanager
async def launched(
    launch: Launch, environment: Mapping[str, str], stderr: Path, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[Client]:
    """An MCP client connected to the launched server; the server's stderr (uv's and polar-mcp's) goes to `stderr`."""
    command = shutil.which(launch.command, path=environment["PATH"])
    assert command is not None, f"{launch.command!r} is not on PATH"
    parameters = StdioServerParameters(
        command=command, args=[*launch.args, *extra_args], env={**environment, **launch.env}
    )
    with stderr.open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            yield client
