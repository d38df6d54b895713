"""A hundred tool calls at once: every one answered, each with exactly its own answer, no tenant crossing over.

Expected answers come from making the same calls one at a time first, on the same session. The double's
clock is frozen, so a link signed twice is the same string: answers are compared whole, except
`expires_in_seconds` (and the minutes the text derives from it), which follow the wall clock. Every
signed link is also decoded: the customer it was signed for must be the caller.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_OTHER_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_MEMBER_EXTERNAL_ID,
)
from polar_mcp.double.store import Store
from polar_mcp.http import build_http_app
from tests.helpers.demo import ada_id
from tests.helpers.loopback import serve_asgi

pytestmark = pytest.mark.anyio

CALLS = 100
LATENCY = 0.1
"""Seconds the double adds to every request during the concurrent phase, so calls overlap in flight."""
BOUND = 60.0
"""No phase of a test may take longer than this."""
_LINK = re.compile(r"/v1/customer-portal/downloadables/\.([A-Za-z0-9_-]+)\.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MINUTES = re.compile(r"\(in \d+ min\)")

Call = tuple[str, dict[str, Any]]


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


@dataclass(frozen=True)
class Answer:
    """A tool result with the parts that follow the wall clock taken out."""

    is_error: bool
    text: str
    structured: str


def _answer(result: CallToolResult) -> Answer:
    texts = [block.text for block in result.content if block.type == "text"]
    structured = dict(result.structured_content or {})
    structured.pop("expires_in_seconds", None)
    return Answer(result.is_error, _MINUTES.sub("(in N min)", "\n".join(texts)), repr(sorted(structured.items())))


def _link_customers(store: Store, result: CallToolResult) -> set[str]:
    """The customers the double-signed download links in a result were issued to.

    A link's payload is Polar's shape: zlib-compressed JSON `{"id": <downloadable id>}`, base64url.
    """
    bodies = _LINK.findall(result.model_dump_json())
    ids = [
        json.loads(zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))["id"] for body in bodies
    ]
    return {store.links[id_][0] for id_ in ids}


def _calls(names: list[str], ids: list[str], wrong_names: list[str], count: int) -> list[Call]:
    """`count` calls cycling through listings (queries, limits, pages), links by name and by id, and
    errors: `wrong_names`, an unknown name, an ambiguous one, and any id in `ids` that is not the caller's."""
    queries = [None, "rust", "ferris", "MP4", "png", "errata", "no-such-file", "wallpaper", "samples"]
    kinds: list[Call] = []
    for index in range(count):
        match index % 5:
            case 0 | 1:
                args: dict[str, Any] = {"limit": 1 + index % 7, "page": 1 + index % 3}
                query = queries[index % len(queries)]
                if query is not None:
                    args["query"] = query
                kinds.append(("list_downloadables", args))
            case 2:
                kinds.append(("get_download_link", {"name": names[index % len(names)]}))
            case 3:
                kinds.append(("get_download_link", {"downloadable_id": ids[index % len(ids)]}))
            case _:
                wrong = [*wrong_names, "no-such-file.bin", "." if len(names) > 1 else "no-such-file.bin"]
                kinds.append(("get_download_link", {"name": wrong[index % len(wrong)]}))
    return kinds


def _key(call: Call) -> str:
    return f"{call[0]}:{sorted(call[1].items())}"


async def _catalog(client: Client) -> tuple[list[str], list[str]]:
    """File names and row ids of everything this client's customer can download."""
    result = await client.call_tool("list_downloadables", {"limit": 100})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    items = result.structured_content["items"]
    return [item["name"] for item in items], [item["id"] for item in items]


async def _expected(client: Client, calls: list[Call]) -> dict[str, Answer]:
    """Each distinct call's answer, asked one at a time."""
    expected: dict[str, Answer] = {}
    for call in calls:
        if _key(call) not in expected:
            expected[_key(call)] = _answer(await client.call_tool(*call))
    return expected


async def _all_at_once(store: Store, client_for: list[tuple[Client, Call]]) -> list[CallToolResult]:
    """Make every call at once, each request to the double slowed by LATENCY; check they overlapped."""
    results: dict[int, CallToolResult] = {}

    async def one(index: int, client: Client, call: Call) -> None:
        results[index] = await client.call_tool(*call)

    store.faults.update({"latency": LATENCY})
    store.peak_in_flight = 0
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as group:
            for index, (client, call) in enumerate(client_for):
                group.start_soon(one, index, client, call)
    # Counted by the double, not read off a clock: several of them waited out its latency together.
    assert store.peak_in_flight >= 4, f"at most {store.peak_in_flight} requests at once: the calls did not overlap"
    assert sorted(results) == list(range(len(client_for)))  # every call answered
    return [results[index] for index in range(len(client_for))]


# stdio ------------------------------------------------------------------------------------------


