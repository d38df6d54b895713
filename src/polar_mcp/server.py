"""The MCP server: tool definitions and translation only; every rule lives in `core`.

Each tool turns its arguments into one call of the core and words what comes back (or what failed)
for a model: argument names, which tool gives a value, what to call next.
"""

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, cast

import anyio
import anyio.lowlevel
import httpx2
from mcp.server import MCPServer
from mcp.server.auth.provider import OAuthAuthorizationServerProvider
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from polar_mcp import __version__
from polar_mcp.config import Settings
from polar_mcp.failure import Failure
from polar_mcp.help_texts import QUERY_HELP
from polar_mcp.untrusted import clean_text

# What answering the handshake and tools/list needs is imported here; the core, Polar's client and
# the result models load after tools/list, in the quiet that follows it or at the first tool call,
# whichever comes first (`CoreOnDemand`, and imports inside the tool bodies and `for_the_model`), so
# a host sees the tools without waiting for them. No `from __future__ import annotations` here: the
# SDK reads every tool's signature when it registers it, and annotations that are objects already
# spare it evaluating each one from a string. Those that name the core's types are therefore strings.
if TYPE_CHECKING:
    from polar_mcp import present
    from polar_mcp.core import ClientFactory, Core
    from polar_mcp.polar.sessions import TokenSource

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Tools for the files this customer bought on Polar.sh. list_downloadables shows files and ids "
    "(query searches all of them); get_download_link gives a signed link that expires."
)
DOWNLOAD_INSTRUCTIONS = (
    " download_file saves a file into the user's downloads folder, verified; sync_library saves every file"
    " (or a benefit's) there in one call, one folder per benefit, fetching only what is missing."
)
SIGN_IN_INSTRUCTIONS = (
    " When a tool says the user is not signed in, sign_in e-mails them a code from Polar: ask the user for it,"
    " never guess one."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True)
WRITES_FILES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
# Not read-only: it makes Polar send an e-mail. Not idempotent either: each call may send another.
SIGNS_IN = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
PORTAL = "https://polar.sh/<slug>/portal"
SIGN_IN_DESCRIPTION = (
    "Sign the user in to Polar: with seller and email, Polar e-mails them a code; then call with code. "
    "With no arguments, a new code goes to the last e-mail and seller."
)


class CoreOnDemand:
    """The server's core, opened once the host has the tools (or by the first tool call that needs it
    before then) and closed with the server.

    The lifespan gives this, not the core: opening the core loads Polar's client, the catalog and the
    result models, which a start that only answers the handshake and tools/list has no use for. The
    configured source is announced in the log when the core opens. Calls that arrive together open
    it once; one that fails to open it leaves the next call to try again; none opens it once the
    server is closing.

    Once a host has the tools, it usually waits for its user before the first call: `warm_up_soon`
    uses that quiet to open the core and prepare what a first call would (`Core.preparations`), a
    step at a time, so that call answers sooner. A call that comes first opens the core itself, and
    the warm-up then leaves the rest to the calls; a warm-up that fails leaves the work, and the
    error, to the next call.

    A task other than the lifespan's opens the core and the lifespan's task closes it, so
    `core.open_core` must hold no cancel scope or task group across its `yield` (anyio ties those to
    the task that entered them).
    """

    def __init__(
        self, open_core: "Callable[[], AbstractAsyncContextManager[Core]]", *, warm_up_after: float | None = None
    ) -> None:
        self._open_core = open_core
        self._core: Core | None = None
        self._closed = False
        self._lock = anyio.Lock()
        self._stack = AsyncExitStack()
        self._warm_up_after = warm_up_after
        self._warm_up_started = False
        self._warm_ups = anyio.create_task_group()
        self.warmed_up = anyio.Event()
        """Set once a warm-up has prepared everything (tests wait on it)."""

    async def get(self) -> "Core":
        if self._core is None:
            async with self._lock:
                if self._closed:
                    raise Failure("polar-mcp is shutting down: call again once the host has restarted it.")
                if self._core is None:
                    self._core = await self._stack.enter_async_context(self._open_core())
        return self._core

    def warm_up_soon(self) -> None:
        """Start the warm-up, once, `warm_up_after` seconds from now (None: never), leaving the host's
        next requests their turn."""
        if self._warm_up_after is None or self._warm_up_started or self._closed:
            return
        self._warm_up_started = True
        self._warm_ups.start_soon(self._warm_up, self._warm_up_after)

    async def _warm_up(self, after: float) -> None:
        await anyio.sleep(after)
        if self._core is not None:
            return  # a call came first: calls prepare what they use, and the server is not idle
        try:
            core = await self.get()
            for step in core.preparations():
                await anyio.lowlevel.checkpoint()  # work that became ready meanwhile runs before each step
                step()
        except Exception:
            # The next call meets the same failure, and reports it.
            logger.debug("warm-up stopped: the first call prepares what is left", exc_info=True)
            return
        logger.debug("warmed up: the first call finds the core open and prepared")
        self.warmed_up.set()

    async def __aenter__(self) -> "CoreOnDemand":
        await self._warm_ups.__aenter__()
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            # A warm-up under way stops at its next step; one that is opening the core is cancelled.
            self._closed = True
            self._warm_ups.cancel_scope.cancel()
            await self._warm_ups.__aexit__(None, None, None)
        finally:
            # Shielded: a server stopped by cancellation (SIGTERM over stdio) still closes the core's clients.
            with anyio.CancelScope(shield=True):
                async with self._lock:  # an opening under way finishes first, and is closed here
                    self._core = None
                await self._stack.aclose()


