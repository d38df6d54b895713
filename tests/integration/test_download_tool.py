"""download_file end to end: the MCP tool against the double over loopback, files on a real disk."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from polar_mcp.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


def _env(store: Store, double: RunningDouble, folder: Path, **extra: str) -> dict[str, str]:
    token = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    return {
        "POLAR_API_URL": double.base_url,
        "POLAR_CUSTOMER_SESSION": token,
        "POLAR_MCP_DOWNLOAD_DIR": str(folder),
        **extra,
    }


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


async def test_a_file_is_saved_verified_with_progress_reported_to_the_client(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(build_server(load_settings(_env(store, double, tmp_path))), mode="legacy") as client:
        result = await client.call_tool(
            "download_file", {"name": "01-futures-and-wakers.mp4"}, progress_callback=on_progress
        )
    assert not result.is_error, _text(result)
    saved = result.structured_content
    assert saved is not None
    path = Path(saved["path"])
    assert path.parent == tmp_path.resolve()
    data = path.read_bytes()
    assert saved == {
        "path": str(path),
        "name": "01-futures-and-wakers.mp4",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "verified": True,
        "skipped": False,
        "benefit": "Async Course Videos",
        "seller": "Ferris Press",
    }
    assert _text(result) == (f"Saved 01-futures-and-wakers.mp4 (14.1 MB) to {path} — SHA-256 verified.")
    assert len(seen) > 5
    assert seen == sorted(seen)
    assert seen[-1] == (len(data), len(data))
    assert _leftovers(tmp_path) == []


async def test_the_same_file_again_is_reported_present_without_counting_a_download(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    async with Client(build_server(load_settings(_env(store, double, tmp_path)))) as client:
        first = await client.call_tool("download_file", {"name": "errata.txt"})
        downloads_before = sum(store.download_counts.values())
        again = await client.call_tool("download_file", {"name": "errata.txt"})
    assert not first.is_error
    assert again.structured_content is not None
    assert again.structured_content["skipped"] is True
    assert sum(store.download_counts.values()) == downloads_before


async def test_a_different_local_file_is_kept_unless_overwrite_is_asked(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    (tmp_path / "ERRATA.txt").write_text("my own notes")
    async with Client(build_server(load_settings(_env(store, double, tmp_path)))) as client:
        kept = await client.call_tool("download_file", {"name": "errata.txt"})
        replaced = await client.call_tool("download_file", {"name": "errata.txt", "overwrite": True})
    assert kept.structured_content is not None
    assert replaced.structured_content is not None
    assert Path(kept.structured_content["path"]).name == "errata (2).txt"
    # overwrite replaces the file that holds the name (matched case-insensitively), keeping its spelling
    assert Path(replaced.structured_content["path"]).name == "ERRATA.txt"
    replaced_bytes = (tmp_path / "ERRATA.txt").read_bytes()
    assert hashlib.sha256(replaced_bytes).hexdigest() == replaced.structured_content["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME, "ERRATA.txt", "errata (2).txt"]


async def test_storage_serving_wrong_bytes_fails_clearly_and_leaves_nothing(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    store.faults.update({"wrong_bytes_next": 5})
    async with Client(build_server(load_settings(_env(store, double, tmp_path)))) as client:
        result = await client.call_tool("download_file", {"name": "rust-in-practice.pdf"})
    assert result.is_error
    assert _text(result) == (
        "Error executing tool download_file: rust-in-practice.pdf arrived corrupted: its SHA-256 does not match "
        "Polar's checksum, so it was deleted. Get a fresh link and try again."
    )
    assert list(tmp_path.iterdir()) == []


async def test_a_cancelled_download_leaves_no_partial_file(store: Store, double: RunningDouble, tmp_path: Path) -> None:
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with Client(build_server(load_settings(_env(store, double, tmp_path))), mode="legacy") as client:
        async with anyio.create_task_group() as group:

            async def fetch() -> None:
                await client.call_tool(
                    "download_file", {"name": "01-futures-and-wakers.mp4"}, progress_callback=on_progress
                )

            group.start_soon(fetch)
            with anyio.fail_after(30):
                await started.wait()
            group.cancel_scope.cancel()
        # The server notices the cancellation; a later call proves it is still serving.
        listing = await client.call_tool("list_downloadables", {"limit": 1})
    assert not listing.is_error
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "01-futures-and-wakers.mp4").exists()


async def test_download_file_is_hidden_when_downloads_are_disabled(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    env = _env(store, double, tmp_path, POLAR_MCP_DISABLE_DOWNLOAD="1")
    async with Client(build_server(load_settings(env))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        instructions = client.instructions
        call: Any = await client.call_tool("download_file", {"name": "errata.txt"})
    assert names == {"list_downloadables", "get_download_link"}
    assert "download_file" not in (instructions or "")
    assert call.is_error
    assert list(tmp_path.iterdir()) == []
