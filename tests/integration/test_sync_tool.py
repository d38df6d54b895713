"""sync_library end to end: the MCP tool against the double over loopback, files on a real disk."""

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
from polar_mcp.double.blobs import Blob
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from polar_mcp.server import build_server

pytestmark = pytest.mark.anyio

DEMO_FILES = {
    "Early Access_ Chapter 12": ["chapter-12-draft.pdf"],
    "Wallpaper Pack": ["ferris-dawn-3840x2160.png", "ferris-dusk-2560x1440.png"],
    "Async Course Videos": [
        "01-futures-and-wakers.mp4",
        "02-inside-the-tokio-runtime.mp4",
        "01-futures-and-wakers.srt",
    ],
    "Code Samples": ["async-course-code.zip", "README.md"],
    "Rust Ebook Bundle": ["rust-in-practice.pdf", "rust-in-practice.epub", "errata.txt"],
}
"""The demo catalog as a sync lays it out, in Polar's order (newest grant first)."""


@pytest.fixture
def fresh() -> Iterator[tuple[Store, RunningDouble]]:
    """A demo double of the test's own, which it may change freely."""
    store = demo_store()
    with start_double(store) as double:
        yield store, double


def _client(store: Store, double: RunningDouble, folder: Path, **extra: str) -> Client:
    token = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    env = {
        "POLAR_API_URL": double.base_url,
        "POLAR_CUSTOMER_SESSION": token,
        "POLAR_MCP_DOWNLOAD_DIR": str(folder),
        **extra,
    }
    return Client(build_server(load_settings(env)), mode="legacy")


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


def _structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result.structured_content


def _on_disk(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != RECORD_NAME)


def _file(store: Store, name: str) -> Any:
    return next(f for f in store.files.values() if f.name == name)


def _benefit(store: Store, name: str) -> Any:
    return next(b for b in store.benefits.values() if b.description == name)


def _expected_files(store: Store, status: str) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    for folder, names in DEMO_FILES.items():
        benefit = folder.replace("_", ":")
        for name in names:
            blob = _file(store, name).blob
            files.append(
                {
                    "path": f"{folder}/{name}",
                    "name": name,
                    "benefit": benefit,
                    "size_bytes": blob.size,
                    "sha256": hashlib.sha256(blob.read()).hexdigest(),
                    "verified": name != "README.md",
                    "status": status,
                }
            )
    return files


