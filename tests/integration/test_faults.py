"""Faults of Polar, seen by a host: the MCP server against the double over loopback, misbehaving on cue.

Each test drives the server through an in-memory MCP client, as a host would (tests/helpers/host.py:
instant retries on a fake clock, requests counted as the client sent them). After every failure the
next call must work: the server stays up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store, synthetic_store
from polar_mcp.double.store import Store
from tests.helpers.clock import FakeTime, ManualClock
from tests.helpers.host import LISTING, Mode, Sent, connect, failed, ok

pytestmark = pytest.mark.anyio

NOT_JSON = "Polar sent a response that is not valid JSON (perhaps cut off); try again."
NOT_JSON_PAGE = (
    "Polar's address answered with text/html instead of JSON: a proxy, a captive portal or a wrong "
    "POLAR_API_URL may be in the way."
)
EXPIRED = (
    "Polar rejected the session token: it is expired, revoked or invalid (customer session tokens live "
    "one hour). Create a new customer session and update POLAR_CUSTOMER_SESSION, or set "
    "POLAR_ACCESS_TOKEN and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself."
)
ADA_FILES = 11
"""Files Ada can download in the demo catalog (hidden and revoked ones left out)."""


def _rate_limited(seconds: int) -> str:
    return f"Polar's rate limit was reached; retry after {seconds} s."


def _trouble(status: int) -> str:
    return f"Polar is having trouble right now (HTTP {status}); try again in a minute."


def _unreachable(double: RunningDouble) -> str:
    return (
        f"Could not reach Polar at {double.base_url} (RemoteProtocolError); check the network and "
        "POLAR_API_URL / POLAR_SERVER, then retry."
    )


def _tool_error(tool: str, message: str) -> str:
    return f"Error executing tool {tool}: {message}"


def _ada(store: Store, ttl: float = 3600.0) -> str:
    return store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id, ttl=ttl)


def _aligned_clock(seconds_into_minute: float) -> ManualClock:
    """A store clock near the real time, `seconds_into_minute` past a minute boundary."""
    return ManualClock(60 * math.floor(time.time() / 60) + seconds_into_minute)


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param


# 429: Retry-After --------------------------------------------------------------------------------


async def test_a_short_429_storm_is_waited_out_as_retry_after_asks(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _ada(store), timeout=10, mode=mode) as host:
        store.faults.update({"rate_limit_next": 2, "retry_after": 3})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert ok(result)["total_count"] == ADA_FILES
        assert statuses == [429, 429, 200]
        assert host.time.waits == [3.0, 3.0]
        assert host.time.monotonic < 10


async def test_a_429_storm_outlasting_the_retries_fails_with_the_wait_polar_asked_for(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"rate_limit_next": 3, "retry_after": 3})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", _rate_limited(3))
        assert statuses == [429, 429, 429]
        assert host.time.waits == [3.0, 3.0]
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_a_retry_after_longer_than_the_timeout_fails_at_once_saying_how_long_to_wait(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _ada(store), timeout=10, mode=mode) as host:
        store.faults.update({"rate_limit_next": 1, "retry_after": 30})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", _rate_limited(30))
        assert statuses == [429]
        assert host.time.waits == []
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_a_retry_after_as_long_as_the_whole_timeout_fails_at_once_as_no_time_would_be_left(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"rate_limit_next": 1, "retry_after": 10})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", _rate_limited(10))
        assert statuses == [429]
        assert host.time.waits == []


async def test_a_second_retry_after_wait_that_would_overrun_the_deadline_is_not_taken(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"rate_limit_next": 2, "retry_after": 6})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        # 6 s waited, 6 s more would end past the 10 s deadline: fail now rather than late.
        assert failed(result) == _tool_error("list_downloadables", _rate_limited(6))
        assert statuses == [429, 429]
        assert host.time.waits == [6.0]
        assert (await host.listing_works())["total_count"] == ADA_FILES


# 5xx ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("burst", "status"), [(1, 503), (2, 503), (2, 502), (2, 500)])
async def test_a_burst_of_one_or_two_server_errors_is_retried_with_backoff_and_recovers(
    store: Store, double: RunningDouble, burst: int, status: int
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"errors_next": burst, "error_status": status})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert ok(result)["total_count"] == ADA_FILES
        assert statuses == [status] * burst + [200]
        # Exponential backoff from 0.5 s with jitter between half and all of it.
        assert len(host.time.waits) == burst
        for attempt, wait in enumerate(host.time.waits):
            assert 0.25 * 2**attempt <= wait <= 0.5 * 2**attempt


async def test_three_server_errors_in_a_row_fail_with_the_having_trouble_message(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _ada(store), timeout=10, mode=mode) as host:
        store.faults.update({"errors_next": 3, "error_status": 503})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", _trouble(503))
        assert statuses == [503, 503, 503]
        assert len(host.time.waits) == 2
        assert host.time.monotonic < 10
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_a_long_outage_costs_three_attempts_only(store: Store, double: RunningDouble) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"errors_next": 6, "error_status": 504})
        result, statuses = await host.call("get_download_link", {"name": "errata.txt"})
        assert failed(result) == _tool_error("get_download_link", _trouble(504))
        assert statuses == [504, 504, 504]
        store.faults.reset()
        assert (await host.listing_works())["total_count"] == ADA_FILES


# Connections -------------------------------------------------------------------------------------


@pytest.mark.parametrize("drops", [1, 2])
async def test_dropped_connections_are_retried_and_the_listing_recovers(
    store: Store, double: RunningDouble, drops: int
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"drop_next": drops})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert ok(result)["total_count"] == ADA_FILES
        assert statuses == [0] * drops + [200]
        assert len(host.time.waits) == drops


async def test_a_connection_dropped_on_every_attempt_fails_naming_the_polar_url(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"drop_next": 3})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", _unreachable(double))
        assert statuses == [0, 0, 0]
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_a_connection_cut_mid_body_is_retried_and_the_listing_recovers(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _ada(store), timeout=10, mode=mode) as host:
        store.faults.update({"cut_next": 1})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert ok(result)["total_count"] == ADA_FILES
        # The headers (200) arrived, then the body stopped: a second attempt was made.
        assert statuses == [200, 200]
        assert len(host.time.waits) == 1


async def test_a_stall_longer_than_the_timeout_fails_fast_naming_polar_mcp_timeout(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=0.2, real_clock=True) as host:
        store.faults.update({"latency": 1.0})
        started = time.monotonic()
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        elapsed = time.monotonic() - started
        assert failed(result) == _tool_error(
            "list_downloadables", "Polar did not answer within 0.2 s (POLAR_MCP_TIMEOUT); try again shortly."
        )
        assert elapsed < 1.0
        # The deadline covers retries too: a timed-out attempt is not repeated.
        assert statuses == [0]
        assert host.time.waits == []
        store.faults.update({"latency": 0.0})
        assert (await host.listing_works())["total_count"] == ADA_FILES


# Bodies ------------------------------------------------------------------------------------------


async def test_a_truncated_body_with_a_matching_content_length_fails_clearly_without_a_retry(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        store.faults.update({"truncate_next": 1})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", NOT_JSON)
        assert statuses == [200]
        assert host.time.waits == []
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_an_html_page_answered_with_200_fails_clearly_without_a_retry(
    store: Store, double: RunningDouble, mode: Mode
) -> None:
    async with connect(double, _ada(store), timeout=10, mode=mode) as host:
        store.faults.update({"non_json_next": 1})
        result, statuses = await host.call("list_downloadables", {"limit": 100})
        assert failed(result) == _tool_error("list_downloadables", NOT_JSON_PAGE)
        assert statuses == [200]
        assert host.time.waits == []
        assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_schema_drift_still_lists_and_gives_links(store: Store, double: RunningDouble) -> None:
    store.faults.update({"drift": True})
    async with connect(double, _ada(store), timeout=10) as host:
        listing = await host.listing_works()
        assert listing["total_count"] == ADA_FILES
        names = {item["name"] for item in listing["items"]}
        assert "rust-in-practice.pdf" in names
        for item in listing["items"]:
            # Drift nulls the checksums, versions and dates: they are left out, not shown as null.
            assert {"sha256", "version", "last_modified_at"}.isdisjoint(item)
        link = ok((await host.call("get_download_link", {"name": "rust-in-practice.pdf"}))[0])
        assert link["name"] == "rust-in-practice.pdf"
        assert link["url"].startswith(f"{double.base_url}{LISTING}")
        assert "sha256" not in link
        assert link["expires_in_seconds"] > 3500


# Sessions and links ------------------------------------------------------------------------------


async def test_a_session_expiring_mid_session_gets_the_renew_message_naming_the_variable(mode: Mode) -> None:
    clock = ManualClock()
    store = demo_store(clock=clock)
    with start_double(store) as double:
        async with connect(double, _ada(store, ttl=3600), timeout=10, mode=mode) as host:
            clock.advance(3601)
            result, statuses = await host.call("list_downloadables", {"limit": 100})
            assert failed(result) == _tool_error("list_downloadables", EXPIRED)
            # A 401 is never retried.
            assert statuses == [401]
            assert host.time.waits == []
            # The remembered links are past their expiry too (the double's clock starts in the past):
            # get_download_link asks Polar again and passes on the same advice.
            link, statuses = await host.call("get_download_link", {"name": "errata.txt"})
            assert failed(link) == _tool_error("get_download_link", EXPIRED)
            assert statuses == [401]
            assert [tool.name for tool in (await host.client.list_tools()).tools]


async def test_a_remembered_link_with_time_left_is_given_without_calling_polar(
    store: Store, double: RunningDouble
) -> None:
    async with connect(double, _ada(store), timeout=10) as host:
        listing = await host.listing_works()
        errata = next(item for item in listing["items"] if item["name"] == "errata.txt")
        mark = len(host.recorder.sent)
        link = ok((await host.call("get_download_link", {"downloadable_id": errata["id"]}))[0])
        assert host.recorder.sent[mark:] == []
        assert link["id"] == errata["id"]
        assert link["expires_in_seconds"] > 3500


async def test_a_link_close_to_expiry_is_refreshed_by_a_listing_narrowed_to_its_benefit() -> None:
    # The catalog judges links by the real time; the double's clock starts 3400 s behind it, so the
    # links of the first listing are (to the catalog) an hour old with 200 s left.
    start = float(math.floor(time.time())) - 3400
    clock = ManualClock(start)
    store = demo_store(clock=clock)
    with start_double(store) as double:
        async with connect(double, _ada(store, ttl=3600), timeout=10) as host:
            listing = await host.listing_works()
            errata = next(item for item in listing["items"] if item["name"] == "errata.txt")
            clock.advance(3600 - 200)
            mark = len(host.recorder.sent)
            link = ok((await host.call("get_download_link", {"downloadable_id": errata["id"]}))[0])
            assert link["id"] == errata["id"]
            fresh = datetime.fromtimestamp(start + 3400 + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert link["expires_at"] == fresh
            assert link["expires_in_seconds"] > 3500
            assert host.recorder.sent[mark:] == [
                Sent(LISTING, f"benefit_id={errata['benefit_id']}&page=1&limit=100", 200)
            ]


# The rate limit the double enforces --------------------------------------------------------------


async def test_the_enforced_rate_limit_fails_clearly_and_the_next_minute_works(mode: Mode) -> None:
    clock = _aligned_clock(15)
    store = demo_store(clock=clock)
    with start_double(store) as double:
        async with connect(double, _ada(store), timeout=10, mode=mode) as host:
            store.rate_limit_per_minute = 1
            assert (await host.listing_works())["total_count"] == ADA_FILES
            result, statuses = await host.call("list_downloadables", {"limit": 100})
            assert failed(result) == _tool_error("list_downloadables", _rate_limited(45))
            assert statuses == [429]
            assert host.time.waits == []
            clock.advance(45)
            assert (await host.listing_works())["total_count"] == ADA_FILES


async def test_the_enforced_rate_limit_is_waited_out_when_the_timeout_allows() -> None:
    clock = _aligned_clock(15)
    store = demo_store(clock=clock)
    with start_double(store) as double:
        fake = FakeTime(monotonic=0.0, followers=[clock.advance])
        async with connect(double, _ada(store), timeout=60, fake=fake) as host:
            store.rate_limit_per_minute = 1
            assert (await host.listing_works())["total_count"] == ADA_FILES
            result, statuses = await host.call("list_downloadables", {"limit": 100})
            assert ok(result)["total_count"] == ADA_FILES
            assert statuses == [429, 200]
            assert host.time.waits == [45.0]


async def test_a_whole_catalog_search_running_into_the_rate_limit_fails_with_its_message() -> None:
    clock = _aligned_clock(15)
    store = synthetic_store(items=250, benefits=5, clock=clock)
    token = store.issue_session(next(iter(store.customers)))
    with start_double(store) as double:
        async with connect(double, token, timeout=10) as host:
            # Counting starts now: page 1 and page 2 pass, page 3 (of 3) is refused.
            store.rate_limit_per_minute = 2
            result, statuses = await host.call("list_downloadables", {"query": ".pdf", "limit": 100})
            assert failed(result) == _tool_error("list_downloadables", _rate_limited(45))
            assert sorted(statuses) == [200, 200, 429]
            clock.advance(60)
            page, statuses = await host.call("list_downloadables", {"limit": 100})
            assert ok(page)["total_count"] == 250
            assert statuses == [200]
