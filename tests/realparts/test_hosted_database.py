"""The hosted state on PostgreSQL: created and migrated by polar-mcp, by one replica at a time, in a
pool of the configured size; and start-up errors that say what is wrong without the password."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from polar_mcp.cli import main
from polar_mcp.exit_codes import ExitCode
from polar_mcp.hosted.database import DatabaseError, async_url, check_server, open_engine
from polar_mcp.hosted.store import SCHEMA_VERSION, Store, schema_version
from tests.helpers.hosted import free_port, hosted_env

pytestmark = pytest.mark.anyio

PASSWORD = "pw-that-must-never-show"


async def _versions(store: Store) -> list[int]:
    async with store._begin() as db:  # pyright: ignore[reportPrivateUsage]
        return list((await db.execute(sa.select(schema_version.c.version))).scalars())


async def test_the_schema_is_created_on_postgresql_and_opening_it_again_changes_nothing(postgres_url: str) -> None:
    first = await Store.open(postgres_url)
    await first.close()
    again = await Store.open(postgres_url.replace("postgresql://", "postgres://", 1))
    try:
        assert (await again.version(), await _versions(again), await again.count("oauth_clients")) == (
            SCHEMA_VERSION,
            [SCHEMA_VERSION],
            0,
        )
    finally:
        await again.close()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_replicas_starting_together_on_an_empty_database_migrate_it_once_and_all_start(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("postgres_url") if kind == "postgresql" else f"sqlite:///{tmp_path / 'h.sqlite3'}"
    opened: list[Store] = []

    async def replica() -> None:
        opened.append(await Store.open(url))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(replica)
    try:
        assert [await store.version() for store in opened] == [SCHEMA_VERSION] * 6
        assert await _versions(opened[0]) == [SCHEMA_VERSION]
    finally:
        for store in opened:
            await store.close()


async def test_a_process_never_holds_more_connections_than_its_pool_size(postgres_url: str) -> None:
    store = await Store.open(postgres_url, pool_size=2)
    database = postgres_url.rsplit("/", 1)[1]
    observer = await open_engine(postgres_url)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(store.healthy)
        async with observer.connect() as db:
            others = (
                await db.execute(
                    sa.text("select count(*) from pg_stat_activity where datname = :db and pid <> pg_backend_pid()"),
                    {"db": database},
                )
            ).scalar()
    finally:
        await observer.dispose()
        await store.close()

    assert others == 2


async def test_a_database_newer_than_this_polar_mcp_is_refused_by_name(postgres_url: str) -> None:
    store = await Store.open(postgres_url)
    async with store._begin() as db:  # pyright: ignore[reportPrivateUsage]
        await db.execute(sa.update(schema_version).values(version=SCHEMA_VERSION + 1))
    await store.close()

    with pytest.raises(DatabaseError) as raised:
        await Store.open(postgres_url)

    assert str(raised.value) == (
        f"POLAR_MCP_DATABASE_URL: the database has schema version {SCHEMA_VERSION + 1}, newer than this "
        f"polar-mcp knows ({SCHEMA_VERSION}); upgrade polar-mcp"
    )


async def test_a_server_nobody_listens_on_is_named_without_the_password() -> None:
    port = free_port()
    with pytest.raises(DatabaseError) as raised:
        await Store.open(f"postgresql://polar:{PASSWORD}@127.0.0.1:{port}/polar")

    assert str(raised.value) == (
        f"POLAR_MCP_DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:{port}/polar "
        "(is the server running, and the port right?)"
    )


async def test_refused_credentials_and_a_missing_database_are_told_apart(postgres_url: str) -> None:
    server = postgres_url.rsplit("/", 1)[0].split("@", 1)[1]
    with pytest.raises(DatabaseError) as refused:
        await Store.open(f"postgresql://intruder:{PASSWORD}@{server}/postgres")
    with pytest.raises(DatabaseError) as missing:
        await Store.open(postgres_url + "_never_created")

    assert str(refused.value) == (
        f"POLAR_MCP_DATABASE_URL: PostgreSQL at {server}/postgres refused the user name or password"
    )
    assert str(missing.value) == (
        f"POLAR_MCP_DATABASE_URL: PostgreSQL at {server}/{postgres_url.rsplit('/', 1)[1]}_never_created: "
        "no such database (create it first; polar-mcp creates tables)"
    )


def test_a_postgresql_older_than_12_is_refused_and_12_is_accepted() -> None:
    url = async_url("postgresql://polar:secret@db.internal:5433/polar")

    with pytest.raises(DatabaseError) as raised:
        check_server(url, (11, 22))
    check_server(url, (12, 0))

    assert str(raised.value) == (
        "POLAR_MCP_DATABASE_URL: PostgreSQL at db.internal:5433/polar runs PostgreSQL 11.22; "
        "polar-mcp needs 12 or newer"
    )


def test_the_server_refuses_to_start_on_a_database_it_cannot_reach_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    for name in [name for name in os.environ if name.startswith("POLAR")]:
        monkeypatch.delenv(name)
    env = hosted_env("http://127.0.0.1:9", "smtp://127.0.0.1:9", "unused", "http://127.0.0.1:9")
    env["POLAR_MCP_DATABASE_URL"] = f"postgresql://polar:{PASSWORD}@127.0.0.1:{port}/polar"
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code = main(["--port", str(free_port())])

    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG
    assert err.endswith(
        f"polar-mcp: Cannot start signin: POLAR_MCP_DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:{port}/polar "
        "(is the server running, and the port right?)\n"
    )
    assert PASSWORD not in err