def build_server(
    settings: Settings,
    *,
    use_configured_token: bool = True,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: "ClientFactory | None" = None,
    stored_sign_in: bool = False,
    clock: Callable[[], float] = time.time,
    buyer_source: "Callable[[], TokenSource] | None" = None,
    auth: AuthSettings | None = None,
    auth_server_provider: OAuthAuthorizationServerProvider[Any, Any, Any] | None = None,
) -> MCPServer[CoreOnDemand]:
    """The MCP server for `settings`; tests inject an HTTP transport, a whole client factory, a clock.

    `use_configured_token=False` (multi-tenant HTTP) ignores any token in the configuration: each
    request must bring its own. `stored_sign_in=True` (stdio only) uses the stored sign-in when no
    token is configured, and then offers the sign_in tool. The hosted sign-in passes its OAuth
    settings and provider, and `buyer_source`, which gives the session source of the buyer a
    request's access token belongs to.
    """

    def open_this_core() -> "AbstractAsyncContextManager[Core]":
        from polar_mcp.core import open_core

        return open_core(
            settings,
            use_configured_token=use_configured_token,
            http_transport=http_transport,
            make_client=make_client,
            stored_sign_in=stored_sign_in,
            clock=clock,
            buyer_source=buyer_source,
        )

    @asynccontextmanager
    async def lifespan(_: MCPServer[CoreOnDemand]) -> AsyncGenerator[CoreOnDemand]:
        async with CoreOnDemand(open_this_core, warm_up_after=settings.warm_up) as core:
            yield core

    offers_sign_in = stored_sign_in and use_configured_token and settings.mode == "none"
    instructions = (
        INSTRUCTIONS
        + ("" if settings.disable_download else DOWNLOAD_INSTRUCTIONS)
        + (SIGN_IN_INSTRUCTIONS if offers_sign_in else "")
    )
    server: MCPServer[CoreOnDemand] = MCPServer(
        "polar-mcp",
        version=__version__,
        instructions=instructions,
        lifespan=lifespan,
        auth=auth,
        auth_server_provider=auth_server_provider,
    )
    server.middleware.append(_warm_up_once_listed)
    _register_read_tools(server)
    if not settings.disable_download:
        _register_download_tools(server)
    if offers_sign_in:
        _register_sign_in_tool(server)
    _compact_schemas(server)
    _publish_output_schemas(server)
    return server


async def _warm_up_once_listed(ctx: ServerRequestContext[CoreOnDemand, Any], call_next: CallNext) -> HandlerResult:
    """A host that has listed the tools is set up: what follows is usually its user's pause."""
    result = await call_next(ctx)
    if ctx.method == "tools/list":
        try:
            ctx.lifespan_context.warm_up_soon()
        except Exception:  # a warm-up is never worth a failed tools/list
            logger.debug("no warm-up: the first call prepares the core", exc_info=True)
    return result


