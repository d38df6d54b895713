"""MCP Inspector's CLI (npm @modelcontextprotocol/inspector 2.12), a third-party client, drives polar-mcp
over stdio (`python -m polar_mcp --demo`) and over streamable HTTP with a bearer header.

Each test launches the inspector once; its JSON output must be exactly what the server emits (the
in-process reference), and the facts in it must match the demo catalog.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polar_mcp.config import Settings
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from tests.helpers.thirdparty import (
    DEMO_SERVER,
    MASK,
    SHA256_HEX,
    TIMESTAMP,
    TOOL_NAMES,
    demo_facts,
    demo_reference,
    inspector,
    mask_timestamps,
    mask_values,
    reference_call,
    reference_tools,
    sha256_of,
    stable_fields,
)

pytestmark = pytest.mark.node

READ_ONLY = {"readOnlyHint": True, "openWorldHint": True}
DOWNLOADED_KEYS = ("path", "name", "size_bytes", "sha256", "verified", "skipped")
SIGNED_LINK = re.compile(r"http://127\.0\.0\.1:\d+/v1/customer-portal/downloadables/\.[\w-]+\.[\w-]+\.[\w-]+")


def call(tool: str, *pairs: str) -> list[str]:
    """Inspector arguments for a tools/call (after the target, so --tool-arg cannot swallow it)."""
    arguments = ["--method", "tools/call", "--tool-name", tool]
    for pair in pairs:
        arguments += ["--tool-arg", pair]
    return arguments


# stdio --------------------------------------------------------------------------------------------

WRITES_FILES = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True, "openWorldHint": True}


def test_the_inspector_lists_exactly_the_tools_with_their_schemas_over_stdio(home: Path, tmp_path: Path) -> None:
    output = inspector(*DEMO_SERVER, "--method", "tools/list", home=home).ok()
    tools = output["result"]["tools"]
    assert [tool["name"] for tool in tools] == TOOL_NAMES
    assert [(tool["title"], tool["annotations"]) for tool in tools] == [
        ("List purchased files", READ_ONLY),
        ("Get a download link", READ_ONLY),
        ("Download a purchased file", WRITES_FILES),
        ("Sync the whole library", WRITES_FILES),
    ]
    assert all(tool["outputSchema"]["type"] == "object" for tool in tools)
    with demo_reference(tmp_path) as settings:
        assert output == {"result": {"tools": reference_tools(settings)}}


def test_the_inspector_searches_by_name_and_gets_the_matching_files_as_structured_content_over_stdio(
    home: Path, tmp_path: Path, store: Store
) -> None:
    output = inspector(*DEMO_SERVER, *call("list_downloadables", "query=rust"), home=home).ok()
    result = output["result"]
    assert result["isError"] is False
    listing = result["structuredContent"]
    by_name = {item["name"]: item for item in listing["items"]}
    for name in ("rust-in-practice.pdf", "rust-in-practice.epub"):
        assert stable_fields(by_name[name]) == demo_facts(store, name)
    assert by_name["rust-in-practice.pdf"]["version"] == "2.1"
    assert "rust-in-practice.azw3" not in by_name  # an unfinished upload: Polar hides it
    assert (listing["page"], listing["total_count"], listing["has_more"]) == (1, len(listing["items"]), False)
    assert result["content"][0]["type"] == "text"
    assert by_name["rust-in-practice.pdf"]["id"] in result["content"][0]["text"]
    with demo_reference(tmp_path) as settings:
        reference = reference_call(settings, "list_downloadables", {"query": "rust"})
    assert mask_timestamps(result) == mask_timestamps(reference)


def test_the_inspector_gets_a_fresh_signed_link_for_the_errata_by_name_over_stdio(
    home: Path, tmp_path: Path, store: Store
) -> None:
    output = inspector(*DEMO_SERVER, *call("get_download_link", "name=errata"), home=home).ok()
    result = output["result"]
    link = result["structuredContent"]
    facts = demo_facts(store, "errata.txt")
    assert {key: link[key] for key in ("id", "file_id", "benefit_id", "name", "size_bytes", "mime_type", "sha256")} == {
        key: facts[key] for key in ("id", "file_id", "benefit_id", "name", "size_bytes", "mime_type", "sha256")
    }
    assert SIGNED_LINK.fullmatch(link["url"]), link["url"]
    assert TIMESTAMP.fullmatch(link["expires_at"]), link["expires_at"]
    assert 3000 < link["expires_in_seconds"] <= 3600
    assert result["isError"] is False
    assert link["url"] in result["content"][0]["text"]
    with demo_reference(tmp_path) as settings:
        reference = reference_call(settings, "get_download_link", {"name": "errata"})
    ours = reference["structuredContent"]
    masked = mask_values(output, link["url"], link["expires_at"])
    masked["result"]["structuredContent"]["expires_in_seconds"] = MASK
    expected = mask_values(reference, ours["url"], ours["expires_at"])
    expected["structuredContent"]["expires_in_seconds"] = MASK
    assert masked == {"result": expected}


def test_the_inspector_downloads_the_errata_into_the_folder_set_by_env_verified_by_sha256_over_stdio(
    home: Path, tmp_path: Path, store: Store
) -> None:
    downloads = tmp_path / "downloads"
    env = f"POLAR_MCP_DOWNLOAD_DIR={downloads}"
    output = inspector("-e", env, *DEMO_SERVER, *call("download_file", "name=errata"), home=home).ok()
    result = output["result"]
    saved = downloads / "errata.txt"
    facts = demo_facts(store, "errata.txt")
    assert {key: result["structuredContent"][key] for key in DOWNLOADED_KEYS} == {
        "path": str(saved),
        "name": "errata.txt",
        "size_bytes": 289,
        "sha256": facts["sha256"],
        "verified": True,
        "skipped": False,
    }
    assert result["isError"] is False
    assert sorted(path.name for path in downloads.iterdir()) == [RECORD_NAME, "errata.txt"]  # no temporary file
    assert sha256_of(saved) == facts["sha256"]
    errata = next(file for file in store.files.values() if file.name == "errata.txt")
    assert saved.read_bytes() == errata.blob.read()
    with demo_reference(tmp_path / "reference") as settings:
        reference = reference_call(settings, "download_file", {"name": "errata"})
    assert mask_values(output, str(saved)) == {
        "result": mask_values(reference, str(tmp_path / "reference" / "errata.txt"))
    }


def test_the_inspector_exits_5_with_the_candidates_when_a_name_matches_several_files_over_stdio(
    home: Path, tmp_path: Path, store: Store
) -> None:
    run = inspector(*DEMO_SERVER, *call("get_download_link", "name=rust"), home=home)
    assert run.returncode == 5, run.stderr
    result = run.json()["result"]
    assert result["isError"] is True
    assert "structuredContent" not in result
    [text] = [block["text"] for block in result["content"]]
    assert text.startswith("Error executing tool get_download_link: ")
    for name in ("rust-in-practice.pdf", "rust-in-practice.epub"):
        assert f"- {name} · id {demo_facts(store, name)['id']}" in text
    assert json.loads(run.stderr) == {
        "error": {"code": "tool_is_error", "message": "Tool 'get_download_link' returned isError:true."}
    }
    with demo_reference(tmp_path) as settings:
        assert result == reference_call(settings, "get_download_link", {"name": "rust"})


# streamable HTTP ----------------------------------------------------------------------------------


def test_the_inspector_lists_the_tools_over_streamable_http_with_a_bearer_header(
    home: Path, mcp_url: str, token: str, http_reference: Settings
) -> None:
    bearer = f"Authorization: Bearer {token}"
    output = inspector(mcp_url, "--header", bearer, "--method", "tools/list", home=home).ok()
    assert [tool["name"] for tool in output["result"]["tools"]] == TOOL_NAMES
    assert output == {"result": {"tools": reference_tools(http_reference)}}


def test_the_inspector_pages_the_demo_customers_catalog_over_streamable_http(
    home: Path, mcp_url: str, token: str, store: Store, http_reference: Settings
) -> None:
    bearer = f"Authorization: Bearer {token}"
    output = inspector(mcp_url, "--header", bearer, *call("list_downloadables", "limit=3"), home=home).ok()
    result = output["result"]
    assert result["isError"] is False
    listing = result["structuredContent"]
    customer = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    rows = store.downloadables(store.open_session(customer.id, None))
    assert len(rows) == 11
    assert [stable_fields(item) for item in listing["items"]] == [demo_facts(store, row.file.name) for row in rows[:3]]
    assert {key: listing[key] for key in ("page", "limit", "total_count", "max_page", "has_more")} == {
        "page": 1,
        "limit": 3,
        "total_count": 11,
        "max_page": 4,
        "has_more": True,
    }
    assert all(SHA256_HEX.fullmatch(item["sha256"]) for item in listing["items"])
    # Same double, same store: the whole result is exactly what the server gives the Python SDK.
    assert output == {"result": reference_call(http_reference, "list_downloadables", {"limit": 3})}
