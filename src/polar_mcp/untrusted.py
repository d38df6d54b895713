"""Neutralising text that comes from outside (Polar's file names, error details) before showing it."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)")
# C0/C1 controls, line/paragraph separators, and bidi overrides that can disguise text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_text(value: object, limit: int = 120) -> str:
    """One line of safe text: no escape sequences or control characters, bounded length."""
    text = _CONTROL.sub(" ", _ANSI.sub("", str(value)))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def has_control(value: str) -> bool:
    """Whether `value` holds any character `clean_text` would remove."""
    return _CONTROL.search(value) is not None or "\x1b" in value
