"""Command line: `polar-mcp` serves MCP (stdio by default); `list`, `link`, `download`, `sync`, `doctor` answer scripts.

Flags mirror the environment variables; tokens come from the environment only. Imports beyond the
stdio path (HTTP serving, the double, the CLI commands) happen only when asked for.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from polar_mcp import __version__
from polar_mcp.config import OPTIONS, ConfigError, Settings, load_settings
from polar_mcp.exit_codes import ExitCode
from polar_mcp.help_texts import QUERY_HELP

if TYPE_CHECKING:
    import argparse

    from mcp.server import MCPServer


def _options_parser(*, suppress: bool) -> argparse.ArgumentParser:
    """Global flags, accepted before or after a command (only given values override)."""
    import argparse  # not at the top: a start with no arguments never needs it

    parser = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    for option in OPTIONS:
        if option.flag is None:
            continue
        help_text = f"{option.help} [{option.env}]"
        if option.switch:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action="store_const",
                const=True,
                default=default,
                help=help_text,
            )
        else:
            parser.add_argument(option.flag, dest=option.field, default=default, help=help_text)
    parser.add_argument(
        "--demo",
        action="store_true",
        default=default if suppress else False,
        help="use the embedded Polar double with a demo customer: no account needed",
    )
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    """The global flags alone, as `build_parser` reads them when no command is given."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="polar-mcp", parents=[_options_parser(suppress=False)], allow_abbrev=False, exit_on_error=False
    )
    parser.set_defaults(command=None)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as `build_parser` reads it.

    A server start (flags, no command) is read by the global flags alone: the full parser, with every
    command's copy of the flags, takes about 10 ms to build, a cost every start of an MCP host would
    pay. Anything else (a command, help, the version, a mistake) goes to the full parser, which also
    words any error.
    """
    import argparse

    tokens = sys.argv[1:] if argv is None else list(argv)
    if not any(token in ("-h", "--help", "--version") for token in tokens):
        with contextlib.suppress(argparse.ArgumentError):
            args, rest = _serve_parser().parse_known_args(tokens)
            if not rest:
                return args
    return build_parser().parse_args(tokens)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="polar-mcp",
        description="MCP server for the files a customer bought on Polar.sh. With no command it serves MCP.",
        epilog=(
            "Tokens are read from the environment only (POLAR_CUSTOMER_SESSION or POLAR_ACCESS_TOKEN); "
            "without one, `polar-mcp login` signs in with a code Polar e-mails you."
        ),
        parents=[_options_parser(suppress=False)],
        # `list --all` must not be read as an abbreviation of --allowed-hosts.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"polar-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = [_options_parser(suppress=True)]
    listing = commands.add_parser("list", parents=common, help="list the customer's files")
    listing.add_argument("--benefit-id", action="append", dest="benefit_ids", metavar="ID", help="repeatable")
    listing.add_argument("--query", help=QUERY_HELP)
    listing.add_argument("--page", type=int, default=1)
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--all", action="store_true", help="every file, all pages")
    listing.add_argument("--json", action="store_true", help="the structured result, as the MCP tool gives it")
    link = commands.add_parser("link", parents=common, help="print a fresh download link for one file")
    link.add_argument("item", metavar="ID|NAME", help="id or file id from `list`, or a file name")
    link.add_argument("--json", action="store_true")
    fetch = commands.add_parser("download", parents=common, help="save one file, verified; prints its path")
    fetch.add_argument("item", metavar="ID|NAME", help="id or file id from `list`, or a file name")
    fetch.add_argument(
        "--dir", dest="download_dir", default=argparse.SUPPRESS, help="folder to save into [POLAR_MCP_DOWNLOAD_DIR]"
    )
    fetch.add_argument("--overwrite", action="store_true", help="replace a different file of the same name")
    fetch.add_argument("--json", action="store_true")
    sync = commands.add_parser(
        "sync", parents=common, help="bring every purchased file into DIR, one folder per benefit; only what is missing"
    )
    sync.add_argument(
        "download_dir",
        nargs="?",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="folder to sync into [POLAR_MCP_DOWNLOAD_DIR]",
    )
    sync.add_argument("--benefit-id", action="append", dest="benefit_ids", metavar="ID", help="repeatable")
    sync.add_argument("--query", help=QUERY_HELP)
    sync.add_argument("--dry-run", action="store_true", help="list what would be fetched, fetching nothing")
    sync.add_argument("--json", action="store_true", help="the structured result, as the MCP tool gives it")
    commands.add_parser("doctor", parents=common, help="check the configuration, the token and Polar")
    login = commands.add_parser(
        "login",
        parents=common,
        help="sign in with a code Polar e-mails you (the code is read from stdin when it is not a terminal)",
    )
    login.add_argument(
        "seller",
        metavar="SELLER",
        nargs="?",
        default="",
        help="the seller: the slug of your portal address (polar.sh/<slug>/portal) or its id [POLAR_ORGANIZATION]",
    )
    login.add_argument(
        "--select-customer",
        metavar="ID",
        default="",
        help="when your e-mail is several customers of the seller: the id to sign in as",
    )
    logout = commands.add_parser("logout", parents=common, help="forget the stored sign-in")
    logout.add_argument("seller", metavar="SELLER", nargs="?", default="", help="the seller (default: the active one)")
    hosted = commands.add_parser("hosted", parents=common, help="operate --auth signin: revoke, clients, prune")
    actions = hosted.add_subparsers(dest="action", metavar="ACTION", required=True)
    revoke = actions.add_parser("revoke", parents=common, help="end a buyer's access at once, on every replica")
    revoke.add_argument("buyer", metavar="EMAIL|CUSTOMER_ID", help="the e-mail they signed in with, or a Polar id")
    apps = actions.add_parser("clients", parents=common, help="the registered apps, their sign-ins and last use")
    apps.add_argument("--json", action="store_true")
    actions.add_parser("prune", parents=common, help="remove expired rows (the server does it every 10 minutes)")
    return parser


def configure_logging(level: str) -> None:
    """Logs go to stderr only: stdout belongs to the protocol in stdio mode."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `polar-mcp` console script and `python -m polar_mcp`."""
    tokens = sys.argv[1:] if argv is None else list(argv)
    # How hosts launch it: no arguments, the settings in the environment. Then there is nothing to parse.
    args = parse_args(tokens) if tokens else None
    command: str | None = None if args is None else args.command
    overrides = {option.field: getattr(args, option.field, None) for option in OPTIONS if option.flag}
    if command == "hosted":
        # The operator's commands read the server's settings, whatever POLAR_MCP_AUTH says here.
        overrides["auth"] = "signin"
    try:
        settings = load_settings(os.environ, overrides)
    except ConfigError as error:
        print(f"polar-mcp: {error}", file=sys.stderr)
        return ExitCode.CONFIG
    # Commands report failures themselves; their logs stay quiet unless DEBUG is asked for.
    level = settings.log_level if command is None or settings.log_level == "DEBUG" else "ERROR"
    configure_logging(level)
    with _maybe_demo(settings, enabled=args is not None and bool(args.demo)) as effective:
        if args is None or command is None:
            return _serve(effective)
        if command == "hosted":
            from polar_mcp.hosted import operator

            return operator.run(args, effective)
        from polar_mcp import commands

        return commands.run(command, args, effective)


