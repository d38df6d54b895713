"""The script-facing commands (`list`, `link`, `doctor`): the same core as the tools, no MCP.

Results go to stdout (a table, or `--json` with the tools' structured data); errors go to stderr with
an exit code that says what failed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

import anyio
import httpx2
from pydantic import BaseModel

from polar_mcp import __version__, present
from polar_mcp.catalog import (
    AmbiguousNameError,
    CatalogError,
    InvalidArgumentError,
    ItemNotFoundError,
    Listing,
    parse_benefit_ids,
)
from polar_mcp.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from polar_mcp.config import Settings
from polar_mcp.polar.client import INTROSPECT_PATH
from polar_mcp.polar.errors import (
    AuthenticationError,
    ConfigurationError,
    PolarConnectionError,
    PolarError,
    PolarTimeoutError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from polar_mcp.polar.minting import MintedSession
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.sessions import token_kind
from polar_mcp.runtime import Core, open_core
from polar_mcp.untrusted import clean_text

EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5


def run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    """Run one command to completion and return its exit code."""
    handlers: dict[str, Callable[[Core, argparse.Namespace], Awaitable[int]]] = {
        "list": _list,
        "link": _link,
        "download": _download,
        "doctor": _doctor,
    }
    handler = handlers[command]

    async def main() -> int:
        async with open_core(settings) as core:
            try:
                return await handler(core, args)
            except (PolarError, CatalogError) as error:
                _err(_for_the_shell(error, core))
                return exit_code(error)

    return anyio.run(main)


def _for_the_shell(error: PolarError | CatalogError, core: Core) -> str:
    """The error in a script's terms: commands and flags, not the tools' argument names."""
    if isinstance(error, AmbiguousNameError):
        shown = clean_text(error.wanted, 80)
        head = f"{error.matches} files match {shown!r}; pass one of these ids instead."
        return present.ambiguous_text(head, error.candidates)
    if isinstance(error, ItemNotFoundError):
        shown = clean_text(error.wanted, 80)
        if _looks_like_an_id(shown):
            return f"No file has the id {shown!r} (it may have been withdrawn). See current ids with: polar-mcp list"
        return f"No file matches {shown!r}. See the names and ids with: polar-mcp list --query {shlex.quote(shown)}"
    if isinstance(error, InvalidArgumentError) and error.wanted:
        return (
            f"--benefit-id {clean_text(error.wanted, 60)!r} is not a benefit id: the benefit_id values are in "
            "`polar-mcp list --json`; use --query to search by file or benefit name."
        )
    if isinstance(error, AuthenticationError):
        return f"{error.message} {core.configured.renew_hint}"
    return error.message


def _looks_like_an_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def exit_code(error: Exception) -> int:
    """The exit code for a failure: scripts can tell configuration, auth, lookup and outage apart."""
    if isinstance(error, ConfigurationError | InvalidArgumentError):
        return EXIT_CONFIG
    if isinstance(error, AuthenticationError | UnauthorizedError):
        return EXIT_AUTH
    if isinstance(error, ItemNotFoundError | AmbiguousNameError):
        return EXIT_NOT_FOUND
    if isinstance(error, RateLimitedError | ServerError | PolarTimeoutError | PolarConnectionError):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


async def _list(core: Core, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100 or args.page < 1:
        _err("--limit must be 1..100 and --page at least 1.")
        return EXIT_CONFIG
    benefit_ids = parse_benefit_ids(args.benefit_ids or [])
    query: str | None = args.query
    if args.all:
        items = await core.catalog.all_items(core.configured, benefit_ids=benefit_ids)
        if query:
            items = [i for i in items if query.casefold() in i.file.name.casefold()]
        listing = Listing(items, 1, max(len(items), 1), len(items), 1 if items else 0)
    else:
        listing = await core.catalog.list(
            core.configured, benefit_ids=benefit_ids, page=args.page, limit=args.limit, query=query
        )
    result = present.downloadables_list(listing)
    if args.json:
        _print_json(result)
    else:
        _print_table(result, sys.stdout)
    return EXIT_OK


async def _find(core: Core, wanted: str) -> Downloadable:
    """An id if it is one of the catalog's ids, else a name."""
    try:
        return await core.catalog.find(core.configured, downloadable_id=wanted)
    except ItemNotFoundError:
        return await core.catalog.find(core.configured, name=wanted)


async def _link(core: Core, args: argparse.Namespace) -> int:
    link = await core.link(core.configured, await _find(core, args.item))
    if args.json:
        _print_json(link)
    else:
        print(link.url)
        _err(f"{link.name}: link expires {link.expires_at} (in {link.expires_in_seconds // 60} min)")
    return EXIT_OK


