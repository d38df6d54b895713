"""The whole flow through the SDK's own OAuth client: discovery, registration, the page, tokens, tools."""

from __future__ import annotations

import time

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from polar_mcp.double.store import Store
from tests.helpers.hosted import (
    ADA_EMAIL,
    SELLER_NAME,
    Browser,
    FakeClock,
    Mailbox,
    MemoryStorage,
    RunningHosted,
    hosted_server,
    oauth_for,
)

pytestmark = pytest.mark.anyio


async def _file_names(client: Client) -> set[str]:
    result = await client.call_tool("list_downloadables", {"limit": 100})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return {item["name"] for item in result.structured_content["items"]}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_buyer_signs_in_with_an_emailed_code_and_lists_their_files(
    server: RunningHosted, mailbox: Mailbox, store: Store, clock: FakeClock, mode: str
) -> None:
    async with httpx2.AsyncClient() as browser_http:
        browser = Browser(browser_http, mailbox, ADA_EMAIL)
        oauth = oauth_for(server.mcp_url, browser)
        async with (
            httpx2.AsyncClient(auth=oauth, timeout=30) as http,
            Client(streamable_http_client(server.mcp_url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
        ):
            names = await _file_names(client)

    ada = store.customer_by_external_id("ada-1815")
    assert names
    assert names == {row.file.name for row in store.downloadables(store.open_session(ada.id, None, 60, None))}
    message = mailbox.to(ADA_EMAIL)[-1]
    assert SELLER_NAME in str(message["Subject"])
    assert [page.status_code for page in browser.pages] == [200, 200, 200, 303]
    assert SELLER_NAME in browser.pages[0].text
    assert "Test Assistant" in browser.pages[2].text


MINT_PATH = "/v1/customer-sessions/"


async def test_access_lasts_through_refresh_an_expired_polar_session_and_a_server_restart(
    env: dict[str, str], mailbox: Mailbox, store: Store, clock: FakeClock, polar_clock: FakeClock
) -> None:
    storage = MemoryStorage()
    mails_before = len(mailbox.to(ADA_EMAIL))
    async with httpx2.AsyncClient() as browser_http:
        browser = Browser(browser_http, mailbox, ADA_EMAIL)
        oauth = oauth_for(env["POLAR_MCP_PUBLIC_URL"] + "/mcp", browser, storage)
        with hosted_server(env, clock) as server:
            first = await _list_once(server.mcp_url, oauth)
            mints = store.request_counts()[MINT_PATH]

            # Polar's session (one hour) ends; the server mints a new one on the 401, unseen by the buyer.
            polar_clock.advance(2 * 3600)
            assert await _list_once(server.mcp_url, oauth) == first
            assert store.request_counts()[MINT_PATH] == mints + 1

            # The app's access token ends too (an hour on the server's clock): it refreshes, rotating.
            clock.advance(3601)
            assert storage.tokens is not None
            old_refresh = storage.tokens.refresh_token
            oauth.context.token_expiry_time = time.time() - 1  # the client's own view of the expiry
            assert await _list_once(server.mcp_url, oauth) == first
            assert storage.tokens.refresh_token not in (None, old_refresh)

        with hosted_server(env, clock) as restarted:
            assert await _list_once(restarted.mcp_url, oauth) == first

    assert len(mailbox.to(ADA_EMAIL)) == mails_before + 1, "signed in once, for the whole test"


async def _list_once(url: str, oauth: httpx2.Auth) -> set[str]:
    async with (
        httpx2.AsyncClient(auth=oauth, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        return await _file_names(client)
