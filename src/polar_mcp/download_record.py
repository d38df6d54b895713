"""polar-mcp's record of the files it saved in a download folder.

Polar often gives no checksum (the uploader sent none), and then nothing in the folder proves a file
is the one Polar offers. The record does: per saved path, relative to the folder (so files in
sub-folders fit), the Polar file id, its version, last-modified time and storage version, and the
size, modification time (ns) and SHA-256 of the bytes written. A path is recorded only once its
bytes are in place, and a row for a path is replaced, never merged.

It lives in the folder as `.polar-mcp.sqlite3`. A safe file name never starts with a dot, so no
Polar file can land on it. SQLite (stdlib) rather than a JSON file under an fcntl lock, because:
- a commit is atomic and durable by SQLite's own journal, so a crash or a kill mid-write leaves the
  previous state, never half a file; a JSON file needs write-temp, fsync, rename and fsync of the
  folder, done right on every platform;
- several processes (uvicorn workers, a CLI command beside a running server) update it at once
  under SQLite's locking, which also works on Windows, where fcntl does not exist;
- later needs fit as tables: `PRAGMA user_version` numbers the schema, and each version's statements
  run in turn from a record's version up (version 2 added `folders`: the sub-folder a sync chose for
  each benefit id, so a renamed benefit keeps its folder).
The rollback journal is used, not WAL: WAL needs shared memory, which network shares lack, and
keeps two more files beside the user's; every transaction here is a few rows, so WAL's readers
that do not wait for writers gain nothing.

A record that cannot be read (not a database, corrupt, a foreign schema) is renamed aside with a
warning and a new one started: losing it only costs re-downloads of files without a checksum.
Every method blocks: call them from a worker thread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD_NAME = ".polar-mcp.sqlite3"
_SCHEMA_VERSION = 2
# Seconds a writer waits for another process's transaction; each lasts milliseconds.
_BUSY_TIMEOUT = 30.0
_COLUMNS = ("path", "file_id", "version", "last_modified", "storage_version", "size", "mtime_ns", "sha256")
_FOLDER_COLUMNS = ("benefit_id", "folder")
_SELECT = "SELECT path, file_id, version, last_modified, storage_version, size, mtime_ns, sha256 FROM files"
# Each schema version's statements, applied in turn from the record's `user_version` up: version 2
# adds the sync's folder per benefit without touching the files of version 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY,
        file_id TEXT NOT NULL,
        version TEXT,
        last_modified TEXT,
        storage_version TEXT,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    )""",
        "CREATE INDEX IF NOT EXISTS files_by_file_id ON files (file_id)",
    ),
    2: (
        """CREATE TABLE IF NOT EXISTS folders (
        benefit_id TEXT PRIMARY KEY,
        folder TEXT NOT NULL UNIQUE
    )""",
    ),
}
# SQLite's companions of a database file: a hot journal must never meet a new database.
_COMPANIONS = ("-journal", "-wal", "-shm")


@dataclass(frozen=True)
class SavedEntry:
    """One saved file: which Polar file and version it is, and the bytes polar-mcp wrote."""

    path: str
    """Relative to the download folder, with `/` between folders."""
    file_id: str
    version: str | None
    last_modified: str | None
    storage_version: str | None
    size: int
    mtime_ns: int
    sha256: str


class Snapshot:
    """The record as read at one moment: answers a whole sync's questions without a query per file."""

    def __init__(self, entries: list[SavedEntry]) -> None:
        self.entries = entries
        self._by_path = {entry.path: entry for entry in entries}
        self._by_file: dict[str, list[SavedEntry]] = {}
        for entry in entries:
            self._by_file.setdefault(entry.file_id, []).append(entry)

    def copies(self, file_id: str) -> list[SavedEntry]:
        return list(self._by_file.get(file_id, ()))

    def at(self, path: str) -> SavedEntry | None:
        return self._by_path.get(path)