async def test_a_hundred_concurrent_stdio_calls_are_all_answered_each_with_its_own_answer(
    store: Store, double: RunningDouble
) -> None:
    customer = ada_id(store)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "polar_mcp"],
        env={"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": store.issue_session(customer)},
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            with anyio.fail_after(BOUND):
                names, ids = await _catalog(client)
                calls = _calls(names, ids, ["rust-in-practice"], CALLS)
                expected = await _expected(client, calls)
            results = await _all_at_once(store, [(client, call) for call in calls])
    assert len({_key(call) for call in calls}) >= 40  # many different calls, not one repeated
    kinds = {_answer(result).is_error for result in results}
    assert kinds == {True, False}  # errors were mixed in, and answered as such
    assert sum(1 for result in results if _link_customers(store, result)) >= 20
    for call, result in zip(calls, results, strict=True):
        assert _answer(result) == expected[_key(call)], call
        assert _link_customers(store, result) <= {customer}


# HTTP, many tenants -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    name: str
    customer_id: str
    token: str


@pytest.fixture(scope="module")
def tenants(store: Store) -> list[Tenant]:
    """Four customers with different catalogs: Ada, Grace, Katherine (added here: ebooks and code
    samples, which Ada holds too) and the Acme team through its member Bob (a `polar_mst_` session)."""
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    benefits = {benefit.description: benefit for benefit in store.benefits.values()}
    katherine = store.add_customer(press, "katherine@example.com", "Katherine Johnson", external_id="katherine-1918")
    store.grant(katherine, benefits["Rust Ebook Bundle"], store.now() - 86_400)
    store.grant(katherine, benefits["Code Samples"], store.now() - 86_400)
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)
    bob = next(m for m in store.members_of(acme.id) if m.external_id == DEMO_TEAM_MEMBER_EXTERNAL_ID)
    found: list[Tenant] = []
    for name, customer_id, member_id in [
        ("ada", store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id, None),
        ("grace", store.customer_by_external_id(DEMO_OTHER_CUSTOMER_EXTERNAL_ID).id, None),
        ("katherine", katherine.id, None),
        ("acme-bob", acme.id, bob.id),
    ]:
        found.append(Tenant(name, customer_id, store.issue_session(customer_id, member_id)))
    return found


@pytest.fixture(scope="module")
def mcp_url(double: RunningDouble) -> Iterator[str]:
    settings = load_settings({"POLAR_API_URL": double.base_url, "POLAR_MCP_TIMEOUT": "20"})
    with serve_asgi(build_http_app(settings, use_configured_token=False)) as base:
        yield base + "/mcp"


@asynccontextmanager
async def _http_client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_a_hundred_concurrent_http_calls_from_four_tenants_each_get_their_own_tenants_answer(
    store: Store, tenants: list[Tenant], mcp_url: str
) -> None:
    async with (
        _http_client(mcp_url, tenants[0].token) as c0,
        _http_client(mcp_url, tenants[1].token) as c1,
        _http_client(mcp_url, tenants[2].token) as c2,
        _http_client(mcp_url, tenants[3].token) as c3,
    ):
        clients = [c0, c1, c2, c3]
        with anyio.fail_after(BOUND):
            catalogs = [await _catalog(client) for client in clients]
        own_ids = [set(ids) for _, ids in catalogs]
        assert all(own_ids)
        assert all(not a & b for i, a in enumerate(own_ids) for b in own_ids[i + 1 :])
        per_tenant: list[list[Call]] = []
        for index, (names, ids) in enumerate(catalogs):
            others = [n for j, (other, _) in enumerate(catalogs) if j != index for n in other if n not in names]
            stranger_ids = sorted(set[str]().union(*own_ids) - own_ids[index])
            per_tenant.append(_calls(names, [*ids, stranger_ids[index]], others[:3], CALLS // len(tenants)))
        # Interleaved: call n goes to tenant n % 4.
        plan = [(t, calls[n]) for n in range(CALLS // len(tenants)) for t, calls in enumerate(per_tenant)]
        with anyio.fail_after(BOUND):
            expected = [await _expected(clients[t], calls) for t, calls in enumerate(per_tenant)]
        results = await _all_at_once(store, [(clients[t], call) for t, call in plan])

    assert len(results) == CALLS
    assert {t for t, _ in plan} == set(range(len(tenants)))
    for (tenant, call), result in zip(plan, results, strict=True):
        assert _answer(result) == expected[tenant][_key(call)], (tenants[tenant].name, call)
        seen = set(_UUID.findall(result.model_dump_json()))
        strangers = set[str]().union(*own_ids) - own_ids[tenant]
        if call[1].get("downloadable_id") in strangers:
            seen.discard(call[1]["downloadable_id"])  # echoed in its own "no such id" error
        assert not seen & strangers, (tenants[tenant].name, call, seen & strangers)
        assert _link_customers(store, result) <= {tenants[tenant].customer_id}
    for tenant in range(len(tenants)):
        linked = [
            result
            for (t, _), result in zip(plan, results, strict=True)
            if t == tenant and _link_customers(store, result)
        ]
        assert len(linked) >= 5, tenants[tenant].name
