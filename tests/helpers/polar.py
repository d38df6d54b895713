"""The one fake Polar of the unit and tool tests, behind `httpx2.MockTransport`, and Polar-shaped payloads.

Items follow the `DownloadableRead` schema of the OpenAPI excerpt field for field; benefit grants and
error bodies follow docs/POLAR-API.md. Nothing here knows polar-mcp's internals: tests see it only through HTTP.
The embedded double (polar_mcp.double) is the faithful Polar over real HTTP; this one exists so a test can
script exact answers (a 429 here, a 503 there) and count every request.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.lowlevel
import httpx2
from pydantic import SecretStr

from polar_mcp.polar.client import ClientLimits, PolarClient, RetryPolicy
from polar_mcp.polar.sessions import StaticSession
from tests.helpers.clock import NOW, FakeTime

BASE_URL = "https://api.polar.sh"
DOWNLOADABLES_PATH = "/v1/customer-portal/downloadables/"
BENEFIT_GRANTS_PATH = "/v1/customer-portal/benefit-grants/"
CUSTOMER_TOKEN = "polar_cst_unit_customer_token_aaaaaaaaaaaa"
OTHER_CUSTOMER_TOKEN = "polar_cst_unit_customer_token_bbbbbbbbbbbb"
MEMBER_TOKEN = "polar_mst_unit_member_token_cccccccccccccc"
ORGANIZATION_TOKEN = "polar_oat_unit_organization_token_dddddddd"
ORGANIZATION_ID = "99999999-9999-4999-8999-999999999999"
CUSTOMER_ID = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
BENEFIT_A = "11111111-1111-4111-8111-111111111111"
BENEFIT_B = "22222222-2222-4222-8222-222222222222"
SELLER = "Ferris Press"
BENEFIT_NAMES: dict[str, tuple[str, str]] = {
    BENEFIT_A: ("Rust Ebook Bundle", SELLER),
    BENEFIT_B: ("Async Course Videos", SELLER),
}
"""What `FakePolar` calls its benefits by default: (description, organization name) per benefit id."""

LINK_LIFETIME = timedelta(hours=1)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
"""A link expiry for tests on the real clock (tools, CLI, properties): the link is fresh whenever they run."""

INVALID_TOKEN_BODY = {
    "error": "invalid_token",
    "error_description": ("The access token provided is expired, revoked, malformed, or invalid for other reasons."),
}
INVALID_TOKEN_CHALLENGE = (
    'Bearer realm="polar", error="invalid_token", '
    'error_description="The access token provided is expired, revoked, malformed, or invalid"'
)
UNAUTHORIZED_BODY = {"error": "Unauthorized", "detail": "Unauthorized"}


def item_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def file_id(number: int) -> str:
    return f"ffffffff-0000-4000-8000-{number:012d}"


def link_path(number: int) -> str:
    """The path of item `number`'s signed link."""
    return f"{DOWNLOADABLES_PATH}signed-{number}"


def downloadable(
    number: int,
    name: str | None = None,
    *,
    benefit_id: str = BENEFIT_A,
    size: int = 1_234_567,
    expires_at: datetime | None = None,
    content: bytes | None = None,
    headers: dict[str, Any] | None = None,
    **file_fields: Any,
) -> dict[str, Any]:
    """One `DownloadableRead` exactly as the OpenAPI excerpt shapes it; `file_fields` override.

    Its link expires an hour after `NOW` unless `expires_at` says otherwise, and carries `headers`. With
    `content`, the size and SHA-256 are those bytes' (serve them with `FakePolar.serve_file`).
    """
    name = name if name is not None else f"file-{number}.pdf"
    expires = expires_at if expires_at is not None else NOW + LINK_LIFETIME
    if content is not None:
        size = len(content)
        file_fields = {"checksum_sha256_hex": hashlib.sha256(content).hexdigest(), **file_fields}
    file: dict[str, Any] = {
        "id": file_id(number),
        "organization_id": ORGANIZATION_ID,
        "name": name,
        "path": f"{ORGANIZATION_ID}/{file_id(number)}/{name}",
        "mime_type": "application/pdf",
        "size": size,
        "storage_version": None,
        "checksum_etag": None,
        "checksum_sha256_base64": None,
        "checksum_sha256_hex": None,
        "last_modified_at": "2026-03-04T05:06:07Z",
        "download": {
            "url": f"{BASE_URL}{link_path(number)}",
            "headers": dict(headers or {}),
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
        },
        "version": None,
        "is_uploaded": True,
        "service": "downloadable",
        "size_readable": "1.2 MB",
    }
    file.update(file_fields)
    return {"id": item_id(number), "benefit_id": benefit_id, "file": file}


