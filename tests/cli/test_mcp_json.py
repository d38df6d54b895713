"""The repository's mcp.json: the server entry a host would copy, launched exactly as written."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from mcp import Client, StdioServerParameters

from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.store import Store
from tests.helpers.demo import ada_token

MCP_JSON = Path(__file__).resolve().parents[2] / "mcp.json"

pytestmark = pytest.mark.anyio


def _entry() -> dict[str, Any]:
    config = json.loads(MCP_JSON.read_text(encoding="utf-8"))
    servers = cast(dict[str, dict[str, Any]], config["mcpServers"])
    assert len(servers) == 1, list(servers)
    (entry,) = servers.values()
    return entry


def _launch(entry: dict[str, Any], env: dict[str, str]) -> StdioServerParameters:
    """The entry's command and args as a host would run them, the venv's scripts first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    command = shutil.which(entry["command"], path=path)
    assert command is not None, f"{entry['command']!r} is not on PATH"
    return StdioServerParameters(command=command, args=list(entry.get("args", [])), env={**env, "PATH": path})


def test_mcp_json_has_one_server_whose_token_goes_in_env_never_in_args() -> None:
    entry = _entry()
    assert set(entry) <= {"command", "args", "env"}
    assert isinstance(entry["command"], str)
    assert all(isinstance(arg, str) for arg in entry.get("args", []))
    assert "POLAR_CUSTOMER_SESSION" in entry["env"]
    assert not any(arg.startswith(("polar_cst_", "polar_mst_", "polar_oat_")) for arg in entry.get("args", []))


async def test_the_server_mcp_json_names_starts_lists_its_tools_and_lists_files(
    store: Store, double: RunningDouble, capfd: pytest.CaptureFixture[str]
) -> None:
    entry = _entry()
    token = ada_token(store)
    env = {**entry.get("env", {}), "POLAR_CUSTOMER_SESSION": token, "POLAR_API_URL": double.base_url}
    async with Client(_launch(entry, env)) as client:
        tools = await client.list_tools()
        result = await client.call_tool("list_downloadables", {"query": "errata"})
    assert {tool.name for tool in tools.tools} == {
        "list_downloadables",
        "get_download_link",
        "download_file",
        "sync_library",
    }
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert [item["name"] for item in result.structured_content["items"]] == ["errata.txt"]
    assert token not in capfd.readouterr().err


async def test_the_placeholder_token_left_in_mcp_json_gets_a_clear_rejection(
    double: RunningDouble, capfd: pytest.CaptureFixture[str]
) -> None:
    entry = _entry()
    async with Client(_launch(entry, {**entry.get("env", {}), "POLAR_API_URL": double.base_url})) as client:
        result = await client.call_tool("list_downloadables", {})
    assert result.is_error
    first = result.content[0]
    assert first.type == "text"
    assert "Polar rejected the session token: it is expired, revoked or invalid" in first.text
    assert "update POLAR_CUSTOMER_SESSION" in first.text
    capfd.readouterr()
