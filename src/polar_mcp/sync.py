"""Syncing a library: every listed file into its benefit's folder inside the download folder.

Knows the download engine and the record, nothing of MCP, the CLI or how a listing is fetched: the
caller hands over the listed items, their benefits' names, and how to refresh a link. A sync is first
planned without any request: which sub-folder each benefit gets (kept in the record by benefit id,
so a renamed benefit keeps its folder and two benefits of one name never share one), which files are
already there and unchanged (the record vouches for them: no re-hash while their size and
modification time are as recorded), and which recorded files are gone upstream (left on disk,
reported). Then the sync's total size and free space are checked, and the remaining files are
fetched concurrently, each through `download.download_file`, so every rule of a single download
(confined names, temp files, checksums, replacing only polar-mcp's own older copy) holds for each.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Generator, Mapping, Sequence
from contextlib import asynccontextmanager, closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import httpx2

from polar_mcp.download import (
    FREE_SPACE_MARGIN,
    DownloadRequest,
    FreeSpace,
    Progress,
    SavedFile,
    Sleep,
    check_size,
    download_file,
    find_saved,
    fold_name,
    free_bytes,
    prepare_directory,
    safe_file_name,
)
from polar_mcp.download_failures import DiskFullError, DownloadError, NotEnoughSpaceError, SyncTooLargeError
from polar_mcp.download_record import DownloadRecord, RecordError, SavedEntry, Snapshot
from polar_mcp.failure import Failure
from polar_mcp.polar.models import Downloadable
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)

Status = Literal["downloaded", "present", "failed"]
_PROGRESS_STEP = 256 * 1024


@dataclass(frozen=True)
class Planned:
    """One file of a sync: where it goes, and whether it is already there or cannot be fetched."""

    item: Downloadable
    benefit: str
    """What the benefit is called: its name, else its id."""
    folder: str
    """Its benefit's sub-folder of the download folder."""
    name: str
    """Its safe file name."""
    present: SavedFile | None = None
    failure: str | None = None
    """Why it cannot be fetched at all (over the per-file cap, no usable link)."""

    @property
    def size_bytes(self) -> int:
        return self.item.file.size


@dataclass(frozen=True)
class Plan:
    """What a sync will do, decided without a single request."""

    root: Path
    files: list[Planned]
    gone: list[str]
    """Recorded paths (relative to `root`) in the synced benefits' folders whose file Polar no longer lists."""

    @property
    def to_fetch(self) -> list[Planned]:
        return [planned for planned in self.files if planned.present is None and planned.failure is None]

    @property
    def bytes_to_fetch(self) -> int:
        return sum(planned.size_bytes for planned in self.to_fetch)


@dataclass(frozen=True)
class Outcome:
    """What became of one planned file."""

    planned: Planned
    status: Status
    saved: SavedFile | None = None
    reason: str | None = None


RequestFor = Callable[[Downloadable], DownloadRequest]


@dataclass(frozen=True)
class _FolderRead:
    """What a sync reads of the download folder before it knows what Polar lists."""

    root: Path
    record: DownloadRecord
    snapshot: Snapshot
    folders: Mapping[str, str]
    """The sub-folder the record keeps for a benefit, for each that exists as a real folder."""
    looks: Mapping[str, os.stat_result | None]
    """`os.lstat` of each recorded path (as a string under `root`); None where nothing is there."""

    def lstat(self, path: str) -> os.stat_result:
        """`os.lstat`, answered from the looks taken ahead where there is one."""
        if path not in self.looks:
            return os.lstat(path)
        info = self.looks[path]
        if info is None:
            raise FileNotFoundError(path)
        return info


