"""Small text helpers: neutralising text from outside (Polar's file names, error details) before
showing it, and writing sizes and times the way Polar does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)")
# C0/C1 controls, line/paragraph separators, and bidi overrides that can disguise text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
# Polar's `size_readable` goes on past TB: a size can reach 2**63 - 1 bytes, about 8 EB.
_UNITS = ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgtpe])(?:i?b)?|b)?\s*", re.IGNORECASE)


def clean_text(value: object, limit: int = 120) -> str:
    """One line of safe text: no escape sequences or control characters, bounded length."""
    text = _CONTROL.sub(" ", _ANSI.sub("", str(value)))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def has_control(value: str) -> bool:
    """Whether `value` holds any character `clean_text` would remove."""
    return _CONTROL.search(value) is not None or "\x1b" in value


def human_size(size: int) -> str:
    """Bytes exactly as Polar's `size_readable` writes them: 1024 steps, one decimal ('976.6 KB').

    Like Polar, the unit changes only once the value is 1024 or more, so 1,048,575 bytes reads
    '1024.0 KB' (1023.999... rounded), never '1.0 MB'.
    """
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} YB"


def parse_size(text: str) -> int:
    """A size setting in bytes, read in the units `human_size` writes: '5GB', '1.5 GB', '500MB', '4096'.

    K, M, G, T, P, E are steps of 1024, with or without a trailing 'B' or 'iB', in any case.
    Raises ValueError for anything else.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError("must be a size such as 500MB, 2GB or a number of bytes (1 KB = 1024 bytes)")
    unit = (match.group(2) or "").upper()
    power = "KMGTPE".index(unit) + 1 if unit else 0
    # Decimal, not float: '1.1GB' is exactly 1.1 * 1024**3, truncated to whole bytes.
    return int(Decimal(match.group(1)) * 1024**power)


def utc_iso(moment: datetime) -> str:
    """UTC ISO 8601 ending in Z, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
