"""The script-facing commands (`list`, `link`, `download`, `sync`, `doctor`, `login`, `logout`): the same core
as the tools, no MCP.

Results go to stdout (a table, or `--json` with the tools' structured data); errors go to stderr with
an exit code that says what failed, worded in commands and flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
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
from polar_mcp.core import Core, NoPendingCodeError, SignInArgumentError, open_core
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
from polar_mcp.polar.signin import (
    CodeRejectedError,
    CustomerChoiceRequiredError,
    InvalidEmailError,
    SellerNotFoundError,
    SignInChangedError,
    SignInRateLimitedError,
)
from polar_mcp.signin_store import (
    CodeAttemptsLimitedError,
    CodeRequestLimitedError,
    SignedIn,
    SignInRequiredError,
    StoreError,
)
from polar_mcp.untrusted import clean_text

PORTAL = "https://polar.sh/<slug>/portal"


def run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    """Run one command to completion and return its exit code."""
    handlers: dict[str, Callable[[Core, argparse.Namespace], Awaitable[int]]] = {
        "list": _list,
        "link": _link,
        "download": _download,
        "sync": _sync,
        "doctor": _doctor,
        "login": _login,
        "logout": _logout,
    }
    handler = handlers[command]

    async def main() -> int:
        async with open_core(settings, stored_sign_in=True) as core:
            try:
                return await handler(core, args)
            except Failure as failure:
                _err(for_the_shell(failure, core))
                return exit_code(failure)

    return anyio.run(main)


def for_the_shell(failure: Failure, core: Core) -> str:
    """A failure in a script's terms: commands and flags, not the tools' argument names."""
    signing_in = _sign_in_wording(failure)
    if signing_in is not None:
        return signing_in
    if isinstance(failure, AmbiguousNameError):
        shown = clean_text(failure.wanted, 80)
        head = f"{failure.matches} files match {shown!r}; pass one of these ids instead."
        return present.ambiguous_text(head, failure.candidates)
    if isinstance(failure, ItemNotFoundError):
        shown = clean_text(failure.wanted, 80)
        if _looks_like_an_id(shown):
            return f"No file has the id {shown!r} (it may have been withdrawn). See current ids with: polar-mcp list"
        return f"No file matches {shown!r}. See the names and ids with: polar-mcp list --query {shlex.quote(shown)}"
    if isinstance(failure, InvalidArgumentError) and failure.argument == "page_or_limit":
        return "--limit must be 1..100 and --page at least 1."
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


def _sign_in_wording(failure: Failure) -> str | None:
    """The sign-in failures in a terminal's terms: `polar-mcp login`, SELLER and the flags."""
    if isinstance(failure, SignInRequiredError):
        if failure.reason == "none":
            return (
                "Not signed in. Run: polar-mcp login SELLER --email EMAIL (SELLER is the slug of the seller's portal "
                f"address, {PORTAL}); or set POLAR_CUSTOMER_SESSION, or POLAR_ACCESS_TOKEN and POLAR_CUSTOMER_ID."
            )
        return f"{failure.situation} Run: polar-mcp login"
    if isinstance(failure, SignInArgumentError):
        if failure.argument == "seller":
            head = "Which seller?" if failure.missing else f"{failure.wanted!r} is not a seller's slug or id."
            return f"{head} Give SELLER, the slug of the seller's portal address ({PORTAL}), or set POLAR_ORGANIZATION."
        if failure.argument == "email":
            head = "Which e-mail?" if failure.missing else "--email is not an e-mail address."
            return f"{head} Give --email with the address you bought with, or set POLAR_CUSTOMER_EMAIL."
        return "--select-customer must be one of the customer ids polar-mcp listed."
    if isinstance(failure, SellerNotFoundError):
        return f"{failure.message} SELLER is the slug of the seller's portal address ({PORTAL})."
    if isinstance(failure, InvalidEmailError):
        return f"{failure.message} Check --email (or POLAR_CUSTOMER_EMAIL)."
    if isinstance(failure, CodeRejectedError):
        return f"{failure.message} Run polar-mcp login again for a new code."
    if isinstance(failure, NoPendingCodeError):
        return "No code was asked for here in the last 30 minutes. Run: polar-mcp login SELLER --email EMAIL"
    if isinstance(failure, SignInRateLimitedError):
        return f"{failure.message} Run polar-mcp login again after that, not sooner."
    if isinstance(failure, CustomerChoiceRequiredError):
        rows = "\n".join(f"  {c.id}  {c.name}" for c in failure.customers)
        head = f"{failure.email} belongs to several customers of {failure.seller}; choose one with --select-customer:"
        return f"{head}\n{rows}"
    if isinstance(failure, SignInChangedError):
        return f"{failure.message} Until then, a session token in POLAR_CUSTOMER_SESSION still works."
    if isinstance(failure, CodeRequestLimitedError | CodeAttemptsLimitedError | StoreError):
        return failure.message
    return None