def _read_ahead(directory: Path) -> _FolderRead | None:
    """Read the folder's record and look at its files, creating nothing. None when there is nothing to
    read yet or it cannot be read: the plan then reads the folder itself and says what is wrong."""
    try:
        root = directory.expanduser().resolve()
        if not _is_folder(root):
            return None
    except (OSError, RuntimeError):
        return None
    record = DownloadRecord(root)
    try:
        snapshot = record.snapshot()
        folders = {b: folder for b, folder in record.folders().items() if _is_folder(root / folder)}
        looks: dict[str, os.stat_result | None] = {}
        for entry in snapshot.entries:
            path = os.path.join(root, entry.path)
            try:
                looks[path] = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                looks[path] = None
    except (OSError, RecordError):
        record.close()
        return None
    except BaseException:
        record.close()
        raise
    return _FolderRead(root, record, snapshot, folders, looks)


@dataclass(frozen=True)
class _Looked:
    """What the plan found for one listed item in its benefit's folder (see `_examine`)."""

    folder: str
    name: str
    present: SavedFile | None
    failure: str | None
    """Why the file cannot be fetched, its link aside (see `_failure`)."""


_LookKey = tuple[object, ...]


def _look_key(item: Downloadable) -> _LookKey:
    """Everything a look depends on but the link itself: the same file, version and benefit."""
    file = item.file
    return (
        item.id,
        item.benefit_id,
        file.id,
        file.name,
        file.size,
        file.sha256,
        file.version,
        file.last_modified_at,
        file.storage_version,
    )


def _failure(item: Downloadable, looked: _Looked) -> str | None:
    """The look's failure, or the one of a link Polar sent unusable (a look may be for another listing)."""
    if looked.failure is None and looked.present is None and not item.file.download.url:
        return "Polar sent no usable link for this file."
    return looked.failure


class Planner:
    """Plans a sync while the catalog is scanned, so that a re-sync of an unchanged library costs about
    the scan: the folder's record is read, and each listed file looked for in its benefit's folder, as
    the pages arrive (`feed`); `plan` then decides only what is left. Open one with `Planner.open`.

    Looking ahead is only a head start: anything it could not do (a benefit without a folder yet, a
    folder that cannot be read) the plan does itself, as `plan()` would.
    """

    def __init__(self, directory: Path, request_for: RequestFor, max_file_bytes: int | None) -> None:
        self._directory = directory
        self._request_for = request_for
        self._max_file_bytes = max_file_bytes
        self._read: _FolderRead | None = None
        self._usable = True
        # By what a look depends on, not by item object: a look taken for the last scan's item serves
        # this scan's item for the same file (only its link differs).
        self._looked: dict[_LookKey, _Looked] = {}
        self._pages, self._arrived = anyio.create_memory_object_stream[Sequence[Downloadable]](math.inf)
        self._done = anyio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        directory: Path,
        *,
        request_for: RequestFor,
        max_file_bytes: int | None,
        expected: Sequence[Downloadable] = (),
    ) -> AsyncGenerator[Planner]:
        """A planner for `directory`, looking ahead until its `plan` is called or the block ends.

        `expected` are the items the scan will most likely list (the last scan's, remembered): they are
        looked at first, while page 1 is on its way.
        """
        planner = cls(directory, request_for, max_file_bytes)
        if expected:
            planner.feed(expected)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(planner._look_ahead)
                try:
                    yield planner
                finally:
                    planner._pages.close()
        except ExceptionGroup as failures:
            raise _first(failures) from None
        finally:
            if planner._read is not None:
                planner._read.record.close()

    def feed(self, items: Sequence[Downloadable]) -> None:
        """A page of the listing has arrived: look for its files while the next pages are fetched."""
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._pages.send_nowait(items)

    async def plan(
        self,
        chosen: Sequence[Downloadable],
        listed: Sequence[Downloadable],
        names: Mapping[str, str],
        *,
        scope: Collection[str],
        dry_run: bool = False,
    ) -> Plan:
        """`plan()` of the listing the pages were fed from, with the looks taken meanwhile."""
        self._pages.close()
        await self._done.wait()
        read = self._read if self._usable else None
        looked = self._looked if read is not None else {}
        return await anyio.to_thread.run_sync(
            _plan,
            self._directory,
            chosen,
            listed,
            names,
            self._request_for,
            scope,
            self._max_file_bytes,
            dry_run,
            read,
            looked,
        )

    async def _look_ahead(self) -> None:
        try:
            self._read = await anyio.to_thread.run_sync(_read_ahead, self._directory)
            async with self._arrived:
                async for items in self._arrived:
                    # Pages that arrived meanwhile are looked at in the same trip to a worker thread.
                    batch = [*items, *self._waiting_pages()]
                    if self._read is not None and self._usable:
                        await anyio.to_thread.run_sync(self._look_at, self._read, batch)
        finally:
            self._done.set()

    def _waiting_pages(self) -> Generator[Downloadable]:
        while True:
            try:
                yield from self._arrived.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return

    def _look_at(self, read: _FolderRead, items: Sequence[Downloadable]) -> None:
        try:
            for item in items:
                folder = read.folders.get(item.benefit_id)
                key = _look_key(item)
                if folder is not None and key not in self._looked:
                    found = _examine(
                        read.record,
                        read.snapshot,
                        read.root,
                        folder,
                        True,
                        item,
                        self._request_for,
                        self._max_file_bytes,
                        read.lstat,
                    )
                    self._looked[key] = found
        except (OSError, RecordError):
            # The plan looks again, with a record of its own, and reports it in its own words.
            self._usable = False


