"""The sync engine through the core, against the fake Polar: every request counted, clocks injected."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest

from polar_mcp import present, sync
from polar_mcp.catalog import Catalog
from polar_mcp.config import load_settings
from polar_mcp.core import Core, download_request, open_core
from polar_mcp.download_failures import DiskFullError, NotEnoughSpaceError, SyncTooLargeError
from polar_mcp.download_record import RECORD_NAME, DownloadRecord
from polar_mcp.polar.errors import AuthenticationError
from polar_mcp.polar.models import Downloadable
from tests.helpers.clock import NOW, FakeTime
from tests.helpers.polar import (
    BASE_URL,
    BENEFIT_A,
    BENEFIT_B,
    BENEFIT_GRANTS_PATH,
    CUSTOMER_TOKEN,
    DOWNLOADABLES_PATH,
    FakePolar,
    downloadable,
    invalid_token,
    link_path,
    session,
)

pytestmark = pytest.mark.anyio


def body(number: int) -> bytes:
    return f"file {number} ".encode() * (100 + number)


def library(*benefits: tuple[str, range]) -> FakePolar:
    """Files numbered as given under each benefit, each served by its link with its own bytes."""
    fake = FakePolar()
    for benefit, numbers in benefits:
        for number in numbers:
            fake.serve_file(downloadable(number, benefit_id=benefit, content=body(number)), body(number))
    return fake


def link_hits(fake: FakePolar) -> dict[str, int]:
    hits: dict[str, int] = {}
    for request in fake.requests:
        if "/signed-" in request.url.path:
            hits[request.url.path] = hits.get(request.url.path, 0) + 1
    return hits


def on_disk(root: Path) -> list[str]:
    """Every file under `root`, relative, without the record."""
    return sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file() and path.name != RECORD_NAME
    )


@asynccontextmanager
async def core_for(fake: FakePolar, folder: Path, time: FakeTime | None = None, **env: str) -> AsyncIterator[Core]:
    settings = load_settings(
        {
            "POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN,
            "POLAR_API_URL": BASE_URL,
            "POLAR_MCP_DOWNLOAD_DIR": str(folder),
            **env,
        }
    )
    async with open_core(settings, http_transport=fake.transport()) as core:
        if time is None:
            yield core
        else:
            catalog = Catalog(core.catalog.client, clock=time.clock, wall_clock=time.wall_clock)
            yield dataclasses.replace(core, catalog=catalog)


async def test_a_fresh_sync_saves_every_file_in_a_folder_named_for_its_benefit(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 3)), (BENEFIT_B, range(3, 4)))

    async with core_for(fake, tmp_path) as core:
        result = await core.sync(core.configured)

    assert result == present.SyncResult(
        folder=str(tmp_path.resolve()),
        counts=present.SyncCounts(downloaded=3, present=0, failed=0, bytes=sum(len(body(n)) for n in (1, 2, 3))),
        files=[
            present.SyncedFile(
                path=f"{benefit}/file-{n}.pdf",
                name=f"file-{n}.pdf",
                benefit=benefit,
                size_bytes=len(body(n)),
                sha256=hashlib.sha256(body(n)).hexdigest(),
                verified=True,
                status="downloaded",
            )
            for n, benefit in ((1, "Rust Ebook Bundle"), (2, "Rust Ebook Bundle"), (3, "Async Course Videos"))
        ],
        gone=[],
    )
    assert on_disk(tmp_path) == [
        "Async Course Videos/file-3.pdf",
        "Rust Ebook Bundle/file-1.pdf",
        "Rust Ebook Bundle/file-2.pdf",
    ]
    assert (tmp_path / "Rust Ebook Bundle" / "file-2.pdf").read_bytes() == body(2)


async def test_a_resync_of_an_unchanged_library_is_one_scan_and_opens_no_link(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 4)), (BENEFIT_B, range(4, 6)))
    async with core_for(fake, tmp_path) as core:
        await core.sync(core.configured)
    fake.requests.clear()

    async with core_for(fake, tmp_path) as core:
        again = await core.sync(core.configured)

    assert again.counts == present.SyncCounts(downloaded=0, present=5, failed=0, bytes=0)
    # The names are fetched alongside the one page of the catalog.
    assert sorted(request.url.path for request in fake.requests) == sorted([DOWNLOADABLES_PATH, BENEFIT_GRANTS_PATH])
    assert link_hits(fake) == {}


async def test_an_unchanged_file_is_not_hashed_again(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 2)))
    async with core_for(fake, tmp_path) as core:
        await core.sync(core.configured)
        # Same size and time as recorded, other bytes: only a re-hash could tell, and none is done.
        saved = tmp_path / "Rust Ebook Bundle" / "file-1.pdf"
        info = saved.stat()
        saved.write_bytes(bytes(len(body(1))))
        os.utime(saved, ns=(info.st_atime_ns, info.st_mtime_ns))

        again = await core.sync(core.configured)

    assert [file.status for file in again.files] == ["present"]


async def test_each_link_is_opened_once_and_concurrency_is_bounded_by_the_setting(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 9)))
    served = 0
    for number in range(1, 9):
        route = fake.routes[link_path(number)]

        async def together(request: httpx2.Request, route: Any = route) -> httpx2.Response:
            nonlocal served
            # Answer only once as many transfers as may run are waiting: more would show in the peak.
            while fake.in_flight[""] < min(3, 8 - served):
                await anyio.lowlevel.checkpoint()
            served += 1
            return route(request)

        fake.routes[link_path(number)] = together

    async with core_for(fake, tmp_path, POLAR_MCP_DOWNLOAD_CONCURRENCY="3") as core:
        with anyio.fail_after(10):
            result = await core.sync(core.configured)

    assert result.counts.downloaded == 8
    assert link_hits(fake) == {link_path(n): 1 for n in range(1, 9)}
    # The file client sends no Authorization header: its requests are the ones under "".
    assert fake.peak_in_flight[""] == 3


async def test_one_slow_file_does_not_hold_the_others(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 6)))
    others_served = anyio.Event()
    served_count = 0
    slow_route = fake.routes[link_path(1)]

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await others_served.wait()
        return slow_route(request)  # type: ignore[return-value]

    for number in range(2, 6):
        route = fake.routes[link_path(number)]

        def counted(request: httpx2.Request, route: Any = route) -> httpx2.Response:
            nonlocal served_count
            served_count += 1
            if served_count == 4:
                others_served.set()
            return route(request)

        fake.routes[link_path(number)] = counted
    fake.routes[link_path(1)] = slow

    async with core_for(fake, tmp_path, POLAR_MCP_DOWNLOAD_CONCURRENCY="2") as core:
        with anyio.fail_after(10):
            result = await core.sync(core.configured)

    assert result.counts.downloaded == 5


async def test_progress_counts_the_bytes_of_the_whole_sync_and_only_goes_up(tmp_path: Path) -> None:
    fake = FakePolar()
    big = [bytes([n]) * 700_000 for n in range(3)]
    for number, content in enumerate(big, start=1):
        fake.serve_file(downloadable(number, content=content), content)
    seen: list[tuple[int, int]] = []

    async def report(done: int, total: int) -> None:
        seen.append((done, total))

    async with core_for(fake, tmp_path) as core:
        await core.sync(core.configured, progress=report)

    total = sum(len(content) for content in big)
    assert len(seen) > 3
    assert seen == sorted(seen)
    assert {t for _, t in seen} == {total}
    assert seen[-1] == (total, total)


async def test_a_long_sync_renews_stale_links_with_one_narrow_listing_per_benefit(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 4)), (BENEFIT_B, range(4, 6)))
    time = FakeTime()
    first = fake.routes[link_path(1)]

    def an_hour_later(request: httpx2.Request) -> httpx2.Response:
        # The first transfer takes 58 minutes: every other link has less than 5 minutes left, and a
        # listing from now on signs links that live an hour from now.
        time.advance(58 * 60)
        for item in fake.items:
            item["file"]["download"]["expires_at"] = (NOW + timedelta(minutes=58 + 60)).isoformat()
        return first(request)  # type: ignore[return-value]

    fake.routes[link_path(1)] = an_hour_later

    async with core_for(fake, tmp_path, time, POLAR_MCP_DOWNLOAD_CONCURRENCY="1") as core:
        result = await core.sync(core.configured)

    assert result.counts.downloaded == 5
    assert fake.listing_queries == [
        [("page", "1"), ("limit", "100")],
        [("benefit_id", BENEFIT_A), ("page", "1"), ("limit", "100")],
        [("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")],
    ]
    assert link_hits(fake) == {link_path(n): 1 for n in range(1, 6)}


async def test_links_stale_from_the_start_are_renewed_once_per_benefit_however_many_transfers_run(
    tmp_path: Path,
) -> None:
    fake = library((BENEFIT_A, range(1, 4)), (BENEFIT_B, range(4, 6)))
    for item in fake.items:
        item["file"]["download"]["expires_at"] = (NOW + timedelta(minutes=3)).isoformat()
    pages: list[int] = []

    def renew_after_the_scan(page: int) -> None:
        pages.append(page)
        if len(pages) > 1:
            for item in fake.items:
                item["file"]["download"]["expires_at"] = (NOW + timedelta(hours=1)).isoformat()

    fake.on_page = renew_after_the_scan

    async with core_for(fake, tmp_path, FakeTime(), POLAR_MCP_DOWNLOAD_CONCURRENCY="4") as core:
        result = await core.sync(core.configured)

    assert result.counts.downloaded == 5
    assert fake.listing_queries[0] == [("page", "1"), ("limit", "100")]
    assert sorted(fake.listing_queries[1:]) == [
        [("benefit_id", BENEFIT_A), ("page", "1"), ("limit", "100")],
        [("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")],
    ]
    assert link_hits(fake) == {link_path(n): 1 for n in range(1, 6)}


async def test_a_file_over_the_per_file_cap_fails_alone_and_is_never_requested(tmp_path: Path) -> None:
    fake = FakePolar()
    small, large = b"s" * 1000, b"L" * 5000
    fake.serve_file(downloadable(1, "small.pdf", content=small), small)
    fake.serve_file(downloadable(2, "large.pdf", content=large), large)

    async with core_for(fake, tmp_path, POLAR_MCP_MAX_DOWNLOAD_SIZE="4000") as core:
        result = await core.sync(core.configured)

    assert [(file.name, file.status, file.reason) for file in result.files] == [
        ("small.pdf", "downloaded", None),
        (
            "large.pdf",
            "failed",
            "large.pdf is 4.9 KB, over the download limit of 3.9 KB. "
            "Raise POLAR_MCP_MAX_DOWNLOAD_SIZE (--max-download-size) to allow it.",
        ),
    ]
    assert link_hits(fake) == {link_path(1): 1}


async def test_a_sync_over_the_total_cap_is_refused_before_any_link_is_opened(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 4)))

    async with core_for(fake, tmp_path, POLAR_MCP_MAX_SYNC_SIZE="1000") as core:
        with pytest.raises(SyncTooLargeError) as refused:
            await core.sync(core.configured)

    assert (refused.value.size, refused.value.limit, refused.value.files) == (
        sum(len(body(n)) for n in range(1, 4)),
        1000,
        3,
    )
    assert link_hits(fake) == {}
    assert on_disk(tmp_path) == []


def items_of(fake: FakePolar) -> list[Downloadable]:
    return [Downloadable.model_validate(item) for item in fake.items]


async def plan_of(fake: FakePolar, folder: Path) -> sync.Plan:
    items = items_of(fake)
    names = {BENEFIT_A: "Rust Ebook Bundle"}
    return await sync.plan(
        folder, items, items, names, request_for=download_request, scope=[BENEFIT_A], max_file_bytes=None
    )


async def run(fake: FakePolar, plan: sync.Plan, **options: Any) -> list[sync.Outcome]:
    async def refresh(item: Downloadable) -> Downloadable:
        raise AssertionError("no link is stale here")

    async with httpx2.AsyncClient(transport=fake.transport()) as http:
        return await sync.run(
            http,
            plan,
            request_for=download_request,
            fresh=lambda _: True,
            refresh=refresh,
            concurrency=options.pop("concurrency", 4),
            max_file_bytes=None,
            max_total_bytes=1 << 40,
            **options,
        )


async def test_too_little_free_space_for_the_whole_sync_is_refused_before_any_link_is_opened(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 4)))
    plan = await plan_of(fake, tmp_path)
    # Room for each file alone, not for all of them.
    free = 10_000_000 + len(body(3)) + 1

    with pytest.raises(NotEnoughSpaceError) as refused:
        await run(fake, plan, free_space=lambda _: free)

    assert (refused.value.needed, refused.value.free) == (10_000_000 + sum(len(body(n)) for n in range(1, 4)), free)
    assert link_hits(fake) == {}


def full_disk_after(saved: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up once `saved` files were written: the next fsync of a temp file fails with ENOSPC."""
    real = os.fsync
    synced: list[int] = []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            if len(synced) == saved:
                raise OSError(errno.ENOSPC, "No space left on device")
            synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


