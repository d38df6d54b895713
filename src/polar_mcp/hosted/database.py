"""Where the hosted state lives: the engine for POLAR_MCP_DATABASE_URL, its pool, its start-up errors,
and the lock under which one replica migrates the schema while the others wait.

SQLite (the default, one machine) and PostgreSQL (several replicas) run the same statements. What
differs is here: the driver, the pool, how a migration is made exclusive (PostgreSQL: a
transaction-scoped advisory lock; SQLite: `BEGIN IMMEDIATE`, the database file's write lock), how
a one-row read (the token check) is made cheapest (`RowReader`), and what a failure to connect
means. No message ever carries the URL's password: they name the variable, and the server by host,
port and database.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

VARIABLE = "POLAR_MCP_DATABASE_URL"
DEFAULT_POOL_SIZE = 10
MIN_POSTGRES = (12, 0)
"""The oldest PostgreSQL supported: the oldest one its developers still maintained when this was written."""
CONNECT_TIMEOUT = 10.0
MIGRATION_LOCK = 0x706F6C6172_6D6370 % (2**63)
"""The advisory lock key of schema migrations ("polarmcp" in hex): one number all replicas agree on."""
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# SQLSTATEs of PostgreSQL's refusals at connection time.
_BAD_CREDENTIALS = ("28P01", "28000")
_NO_DATABASE = "3D000"


class DatabaseError(Exception):
    """The database cannot be used; the message names POLAR_MCP_DATABASE_URL and never its password."""


def async_url(url: str) -> sa.URL:
    """`sqlite:///…` and `postgresql://…` (or `postgres://…`) as the async drivers' URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"{VARIABLE} is not a database URL such as sqlite:///path or postgresql://…") from None
    name = parsed.drivername
    if name in _DRIVERS:
        return parsed.set(drivername=_DRIVERS[name])
    if name in _DRIVERS.values():
        return parsed
    raise DatabaseError(f"{VARIABLE}: unsupported database {name!r} (use sqlite:/// or postgresql://)")


def where(url: sa.URL) -> str:
    """The database as a message names it: its kind and place, without user or password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


async def open_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """An engine for `url`, proven by one connection: reachable, credentials accepted, recent enough.

    Each process holds at most `pool_size` connections; a request waits for a free one rather than
    opening more, so replicas × workers × pool_size bounds what PostgreSQL must accept. Every use is a
    whole transaction (`Store._begin`), committed or rolled back, so a returned connection has nothing
    to reset: skipping the pool's rollback saves a round trip on every token check.
    """
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        if target.database not in (None, "", ":memory:"):
            await anyio.to_thread.run_sync(_make_folder, str(target.database))
        engine = create_async_engine(target, pool_size=pool_size, max_overflow=0, pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
    else:
        engine = create_async_engine(
            target,
            pool_size=pool_size,
            max_overflow=0,
            pool_reset_on_return=None,
            # No ping before each use (a round trip on every token check): a connection a database restart
            # broke fails one request, and is replaced; none is kept past five minutes.
            pool_recycle=300,
            connect_args={"timeout": CONNECT_TIMEOUT},
        )
    try:
        async with engine.connect() as connection:
            check_server(target, connection.dialect.server_version_info)
    except DatabaseError:
        await engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as error:
        await engine.dispose()
        raise explain(error, target) from None
    return engine


def check_server(url: sa.URL, version: tuple[Any, ...] | None) -> None:
    """Refuse a PostgreSQL older than `MIN_POSTGRES`."""
    if url.get_backend_name() != "postgresql" or version is None:
        return
    if tuple(version[:2]) < MIN_POSTGRES:
        found = ".".join(str(part) for part in version[:2])
        raise DatabaseError(
            f"{VARIABLE}: {where(url)} runs PostgreSQL {found}; polar-mcp needs {MIN_POSTGRES[0]} or newer"
        )


def explain(error: BaseException, url: sa.URL) -> DatabaseError:
    """A failure to use the database, in the operator's terms."""
    chain = _causes(error)
    states = {
        str(state) for cause in chain if (state := getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None))
    }
    if states & set(_BAD_CREDENTIALS):
        return DatabaseError(f"{VARIABLE}: {where(url)} refused the user name or password")
    if _NO_DATABASE in states:
        return DatabaseError(f"{VARIABLE}: {where(url)}: no such database (create it first; polar-mcp creates tables)")
    if any(isinstance(cause, socket.gaierror) for cause in chain):
        return DatabaseError(f"{VARIABLE}: cannot reach {where(url)}: unknown host name")
    if any(isinstance(cause, (OSError, TimeoutError)) for cause in chain):
        return DatabaseError(f"{VARIABLE}: cannot reach {where(url)} (is the server running, and the port right?)")
    return DatabaseError(f"{VARIABLE}: cannot use {where(url)} ({type(chain[-1]).__name__})")


class RowReader:
    """One-statement reads of one row, the cheapest way each database allows; they need no transaction.

    On PostgreSQL the connection is in autocommit for the read (asyncpg's autocommit is a flag on the
    connection, set without a round trip), which saves the BEGIN and COMMIT round trips. A SQLite file
    is read whole in one worker thread on a plain (blocking) engine over the same file: through the
    async driver a one-row read is five trips to its connection thread and back (about 0.7 ms), this
    way one (about 0.2 ms); WAL mode shows it every write the other engine committed. An in-memory
    SQLite database is read through its only engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.local: sa.Engine | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            pool = engine.sync_engine.pool
            size = pool.size() if isinstance(pool, sa.QueuePool) else DEFAULT_POOL_SIZE
            self.local = sa.create_engine(
                url.set(drivername="sqlite"), pool_size=size, max_overflow=0, pool_reset_on_return=None
            )
            event.listen(self.local, "connect", _sqlite_connect)

    async def first(self, statement: sa.Executable, parameters: dict[str, Any]) -> sa.Row[Any] | None:
        local = self.local
        if local is not None:

            def read() -> sa.Row[Any] | None:
                with local.connect() as db:
                    return db.execute(statement, parameters).first()

            return await anyio.to_thread.run_sync(read)
        async with self._engine.connect() as connection:
            if self._engine.dialect.name == "postgresql":
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return (await connection.execute(statement, parameters)).first()

    async def close(self) -> None:
        if self.local is not None:
            await anyio.to_thread.run_sync(self.local.dispose)


@asynccontextmanager
async def migration_transaction(engine: AsyncEngine) -> AsyncGenerator[AsyncConnection]:
    """A transaction that only one process at a time holds: replicas starting together migrate in turn,
    and each finds the work done by the one before."""
    async with engine.connect() as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        else:
            # The driver opens no transaction before DDL by itself; this one takes the file's write lock now.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return chain


def _sqlite_connect(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers work while one writer commits; busy_timeout waits instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _make_folder(database: str) -> None:
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
