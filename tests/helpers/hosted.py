"""Real parts for the hosted sign-in tests: an SMTP server, Polar (the double), the server, a browser.

Everything runs over loopback. The SMTP server is aiosmtpd on a free port chosen first; Polar is the
embedded double, which serves the seller's lookups (`GET /v1/customers/`, `/v1/members/`) and the
public organization lookup too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import uvicorn
from aiosmtpd.controller import Controller
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import CallToolResult
from pydantic import AnyUrl

from polar_mcp.config import load_settings
from polar_mcp.double.runner import start_double
from polar_mcp.double.store import CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ, Store
from polar_mcp.hosted.app import SigninGate, build_signin_app
from polar_mcp.hosted.service import Limits

HOSTED_ORG_TOKEN = "polar_oat_hosted_test_sessions_and_customers"
NO_MEMBERS_ORG_TOKEN = "polar_oat_hosted_test_without_members_read"
SECRET_KEY = "k" * 40
SELLER_SLUG = "ferris-press"
SELLER_NAME = "Ferris Press"
ADA_EMAIL = "ada@example.com"
GRACE_EMAIL = "grace@example.com"
REDIRECT_URI = "http://127.0.0.1:9/callback"
CODE_PATTERN = re.compile(r"^ +([A-Z0-9]{6})\r?$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeClock:
    """Wall-clock seconds that start now and move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Mailbox:
    """What the SMTP server received: aiosmtpd's handler (its `handle_DATA`)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [message for message in self.messages if message["To"] == address]

    def code_for(self, address: str) -> str:
        """The code in the latest message to `address`."""
        body = self.to(address)[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        match = CODE_PATTERN.search(body.decode())
        assert match is not None, body
        return match.group(1)


@contextmanager
def smtp_server() -> Iterator[tuple[str, Mailbox]]:
    """A real SMTP server on loopback; yields its smtp:// URL and the mailbox."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", mailbox
    finally:
        controller.stop()


@contextmanager
def polar_server(store: Store) -> Iterator[str]:
    """The double serving `store`, with two more tokens of the seller; yields its base URL."""
    press = next(org for org in store.organizations.values() if org.slug == SELLER_SLUG)
    store.add_org_token(
        HOSTED_ORG_TOKEN, organization_id=press.id, scopes=(CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ, MEMBERS_READ)
    )
    store.add_org_token(
        NO_MEMBERS_ORG_TOKEN, organization_id=press.id, scopes=(CUSTOMER_SESSIONS_WRITE, CUSTOMERS_READ)
    )
    with start_double(store) as running:
        yield running.base_url


def hosted_env(polar_url: str, smtp_url: str, database: str, public_url: str, **extra: str) -> dict[str, str]:
    return {
        "POLAR_API_URL": polar_url,
        "POLAR_MCP_TIMEOUT": "10",
        "POLAR_MCP_TRANSPORT": "http",
        "POLAR_MCP_AUTH": "signin",
        "POLAR_ORGANIZATION": SELLER_SLUG,
        "POLAR_ACCESS_TOKEN": HOSTED_ORG_TOKEN,
        "POLAR_MCP_PUBLIC_URL": public_url,
        "POLAR_MCP_SECRET_KEY": SECRET_KEY,
        "POLAR_MCP_SMTP_URL": smtp_url,
        "POLAR_MCP_MAIL_FROM": "Ferris Press files <files@example.com>",
        "POLAR_MCP_DATABASE_URL": f"sqlite:///{database}",
        **extra,
    }


class _ReadyServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@dataclass
class RunningHosted:
    base_url: str
    gate: SigninGate

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"


