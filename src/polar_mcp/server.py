"""The MCP server: tool definitions and translation only; the work happens in catalog and present."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import httpx2
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, SecretStr

from polar_mcp import __version__, present
from polar_mcp.catalog import AmbiguousNameError, Catalog, CatalogError
from polar_mcp.config import Settings
from polar_mcp.polar.errors import AuthenticationError, PolarError
from polar_mcp.polar.sessions import StaticSession, TokenSource, bearer_session
from polar_mcp.runtime import ClientFactory, open_core

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools for the files this customer bought on Polar.sh. list_downloadables shows files and ids "
    "(query searches all of them); get_download_link gives a signed link that expires."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True)
MAX_BENEFIT_IDS = 50


BEARER_RENEW_HINT = "Send a new customer session token as the Authorization bearer."


@dataclass(frozen=True)
class State:
    """What the lifespan shares with every tool call."""

    catalog: Catalog
    configured: TokenSource

    def source_for(self, ctx: Context[State, Any]) -> TokenSource:
        """An HTTP caller's own bearer token if it sent one, else the configured source."""
        headers = ctx.headers
        bearer = bearer_session(headers.get("authorization")) if headers is not None else None
        if bearer is None:
            return self.configured
        return StaticSession(SecretStr(bearer), renew_hint=BEARER_RENEW_HINT)


def build_server(
    settings: Settings,
    *,
    use_configured_token: bool = True,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: ClientFactory | None = None,
) -> MCPServer[State]:
    """The MCP server for `settings`; tests inject an HTTP transport or a whole client factory.

    `use_configured_token=False` (multi-tenant HTTP) ignores any token in the configuration: each
    request must bring its own.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[State]) -> AsyncGenerator[State]:
        async with open_core(
            settings,
            use_configured_token=use_configured_token,
            http_transport=http_transport,
            make_client=make_client,
        ) as core:
            yield State(catalog=core.catalog, configured=core.configured)

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
        source = state.source_for(ctx)
        benefit_ids = _benefit_ids(benefit_id)
        query = query.strip() or None if query is not None else None
        with _tool_errors(source):
            listing = await state.catalog.list(
                source, benefit_ids=benefit_ids, page=page, limit=limit, query=query
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
        source = state.source_for(ctx)
        if (downloadable_id is None or not downloadable_id.strip()) == (name is None or not name.strip()):
            raise ToolError("Give exactly one of downloadable_id (from list_downloadables) or name.")
        with _tool_errors(source):
            item = await state.catalog.find(source, downloadable_id=downloadable_id, name=name)
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
