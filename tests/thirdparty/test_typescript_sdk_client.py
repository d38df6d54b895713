"""The official TypeScript SDK client (npm @modelcontextprotocol/sdk 1.32), through tests/thirdparty/ts_client.mjs:
it lists the tools, caches their output schemas, calls one tool (validating structuredContent against
its schema) and prints {tools, result, progress, lastProgress} as one JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polar_mcp.config import Settings
from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from tests.helpers.thirdparty import (
    DEMO_SERVER,
    TOOL_NAMES,
    demo_facts,
    demo_reference,
    mask_timestamps,
    mask_values,
    reference_call,
    sha256_of,
    stable_fields,
    ts_client,
)

pytestmark = pytest.mark.node

EPUB = "rust-in-practice.epub"


def test_the_typescript_sdk_reads_a_page_of_search_results_from_a_stdio_launched_demo_server(
    home: Path, tmp_path: Path, store: Store
) -> None:
    arguments = {"query": "rust", "limit": 1}
    call = ["--tool", "list_downloadables", "--args", json.dumps(arguments)]
    output = ts_client("--mode", "stdio", *call, "--", *DEMO_SERVER, home=home).ok()
    assert output["tools"] == TOOL_NAMES
    assert (output["progress"], output["lastProgress"]) == (0, None)
    result = output["result"]
    assert result["isError"] is False
    listing = result["structuredContent"]
    [item] = listing["items"]
    assert stable_fields(item) == demo_facts(store, "rust-in-practice.pdf")
    assert (listing["page"], listing["limit"], listing["has_more"]) == (1, 1, True)
    assert listing["max_page"] == listing["total_count"] >= 2
    with demo_reference(tmp_path) as settings:
        reference = reference_call(settings, "list_downloadables", arguments)
    assert mask_timestamps(result) == mask_timestamps(reference)


def test_the_typescript_sdk_downloads_over_streamable_http_with_streamed_progress_and_the_file_is_saved(
    home: Path, mcp_url: str, token: str, store: Store, http_downloads: Path, http_reference: Settings
) -> None:
    arguments = {"name": EPUB}
    command = ["--mode", "http", "--url", mcp_url, "--token", token]
    output = ts_client(*command, "--tool", "download_file", "--args", json.dumps(arguments), home=home).ok()
    assert output["tools"] == TOOL_NAMES
    facts = demo_facts(store, EPUB)
    size = facts["size_bytes"]
    saved = http_downloads / EPUB
    result = output["result"]
    assert result["isError"] is False
    downloaded = {key: result["structuredContent"][key] for key in ("path", "name", "size_bytes", "sha256")}
    assert downloaded == {"path": str(saved), "name": EPUB, "size_bytes": size, "sha256": facts["sha256"]}
    assert (result["structuredContent"]["verified"], result["structuredContent"]["skipped"]) == (True, False)
    # Reports during the 1.2 MB transfer and a final one, streamed over the HTTP response (SSE).
    assert output["progress"] >= 2, output
    last = output["lastProgress"]
    assert (last["progress"], last["total"]) == (size, size)
    assert sorted(path.name for path in http_downloads.iterdir()) == [RECORD_NAME, EPUB]
    assert sha256_of(saved) == facts["sha256"]
    reference = reference_call(http_reference, "download_file", arguments)
    reference_path = reference["structuredContent"]["path"]
    assert mask_values(result, str(saved)) == mask_values(reference, reference_path)
