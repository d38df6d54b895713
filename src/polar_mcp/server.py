"""The MCP server: tool definitions and translation only; every rule lives in `core`.

Each tool turns its arguments into one call of the core and words what comes back (or what failed)
for a model: argument names, which tool gives a value, what to call next.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, cast

import httpx2
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from polar_mcp import __version__, present
from polar_mcp.catalog import AmbiguousNameError, InvalidArgumentError, ItemNotFoundError, NoUsableLinkError
from polar_mcp.config import Settings
from polar_mcp.core import QUERY_HELP, ClientFactory, Core, open_core
from polar_mcp.download_failures import DiskFullError, NotEnoughSpaceError, SyncTooLargeError
from polar_mcp.failure import Failure
from polar_mcp.polar.errors import AuthenticationError
from polar_mcp.polar.sessions import TokenSource
from polar_mcp.untrusted import clean_text

INSTRUCTIONS = (
    "Tools for the files this customer bought on Polar.sh. list_downloadables shows files and ids "
    "(query searches all of them); get_download_link gives a signed link that expires."
)
DOWNLOAD_INSTRUCTIONS = (
    " download_file saves a file into the user's downloads folder, verified; sync_library saves every file"
    " (or a benefit's) there in one call, one folder per benefit, fetching only what is missing."
)
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
        _register_download_tools(server)
    _compact_schemas(server)
    return server


@dataclass(frozen=True)
class _Caller:
    """The core, and whose session a call uses (an HTTP caller's bearer, else the configured one)."""

    core: Core
    source: TokenSource


def _caller(ctx: Context[Core, Any]) -> _Caller:
    core = ctx.request_context.lifespan_context
    return _Caller(core, core.source_for(ctx.headers))


Caller = Annotated[_Caller, Resolve(_caller)]

# Plain `str` with "" for "not given": the SDK pre-parses `str | None` arguments as JSON, so a file
# named "null" or a query "[1]" would arrive as something else.
ItemId = Annotated[str, Field(max_length=100, description="id (or file_id) from list_downloadables.")]
ItemName = Annotated[str, Field(max_length=300, description="File name, or a unique part of it.")]


def _register_read_tools(server: MCPServer[Core]) -> None:
    @server.tool(title="List purchased files", annotations=READ_ONLY)
    async def list_downloadables(
        me: Caller,
        benefit_id: BenefitIds = None,
        page: Annotated[int, Field(ge=1, le=100_000, description="Page number, from 1.")] = 1,
        limit: Annotated[int, Field(ge=1, le=100, description="Files per page.")] = 20,
        query: Query = "",
    ) -> Annotated[CallToolResult, present.DownloadablesList]:
        """List the files this customer can download from Polar, with ids for get_download_link."""
        with _tool_errors(me):
            result = await me.core.list(
                me.source, benefit_ids=_benefit_ids(benefit_id), page=page, limit=limit, query=query
            )
        return _result(present.listing_text(result, query=query.strip() or None), result)

    @server.tool(title="Get a download link", annotations=READ_ONLY)
    async def get_download_link(
        me: Caller, downloadable_id: ItemId = "", name: ItemName = ""
    ) -> Annotated[CallToolResult, present.DownloadLink]:
        """Get a fresh signed download link for one file, by id or by name. The link expires."""
        with _tool_errors(me):
            item = await me.core.find(me.source, downloadable_id=downloadable_id, name=name)
            link = await me.core.link(me.source, item)
        return _result(present.link_text(link), link)


BenefitIds = Annotated[
    str | list[str] | None, Field(description="Benefit id(s) from list_downloadables, to narrow it.")
]
Query = Annotated[str, Field(max_length=200, description=QUERY_HELP)]


def _benefit_ids(benefit_id: str | list[str] | None) -> list[str]:
    return [benefit_id] if isinstance(benefit_id, str) else benefit_id or []


def _register_download_tools(server: MCPServer[Core]) -> None:
    @server.tool(title="Download a purchased file", annotations=WRITES_FILES)
    async def download_file(
        me: Caller,
        ctx: Context[Core, Any],
        downloadable_id: ItemId = "",
        name: ItemName = "",
        overwrite: Annotated[bool, Field(description="Replace a different local file of the same name.")] = False,
    ) -> Annotated[CallToolResult, present.DownloadedFile]:
        """Save one file into the configured downloads folder, verified by size and SHA-256."""
        with _tool_errors(me):
            item = await me.core.find(me.source, downloadable_id=downloadable_id, name=name)
            total = item.file.size

            async def progress(done: int, _: int) -> None:
                await ctx.report_progress(done, total, f"{present.human_size(done)} of {present.human_size(total)}")

            result = await me.core.save(me.source, item, overwrite=overwrite, progress=progress)
        return _result(present.downloaded_text(result), result)

    @server.tool(title="Sync the whole library", annotations=WRITES_FILES)
    async def sync_library(
        me: Caller, ctx: Context[Core, Any], benefit_id: BenefitIds = None, query: Query = ""
    ) -> Annotated[CallToolResult, present.SyncResult]:
        """Save every file (or a benefit's) into the downloads folder, a folder per benefit; fetches only what's new."""
        with _tool_errors(me):

            async def progress(done: int, total: int) -> None:
                await ctx.report_progress(done, total, f"{present.human_size(done)} of {present.human_size(total)}")

            result = await me.core.sync(me.source, benefit_ids=_benefit_ids(benefit_id), query=query, progress=progress)
        return _result(present.sync_text(result), result)


@contextmanager
def _tool_errors(me: _Caller) -> Generator[None]:
    """Every expected failure becomes a ToolError worded for the model: what to do next."""
    try:
        yield
    except Failure as failure:
        raise ToolError(for_the_model(failure, me.source)) from None


def for_the_model(failure: Failure, source: TokenSource) -> str:
    """A failure in the tools' terms: argument names, and which tool gives a value."""
    if isinstance(failure, AuthenticationError):
        return f"{failure.message} {source.renew_hint}"
    if isinstance(failure, AmbiguousNameError):
        head = f"{failure.matches} files match {clean_text(failure.wanted, 80)!r}; call again with downloadable_id."
        return present.ambiguous_text(head, failure.candidates)
    if isinstance(failure, ItemNotFoundError):
        shown = clean_text(failure.wanted, 80)
        if failure.by == "id":
            return (
                f"No downloadable has the id {shown!r} in this customer's catalog (it may have been "
                "withdrawn). Call list_downloadables to see current ids, or pass name instead."
            )
        return (
            f"No file name matches {shown!r}. Call list_downloadables (with query) to see the names and ids "
            "of the files."
        )
    if isinstance(failure, InvalidArgumentError):
        if failure.argument == "id_or_name":
            return "Give exactly one of downloadable_id (from list_downloadables) or name."
        if failure.argument == "benefit_id":
            return (
                f"benefit_id {clean_text(failure.wanted, 60)!r} is not a benefit id: use a benefit_id from "
                "list_downloadables, or query to search by file or benefit name."
            )
    if isinstance(failure, NoUsableLinkError):
        return "Polar sent no usable link for this file; try again in a minute."
    if isinstance(failure, SyncTooLargeError):
        return (
            f"{failure.message} Sync part of the library (benefit_id or query), or ask the user to raise "
            "POLAR_MCP_MAX_SYNC_SIZE."
        )
    if isinstance(failure, NotEnoughSpaceError):
        return f"{failure.message} Ask the user to free some space, or sync part of the library (benefit_id or query)."
    if isinstance(failure, DiskFullError):
        return (
            f"{failure.message} Files saved before it are kept: once there is room, call sync_library again "
            "and it fetches only what is missing."
        )
    return failure.message


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
