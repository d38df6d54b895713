"""Verified, atomic, confined downloads of a customer's files.

Knows HTTP and the filesystem, nothing of MCP or of Polar's listing: the caller describes each file
in a `DownloadRequest`. A Polar link is a secret that counts a download each time it is opened: it
is fetched once, never logged, and a transfer that breaks off is resumed from the storage URL it
redirected to. Files land in one directory under a sanitised name, through a temp file that is
removed on any failure or cancellation, and are checked against Polar's size and SHA-256. What was
saved is kept in the folder's record (`download_record`), so a file saved before and unchanged
since is not fetched again, even when Polar gives no checksum.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import anyio
import anyio.to_thread
import httpx2

from polar_mcp.download_failures import DiskFullError, DownloadError
from polar_mcp.download_record import DownloadRecord, RecordError, SavedEntry
from polar_mcp.untrusted import clean_text, human_size

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], Awaitable[None]]
"""Called with (bytes so far, total) as a download arrives."""
FreeSpace = Callable[[Path], int]
Sleep = Callable[[float], Awaitable[None]]

NAME_LIMIT_BYTES = 200
_CHUNK = 64 * 1024
_RETRY_DELAY = 0.5
_PROGRESS_STEP = 256 * 1024
FREE_SPACE_MARGIN = 10_000_000
"""Room left over for the filesystem's own bookkeeping, so a download never fills the disk to the byte."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_WINDOWS_ILLEGAL = re.compile(r'[<>:"|?*]')
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{kind}{n}" for kind in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
# Words of ASCII letters, digits and punctuation no OS minds, one space or dot between two words.
_PLAIN_WORD = r"[A-Za-z0-9_\-+,;=@#$%&'()\[\]{}~!^`]+"
_PLAIN_NAME = re.compile(rf"{_PLAIN_WORD}(?:[ .]{_PLAIN_WORD})*")
_COMPOUND_EXTENSIONS = (".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
# An S3-style error body is a few hundred bytes; more is not read, and its text is never shown.
_ERROR_BODY_LIMIT = 4096
_S3_CODE = re.compile(r"<Code>\s*([A-Za-z]{1,64})\s*</Code>")
_S3_EXPIRED = re.compile(r"<Message>\s*Request has expired", re.IGNORECASE)
# S3 error codes that say a 5xx will pass; any other code a 5xx names is a fault that stays.
_PASSING_CODES = frozenset({"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"})
_KNOWN_CODES = _PASSING_CODES | {
    "AccessDenied",
    "ExpiredToken",
    "NoSuchKey",
    "NotImplemented",
    "RequestExpired",
    "SignatureDoesNotMatch",
}


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch, built by the caller from a listing item."""

    url: str
    """The signed Polar link: a secret, never logged or shown."""
    headers: Mapping[str, str]
    """`file.download.headers`: sent with the GET of the Polar link (and same-origin redirects)."""
    name: str
    """Polar's file name, untrusted."""
    size_bytes: int
    sha256: str | None
    """Lowercase hex, or None when Polar gives no checksum."""
    file_id: str
    """Polar's file id: with the three below, what the folder's record knows the file by."""
    version: str | None = None
    """Polar's `file.version`, set by the seller."""
    last_modified: str | None = None
    """Polar's `file.last_modified_at`, as an ISO 8601 string."""
    storage_version: str | None = None
    """Polar's `file.storage_version`: the storage object's version id."""


@dataclass(frozen=True)
class SavedFile:
    """Where a file ended up; `verified` means its SHA-256 matched Polar's (its size always does)."""

    path: Path
    name: str
    size_bytes: int
    sha256: str
    verified: bool
    skipped: bool
    """True when an identical file was already there and nothing was fetched."""
    identical_by: Literal["checksum", "record"] | None = None
    """Why a skipped file counts as identical: Polar's checksum matched its bytes, or, without one, the
    folder's record shows polar-mcp saved this version of the file there and it is unchanged since."""


class RecordReads(Protocol):
    """What a look for a saved copy reads: the record itself, or a snapshot of it taken for a whole sync."""

    def copies(self, file_id: str) -> list[SavedEntry]: ...

    def at(self, path: str) -> SavedEntry | None: ...


class _RetryableError(Exception):
    """The storage transfer broke off in a way another attempt may fix; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def safe_file_name(untrusted: str) -> str:
    """A file name that is safe on every OS: one plain component, no tricks, at most 200 bytes."""
    # Most names are plain ASCII words with single spaces or dots between them, which every step
    # below leaves as they are: a re-sync asks this once per file of the library.
    if (
        len(untrusted) <= NAME_LIMIT_BYTES
        and _PLAIN_NAME.fullmatch(untrusted)
        and untrusted.split(".", 1)[0].upper() not in _RESERVED
    ):
        return untrusted
    return _made_safe(untrusted)


def _made_safe(untrusted: str) -> str:
    text = unicodedata.normalize("NFC", untrusted)
    # Cleaning never lengthens text, so this limit never truncates with an ellipsis.
    text = clean_text(text, max(len(text), 1))
    parts = [part for part in re.split(r"[/\\]", text) if part.strip(" .")]
    # Never a leading dot: hidden names in the folder are polar-mcp's own (temp files, the record).
    name = _fit(_WINDOWS_ILLEGAL.sub("_", parts[-1] if parts else "").strip(". "))
    if not name:
        return "download"
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        name = _fit("_" + name)
    return name


def default_download_dir() -> Path:
    """`<the user's Downloads folder>/polar`, honouring XDG_DOWNLOAD_DIR from user-dirs.dirs."""
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return (_xdg_download_dir(config_home / "user-dirs.dirs", home) or home / "Downloads") / "polar"


def _xdg_download_dir(user_dirs: Path, home: Path) -> Path | None:
    try:
        lines = user_dirs.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        match = re.fullmatch(r'\s*XDG_DOWNLOAD_DIR\s*=\s*"(.*)"\s*', line)
        if match:
            value = match.group(1).replace("$HOME", str(home), 1)
            path = Path(value)
            # xdg-user-dirs sets a folder to $HOME itself to mean "disabled".
            if path.is_absolute() and path != home:
                return path
    return None


def free_bytes(directory: Path) -> int:
    """Bytes free on the filesystem of `directory`."""
    return shutil.disk_usage(directory).free


async def download_file(
    http: httpx2.AsyncClient,
    request: DownloadRequest,
    directory: Path,
    *,
    folder: str = "",
    overwrite: bool = False,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    max_redirects: int = 5,
    storage_retries: int = 2,
    free_space: FreeSpace = free_bytes,
    sleep: Sleep = anyio.sleep,
) -> SavedFile:
    """Fetch one file into `directory` (into its sub-folder `folder`, one safe name, when given),
    verified and atomically, and say where it landed.

    An identical file already there is kept and nothing is fetched: one whose SHA-256 matches
    Polar's checksum, or, without a checksum, one the folder's record shows polar-mcp saved for this
    version of the file and that is unchanged since. A copy polar-mcp saved of an older version of
    the file, untouched since, is replaced by the new version. Any other file of the same name
    (compared case-insensitively) is kept and the new one gets the next free name `name (2).ext`,
    unless `overwrite`, which replaces it. The record stays in `directory`, whatever the sub-folder.
    `http` must carry no credentials: none are added here. `free_space` and `sleep` (the wait
    between storage retries) are seams for tests.
    """
    name = safe_file_name(request.name)
    check_size(name, request.size_bytes, max_bytes)
    root = prepare_directory(directory)
    with _filesystem_errors(name, root), closing(DownloadRecord(root)) as record:
        here = _prepare_folder(root, folder)
        found = await anyio.to_thread.run_sync(_look, record, record, root, folder, name, request, overwrite)
        if found.identical is not None:
            return found.identical
        free = free_space(root)
        if request.size_bytes + FREE_SPACE_MARGIN > free:
            raise DownloadError(
                f"Not enough free space in {root} for {name}: it needs {human_size(request.size_bytes)} "
                f"plus {human_size(FREE_SPACE_MARGIN)} to spare, and {human_size(free)} is free. "
                "Free some space or choose another folder."
            )
        temp = here / f".{name}.{secrets.token_hex(4)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            with os.fdopen(os.open(temp, flags, 0o666), "wb") as out:
                sink = _Sink(out, request.size_bytes, progress)
                await _Transfer(http, request, sink, max_redirects, storage_retries, sleep).run()
                out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.fileno())
            digest = sink.hasher.hexdigest()
            if request.sha256 is not None and digest != request.sha256.lower():
                raise DownloadError(
                    f"{name} arrived corrupted: its SHA-256 does not match Polar's checksum, so it was "
                    "deleted. Get a fresh link and try again."
                )
            publish = _Publish(root, folder, name, overwrite, found.older)
            path = await anyio.to_thread.run_sync(_commit, record, temp, publish, request, digest)
        finally:
            # Runs under cancellation and KeyboardInterrupt too; after a publish the temp is already gone.
            temp.unlink(missing_ok=True)
    logger.info("saved %s (%d bytes, verified=%s)", path.name, request.size_bytes, request.sha256 is not None)
    return SavedFile(
        path=path,
        name=path.name,
        size_bytes=request.size_bytes,
        sha256=digest,
        verified=request.sha256 is not None,
        skipped=False,
    )


def check_size(name: str, size: int, max_bytes: int | None) -> None:
    """Refuse a file over the per-file cap, before anything is asked of Polar."""
    if max_bytes is not None and size > max_bytes:
        raise DownloadError(
            f"{name} is {human_size(size)}, over the download limit of {human_size(max_bytes)}. "
            "Raise POLAR_MCP_MAX_DOWNLOAD_SIZE (--max-download-size) to allow it."
        )


@contextmanager
def _filesystem_errors(name: str, root: Path) -> Generator[None]:
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(name, root) from error
        raise DownloadError(
            f"Could not save {name} in {root}: {error.strerror or type(error).__name__}. "
            "Check the folder's permissions and free space, or choose another folder."
        ) from error
    except RecordError as error:
        raise DownloadError(
            f"Could not save {name} in {root}: polar-mcp's record of saved files there failed "
            f"({clean_text(error.reason, 80)}). Check the folder's permissions, or choose another folder."
        ) from error


def _prepare_folder(root: Path, folder: str) -> Path:
    """`root/folder`, made if missing; refused if something other than a real folder holds the name."""
    if not folder:
        return root
    if safe_file_name(folder) != folder:
        raise ValueError(f"{folder!r} is not one safe folder name")
    here = root / folder
    here.mkdir(mode=0o700, exist_ok=True)
    # A link there (even to a folder) could lead outside the download folder: only a real folder is used.
    if not stat.S_ISDIR(here.lstat().st_mode):
        raise DownloadError(
            f"{here} is a link, not a folder, so nothing was saved through it. Move it away and try again."
        )
    return here


def prepare_directory(directory: Path) -> Path:
    """The download folder, resolved and made (private) if missing."""
    try:
        root = directory.expanduser().resolve()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(
            f"Cannot use {directory} as the download folder ({error.strerror or error}). Choose another folder."
        ) from error
    return root


def _same_name_entries(root: Path, name: str) -> list[str]:
    """Entries whose name equals `name` ignoring case and Unicode form, the exact one first."""
    wanted = fold_name(name)
    matches = [entry for entry in os.listdir(root) if fold_name(entry) == wanted]
    return sorted(matches, key=lambda entry: (entry != name, entry))


def fold_name(name: str) -> str:
    """A name as the filesystems of macOS and Windows compare it: ignoring case and Unicode form."""
    return unicodedata.normalize("NFC", name).casefold()


@dataclass(frozen=True)
class Found:
    """What a look in the target folder found for a requested file."""

    identical: SavedFile | None = None
    """A copy that is the requested file: nothing needs fetching."""
    older: str | None = None
    """The path of a copy polar-mcp saved of an older version, untouched since: the new version replaces it."""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _parent(relative: str) -> str:
    return relative.rpartition("/")[0]


def find_saved(
    record: DownloadRecord,
    reads: RecordReads,
    root: Path,
    folder: str,
    name: str,
    request: DownloadRequest,
    *,
    lstat: Callable[[str], os.stat_result] = os.lstat,
) -> Found:
    """`download_file`'s look for a copy of `request`, saved as `name` (its safe name), in `root/folder`,
    without fetching anything.

    `reads` answers the record's questions (a snapshot of it for a whole sync); changes go to `record`.
    `lstat` is how a path is looked at (a sync passes the looks it took while the catalog was scanned).
    Blocks: call it from a worker thread.
    """
    return _look(record, reads, root, folder, name, request, False, lstat)


def _look(
    record: DownloadRecord,
    reads: RecordReads,
    root: Path,
    folder: str,
    name: str,
    request: DownloadRequest,
    overwrite: bool,
    lstat: Callable[[str], os.stat_result] = os.lstat,
) -> Found:
    """A file in `root/folder` that is the one requested: under its name, or where polar-mcp saved it
    before in that folder; else the older copy it may replace.

    With `overwrite` only its name counts: the caller wants that name to hold the file.
    """
    copies = [] if overwrite else reads.copies(request.file_id)
    recorded = [entry.path for entry in copies if _confined(entry.path) and _parent(entry.path) == folder]
    older: str | None = None
    for relative in _candidates(root, folder, name, recorded):
        # Plain strings, not Paths, in this loop: a re-sync runs it once per file of the library.
        path = os.path.join(root, relative)
        try:
            info = lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            if reads.at(relative) is not None:
                record.forget(relative)
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        entry = reads.at(relative)
        judged = _judge(path, info, entry, request) if info.st_size == request.size_bytes else None
        if judged is None:
            if older is None and not overwrite and _older_copy(record, path, info, entry, request, name):
                older = relative
            continue
        digest, by = judged
        # Adopts a file that was there before the record, and spares the next look a re-hash. (Compared
        # field by field rather than as a new entry: a re-sync asks this once per file of the library.)
        if not _records(entry, request, info, digest):
            record.put(_entry(relative, request, info, digest))
        logger.info("%s is already downloaded", relative)
        identical = SavedFile(
            path=Path(path),
            name=os.path.basename(path),
            size_bytes=request.size_bytes,
            sha256=digest,
            verified=by == "checksum",
            skipped=True,
            identical_by=by,
        )
        return Found(identical=identical)
    return Found(older=older)


def _candidates(root: Path, folder: str, name: str, recorded: list[str]) -> Iterator[str]:
    """Paths that may hold the file: its exact name first, then the same name in another case or Unicode
    form, then where the record says it was saved. Lazily: a file found at its exact name (a re-sync's
    usual case) costs no listing of the folder."""
    exact = _join(folder, name)
    seen = {exact}
    yield exact
    here = root / folder if folder else root
    for relative in [*(_join(folder, entry) for entry in _same_name_entries(here, name)), *recorded]:
        if relative not in seen:
            seen.add(relative)
            yield relative


def _older_copy(
    record: DownloadRecord,
    path: str,
    info: os.stat_result,
    entry: SavedEntry | None,
    request: DownloadRequest,
    name: str,
) -> bool:
    """Whether `path` holds, under the requested name, exactly the bytes polar-mcp saved of this file before."""
    if entry is None or entry.file_id != request.file_id or fold_name(os.path.basename(path)) != fold_name(name):
        return False
    if (entry.size, entry.mtime_ns) == (info.st_size, info.st_mtime_ns):
        return True
    if entry.size != info.st_size or _hash_file(path) != entry.sha256:
        return False
    # Only touched: recorded with its new time, so the replacement can tell nobody changed it meanwhile.
    record.put(dataclasses.replace(entry, mtime_ns=info.st_mtime_ns))
    return True


def _judge(
    path: str, info: os.stat_result, entry: SavedEntry | None, request: DownloadRequest
) -> tuple[str, Literal["checksum", "record"]] | None:
    """The digest of a local file of the right size, and why it is the requested file; None if it is not."""
    # Bytes polar-mcp wrote and nobody touched since need no re-hash.
    untouched = entry is not None and (entry.size, entry.mtime_ns) == (info.st_size, info.st_mtime_ns)
    if request.sha256 is not None:
        digest = entry.sha256 if entry is not None and untouched else _hash_file(path)
        return (digest, "checksum") if digest == request.sha256.lower() else None
    # Without Polar's checksum only the record can vouch for a file, and only for the version it saved.
    if entry is None or not _same_version(entry, request):
        return None
    if untouched:
        return entry.sha256, "record"
    digest = _hash_file(path)
    return (digest, "record") if digest == entry.sha256 else None


def _same_version(entry: SavedEntry, request: DownloadRequest) -> bool:
    return (entry.file_id, entry.version, entry.last_modified, entry.storage_version, entry.size) == (
        request.file_id,
        request.version,
        request.last_modified,
        request.storage_version,
        request.size_bytes,
    )


def _records(entry: SavedEntry | None, request: DownloadRequest, info: os.stat_result, digest: str) -> bool:
    """Whether `entry` already says what `_entry` would record for this file at its path."""
    return (
        entry is not None
        and _same_version(entry, request)
        and (entry.size, entry.mtime_ns, entry.sha256) == (info.st_size, info.st_mtime_ns, digest)
    )


def _entry(relative: str, request: DownloadRequest, info: os.stat_result, digest: str) -> SavedEntry:
    return SavedEntry(
        path=relative,
        file_id=request.file_id,
        version=request.version,
        last_modified=request.last_modified,
        storage_version=request.storage_version,
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        sha256=digest,
    )


def _confined(relative: str) -> bool:
    """Whether a recorded path stays inside the folder, whatever was written into the record."""
    # String tests, not PurePosixPath: a re-sync asks this once per file of the library.
    return (
        bool(relative.strip("/"))
        and not relative.startswith("/")
        and "\\" not in relative
        and ".." not in relative.split("/")
    )


@dataclass(frozen=True)
class _Publish:
    """Where a finished download goes: its folder and name, and the older copy it may replace."""

    root: Path
    folder: str
    name: str
    overwrite: bool
    older: str | None


def _commit(record: DownloadRecord, temp: Path, publish: _Publish, request: DownloadRequest, digest: str) -> Path:
    """Publish the finished temp file and record it, unless another download saved the same bytes meanwhile.

    Under the record's write lock, so two downloads of one file (tasks or processes) leave one copy;
    with `overwrite` they replace the one name in turn. The older copy is replaced only if it is still
    exactly what polar-mcp saved.
    """
    root, folder = publish.root, publish.folder
    with record.writing():
        for entry in [] if publish.overwrite else record.copies(request.file_id):
            path = root / entry.path
            if (
                _confined(entry.path)
                and _parent(entry.path) == folder
                and entry.sha256 == digest
                and _same_version(entry, request)
                and _untouched(path, entry)
            ):
                logger.info("%s was saved by another download meanwhile", entry.path)
                return path
        older = record.at(publish.older) if publish.older is not None else None
        if older is not None and older.file_id == request.file_id and _untouched(root / older.path, older):
            path = root / older.path
            os.replace(temp, path)
            logger.info("%s replaced by its new version", older.path)
        else:
            path = _publish(temp, root / folder if folder else root, publish.name, overwrite=publish.overwrite)
        record.put(_entry(_join(folder, path.name), request, path.lstat(), digest))
        return path


def _untouched(path: Path, entry: SavedEntry) -> bool:
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == (entry.size, entry.mtime_ns)


def _hash_file(path: str) -> str:
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as source:
        while chunk := source.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


def _publish(temp: Path, root: Path, name: str, *, overwrite: bool) -> Path:
    """Move the finished temp file to its final name and return that path."""
    if overwrite:
        for entry in _same_name_entries(root, name):
            path = root / entry
            # os.replace swaps a symlink itself, never the file it points to; a folder is left alone.
            if not stat.S_ISDIR(path.lstat().st_mode):
                os.replace(temp, path)
                return path
    while True:
        path = root / _free_name(root, name)
        try:
            # A hard link fails if the name was taken since we looked, so two downloads of different
            # files under one name can never replace each other.
            os.link(temp, path)
        except FileExistsError:
            continue
        except OSError:
            # Filesystems without hard links (FAT, some network shares): replace, after one last look.
            if os.path.lexists(path):
                continue
            os.replace(temp, path)
        return path


def _free_name(root: Path, name: str) -> str:
    taken = {fold_name(entry) for entry in os.listdir(root)}
    stem, extension = _split_extension(name)
    candidate, number = name, 1
    while fold_name(candidate) in taken:
        number += 1
        candidate = _fit_parts(stem, f" ({number}){extension}")
    return candidate


def _split_extension(name: str) -> tuple[str, str]:
    lowered = name.lower()
    for compound in _COMPOUND_EXTENSIONS:
        if lowered.endswith(compound) and len(name) > len(compound):
            return name[: -len(compound)], name[-len(compound) :]
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension.encode()) <= 32:
        return stem, "." + extension
    return name, ""


def _fit(name: str) -> str:
    """`name` within NAME_LIMIT_BYTES, shortening the stem and never the extension."""
    return _fit_parts(*_split_extension(name))


def _fit_parts(stem: str, suffix: str) -> str:
    budget = NAME_LIMIT_BYTES - len(suffix.encode())
    if len(stem.encode()) <= budget:
        return stem + suffix
    # Cutting bytes may split a character; its remains are dropped rather than left invalid.
    return stem.encode()[:budget].decode(errors="ignore").rstrip(". ") + suffix


class _Sink:
    """The temp file, its running SHA-256 and the throttled progress reports."""

    def __init__(self, out: BinaryIO, total: int, progress: Progress | None) -> None:
        self.out = out
        self.total = total
        self.progress = progress
        self.hasher = hashlib.sha256()
        self.done = 0
        self.reported = 0
        self.step = max(total // 100, _PROGRESS_STEP)

    def restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.hasher = hashlib.sha256()
        self.done = 0

    async def write(self, chunk: bytes) -> None:
        self.done += len(chunk)
        if self.done > self.total:
            raise DownloadError(
                f"The server sent more than the {self.total} bytes Polar announced, so the download was "
                "stopped and deleted. Get a fresh link and try again."
            )
        self.out.write(chunk)
        self.hasher.update(chunk)
        if self.progress is not None and self.done - self.reported >= self.step:
            self.reported = self.done
            await self.progress(self.done, self.total)

    async def finish(self) -> None:
        if self.progress is not None:
            await self.progress(self.done, self.total)


class _Transfer:
    """The GET of the Polar link, its redirects, and resumed attempts against the storage URL."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        request: DownloadRequest,
        sink: _Sink,
        max_redirects: int,
        storage_retries: int,
        sleep: Sleep,
    ) -> None:
        self.http = http
        self.request = request
        self.sink = sink
        self.max_redirects = max_redirects
        self.storage_retries = storage_retries
        self.sleep = sleep
        self.link = _parse_url(request.url, "The download link")
        self.url = self.link

    @property
    def at_link(self) -> bool:
        """Still at the Polar link, where another GET would count as another download."""
        return self.url == self.link

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                response = await self._open()
                try:
                    await self._receive(response)
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()
                await self.sink.finish()
                return
            except httpx2.RequestError as error:
                reason = f"the connection failed ({type(error).__name__})"
                if self.at_link:
                    raise DownloadError(f"Could not reach Polar: {reason}. Try again.") from error
                failure = _RetryableError(reason)
            except _RetryableError as error:
                failure = error
            if attempt >= self.storage_retries:
                raise DownloadError(
                    f"The transfer from the storage server failed: {failure.reason}, after "
                    f"{attempt + 1} attempt(s). Try again later."
                ) from failure
            await self.sleep(_RETRY_DELAY * 2**attempt)
            attempt += 1
            logger.warning("storage transfer failed (%s); resuming at byte %d", failure.reason, self.sink.done)

    async def _open(self) -> httpx2.Response:
        """GET the current URL, following redirects by hand, and return the final response."""
        for _ in range(self.max_redirects + 1):
            headers = {"Accept-Encoding": "identity"}
            if self.url.origin == self.link.origin:
                headers.update(self.request.headers)
            if self.sink.done and not self.at_link:
                headers["Range"] = f"bytes={self.sink.done}-"
            response = await self.http.send(
                self.http.build_request("GET", self.url, headers=headers), stream=True, follow_redirects=False
            )
            if response.status_code not in _REDIRECTS:
                return response
            await response.aclose()
            location = response.headers.get("Location")
            if not location:
                raise DownloadError(
                    f"The server answered a redirect ({response.status_code}) without a destination. Try again."
                )
            self.url = _parse_url(str(self.url.join(location)), "A redirect")
        raise DownloadError(
            f"The download was redirected more than {self.max_redirects} times, so it was stopped. "
            "Get a fresh link and try again."
        )

    async def _receive(self, response: httpx2.Response) -> None:
        status = response.status_code
        if self.at_link and status != 200:
            raise DownloadError(_link_failure(status))
        if status not in (200, 206):
            code = await _storage_error_code(response)
            # Another attempt gets the same answer unless the storage says the fault will pass.
            if status in _TRANSIENT and (code is None or code in _PASSING_CODES):
                raise _RetryableError(f"the storage server answered {status}" + (f" ({code})" if code else ""))
            raise DownloadError(_storage_failure(status, code))
        if status == 206:
            self._check_range(response)
        elif self.sink.done:
            self.sink.restart()
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        if length is not None and length.isdigit() and not encoded and int(length) != self.sink.total - self.sink.done:
            raise DownloadError(
                f"The server is sending {int(length) + self.sink.done} bytes but Polar announced "
                f"{self.sink.total}, so the download was stopped and deleted. Get a fresh link and try again."
            )
        # We ask for identity; a server that compresses anyway still delivers the file once decoded.
        async for chunk in response.aiter_bytes(_CHUNK):
            await self.sink.write(chunk)
        if self.sink.done < self.sink.total:
            if self.at_link:
                raise DownloadError("The download from Polar was cut short. Get a fresh link and try again.")
            raise _RetryableError(f"the storage server stopped after {self.sink.done} of {self.sink.total} bytes")

    def _check_range(self, response: httpx2.Response) -> None:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != self.sink.done or match.group(2) not in ("*", str(self.sink.total)):
            raise DownloadError(
                "The storage server resumed the transfer at the wrong place. Get a fresh link and try again."
            )


def _parse_url(url: str, what: str) -> httpx2.URL:
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError):
        # Chaining would carry the address, a secret, into tracebacks and logs.
        raise DownloadError(f"{what} is not a valid address, so it was refused. Get a fresh link.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        scheme = parsed.scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,20}", parsed.scheme) else "unknown"
        raise DownloadError(
            f"{what} pointed to a non-HTTP(S) address ({scheme}:), so it was refused. Get a fresh link."
        )
    return parsed