class _Caller(NamedTuple):
    """The core, and whose session a call uses (an HTTP caller's bearer, else the configured one)."""

    core: "Core"
    source: "TokenSource"


async def _caller(ctx: Context[CoreOnDemand, Any]) -> _Caller:
    try:
        core = await ctx.request_context.lifespan_context.get()
    except Failure as failure:
        raise ToolError(failure.message) from None
    except Exception as error:
        # Not a failure the core words (a missing home folder, an unreadable file): the log has the traceback.
        logger.exception("could not open polar-mcp's core")
        # Only the kind of error: its text may name server-side paths, and an HTTP caller is not the operator.
        raise ToolError(
            f"polar-mcp could not start its connection to Polar ({type(error).__name__}). The server's log "
            "(stderr) has the details; the next call tries again."
        ) from None
    return _Caller(core, core.source_for(ctx.headers))


Caller = Annotated[_Caller, Resolve(_caller)]

# Plain `str` with "" for "not given": the SDK pre-parses `str | None` arguments as JSON, so a file
# named "null" or a query "[1]" would arrive as something else.
ItemId = Annotated[str, Field(max_length=100, description="id (or file_id) from list_downloadables.")]
ItemName = Annotated[str, Field(max_length=300, description="File name, or a unique part of it.")]


def _register_read_tools(server: MCPServer[CoreOnDemand]) -> None:
    @server.tool(title="List purchased files", annotations=READ_ONLY)
    async def list_downloadables(
        me: Caller,
        benefit_id: BenefitIds = None,
        page: Annotated[int, Field(ge=1, le=100_000, description="Page number, from 1.")] = 1,
        limit: Annotated[int, Field(ge=1, le=100, description="Files per page.")] = 20,
        query: Query = "",
    ) -> CallToolResult:
        """List the files this customer can download from Polar, with ids for get_download_link."""
        from polar_mcp import present

        with _tool_errors(me):
            result = await me.core.list(
                me.source, benefit_ids=_benefit_ids(benefit_id), page=page, limit=limit, query=query
            )
        return _result(present.listing_text(result, query=query.strip() or None), result)

    @server.tool(title="Get a download link", annotations=READ_ONLY)
    async def get_download_link(me: Caller, downloadable_id: ItemId = "", name: ItemName = "") -> CallToolResult:
        """Get a fresh signed download link for one file, by id or by name. The link expires."""
        from polar_mcp import present

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


def _register_download_tools(server: MCPServer[CoreOnDemand]) -> None:
    @server.tool(title="Download a purchased file", annotations=WRITES_FILES)
    async def download_file(
        me: Caller,
        ctx: Context[CoreOnDemand, Any],
        downloadable_id: ItemId = "",
        name: ItemName = "",
        overwrite: Annotated[bool, Field(description="Replace a different local file of the same name.")] = False,
    ) -> CallToolResult:
        """Save one file into the configured downloads folder, verified by size and SHA-256."""
        from polar_mcp import present

        with _tool_errors(me):
            item = await me.core.find(me.source, downloadable_id=downloadable_id, name=name)
            total = item.file.size

            async def progress(done: int, _: int) -> None:
                await ctx.report_progress(done, total, f"{present.human_size(done)} of {present.human_size(total)}")

            result = await me.core.save(me.source, item, overwrite=overwrite, progress=progress)
        return _result(present.downloaded_text(result), result)

    @server.tool(title="Sync the whole library", annotations=WRITES_FILES)
    async def sync_library(
        me: Caller, ctx: Context[CoreOnDemand, Any], benefit_id: BenefitIds = None, query: Query = ""
    ) -> CallToolResult:
        """Save every file (or a benefit's) into the downloads folder, a folder per benefit; fetches only what's new."""
        from polar_mcp import present

        with _tool_errors(me):

            async def progress(done: int, total: int) -> None:
                await ctx.report_progress(done, total, f"{present.human_size(done)} of {present.human_size(total)}")

            result = await me.core.sync(me.source, benefit_ids=_benefit_ids(benefit_id), query=query, progress=progress)
        return _result(present.sync_text(result), result)