async def plan(
    directory: Path,
    chosen: Sequence[Downloadable],
    listed: Sequence[Downloadable],
    names: Mapping[str, str],
    *,
    request_for: RequestFor,
    scope: Collection[str],
    max_file_bytes: int | None,
    dry_run: bool = False,
) -> Plan:
    """Plan bringing `chosen` into `directory`.

    `listed` is every item Polar listed in the sync's scope (a search's matches are only part of it),
    `names` the benefit names known, `scope` the benefits synced, whose folders are checked for gone
    files. A dry run creates no folder and keeps no folder choice.
    """
    nothing_looked: dict[_LookKey, _Looked] = {}
    return await anyio.to_thread.run_sync(
        _plan, directory, chosen, listed, names, request_for, scope, max_file_bytes, dry_run, None, nothing_looked
    )


def _plan(
    directory: Path,
    chosen: Sequence[Downloadable],
    listed: Sequence[Downloadable],
    names: Mapping[str, str],
    request_for: RequestFor,
    scope: Collection[str],
    max_file_bytes: int | None,
    dry_run: bool,
    read: _FolderRead | None,
    looked: Mapping[_LookKey, _Looked],
) -> Plan:
    root = directory.expanduser().resolve() if dry_run else prepare_directory(directory)
    if read is not None and read.root != root:
        read, looked = None, {}
    with _folder_errors(root), closing(read.record if read else DownloadRecord(root)) as record:
        benefits = list(dict.fromkeys(item.benefit_id for item in chosen))
        folders = _folders(record, root, benefits, names, keep=not dry_run)
        snapshot = read.snapshot if read else record.snapshot()
        lstat = read.lstat if read else os.lstat
        # Once per benefit, not per file: a re-sync of a big library is mostly this loop.
        shown = {b: clean_text(names.get(b) or b, 60) for b in benefits}
        existing = {b: _is_folder(root / folders[b]) for b in benefits}
        files: list[Planned] = []
        for item in chosen:
            folder, benefit = folders[item.benefit_id], shown[item.benefit_id]
            found = looked.get(_look_key(item))
            if found is None or found.folder != folder or not existing[item.benefit_id]:
                found = _examine(
                    record, snapshot, root, folder, existing[item.benefit_id], item, request_for, max_file_bytes, lstat
                )
            failure = _failure(item, found)
            files.append(Planned(item, benefit, folder, found.name, present=found.present, failure=failure))
        gone = _gone(root, snapshot, {b: folders[b] for b in scope if b in folders}, listed)
    return Plan(root, files, gone)


