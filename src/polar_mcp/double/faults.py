"""Fault switches of the double, flipped at run time by tests (directly or over the admin route)."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Literal

# Counted faults that decide a request's fate before it reaches a route, consumed one per request in
# this order: the first one set wins.
GateFault = Literal["drop_next", "non_json_next", "rate_limit_next", "errors_next"]
GATE_FAULTS: tuple[GateFault, ...] = (
    "drop_next",
    "non_json_next",
    "rate_limit_next",
    "errors_next",
)

_COUNTS = (*GATE_FAULTS, "truncate_next", "cut_next", "wrong_bytes_next", "storage_errors_next")
_SERVER_ERRORS = frozenset(s.value for s in HTTPStatus if 500 <= s.value <= 599)

S3_ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.",
    ),
    "ExpiredToken": (400, "The provided token has expired."),
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to within the timeout period.",
    ),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "ServiceUnavailable": (503, "Reduce your request rate."),
    "SlowDown": (503, "Please reduce your request rate."),
}
"""S3 error codes storage can be made to answer, with the status and message S3 gives them."""


@dataclass
class Faults:
    """What the double gets wrong, and for how long.

    Counted faults (`*_next`) hit the next N requests the double receives (admin routes excluded),
    or the next N answers or downloads as each says; deterministic tests should use them.
    `error_rate` draws from an RNG seeded with `seed`. The switches are read and consumed under a lock
    because tests flip them from another thread than the server's.
    """

    latency: float = 0.0
    """Seconds added before answering each request."""
    error_rate: float = 0.0
    """Probability that a request answers `error_status`."""
    seed: int = 0
    error_status: int = 503
    errors_next: int = 0
    """The next N requests answer `error_status`."""
    rate_limit_next: int = 0
    """The next N requests answer 429 with `Retry-After: retry_after`, whatever the real limit."""
    retry_after: int = 30
    drop_next: int = 0
    """The next N requests see their connection closed without any answer."""
    truncate_next: int = 0
    """The next N answers with a body carry only its first half (Content-Length matching)."""
    cut_next: int = 0
    """The next N answers with a body send the headers and half of it, then close the connection."""
    non_json_next: int = 0
    """The next N requests answer 200 with an HTML page, as a captive portal or proxy would."""
    drift: bool = False
    """Listings carry extra fields, nulls in every nullable field and an unknown `service`."""
    wrong_bytes_next: int = 0
    """The next N storage downloads serve bytes that differ from the listed checksum."""
    storage_errors_next: int = 0
    """The next N storage requests answer the S3 error `storage_error_code` (its status, an XML body)."""
    storage_error_code: str = "InternalError"
    """One of S3_ERRORS."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def update(self, changes: Mapping[str, object]) -> None:
        """Set some switches; on a bad one raise ValueError or TypeError naming it, changing nothing."""
        checked = {name: _check(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)
            if "seed" in checked:
                self._rng.seed(self.seed)

    def reset(self) -> None:
        """Switch every fault off."""
        self.update({f.name: f.default for f in fields(self) if not f.name.startswith("_")})

    def snapshot(self) -> dict[str, object]:
        """The switches as a JSON-ready dict."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def take(self, name: str) -> bool:
        """Consume one unit of the counted fault `name`; False when it is not set."""
        with self._lock:
            left: int = getattr(self, name)
            if left <= 0:
                return False
            setattr(self, name, left - 1)
            return True

    def take_gate_fault(self) -> GateFault | None:
        """Consume the first counted request fault that is set, if any."""
        for name in GATE_FAULTS:
            if self.take(name):
                return name
        return None

    def roll_error(self) -> bool:
        """Whether this request falls in the `error_rate` share."""
        with self._lock:
            return self.error_rate > 0 and self._rng.random() < self.error_rate


def _check(name: str, value: object) -> object:
    if name not in _SWITCHES:
        raise ValueError(f"{name}: no such fault")
    if name == "drift":
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a boolean")
        return value
    if name == "storage_error_code":
        if value not in S3_ERRORS:
            raise ValueError(f"{name}: expected one of {', '.join(S3_ERRORS)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number")
    if name in (*_COUNTS, "retry_after", "seed"):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an integer >= 0")
    elif name == "latency":
        if value < 0:
            raise ValueError(f"{name}: expected seconds >= 0")
    elif name == "error_rate":
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a probability between 0 and 1")
    elif value not in _SERVER_ERRORS:
        raise ValueError(f"{name}: expected a 5xx status")
    return value


_SWITCHES = frozenset(f.name for f in fields(Faults) if not f.name.startswith("_"))
