"""The PostgreSQL the hosted connector's tests stand on: reached through SQLAlchemy's async engine on
asyncpg (the driver the connector uses), shared between connections, and gone when the session ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.helpers.postgres import PostgresServer, database_name, running_postgres

pytestmark = pytest.mark.anyio


def _asyncpg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def test_a_query_runs_on_the_test_database_through_sqlalchemy_and_asyncpg(postgres_url: str) -> None:
    engine = create_async_engine(_asyncpg(postgres_url))
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text("select current_database(), current_user, current_setting('server_version_num')::int / 10000")
                )
            ).one()
    finally:
        await engine.dispose()

    assert tuple(row) == (postgres_url.rsplit("/", 1)[1], "postgres", 15)


async def test_two_connections_see_each_others_rows_once_committed_and_not_before(postgres_url: str) -> None:
    engine = create_async_engine(_asyncpg(postgres_url))
    select_all = text("select who from visits order by who")
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("create table visits (who text primary key)"))
            await first.execute(text("insert into visits values ('first')"))
            await first.commit()
            await second.execute(text("insert into visits values ('second')"))
            seen_before_commit = (await first.execute(select_all)).scalars().all()
            await first.commit()  # ends first's snapshot, so its next read sees what has been committed since
            await second.commit()
            seen_by_first = (await first.execute(select_all)).scalars().all()
            seen_by_second = (await second.execute(select_all)).scalars().all()
    finally:
        await engine.dispose()

    assert (seen_before_commit, seen_by_first, seen_by_second) == (
        ["first"],
        ["first", "second"],
        ["first", "second"],
    )


async def test_each_test_gets_an_empty_database_of_its_own(
    postgres: PostgresServer, postgres_url: str, request: pytest.FixtureRequest
) -> None:
    # Another test's database, made the way the fixture makes this one's (whatever ran before).
    other_url = postgres.create_database(database_name(request.node.nodeid + "[another test]"))
    mine, other = create_async_engine(_asyncpg(postgres_url)), create_async_engine(_asyncpg(other_url))
    try:
        async with mine.begin() as connection:
            tables_at_first = await _public_tables(connection)
            await connection.execute(text("create table only_here (id integer)"))
        async with other.connect() as connection:
            tables_of_the_other = await _public_tables(connection)
    finally:
        await mine.dispose()
        await other.dispose()

    assert other_url != postgres_url
    assert (tables_at_first, tables_of_the_other) == ([], [])


async def _public_tables(connection: AsyncConnection) -> list[str]:
    query = text("select table_name from information_schema.tables where table_schema = 'public'")
    return list((await connection.execute(query)).scalars().all())


def _processes_of(postmaster: int) -> set[int]:
    """The postmaster and its children (checkpointer, walwriter, backends...), from /proc."""
    children = {
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _stat(entry.name)[1] == postmaster
    }
    return {postmaster, *children}


def _running(pid: int) -> bool:
    """Still running: an exited process that its parent has not reaped yet (a zombie) does not count."""
    state, _ = _stat(str(pid))
    return state not in ("", "Z")


def _stat(pid: str) -> tuple[str, int]:
    """A process's state letter and its parent's id; ("", 0) once it is gone."""
    try:
        stat = Path("/proc", pid, "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return "", 0
    # The command name, in parentheses, may hold spaces: the fields after the last ')' are fixed.
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(parent)


def test_a_server_leaves_no_process_and_no_folder_behind_even_when_its_user_fails() -> None:
    seen: dict[str, Any] = {}

    def use_and_fail() -> None:
        with running_postgres() as server:
            seen.update(processes=_processes_of(server.pid), folder=server.root)
            raise LookupError("the code using the server failed")

    with pytest.raises(LookupError, match="the code using the server failed"):
        use_and_fail()

    assert len(seen["processes"]) > 1, "a running server has its background workers"
    assert ([pid for pid in seen["processes"] if _running(pid)], seen["folder"].exists()) == ([], False)