async def test_one_call_saves_the_whole_library_verified_in_a_folder_per_benefit_with_progress(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with _client(store, double, tmp_path) as client:
        result = await client.call_tool("sync_library", {}, progress_callback=on_progress)

    synced = _structured(result)
    files = _expected_files(store, "downloaded")
    total = sum(file["size_bytes"] for file in files)
    assert synced == {
        "folder": str(tmp_path.resolve()),
        "counts": {"downloaded": 11, "present": 0, "failed": 0, "bytes": total},
        "files": files,
        "gone": [],
    }
    assert _text(result) == f"Synced 11 files into {tmp_path.resolve()}: 11 downloaded (29.9 MB), 0 already present."
    assert _on_disk(tmp_path) == sorted(file["path"] for file in files)
    assert len(seen) > 10
    assert seen == sorted(seen)
    assert seen[-1] == (total, total)
    assert list(tmp_path.rglob("*.part")) == []


async def test_a_second_sync_fetches_nothing_and_opens_no_link(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    async with _client(store, double, tmp_path) as client:
        await client.call_tool("sync_library", {})
    opened = sum(store.download_counts.values())

    async with _client(store, double, tmp_path) as client:
        again = await client.call_tool("sync_library", {})

    assert _structured(again)["counts"] == {"downloaded": 0, "present": 11, "failed": 0, "bytes": 0}
    assert _structured(again)["files"] == _expected_files(store, "present")
    assert _text(again) == f"Synced 11 files into {tmp_path.resolve()}: 0 downloaded (0.0 B), 11 already present."
    assert sum(store.download_counts.values()) == opened == 11


async def test_one_benefit_or_a_search_syncs_only_its_files(fresh: tuple[Store, RunningDouble], tmp_path: Path) -> None:
    store, double = fresh
    rust = _benefit(store, "Rust Ebook Bundle").id
    async with _client(store, double, tmp_path) as client:
        by_id = await client.call_tool("sync_library", {"benefit_id": rust})
        by_query = await client.call_tool("sync_library", {"query": "wallpaper"})

    assert [f["path"] for f in _structured(by_id)["files"]] == [
        "Rust Ebook Bundle/rust-in-practice.pdf",
        "Rust Ebook Bundle/rust-in-practice.epub",
        "Rust Ebook Bundle/errata.txt",
    ]
    assert [f["path"] for f in _structured(by_query)["files"]] == [
        "Wallpaper Pack/ferris-dawn-3840x2160.png",
        "Wallpaper Pack/ferris-dusk-2560x1440.png",
    ]
    # A search keeps nothing it did not match from being reported gone.
    assert _structured(by_query)["gone"] == []


async def test_a_new_version_replaces_an_untouched_copy_and_is_saved_beside_an_edited_one(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    async with _client(store, double, tmp_path) as client:
        await client.call_tool("sync_library", {"query": "rust"})
        edited = tmp_path / "Rust Ebook Bundle" / "rust-in-practice.epub"
        edited.write_bytes(b"my highlights")
        for name in ("rust-in-practice.pdf", "rust-in-practice.epub"):
            file = _file(store, name)
            file.version = "3.0"
            file.blob = Blob(file.blob.size + 1000, seed=f"new:{name}", header=file.blob.header)
        again = await client.call_tool("sync_library", {"query": "rust"})

    statuses = {f["path"]: f["status"] for f in _structured(again)["files"]}
    assert statuses == {
        "Rust Ebook Bundle/rust-in-practice.pdf": "downloaded",
        "Rust Ebook Bundle/rust-in-practice (2).epub": "downloaded",
        "Rust Ebook Bundle/errata.txt": "present",
    }
    assert _on_disk(tmp_path) == [
        "Rust Ebook Bundle/errata.txt",
        "Rust Ebook Bundle/rust-in-practice (2).epub",
        "Rust Ebook Bundle/rust-in-practice.epub",
        "Rust Ebook Bundle/rust-in-practice.pdf",
    ]
    assert edited.read_bytes() == b"my highlights"
    new_pdf = _file(store, "rust-in-practice.pdf").blob.read()
    assert (tmp_path / "Rust Ebook Bundle" / "rust-in-practice.pdf").read_bytes() == new_pdf


async def test_a_renamed_benefit_keeps_its_folder(fresh: tuple[Store, RunningDouble], tmp_path: Path) -> None:
    store, double = fresh
    async with _client(store, double, tmp_path) as client:
        await client.call_tool("sync_library", {"query": "rust"})
    _benefit(store, "Rust Ebook Bundle").description = "Rust Books (2026 edition)"

    # A new server: the benefit names are fetched again.
    async with _client(store, double, tmp_path) as client:
        again = await client.call_tool("sync_library", {"query": "rust"})

    files = _structured(again)["files"]
    assert {(f["path"].split("/")[0], f["benefit"], f["status"]) for f in files} == {
        ("Rust Ebook Bundle", "Rust Books (2026 edition)", "present")
    }
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["Rust Ebook Bundle"]


async def test_two_benefits_of_one_name_never_share_a_folder(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    _benefit(store, "Wallpaper Pack").description = "Rust Ebook Bundle"

    async with _client(store, double, tmp_path) as client:
        first = await client.call_tool("sync_library", {"query": "rust ebook bundle"})
        again = await client.call_tool("sync_library", {"query": "rust ebook bundle"})

    assert sorted({f["path"].rsplit("/", 1)[0] for f in _structured(first)["files"]}) == [
        "Rust Ebook Bundle",
        "Rust Ebook Bundle (2)",
    ]
    # Polar lists the newest grant first: the wallpapers took the name, the ebooks the next one.
    assert _on_disk(tmp_path) == [
        "Rust Ebook Bundle (2)/errata.txt",
        "Rust Ebook Bundle (2)/rust-in-practice.epub",
        "Rust Ebook Bundle (2)/rust-in-practice.pdf",
        "Rust Ebook Bundle/ferris-dawn-3840x2160.png",
        "Rust Ebook Bundle/ferris-dusk-2560x1440.png",
    ]
    assert _structured(again)["counts"]["present"] == 5


async def test_a_file_polar_no_longer_offers_is_kept_and_reported_gone(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    async with _client(store, double, tmp_path) as client:
        await client.call_tool("sync_library", {})
        _file(store, "errata.txt").deleted = True
        _file(store, "ferris-dusk-2560x1440.png").deleted = True
        again = await client.call_tool("sync_library", {})

    synced = _structured(again)
    assert synced["gone"] == ["Rust Ebook Bundle/errata.txt", "Wallpaper Pack/ferris-dusk-2560x1440.png"]
    assert synced["counts"] == {"downloaded": 0, "present": 9, "failed": 0, "bytes": 0}
    assert (tmp_path / "Rust Ebook Bundle" / "errata.txt").exists()
    assert _text(again) == (
        f"Synced 9 files into {tmp_path.resolve()}: 0 downloaded (0.0 B), 9 already present.\n"
        "No longer offered by Polar, kept on disk: 2 files (Rust Ebook Bundle/errata.txt, "
        "Wallpaper Pack/ferris-dusk-2560x1440.png)."
    )


async def test_a_benefit_withdrawn_as_a_whole_is_reported_gone_when_asked_for_by_id(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    wallpapers = _benefit(store, "Wallpaper Pack")
    async with _client(store, double, tmp_path) as client:
        await client.call_tool("sync_library", {})
        wallpapers.deleted = True
        everything = await client.call_tool("sync_library", {})
        asked = await client.call_tool("sync_library", {"benefit_id": wallpapers.id})

    assert _structured(everything)["gone"] == []
    assert _structured(asked) == {
        "folder": str(tmp_path.resolve()),
        "counts": {"downloaded": 0, "present": 0, "failed": 0, "bytes": 0},
        "files": [],
        "gone": ["Wallpaper Pack/ferris-dawn-3840x2160.png", "Wallpaper Pack/ferris-dusk-2560x1440.png"],
    }


async def test_two_sellers_synced_into_one_folder_never_report_each_others_files_gone(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    mary = store.issue_session(store.customer_by_external_id("mary-1797").id)
    env = {"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": mary, "POLAR_MCP_DOWNLOAD_DIR": str(tmp_path)}
    async with _client(store, double, tmp_path) as ada, Client(build_server(load_settings(env))) as quill:
        await ada.call_tool("sync_library", {})
        from_quill = await quill.call_tool("sync_library", {})
        from_ada = await ada.call_tool("sync_library", {})

    assert [f["path"] for f in _structured(from_quill)["files"]] == ["Poetry Chapbook/night-poems-chapbook.pdf"]
    assert (_structured(from_quill)["gone"], _structured(from_ada)["gone"]) == ([], [])
    assert _structured(from_ada)["counts"]["present"] == 11


async def test_hostile_benefit_and_file_names_stay_inside_the_folder(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    press = store.organizations[ada.organization_id]
    evil = store.add_file(press, "../../../evil\x1b[31m.txt", "text/plain", Blob.literal(b"evil"))
    hidden = store.add_file(press, ".polar-mcp.sqlite3", "text/plain", Blob.literal(b"not a database"))
    store.grant(ada, store.add_benefit(press, "../../Outside\\..", [evil, hidden]), 2_000_000_000.0)
    root = tmp_path / "downloads"

    async with _client(store, double, root) as client:
        result = await client.call_tool("sync_library", {"query": "outside"})

    files = _structured(result)["files"]
    assert [(f["path"], f["status"]) for f in files] == [
        ("Outside/evil.txt", "downloaded"),
        ("Outside/polar-mcp.sqlite3", "downloaded"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]
    assert (root / "Outside" / "evil.txt").read_bytes() == b"evil"


async def test_a_corrupted_file_fails_alone_and_leaves_nothing_partial(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    store.faults.update({"wrong_bytes_next": 1})

    async with _client(store, double, tmp_path, POLAR_MCP_DOWNLOAD_CONCURRENCY="1") as client:
        result = await client.call_tool("sync_library", {"query": "rust"})
        after_failure = _on_disk(tmp_path)
        retry = await client.call_tool("sync_library", {"query": "rust"})

    synced = _structured(result)
    assert synced["counts"]["failed"] == 1
    failed = next(f for f in synced["files"] if f["status"] == "failed")
    assert failed["reason"] == (
        f"{failed['name']} arrived corrupted: its SHA-256 does not match Polar's checksum, so it was deleted. "
        "Get a fresh link and try again."
    )
    assert _text(result).endswith(f"Failed:\n- {failed['path']}: {failed['reason']}")
    assert list(tmp_path.rglob("*.part")) == []
    assert failed["path"] not in after_failure
    assert len(after_failure) == 2
    assert _structured(retry)["counts"] == {"downloaded": 1, "present": 2, "failed": 0, "bytes": failed["size_bytes"]}


async def test_a_cancelled_sync_keeps_what_it_finished_and_the_next_one_resumes(
    fresh: tuple[Store, RunningDouble], tmp_path: Path
) -> None:
    store, double = fresh
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if progress > 20_000_000:
            started.set()

    async with _client(store, double, tmp_path, POLAR_MCP_DOWNLOAD_CONCURRENCY="1") as client:
        async with anyio.create_task_group() as group:

            async def sync() -> None:
                await client.call_tool("sync_library", {}, progress_callback=on_progress)

            group.start_soon(sync)
            with anyio.fail_after(30):
                await started.wait()
            group.cancel_scope.cancel()
        # The server notices the cancellation; a later call proves it is still serving.
        listing = await client.call_tool("list_downloadables", {"limit": 1})
    kept = _on_disk(tmp_path)
    assert not listing.is_error
    assert list(tmp_path.rglob("*.part")) == []
    assert 0 < len(kept) < 11

    async with _client(store, double, tmp_path) as client:
        resumed = await client.call_tool("sync_library", {})

    counts = _structured(resumed)["counts"]
    assert (counts["present"], counts["downloaded"], counts["failed"]) == (len(kept), 11 - len(kept), 0)


async def test_sync_library_is_hidden_when_downloads_are_disabled(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    async with _client(store, double, tmp_path, POLAR_MCP_DISABLE_DOWNLOAD="1") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        instructions = client.instructions
        call = await client.call_tool("sync_library", {})
    assert names == {"list_downloadables", "get_download_link"}
    assert "sync_library" not in (instructions or "")
    assert call.is_error
    assert list(tmp_path.iterdir()) == []


async def test_a_sync_over_the_total_cap_is_refused_in_the_tools_terms(
    store: Store, double: RunningDouble, tmp_path: Path
) -> None:
    async with _client(store, double, tmp_path, POLAR_MCP_MAX_SYNC_SIZE="10MB") as client:
        result = await client.call_tool("sync_library", {})

    assert result.is_error
    assert _text(result) == (
        "Error executing tool sync_library: This sync would fetch 11 file(s), 29.9 MB in all, over the sync limit "
        "of 10.0 MB, so nothing was fetched. Sync part of the library (benefit_id or query), or ask the user to "
        "raise POLAR_MCP_MAX_SYNC_SIZE."
    )
    assert _on_disk(tmp_path) == []