async def test_a_disk_that_fills_up_ends_the_sync_with_no_partial_file_and_the_record_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = library((BENEFIT_A, range(1, 5)))
    plan = await plan_of(fake, tmp_path)
    full_disk_after(2, monkeypatch)

    with pytest.raises(DiskFullError) as full:
        await run(fake, plan, concurrency=1, free_space=lambda _: 1 << 40)
    monkeypatch.undo()

    assert full.value.folder == tmp_path.resolve()
    assert on_disk(tmp_path) == ["Rust Ebook Bundle/file-1.pdf", "Rust Ebook Bundle/file-2.pdf"]
    record = DownloadRecord(tmp_path)
    try:
        assert sorted(entry.path for entry in record.snapshot().entries) == on_disk(tmp_path)
    finally:
        record.close()
    # The next sync resumes: what was saved is present, the rest is fetched.
    again = await run(fake, await plan_of(fake, tmp_path), free_space=lambda _: 1 << 40)
    assert [outcome.status for outcome in again] == ["present", "present", "downloaded", "downloaded"]


async def test_a_cancelled_sync_keeps_completed_files_and_leaves_no_partial_one(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 4)))
    holding = anyio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield body(3)[:100]
        holding.set()
        await anyio.sleep_forever()

    fake.routes[link_path(3)] = lambda _: httpx2.Response(200, content=held_body())
    plan = await plan_of(fake, tmp_path)

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run(fake, plan, concurrency=1, free_space=lambda _: 1 << 40))
        with anyio.fail_after(10):
            await holding.wait()
        group.cancel_scope.cancel()

    assert on_disk(tmp_path) == ["Rust Ebook Bundle/file-1.pdf", "Rust Ebook Bundle/file-2.pdf"]
    assert [p.name for p in tmp_path.rglob("*.part")] == []


