"""The database layer: its schema version, migrations, cleanup, and that no secret is stored as is."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from polar_mcp.hosted.store import SCHEMA_VERSION, DatabaseError, Family, Store, async_url, schema_version

pytestmark = pytest.mark.anyio

NOW = 1_900_000_000.0


async def test_the_schema_is_created_once_and_carries_its_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'state.sqlite3'}"
    first = await Store.open(url)
    await first.add_client("client-1", "{}", ["https://app.example/cb"], NOW)
    await first.close()

    again = await Store.open(url)
    try:
        assert await again.version() == SCHEMA_VERSION
        assert await again.client("client-1") == ("{}", ["https://app.example/cb"])
        assert await again.healthy()
    finally:
        await again.close()


async def test_a_database_from_a_newer_polar_mcp_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    store = await Store.open(url)
    async with store._engine.begin() as db:  # pyright: ignore[reportPrivateUsage]
        await db.execute(sa.update(schema_version).values(version=SCHEMA_VERSION + 1))
    await store.close()

    with pytest.raises(DatabaseError) as raised:
        await Store.open(url)

    assert "POLAR_MCP_DATABASE_URL" in str(raised.value)


def test_database_urls_map_to_async_drivers_and_others_are_refused() -> None:
    assert async_url("sqlite:////var/lib/polar-mcp/state.sqlite3").drivername == "sqlite+aiosqlite"
    assert async_url("postgresql://u:p@db/polar").drivername == "postgresql+asyncpg"
    with pytest.raises(DatabaseError) as raised:
        async_url("mysql://u:secret@db/polar")
    assert "secret" not in str(raised.value)


async def test_expired_rows_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    try:
        await store.add_flow("flow-old", "client", {}, NOW + 10)
        await store.add_flow("flow-live", "client", {}, NOW + 10_000)
        await store.add_code("code-old", "client", ("customer", None), {}, NOW + 10)
        family = Family("family-old", "client", "customer", None, "https://x/mcp", [], NOW + 20, revoked=False)
        await store.add_family(family, NOW)
        await store.add_token("token-old", "access", "family-old", NOW + 10)
        await store.add_family(
            Family("family-live", "client", "c2", None, "https://x/mcp", [], NOW + 99_999, False), NOW
        )
        await store.add_token("token-live", "refresh", "family-live", NOW + 99_999)
        assert await store.hit("counter", limit=5, window=10, now=NOW)
        await store.add_client("client", "{}", [], NOW - 40 * 86400)  # its family is live
        await store.add_client("unused", "{}", [], NOW - 40 * 86400)
        await store.add_client("recent", "{}", [], NOW)

        removed = await store.prune(NOW + 100)

        assert removed == 6
        assert [await store.client(name) is not None for name in ("client", "unused", "recent")] == [
            True,
            False,
            True,
        ]
        assert [await store.count(table) for table in ("signin_flows", "authorization_codes", "oauth_tokens")] == [
            1,
            0,
            1,
        ]
        assert await store.count("token_families") == 1
        assert await store.count("rate_counters") == 0
    finally:
        await store.close()


async def test_a_fixed_window_counts_up_to_its_limit_then_opens_again(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    try:
        hits = [await store.hit("k", limit=2, window=60, now=NOW + offset) for offset in (0, 1, 2, 59, 61)]
    finally:
        await store.close()

    assert hits == [True, True, False, False, True]


def _family(family_id: str) -> Family:
    return Family(
        family_id=family_id,
        client_id="client-1",
        customer_id="customer-1",
        member_id=None,
        resource="https://mcp.example/mcp",
        scopes=["files"],
        expires_at=NOW + 3600,
        revoked=False,
    )


async def test_the_token_check_sees_a_revocation_by_another_replica_at_once(tmp_path: Path) -> None:
    # A SQLite file's token check reads through its own blocking engine in a worker thread: what another
    # replica's store commits to the same file (here: a revocation) is seen by the very next check.
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    store, other = await Store.open(url), await Store.open(url)
    try:
        assert store._reads.local is not None  # pyright: ignore[reportPrivateUsage]
        await other.add_client("client-1", "{}", ["https://app.example/cb"], NOW)
        await other.add_family(_family("family-1"), NOW)
        await other.add_token("hash-1", "access", "family-1", NOW + 3600)
        assert await store.token("no-such-hash") is None

        seen = await store.token("hash-1")
        assert seen is not None
        assert (seen.kind, seen.family.revoked, seen.family.scopes, seen.expires_at) == (
            "access",
            False,
            ["files"],
            NOW + 3600,
        )

        await other.revoke_family("family-1")
        assert await store.token("hash-1") is None
    finally:
        await other.close()
        await store.close()
