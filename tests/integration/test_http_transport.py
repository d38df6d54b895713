"""Streamable HTTP, many tenants: each request's bearer is its own identity, nothing crosses over."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from polar_mcp.config import ConfigError, load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, DEMO_OTHER_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from polar_mcp.http import build_http_app, check_bind
from tests.helpers.loopback import serve_asgi

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def mcp_url(double: RunningDouble) -> Iterator[str]:
    settings = load_settings({"POLAR_API_URL": double.base_url, "POLAR_MCP_TIMEOUT": "10"})
    with serve_asgi(build_http_app(settings, use_configured_token=False)) as base:
        yield base + "/mcp"


def _token(store: Store, external_id: str) -> str:
    return store.issue_session(store.customer_by_external_id(external_id).id)


@asynccontextmanager
async def _client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def _names(url: str, token: str) -> set[str]:
    async with _client(url, token) as client:
        result = await client.call_tool("list_downloadables", {"limit": 100})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {item["name"] for item in result.structured_content["items"]}


async def test_two_tenants_calling_concurrently_each_see_only_their_own_catalog(store: Store, mcp_url: str) -> None:
    ada = _token(store, DEMO_CUSTOMER_EXTERNAL_ID)
    grace = _token(store, DEMO_OTHER_CUSTOMER_EXTERNAL_ID)
    alone_ada = await _names(mcp_url, ada)
    alone_grace = await _names(mcp_url, grace)
    assert alone_ada
    assert alone_grace
    assert alone_ada != alone_grace
    seen: dict[int, set[str]] = {}

    async def call(index: int, token: str) -> None:
        seen[index] = await _names(mcp_url, token)

    async with anyio.create_task_group() as group:
        for index in range(12):
            group.start_soon(call, index, ada if index % 2 == 0 else grace)
    for index, names in seen.items():
        assert names == (alone_ada if index % 2 == 0 else alone_grace)


async def test_a_cached_link_is_never_served_to_another_tenant(store: Store, mcp_url: str) -> None:
    ada = _token(store, DEMO_CUSTOMER_EXTERNAL_ID)
    grace = _token(store, DEMO_OTHER_CUSTOMER_EXTERNAL_ID)
    async with _client(mcp_url, ada) as client:
        listing = await client.call_tool("list_downloadables", {"limit": 1})
        assert listing.structured_content is not None
        ada_item = listing.structured_content["items"][0]["id"]
        assert not (await client.call_tool("get_download_link", {"downloadable_id": ada_item})).is_error
    async with _client(mcp_url, grace) as client:
        foreign = await client.call_tool("get_download_link", {"downloadable_id": ada_item})
    assert foreign.is_error
    assert "No downloadable has the id" in foreign.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer polar_oat_merchant_token", "Basic dXNlcjpwYXNz", "Bearer", "polar_cst_without_scheme"],
)
async def test_requests_without_a_session_bearer_get_a_plain_401(mcp_url: str, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with httpx2.AsyncClient() as http:
        response = await http.post(mcp_url, headers=headers, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="polar-mcp"'


async def test_a_foreign_host_header_is_refused(store: Store, mcp_url: str) -> None:
    token = _token(store, DEMO_CUSTOMER_EXTERNAL_ID)
    headers = {
        "Authorization": f"Bearer {token}",
        "Host": "evil.example.com",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(mcp_url, headers=headers, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert response.status_code == 421


async def test_healthz_answers_without_a_token(mcp_url: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(mcp_url.removesuffix("/mcp") + "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_binding_a_public_address_without_allowed_hosts_is_refused() -> None:
    with pytest.raises(ConfigError, match="POLAR_MCP_ALLOWED_HOSTS"):
        check_bind(load_settings({"POLAR_MCP_HOST": "0.0.0.0"}))
    check_bind(load_settings({"POLAR_MCP_HOST": "0.0.0.0", "POLAR_MCP_ALLOWED_HOSTS": "mcp.example.com"}))


def test_the_configured_token_is_only_allowed_on_loopback() -> None:
    env = {"POLAR_MCP_ALLOW_CONFIGURED_TOKEN": "1", "POLAR_MCP_ALLOWED_HOSTS": "mcp.example.com"}
    with pytest.raises(ConfigError, match="loopback"):
        check_bind(load_settings({**env, "POLAR_MCP_HOST": "0.0.0.0"}))
    check_bind(load_settings({**env, "POLAR_MCP_HOST": "127.0.0.1"}))