def _serve(settings: Settings) -> int:
    if settings.transport == "http":
        from polar_mcp.http import check_bind, serve

        try:
            check_bind(settings)
            serve(settings)
        except ConfigError as error:
            print(f"polar-mcp: {error}", file=sys.stderr)
            return ExitCode.CONFIG
        return ExitCode.OK
    if settings.auth == "signin":
        print("polar-mcp: POLAR_MCP_AUTH / --auth signin serves over HTTP: add --transport http", file=sys.stderr)
        return ExitCode.CONFIG
    from polar_mcp.server import build_server

    server = build_server(settings, stored_sign_in=True)
    settle_heap()
    anyio.run(_serve_stdio, server)
    return ExitCode.OK


def settle_heap() -> None:
    """Leave what start-up made (modules, classes, the server) out of every later garbage collection.

    A whole-catalog search makes thousands of objects, enough to start a full collection, which
    otherwise walks everything start-up made too: about 100 ms of a second search's 200 ms of CPU.
    """
    gc.freeze()


CLEANUP_GRACE = 0.2
"""Seconds cancelled calls get to remove their partial files after a signal, before the exit."""


async def _serve_stdio(server: MCPServer[Any]) -> None:
    """Serve stdio until EOF, SIGTERM or SIGINT, cancelling calls in flight so their cleanup runs.

    Python's default SIGTERM ends the process at once, leaving partial downloads behind. After a
    signal the process exits itself: the SDK reads stdin in a worker thread that a blocking
    `readline` keeps alive, so waiting for it would hang until the host closes stdin.
    """
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    logging.getLogger("polar_mcp").info("signal received: stopping")
                    group.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await anyio.sleep(CLEANUP_GRACE)
                    logging.shutdown()
                    os._exit(0)

        group.start_soon(stop_on_signal)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


@contextlib.contextmanager
def _maybe_demo(settings: Settings, *, enabled: bool) -> Generator[Settings]:
    """With --demo, start the embedded Polar double and point the settings at its demo customer."""
    if not enabled:
        yield settings
        return
    from polar_mcp.demo_backend import running_demo

    with running_demo(settings) as demo_settings:
        yield demo_settings
