"""Command line: `polar-mcp` serves MCP over stdio; flags mirror the environment variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from polar_mcp import __version__
from polar_mcp.config import OPTIONS, ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polar-mcp",
        description="MCP server for the files a customer bought on Polar.sh. Serves MCP over stdio.",
        epilog="Tokens are read from the environment only (POLAR_CUSTOMER_SESSION), never from flags.",
    )
    parser.add_argument("--version", action="version", version=f"polar-mcp {__version__}")
    for option in OPTIONS:
        if option.flag is not None:
            parser.add_argument(option.flag, dest=option.field, help=f"{option.help} [{option.env}]")
    return parser


def configure_logging(level: str) -> None:
    """Logs go to stderr only: stdout belongs to the protocol in stdio mode."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # httpx2 logs every request URL at INFO; signed download links are URLs.
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `polar-mcp` console script and `python -m polar_mcp`."""
    args = _parser().parse_args(argv)
    overrides = {option.field: getattr(args, option.field, None) for option in OPTIONS}
    try:
        settings: Settings = load_settings(os.environ, overrides)
    except ConfigError as error:
        print(f"polar-mcp: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from polar_mcp.server import build_server

    build_server(settings).run()
    return 0