async def test_a_dry_run_lists_what_would_be_fetched_and_opens_no_link(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 3)), (BENEFIT_B, range(3, 4)))
    async with core_for(fake, tmp_path) as core:
        await core.sync(core.configured, benefit_ids=[BENEFIT_B])
        fake.requests.clear()
        planned = await core.plan_sync(core.configured)

    assert planned == present.SyncPlan(
        folder=str(tmp_path.resolve()),
        counts=present.PlannedCounts(to_fetch=2, present=1, failed=0, bytes=len(body(1)) + len(body(2))),
        files=[
            present.PlannedFile(
                path=f"Rust Ebook Bundle/file-{n}.pdf",
                name=f"file-{n}.pdf",
                benefit="Rust Ebook Bundle",
                size_bytes=len(body(n)),
                status="to_fetch",
            )
            for n in (1, 2)
        ]
        + [
            present.PlannedFile(
                path="Async Course Videos/file-3.pdf",
                name="file-3.pdf",
                benefit="Async Course Videos",
                size_bytes=len(body(3)),
                status="present",
            )
        ],
        gone=[],
    )
    assert link_hits(fake) == {}
    assert sorted(os.listdir(tmp_path)) == [RECORD_NAME, "Async Course Videos"]


async def test_a_session_used_for_the_listing_is_the_callers(tmp_path: Path) -> None:
    fake = library((BENEFIT_A, range(1, 2)))
    async with core_for(fake, tmp_path) as core:
        await core.sync(session())

    sent = {("/signed-" in r.url.path, r.headers.get("Authorization")) for r in fake.requests}
    assert sent == {(False, f"Bearer {CUSTOMER_TOKEN}"), (True, None)}


