"""The MCP server: tool definitions and translation only; the work happens in catalog and present."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import httpx2
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from polar_mcp import __version__, present
from polar_mcp.catalog import AmbiguousNameError, Catalog, CatalogError
from polar_mcp.config import Settings
from polar_mcp.polar.client import PolarClient
from polar_mcp.polar.errors import AuthenticationError, PolarError
from polar_mcp.polar.minting import CustomerRef, MintedSession
from polar_mcp.polar.sessions import MissingSession, StaticSession, TokenSource

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools for the files this customer bought on Polar.sh. list_downloadables shows files and ids "
    "(query searches all of them); get_download_link gives a signed link that expires."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True)
MAX_BENEFIT_IDS = 50


@dataclass(frozen=True)
class State:
    """What the lifespan shares with every tool call."""

    catalog: Catalog
    source: TokenSource


def configured_source(settings: Settings, client: PolarClient) -> TokenSource:
    """The token source the configuration describes, announced once in the log."""
    if settings.mode == "session":
        assert settings.customer_session is not None
        if settings.access_token is not None:
            logger.info("POLAR_CUSTOMER_SESSION is set: using it, not minting with POLAR_ACCESS_TOKEN")
        return StaticSession(
            settings.customer_session,
            renew_hint=(
                "Create a new customer session and update POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN "
                "and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself."
            ),
        )
    if settings.mode == "minted":
        assert settings.access_token is not None
        customer = CustomerRef(
            customer_id=settings.customer_id,
            external_customer_id=settings.external_customer_id,
            member_id=settings.member_id,
            external_member_id=settings.external_member_id,
        )
        logger.info("minting customer sessions for %s with POLAR_ACCESS_TOKEN", customer.describe())
        return MintedSession(client, settings.access_token, customer)
    logger.warning(
        "POLAR_CUSTOMER_SESSION is not set: every tool will answer with how to provide a session token"
    )
    return MissingSession()


def build_server(
    settings: Settings,
    *,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: Callable[[httpx2.AsyncClient], PolarClient] | None = None,
) -> MCPServer[State]:
    """The MCP server for `settings`; tests inject an HTTP transport or a whole client factory."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[State]) -> AsyncGenerator[State]:
        http = PolarClient.new_http_client(settings.base_url, settings.timeout)
        if http_transport is not None:
            http = httpx2.AsyncClient(
                base_url=settings.base_url, transport=http_transport, headers=dict(http.headers)
            )
        async with http:
            client = (
                make_client(http)
                if make_client is not None
                else PolarClient(http, timeout=settings.timeout, polar_version=settings.api_version)
            )
            yield State(catalog=Catalog(client), source=configured_source(settings, client))

    server: MCPServer[State] = MCPServer(
        "polar-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan
    )
    _register_tools(server)
    return server


def _register_tools(server: MCPServer[State]) -> None:
    @server.tool(title="List purchased files", annotations=READ_ONLY)
    async def list_downloadables(
        ctx: Context[State, Any],
        benefit_id: Annotated[
            str | list[str] | None, Field(description="Benefit id(s) from list_downloadables, to narrow it.")
        ] = None,
        page: Annotated[int, Field(ge=1, description="Page number, from 1.")] = 1,
        limit: Annotated[int, Field(ge=1, le=100, description="Files per page.")] = 20,
        query: Annotated[
            str | None, Field(max_length=200, description="Part of a file name; searches every page.")
        ] = None,
    ) -> Annotated[CallToolResult, present.DownloadablesList]:
        """List the files this customer can download from Polar, with ids for get_download_link."""
        state = _state(ctx)
        benefit_ids = _benefit_ids(benefit_id)
        query = query.strip() or None if query is not None else None
        with _tool_errors(state.source):
            listing = await state.catalog.list(
                state.source, benefit_ids=benefit_ids, page=page, limit=limit, query=query
            )
        result = present.downloadables_list(listing)
        return _result(present.listing_text(result, query=query), result)

    @server.tool(title="Get a download link", annotations=READ_ONLY)
    async def get_download_link(
        ctx: Context[State, Any],
        downloadable_id: Annotated[
            str | None, Field(max_length=100, description="id (or file_id) from list_downloadables.")
        ] = None,
        name: Annotated[
            str | None, Field(max_length=300, description="File name, or a unique part of it.")
        ] = None,
    ) -> Annotated[CallToolResult, present.DownloadLink]:
        """Get a fresh signed download link for one file, by id or by name. The link expires."""
        state = _state(ctx)
        if (downloadable_id is None or not downloadable_id.strip()) == (name is None or not name.strip()):
            raise ToolError("Give exactly one of downloadable_id (from list_downloadables) or name.")
        with _tool_errors(state.source):
            item = await state.catalog.find(state.source, downloadable_id=downloadable_id, name=name)
        if not item.file.download.url:
            raise ToolError("Polar sent no usable link for this file; try again in a minute.")
        link = present.download_link(item, now=datetime.now(UTC))
        return _result(present.link_text(link), link)

    _compact_schemas(server)


def _state(ctx: Context[State, Any]) -> State:
    return ctx.request_context.lifespan_context


def _benefit_ids(value: str | list[str] | None) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or [])
    if len(values) > MAX_BENEFIT_IDS:
        raise ToolError(f"Give at most {MAX_BENEFIT_IDS} benefit ids.")
    cleaned: list[str] = []
    for raw in values:
        try:
            cleaned.append(str(uuid.UUID(raw.strip())))
        except ValueError:
            raise ToolError(
                f"benefit_id {raw.strip()[:60]!r} is not a benefit id: use a benefit_id from "
                "list_downloadables, or query to search by file name."
            ) from None
    return list(dict.fromkeys(cleaned))


@contextmanager
def _tool_errors(source: TokenSource) -> Generator[None]:
    """Every failure becomes a ToolError whose text says what to do next."""
    try:
        yield
    except AuthenticationError as error:
        raise ToolError(f"{error.message} {source.renew_hint}") from None
    except AmbiguousNameError as error:
        raise ToolError(present.ambiguous_text(error.message, error.candidates)) from None
    except (PolarError, CatalogError) as error:
        raise ToolError(error.message) from None


def _result(text: str, model: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", exclude_none=True),
    )


def _compact_schemas(server: MCPServer[State]) -> None:
    """Trim generated schema noise that costs the model context and says nothing.

    Titles repeat property names; `null` branches and `default: null` describe what omitting a key
    already says (results leave out keys with no value, and arguments may be left out).
    """
    for tool in server._tool_manager.list_tools():  # pyright: ignore[reportPrivateUsage]
        _compact(tool.parameters)
        if tool.output_schema is not None:
            _compact(tool.output_schema)


def _compact(schema: object) -> None:
    if isinstance(schema, list):
        for value in cast(list[Any], schema):
            _compact(value)
        return
    if not isinstance(schema, dict):
        return
    node = cast(dict[str, Any], schema)
    if isinstance(node.get("title"), str):
        del node["title"]
    if "default" in node and node["default"] is None:
        del node["default"]
    branches = node.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in cast(list[Any], branches) if b != {"type": "null"}]
        if len(kept) == 1:
            del node["anyOf"]
            node.update(cast(dict[str, Any], kept[0]))
        else:
            node["anyOf"] = kept
    for value in node.values():
        _compact(value)
