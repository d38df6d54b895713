"""Sessions minted from an organization token, against the double over loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from polar_mcp.catalog import Catalog
from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_ORG_TOKEN,
    DEMO_READONLY_ORG_TOKEN,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_MEMBER_EXTERNAL_ID,
    DEMO_TEAM_ORG_TOKEN,
    demo_store,
)
from polar_mcp.double.store import Store
from polar_mcp.polar.client import PolarClient
from polar_mcp.polar.errors import ConfigurationError
from polar_mcp.polar.minting import CustomerRef, MintedSession
from polar_mcp.server import build_server
from tests.helpers.clock import FakeTime

pytestmark = pytest.mark.anyio

MINT_PATH = "/v1/customer-sessions/"


@pytest.fixture
def clock() -> FakeTime:
    """The wall clock of the double and of the minting code: it moves only when a test says so."""
    return FakeTime(wall=1_900_000_000.0)


@pytest.fixture
def store(clock: FakeTime) -> Store:
    return demo_store(clock=clock.wall_clock)


@pytest.fixture
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running


def _mints(store: Store) -> int:
    return store.request_counts().get(MINT_PATH, 0)


@asynccontextmanager
async def _minted(
    double: RunningDouble, clock: FakeTime, customer: CustomerRef, org_token: str = DEMO_ORG_TOKEN
) -> AsyncIterator[tuple[Catalog, MintedSession]]:
    async with PolarClient.new_http_client(double.base_url, 10) as http:
        client = PolarClient(http, timeout=10)
        source = MintedSession(client, SecretStr(org_token), customer, wall_clock=clock.wall_clock)
        yield Catalog(client, wall_clock=clock.wall_clock), source


ADA = CustomerRef(external_customer_id=DEMO_CUSTOMER_EXTERNAL_ID)


async def test_the_first_call_mints_a_session_and_later_calls_reuse_it(
    store: Store, double: RunningDouble, clock: FakeTime
) -> None:
    async with _minted(double, clock, ADA) as (catalog, source):
        first = await catalog.list(source)
        second = await catalog.list(source, query="rust")
    assert first.total_count > 0
    assert second.total_count == 3  # the two rust-in-practice files, and errata.txt of the Rust Ebook Bundle
    assert _mints(store) == 1


async def test_a_session_is_renewed_shortly_before_it_expires(
    store: Store, double: RunningDouble, clock: FakeTime
) -> None:
    async with _minted(double, clock, ADA) as (catalog, source):
        await catalog.list(source)
        clock.advance(3600 - 301)  # more than the renewal margin left: no renewal yet
        await catalog.list(source)
        assert _mints(store) == 1
        clock.advance(2)  # now inside the margin
        await catalog.list(source)
        assert _mints(store) == 2
        assert source.expires_at is not None
        assert source.expires_at.timestamp() == pytest.approx(clock.wall + 3600, abs=1)


async def test_a_rejected_session_is_reminted_once_and_the_call_retried(
    store: Store, double: RunningDouble, clock: FakeTime
) -> None:
    async with _minted(double, clock, ADA) as (catalog, source):
        await catalog.list(source)
        store.sessions.clear()  # Polar forgot the session (revoked): the next call gets 401
        listing = await catalog.list(source)
    assert listing.total_count > 0
    assert _mints(store) == 2


async def test_twenty_concurrent_calls_share_one_mint(store: Store, double: RunningDouble, clock: FakeTime) -> None:
    async with _minted(double, clock, ADA) as (catalog, source), anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(catalog.list, source)
    assert _mints(store) == 1


async def test_a_team_organization_mints_member_tokens(store: Store, double: RunningDouble, clock: FakeTime) -> None:
    team = CustomerRef(
        external_customer_id=DEMO_TEAM_CUSTOMER_EXTERNAL_ID, external_member_id=DEMO_TEAM_MEMBER_EXTERNAL_ID
    )
    async with _minted(double, clock, team, DEMO_TEAM_ORG_TOKEN) as (catalog, source):
        token = await source.token()
        listing = await catalog.list(source)
    assert token.get_secret_value().startswith("polar_mst_")
    assert listing.total_count > 0


@pytest.mark.parametrize(
    ("org_token", "customer", "message"),
    [
        (
            "polar_oat_not_a_real_token",
            ADA,
            "Polar rejected POLAR_ACCESS_TOKEN: the organization token is invalid, expired or revoked. "
            "Create a new organization access token with the customer_sessions:write scope.",
        ),
        (
            DEMO_READONLY_ORG_TOKEN,
            ADA,
            "POLAR_ACCESS_TOKEN lacks the customer_sessions:write scope. Create an organization access "
            "token with that single scope.",
        ),
        (
            DEMO_ORG_TOKEN,
            CustomerRef(customer_id="0b9e4c6a-0000-4000-8000-000000000000"),
            "Polar has no customer for POLAR_CUSTOMER_ID=0b9e4c6a-0000-4000-8000-000000000000; check the id "
            "in the Polar dashboard (POLAR_CUSTOMER_ID is Polar's id, POLAR_EXTERNAL_CUSTOMER_ID your own).",
        ),
        (
            DEMO_TEAM_ORG_TOKEN,
            CustomerRef(external_customer_id=DEMO_TEAM_CUSTOMER_EXTERNAL_ID),
            f"POLAR_EXTERNAL_CUSTOMER_ID={DEMO_TEAM_CUSTOMER_EXTERNAL_ID} is a team customer: set "
            "POLAR_MEMBER_ID or POLAR_EXTERNAL_MEMBER_ID to the member the assistant acts for.",
        ),
        (
            DEMO_TEAM_ORG_TOKEN,
            CustomerRef(external_customer_id=DEMO_TEAM_CUSTOMER_EXTERNAL_ID, external_member_id="nobody"),
            f"Polar has no such member for this customer (POLAR_EXTERNAL_CUSTOMER_ID={DEMO_TEAM_CUSTOMER_EXTERNAL_ID}, "
            "POLAR_EXTERNAL_MEMBER_ID=nobody); check POLAR_EXTERNAL_MEMBER_ID (POLAR_MEMBER_ID is Polar's member "
            "id, POLAR_EXTERNAL_MEMBER_ID your own).",
        ),
        (
            DEMO_TEAM_ORG_TOKEN,
            CustomerRef(
                external_customer_id=DEMO_TEAM_CUSTOMER_EXTERNAL_ID, member_id="0b9e4c6a-0000-4000-8000-00000000beef"
            ),
            f"Polar has no such member for this customer (POLAR_EXTERNAL_CUSTOMER_ID={DEMO_TEAM_CUSTOMER_EXTERNAL_ID}, "
            "POLAR_MEMBER_ID=0b9e4c6a-0000-4000-8000-00000000beef); check POLAR_MEMBER_ID (POLAR_MEMBER_ID is "
            "Polar's member id, POLAR_EXTERNAL_MEMBER_ID your own).",
        ),
    ],
    ids=[
        "bad-token",
        "missing-scope",
        "unknown-customer",
        "team-without-member",
        "unknown-external-member",
        "unknown-member",
    ],
)
async def test_minting_failures_name_the_setting_to_fix(
    double: RunningDouble, clock: FakeTime, org_token: str, customer: CustomerRef, message: str
) -> None:
    async with _minted(double, clock, customer, org_token) as (catalog, source):
        with pytest.raises(ConfigurationError) as raised:
            await catalog.list(source)
    assert raised.value.message == message


async def test_the_organization_token_appears_in_no_output_or_log(
    store: Store, double: RunningDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {
        "POLAR_API_URL": double.base_url,
        "POLAR_ACCESS_TOKEN": DEMO_ORG_TOKEN,
        "POLAR_EXTERNAL_CUSTOMER_ID": DEMO_CUSTOMER_EXTERNAL_ID,
    }
    outputs: list[str] = []
    async with Client(build_server(load_settings(env))) as client:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_downloadables", {}),
            ("get_download_link", {"name": "errata"}),
            ("get_download_link", {"name": "nothing-like-this"}),
        ]
        for name, arguments in calls:
            outputs.append((await client.call_tool(name, arguments)).model_dump_json())
        store.sessions.clear()
        outputs.append((await client.call_tool("list_downloadables", {"query": "rust"})).model_dump_json())
    minted = [s.token for s in store.sessions.values()]
    assert '"is_error":false' in outputs[0]
    for secret in (DEMO_ORG_TOKEN, *minted):
        assert all(secret not in output for output in outputs)
        assert secret not in caplog.text


async def test_a_static_session_wins_over_minting_and_the_log_says_so(
    store: Store, double: RunningDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    session = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    env = {
        "POLAR_API_URL": double.base_url,
        "POLAR_CUSTOMER_SESSION": session,
        "POLAR_ACCESS_TOKEN": DEMO_ORG_TOKEN,
        "POLAR_EXTERNAL_CUSTOMER_ID": DEMO_CUSTOMER_EXTERNAL_ID,
    }
    async with Client(build_server(load_settings(env))) as client:
        result = await client.call_tool("list_downloadables", {})
    assert not result.is_error
    assert _mints(store) == 0
    assert "POLAR_CUSTOMER_SESSION is set: using it, not minting with POLAR_ACCESS_TOKEN" in caplog.text
