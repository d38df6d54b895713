"""Streamable HTTP: one stateless ASGI app serving many customers, each with their own bearer token.

`create_app` is the factory for `uvicorn --factory polar_mcp.http:create_app` (or any ASGI host): it
reads the environment, never uses a configured token, and takes its allowed Host values from
POLAR_MCP_ALLOWED_HOSTS. `serve` is what `polar-mcp --transport http` runs.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any, cast

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from polar_mcp import __version__
from polar_mcp.config import OPTIONS, ConfigError, Settings, load_settings
from polar_mcp.core import session_bearer
from polar_mcp.server import build_server

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class BearerGate:
    """Answers 401 to MCP requests without a customer or member session bearer.

    Deliberately not the SDK's OAuth resource-server support: there is no authorization server
    behind polar-mcp, and an OAuth challenge would send hosts looking for one.
    """

    def __init__(self, app: ASGIApp, *, allow_missing: bool) -> None:
        self._app = app
        self._allow_missing = allow_missing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(MCP_PATH):
            authorization = _header(scope, b"authorization")
            missing = authorization is None
            if not session_bearer(authorization) and not (missing and self._allow_missing):
                response = JSONResponse(
                    {
                        "error": "unauthorized",
                        "detail": "Send Authorization: Bearer <Polar customer or member session token>.",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="polar-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def allowed_host_values(settings: Settings) -> list[str]:
    """Host header values to accept: the configured list, else loopback names on any port."""
    if settings.allowed_hosts:
        return list(settings.allowed_hosts)
    return [value for host in LOCAL_HOSTS for value in (host, f"{host}:*")]


def build_http_app(settings: Settings, *, use_configured_token: bool) -> Starlette | BearerGate:
    """The ASGI app: MCP at /mcp (stateless, streamed responses for progress) and GET /healthz."""
    server = build_server(settings, use_configured_token=use_configured_token)

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> Response:  # pyright: ignore[reportUnusedFunction]
        return JSONResponse({"status": "ok", "version": __version__})

    hosts = allowed_host_values(settings)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=False,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        ),
    )
    return BearerGate(app, allow_missing=use_configured_token)


def create_app() -> ASGIApp:
    """ASGI factory for `uvicorn --factory polar_mcp.http:create_app`.

    `POLAR_MCP_AUTH=bearer` (the default): each request brings its own session token, configured
    tokens are ignored. `POLAR_MCP_AUTH=signin`: the hosted sign-in (`polar_mcp.hosted`), which
    checks its settings now and its services when the app starts.
    """
    try:
        settings = load_settings(os.environ)
        if not logging.getLogger().handlers:
            # A worker process started by `--workers` (or a bare uvicorn) has no logging set up yet.
            logging.basicConfig(
                level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        if settings.auth == "signin":
            return _signin_app(settings)
    except ConfigError as error:
        raise SystemExit(f"polar-mcp: {error}") from None
    if settings.customer_session is not None or settings.access_token is not None:
        logger.warning("the ASGI factory ignores configured tokens: each request must bring its own bearer")
    return build_http_app(settings, use_configured_token=False)


def check_bind(settings: Settings) -> None:
    """Refuse configurations that would expose the server or a configured token."""
    if not settings.binds_loopback and not settings.allowed_hosts and settings.auth != "signin":
        raise ConfigError(
            f"Binding {settings.host} (not loopback) needs an explicit list of the Host names clients use: "
            "set POLAR_MCP_ALLOWED_HOSTS / --allowed-hosts, e.g. mcp.example.com,mcp.example.com:8000."
        )
    if settings.allow_configured_token and settings.workers > 1:
        raise ConfigError(
            "POLAR_MCP_ALLOW_CONFIGURED_TOKEN / --allow-configured-token serves one process: unset POLAR_MCP_WORKERS"
        )
    if settings.allow_configured_token and not settings.binds_loopback:
        raise ConfigError(
            "POLAR_MCP_ALLOW_CONFIGURED_TOKEN / --allow-configured-token only works on a loopback bind "
            "(127.0.0.1, ::1 or localhost): anyone reaching the server would act as the configured customer."
        )


def _signin_app(settings: Settings) -> ASGIApp:
    # Loaded only in this mode: the database drivers are the optional extra `polar-mcp[hosted]`.
    try:
        from polar_mcp.hosted.app import build_signin_app
    except ImportError as error:
        raise ConfigError(
            f"POLAR_MCP_AUTH=signin needs the hosted extra: pip install 'polar-mcp[hosted]' (missing {error.name})"
        ) from None
    return build_signin_app(settings)


def serve(settings: Settings) -> None:
    """Run the HTTP server in the foreground (`polar-mcp --transport http`)."""
    import uvicorn

    check_bind(settings)
    app: ASGIApp
    if settings.auth == "signin":
        app = _signin_app(settings)
        from polar_mcp.hosted.app import preflight

        preflight(settings)
    else:
        app = build_http_app(settings, use_configured_token=settings.allow_configured_token)
    logger.info(
        "serving MCP at http://%s:%d%s (%d worker%s)",
        settings.host,
        settings.port,
        MCP_PATH,
        settings.workers,
        "" if settings.workers == 1 else "s",
    )
    # In signin mode polar-mcp reads X-Forwarded-For itself, from POLAR_MCP_TRUSTED_PROXIES only;
    # uvicorn's own proxy handling would believe any loopback peer.
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "proxy_headers": settings.auth != "signin",
    }
    if settings.workers == 1:
        gc.freeze()  # as a stdio start does (cli.settle_heap): later collections skip what start-up made
        uvicorn.run(app, **common)
        return
    # Each worker is a fresh process that builds the app from the environment, flags included.
    os.environ.update(environment_of(settings))
    uvicorn.run("polar_mcp.http:create_app", factory=True, workers=settings.workers, **common)


def environment_of(settings: Settings) -> dict[str, str]:
    """The settings that differ from their defaults, as the variables `load_settings` reads (secrets
    come from the environment already, so they are left out)."""
    environment: dict[str, str] = {}
    for option in OPTIONS:
        value = getattr(settings, option.field)
        if option.secret or value == Settings.model_fields[option.field].default:
            continue
        if isinstance(value, tuple):
            value = ",".join(str(part) for part in cast(tuple[Any, ...], value))
        environment[option.env] = "1" if value is True else str(value)
    return environment