def page_body(items: Sequence[dict[str, Any]], *, total_count: int, limit: int) -> dict[str, Any]:
    """A `ListResource[DownloadableRead]`; `max_page` is ceil(total/limit), 0 when empty."""
    return {
        "items": list(items),
        "pagination": {"total_count": total_count, "max_page": math.ceil(total_count / limit)},
    }


def benefit_grant(
    number: int, benefit_id: str, description: str, seller: str, *, file_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """One downloadables grant of `GET /v1/customer-portal/benefit-grants/`, shaped as docs/POLAR-API.md says."""
    granted = "2026-02-10T12:00:00Z"
    return {
        "id": f"99990000-0000-4000-8000-{number:012d}",
        "created_at": granted,
        "modified_at": None,
        "granted_at": granted,
        "revoked_at": None,
        "is_granted": True,
        "is_revoked": False,
        "customer_id": CUSTOMER_ID,
        "member_id": None,
        "benefit_id": benefit_id,
        "order_id": f"0dde0000-0000-4000-8000-{number:012d}",
        "subscription_id": None,
        "error": None,
        "benefit": {
            "id": benefit_id,
            "created_at": "2026-01-01T00:00:00Z",
            "modified_at": None,
            "type": "downloadables",
            "description": description,
            "selectable": True,
            "deletable": True,
            "organization_id": ORGANIZATION_ID,
            "organization": {
                "id": ORGANIZATION_ID,
                "created_at": "2025-01-01T00:00:00Z",
                "modified_at": None,
                "name": seller,
                "slug": "ferris-press",
                "avatar_url": None,
            },
            "properties": {"archived": {}, "files": list(file_ids)},
        },
        "properties": {"files": list(file_ids)},
    }


def validation_body(*problems: tuple[Sequence[str | int], str]) -> dict[str, Any]:
    """A 422 body as Polar sends it, `error` key included."""
    return {
        "error": "RequestValidationError",
        "detail": [
            {"type": "value_error", "loc": list(loc), "msg": msg, "input": None, "ctx": {}} for loc, msg in problems
        ],
    }


def error_body(name: str, detail: str) -> dict[str, Any]:
    return {"error": name, "detail": detail}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, json=body, headers=headers)


def invalid_token() -> httpx2.Response:
    """Polar's answer to an expired, revoked or unknown session token."""
    return json_response(401, INVALID_TOKEN_BODY, {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})


Responder = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response | None] | None]
"""Answers a request, or returns None to let the fake serve it as Polar would."""
Reply = httpx2.Response | type[httpx2.TransportError] | Responder
"""One scripted answer: a response, a transport failure (raised), or a responder."""
Handler = Callable[[httpx2.Request], Coroutine[Any, Any, httpx2.Response]] | Callable[[httpx2.Request], httpx2.Response]


