"""The .mcpb for Claude Desktop: it validates, carries what uv needs, and starts offline as a host starts it."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from polar_mcp.config import OPTIONS
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from tests.helpers.packaging import (
    ROOT,
    SIGN_IN_VARIABLES,
    host_config,
    launched,
    offline_environment,
    pyproject_version,
    run_mcpb,
)

pytestmark = [pytest.mark.node, pytest.mark.anyio]


def test_the_bundled_manifest_passes_the_official_validator(unpacked: Path) -> None:
    result = run_mcpb("validate", str(unpacked / "manifest.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Manifest schema validation passes!" in result.stdout


def test_the_bundle_is_named_for_the_version_in_pyproject_and_its_manifest_carries_it(
    bundle: Path, manifest: dict[str, Any]
) -> None:
    assert bundle.name == f"polar-mcp-{pyproject_version()}.mcpb"
    assert manifest["version"] == pyproject_version()
    assert manifest["manifest_version"] == "0.4"
    assert manifest["server"]["type"] == "uv"


def test_the_bundle_holds_the_manifest_the_icon_and_what_uv_builds_polar_mcp_from(bundle: Path) -> None:
    source = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "src" / "polar_mcp").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    with zipfile.ZipFile(bundle) as archive:
        names = sorted(name for name in archive.namelist() if not name.endswith("/"))
    assert names == sorted(["manifest.json", "icon.png", "pyproject.toml", "README.md", *source])


def test_every_setting_the_bundle_asks_for_reaches_polar_mcp_through_its_own_variable(manifest: dict[str, Any]) -> None:
    options = {option.env: option for option in OPTIONS}
    env = manifest["server"]["mcp_config"]["env"]
    fields = manifest["user_config"]
    assert sorted(env.values()) == sorted(f"${{user_config.{key}}}" for key in fields)
    assert set(env) - set(options) <= SIGN_IN_VARIABLES
    for variable, reference in env.items():
        field = fields[reference.removeprefix("${user_config.").removesuffix("}")]
        option = options.get(variable)
        assert field["required"] is False, variable
        assert field["default"] == (False if field["type"] == "boolean" else ""), variable
        assert field.get("sensitive", False) == (option is not None and option.secret), variable
        if field["type"] == "boolean":
            assert option is not None, variable
            assert option.switch, variable
    assert fields["download_dir"]["type"] == "directory"
    assert env["POLAR_MCP_DOWNLOAD_DIR"] == "${user_config.download_dir}"


async def test_launched_as_a_host_launches_it_offline_the_bundle_serves_its_tools_and_the_demo_catalog(
    manifest: dict[str, Any], unpacked: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    launch = host_config(manifest, unpacked, {})
    stderr = tmp_path / "stderr.log"
    async with launched(launch, offline_environment(wheelhouse, tmp_path), stderr, ("--demo",)) as client:
        tools = await client.list_tools()
        listing = await client.call_tool("list_downloadables", {"query": "errata"})
        server_version = client.server_info.version if client.server_info else None
    assert [tool.name for tool in tools.tools] == [
        tool["name"] for tool in manifest["tools"] if tool["name"] != "sign_in"
    ]
    assert not listing.is_error, listing.content
    assert listing.structured_content is not None
    assert [item["name"] for item in listing.structured_content["items"]] == ["errata.txt"]
    assert server_version == pyproject_version()
    # Named in the order polar-mcp reads its settings.
    unfilled = [option.env for option in OPTIONS if option.env in launch.env]
    warning = ", ".join(unfilled) + ": still a ${...} placeholder the host left unfilled, so treated as unset"
    assert warning in stderr.read_text(encoding="utf-8").splitlines()


async def test_the_bundle_with_a_session_and_downloads_disabled_lists_the_customers_files_but_no_download_tool(
    manifest: dict[str, Any],
    unpacked: Path,
    wheelhouse: Path,
    tmp_path: Path,
    store: Store,
    double: RunningDouble,
) -> None:
    token = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    launch = host_config(
        manifest,
        unpacked,
        {"customer_session": token, "download_dir": str(tmp_path / "downloads"), "disable_download": True},
    )
    # The one setting no host passes: the double stands in for api.polar.sh.
    environment = {**offline_environment(wheelhouse, tmp_path), "POLAR_API_URL": double.base_url}
    stderr = tmp_path / "stderr.log"
    async with launched(launch, environment, stderr) as client:
        tools = await client.list_tools()
        listing = await client.call_tool("list_downloadables", {"query": "rust-in-practice"})
    assert [tool.name for tool in tools.tools] == ["list_downloadables", "get_download_link"]
    assert not listing.is_error, listing.content
    assert listing.structured_content is not None
    assert [item["name"] for item in listing.structured_content["items"]] == [
        "rust-in-practice.pdf",
        "rust-in-practice.epub",
    ]
    assert token not in stderr.read_text(encoding="utf-8")


async def test_the_bundle_with_only_the_seller_and_e_mail_set_offers_sign_in(
    manifest: dict[str, Any], unpacked: Path, wheelhouse: Path, tmp_path: Path, double: RunningDouble
) -> None:
    launch = host_config(manifest, unpacked, {"organization": "ferris-press", "customer_email": "ada@example.com"})
    environment = {**offline_environment(wheelhouse, tmp_path), "POLAR_API_URL": double.base_url}
    async with launched(launch, environment, tmp_path / "stderr.log") as client:
        tools = await client.list_tools()
    assert [tool.name for tool in tools.tools] == [tool["name"] for tool in manifest["tools"]]
