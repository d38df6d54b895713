"""The script-facing commands (`list`, `link`, `download`, `sync`, `doctor`): the same core as the tools, no MCP.

Results go to stdout (a table, or `--json` with the tools' structured data); errors go to stderr with
an exit code that says what failed, worded in commands and flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TextIO

import anyio
from pydantic import BaseModel

from polar_mcp import __version__, present
from polar_mcp.catalog import AmbiguousNameError, InvalidArgumentError, ItemNotFoundError, NoUsableLinkError
from polar_mcp.config import Settings
from polar_mcp.core import Core, open_core
from polar_mcp.download_failures import DiskFullError, NotEnoughSpaceError, SyncTooLargeError
from polar_mcp.exit_codes import ExitCode
from polar_mcp.failure import Failure
from polar_mcp.polar.errors import (
    AuthenticationError,
    ConfigurationError,
    PolarConnectionError,
    PolarTimeoutError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from polar_mcp.untrusted import clean_text


def run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    """Run one command to completion and return its exit code."""
    handlers: dict[str, Callable[[Core, argparse.Namespace], Awaitable[int]]] = {
        "list": _list,
        "link": _link,
        "download": _download,
        "sync": _sync,
        "doctor": _doctor,
    }
    handler = handlers[command]

    async def main() -> int:
        async with open_core(settings) as core:
            try:
                return await handler(core, args)
            except Failure as failure:
                _err(for_the_shell(failure, core))
                return exit_code(failure)

    return anyio.run(main)


def for_the_shell(failure: Failure, core: Core) -> str:
    """A failure in a script's terms: commands and flags, not the tools' argument names."""
    if isinstance(failure, AmbiguousNameError):
        shown = clean_text(failure.wanted, 80)
        head = f"{failure.matches} files match {shown!r}; pass one of these ids instead."
        return present.ambiguous_text(head, failure.candidates)
    if isinstance(failure, ItemNotFoundError):
        shown = clean_text(failure.wanted, 80)
        if _looks_like_an_id(shown):
            return f"No file has the id {shown!r} (it may have been withdrawn). See current ids with: polar-mcp list"
        return f"No file matches {shown!r}. See the names and ids with: polar-mcp list --query {shlex.quote(shown)}"
    if isinstance(failure, InvalidArgumentError) and failure.argument == "benefit_id":
        return (
            f"--benefit-id {clean_text(failure.wanted, 60)!r} is not a benefit id: the benefit_id values are in "
            "`polar-mcp list --json`; use --query to search by file or benefit name."
        )
    if isinstance(failure, NoUsableLinkError):
        return "Polar sent no usable link for this file; try again in a minute."
    if isinstance(failure, AuthenticationError):
        return f"{failure.message} {core.configured.renew_hint}"
    if isinstance(failure, SyncTooLargeError):
        return f"{failure.message} Narrow it with --benefit-id or --query, or raise --max-sync-size."
    if isinstance(failure, NotEnoughSpaceError):
        return f"{failure.message} Free some space, choose another DIR, or narrow it with --benefit-id or --query."
    if isinstance(failure, DiskFullError):
        return (
            f"{failure.message} Files saved before it are kept: once there is room, run polar-mcp sync again "
            "and it fetches only what is missing."
        )
    return failure.message


def _looks_like_an_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def exit_code(failure: Failure) -> ExitCode:
    """The exit code for a failure: scripts can tell configuration, auth, lookup and outage apart."""
    if isinstance(failure, ConfigurationError | InvalidArgumentError):
        return ExitCode.CONFIG
    if isinstance(failure, AuthenticationError | UnauthorizedError):
        return ExitCode.AUTH
    if isinstance(failure, ItemNotFoundError | AmbiguousNameError):
        return ExitCode.NOT_FOUND
    if isinstance(
        failure, RateLimitedError | ServerError | PolarTimeoutError | PolarConnectionError | NoUsableLinkError
    ):
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


async def _list(core: Core, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100 or args.page < 1:
        _err("--limit must be 1..100 and --page at least 1.")
        return ExitCode.CONFIG
    result = await core.list(
        core.configured,
        benefit_ids=args.benefit_ids or [],
        page=1 if args.all else args.page,
        limit=None if args.all else args.limit,
        query=args.query or "",
    )
    if args.json:
        _print_json(result)
    else:
        _print_table(result, sys.stdout)
    return ExitCode.OK


async def _link(core: Core, args: argparse.Namespace) -> int:
    link = await core.link(core.configured, await core.find_reference(core.configured, args.item))
    if args.json:
        _print_json(link)
    else:
        print(link.url)
        _err(f"{link.name}: link expires {link.expires_at} (in {link.expires_in_seconds // 60} min)")
    return ExitCode.OK


async def _download(core: Core, args: argparse.Namespace) -> int:
    item = await core.find_reference(core.configured, args.item)
    bar = _ProgressBar(sys.stderr, present.file_name(item))
    try:
        result = await core.save(core.configured, item, overwrite=args.overwrite, progress=bar.update)
    finally:
        bar.finish()  # end the bar's line before any message
    if args.json:
        _print_json(result)
    else:
        print(result.path)
        _err(present.downloaded_text(result))
    return ExitCode.OK


async def _sync(core: Core, args: argparse.Namespace) -> int:
    benefit_ids: list[str] = args.benefit_ids or []
    query: str = args.query or ""
    if args.dry_run:
        plan = await core.plan_sync(core.configured, benefit_ids=benefit_ids, query=query)
        if args.json:
            _print_json(plan)
        else:
            _print_plan(plan)
        return ExitCode.OK
    bar = _ProgressBar(sys.stderr, "sync")
    try:
        result = await core.sync(core.configured, benefit_ids=benefit_ids, query=query, progress=bar.update)
    finally:
        bar.finish()
    if args.json:
        _print_json(result)
    else:
        print(present.sync_text(result))
    return ExitCode.FAILED if result.counts.failed else ExitCode.OK


def _print_plan(plan: present.SyncPlan) -> None:
    """Each file a sync would fetch (its path in the folder, its size), then what it would do."""
    for file in plan.files:
        if file.status == "to_fetch":
            print(f"{file.path}  {present.human_size(file.size_bytes)}")
    counts = plan.counts
    cannot = f", {counts.failed} cannot be fetched" if counts.failed else ""
    print(
        f"Would fetch {counts.to_fetch} file(s), {present.human_size(counts.bytes)}, into {plan.folder}; "
        f"{counts.present} already present{cannot}."
    )
    for file in plan.files:
        if file.status == "failed":
            print(f"cannot fetch {file.path}: {file.reason}")


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
    health = await core.check()
    print(f"Token:     {health.credentials}")
    print(f"Reachable: {'yes' if health.reachable else 'no'}")
    if not health.reachable:
        return ExitCode.UNAVAILABLE
    if not health.configured:
        print("Session:   none configured (set POLAR_CUSTOMER_SESSION, or POLAR_ACCESS_TOKEN + POLAR_CUSTOMER_ID)")
        return ExitCode.CONFIG
    if health.failure is not None:
        print(f"Session:   rejected — {for_the_shell(health.failure, core)}")
        return exit_code(health.failure)
    assert health.expires_at is not None
    left = int((health.expires_at - datetime.now(UTC)).total_seconds())
    renewal = " (renewed automatically)" if health.renews else ""
    print(f"Session:   valid, expires {present.utc_iso(health.expires_at)} (in {max(left, 0) // 60} min){renewal}")
    return ExitCode.OK


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
    widths = [min(60, max(_width(h), *(_width(r[i]) for r in rows))) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        cells = [_fit(cell, widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip(), file=out)
    files = "file" if result.total_count == 1 else "files"
    print(f"page {result.page} of {result.max_page} · {result.total_count} {files}", file=out)
    if result.has_more:
        print(f"more: --page {result.page + 1}, or --all", file=out)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: wide (CJK) characters take two, combining marks none."""
    return sum(_char_width(char) for char in text)


def _fit(cell: str, width: int) -> str:
    """`cell` cut with an ellipsis to at most `width` columns, then padded to exactly `width`."""
    if _width(cell) > width:
        kept, used = "", 0
        for char in cell:
            if used + _char_width(char) > width - 1:
                break
            kept += char
            used += _char_width(char)
        cell = kept + "…"
    return cell + " " * (width - _width(cell))


def _err(message: str) -> None:
    print(f"polar-mcp: {message}", file=sys.stderr)
