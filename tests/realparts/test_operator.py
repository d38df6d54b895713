"""`polar-mcp hosted revoke|clients|prune` through the CLI, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from polar_mcp.double.seed import demo_store
from polar_mcp.hosted.store import Family, Store
from tests.helpers.cli import Cli, in_process_cli
from tests.helpers.hosted import ADA_EMAIL, HOSTED_ORG_TOKEN, free_port, polar_server

CREATED = 1_764_460_800.0  # 2025-11-30 00:00 UTC
USED = CREATED + 3600 * 26 + 60 * 5  # 2025-12-01 02:05 UTC
FAR = 4_102_444_800.0  # 2100: alive whatever the machine's clock says
ADA = "c0ffee00-0000-4000-8000-000000000001"
GRACE = "c0ffee00-0000-4000-8000-000000000002"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/h.db"
    for name in [name for name in os.environ if name.startswith("POLAR")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("POLAR_MCP_DATABASE_URL", url)
    return url


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `polar-mcp ARGS...` in-process and return what it did."""
    return in_process_cli(capsys)


def _family(family_id: str, client_id: str, customer_id: str, expires_at: float = FAR) -> Family:
    return Family(family_id, client_id, customer_id, None, "https://files.example.com/mcp", [], expires_at, False)


async def _seed(url: str) -> None:
    """Two apps: one Ada and Grace use (Ada twice), one registered and never used."""
    store = await Store.open(url)
    try:
        await store.add_client(
            "app-used",
            json.dumps({"client_name": "Claude\x1b[31m Desktop"}),
            ["http://127.0.0.1:33418/callback", "https://claude.ai/api/mcp/auth_callback"],
            CREATED,
        )
        await store.add_client("app-idle", json.dumps({}), ["cursor://anysphere.cursor/oauth"], CREATED + 60)
        for family_id, customer in (("f-ada-1", ADA), ("f-ada-2", ADA), ("f-grace", GRACE)):
            await store.add_family(_family(family_id, "app-used", customer), CREATED)
            await store.add_token(f"hash-{family_id}", "refresh", family_id, FAR)
        await store.add_family(_family("f-old", "app-used", GRACE, expires_at=CREATED + 10), CREATED)
        await store.touch_client("app-used", USED)
    finally:
        await store.close()


async def _live_families(url: str) -> dict[str, int]:
    store = await Store.open(url)
    try:
        return {row.client_id: row.live_sign_ins for row in await store.clients_in_use(FAR - 1)}
    finally:
        await store.close()


def test_clients_lists_each_app_with_its_redirect_hosts_dates_and_live_sign_ins(database_url: str, cli: Cli) -> None:
    anyio.run(_seed, database_url)

    shown = cli("hosted", "clients")
    as_json = cli("hosted", "clients", "--json")

    assert (shown.code, shown.err) == (0, "")
    assert shown.out.splitlines() == [
        "NAME            REDIRECT HOSTS              CREATED           LAST USE          SIGN-INS  CLIENT ID",
        "Claude Desktop  127.0.0.1:33418, claude.ai  2025-11-30 00:00  2025-12-01 02:05  3         app-used",
        "(no name)       cursor://anysphere.cursor   2025-11-30 00:01  2025-11-30 00:01  0         app-idle",
    ]
    assert json.loads(as_json.out)[1] == {
        "client_id": "app-idle",
        "name": "",
        "redirect_hosts": ["cursor://anysphere.cursor"],
        "created_at": "2025-11-30T00:01:00+00:00",
        "last_used_at": "2025-11-30T00:01:00+00:00",
        "live_sign_ins": 0,
    }


def test_revoke_by_customer_id_ends_every_sign_in_of_that_buyer_and_no_other(database_url: str, cli: Cli) -> None:
    anyio.run(_seed, database_url)

    first = cli("hosted", "revoke", ADA.upper())
    again = cli("hosted", "revoke", ADA)

    assert (first.code, first.out) == (0, f"customer {ADA}: 2 sign-ins revoked\n")
    assert (again.code, again.out) == (0, f"customer {ADA}: 0 sign-ins revoked\n")
    assert anyio.run(_live_families, database_url) == {"app-used": 1, "app-idle": 0}


def test_revoke_by_email_asks_polar_which_customers_have_it(
    database_url: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    polar = demo_store()
    ada = polar.customer_by_external_id("ada-1815")
    store_url = database_url

    async def seed() -> None:
        store = await Store.open(store_url)
        try:
            await store.add_client("app", "{}", ["http://127.0.0.1:9/callback"], CREATED)
            await store.add_family(_family("f-ada", "app", ada.id), CREATED)
        finally:
            await store.close()

    anyio.run(seed)
    with polar_server(polar) as polar_url:
        monkeypatch.setenv("POLAR_API_URL", polar_url)
        monkeypatch.setenv("POLAR_ACCESS_TOKEN", HOSTED_ORG_TOKEN)
        revoked = cli("hosted", "revoke", ADA_EMAIL.upper())
        unknown = cli("hosted", "revoke", "nobody@example.com")

    assert (revoked.code, revoked.out, revoked.err) == (0, f"customer {ada.id}: 1 sign-in revoked\n", "")
    assert (unknown.code, unknown.out, unknown.messages) == (
        4,
        "",
        "polar-mcp: Polar has no customer of this organization with this e-mail; if the seller removed it, "
        "revoke by its customer id\n",
    )


def test_prune_removes_expired_rows_and_long_unused_registrations_and_says_how_many(
    database_url: str, cli: Cli
) -> None:
    anyio.run(_seed, database_url)

    first = cli("hosted", "prune")
    again = cli("hosted", "prune")

    # Grace's expired sign-in, and the app registered in 2025 that never signed anyone in.
    assert (first.code, first.out) == (0, "removed 2 expired rows\n")
    assert (again.code, again.out) == (0, "removed 0 expired rows\n")
    assert anyio.run(_live_families, database_url) == {"app-used": 3}


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> int:
    port = free_port()
    for name in [name for name in os.environ if name.startswith("POLAR")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("POLAR_MCP_DATABASE_URL", f"postgresql://polar:hunter2-secret@127.0.0.1:{port}/polar")
    return port


def test_an_unreachable_database_is_a_configuration_error_without_its_password(unreachable: int, cli: Cli) -> None:
    result = cli("hosted", "clients")

    assert (result.code, result.out, result.messages) == (
        2,
        "",
        f"polar-mcp: POLAR_MCP_DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:{unreachable}/polar "
        "(is the server running, and the port right?)\n",
    )
    assert "hunter2" not in result.err