@dataclass
class FakePolar:
    """Serves `items` from the downloadables endpoint as Polar does, and records every request.

    Every request but a benefit-grants one is answered, in this order, by: its path's handler in
    `routes` (a signed link's storage, an introspection); the next of the one-shot `answers` (a 429
    here, a 503 there); the lasting `script` (page 3 always fails); then as Polar would. A responder
    that returns None passes the request on. With `valid_tokens`, any other bearer token is refused
    as Polar refuses an expired session. `on_page` runs before a downloadables page is served, so a
    test can change the catalog between pages; `slowness` holds some pages back (in event-loop
    turns) so they finish after later ones; `link_ttl` makes every served link expire that long
    after the real now; each request takes `takes` seconds of `time`.

    The benefit-grants endpoint serves one downloadables grant per entry of `benefits` (benefit id:
    (description, seller)), paginated and filtered as Polar does; a benefit missing from it is
    non-public and never listed there. `grants_script` answers grants requests first.
    """

    items: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    benefits: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(BENEFIT_NAMES))
    valid_tokens: set[str] | None = None
    routes: dict[str, Responder] = field(default_factory=dict[str, Responder])
    answers: list[Reply] = field(default_factory=list[Reply])
    script: Responder | None = None
    grants_script: Responder | None = None
    on_page: Callable[[int], None] | None = None
    slowness: dict[int, int] = field(default_factory=dict[int, int])
    link_ttl: timedelta | None = None
    time: FakeTime | None = None
    takes: float = 0.0
    requests: list[httpx2.Request] = field(default_factory=list[httpx2.Request])
    served_pages: list[int] = field(default_factory=list[int])
    served_grant_pages: list[int] = field(default_factory=list[int])
    in_flight: dict[str, int] = field(default_factory=dict[str, int])
    peak_in_flight: dict[str, int] = field(default_factory=dict[str, int])
    """Per `Authorization` header: the most requests it had in flight at once."""
    max_in_flight: int = 0

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        who = request.headers.get("Authorization", "")
        self.in_flight[who] = self.in_flight.get(who, 0) + 1
        self.peak_in_flight[who] = max(self.peak_in_flight.get(who, 0), self.in_flight[who])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        try:
            if self.time is not None:
                self.time.advance(self.takes)
            # Yield to the event loop so concurrent requests really overlap inside the handler.
            grants = request.url.path == BENEFIT_GRANTS_PATH
            page = int(request.url.params.get("page", "1"))
            for _ in range(3 + (0 if grants else self.slowness.get(page, 0))):
                await anyio.lowlevel.checkpoint()
            if grants:
                return await self._answer_grants(request)
            return await self._answer(request)
        finally:
            self.in_flight[who] -= 1

    async def _answer_grants(self, request: httpx2.Request) -> httpx2.Response:
        if (scripted := await _respond(self.grants_script, request)) is not None:
            return scripted
        return self._refused(request) or self._serve_grants(request)

    async def _answer(self, request: httpx2.Request) -> httpx2.Response:
        if (routed := await _respond(self.routes.get(request.url.path), request)) is not None:
            return routed
        while self.answers:
            reply = self.answers.pop(0)
            if isinstance(reply, type):
                raise reply("scripted failure", request=request)
            if isinstance(reply, httpx2.Response):
                return reply
            if (answered := await _respond(reply, request)) is not None:
                return answered
        if (scripted := await _respond(self.script, request)) is not None:
            return scripted
        if (refused := self._refused(request)) is not None:
            return refused
        if request.url.path != DOWNLOADABLES_PATH:
            return json_response(404, {"detail": "Not Found"})
        return self._serve(request)

    def _refused(self, request: httpx2.Request) -> httpx2.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return invalid_token() if self.valid_tokens is not None and token not in self.valid_tokens else None

    def _serve_grants(self, request: httpx2.Request) -> httpx2.Response:
        assert request.method == "GET", request.method
        params = request.url.params
        page = int(params.get("page", "1"))
        limit = min(int(params.get("limit", "10")), 100)
        self.served_grant_pages.append(page)
        types = params.get_list("type")
        wanted = params.get_list("benefit_id")
        text = params.get("query", "").casefold()
        grants = [
            benefit_grant(
                number,
                benefit_id,
                description,
                seller,
                file_ids=[i["file"]["id"] for i in self.items if i["benefit_id"] == benefit_id],
            )
            for number, (benefit_id, (description, seller)) in enumerate(self.benefits.items(), start=1)
            if (not types or "downloadables" in types)
            and (not wanted or benefit_id in wanted)
            and text in description.casefold()
        ]
        start = (page - 1) * limit
        return json_response(200, page_body(grants[start : start + limit], total_count=len(grants), limit=limit))

    def _serve(self, request: httpx2.Request) -> httpx2.Response:
        params = request.url.params
        page = int(params.get("page", "1"))
        limit = min(int(params.get("limit", "10")), 100)
        if self.on_page is not None:
            self.on_page(page)
        self.served_pages.append(page)
        wanted = params.get_list("benefit_id")
        matching = [i for i in self.items if not wanted or i["benefit_id"] in wanted]
        start = (page - 1) * limit
        chosen = matching[start : start + limit]
        if self.link_ttl is not None:
            expires = (datetime.now(UTC) + self.link_ttl).isoformat()
            chosen = [_with_expiry(i, expires) for i in chosen]
        return json_response(200, page_body(chosen, total_count=len(matching), limit=limit))

    def serve_file(self, item: dict[str, Any], content: bytes) -> dict[str, Any]:
        """List `item`, and answer its signed link with `content`, as the storage behind Polar's 302 would."""
        self.items.append(item)
        self.routes[httpx2.URL(item["file"]["download"]["url"]).path] = lambda _request: httpx2.Response(
            200, content=content, headers={"Content-Type": "application/octet-stream"}
        )
        return item

    @property
    def queries(self) -> list[list[tuple[str, str]]]:
        """Each request's query, in order, as (name, value) pairs."""
        return [list(r.url.params.multi_items()) for r in self.requests]

    @property
    def listing_requests(self) -> list[httpx2.Request]:
        """The downloadables requests, in order."""
        return [r for r in self.requests if r.url.path == DOWNLOADABLES_PATH]

    @property
    def listing_queries(self) -> list[list[tuple[str, str]]]:
        """Each downloadables request's query, in order."""
        return [list(r.url.params.multi_items()) for r in self.listing_requests]

    @property
    def grant_queries(self) -> list[list[tuple[str, str]]]:
        """Each benefit-grants request's query, in order."""
        return [list(r.url.params.multi_items()) for r in self.requests if r.url.path == BENEFIT_GRANTS_PATH]

    @property
    def authorizations(self) -> list[str | None]:
        """Each request's `Authorization` header, in order."""
        return [r.headers.get("Authorization") for r in self.requests]