class RecordError(Exception):
    """The record could not be read or updated for a reason other than damage (locked, read-only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UnusableError(Exception):
    """The record file is damaged or is not polar-mcp's."""

    def __init__(self, reason: str, identity: tuple[int, int] | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.identity = identity


class DownloadRecord:
    """The record of one download folder, opened on first use and created on first write.

    A folder where nothing was ever saved keeps no record: a failed download leaves nothing behind.
    """

    def __init__(self, root: Path) -> None:
        self._path = root / RECORD_NAME
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def copies(self, file_id: str) -> list[SavedEntry]:
        """Every path recorded for a Polar file, oldest first."""
        rows = self._query(_SELECT + " WHERE file_id = ? ORDER BY rowid", (file_id,), create=False)
        return [_entry(row) for row in rows]

    def at(self, path: str) -> SavedEntry | None:
        rows = self._query(_SELECT + " WHERE path = ?", (path,), create=False)
        return _entry(rows[0]) if rows else None

    def put(self, entry: SavedEntry) -> None:
        """Record `entry`, replacing whatever was recorded at its path."""
        self._query(
            "INSERT OR REPLACE INTO files (path, file_id, version, last_modified, storage_version, size, "
            "mtime_ns, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.path,
                entry.file_id,
                entry.version,
                entry.last_modified,
                entry.storage_version,
                entry.size,
                entry.mtime_ns,
                entry.sha256,
            ),
            create=True,
        )

    def snapshot(self) -> Snapshot:
        """Every recorded path, oldest first, read at once: one query for a whole sync, not one per file."""
        return Snapshot([_entry(row) for row in self._query(_SELECT + " ORDER BY rowid", (), create=False)])

    def folders(self) -> dict[str, str]:
        """The sub-folder chosen for each benefit id, as a sync first chose it."""
        rows = self._query("SELECT benefit_id, folder FROM folders ORDER BY rowid", (), create=False)
        return dict(rows)

    def choose_folder(self, benefit_id: str, folder: str) -> None:
        """Keep `folder` as the benefit's sub-folder; call inside `writing`, having checked it is free."""
        self._query("INSERT INTO folders (benefit_id, folder) VALUES (?, ?)", (benefit_id, folder), create=True)

    def forget(self, path: str) -> None:
        self._query("DELETE FROM files WHERE path = ?", (path,), create=False)

    @contextmanager
    def writing(self) -> Generator[None]:
        """One transaction holding the write lock from its start: what it reads stays true until it ends."""
        self._query("BEGIN IMMEDIATE", (), create=True)
        try:
            yield
        except BaseException:
            if self._db is not None:
                self._db.rollback()
            raise
        self._query("COMMIT", (), create=True)

    def _query(self, sql: str, parameters: tuple[object, ...], *, create: bool) -> list[tuple[Any, ...]]:
        if self._db is None:
            if not create and not self._path.exists():
                return []
            self._db = _open(self._path)
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise RecordError(_reason(error)) from error


def _open(path: Path) -> sqlite3.Connection:
    """Open (or start) the record at `path`, setting an unreadable one aside."""
    try:
        return _connect(path)
    except _UnusableError as problem:
        _set_aside(path, problem)
    return _connect(path)


def _entry(row: tuple[Any, ...]) -> SavedEntry:
    return SavedEntry(*row)


def _connect(path: Path) -> sqlite3.Connection:
    identity = _identity(path)
    try:
        # Autocommit (isolation_level=None): transactions are explicit, as in `writing`.
        connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise RecordError(_reason(error)) from error
    try:
        problem = _check(connection)
    except sqlite3.Error as error:
        connection.close()
        if error.sqlite_errorcode in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise _UnusableError(_reason(error), identity) from error
        raise RecordError(_reason(error)) from error
    if problem is not None:
        connection.close()
        raise _UnusableError(problem, identity)
    return connection


def _check(connection: sqlite3.Connection) -> str | None:
    """Make sure the schema is there; say what is wrong with a file that is not a usable record."""
    if connection.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
        return "damaged"
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version + 1, _SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {step}")
        columns = {row[1] for row in connection.execute("PRAGMA table_info(files)")}
        folder_columns = {row[1] for row in connection.execute("PRAGMA table_info(folders)")}
    except BaseException:
        connection.rollback()
        raise
    connection.execute("COMMIT")
    # A later polar-mcp may add columns and tables, never take these away.
    usable = columns.issuperset(_COLUMNS) and folder_columns.issuperset(_FOLDER_COLUMNS)
    return None if usable else "not a record of polar-mcp"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _set_aside(path: Path, problem: _UnusableError) -> None:
    # Another process may have set it aside and started afresh since we looked: keep the new one.
    if _identity(path) != problem.identity:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.unreadable-{stamp}")
    try:
        os.replace(path, aside)
        for suffix in _COMPANIONS:
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                os.replace(companion, aside.with_name(aside.name + suffix))
    except FileNotFoundError:
        return
    except OSError as error:
        raise RecordError(f"could not set the unreadable record aside ({error.strerror or error})") from error
    logger.warning(
        "the record of saved files in %s was unreadable (%s): kept as %s, starting a new one; files "
        "without a Polar checksum may be downloaded once more",
        path.parent,
        problem.reason,
        aside.name,
    )


def _reason(error: sqlite3.Error) -> str:
    # SQLite's messages are short and fixed ("database is locked", "attempt to write a readonly database").
    return str(error) or type(error).__name__