def _register_sign_in_tool(server: MCPServer[CoreOnDemand]) -> None:
    @server.tool(title="Sign in to Polar", description=SIGN_IN_DESCRIPTION, annotations=SIGNS_IN)
    async def sign_in(
        me: Caller,
        seller: Annotated[
            str,
            Field(
                max_length=300,
                description=f"The seller: the slug of the user's customer portal address ({PORTAL}), or its id.",
            ),
        ] = "",
        email: Annotated[str, Field(max_length=320, description="The e-mail address the user bought with.")] = "",
        code: Annotated[str, Field(max_length=40, description="The 6-character code from Polar's e-mail.")] = "",
        customer_id: Annotated[
            str, Field(max_length=100, description="When sign_in lists several customers: the one the user chose.")
        ] = "",
    ) -> CallToolResult:
        from polar_mcp import present

        with _tool_errors(me):
            if code.strip():
                signed_in = await me.core.complete_sign_in(code, seller=seller, email=email)
                state = present.signed_in_state(signed_in, now=me.core.now())
                return _result(_signed_in_text(state) + present.owner_only_note(signed_in), state)
            state = present.code_sent(await me.core.request_code(seller, email, customer_id))
        return _result(_code_sent_text(state), state)


def _code_sent_text(state: "present.SignInState") -> str:
    return (
        f"If {state.email} bought from {state.seller}, a code is on its way (Polar does not say whether it did). "
        f"Ask the user for the 6-character code Polar sent to {state.email}, then call sign_in with code. The code "
        "is valid 30 minutes."
    )


def _signed_in_text(state: "present.SignInState") -> str:
    who = f"{state.name} ({state.email})" if state.name else state.email
    minutes = round((state.expires_in_seconds or 0) / 60)
    return (
        f"Signed in at {state.seller} as {who} until {state.expires_at} (in {minutes} min). list_downloadables now "
        "shows their files; when the session ends, call sign_in again to e-mail a new code."
    )


@contextmanager
def _tool_errors(me: _Caller) -> Generator[None]:
    """Every expected failure becomes a ToolError worded for the model: what to do next."""
    try:
        yield
    except Failure as failure:
        raise ToolError(for_the_model(failure, me.source)) from None


def for_the_model(failure: Failure, source: "TokenSource") -> str:
    """A failure in the tools' terms: argument names, and which tool gives a value."""
    from polar_mcp import present
    from polar_mcp.catalog import AmbiguousNameError, InvalidArgumentError, ItemNotFoundError, NoUsableLinkError
    from polar_mcp.download_failures import DiskFullError, NotEnoughSpaceError, SyncTooLargeError
    from polar_mcp.polar.errors import AuthenticationError

    signing_in = _sign_in_wording(failure)
    if signing_in is not None:
        return signing_in
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


