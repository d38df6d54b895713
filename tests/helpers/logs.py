"""Undoing what `polar_mcp.cli.main` does to the root logger, for tests that run it in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def root_logger_restored() -> Iterator[None]:
    """Put the root logger's handlers and level back as they were (main() reconfigures them), and the
    levels polar-mcp sets on the HTTP libraries' loggers."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx2", "httpcore2")}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
