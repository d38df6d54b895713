"""The download and sync engines' failures, in a module of their own: front ends word them without
loading the engines (start-up stays light)."""

from __future__ import annotations

from pathlib import Path

from polar_mcp.failure import Failure
from polar_mcp.untrusted import human_size


class DownloadError(Failure):
    """A download that could not be completed; `message` is safe to show and says what to do next."""


class DiskFullError(DownloadError):
    """The disk filled up while `name` was being written into `folder`; nothing partial was kept."""

    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(
            f"The disk holding {folder} is full: {name} could not be saved, and nothing partial was kept. "
            "Free some space, or choose another folder."
        )
        self.name = name
        self.folder = folder


class SyncError(Failure):
    """A sync refused as a whole before anything was written; the fields say why."""


class SyncTooLargeError(SyncError):
    """The files to fetch add up to `size` bytes, over the sync cap `limit` (POLAR_MCP_MAX_SYNC_SIZE)."""

    def __init__(self, size: int, limit: int, files: int) -> None:
        super().__init__(
            f"This sync would fetch {files} file(s), {human_size(size)} in all, over the sync limit of "
            f"{human_size(limit)}, so nothing was fetched."
        )
        self.size = size
        self.limit = limit
        self.files = files


class NotEnoughSpaceError(SyncError):
    """The files to fetch need `needed` bytes (margin included) in `folder`, where `free` are free."""

    def __init__(self, needed: int, free: int, folder: Path) -> None:
        super().__init__(
            f"Not enough free space in {folder} for this sync: it needs {human_size(needed)} and "
            f"{human_size(free)} is free, so nothing was fetched."
        )
        self.needed = needed
        self.free = free
        self.folder = folder