def _link_failure(status: int) -> str:
    if status == 404:
        return "Polar says this download link is invalid (404). Get a new link and try again."
    if status == 410:
        return "The download link expired or the file was withdrawn (410). Get a fresh link and try again."
    if status in _TRANSIENT:
        return f"Polar is unavailable right now ({status}). Try again in a minute."
    return f"Polar refused the download link ({status}). Get a fresh link and try again."


async def _storage_error_code(response: httpx2.Response) -> str | None:
    """The S3-style error code of a refusal, read from at most a few KB; None if absent or unknown."""
    # A compressed body is left alone: decoded, a few KB of it could become any size.
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    body = b""
    async for chunk in response.aiter_bytes(_ERROR_BODY_LIMIT):
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    # A regex, not an XML parser: nothing in the body is resolved or expanded, and only codes we
    # know are kept; the storage's own wording never reaches the user.
    text = body[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
    match = _S3_CODE.search(text)
    if match is None or match.group(1) not in _KNOWN_CODES:
        return None
    if match.group(1) == "AccessDenied" and _S3_EXPIRED.search(text):
        return "RequestExpired"
    return match.group(1)


def _storage_failure(status: int, code: str | None) -> str:
    answer = f"{status} {code}" if code else str(status)
    if code in ("RequestExpired", "ExpiredToken"):
        return (
            f"The storage server refused the download ({answer}): its signed address expired. "
            "Get a fresh link and try again."
        )
    if code == "SignatureDoesNotMatch":
        return (
            f"The storage server refused the link's signature ({answer}), often because this computer's "
            "clock is wrong or a proxy changed the request. Check both, then get a fresh link and try again."
        )
    if code == "NoSuchKey":
        return (
            f"The file is missing from storage ({answer}): the seller may have removed or replaced it. "
            "Get a fresh link; if this persists, ask the seller."
        )
    if code == "AccessDenied":
        return (
            f"The storage server denied access to the file ({answer}): the seller may have removed it or "
            "withdrawn access. Get a fresh link; if this persists, ask the seller."
        )
    if code == "NotImplemented":
        return (
            f"The storage server does not support this request ({answer}), so it was not retried. "
            "Get a fresh link and try again; if this persists, ask the seller."
        )
    if status == 403:
        return f"The storage server refused the download ({answer}) without saying why. Get a fresh link and try again."
    if status in (404, 410):
        return (
            f"The file is missing from storage ({answer}). Get a fresh link; if this persists, the file "
            "may have been withdrawn."
        )
    return f"The storage server answered {answer}. Get a fresh link and try again."