@pytest.mark.parametrize("same_server", [False, True])
async def test_planning_during_the_scan_decides_what_a_plan_after_it_decides(tmp_path: Path, same_server: bool) -> None:
    # Three pages of files (the catalog is read 100 at a time), looked for as each page arrives; then
    # the folder is changed in every way a plan tells apart. The sync's plan (made with the looks taken
    # during the scan) must be the one the plain planner makes of the same listing afterwards.
    # With the same server, the files of its last scan are looked for before the new scan's pages come.
    fake = library((BENEFIT_A, range(1, 231)))
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(core_for(fake, tmp_path))
        await first.sync(first.configured)
        assert len(first.catalog.last_scan(first.configured)) == 230
        during, after = await _plans_after_changes(fake, tmp_path, first if same_server else None)

    assert during == after
    statuses = {file.name: file.status for file in during.files}
    expected = {3: "to_fetch", 4: "to_fetch", 5: "present", 7: "present", 231: "to_fetch"}
    assert {n: statuses[f"file-{n}.pdf"] for n in expected} == expected
    assert during.counts.present == 228
    assert link_hits(fake) == {}


async def _plans_after_changes(
    fake: FakePolar, tmp_path: Path, core: Core | None
) -> tuple[present.SyncPlan, present.SyncPlan]:
    folder = tmp_path / "Rust Ebook Bundle"
    (folder / "file-3.pdf").write_bytes(b"edited by the user")
    (folder / "file-4.pdf").unlink()
    os.utime(folder / "file-5.pdf", ns=(1, 1))  # touched: same bytes, another time
    fake.serve_file(downloadable(231, benefit_id=BENEFIT_B, content=body(231)), body(231))  # a new benefit
    fake.items[6]["file"]["version"] = "2"  # a new version upstream, with the same bytes: adopted, not fetched
    fake.requests.clear()

    async with AsyncExitStack() as stack:
        if core is None:
            core = await stack.enter_async_context(core_for(fake, tmp_path))
        during = await core.plan_sync(core.configured)
        listing = await core.catalog.list(core.configured, limit=None)
    names = {benefit: name.name for benefit, name in listing.names.items() if name.name}
    after = present.sync_plan(
        await sync.plan(
            tmp_path,
            listing.items,
            listing.items,
            names,
            request_for=download_request,
            scope={item.benefit_id for item in listing.items},
            max_file_bytes=None,
            dry_run=True,
        )
    )

    return during, after


