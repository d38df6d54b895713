"""The folder's record of what polar-mcp saved: a file without Polar's checksum is fetched once."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx2
import pytest

from polar_mcp.core import download_request
from polar_mcp.download import DownloadError, DownloadRequest, SavedFile
from polar_mcp.download_record import RECORD_NAME, DownloadRecord, SavedEntry
from polar_mcp.polar.models import Downloadable
from tests.helpers.download import (
    BODY,
    BODY_SHA,
    LINK,
    STORAGE,
    Polar,
    download_in_process,
    fetch,
    file_request,
    listing,
)
from tests.helpers.polar import downloadable

pytestmark = pytest.mark.anyio

UNCHECKED = file_request(sha256=None, file_id="f1", version="1", last_modified="2026-03-04T05:06:07+00:00")


def recorded(root: Path, file_id: str = "f1") -> list[SavedEntry]:
    record = DownloadRecord(root)
    try:
        return record.copies(file_id)
    finally:
        record.close()


def entry_for(root: Path, name: str, request: DownloadRequest = UNCHECKED, sha256: str = BODY_SHA) -> SavedEntry:
    info = (root / name).stat()
    return SavedEntry(
        path=name,
        file_id=request.file_id,
        version=request.version,
        last_modified=request.last_modified,
        storage_version=request.storage_version,
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        sha256=sha256,
    )


def skipped_at(path: Path) -> SavedFile:
    return SavedFile(
        path=path,
        name=path.name,
        size_bytes=len(BODY),
        sha256=BODY_SHA,
        verified=False,
        skipped=True,
        identical_by="record",
    )


async def test_a_file_without_a_checksum_downloaded_twice_is_kept_once_and_polar_is_not_asked_again(
    tmp_path: Path,
) -> None:
    polar = Polar()

    first = await fetch(polar, UNCHECKED, tmp_path)
    second = await fetch(polar, UNCHECKED, tmp_path)

    assert (first.skipped, first.verified) == (False, False)
    assert second == skipped_at(tmp_path / "report.pdf")
    assert len(polar.requests) == 2, "only the first download opened the link and storage"
    assert listing(tmp_path) == ["report.pdf"]
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf")]


async def test_the_record_keeps_what_identifies_the_version_and_the_bytes_written(tmp_path: Path) -> None:
    request = file_request(
        sha256=None, file_id="f1", version="2.1", last_modified="2026-03-04T05:06:07+00:00", storage_version="v9"
    )

    await fetch(Polar(), request, tmp_path)

    info = (tmp_path / "report.pdf").stat()
    assert recorded(tmp_path) == [
        SavedEntry(
            path="report.pdf",
            file_id="f1",
            version="2.1",
            last_modified="2026-03-04T05:06:07+00:00",
            storage_version="v9",
            size=len(BODY),
            mtime_ns=info.st_mtime_ns,
            sha256=BODY_SHA,
        )
    ]


async def test_a_listing_item_gives_the_engine_what_the_record_knows_a_file_by() -> None:
    item = Downloadable.model_validate(
        downloadable(7, "guide.pdf", size=42, version="2.1", storage_version="v9", checksum_sha256_hex="AB" * 32)
    )

    assert download_request(item) == DownloadRequest(
        url=item.file.download.url,
        headers={},
        name="guide.pdf",
        size_bytes=42,
        sha256="ab" * 32,
        file_id=item.file.id,
        version="2.1",
        last_modified="2026-03-04T05:06:07+00:00",
        storage_version="v9",
    )


@pytest.mark.parametrize("edit", [b"my notes", BODY[:-3] + b"???"], ids=["other-size", "same-size"])
async def test_a_file_the_user_changed_since_is_kept_and_the_download_takes_the_next_name(
    tmp_path: Path, edit: bytes
) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    (tmp_path / "report.pdf").write_bytes(edit)

    again = await fetch(polar, UNCHECKED, tmp_path)

    assert (again.name, again.skipped) == ("report (2).pdf", False)
    assert (tmp_path / "report.pdf").read_bytes() == edit
    assert (tmp_path / "report (2).pdf").read_bytes() == BODY
    assert polar.hits(LINK) == 2


async def test_a_file_only_touched_since_is_hashed_again_found_unchanged_and_its_new_time_recorded(
    tmp_path: Path,
) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    os.utime(tmp_path / "report.pdf", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))

    again = await fetch(polar, UNCHECKED, tmp_path)

    assert again == skipped_at(tmp_path / "report.pdf")
    assert polar.hits(LINK) == 1
    assert [entry.mtime_ns for entry in recorded(tmp_path)] == [1_700_000_000_000_000_000]


NEWER_VERSIONS = pytest.mark.parametrize(
    "changed",
    [{"version": "2"}, {"last_modified": "2026-05-06T07:08:09+00:00"}, {"storage_version": "v2"}],
    ids=["version", "last-modified", "storage-version"],
)


@NEWER_VERSIONS
async def test_a_new_version_on_polar_replaces_the_untouched_copy_polar_mcp_saved(
    tmp_path: Path, changed: dict[str, str]
) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    newer = dataclasses.replace(UNCHECKED, **changed)
    new_body = BODY[::-1]
    polar.body = new_body

    again = await fetch(polar, newer, tmp_path)
    once_more = await fetch(polar, newer, tmp_path)

    assert (again.name, again.skipped) == ("report.pdf", False)
    assert (tmp_path / "report.pdf").read_bytes() == new_body
    assert once_more.skipped
    assert polar.hits(LINK) == 2
    assert listing(tmp_path) == ["report.pdf"]
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf", newer, hashlib.sha256(new_body).hexdigest())]


async def test_a_new_version_with_a_new_checksum_replaces_the_untouched_copy_only_touched_since(tmp_path: Path) -> None:
    polar = Polar()
    await fetch(polar, file_request(file_id="f1"), tmp_path)
    os.utime(tmp_path / "report.pdf", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    new_body = BODY[::-1]
    polar.body = new_body

    again = await fetch(polar, file_request(body=new_body, file_id="f1"), tmp_path)

    assert (again.name, again.skipped, again.verified) == ("report.pdf", False, True)
    assert (tmp_path / "report.pdf").read_bytes() == new_body
    assert listing(tmp_path) == ["report.pdf"]


@NEWER_VERSIONS
async def test_a_new_version_on_polar_is_saved_beside_a_copy_the_user_edited(
    tmp_path: Path, changed: dict[str, str]
) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    (tmp_path / "report.pdf").write_bytes(b"my annotated copy")
    newer = dataclasses.replace(UNCHECKED, **changed)

    again = await fetch(polar, newer, tmp_path)
    once_more = await fetch(polar, newer, tmp_path)

    assert (again.name, again.skipped) == ("report (2).pdf", False)
    assert once_more == skipped_at(tmp_path / "report (2).pdf")
    assert (tmp_path / "report.pdf").read_bytes() == b"my annotated copy"
    assert polar.hits(LINK) == 2
    assert listing(tmp_path) == ["report (2).pdf", "report.pdf"]


async def test_an_untouched_copy_of_another_file_of_the_same_name_is_never_replaced(tmp_path: Path) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    other = dataclasses.replace(UNCHECKED, file_id="f2", version="2")

    saved = await fetch(polar, other, tmp_path)

    assert (saved.name, saved.skipped) == ("report (2).pdf", False)
    assert listing(tmp_path) == ["report (2).pdf", "report.pdf"]


async def test_a_copy_saved_under_the_next_name_is_found_again_rather_than_saved_a_third_time(
    tmp_path: Path,
) -> None:
    (tmp_path / "report.pdf").write_bytes(b"someone else's report")
    polar = Polar()

    first = await fetch(polar, UNCHECKED, tmp_path)
    second = await fetch(polar, UNCHECKED, tmp_path)

    assert first.name == "report (2).pdf"
    assert second == skipped_at(tmp_path / "report (2).pdf")
    assert listing(tmp_path) == ["report (2).pdf", "report.pdf"]


async def test_overwrite_replaces_the_file_under_its_name_even_with_a_copy_saved_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"someone else's report")
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)

    replaced = await fetch(polar, UNCHECKED, tmp_path, overwrite=True)
    again = await fetch(polar, UNCHECKED, tmp_path, overwrite=True)

    assert (replaced.name, replaced.skipped) == ("report.pdf", False)
    assert again == skipped_at(tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes() == BODY
    assert sorted(entry.path for entry in recorded(tmp_path)) == ["report (2).pdf", "report.pdf"]


async def test_a_file_there_before_the_record_is_adopted_when_polars_checksum_matches_it(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(BODY)
    polar = Polar()
    verified = file_request(file_id="f1", version="1", last_modified="2026-03-04T05:06:07+00:00")

    adopted = await fetch(polar, verified, tmp_path)
    # Polar may drop the checksum later (a re-upload without one): the record still vouches for the file.
    later = await fetch(polar, UNCHECKED, tmp_path)

    assert (adopted.skipped, adopted.identical_by, adopted.verified) == (True, "checksum", True)
    assert later == skipped_at(tmp_path / "report.pdf")
    assert polar.requests == []
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf")]


async def test_a_file_there_before_the_record_is_not_adopted_without_a_checksum(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(BODY)

    saved = await fetch(Polar(), UNCHECKED, tmp_path)

    assert (saved.name, saved.skipped) == ("report (2).pdf", False)
    assert [entry.path for entry in recorded(tmp_path)] == ["report (2).pdf"]


async def test_a_recorded_file_deleted_since_is_fetched_again_under_its_name(tmp_path: Path) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    (tmp_path / "report.pdf").unlink()

    again = await fetch(polar, UNCHECKED, tmp_path)

    assert (again.name, again.skipped) == ("report.pdf", False)
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf")]


async def test_a_recorded_path_leading_outside_the_folder_is_never_trusted(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    root.mkdir()
    (tmp_path / "outside.pdf").write_bytes(BODY)
    record = DownloadRecord(root)
    record.put(dataclasses.replace(entry_for(tmp_path, "outside.pdf"), path="../outside.pdf"))
    record.close()
    polar = Polar()

    saved = await fetch(polar, UNCHECKED, root)

    assert (saved.path, saved.skipped) == (root / "report.pdf", False)
    assert polar.hits(LINK) == 1


def test_paths_in_sub_folders_are_recorded_as_given_relative_to_the_folder(tmp_path: Path) -> None:
    entry = SavedEntry(
        path="Rust Ebook Bundle/report.pdf",
        file_id="f1",
        version=None,
        last_modified=None,
        storage_version=None,
        size=3,
        mtime_ns=1,
        sha256="ab" * 32,
    )
    record = DownloadRecord(tmp_path)
    record.put(entry)
    record.close()

    reopened = DownloadRecord(tmp_path)
    try:
        assert (reopened.copies("f1"), reopened.at("Rust Ebook Bundle/report.pdf")) == ([entry], entry)
    finally:
        reopened.close()


async def test_a_failed_download_into_an_empty_folder_leaves_no_record(tmp_path: Path) -> None:
    with pytest.raises(DownloadError):
        await fetch(Polar(storage=[lambda _: httpx2.Response(403)]), UNCHECKED, tmp_path)

    assert os.listdir(tmp_path) == []


# --- the record itself is out of reach ------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    "hostile", [RECORD_NAME, RECORD_NAME.upper(), f"{RECORD_NAME}-journal", "../.polar-mcp.sqlite3"]
)
async def test_a_polar_file_named_like_the_record_never_lands_on_it(
    tmp_path: Path, hostile: str, overwrite: bool
) -> None:
    await fetch(Polar(), UNCHECKED, tmp_path)
    body = b"not a database"

    saved = await fetch(Polar(body=body), file_request(hostile, body, file_id="f2"), tmp_path, overwrite=overwrite)

    assert not saved.name.startswith(".")
    assert saved.path.read_bytes() == body
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf")]


# --- several downloads at once --------------------------------------------------------------------


async def test_two_tasks_downloading_the_same_file_at_once_leave_one_copy(tmp_path: Path) -> None:
    both_at_storage = anyio.Event()
    arrived = 0

    async def held_body() -> AsyncIterator[bytes]:
        await both_at_storage.wait()
        yield BODY

    def storage(_: httpx2.Request) -> httpx2.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_at_storage.set()
        return httpx2.Response(200, content=held_body())

    polar = Polar(storage=[storage, storage])
    results: list[SavedFile] = []

    async def download() -> None:
        results.append(await fetch(polar, UNCHECKED, tmp_path))

    with anyio.fail_after(10):  # each body waits for the other download: one kept away fails here
        async with anyio.create_task_group() as group:
            group.start_soon(download)
            group.start_soon(download)

    assert [(saved.path, saved.skipped) for saved in results] == [(tmp_path / "report.pdf", False)] * 2
    assert listing(tmp_path) == ["report.pdf"]
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf")]
    assert polar.hits(STORAGE) == 2


def test_two_processes_downloading_the_same_file_at_once_leave_one_copy(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=download_in_process, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)

    assert [worker.exitcode for worker in workers] == [0, 0]
    assert outcomes == [(str(tmp_path / "report.pdf"), False)] * 2
    assert listing(tmp_path) == ["report.pdf"]
    assert (tmp_path / "report.pdf").read_bytes() == BODY
    assert recorded(tmp_path) == [entry_for(tmp_path, "report.pdf", file_request(sha256=None, file_id="f1"))]


# --- damage and crashes -----------------------------------------------------------------------------


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a database at all" * 100)


def foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE files (name TEXT)")
        other.execute("PRAGMA user_version = 7")
    other.close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (garbage, "file is not a database"),
        (truncated, "database disk image is malformed"),
        (foreign, "not a record of polar-mcp"),
    ],
    ids=["garbage", "truncated", "foreign"],
)
async def test_an_unreadable_record_is_set_aside_with_a_warning_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None], reason: str
) -> None:
    polar = Polar()
    # Enough rows that cutting the file in half cuts through them.
    for number in range(60):
        await fetch(Polar(body=b"x"), file_request(f"extra-{number}.bin", b"x", file_id=f"x{number}"), tmp_path)
    await fetch(polar, UNCHECKED, tmp_path)
    damage(tmp_path / RECORD_NAME)
    damaged = (tmp_path / RECORD_NAME).read_bytes()

    with caplog.at_level(logging.WARNING, logger="polar_mcp.download_record"):
        again = await fetch(polar, UNCHECKED, tmp_path)
        once_more = await fetch(polar, UNCHECKED, tmp_path)

    aside = [name for name in os.listdir(tmp_path) if name.startswith(f"{RECORD_NAME}.unreadable-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == damaged
    assert (again.name, again.skipped) == ("report (2).pdf", False), "without the record the file is unproven"
    assert once_more == skipped_at(tmp_path / "report (2).pdf")
    assert [record.getMessage() for record in caplog.records] == [
        f"the record of saved files in {tmp_path} was unreadable ({reason}): kept as {aside[0]}, starting a new "
        "one; files without a Polar checksum may be downloaded once more"
    ]


_CRASH_MID_WRITE = """
import os, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA cache_size = 1")
connection.execute("BEGIN IMMEDIATE")
connection.execute("DELETE FROM files")
for number in range(3000):
    connection.execute(
        "INSERT INTO files VALUES (?, 'other', NULL, NULL, NULL, 1, 1, ?)", (f"junk-{number}-" + "x" * 200, "0" * 64)
    )