@contextmanager
def hosted_server(env: dict[str, str], clock: FakeClock, limits: Limits | None = None) -> Iterator[RunningHosted]:
    """The signin app on the port its POLAR_MCP_PUBLIC_URL names, started and stopped as uvicorn does
    in production: the lifespan runs both ways (the database is closed before a restart)."""
    port = int(urlsplit(env["POLAR_MCP_PUBLIC_URL"]).port or 0)
    gate = build_signin_app(load_settings(env), clock=clock, limits=limits)
    config = uvicorn.Config(
        gate,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="on",
        timeout_graceful_shutdown=5,
        proxy_headers=False,  # as `polar-mcp --auth signin` runs it: X-Forwarded-For is polar-mcp's to judge
    )
    server = _ReadyServer(config)
    thread = threading.Thread(target=server.run, name="hosted-server", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(15) or not server.started:
            raise RuntimeError("the hosted server did not start")
        yield RunningHosted(f"http://127.0.0.1:{port}", gate)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class MemoryStorage:
    """The client's token storage (the SDK's `TokenStorage` protocol), in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(page: httpx2.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


@dataclass
class Browser:
    """A person at a browser: follows the authorization URL through the sign-in page and allows."""

    http: httpx2.AsyncClient
    mailbox: Mailbox
    email: str
    choose: str | None = None
    pages: list[httpx2.Response] = field(default_factory=list[httpx2.Response])
    landed: str | None = None

    async def open(self, authorization_url: str) -> None:
        started = await self.http.get(authorization_url)
        assert started.status_code == 302, started.text
        page_url = started.headers["location"]
        page = await self.get(page_url)
        page = await self.post(page_url, page, action="email", email=self.email)
        page = await self.post(page_url, page, action="code", code=self.mailbox.code_for(self.email))
        if self.choose is not None:
            page = await self.post(page_url, page, action="choose", customer=self.choose)
        done = await self.post(page_url, page, action="allow")
        assert done.status_code == 303, done.text
        self.landed = done.headers["location"]

    async def get(self, url: str) -> httpx2.Response:
        page = await self.http.get(url)
        self.pages.append(page)
        return page

    async def post(self, url: str, page: httpx2.Response, **form: str) -> httpx2.Response:
        answer = await self.http.post(url, data={"csrf": csrf_of(page), **form})
        self.pages.append(answer)
        return answer

    async def callback(self) -> AuthorizationCodeResult:
        assert self.landed is not None
        query = parse_qs(urlsplit(self.landed).query)
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )


def oauth_for(server_url: str, browser: Browser, storage: MemoryStorage | None = None) -> OAuthClientProvider:
    """The SDK's own OAuth client, registering as "Test Assistant" with a loopback redirect."""
    return OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="Test Assistant",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage or MemoryStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )


VERIFIER = "a-pkce-verifier-long-enough-to-be-valid-0123456789-abcdefghijklmnop"


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def register(http: httpx2.AsyncClient, base: str, **metadata: Any) -> dict[str, Any]:
    """A dynamic registration (RFC 7591); a public client with one loopback redirect unless told."""
    body = {
        "client_name": "Test Assistant",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        **metadata,
    }
    answer = await http.post(base + "/register", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def start(http: httpx2.AsyncClient, base: str, client_id: str, **overrides: str | None) -> httpx2.Response:
    """GET /authorize as an app's browser would, with PKCE S256; `None` leaves a parameter out."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge_of(VERIFIER),
        "code_challenge_method": "S256",
        "state": "the-apps-state",
        **overrides,
    }
    return await http.get(base + "/authorize", params={k: v for k, v in params.items() if v is not None})


async def sign_in(
    http: httpx2.AsyncClient,
    base: str,
    mailbox: Mailbox,
    client_id: str,
    email: str = ADA_EMAIL,
    **overrides: str | None,
) -> str:
    """The whole browser step for `email`; the authorization code the app receives."""
    started = await start(http, base, client_id, **overrides)
    assert started.status_code == 302, started.text
    page_url = started.headers["location"]
    page = await http.get(page_url)
    page = await http.post(page_url, data={"csrf": csrf_of(page), "action": "email", "email": email})
    page = await http.post(page_url, data={"csrf": csrf_of(page), "action": "code", "code": mailbox.code_for(email)})
    done = await http.post(page_url, data={"csrf": csrf_of(page), "action": "allow"})
    assert done.status_code == 303, done.text
    query = parse_qs(urlsplit(done.headers["location"]).query)
    return query["code"][0]


async def exchange(
    http: httpx2.AsyncClient, base: str, client_id: str, code: str, **overrides: str | None
) -> httpx2.Response:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
        "code_verifier": VERIFIER,
        **overrides,
    }
    return await http.post(base + "/token", data={k: v for k, v in form.items() if v is not None})


async def refresh(http: httpx2.AsyncClient, base: str, client_id: str, token: str) -> httpx2.Response:
    return await http.post(
        base + "/token", data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    )


async def tools_list(http: httpx2.AsyncClient, mcp_url: str, access_token: str) -> httpx2.Response:
    """One MCP request with a bearer, as a host sends it (the 2025-11-25 handshake's first call)."""
    return await http.post(
        mcp_url,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        },
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
    )


async def list_files(mcp_url: str, access_token: str) -> CallToolResult:
    """`list_downloadables` through the SDK's client with a bearer the test holds."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {access_token}"}, timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        return await client.call_tool("list_downloadables", {})