def _sign_in_wording(failure: Failure) -> str | None:
    """The sign-in failures in the tools' terms: what to ask the user, and how to call sign_in next."""
    from polar_mcp.core import NoPendingCodeError, SignInArgumentError
    from polar_mcp.polar.signin import (
        CodeRejectedError,
        CustomerChoiceRequiredError,
        InvalidEmailError,
        SellerNotFoundError,
        SignInChangedError,
        SignInRateLimitedError,
    )
    from polar_mcp.signin_store import CodeAttemptsLimitedError, CodeRequestLimitedError, SignInRequiredError

    terminal = "or the user can run `polar-mcp login` in a terminal."
    if isinstance(failure, SignInRequiredError):
        if failure.reason == "none":
            return (
                "Not signed in to Polar. Call sign_in with seller (the slug of the user's customer portal address, "
                f"{PORTAL}) and email, then call sign_in with the code Polar e-mails; {terminal}"
            )
        return (
            f"{failure.situation} Call sign_in with no arguments to "
            f"e-mail a new code to {failure.email}, then call sign_in with that code; {terminal}"
        )
    if isinstance(failure, SignInArgumentError):
        if failure.argument == "seller":
            head = "Which seller?" if failure.missing else f"{failure.wanted!r} is not a seller's slug or id."
            return f"{head} Call sign_in with seller: the slug of the user's customer portal address ({PORTAL})."
        if failure.argument == "email":
            head = "Which e-mail?" if failure.missing else "email is not an e-mail address."
            return f"{head} Ask the user for the address they bought with, and call sign_in with email."
        return "customer_id must be one of the ids sign_in listed for this e-mail."
    if isinstance(failure, SellerNotFoundError):
        return (
            f"{failure.message} Ask the user for their customer portal address ({PORTAL}) and call sign_in with "
            "seller set to its slug."
        )
    if isinstance(failure, InvalidEmailError):
        return f"{failure.message} Ask the user for the address they bought with, and call sign_in with email."
    if isinstance(failure, CodeRejectedError):
        if failure.malformed:
            return f"{failure.message} Ask the user for the code in Polar's e-mail and call sign_in with code."
        return (
            f"{failure.message} Ask the user to check the code in the latest e-mail from Polar and call sign_in "
            "with code, or call sign_in with no arguments to e-mail a new one."
        )
    if isinstance(failure, NoPendingCodeError):
        return (
            "No code was asked for here in the last 30 minutes. Call sign_in with seller and email first, then "
            "with the code Polar e-mails."
        )
    if isinstance(failure, SignInRateLimitedError):
        return f"{failure.message} Tell the user to wait; do not call sign_in again before then."
    if isinstance(failure, CodeRequestLimitedError):
        if not failure.code_pending:
            return f"{failure.message} Do not call sign_in again before then."
        return (
            f"{failure.message} Meanwhile, ask the user for the code in the e-mail already sent to {failure.email} "
            "and call sign_in with code."
        )
    if isinstance(failure, CodeAttemptsLimitedError):
        return f"{failure.message} Ask the user to check the code in the latest e-mail from Polar meanwhile."
    if isinstance(failure, CustomerChoiceRequiredError):
        choices = "; ".join(f"{c.name} (customer_id {c.id})" for c in failure.customers)
        return (
            f"{failure.email} belongs to several customers of {failure.seller}: {choices}. Ask the user which one, "
            "then call sign_in again with seller, email and customer_id."
        )
    if isinstance(failure, SignInChangedError):
        return f"{failure.message} Until then, a session token set in POLAR_CUSTOMER_SESSION still works."
    return None


def _result(text: str, model: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", exclude_none=True),
    )


# What each tool's structured content is (`output_models`). The output schema a tool publishes is the one the SDK
# derives from its model, compacted; they are derived ahead of time into OUTPUT_SCHEMAS (a test checks
# the file against the models, and UPDATE_TOOLSNAPS=1 rewrites it), because deriving them at start-up
# was the largest part of registering the tools. A tool returns its own CallToolResult, built from an
# instance of its model (`_result`), so the SDK has nothing to validate per call.
def output_models() -> dict[str, type[BaseModel]]:
    from polar_mcp import present

    return {
        "list_downloadables": present.DownloadablesList,
        "get_download_link": present.DownloadLink,
        "download_file": present.DownloadedFile,
        "sync_library": present.SyncResult,
        "sign_in": present.SignInState,
    }


OUTPUT_SCHEMAS = Path(__file__).with_name("output_schemas.json")


def derived_output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The output schema the SDK derives for a tool whose result is `model`, compacted as published."""
    from mcp.server.mcpserver.utilities.func_metadata import func_metadata

    async def returns() -> None: ...

    returns.__annotations__["return"] = Annotated[CallToolResult, model]
    schema = func_metadata(returns).output_schema
    if schema is None:
        raise TypeError(f"the SDK derives no output schema from {model.__name__}")
    _compact(schema, keep_descriptions=False)
    return schema


def _publish_output_schemas(server: MCPServer[CoreOnDemand]) -> None:
    schemas = json.loads(OUTPUT_SCHEMAS.read_text(encoding="utf-8"))
    for tool in server._tool_manager.list_tools():  # pyright: ignore[reportPrivateUsage]
        tool.fn_metadata.output_schema = schemas[tool.name]


def _compact_schemas(server: MCPServer[CoreOnDemand]) -> None:
    """Trim generated schema noise that costs the model context and says nothing.

    Titles repeat property names; `null` branches and `default: null` describe what omitting a key
    already says (results leave out keys with no value, and arguments may be left out). Output
    schemas lose their descriptions too (`derived_output_schema`): the tool description and the text
    already explain them.
    """
    for tool in server._tool_manager.list_tools():  # pyright: ignore[reportPrivateUsage]
        _compact(tool.parameters)


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