async def _respond(responder: Responder | None, request: httpx2.Request) -> httpx2.Response | None:
    if responder is None:
        return None
    answer = responder(request)
    return await answer if inspect.isawaitable(answer) else answer


def _with_expiry(entry: dict[str, Any], expires: str) -> dict[str, Any]:
    file = dict(entry["file"])
    file["download"] = {**file["download"], "expires_at": expires}
    return {**entry, "file": file}


def by_token(polars: dict[str, FakePolar]) -> Handler:
    """One Polar serving several customers: each request reaches the fake of its bearer token."""

    async def route(request: httpx2.Request) -> httpx2.Response:
        return await polars[request.headers["Authorization"].removeprefix("Bearer ")](request)

    return route


def make_client(
    handler: Handler,
    time: FakeTime | None = None,
    *,
    timeout: float = 30.0,
    polar_version: str | None = None,
    retry: RetryPolicy | None = None,
    limits: ClientLimits | None = None,
    seed: int = 7,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> PolarClient:
    """A `PolarClient` on the process's real `AsyncClient`, whose transport is `handler` (a `FakePolar`).

    Its retries wait with `sleep` when given, else with `time.sleep` (which moves the fake clocks).
    """
    time = time if time is not None else FakeTime()
    http = PolarClient.new_http_client(BASE_URL, timeout, transport=httpx2.MockTransport(handler))
    return PolarClient(
        http,
        timeout=timeout,
        polar_version=polar_version,
        retry=retry,
        limits=limits,
        clock=time.clock,
        wall_clock=time.wall_clock,
        sleep=sleep if sleep is not None else time.sleep,
        rng=random.Random(seed),
    )


def session(token: str = CUSTOMER_TOKEN) -> StaticSession:
    return StaticSession(SecretStr(token), renew_hint="Create a new customer session.")
