"""The MCP server: tool definitions and translation only; the work happens in catalog and present."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, cast

import httpx2
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from polar_mcp import __version__, present
from polar_mcp.catalog import AmbiguousNameError, CatalogError, parse_benefit_ids
from polar_mcp.config import Settings
from polar_mcp.polar.errors import AuthenticationError, PolarError
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.sessions import TokenSource
from polar_mcp.runtime import ClientFactory, Core, open_core

INSTRUCTIONS = (
    "Tools for the files this customer bought on Polar.sh. list_downloadables shows files and ids "
    "(query searches all of them); get_download_link gives a signed link that expires."
)
DOWNLOAD_INSTRUCTIONS = " download_file saves a file into the user's downloads folder, verified."
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True)
WRITES_FILES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)


def build_server(
    settings: Settings,
    *,
    use_configured_token: bool = True,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: ClientFactory | None = None,
) -> MCPServer[Core]:
    """The MCP server for `settings`; tests inject an HTTP transport or a whole client factory.

    `use_configured_token=False` (multi-tenant HTTP) ignores any token in the configuration: each
    request must bring its own.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[Core]) -> AsyncGenerator[Core]:
        async with open_core(
            settings,
            use_configured_token=use_configured_token,
            http_transport=http_transport,
            make_client=make_client,
        ) as core:
            yield core

    instructions = INSTRUCTIONS + ("" if settings.disable_download else DOWNLOAD_INSTRUCTIONS)
    server: MCPServer[Core] = MCPServer("polar-mcp", version=__version__, instructions=instructions, lifespan=lifespan)
    _register_read_tools(server)
    if not settings.disable_download:
        _register_download_tool(server)
    _compact_schemas(server)
    return server


# Plain `str` with "" for "not given": the SDK pre-parses `str | None` arguments as JSON, so a file
# named "null" or a query "[1]" would arrive as something else.
ItemId = Annotated[str, Field(max_length=100, description="id (or file_id) from list_downloadables.")]
ItemName = Annotated[str, Field(max_length=300, description="File name, or a unique part of it.")]


def _register_read_tools(server: MCPServer[Core]) -> None:
    @server.tool(title="List purchased files", annotations=READ_ONLY)
    async def list_downloadables(
        ctx: Context[Core, Any],
        benefit_id: Annotated[
            str | list[str] | None, Field(description="Benefit id(s) from list_downloadables, to narrow it.")
        ] = None,
        page: Annotated[int, Field(ge=1, le=100_000, description="Page number, from 1.")] = 1,
        limit: Annotated[int, Field(ge=1, le=100, description="Files per page.")] = 20,
        query: Annotated[
            str, Field(max_length=200, description="Part of a file or benefit name; searches every page.")
        ] = "",
    ) -> Annotated[CallToolResult, present.DownloadablesList]:
        """List the files this customer can download from Polar, with ids for get_download_link."""
        core = ctx.request_context.lifespan_context
        source = core.source_for(ctx.headers)
        search = query.strip() or None
        with _tool_errors(source):
            benefit_ids = parse_benefit_ids([benefit_id] if isinstance(benefit_id, str) else benefit_id or [])
            listing = await core.catalog.list(source, benefit_ids=benefit_ids, page=page, limit=limit, query=search)
        result = present.downloadables_list(listing)
        return _result(present.listing_text(result, query=search), result)

    @server.tool(title="Get a download link", annotations=READ_ONLY)
    async def get_download_link(
        ctx: Context[Core, Any], downloadable_id: ItemId = "", name: ItemName = ""
    ) -> Annotated[CallToolResult, present.DownloadLink]:
        """Get a fresh signed download link for one file, by id or by name. The link expires."""
        core = ctx.request_context.lifespan_context
        source = core.source_for(ctx.headers)
        link = await core.link(source, await _find(core, source, downloadable_id, name))
        return _result(present.link_text(link), link)


def _register_download_tool(server: MCPServer[Core]) -> None:
    @server.tool(title="Download a purchased file", annotations=WRITES_FILES)
    async def download_file(
        ctx: Context[Core, Any],
        downloadable_id: ItemId = "",
        name: ItemName = "",
        overwrite: Annotated[bool, Field(description="Replace a different local file of the same name.")] = False,
    ) -> Annotated[CallToolResult, present.DownloadedFile]:
        """Save one file into the configured downloads folder, verified by size and SHA-256."""
        from polar_mcp.download import DownloadError

        core = ctx.request_context.lifespan_context
        source = core.source_for(ctx.headers)
        item = await _find(core, source, downloadable_id, name)
        total = item.file.size

        async def progress(done: int, _: int) -> None:
            await ctx.report_progress(done, total, f"{present.human_size(done)} of {present.human_size(total)}")

        try:
            result = await core.save(source, item, overwrite=overwrite, progress=progress)
        except DownloadError as error:
            raise ToolError(error.message) from None
        return _result(present.downloaded_text(result), result)


async def _find(core: Core, source: TokenSource, downloadable_id: str, name: str) -> Downloadable:
    """The item a tool call names, with a link that has more than five minutes left."""
    wanted_id, wanted_name = downloadable_id.strip() or None, name.strip() or None
    if (wanted_id is None) == (wanted_name is None):
        raise ToolError("Give exactly one of downloadable_id (from list_downloadables) or name.")
    with _tool_errors(source):
        item = await core.catalog.find(source, downloadable_id=wanted_id, name=wanted_name)
    if not item.file.download.url:
        raise ToolError("Polar sent no usable link for this file; try again in a minute.")
    return item


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


def _compact_schemas(server: MCPServer[Core]) -> None:
    """Trim generated schema noise that costs the model context and says nothing.

    Titles repeat property names; `null` branches and `default: null` describe what omitting a key
    already says (results leave out keys with no value, and arguments may be left out). Output
    schemas lose their descriptions too: the tool description and the text already explain them.
    """
    for tool in server._tool_manager.list_tools():  # pyright: ignore[reportPrivateUsage]
        _compact(tool.parameters)
        if tool.output_schema is not None:
            _compact(tool.output_schema, keep_descriptions=False)


def _compact(schema: object, *, keep_descriptions: bool = True) -> None:
    if isinstance(schema, list):
        for value in cast(list[Any], schema):
            _compact(value, keep_descriptions=keep_descriptions)
        return
    if not isinstance(schema, dict):
        return
    node = cast(dict[str, Any], schema)
    if isinstance(node.get("title"), str):
        del node["title"]
    if not keep_descriptions and isinstance(node.get("description"), str):
        del node["description"]
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
        _compact(value, keep_descriptions=keep_descriptions)