def _examine(
    record: DownloadRecord,
    snapshot: Snapshot,
    root: Path,
    folder: str,
    folder_exists: bool,
    item: Downloadable,
    request_for: RequestFor,
    max_file_bytes: int | None,
    lstat: Callable[[str], os.stat_result],
) -> _Looked:
    """One listed item against `root/folder`: its safe name, and whether it is already there or cannot be fetched."""
    request = request_for(item)
    name = safe_file_name(request.name)
    try:
        check_size(name, request.size_bytes, max_file_bytes)
    except DownloadError as error:
        return _Looked(folder, name, None, error.message)
    found = find_saved(record, snapshot, root, folder, name, request, lstat=lstat) if folder_exists else None
    return _Looked(folder, name, found.identical if found is not None else None, None)


def _folders(
    record: DownloadRecord, root: Path, benefits: Sequence[str], names: Mapping[str, str], *, keep: bool
) -> dict[str, str]:
    """The sub-folder of every benefit the record knows, and of each of `benefits`.

    A named benefit's first folder is kept in the record, whatever it is called later; a name taken
    by another benefit's folder (or by a file, or a link) gets the next free `Name (2)`. A benefit
    without a name goes in a folder named by its id, not kept: once Polar names it, it gets its own.
    """
    known = record.folders()
    named = [b for b in benefits if b not in known and names.get(b)]
    if named and keep:
        with record.writing():
            known = record.folders()
            for benefit in named:
                if benefit not in known:
                    known[benefit] = _free_folder(root, safe_file_name(names[benefit]), known.values())
                    record.choose_folder(benefit, known[benefit])
    elif named:
        for benefit in named:
            known[benefit] = _free_folder(root, safe_file_name(names[benefit]), known.values())
    for benefit in benefits:
        known.setdefault(benefit, safe_file_name(benefit))
    return known


def _free_folder(root: Path, base: str, taken: Collection[str]) -> str:
    folded = {fold_name(folder) for folder in taken}
    candidate, number = base, 1
    while fold_name(candidate) in folded or not _free_for_a_folder(root / candidate):
        number += 1
        candidate = safe_file_name(f"{base} ({number})")
    return candidate


def _free_for_a_folder(path: Path) -> bool:
    """Nothing there yet, or a real folder (a user's own is shared, never a file or a link)."""
    return _is_folder(path) or not os.path.lexists(path)


