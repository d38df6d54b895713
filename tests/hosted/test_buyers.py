"""Each buyer sees their own files only, a buyer the seller removed is refused at once, and nothing
secret reaches the logs, even at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from tests.helpers.hosted import (
    ADA_EMAIL,
    GRACE_EMAIL,
    HOSTED_ORG_TOKEN,
    SECRET_KEY,
    Browser,
    FakeClock,
    Mailbox,
    RunningHosted,
    exchange,
    hosted_server,
    oauth_for,
    polar_server,
    register,
    sign_in,
    tools_list,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(polar_clock: FakeClock) -> Store:
    """A store of this test's own: tests here remove customers."""
    return demo_store(clock=polar_clock)


@pytest.fixture
def polar_url(store: Store) -> Iterator[str]:
    with polar_server(store) as url:
        yield url


@pytest.fixture
def own_server(env: dict[str, str], clock: FakeClock) -> Iterator[RunningHosted]:
    with hosted_server(env, clock) as running:
        yield running


async def _names(url: str, oauth: httpx2.Auth) -> set[str]:
    async with (
        httpx2.AsyncClient(auth=oauth, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool("list_downloadables", {"limit": 100})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {item["name"] for item in result.structured_content["items"]}


def _catalog(store: Store, email: str) -> set[str]:
    customer = next(customer for customer in store.customers.values() if customer.email == email)
    return {row.file.name for row in store.downloadables(store.open_session(customer.id, None, 60, None))}


async def test_two_buyers_signed_in_at_once_each_see_only_their_own_files(
    own_server: RunningHosted, mailbox: Mailbox, store: Store
) -> None:
    seen: dict[str, set[str]] = {}
    async with httpx2.AsyncClient() as ada_browser, httpx2.AsyncClient() as grace_browser:
        oauth = {
            ADA_EMAIL: oauth_for(own_server.mcp_url, Browser(ada_browser, mailbox, ADA_EMAIL)),
            GRACE_EMAIL: oauth_for(own_server.mcp_url, Browser(grace_browser, mailbox, GRACE_EMAIL)),
        }
        for email in oauth:  # sign both in first, then call concurrently
            seen[email] = await _names(own_server.mcp_url, oauth[email])

        async def again(email: str) -> None:
            assert await _names(own_server.mcp_url, oauth[email]) == seen[email]

        async with anyio.create_task_group() as group:
            for _ in range(3):
                for email in oauth:
                    group.start_soon(again, email)

    assert seen[ADA_EMAIL] == _catalog(store, ADA_EMAIL)
    assert seen[GRACE_EMAIL] == _catalog(store, GRACE_EMAIL)
    assert seen[ADA_EMAIL] != seen[GRACE_EMAIL]


async def test_a_buyer_the_seller_removed_is_refused_on_the_next_call(
    own_server: RunningHosted, mailbox: Mailbox, store: Store
) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        client_id = (await register(http, own_server.base_url))["client_id"]
        code = await sign_in(http, own_server.base_url, mailbox, client_id, GRACE_EMAIL)
        tokens = (await exchange(http, own_server.base_url, client_id, code)).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as authorized,
            Client(streamable_http_client(own_server.mcp_url, http_client=authorized)) as client,
        ):
            before = await client.call_tool("list_downloadables", {})
            grace = next(customer for customer in store.customers.values() if customer.email == GRACE_EMAIL)
            # The seller deletes the customer: Polar forgets them and their sessions.
            del store.customers[grace.id]
            for token in [token for token, session in store.sessions.items() if session.customer_id == grace.id]:
                del store.sessions[token]
            refused = await client.call_tool("list_downloadables", {})

        afterwards = await tools_list(http, own_server.mcp_url, tokens["access_token"])
        refreshed = await http.post(
            own_server.base_url + "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
        )

    assert not before.is_error
    assert refused.is_error
    assert "Ferris Press no longer has this customer on record, so access has ended." in str(refused.content)
    assert afterwards.status_code == 401
    assert refreshed.status_code == 400


async def test_nothing_secret_reaches_the_logs_at_debug(
    own_server: RunningHosted, mailbox: Mailbox, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx2.AsyncClient() as browser_http:
        browser = Browser(browser_http, mailbox, ADA_EMAIL)
        oauth = oauth_for(own_server.mcp_url, browser)
        await _names(own_server.mcp_url, oauth)
    assert oauth.context.current_tokens is not None
    assert oauth.context.client_info is not None
    assert browser.landed is not None

    secrets = {
        "sign-in code": mailbox.code_for(ADA_EMAIL),
        "access token": oauth.context.current_tokens.access_token,
        "refresh token": str(oauth.context.current_tokens.refresh_token),
        "authorization code": browser.landed.split("code=")[1].split("&")[0],
        "organization token": HOSTED_ORG_TOKEN,
        "secret key": SECRET_KEY,
        "buyer's e-mail": ADA_EMAIL,
        **{f"Polar session {index}": token for index, token in enumerate(store.sessions)},
    }
    # The test's own parts (its OAuth client, its SMTP server, the double) log as they please; the rest is checked.
    server_side = [
        record
        for record in caplog.records
        if not record.name.startswith(("mcp.client", "mail.log", "polar_mcp.double"))
    ]
    leaks = [
        (name, record.name)
        for record in server_side
        for name, secret in secrets.items()
        if secret in record.getMessage() or secret in str(record.exc_info or "")
    ]
    assert len(server_side) > 10, "the server logged at DEBUG"
    assert leaks == []
    assert any(record.name.startswith("polar_mcp.hosted") for record in caplog.records)
