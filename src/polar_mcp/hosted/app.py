"""The hosted app: MCP at /mcp behind OAuth, the SDK's authorization routes, the sign-in page.

`build_signin_app` assembles it from the SDK's pieces (`AuthSettings`, the provider, the bearer
middleware that answers 401 with `resource_metadata`) plus a gate in front that the SDK lacks:
registrations are rate-limited per client address, `/authorize` accepts only a redirect URI that
is exactly one the app registered, and a raw Polar session bearer gets a 401 that says why.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode

import anyio
import httpx2
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polar_mcp import __version__
from polar_mcp.config import Settings
from polar_mcp.hosted.mail import Mailer
from polar_mcp.hosted.options import MCP_PATH, hosted_options
from polar_mcp.hosted.page import SigninPage, client_address
from polar_mcp.hosted.provider import SigninProvider, raw_redirect_uris
from polar_mcp.hosted.service import Hosted, Limits
from polar_mcp.polar.client import PolarClient
from polar_mcp.polar.sessions import SESSION_PREFIXES
from polar_mcp.server import build_server

logger = logging.getLogger(__name__)

MAX_REGISTRATION = 65_536
PRUNE_EVERY = 600.0


def build_signin_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    limits: Limits | None = None,
) -> SigninGate:
    """The ASGI app of `--auth signin`; its lifespan opens the database and checks every service.
    Tests inject the clock and smaller limits."""
    hosted, http = _hosted(settings, clock=clock, limits=limits)
    options = hosted.options
    # Validated from strings so the SDK's settings keep a path-less issuer without a trailing slash:
    # clients compare the issuer (and the `iss` of the redirect) as plain strings.
    auth = AuthSettings.model_validate(
        {
            "issuer_url": options.public_url,
            "resource_server_url": options.resource_url,
            "client_registration_options": ClientRegistrationOptions(enabled=True),
            "revocation_options": RevocationOptions(enabled=True),
            "validate_token_resource": True,
        }
    )
    server = build_server(
        settings,
        use_configured_token=False,
        buyer_source=hosted.buyer_source,
        auth=auth,
        auth_server_provider=SigninProvider(hosted),
    )
    page = SigninPage(hosted)
    server.custom_route("/signin/{flow}", methods=["GET", "POST"])(page.handle)

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
        healthy = await hosted.store.healthy()
        return JSONResponse(
            {"status": "ok" if healthy else "database unavailable", "version": __version__},
            status_code=200 if healthy else 503,
        )

    hosts = [options.host, *settings.allowed_hosts]
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=False,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        ),
    )
    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Starlette) -> AsyncGenerator[Any]:
        await hosted.start()
        try:
            async with inner_lifespan(application) as state, anyio.create_task_group() as tasks:
                tasks.start_soon(_prune_periodically, hosted)
                yield state
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await hosted.stop()
                await http.aclose()

    app.router.lifespan_context = lifespan
    return SigninGate(app, hosted)


def _hosted(
    settings: Settings, *, clock: Callable[[], float] = time.time, limits: Limits | None = None
) -> tuple[Hosted, httpx2.AsyncClient]:
    options = hosted_options(settings)
    # httpx2 logs every request URL at INFO, and a customer lookup's URL carries the buyer's e-mail;
    # the database drivers log statement parameters at DEBUG, which carry it too.
    for noisy in ("httpx2", "httpcore2", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    http = PolarClient.new_http_client(settings.base_url, settings.timeout)
    polar = PolarClient(http, timeout=settings.timeout, polar_version=settings.api_version)
    mailer = Mailer(options.smtp, options.mail_from)
    return Hosted(options, polar=polar, mailer=mailer, clock=clock, limits=limits), http


def preflight(settings: Settings) -> None:
    """Check every setting and service once, before serving; `ConfigError` says what is wrong."""

    async def check() -> None:
        hosted, http = _hosted(settings)
        try:
            await hosted.start()
        finally:
            await hosted.stop()
            await http.aclose()

    anyio.run(check)


async def _prune_periodically(hosted: Hosted) -> None:
    while True:
        await anyio.sleep(PRUNE_EVERY)
        removed = await hosted.prune()
        logger.debug("removed %d expired rows", removed)


class SigninGate:
    """What the SDK's routes leave to the server, checked before they run."""

    def __init__(self, app: ASGIApp, hosted: Hosted) -> None:
        self.app = app
        self.hosted = hosted
        self._metadata_url = str(build_resource_metadata_url(AnyHttpUrl(hosted.options.resource_url)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = str(scope["path"]), str(scope["method"])
        if path.startswith(MCP_PATH) and _raw_session_bearer(scope):
            await self._refuse_session_bearer(scope, receive, send)
            return
        if path == "/register" and method == "POST":
            await self._register(scope, receive, send)
            return
        if path == "/authorize" and method in ("GET", "POST"):
            await self._authorize(scope, receive, send)
            return
        if path in ("/token", "/revoke") and method == "POST":
            await self._client_credentials(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _client_credentials(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Client secrets are stored as digests: the one an app presents is digested before the SDK
        compares it, in the form body (client_secret_post) or the Basic header (client_secret_basic)."""
        body = await _read_body(receive, MAX_REGISTRATION)
        if body is None:
            await JSONResponse({"error": "invalid_request"}, status_code=413)(scope, receive, send)
            return
        digest = functools.partial(self.hosted.keys.digest, "client")
        form = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        fields = [(key, digest(value) if key == "client_secret" and value else value) for key, value in form]
        if scope["path"] == "/revoke" and not any(key == "client_secret" for key, _ in fields):
            # The SDK's revocation request requires the field even from public clients (RFC 7009 does not).
            fields.append(("client_secret", ""))
        body = urlencode(fields).encode()
        headers: list[tuple[bytes, bytes]] = []
        for key, value in scope["headers"]:
            name = bytes(key).lower()
            if name == b"content-length":
                continue
            if name == b"authorization":
                value = _digest_basic(bytes(value), digest)
            headers.append((name, bytes(value)))
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replay(body), send)

    async def _refuse_session_bearer(self, scope: Scope, receive: Receive, send: Send) -> None:
        description = "This server signs buyers in itself: connect without a Polar session token and sign in."
        response = JSONResponse(
            {"error": "invalid_token", "error_description": description},
            status_code=401,
            headers={
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}", '
                f'resource_metadata="{self._metadata_url}"'
            },
        )
        await response(scope, receive, send)

    async def _register(self, scope: Scope, receive: Receive, send: Send) -> None:
        hosted = self.hosted
        count, window = hosted.limits.registrations_per_address
        address = client_address(scope, hosted.options.trusted_proxies)
        if not await hosted.store.hit(
            "register:" + hosted.keys.digest("address", address), limit=count, window=window, now=hosted.clock()
        ):
            response = JSONResponse(
                {"error": "invalid_client_metadata", "error_description": "too many registrations; try again later"},
                status_code=429,
                headers={"Retry-After": str(int(window))},
            )
            await response(scope, receive, send)
            return
        body = await _read_body(receive, MAX_REGISTRATION)
        if body is None:
            await JSONResponse({"error": "invalid_client_metadata"}, status_code=413)(scope, receive, send)
            return
        marker = raw_redirect_uris.set(_raw_uris(body))
        try:
            await self.app(scope, _replay(body), send)
        finally:
            raw_redirect_uris.reset(marker)

    async def _authorize(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        body = b""
        if scope["method"] == "POST":
            read = await _read_body(receive, MAX_REGISTRATION)
            if read is None:
                await self._bad_authorize(scope, receive, send)
                return
            body = read
        params = dict(parse_qsl(query if scope["method"] == "GET" else body.decode("latin-1"), keep_blank_values=True))
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri")
        found = await self.hosted.store.client(client_id) if client_id else None
        # An unknown client falls through: the SDK answers it. A known one must name, character for
        # character, one of the redirect URIs it registered.
        if found is not None and (redirect_uri is None or redirect_uri not in found[1]):
            await self._bad_authorize(scope, receive, send)
            return
        await self.app(scope, _replay(body) if scope["method"] == "POST" else receive, send)

    async def _bad_authorize(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = HTMLResponse(
            "<!doctype html><html lang=en><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign-in refused</title>'
            "<main><h1>This sign-in cannot start</h1><p>The app asked to send you back to an address it did not "
            "register. Nothing was shared. Tell the app's makers.</p></main>",
            status_code=400,
            headers={
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
            },
        )
        await response(scope, receive, send)


def _digest_basic(header: bytes, digest: Callable[[str], str]) -> bytes:
    scheme, _, encoded = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "basic":
        return header
    try:
        client_id, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return header
    if not sep:
        return header
    credentials = f"{client_id}:{quote(digest(unquote(secret)), safe='')}"
    return b"Basic " + base64.b64encode(credentials.encode())


def _raw_session_bearer(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if bytes(key).lower() == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").strip().partition(" ")
            return scheme.lower() == "bearer" and token.strip().startswith(SESSION_PREFIXES)
    return False


def _raw_uris(body: bytes) -> list[str] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    uris = cast(dict[str, Any], document).get("redirect_uris")
    if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in cast(list[Any], uris)):
        return None
    return cast(list[str], uris)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
