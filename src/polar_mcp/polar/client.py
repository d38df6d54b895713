"""The Polar HTTP client: one long-lived `httpx2.AsyncClient`, retries, deadlines, typed errors.

It knows HTTP and Polar, nothing of MCP. Tokens are passed per call through a `TokenSource`, never
set as default headers, because one client serves every caller of an HTTP deployment.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import anyio
import httpx2
from pydantic import BaseModel, SecretStr, ValidationError

from polar_mcp import __version__
from polar_mcp.cache import BoundedCache
from polar_mcp.failure import Failure
from polar_mcp.polar.errors import (
    AuthenticationError,
    CatalogTooLargeError,
    MalformedResponseError,
    PolarConnectionError,
    PolarError,
    PolarTimeoutError,
    error_from_response,
)
from polar_mcp.polar.models import (
    BenefitGrant,
    BenefitGrantsPage,
    Downloadable,
    DownloadablesPage,
    Pagination,
    SessionIntrospection,
)
from polar_mcp.polar.sessions import TokenSource, principal_key
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)

DOWNLOADABLES_PATH = "/v1/customer-portal/downloadables/"
INTROSPECT_PATH = "/v1/customer-portal/customer-session/introspect"
BENEFIT_GRANTS_PATH = "/v1/customer-portal/benefit-grants/"
MAX_PAGE_SIZE = 100
USER_AGENT = f"polar-mcp/{__version__}"

M = TypeVar("M", bound=BaseModel)
HttpClientSource = httpx2.AsyncClient | Callable[[], httpx2.AsyncClient]
"""A client, or a factory called on first use (the lifespan owns and closes what it makes)."""
T = TypeVar("T")
PageHook = Callable[[Sequence[Downloadable]], None]
"""Called with each page of a whole-catalog scan as it arrives."""


class RetryPolicy(NamedTuple):
    """Retries on 408/429/5xx and connection errors only, with capped exponential backoff."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0


class ClientLimits(NamedTuple):
    """Bounds that protect Polar's rate limit and our memory."""

    # Rate limits count requests, not concurrency: a whole-catalog scan sends the same requests either
    # way. 20 in flight reads a 2,000-file catalog in two round trips while bounding any one burst.
    per_principal_concurrency: int = 20
    max_body_bytes: int = 16 * 1024 * 1024
    max_catalog_pages: int = 200