os._exit(9)
"""


async def test_a_process_killed_while_writing_the_record_leaves_it_as_it_was(tmp_path: Path) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path)
    before = recorded(tmp_path)

    crashed = subprocess.run([sys.executable, "-c", _CRASH_MID_WRITE, str(tmp_path / RECORD_NAME)], check=False)

    assert crashed.returncode == 9
    assert (tmp_path / f"{RECORD_NAME}-journal").exists(), "the crash left a half-done write behind"
    again = await fetch(polar, UNCHECKED, tmp_path)
    assert again == skipped_at(tmp_path / "report.pdf")
    assert recorded(tmp_path) == before
    assert recorded(tmp_path, "other") == []
    assert polar.hits(LINK) == 1


def test_the_record_time_format_is_stable_across_listings() -> None:
    stamp = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    item = Downloadable.model_validate(downloadable(1, last_modified_at="2026-03-04T05:06:07Z"))
    again = Downloadable.model_validate(downloadable(1, last_modified_at="2026-03-04T05:06:07.000Z"))

    assert download_request(item).last_modified == download_request(again).last_modified == stamp.isoformat()


# --- sub-folders and the schema's migration ---------------------------------------------------------


async def test_a_file_saved_in_a_sub_folder_is_recorded_relative_to_the_folder_where_the_record_stays(
    tmp_path: Path,
) -> None:
    polar = Polar()

    saved = await fetch(polar, UNCHECKED, tmp_path, folder="Rust Ebook Bundle")
    again = await fetch(polar, UNCHECKED, tmp_path, folder="Rust Ebook Bundle")

    assert saved.path == tmp_path / "Rust Ebook Bundle" / "report.pdf"
    assert again == skipped_at(saved.path)
    assert sorted(os.listdir(tmp_path)) == [RECORD_NAME, "Rust Ebook Bundle"]
    assert [entry.path for entry in recorded(tmp_path)] == ["Rust Ebook Bundle/report.pdf"]


async def test_a_copy_in_another_folder_does_not_count_as_present_in_this_one(tmp_path: Path) -> None:
    polar = Polar()
    await fetch(polar, UNCHECKED, tmp_path, folder="Old Name")

    saved = await fetch(polar, UNCHECKED, tmp_path)

    assert (saved.path, saved.skipped) == (tmp_path / "report.pdf", False)


async def test_a_link_in_place_of_the_sub_folder_is_never_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "downloads", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "Bundle").symlink_to(outside, target_is_directory=True)
    polar = Polar()

    with pytest.raises(DownloadError) as refused:
        await fetch(polar, UNCHECKED, root, folder="Bundle")

    assert refused.value.message == (
        f"{root / 'Bundle'} is a link, not a folder, so nothing was saved through it. Move it away and try again."
    )
    assert list(outside.iterdir()) == []
    assert polar.requests == []


async def test_a_sub_folder_that_is_not_one_safe_name_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one safe folder name"):
        await fetch(Polar(), UNCHECKED, tmp_path, folder="../outside")


def test_a_record_of_the_first_schema_gains_the_folders_table_and_keeps_its_files(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / RECORD_NAME) as old:
        old.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, file_id TEXT NOT NULL, version TEXT, last_modified TEXT, "
            "storage_version TEXT, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
        )
        old.execute("INSERT INTO files VALUES ('report.pdf', 'f1', '1', NULL, NULL, 3, 1, ?)", ("ab" * 32,))
        old.execute("PRAGMA user_version = 1")
    old.close()

    record = DownloadRecord(tmp_path)
    try:
        before = record.copies("f1")
        with record.writing():
            record.choose_folder("benefit-1", "Rust Ebook Bundle")
        folders = record.folders()
    finally:
        record.close()

    assert [entry.path for entry in before] == ["report.pdf"]
    assert folders == {"benefit-1": "Rust Ebook Bundle"}
    with sqlite3.connect(tmp_path / RECORD_NAME) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (2,)
    check.close()
