"""The base of every expected failure: the facts as fields, a neutral wording as `message`.

Polar, catalog and download failures all derive from `Failure`. Each front end words them in its own
terms (the MCP tools name arguments and tools, the CLI names commands and flags) in one place; the
neutral `message` is what they fall back to and what logs carry. It never holds a secret or upstream
text verbatim.
"""

from __future__ import annotations


class Failure(Exception):  # noqa: N818 - the base of every expected failure, not one error
    """Something that went wrong in a way the person (or model) can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