class PolarClient:
    """Calls Polar's customer-portal endpoints with a caller's token."""

    def __init__(
        self,
        http: HttpClientSource,
        *,
        timeout: float,
        polar_version: str | None = None,
        retry: RetryPolicy | None = None,
        limits: ClientLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http if isinstance(http, httpx2.AsyncClient) else None
        self._make_http = http if not isinstance(http, httpx2.AsyncClient) else None
        self._timeout = timeout
        self._polar_version = polar_version
        self._retry = retry or RetryPolicy()
        self._limits = limits or ClientLimits()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        # One limiter per principal, shared by every call for it, so a burst of tool calls (or a
        # concurrent catalog scan) never exceeds a handful of requests in flight for one customer.
        self._limiters: BoundedCache[str, anyio.CapacityLimiter] = BoundedCache(
            max_entries=4096, ttl=3600.0, clock=clock
        )

    @property
    def http(self) -> httpx2.AsyncClient:
        """The HTTP client, made on first use when a factory was given (start-up stays light)."""
        if self._http is None:
            assert self._make_http is not None
            self._http = self._make_http()
        return self._http

    def prepare(self) -> None:
        """Do what the first request would do before sending: make the HTTP client (the HTTP stack's
        imports and, for https, the CA bundle) and build the models that read Polar's pages. Nothing
        is sent."""
        _ = self.http
        for model in (DownloadablesPage, BenefitGrantsPage):
            model.model_rebuild()

    @property
    def timeout(self) -> float:
        return self._timeout

    @staticmethod
    def new_http_client(
        base_url: str,
        timeout: float,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> httpx2.AsyncClient:
        """An `AsyncClient` with explicit timeouts and our User-Agent; no base URL means no Polar
        credentials can ever be aimed at it by a relative path (the download client)."""
        return httpx2.AsyncClient(
            base_url=base_url,
            transport=transport,
            verify=verify if verify is not None else True,
            timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    async def list_downloadables(
        self,
        source: TokenSource,
        *,
        page: int = 1,
        limit: int = MAX_PAGE_SIZE,
        benefit_ids: Sequence[str] = (),
    ) -> DownloadablesPage:
        """One page of the customer's downloadables, optionally narrowed to some benefits."""
        params = [("benefit_id", b) for b in benefit_ids] + [("page", str(page)), ("limit", str(limit))]
        result = await self._get(source, DOWNLOADABLES_PATH, params, DownloadablesPage)
        _check_page(len(result.items), result.pagination, limit)
        return result

    async def list_all_downloadables(
        self, source: TokenSource, *, benefit_ids: Sequence[str] = (), on_page: PageHook | None = None
    ) -> list[Downloadable]:
        """The whole catalog: page 1 tells `max_page`, the rest are fetched concurrently, in order.

        `on_page` sees each page's items as that page arrives, before the others are in.
        """

        async def page(number: int) -> tuple[list[Downloadable], int]:
            result = await self.list_downloadables(source, page=number, limit=MAX_PAGE_SIZE, benefit_ids=benefit_ids)
            if on_page is not None:
                on_page(result.items)
            return list(result.items), result.pagination.max_page

        # Pages are fetched at slightly different moments: an item can shift across a page boundary.
        unique: dict[str, Downloadable] = {}
        for item in await self._all_pages(page):
            unique.setdefault(item.id, item)
        return list(unique.values())

    async def list_benefit_grants(
        self, source: TokenSource, *, page: int = 1, limit: int = MAX_PAGE_SIZE
    ) -> BenefitGrantsPage:
        """One page of the customer's downloadables benefit grants (which carry benefit names)."""
        params = [("type", "downloadables"), ("page", str(page)), ("limit", str(limit))]
        result = await self._get(source, BENEFIT_GRANTS_PATH, params, BenefitGrantsPage)
        _check_page(len(result.items), result.pagination, limit)
        return result

    async def list_all_benefit_grants(self, source: TokenSource) -> list[BenefitGrant]:
        """Every downloadables benefit grant, pages fetched concurrently."""

        async def page(number: int) -> tuple[list[BenefitGrant], int]:
            result = await self.list_benefit_grants(source, page=number)
            return list(result.items), result.pagination.max_page

        return await self._all_pages(page)

    async def _all_pages(self, fetch: Callable[[int], Awaitable[tuple[list[T], int]]]) -> list[T]:
        """Page 1, then pages 2..max_page concurrently (bounded by the per-principal limiter), in order."""
        first, max_page = await fetch(1)
        if max_page > self._limits.max_catalog_pages:
            raise CatalogTooLargeError(
                f"This catalog has {max_page} pages of {MAX_PAGE_SIZE} files, more than polar-mcp reads at once "
                f"({self._limits.max_catalog_pages}); narrow it with benefit_id, or page through the listing."
            )
        last = max_page
        pages: dict[int, list[T]] = {1: first}

        async def fetch_into(number: int) -> None:
            pages[number] = (await fetch(number))[0]

        if last > 1:
            try:
                async with anyio.create_task_group() as group:
                    for number in range(2, last + 1):
                        group.start_soon(fetch_into, number)
            except ExceptionGroup as failures:
                raise first_error(failures) from None
        return [entry for number in sorted(pages) for entry in pages[number]]

    async def introspect(self, source: TokenSource) -> SessionIntrospection:
        """When the current session expires; a cheap way to check a token."""
        return await self._get(source, INTROSPECT_PATH, [], SessionIntrospection)

    async def probe(self, path: str) -> int:
        """The status of an unauthenticated GET: proves Polar is reachable without using a token."""
        response = await self.http.get(path)
        return response.status_code

    async def _get(self, source: TokenSource, path: str, params: list[tuple[str, str]], model: type[M]) -> M:
        deadline = self._clock() + self._timeout
        token = await source.token()
        try:
            body = await self.request("GET", path, token=token, params=params, deadline=deadline)
        except AuthenticationError:
            # A session that can be renewed gets one fresh token and one more try, same deadline.
            renewed = await source.renew(token)
            if renewed is None:
                raise
            body = await self.request("GET", path, token=renewed, params=params, deadline=deadline)
        return parse_json(body, model)

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: SecretStr | None,
        params: Sequence[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> bytes:
        """Send one logical request with retries (`retry` overrides the client's policy); return the
        body of the 2xx answer. `token=None` sends no credentials (the sign-in endpoints)."""
        deadline = deadline if deadline is not None else self._clock() + self._timeout
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        if self._polar_version:
            headers["Polar-Version"] = self._polar_version
        policy = retry or self._retry
        limiter = self._limiter_for(token)
        attempt = 0
        while True:
            try:
                async with limiter:
                    # Time spent queued behind this principal's other requests counts too.
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise self._timeout_error()
                    return await self._attempt(method, path, headers, params, json_body, remaining)
            except PolarError as error:
                wait = self._retry_wait(error, attempt, policy)
                if wait is None or self._clock() + wait >= deadline:
                    raise
                attempt += 1
                logger.info("retrying %s %s in %.2f s (%s)", method, path, wait, type(error).__name__)
                await self._sleep(wait)

    def _limiter_for(self, token: SecretStr | None) -> anyio.CapacityLimiter:
        key = principal_key(token.get_secret_value()) if token is not None else "anonymous"
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self._limits.per_principal_concurrency)
            self._limiters.put(key, limiter)
        return limiter

    async def _attempt(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        params: Sequence[tuple[str, str]] | None,
        json_body: dict[str, Any] | None,
        remaining: float,
    ) -> bytes:
        try:
            with anyio.fail_after(remaining):
                async with self.http.stream(
                    method, path, params=list(params or ()), json=json_body, headers=headers
                ) as response:
                    body = await self._read_capped(response)
        except TimeoutError as error:
            raise self._timeout_error() from error
        except httpx2.TimeoutException as error:
            raise self._timeout_error() from error
        except httpx2.TransportError as error:
            raise PolarConnectionError(
                f"Could not reach Polar at {self.http.base_url} ({type(error).__name__}); "
                "check the network and POLAR_API_URL / POLAR_SERVER, then retry."
            ) from error
        if 200 <= response.status_code < 300:
            kind = response.headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if kind != "application/json" and not kind.endswith("+json"):
                raise MalformedResponseError(
                    f"Polar's address answered with {clean_text(kind, 40)} instead of JSON: a proxy, a captive "
                    "portal or a wrong POLAR_API_URL may be in the way."
                )
            return body
        raise error_from_response(response.status_code, response.headers, body, now=self._wall_clock())

    async def _read_capped(self, response: httpx2.Response) -> bytes:
        cap = self._limits.max_body_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise _too_large(cap)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise _too_large(cap)
            chunks.append(chunk)
        return b"".join(chunks)

    def _retry_wait(self, error: PolarError, attempt: int, policy: RetryPolicy) -> float | None:
        if not error.retryable or attempt >= policy.max_retries:
            return None
        if isinstance(error, PolarTimeoutError):
            return None  # the deadline is spent: another attempt has no time left
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, float):
            # Honour Retry-After, but never wait longer than one request may take.
            return None if retry_after > self._timeout else retry_after
        backoff = min(policy.max_delay, policy.base_delay * 2**attempt)
        return backoff * self._rng.uniform(0.5, 1.0)

    def _timeout_error(self) -> PolarTimeoutError:
        return PolarTimeoutError(
            f"Polar did not answer within {_seconds(self._timeout)} (POLAR_MCP_TIMEOUT); try again shortly."
        )


def parse_json(body: bytes, model: type[M]) -> M:
    """Validate a JSON body into `model`, turning any mismatch into a clear error."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0] if error.errors() else None
        if first is not None and first["type"] == "json_invalid":
            raise MalformedResponseError(
                "Polar sent a response that is not valid JSON (perhaps cut off); try again."
            ) from None
        where = clean_text(".".join(str(p) for p in first["loc"]), 80) if first else "?"
        raise MalformedResponseError(
            f"Polar sent a response polar-mcp could not read (unexpected shape at '{where}'); "
            "try again, and if it persists Polar's API may have changed."
        ) from None


def first_error(failures: ExceptionGroup[Exception]) -> Exception:
    """What a task group's failure means to a caller: the first expected failure in it (a `PolarError`,
    or any `Failure` a token source raised), else its only failure, else the group itself (anyio wraps
    whatever fails inside a task group)."""
    leaves: list[Exception] = []
    pending: list[Exception] = [failures]
    while pending:
        failure = pending.pop(0)
        if isinstance(failure, ExceptionGroup):
            pending[:0] = list(cast(ExceptionGroup[Exception], failure).exceptions)
        else:
            leaves.append(failure)
    polar = next((leaf for leaf in leaves if isinstance(leaf, PolarError)), None)
    if polar is not None:
        return polar
    expected = next((leaf for leaf in leaves if isinstance(leaf, Failure)), None)
    if expected is not None:
        return expected
    return leaves[0] if len(leaves) == 1 else failures


def _check_page(count: int, pagination: Pagination, limit: int) -> None:
    """Refuse a page that contradicts itself, rather than pass on more than was asked for.

    Polar clamps `limit` to 100 and computes `max_page` as ceil(total_count / limit) (0 when empty).
    """
    asked = min(limit, MAX_PAGE_SIZE)
    expected_pages = math.ceil(pagination.total_count / asked)
    if count > asked or pagination.max_page != expected_pages:
        raise MalformedResponseError(
            f"Polar sent a page that contradicts itself ({count} items for a page of at most {asked}; "
            f"{pagination.total_count} in all over {pagination.max_page} pages), so it was not used. Try again; "
            "if it persists, Polar's API may have changed."
        )


def _too_large(cap: int) -> MalformedResponseError:
    limit = f"{cap // (1024 * 1024)} MiB" if cap >= 1024 * 1024 else f"{cap} bytes"
    return MalformedResponseError(f"Polar's response was larger than {limit}, which polar-mcp refuses to read.")


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 10 else f"{math.ceil(value)} s"
