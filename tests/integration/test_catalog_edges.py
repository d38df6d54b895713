"""Catalog edges through the MCP tools: pagination boundaries, empty and huge catalogs, search, filters.

Expected pages are computed from the double's own data (`Store.downloadables`, Polar's order: newest
grant first), never from another call of the code under test. The harness (recording transport, fake
time, connected host) is tests/helpers/host.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_OTHER_CUSTOMER_EXTERNAL_ID,
    SYNTHETIC_CUSTOMER_EXTERNAL_ID,
    synthetic_store,
)
from polar_mcp.double.store import Listed, Store
from polar_mcp.polar.client import ClientLimits, PolarClient
from polar_mcp.server import build_server
from tests.helpers.host import LISTING, Mode, Sent, connect, ok, text_of

pytestmark = pytest.mark.anyio

BIG_ITEMS = 2500
BIG_BENEFITS = 25


@pytest.fixture(scope="module")
def big() -> Store:
    return synthetic_store(items=BIG_ITEMS, benefits=BIG_BENEFITS)


@pytest.fixture(scope="module")
def big_double(big: Store) -> Iterator[RunningDouble]:
    with start_double(big) as running:
        yield running


@pytest.fixture(autouse=True)
def _faults_off(store: Store, big: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    for each in (store, big):
        each.faults.reset()
    yield
    for each in (store, big):
        each.faults.reset()


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param


def _token(store: Store, external_id: str) -> str:
    return store.issue_session(store.customer_by_external_id(external_id).id)


def _rows(store: Store, token: str, benefit_ids: list[str] | None = None) -> list[Listed]:
    """The listing exactly as the double orders it."""
    session = store.live_session(token)
    assert session is not None
    return list(store.downloadables(session, benefit_ids or []))


def _ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["items"]]


def _page(result: dict[str, Any]) -> dict[str, Any]:
    """The pagination of a listing result, without its items."""
    return {key: value for key, value in result.items() if key != "items"}


def _benefit(store: Store, name: str) -> str:
    return next(b.id for b in store.benefits.values() if b.description == name)


# Small catalogs ----------------------------------------------------------------------------------


async def test_a_page_past_the_end_says_how_many_pages_there_are(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _token(store, DEMO_CUSTOMER_EXTERNAL_ID), mode=mode) as host:
        result = await host.client.call_tool("list_downloadables", {"page": 3, "limit": 10})
    assert text_of(result) == "Page 3 is past the end: 11 files fill 2 page(s). Call again with page=1."
    assert ok(result) == {"items": [], "page": 3, "limit": 10, "total_count": 11, "max_page": 2, "has_more": False}


async def test_limit_100_lists_a_small_catalog_on_one_page_in_polars_order(store: Store, double: RunningDouble) -> None:
    token = _token(store, DEMO_CUSTOMER_EXTERNAL_ID)
    async with connect(double, token) as host:
        result = ok(await host.client.call_tool("list_downloadables", {"limit": 100}))
    assert _ids(result) == [row.id for row in _rows(store, token)]
    assert _page(result) == {"page": 1, "limit": 100, "total_count": 11, "max_page": 1, "has_more": False}


async def test_an_exact_multiple_fills_the_last_page_and_the_next_is_past_the_end(
    store: Store, double: RunningDouble
) -> None:
    token = _token(store, DEMO_OTHER_CUSTOMER_EXTERNAL_ID)
    async with connect(double, token) as host:
        last = ok(await host.client.call_tool("list_downloadables", {"page": 2, "limit": 1}))
        past = await host.client.call_tool("list_downloadables", {"page": 3, "limit": 1})
    assert _ids(last) == [_rows(store, token)[1].id]
    assert _page(last) == {"page": 2, "limit": 1, "total_count": 2, "max_page": 2, "has_more": False}
    assert text_of(past) == "Page 3 is past the end: 2 files fill 2 page(s). Call again with page=1."


async def test_a_customer_with_no_grants_has_max_page_zero_and_is_told_so_plainly(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    nobody = store.add_customer(press, "nobody@example.com", "No Purchases", external_id="no-purchases")
    async with connect(double, store.issue_session(nobody.id), mode=mode) as host:
        first = await host.client.call_tool("list_downloadables", {})
        later = await host.client.call_tool("list_downloadables", {"page": 4, "limit": 5})
        searched = await host.client.call_tool("list_downloadables", {"query": "pdf"})
        by_name = await host.client.call_tool("get_download_link", {"name": "anything.pdf"})
    assert text_of(first) == "No purchased files are available to this customer."
    assert ok(first) == {"items": [], "page": 1, "limit": 20, "total_count": 0, "max_page": 0, "has_more": False}
    assert text_of(later) == "No purchased files are available to this customer."
    assert text_of(searched) == "No files matching 'pdf'."
    assert ok(searched)["max_page"] == 0
    assert by_name.is_error
    assert text_of(by_name) == (
        "Error executing tool get_download_link: No file name matches 'anything.pdf'. Call "
        "list_downloadables (with query) to see the names and ids of the files."
    )


async def test_a_search_page_past_the_end_counts_only_the_matches(store: Store, double: RunningDouble) -> None:
    async with connect(double, _token(store, DEMO_CUSTOMER_EXTERNAL_ID)) as host:
        result = await host.client.call_tool("list_downloadables", {"query": "rust", "page": 2, "limit": 10})
    assert text_of(result) == (
        "Page 2 is past the end: 3 files matching 'rust' fill 1 page(s). Call again with page=1."
    )


async def test_a_limit_over_100_is_refused_before_polar_is_called(store: Store, double: RunningDouble) -> None:
    async with connect(double, _token(store, DEMO_CUSTOMER_EXTERNAL_ID)) as host:
        mark = len(host.recorder.sent)
        result = await host.client.call_tool("list_downloadables", {"limit": 101})
        assert result.is_error
        # The SDK's own validation text (pydantic's, with a docs URL): only its gist is pinned.
        assert text_of(result).startswith("Error executing tool list_downloadables: 1 validation error")
        assert "Input should be less than or equal to 100" in text_of(result)
        assert host.recorder.sent[mark:] == []


# A catalog of thousands --------------------------------------------------------------------------


async def test_page_13_of_a_2500_file_catalog_matches_the_doubles_own_order(
    big: Store, big_double: RunningDouble, mode: Mode
) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    async with connect(big_double, token, mode=mode) as host:
        result = ok(await host.client.call_tool("list_downloadables", {"page": 13, "limit": 100}))
    rows = _rows(big, token)[1200:1300]
    assert _ids(result) == [row.id for row in rows]
    assert [item["name"] for item in result["items"]] == [row.file.name for row in rows]
    assert _page(result) == {"page": 13, "limit": 100, "total_count": 2500, "max_page": 25, "has_more": True}


async def test_the_last_of_25_full_pages_says_no_more_and_page_26_is_past_the_end(
    big: Store, big_double: RunningDouble
) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    async with connect(big_double, token) as host:
        last = ok(await host.client.call_tool("list_downloadables", {"page": 25, "limit": 100}))
        past = await host.client.call_tool("list_downloadables", {"page": 26, "limit": 100})
    assert _ids(last) == [row.id for row in _rows(big, token)[2400:]]
    assert _page(last) == {"page": 25, "limit": 100, "total_count": 2500, "max_page": 25, "has_more": False}
    assert text_of(past) == "Page 26 is past the end: 2500 files fill 25 page(s). Call again with page=1."


async def test_a_search_scans_every_page_within_the_concurrency_bound_and_finds_exactly_the_matches(
    big: Store, big_double: RunningDouble
) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    expected = [row.id for row in _rows(big, token) if ".epub" in row.file.name]
    assert len(expected) == 417
    # The double builds every row of a 2,500-file catalog for each page: on a busy machine a scan takes
    # a while. This test is about the bound, not the time, so the deadline is generous.
    async with connect(big_double, token, timeout=120.0) as host:
        # A little latency keeps requests overlapping, so the bound is what limits them.
        big.faults.update({"latency": 0.02})
        host.recorder.peak = 0
        mark = len(host.recorder.sent)
        tail = ok(await host.client.call_tool("list_downloadables", {"query": ".EPUB", "page": 5, "limit": 100}))
        scan = host.recorder.sent[mark:]
    assert sorted(sent.query for sent in scan) == sorted(f"page={n}&limit=100" for n in range(1, 26))
    assert {sent.path for sent in scan} == {LISTING}
    # Page 1 first, then 24 pages at once: the per-customer bound is reached, never passed.
    assert host.recorder.peak == ClientLimits().per_principal_concurrency
    assert _ids(tail) == expected[400:]
    assert _page(tail) == {"page": 5, "limit": 100, "total_count": 417, "max_page": 5, "has_more": False}


async def test_a_unique_name_deep_in_the_catalog_gets_its_link(big: Store, big_double: RunningDouble) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    deep = _rows(big, token)[2431]
    async with connect(big_double, token) as host:
        link = ok(await host.client.call_tool("get_download_link", {"name": deep.file.name}))
    assert (link["id"], link["file_id"], link["benefit_id"], link["name"]) == (
        deep.id,
        deep.file.id,
        deep.benefit.id,
        deep.file.name,
    )
    assert link["url"].startswith(f"{big_double.base_url}{LISTING}")
    assert link["size_bytes"] == deep.file.size
    assert link["sha256"] == deep.file.blob.digests.sha256_hex
    assert link["expires_in_seconds"] > 3500


async def test_several_benefit_ids_narrow_the_listing_and_repeat_the_query_parameter(
    big: Store, big_double: RunningDouble, mode: Mode
) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    wanted = [_benefit(big, name) for name in ("Bundle 002", "Bundle 010", "Bundle 025")]
    # The same id again, in capitals, is the same benefit: asked for once.
    given = [*wanted, str(uuid.UUID(wanted[1])).upper()]
    async with connect(big_double, token, mode=mode) as host:
        mark = len(host.recorder.sent)
        result = ok(await host.client.call_tool("list_downloadables", {"benefit_id": given, "page": 2, "limit": 100}))
        sent = host.recorder.sent[mark:]
    expected = _rows(big, token, wanted)
    assert len(expected) == 300
    assert _ids(result) == [row.id for row in expected[100:200]]
    assert {item["benefit_id"] for item in result["items"]} <= set(wanted)
    assert _page(result) == {"page": 2, "limit": 100, "total_count": 300, "max_page": 3, "has_more": True}
    query = "&".join(f"benefit_id={b}" for b in wanted)
    assert sent == [Sent(LISTING, f"{query}&page=2&limit=100", 200)]


async def test_a_search_within_some_benefits_scans_only_their_pages(big: Store, big_double: RunningDouble) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    wanted = [_benefit(big, name) for name in ("Bundle 003", "Bundle 004")]
    expected = [row.id for row in _rows(big, token, wanted) if ".png" in row.file.name]
    async with connect(big_double, token) as host:
        mark = len(host.recorder.sent)
        result = ok(
            await host.client.call_tool("list_downloadables", {"benefit_id": wanted, "query": ".png", "limit": 100})
        )
        sent = host.recorder.sent[mark:]
    assert _ids(result) == expected
    assert result["total_count"] == len(expected) > 0
    query = "&".join(f"benefit_id={b}" for b in wanted)
    assert sorted(s.query for s in sent) == [f"{query}&page={n}&limit=100" for n in (1, 2)]


# Beyond the scan cap ------------------------------------------------------------------------------
# A scan reads at most ClientLimits.max_catalog_pages pages (200: 20,000 files). The cap is lowered
# to 2 pages here so a 2,500-file catalog stands in for a larger-than-cap one.


def _capped(double: RunningDouble, token: str) -> Client:
    settings = load_settings({"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": token})
    limits = ClientLimits(max_catalog_pages=2)
    return Client(build_server(settings, make_client=lambda http: PolarClient(http, timeout=10, limits=limits)))


async def test_a_file_beyond_the_scan_cap_is_never_reported_as_missing(big: Store, big_double: RunningDouble) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    deep = _rows(big, token)[2431]
    async with _capped(big_double, token) as client:
        result = await client.call_tool("get_download_link", {"name": deep.file.name})
    # Either it is found, or the answer says the catalog was too large to search; never "no match".
    if not result.is_error:
        assert ok(result)["id"] == deep.id
    assert not text_of(result).startswith("Error executing tool get_download_link: No file name matches")


async def test_a_search_of_a_catalog_beyond_the_scan_cap_does_not_undercount_silently(
    big: Store, big_double: RunningDouble
) -> None:
    token = _token(big, SYNTHETIC_CUSTOMER_EXTERNAL_ID)
    async with _capped(big_double, token) as client:
        result = await client.call_tool("list_downloadables", {"query": ".epub", "limit": 100})
    # Either every match is counted, or the answer says the search was incomplete.
    if not result.is_error:
        assert ok(result)["total_count"] == 417
