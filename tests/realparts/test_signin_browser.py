"""A person signs in through a real browser: the MCP client (the SDK's OAuth client) starts the
authorization and hands the address to headless Chromium instead of following it itself; the person
types their e-mail, reads the code from the mail server, types it, allows the app, and lands on the
app's own loopback page; the client then exchanges the code and lists the files. On SQLite and on
PostgreSQL. A failing run keeps a picture of every page (tests/realparts/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from pydantic import AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from tests.helpers.browser import Browser
from tests.helpers.hosted import (
    ADA_EMAIL,
    SELLER_NAME,
    FakeClock,
    Mailbox,
    MemoryStorage,
    free_port,
    hosted_env,
    hosted_server,
    polar_server,
    smtp_server,
)
from tests.helpers.loopback import serve_asgi

pytestmark = pytest.mark.anyio


async def _landing(_: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>Test Assistant</title><p>Signed in. You can close this window.</p>")


APP_PAGE = Starlette(routes=[Route("/callback", _landing)])
"""The app's own loopback page, where the browser lands with the authorization code."""


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[str, Mailbox]]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def polar() -> Iterator[tuple[Store, str]]:
    store = demo_store()
    with polar_server(store) as url:
        yield store, url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'hosted.sqlite3'}"


class Person:
    """Ada at the browser: the redirect and callback handlers of the SDK's OAuth client."""

    def __init__(self, browser: Browser, mailbox: Mailbox) -> None:
        self.browser = browser
        self.mailbox = mailbox
        self.seen: list[tuple[str, str]] = []

    async def open(self, authorization_url: str) -> None:
        await anyio.to_thread.run_sync(self._sign_in, authorization_url)

    def _sign_in(self, authorization_url: str) -> None:
        browser = self.browser
        browser.open(authorization_url)
        self._note()
        browser.fill("E-mail", ADA_EMAIL)
        browser.press("Send me a code")
        self._note()
        browser.fill("Code from the e-mail", self.mailbox.code_for(ADA_EMAIL))
        browser.press("Continue")
        self._note()
        browser.press("Allow")
        self._note()

    def _note(self) -> None:
        self.seen.append((self.browser.title, self.browser.text()))

    async def callback(self) -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(self.browser.driver.current_url).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0])


async def test_a_person_signs_in_with_a_real_browser_and_the_assistant_lists_their_files(
    browser: Browser, smtp: tuple[str, Mailbox], polar: tuple[Store, str], database_url: str
) -> None:
    store, polar_url = polar
    env = hosted_env(polar_url, smtp[0], "unused", f"http://127.0.0.1:{free_port()}")
    env["POLAR_MCP_DATABASE_URL"] = database_url
    person = Person(browser, smtp[1])
    with serve_asgi(APP_PAGE) as app_url, hosted_server(env, FakeClock()) as server:
        oauth = OAuthClientProvider(
            server_url=server.mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name="Test Assistant",
                redirect_uris=[AnyUrl(app_url + "/callback")],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
            ),
            storage=MemoryStorage(),
            redirect_handler=person.open,
            callback_handler=person.callback,
        )
        async with (
            httpx2.AsyncClient(auth=oauth, timeout=30) as http,
            Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
        ):
            result = await client.call_tool("list_downloadables", {"limit": 100})

    ada = store.customer_by_external_id("ada-1815")
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert sorted(item["name"] for item in result.structured_content["items"]) == sorted(
        row.file.name for row in store.downloadables(store.open_session(ada.id, None, 60, None))
    )
    assert [title for title, _ in person.seen] == [
        f"Sign in to your {SELLER_NAME} purchases · {SELLER_NAME}",
        f"Check your e-mail · {SELLER_NAME}",
        f"Allow this app? · {SELLER_NAME}",
        "Test Assistant",
    ]
    consent = person.seen[2][1]
    assert "Test Assistant" in consent
    assert "127.0.0.1" in consent
    assert person.seen[3][1] == "Signed in. You can close this window."