def _is_folder(path: Path) -> bool:
    """A real folder: not a file, not a link (even to a folder)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _gone(root: Path, snapshot: Snapshot, folders: Mapping[str, str], listed: Sequence[Downloadable]) -> list[str]:
    listed_ids: dict[str, set[str]] = {}
    for item in listed:
        listed_ids.setdefault(item.benefit_id, set()).add(item.file.id)
    by_folder: dict[str, list[SavedEntry]] = {}
    for entry in snapshot.entries:
        by_folder.setdefault(entry.path.rpartition("/")[0], []).append(entry)
    gone = {
        entry.path
        for benefit, folder in folders.items()
        for entry in by_folder.get(folder, ())
        if entry.file_id not in listed_ids.get(benefit, ()) and _is_file(root / entry.path)
    }
    return sorted(gone)


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def check_limits(plan: Plan, max_total_bytes: int, free_space: FreeSpace = free_bytes) -> None:
    """Refuse a sync over the total cap or the free space, before its first byte is written."""
    to_fetch = plan.to_fetch
    needed = plan.bytes_to_fetch
    if not to_fetch:
        return
    if needed > max_total_bytes:
        raise SyncTooLargeError(needed, max_total_bytes, len(to_fetch))
    existing = plan.root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    free = free_space(existing)
    if needed + FREE_SPACE_MARGIN > free:
        raise NotEnoughSpaceError(needed + FREE_SPACE_MARGIN, free, plan.root)


async def run(
    http: httpx2.AsyncClient,
    plan: Plan,
    *,
    request_for: RequestFor,
    fresh: Callable[[Downloadable], bool],
    refresh: Callable[[Downloadable], Awaitable[Downloadable]],
    concurrency: int,
    max_file_bytes: int | None,
    max_total_bytes: int,
    progress: Progress | None = None,
    free_space: FreeSpace = free_bytes,
    sleep: Sleep = anyio.sleep,
) -> list[Outcome]:
    """Fetch the planned files, `concurrency` at a time, and say what became of every file.

    A link about to expire (`fresh` says no) is replaced by `refresh` before it is opened. One file's
    failure is its own; a full disk ends the whole sync (`DiskFullError`). `progress` gets the bytes
    done of the bytes to fetch. `free_space` and `sleep` are seams for tests.
    """
    check_limits(plan, max_total_bytes, free_space)
    tracker = _Tracker(plan.bytes_to_fetch, progress)
    limiter = anyio.CapacityLimiter(concurrency)
    # One renewal at a time: the first renews every link of its benefit, the others then find theirs
    # fresh without asking Polar again.
    renewing = anyio.Lock()
    outcomes: dict[int, Outcome] = {}

    async def renewed(item: Downloadable) -> Downloadable:
        async with renewing:
            return await refresh(item)

    async def fetch(index: int, planned: Planned) -> None:
        async with limiter:
            try:
                item = planned.item if fresh(planned.item) else await renewed(planned.item)
                saved = await download_file(
                    http,
                    request_for(item),
                    plan.root,
                    folder=planned.folder,
                    max_bytes=max_file_bytes,
                    progress=tracker.of(index),
                    free_space=free_space,
                    sleep=sleep,
                )
            except DiskFullError:
                raise
            except Failure as failure:
                logger.warning("could not sync %s/%s: %s", planned.folder, planned.name, failure.message)
                outcomes[index] = Outcome(planned, "failed", reason=failure.message)
                return
            outcomes[index] = Outcome(planned, "present" if saved.skipped else "downloaded", saved=saved)

    try:
        async with anyio.create_task_group() as group:
            for index, planned in enumerate(plan.files):
                if planned.failure is not None:
                    outcomes[index] = Outcome(planned, "failed", reason=planned.failure)
                elif planned.present is not None:
                    outcomes[index] = Outcome(planned, "present", saved=planned.present)
                else:
                    group.start_soon(fetch, index, planned)
    except ExceptionGroup as failures:
        raise _first(failures) from None
    await tracker.finish()
    return [outcomes[index] for index in range(len(plan.files))]


def _first(failures: ExceptionGroup[Exception]) -> Exception:
    """The failure that ended a sync: a full disk before anything else, else the first one."""
    leaves: list[Exception] = []
    pending: list[Exception] = [failures]
    while pending:
        failure = pending.pop(0)
        if isinstance(failure, ExceptionGroup):
            pending[:0] = list(failure.exceptions)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        else:
            leaves.append(failure)
    return next((leaf for leaf in leaves if isinstance(leaf, DiskFullError)), leaves[0] if leaves else failures)


class _Tracker:
    """The whole sync's progress from each file's: bytes done of bytes to fetch, never going back."""

    def __init__(self, total: int, report: Progress | None) -> None:
        self.total = total
        self.report = report
        self.by_file: dict[int, int] = {}
        self.done = 0
        self.reported = 0
        self.step = max(total // 100, _PROGRESS_STEP)

    def of(self, index: int) -> Progress:
        async def update(done: int, _: int) -> None:
            self.done += done - self.by_file.get(index, 0)
            self.by_file[index] = done
            if self.done - self.reported >= self.step:
                await self._send()

        return update

    async def finish(self) -> None:
        if self.done > self.reported:
            await self._send()

    async def _send(self) -> None:
        # A transfer restarted from its first byte lowers `done` for a while: what was said stays said.
        if self.report is None or self.done <= self.reported:
            return
        self.reported = min(self.done, self.total)
        await self.report(self.reported, self.total)


@contextmanager
def _folder_errors(root: Path) -> Generator[None]:
    """The download folder or its record could not be read while planning: one clear failure."""
    try:
        yield
    except OSError as error:
        raise DownloadError(
            f"Could not read the download folder {root}: {error.strerror or type(error).__name__}. "
            "Check its permissions, or choose another folder."
        ) from error
    except RecordError as error:
        raise DownloadError(
            f"Could not read polar-mcp's record of saved files in {root} ({clean_text(error.reason, 80)}). "
            "Check the folder's permissions, or choose another folder."
        ) from error
