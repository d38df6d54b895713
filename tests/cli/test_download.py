"""`polar-mcp download ID|NAME`: the saved path on stdout, verified; re-runs skip; corrupt bytes leave nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from polar_mcp.double.store import Store
from polar_mcp.download_record import RECORD_NAME
from tests.helpers.cli import ERRATA_ID, Cli

pytestmark = pytest.mark.usefixtures("token")

ERRATA_SIZE = 289


def _saved_text(path: Path) -> str:
    return f"polar-mcp: Saved errata.txt (289.0 B) to {path} — SHA-256 verified.\n"


def _skipped_text(path: Path) -> str:
    return f"polar-mcp: Already present, identical (SHA-256 matches): {path} (289.0 B). Nothing was downloaded.\n"


def _listed(cli: Cli, name: str) -> dict[str, object]:
    return next(item for item in json.loads(cli("list", "--json").out)["items"] if item["name"] == name)


@pytest.mark.parametrize("wanted", [ERRATA_ID, "errata.txt"], ids=["by-id", "by-name"])
def test_download_prints_exactly_the_saved_path_and_says_it_was_verified(cli: Cli, tmp_path: Path, wanted: str) -> None:
    folder = tmp_path / "files"
    run = cli("download", wanted, "--dir", str(folder))
    saved = folder.resolve() / "errata.txt"
    assert (run.code, run.out, run.err) == (0, f"{saved}\n", _saved_text(saved))
    data = saved.read_bytes()
    assert len(data) == ERRATA_SIZE
    assert hashlib.sha256(data).hexdigest() == _listed(cli, "errata.txt")["sha256"]
    assert sorted(p.name for p in folder.iterdir()) == [RECORD_NAME, "errata.txt"]


def test_download_json_describes_the_saved_file(cli: Cli, tmp_path: Path) -> None:
    listed = _listed(cli, "errata.txt")
    run = cli("download", "errata.txt", "--dir", str(tmp_path), "--json")
    assert (run.code, run.err) == (0, "")
    saved = tmp_path.resolve() / "errata.txt"
    assert json.loads(run.out) == {
        "path": str(saved),
        "name": "errata.txt",
        "size_bytes": ERRATA_SIZE,
        "sha256": listed["sha256"],
        "verified": True,
        "skipped": False,
        **{key: listed[key] for key in ("benefit", "seller") if key in listed},
    }


def test_downloading_again_skips_an_identical_file_without_fetching_it(cli: Cli, store: Store, tmp_path: Path) -> None:
    first = cli("download", "errata.txt", "--dir", str(tmp_path))
    saved = tmp_path.resolve() / "errata.txt"
    downloads = sum(store.download_counts.values())
    again = cli("download", "errata.txt", "--dir", str(tmp_path))
    again_json = cli("download", "errata.txt", "--dir", str(tmp_path), "--json")
    assert first.code == 0
    assert (again.code, again.out, again.err) == (0, f"{saved}\n", _skipped_text(saved))
    assert json.loads(again_json.out)["skipped"] is True
    assert sum(store.download_counts.values()) == downloads
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME, "errata.txt"]


def test_a_different_local_file_is_kept_beside_the_download_unless_overwrite_is_given(cli: Cli, tmp_path: Path) -> None:
    mine = tmp_path / "errata.txt"
    mine.write_text("my own notes")
    kept = cli("download", "errata.txt", "--dir", str(tmp_path))
    beside = tmp_path.resolve() / "errata (2).txt"
    assert (kept.code, kept.out) == (0, f"{beside}\n")
    assert mine.read_text() == "my own notes"

    replaced = cli("download", "errata.txt", "--dir", str(tmp_path), "--overwrite")
    target = tmp_path.resolve() / "errata.txt"
    assert (replaced.code, replaced.out, replaced.err) == (0, f"{target}\n", _saved_text(target))
    assert mine.read_bytes() == beside.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME, "errata (2).txt", "errata.txt"]


def test_wrong_bytes_from_storage_exit_1_and_leave_no_file(cli: Cli, store: Store, tmp_path: Path) -> None:
    store.faults.update({"wrong_bytes_next": 3})
    run = cli("download", "rust-in-practice.pdf", "--dir", str(tmp_path))
    assert (run.code, run.out) == (1, "")
    assert run.err == (
        "polar-mcp: rust-in-practice.pdf arrived corrupted: its SHA-256 does not match Polar's checksum, "
        "so it was deleted. Get a fresh link and try again.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_wrong_bytes_with_json_print_nothing_on_stdout(cli: Cli, store: Store, tmp_path: Path) -> None:
    store.faults.update({"wrong_bytes_next": 3})
    run = cli("download", "errata.txt", "--dir", str(tmp_path), "--json")
    assert (run.code, run.out) == (1, "")
    assert list(tmp_path.iterdir()) == []


def test_without_dir_the_file_goes_to_polar_mcp_download_dir(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLAR_MCP_DOWNLOAD_DIR", str(tmp_path / "from-env"))
    run = cli("download", "errata.txt")
    assert run.out == f"{(tmp_path / 'from-env').resolve() / 'errata.txt'}\n"


def test_dir_wins_over_polar_mcp_download_dir(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_MCP_DOWNLOAD_DIR", str(tmp_path / "from-env"))
    run = cli("download", "errata.txt", "--dir", str(tmp_path / "from-flag"))
    assert run.out == f"{(tmp_path / 'from-flag').resolve() / 'errata.txt'}\n"
    assert not (tmp_path / "from-env").exists()


def test_with_no_folder_configured_the_file_goes_to_downloads_polar_in_the_home_folder(cli: Cli, home: Path) -> None:
    run = cli("download", "errata.txt")
    assert run.out == f"{(home / 'Downloads' / 'polar').resolve() / 'errata.txt'}\n"


def test_a_file_larger_than_the_size_limit_is_refused_before_anything_is_written(cli: Cli, tmp_path: Path) -> None:
    run = cli("download", "rust-in-practice.pdf", "--dir", str(tmp_path), "--max-download-size", "1MB")
    assert (run.code, run.out) == (1, "")
    assert run.err == (
        "polar-mcp: rust-in-practice.pdf is 3.2 MB, over the download limit of 1.0 MB. "
        "Raise POLAR_MCP_MAX_DOWNLOAD_SIZE (--max-download-size) to allow it.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_ambiguous_name_downloads_nothing_and_exits_4(cli: Cli, tmp_path: Path) -> None:
    run = cli("download", "rust", "--dir", str(tmp_path))
    assert (run.code, run.out) == (4, "")
    assert run.err.startswith("polar-mcp: 2 files match 'rust'; ")
    assert list(tmp_path.iterdir()) == []
