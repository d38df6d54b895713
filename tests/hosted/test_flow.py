"""The whole flow through the SDK's own OAuth client: discovery, registration, the page, tokens, tools."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from polar_mcp.double.store import Store
from tests.hosted.support import ADA_EMAIL, SELLER_NAME, Browser, FakeClock, Mailbox, RunningHosted, oauth_for

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
