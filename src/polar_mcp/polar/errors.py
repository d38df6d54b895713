"""One error hierarchy for everything that can go wrong talking to Polar.

Every message is written for the person (or model) reading it: it says what happened and what to do
next. Upstream text is never forwarded verbatim, only summarised through `clean_text`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from polar_mcp.failure import Failure
from polar_mcp.untrusted import clean_text


class PolarError(Failure):
    """Base of every Polar failure; `message` is safe to show and says what to do next."""

    retryable: bool = False


class ConfigurationError(PolarError):
    """No usable token, or a token of the wrong kind, before anything was sent."""


class AuthenticationError(PolarError):
    """Polar answered 401 `invalid_token`: the session token is expired, revoked or unknown."""


class UnauthorizedError(PolarError):
    """Polar answered 401 `Unauthorized`: no token, or a token of the wrong kind."""


class ForbiddenError(PolarError):
    """Polar answered 403: the token lacks a scope."""


class RequestValidationError(PolarError):
    """Polar answered 422: the request (or a referenced object) was not acceptable."""

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class NotFoundError(PolarError):
    """Polar answered 404."""


class GoneError(PolarError):
    """Polar answered 410: a link expired or a file was withdrawn."""


class RateLimitedError(PolarError):
    """Polar answered 429."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(PolarError):
    """Polar answered 408 or 5xx."""

    retryable = True

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class UnexpectedStatusError(PolarError):
    """Any other status Polar should not send on these endpoints (409 on sign-in is read from `data`)."""

    def __init__(self, message: str, status: int = 0, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.data = data


class PolarTimeoutError(PolarError):
    """Polar did not answer within the deadline."""

    retryable = True


class PolarConnectionError(PolarError):
    """Polar could not be reached, or dropped the connection."""

    retryable = True


class CatalogTooLargeError(PolarError):
    """A whole-catalog read would take more pages than polar-mcp reads at once."""


class MalformedResponseError(PolarError):
    """Polar answered something that is not what the API promises (not JSON, wrong shape, too big)."""


def _json_body(body: bytes) -> Mapping[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return cast(Mapping[str, Any], data) if isinstance(data, dict) else None


def _validation_problems(body: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    detail = body.get("detail") if body else None
    if not isinstance(detail, list):
        return []
    problems: list[tuple[str, str]] = []
    for entry in cast(list[Any], detail)[:5]:
        if not isinstance(entry, dict):
            continue
        entry = cast(dict[str, Any], entry)
        loc = entry.get("loc")
        parts = [str(p) for p in cast(list[Any], loc) if p not in ("query", "body")] if isinstance(loc, list) else []
        problems.append((clean_text(".".join(parts) or "request", 60), clean_text(entry.get("msg", "invalid"))))
    return problems


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: integer seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> PolarError:
    """Turn a non-2xx answer into the error a user can act on. The one place statuses are mapped."""
    if status == 429:
        # Polar's 429 has an empty body and no content type: only the header matters.
        wait = parse_retry_after(headers.get("retry-after"), now)
        when = f"retry after {wait:.0f} s" if wait is not None else "wait a minute and retry"
        return RateLimitedError(f"Polar's rate limit was reached; {when}.", wait)
    if status == 408 or status >= 500:
        return ServerError(f"Polar is having trouble right now (HTTP {status}); try again in a minute.", status)
    data = _json_body(body)
    code = data.get("error") if data else None
    if status == 401:
        if code == "invalid_token" or "invalid_token" in headers.get("www-authenticate", ""):
            return AuthenticationError(
                "Polar rejected the session token: it is expired, revoked or invalid "
                "(customer session tokens live one hour)."
            )
        return UnauthorizedError(
            "Polar did not accept this token for the customer portal: it needs a customer session "
            "token (polar_cst_…) or a member session token (polar_mst_…)."
        )
    if status == 403:
        return ForbiddenError("Polar refused the request: the token lacks the required scope.")
    if status == 422:
        problems = _validation_problems(data)
        summary = "; ".join(f"{loc}: {msg}" for loc, msg in problems) or "the request was not valid"
        return RequestValidationError(f"Polar rejected the request ({summary}).", problems)
    if status == 404:
        return NotFoundError(
            "Polar answered 404 Not Found. Check POLAR_API_URL / POLAR_SERVER, and POLAR_API_VERSION "
            "if set (known versions: 2026-04, 2026-10)."
        )
    if status == 410:
        return GoneError("Polar answered 410 Gone: the link expired or the file was withdrawn.")
    return UnexpectedStatusError(f"Polar answered an unexpected HTTP {status}; try again later.", status, data)