async def _download(core: Core, args: argparse.Namespace) -> int:
    from polar_mcp.download import DownloadError

    item = await _find(core, args.item)
    bar = _ProgressBar(sys.stderr, present.file_name(item))
    try:
        result = await core.save(core.configured, item, overwrite=args.overwrite, progress=bar.update)
    except DownloadError as error:
        bar.finish()  # end the bar's line before the message
        _err(error.message)
        return EXIT_FAILED
    bar.finish()
    if args.json:
        _print_json(result)
    else:
        print(result.path)
        _err(present.downloaded_text(result))
    return EXIT_OK


class _ProgressBar:
    """A one-line progress bar on a terminal; silent when stderr is not one (scripts, CI logs)."""

    WIDTH = 30

    def __init__(self, out: TextIO, label: str) -> None:
        self._out = out
        self._label = label[:40]
        self._shown = False
        self._interactive = out.isatty()

    async def update(self, done: int, total: int) -> None:
        if not self._interactive:
            return
        filled = self.WIDTH * done // total if total else self.WIDTH
        percent = 100 * done // total if total else 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._out.write(f"\r{self._label} [{bar}] {percent:3d}% {present.human_size(done)}")
        self._out.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._out.write("\n")
            self._out.flush()


async def _doctor(core: Core, _: argparse.Namespace) -> int:
    settings = core.settings
    print(f"polar-mcp {__version__}")
    where = "POLAR_API_URL" if settings.api_url else settings.server
    print(f"API:       {settings.base_url} ({where})")
    if settings.api_version:
        print(f"Version:   Polar-Version {settings.api_version}")
    print(f"Token:     {_describe_mode(settings)}")
    reachable = await _reachable(core)
    print(f"Reachable: {'yes' if reachable else 'no'}")
    if not reachable:
        return EXIT_UNAVAILABLE
    if settings.mode == "none":
        print("Session:   none configured (set POLAR_CUSTOMER_SESSION, or POLAR_ACCESS_TOKEN + POLAR_CUSTOMER_ID)")
        return EXIT_CONFIG
    try:
        info = await core.catalog.client.introspect(core.configured)
    except PolarError as error:
        hint = f" {core.configured.renew_hint}" if isinstance(error, AuthenticationError) else ""
        print(f"Session:   rejected — {error.message}{hint}")
        return exit_code(error)
    left = int((info.expires_at - datetime.now(UTC)).total_seconds())
    renewal = " (renewed automatically)" if isinstance(core.configured, MintedSession) else ""
    print(f"Session:   valid, expires {present.utc_iso(info.expires_at)} (in {max(left, 0) // 60} min){renewal}")
    return EXIT_OK


def _describe_mode(settings: Settings) -> str:
    if settings.mode == "session" and settings.customer_session is not None:
        note = " (POLAR_ACCESS_TOKEN ignored)" if settings.access_token is not None else ""
        return f"session from POLAR_CUSTOMER_SESSION, {token_kind(settings.customer_session.get_secret_value())}{note}"
    if settings.mode == "minted" and settings.access_token is not None:
        who = settings.customer_id or settings.external_customer_id
        kind = token_kind(settings.access_token.get_secret_value())
        return f"minted from POLAR_ACCESS_TOKEN ({kind}) for customer {who}"
    return "none"


async def _reachable(core: Core) -> bool:
    # Any HTTP answer (even 401 without a token) proves Polar is reachable; nothing is sent but a GET.
    try:
        await core.catalog.client.probe(INTROSPECT_PATH)
    except (httpx2.TransportError, TimeoutError):
        return False
    return True


def _print_json(model: BaseModel) -> None:
    print(json.dumps(model.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False))


def _print_table(result: present.DownloadablesList, out: TextIO) -> None:
    if not result.items:
        past_end = result.total_count and result.page > result.max_page
        note = f"Page {result.page} is past the end ({result.max_page} pages)." if past_end else "No files."
        print(note, file=out)
        return
    rows = [(item.name, item.size, item.mime_type or "", item.id) for item in result.items]
    headers = ("NAME", "SIZE", "TYPE", "ID")
    widths = [min(60, max(len(h), *(len(r[i]) for r in rows))) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        cells = [cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "…" for i, cell in enumerate(row)]
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip(), file=out)
    files = "file" if result.total_count == 1 else "files"
    print(f"page {result.page} of {result.max_page} · {result.total_count} {files}", file=out)
    if result.has_more:
        print(f"more: --page {result.page + 1}, or --all", file=out)


def _err(message: str) -> None:
    print(f"polar-mcp: {message}", file=sys.stderr)