@pytest.mark.parametrize("synced_before", [False, True])
async def test_a_scan_that_fails_midway_leaves_the_download_folder_as_it_was(
    tmp_path: Path, synced_before: bool
) -> None:
    # The folder is read, and page 1's files looked for, while page 2 is fetched; page 2 is refused.
    fake = library((BENEFIT_A, range(1, 151)))
    target = tmp_path / "library"
    if synced_before:
        async with core_for(fake, target) as core:
            await core.sync(core.configured)
    before = on_disk(target) if target.exists() else None
    record = (target / RECORD_NAME).read_bytes() if synced_before else None
    fake.script = lambda request: invalid_token() if request.url.params.get("page") == "2" else None
    fake.requests.clear()

    async with core_for(fake, target) as core:
        with pytest.raises(AuthenticationError):
            await core.sync(core.configured)

    assert any(("page", "2") in query for query in fake.listing_queries)
    assert link_hits(fake) == {}
    if synced_before:
        assert on_disk(target) == before
        assert (target / RECORD_NAME).read_bytes() == record
    else:
        assert not target.exists()


async def test_a_look_from_the_last_scan_does_not_vouch_for_a_link_polar_now_sends_unusable(tmp_path: Path) -> None:
    # File 1 is gone from disk; the same server's last scan had a good link for it, this one does not.
    fake = library((BENEFIT_A, range(1, 3)))
    async with core_for(fake, tmp_path) as core:
        await core.sync(core.configured)
        (tmp_path / "Rust Ebook Bundle" / "file-1.pdf").unlink()
        fake.items[0]["file"]["download"]["url"] = "ftp://files.example/file-1.pdf"
        planned = await core.plan_sync(core.configured)

    by_name = {file.name: file for file in planned.files}
    assert (by_name["file-1.pdf"].status, by_name["file-1.pdf"].reason) == (
        "failed",
        "Polar sent no usable link for this file.",
    )
    assert by_name["file-2.pdf"].status == "present"