def _looks_like_an_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def exit_code(failure: Failure) -> ExitCode:
    """The exit code for a failure: scripts can tell configuration, auth, lookup and outage apart."""
    if isinstance(failure, SignInRequiredError) and failure.reason == "none":
        return ExitCode.CONFIG  # nothing configured, as with no token at all
    if isinstance(
        failure,
        ConfigurationError
        | InvalidArgumentError
        | SignInArgumentError
        | InvalidEmailError
        | NoPendingCodeError
        | CustomerChoiceRequiredError
        | StoreError,
    ):
        return ExitCode.CONFIG
    if isinstance(failure, AuthenticationError | UnauthorizedError | CodeRejectedError):
        return ExitCode.AUTH
    if isinstance(failure, ItemNotFoundError | AmbiguousNameError | SellerNotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(
        failure,
        RateLimitedError
        | ServerError
        | PolarTimeoutError
        | PolarConnectionError
        | NoUsableLinkError
        | SignInRateLimitedError
        | CodeRequestLimitedError
        | CodeAttemptsLimitedError,
    ):
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


async def _list(core: Core, args: argparse.Namespace) -> int:
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
    results: list[present.SyncResult] = []
    stopped_by: list[int] = []
    try:
        # A sync runs long: SIGTERM and Ctrl-C cancel it, so the transfers under way remove their
        # partial files (Python's default SIGTERM would leave them), and what was finished stays.
        async with anyio.create_task_group() as group:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for number in signals:
                        stopped_by.append(number)
                        group.cancel_scope.cancel()

            group.start_soon(stop_on_signal)
            results.append(await core.sync(core.configured, benefit_ids=benefit_ids, query=query, progress=bar.update))
            group.cancel_scope.cancel()
    except ExceptionGroup as failures:
        # The task group wraps the sync's own failure: it is worded like any other.
        if len(failures.exceptions) == 1:
            raise failures.exceptions[0] from None
        raise
    finally:
        bar.finish()
    if stopped_by:
        _err("sync interrupted: the files finished so far are kept; run it again to fetch the rest.")
        return 128 + stopped_by[0]
    result = results[0]
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
    order = " > ".join(
        f"{c.name} ({'in use' if c.used else 'set, not used' if c.present else c.absent})" for c in core.precedence()
    )
    print(f"Order:     {order}")
    try:
        signed_in = core.signed_in()
    except StoreError:
        signed_in = None  # the Session line says why the file is refused
    if signed_in is not None:
        print(f"Signed in: {_signed_in_line(signed_in, core)}")
    print(f"Reachable: {'yes' if health.reachable else 'no'}")
    if not health.reachable:
        return ExitCode.UNAVAILABLE
    if not health.configured:
        print(
            "Session:   none configured (run polar-mcp login, or set POLAR_CUSTOMER_SESSION, "
            "or POLAR_ACCESS_TOKEN + POLAR_CUSTOMER_ID)"
        )
        return ExitCode.CONFIG
    if health.failure is not None:
        print(f"Session:   rejected — {for_the_shell(health.failure, core)}")
        return exit_code(health.failure)
    assert health.expires_at is not None
    left = int((health.expires_at - datetime.now(UTC)).total_seconds())
    renewal = " (renewed automatically)" if health.renews else ""
    print(f"Session:   valid, expires {present.utc_iso(health.expires_at)} (in {max(left, 0) // 60} min){renewal}")
    return ExitCode.OK


def _signed_in_line(signed_in: SignedIn, core: Core) -> str:
    state = present.signed_in_state(signed_in, now=core.now())
    who = f"{state.name} ({state.email})" if state.name else state.email
    seller = f"{state.seller} ({state.seller_slug})" if state.seller_slug else state.seller
    if not state.expires_in_seconds:
        return f"{who} at {seller}, expired {state.expires_at}: run polar-mcp login"
    return f"{who} at {seller} until {state.expires_at} (in {round(state.expires_in_seconds / 60)} min)"


async def _login(core: Core, args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    seller, email = args.seller, ""
    default_seller, default_email = core.sign_in_defaults()
    if not seller and default_seller is None and interactive:
        seller = _ask(f"Seller (the slug of its portal address, {PORTAL}): ") or ""
    if default_email is None and interactive:
        email = _ask("E-mail you bought with: ") or ""
    customer = args.select_customer
    while True:
        try:
            sent = present.code_sent(await core.request_code(seller, email, customer))
        except CustomerChoiceRequiredError as choice:
            if not interactive:
                raise
            customer = _choose(choice)
            continue
        except CodeRequestLimitedError as limited:
            if not limited.code_pending:
                raise
            _err(f"{limited.message} Enter the code from the e-mail already sent instead.")
        else:
            _err(f"If {sent.email} bought from {sent.seller}, a code is on its way (valid 30 minutes).")
        break
    code = (_ask("Code from the e-mail: ") if interactive else sys.stdin.readline()) or ""
    if not code.strip():
        _err("No code given; run polar-mcp login again when you have it (the code stays valid 30 minutes).")
        return ExitCode.CONFIG
    signed_in = await core.complete_sign_in(code, seller=seller, email=email)
    state = present.signed_in_state(signed_in, now=core.now())
    who = f"{state.name} ({state.email})" if state.name else state.email
    print(
        f"Signed in at {state.seller} as {who} until {state.expires_at} "
        f"(in {round((state.expires_in_seconds or 0) / 60)} min).{present.owner_only_note(signed_in)}"
    )
    return ExitCode.OK


def _choose(choice: CustomerChoiceRequiredError) -> str:
    """A numbered choice among the customers an e-mail belongs to; the chosen customer id."""
    _err(f"{choice.email} belongs to several customers of {choice.seller}:")
    for number, customer in enumerate(choice.customers, start=1):
        _err(f"  {number}. {customer.name} ({customer.id})")
    while True:
        answer = _ask(f"Sign in as which one (1-{len(choice.customers)})? ")
        if answer is None:
            raise choice
        if answer.isdigit() and 1 <= int(answer) <= len(choice.customers):
            return choice.customers[int(answer) - 1].id


def _ask(prompt: str) -> str | None:
    """One line typed at the terminal (None at end of input); the prompt goes to stderr so stdout keeps
    only results."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line.strip() if line else None


async def _logout(core: Core, args: argparse.Namespace) -> int:
    gone = core.sign_out(args.seller)
    if gone is None:
        print("Not signed in" + (f" at {args.seller}." if args.seller else "."))
    else:
        print(f"Signed out of {gone.seller.name} ({gone.masked_email}): the stored session is forgotten.")
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
