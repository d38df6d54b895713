"""`polar-mcp sync [DIR]`: the summary on stdout, one folder per benefit, re-runs fetch nothing, failures exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from tests.helpers.cli import Cli

pytestmark = pytest.mark.usefixtures("token")

RUST = [
    "Rust Ebook Bundle/errata.txt",
    "Rust Ebook Bundle/rust-in-practice.epub",
    "Rust Ebook Bundle/rust-in-practice.pdf",
]


def _on_disk(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != RECORD_NAME)


def test_sync_saves_into_dir_prints_the_summary_and_a_second_run_fetches_nothing(
    cli: Cli, store: Store, tmp_path: Path
) -> None:
    first = cli("sync", str(tmp_path), "--query", "rust")
    opened = sum(store.download_counts.values())
    again = cli("sync", str(tmp_path), "--query", "rust")

    root = tmp_path.resolve()
    assert (first.code, first.out, first.messages) == (
        0,
        f"Synced 3 files into {root}: 3 downloaded (4.4 MB), 0 already present.\n",
        "",
    )
    assert (again.code, again.out, again.messages) == (
        0,
        f"Synced 3 files into {root}: 0 downloaded (0.0 B), 3 already present.\n",
        "",
    )
    assert sum(store.download_counts.values()) == opened
    assert _on_disk(tmp_path) == RUST


def test_sync_defaults_to_the_download_folder(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_MCP_DOWNLOAD_DIR", str(tmp_path / "configured"))

    run = cli("sync", "--query", "errata")

    assert run.code == 0
    assert _on_disk(tmp_path / "configured") == ["Rust Ebook Bundle/errata.txt"]


def test_a_dry_run_lists_what_would_be_fetched_and_fetches_nothing(cli: Cli, store: Store, tmp_path: Path) -> None:
    cli("sync", str(tmp_path), "--query", "errata")
    opened = sum(store.download_counts.values())

    run = cli("sync", str(tmp_path), "--query", "rust", "--dry-run")

    assert (run.code, run.messages) == (0, "")
    assert run.out == (
        "Rust Ebook Bundle/rust-in-practice.pdf  3.2 MB\n"
        "Rust Ebook Bundle/rust-in-practice.epub  1.2 MB\n"
        f"Would fetch 2 file(s), 4.4 MB, into {tmp_path.resolve()}; 1 already present.\n"
    )
    assert sum(store.download_counts.values()) == opened
    assert _on_disk(tmp_path) == ["Rust Ebook Bundle/errata.txt"]


def test_a_dry_run_into_a_missing_folder_creates_nothing(cli: Cli, tmp_path: Path) -> None:
    run = cli("sync", str(tmp_path / "not-yet"), "--query", "errata", "--dry-run", "--json")

    assert run.code == 0
    assert json.loads(run.out)["counts"] == {"to_fetch": 1, "present": 0, "failed": 0, "bytes": 289}
    assert list(tmp_path.iterdir()) == []


def test_sync_json_is_the_tools_structured_result(cli: Cli, tmp_path: Path) -> None:
    run = cli("sync", str(tmp_path), "--query", "errata", "--json")

    assert (run.code, run.err) == (0, "")
    result = json.loads(run.out)
    assert result["counts"] == {"downloaded": 1, "present": 0, "failed": 0, "bytes": 289}
    assert [(f["path"], f["status"], f["verified"]) for f in result["files"]] == [
        ("Rust Ebook Bundle/errata.txt", "downloaded", True)
    ]


def test_a_failed_file_makes_the_exit_code_non_zero_and_is_named(cli: Cli, store: Store, tmp_path: Path) -> None:
    store.faults.update({"wrong_bytes_next": 1})

    run = cli("sync", str(tmp_path), "--query", "errata")

    assert run.code == 1
    assert run.out == (
        f"Synced 1 file into {tmp_path.resolve()}: 0 downloaded (0.0 B), 0 already present, 1 failed.\n"
        "Failed:\n"
        "- Rust Ebook Bundle/errata.txt: errata.txt arrived corrupted: its SHA-256 does not match Polar's "
        "checksum, so it was deleted. Get a fresh link and try again.\n"
    )
    assert _on_disk(tmp_path) == []


def test_a_sync_over_the_total_cap_is_refused_in_the_commands_terms(cli: Cli, tmp_path: Path) -> None:
    run = cli("sync", str(tmp_path), "--max-sync-size", "1MB")

    assert (run.code, run.out) == (1, "")
    assert run.messages == (
        "polar-mcp: This sync would fetch 11 file(s), 29.9 MB in all, over the sync limit of 1.0 MB, so nothing "
        "was fetched. Narrow it with --benefit-id or --query, or raise --max-sync-size.\n"
    )


def test_a_benefit_id_that_is_not_one_is_refused_before_anything_is_sent(cli: Cli, tmp_path: Path) -> None:
    run = cli("sync", str(tmp_path), "--benefit-id", "rust")

    assert run.code == 2
    assert "--benefit-id 'rust' is not a benefit id" in run.messages
    assert list(tmp_path.iterdir()) == []
