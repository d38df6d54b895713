"""The Polar client over `httpx2.MockTransport`: requests, retries, deadlines, pages, sessions."""

from __future__ import annotations

import random
from datetime import timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest
from pydantic import SecretStr

from polar_mcp import __version__
from polar_mcp.polar.client import ClientLimits, PolarClient, RetryPolicy
from polar_mcp.polar.errors import (
    AuthenticationError,
    CatalogTooLargeError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PolarConnectionError,
    PolarError,
    PolarTimeoutError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from polar_mcp.polar.models import SessionIntrospection
from polar_mcp.polar.sessions import (
    BearerRequired,
    MissingSession,
    StaticSession,
    bearer_session,
    principal_key,
    token_kind,
)
from tests.helpers.clock import NOW, FakeTime
from tests.helpers.polar import (
    BASE_URL,
    BENEFIT_A,
    BENEFIT_B,
    CUSTOMER_TOKEN,
    INVALID_TOKEN_BODY,
    INVALID_TOKEN_CHALLENGE,
    MEMBER_TOKEN,
    ORGANIZATION_TOKEN,
    OTHER_CUSTOMER_TOKEN,
    UNAUTHORIZED_BODY,
    FakePolar,
    downloadable,
    error_body,
    invalid_token,
    item_id,
    json_response,
    make_client,
    page_body,
    session,
    validation_body,
)

SEED = 7


def ok() -> httpx2.Response:
    return json_response(200, page_body([downloadable(1)], total_count=1, limit=100))


def backoff(count: int, *, seed: int = SEED, base: float = 0.5, cap: float = 8.0) -> list[float]:
    """The waits RetryPolicy promises: base * 2**n, capped, times a jitter in [0.5, 1)."""
    rng = random.Random(seed)
    return [min(cap, base * 2**n) * rng.uniform(0.5, 1.0) for n in range(count)]


# --- the request on the wire ------------------------------------------------------------------


@pytest.mark.anyio
async def test_query_repeats_benefit_id_and_carries_page_and_limit() -> None:
    polar = FakePolar(answers=[ok()])
    client = make_client(polar)

    await client.list_downloadables(session(), page=3, limit=25, benefit_ids=[BENEFIT_A, BENEFIT_B])

    assert [str(r.url) for r in polar.requests] == [
        f"{BASE_URL}/v1/customer-portal/downloadables/?benefit_id={BENEFIT_A}&benefit_id={BENEFIT_B}&page=3&limit=25"
    ]


@pytest.mark.anyio
async def test_a_plain_listing_asks_for_the_first_page_of_a_hundred() -> None:
    polar = FakePolar(answers=[ok()])
    client = make_client(polar)

    await client.list_downloadables(session())

    assert [str(r.url) for r in polar.requests] == [f"{BASE_URL}/v1/customer-portal/downloadables/?page=1&limit=100"]


def wire_headers(request: httpx2.Request) -> dict[str, str]:
    headers = dict(request.headers)
    headers.pop("accept-encoding")  # depends on which decoders are installed
    return headers


@pytest.mark.anyio
async def test_each_request_carries_its_callers_bearer_token_and_our_user_agent() -> None:
    polar = FakePolar(answers=[ok(), ok()])
    client = make_client(polar)

    await client.list_downloadables(session(CUSTOMER_TOKEN))
    await client.list_downloadables(session(MEMBER_TOKEN))

    assert [wire_headers(r) for r in polar.requests] == [
        {
            "host": "api.polar.sh",
            "accept": "application/json",
            "connection": "keep-alive",
            "user-agent": f"polar-mcp/{__version__}",
            "authorization": f"Bearer {CUSTOMER_TOKEN}",
        },
        {
            "host": "api.polar.sh",
            "accept": "application/json",
            "connection": "keep-alive",
            "user-agent": f"polar-mcp/{__version__}",
            "authorization": f"Bearer {MEMBER_TOKEN}",
        },
    ]


@pytest.mark.anyio
async def test_the_shared_http_client_holds_no_token() -> None:
    http = PolarClient.new_http_client(BASE_URL, 12.0)
    try:
        assert dict(http.headers) | {"accept-encoding": "-"} == {
            "accept": "*/*",
            "accept-encoding": "-",
            "connection": "keep-alive",
            "user-agent": f"polar-mcp/{__version__}",
        }
        assert (http.timeout.connect, http.timeout.read, http.follow_redirects) == (10.0, 12.0, False)
    finally:
        await http.aclose()


@pytest.mark.anyio
async def test_polar_version_header_is_sent_only_when_configured() -> None:
    plain, versioned = FakePolar(answers=[ok()]), FakePolar(answers=[ok()])

    await make_client(plain).list_downloadables(session())
    await make_client(versioned, polar_version="2026-10").list_downloadables(session())

    assert "polar-version" not in plain.requests[0].headers
    assert versioned.requests[0].headers["Polar-Version"] == "2026-10"


@pytest.mark.anyio
async def test_introspect_reads_when_the_session_expires() -> None:
    polar = FakePolar(answers=[json_response(200, {"expires_at": "2026-08-01T13:00:00Z", "return_url": None})])
    client = make_client(polar)

    result = await client.introspect(session())

    assert result == SessionIntrospection(expires_at=NOW + timedelta(hours=1))
    assert [str(r.url) for r in polar.requests] == [f"{BASE_URL}/v1/customer-portal/customer-session/introspect"]


@pytest.mark.anyio
async def test_a_drifted_page_is_read_leniently() -> None:
    drifted = downloadable(
        1,
        service="support_case_attachment",
        mime_type=None,
        last_modified_at="2026-03-04T05:06:07",
        is_enabled=True,
        preview_url=None,
    )
    drifted["created_at"] = "2026-01-01T00:00:00Z"
    del drifted["file"]["version"]
    drifted["file"]["download"]["url"] = "javascript:alert(1)"
    body = page_body([drifted], total_count=1, limit=100) | {"meta": {"next": None}}
    client = make_client(FakePolar(answers=[json_response(200, body)]))

    page = await client.list_downloadables(session())

    file = page.items[0].file
    assert (file.service, file.mime_type, file.version, file.download.url) == (
        "support_case_attachment",
        None,
        None,
        "",
    )
    assert file.last_modified_at is not None
    assert file.last_modified_at.isoformat() == "2026-03-04T05:06:07+00:00"


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_5xx_is_retried_after_a_jittered_backoff() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(503), ok()])
    client = make_client(polar, time)

    page = await client.list_downloadables(session())

    assert [i.id for i in page.items] == [item_id(1)]
    assert len(polar.requests) == 2
    assert time.waits == backoff(1)
    assert 0.25 <= time.waits[0] < 0.5


@pytest.mark.anyio
async def test_retries_stop_after_two_with_exponential_backoff() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(502), httpx2.Response(500), httpx2.Response(504), ok()])
    client = make_client(polar, time)

    with pytest.raises(ServerError) as raised:
        await client.list_downloadables(session())

    assert raised.value.status == 504
    assert len(polar.requests) == 3
    assert time.waits == backoff(2)
    assert 0.25 <= time.waits[0] < 0.5 <= time.waits[1] < 1.0


@pytest.mark.anyio
async def test_backoff_is_capped_by_the_policy() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[*[httpx2.Response(500)] * 4, ok()])
    policy = RetryPolicy(max_retries=4, base_delay=1.0, max_delay=2.5)
    client = make_client(polar, time, retry=policy)

    await client.list_downloadables(session())

    assert time.waits == backoff(4, base=1.0, cap=2.5)
    assert all(wait <= 2.5 for wait in time.waits)


@pytest.mark.anyio
async def test_a_408_is_retried() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(408), ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (2, backoff(1))


@pytest.mark.anyio
@pytest.mark.parametrize("failure", [httpx2.ConnectError, httpx2.RemoteProtocolError], ids=lambda f: f.__name__)
async def test_a_connection_error_is_retried(failure: type[httpx2.TransportError]) -> None:
    time = FakeTime()
    polar = FakePolar(answers=[failure, ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (2, backoff(1))


@pytest.mark.anyio
async def test_a_connection_that_never_comes_back_fails_after_two_retries() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.ConnectError, httpx2.ConnectError, httpx2.ConnectError, ok()])

    with pytest.raises(PolarConnectionError):
        await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (3, backoff(2))


@pytest.mark.anyio
async def test_retry_after_seconds_is_honoured() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(429, headers={"Retry-After": "3"}), ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (2, [3.0])


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured() -> None:
    time = FakeTime()
    when = format_datetime(NOW + timedelta(seconds=5), usegmt=True)
    polar = FakePolar(answers=[httpx2.Response(429, headers={"Retry-After": when}), ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (2, [5.0])


@pytest.mark.anyio
async def test_a_429_without_retry_after_backs_off_like_a_5xx() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(429), ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (2, backoff(1))


@pytest.mark.anyio
async def test_mixed_transient_failures_share_the_two_retries() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(503), httpx2.Response(429, headers={"Retry-After": "2"}), ok()])

    await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (3, [backoff(1)[0], 2.0])


@pytest.mark.anyio
async def test_retry_after_longer_than_the_timeout_fails_at_once() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(429, headers={"Retry-After": "31"}), ok()])

    with pytest.raises(RateLimitedError) as raised:
        await make_client(polar, time, timeout=30.0).list_downloadables(session())

    assert str(raised.value) == "Polar's rate limit was reached; retry after 31 s."
    assert (len(polar.requests), time.waits) == (1, [])


@pytest.mark.anyio
async def test_retry_after_that_would_overrun_the_deadline_fails_at_once() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(429, headers={"Retry-After": "5"}), ok()], time=time, takes=26.0)

    with pytest.raises(RateLimitedError):
        await make_client(polar, time, timeout=30.0).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (1, [])


@pytest.mark.anyio
async def test_no_backoff_wait_overruns_the_deadline() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(503), ok()], time=time, takes=0.8)

    with pytest.raises(ServerError):
        await make_client(polar, time, timeout=1.0).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (1, [])


@pytest.mark.anyio
async def test_every_wait_fits_within_the_deadline() -> None:
    time = FakeTime()
    start = time.monotonic
    polar = FakePolar(answers=[httpx2.Response(503), httpx2.Response(503), ok()], time=time, takes=0.2)

    await make_client(polar, time, timeout=2.0).list_downloadables(session())

    assert time.waits == backoff(2)
    assert time.monotonic - start < 2.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(400),
        json_response(401, INVALID_TOKEN_BODY, {"WWW-Authenticate": INVALID_TOKEN_CHALLENGE}),
        json_response(401, UNAUTHORIZED_BODY),
        json_response(403, {"error": "insufficient_scope"}),
        json_response(404, {"detail": "Not Found"}),
        json_response(410, error_body("ResourceUnavailable", "Gone")),
        json_response(422, validation_body((["query", "page"], "Input should be greater than 0"))),
        httpx2.Response(418),
    ],
    ids=lambda r: str(r.status_code),
)
async def test_4xx_other_than_408_and_429_is_never_retried(response: httpx2.Response) -> None:
    time = FakeTime()
    polar = FakePolar(answers=[response, ok()])

    with pytest.raises(PolarError):
        await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (1, [])


@pytest.mark.anyio
async def test_a_malformed_answer_is_not_retried() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.Response(200, text="<html>captive portal</html>"), ok()])

    with pytest.raises(MalformedResponseError):
        await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (1, [])


@pytest.mark.anyio
async def test_a_timeout_is_not_retried_because_the_deadline_is_spent() -> None:
    time = FakeTime()
    polar = FakePolar(answers=[httpx2.ReadTimeout, ok()])

    with pytest.raises(PolarTimeoutError):
        await make_client(polar, time).list_downloadables(session())

    assert (len(polar.requests), time.waits) == (1, [])


# --- sessions and renewal ---------------------------------------------------------------------


class RenewingSource:
    """A session that can mint a replacement token once Polar rejects the current one."""

    def __init__(self, first: str, fresh: str) -> None:
        self.current = SecretStr(first)
        self.fresh = fresh
        self.renewed: list[str] = []

    @property
    def principal(self) -> str:
        return "renewing"

    @property
    def renew_hint(self) -> str:
        return "renewed automatically"

    async def token(self) -> SecretStr:
        return self.current

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        self.renewed.append(rejected.get_secret_value())
        self.current = SecretStr(self.fresh)
        return self.current


@pytest.mark.anyio
async def test_a_renewable_session_gets_exactly_one_retry_with_a_fresh_token() -> None:
    source = RenewingSource(CUSTOMER_TOKEN, OTHER_CUSTOMER_TOKEN)
    polar = FakePolar(answers=[invalid_token(), ok()])

    page = await make_client(polar).list_downloadables(source)

    assert [i.id for i in page.items] == [item_id(1)]
    assert polar.authorizations == [f"Bearer {CUSTOMER_TOKEN}", f"Bearer {OTHER_CUSTOMER_TOKEN}"]
    assert source.renewed == [CUSTOMER_TOKEN]


@pytest.mark.anyio
async def test_a_renewed_token_that_is_rejected_too_is_not_renewed_again() -> None:
    source = RenewingSource(CUSTOMER_TOKEN, OTHER_CUSTOMER_TOKEN)
    polar = FakePolar(answers=[invalid_token(), invalid_token(), ok()])

    with pytest.raises(AuthenticationError):
        await make_client(polar).list_downloadables(source)

    assert polar.authorizations == [f"Bearer {CUSTOMER_TOKEN}", f"Bearer {OTHER_CUSTOMER_TOKEN}"]
    assert source.renewed == [CUSTOMER_TOKEN]


@pytest.mark.anyio
async def test_a_token_of_the_wrong_kind_is_not_renewed() -> None:
    source = RenewingSource(CUSTOMER_TOKEN, OTHER_CUSTOMER_TOKEN)
    polar = FakePolar(answers=[json_response(401, UNAUTHORIZED_BODY), ok()])

    with pytest.raises(UnauthorizedError):
        await make_client(polar).list_downloadables(source)

    assert (len(polar.requests), source.renewed) == (1, [])


@pytest.mark.anyio
async def test_a_static_session_is_not_retried_after_invalid_token() -> None:
    polar = FakePolar(answers=[invalid_token(), ok()])

    with pytest.raises(AuthenticationError):
        await make_client(polar).list_downloadables(session())

    assert polar.authorizations == [f"Bearer {CUSTOMER_TOKEN}"]


@pytest.mark.anyio
async def test_the_renewed_attempt_shares_the_original_deadline() -> None:
    time = FakeTime()
    source = RenewingSource(CUSTOMER_TOKEN, OTHER_CUSTOMER_TOKEN)
    polar = FakePolar(answers=[invalid_token(), ok()], time=time, takes=31.0)

    with pytest.raises(PolarTimeoutError):
        await make_client(polar, time, timeout=30.0).list_downloadables(source)

    assert (len(polar.requests), source.renewed) == (1, [CUSTOMER_TOKEN])


@pytest.mark.anyio
async def test_a_member_session_token_is_sent_like_a_customer_one() -> None:
    polar = FakePolar(answers=[ok()])

    await make_client(polar).list_downloadables(session(MEMBER_TOKEN))

    assert polar.authorizations == [f"Bearer {MEMBER_TOKEN}"]


@pytest.mark.anyio
async def test_a_missing_session_explains_how_to_configure_one_without_calling_polar() -> None:
    polar = FakePolar(answers=[ok()])

    with pytest.raises(ConfigurationError) as raised:
        await make_client(polar).list_downloadables(MissingSession())

    assert str(raised.value) == (
        "No Polar session is configured. Set one of: POLAR_CUSTOMER_SESSION, a customer (polar_cst_…) or "
        "member (polar_mst_…) session token, which the seller creates with Polar's POST "
        "/v1/customer-sessions/ and which lives one hour; or POLAR_ACCESS_TOKEN, an organization token with "
        "customer_sessions:write, with POLAR_CUSTOMER_ID or POLAR_EXTERNAL_CUSTOMER_ID, so polar-mcp creates "
        "sessions itself. Or run with --demo to try polar-mcp without an account."
    )
    assert polar.requests == []


@pytest.mark.anyio
async def test_an_organization_token_is_refused_before_calling_polar() -> None:
    polar = FakePolar(answers=[ok()])
    source = StaticSession(SecretStr(ORGANIZATION_TOKEN), renew_hint="-")

    with pytest.raises(ConfigurationError) as raised:
        await make_client(polar).list_downloadables(source)

    assert str(raised.value) == (
        "The configured token is an organization access token (polar_oat_…), but the customer portal "
        "needs a customer or member session token. Either create a customer session and set "
        "POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN with POLAR_CUSTOMER_ID so polar-mcp mints "
        "sessions itself."
    )
    assert ORGANIZATION_TOKEN not in str(raised.value)
    assert polar.requests == []


# --- the whole catalog ------------------------------------------------------------------------


def catalog(count: int, *, benefit_id: str = BENEFIT_A, start: int = 1) -> list[dict[str, object]]:
    return [downloadable(n, benefit_id=benefit_id) for n in range(start, start + count)]


@pytest.mark.anyio
async def test_the_whole_catalog_is_every_page_in_order() -> None:
    fake = FakePolar(items=catalog(250), slowness={2: 40})
    client = make_client(fake)

    items = await client.list_all_downloadables(session())

    assert [i.id for i in items] == [item_id(n) for n in range(1, 251)]
    assert sorted(fake.served_pages) == [1, 2, 3]
    assert fake.served_pages[-1] == 2, "page 2 was held back, yet its items come second"
    assert [q for q in fake.queries if ("page", "1") in q] == [[("page", "1"), ("limit", "100")]]


@pytest.mark.anyio
async def test_the_whole_catalog_is_narrowed_on_every_page() -> None:
    fake = FakePolar(items=catalog(150, benefit_id=BENEFIT_B) + catalog(60, start=500))
    client = make_client(fake)

    items = await client.list_all_downloadables(session(), benefit_ids=[BENEFIT_B])

    assert [i.id for i in items] == [item_id(n) for n in range(1, 151)]
    assert sorted(fake.queries, key=str) == [
        [("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")],
        [("benefit_id", BENEFIT_B), ("page", "2"), ("limit", "100")],
    ]


@pytest.mark.anyio
async def test_an_empty_catalog_takes_one_request() -> None:
    fake = FakePolar()

    assert await make_client(fake).list_all_downloadables(session()) == []
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_an_item_shifting_to_the_next_page_is_listed_once() -> None:
    fake = FakePolar(items=catalog(150))

    def new_grant_arrives(page: int) -> None:
        # Polar lists the newest grant first: a new one pushes item 100 onto page 2.
        if page == 2 and fake.items[0]["id"] != item_id(999):
            fake.items.insert(0, downloadable(999))

    fake.on_page = new_grant_arrives

    items = await make_client(fake).list_all_downloadables(session())

    assert [i.id for i in items] == [item_id(n) for n in range(1, 151)]


@pytest.mark.anyio
async def test_pages_in_flight_never_exceed_the_per_principal_limit() -> None:
    fake = FakePolar(items=catalog(1_200))
    client = make_client(fake, limits=ClientLimits(per_principal_concurrency=3))

    items = await client.list_all_downloadables(session())

    assert len(items) == 1_200
    assert len(fake.requests) == 12
    assert fake.max_in_flight == 3


@pytest.mark.anyio
async def test_the_concurrency_limit_is_per_principal_not_global() -> None:
    fake = FakePolar(items=catalog(1_200))
    client = make_client(fake, limits=ClientLimits(per_principal_concurrency=2))

    async with anyio.create_task_group() as group:
        group.start_soon(client.list_all_downloadables, session(CUSTOMER_TOKEN))
        group.start_soon(client.list_all_downloadables, session(OTHER_CUSTOMER_TOKEN))

    assert fake.peak_in_flight == {f"Bearer {CUSTOMER_TOKEN}": 2, f"Bearer {OTHER_CUSTOMER_TOKEN}": 2}
    assert fake.max_in_flight == 4


@pytest.mark.anyio
async def test_a_catalog_beyond_the_page_bound_is_refused_not_silently_cut() -> None:
    fake = FakePolar(items=catalog(500))

    with pytest.raises(CatalogTooLargeError) as raised:
        await make_client(fake, limits=ClientLimits(max_catalog_pages=2)).list_all_downloadables(session())

    assert raised.value.message == (
        "This catalog has 5 pages of 100 files, more than polar-mcp reads at once (2); narrow it with "
        "benefit_id, or page through the listing."
    )
    assert fake.served_pages == [1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (json_response(404, {"detail": "Not Found"}), NotFoundError),
        (json_response(401, UNAUTHORIZED_BODY), UnauthorizedError),
        (httpx2.Response(503), ServerError),
    ],
    ids=["404", "401", "503"],
)
async def test_a_failing_later_page_raises_its_polar_error_not_a_group(
    failure: httpx2.Response, expected: type[PolarError]
) -> None:
    def page_three_fails(request: httpx2.Request) -> httpx2.Response | None:
        return failure if request.url.params["page"] == "3" else None

    fake = FakePolar(items=catalog(450), script=page_three_fails)

    with pytest.raises(expected):
        await make_client(fake, FakeTime()).list_all_downloadables(session())


@pytest.mark.anyio
async def test_a_transient_failure_on_one_page_is_retried_alone() -> None:
    time = FakeTime()
    failures = {"2": 1}

    def page_two_fails_once(request: httpx2.Request) -> httpx2.Response | None:
        page = request.url.params["page"]
        if failures.get(page, 0):
            failures[page] -= 1
            return httpx2.Response(502)
        return None

    fake = FakePolar(items=catalog(250), script=page_two_fails_once)

    items = await make_client(fake, time).list_all_downloadables(session())

    assert [i.id for i in items] == [item_id(n) for n in range(1, 251)]
    assert sorted(int(r.url.params["page"]) for r in fake.requests) == [1, 2, 2, 3]
    assert time.waits == backoff(1)


def test_the_retry_policy_defaults_are_two_retries_from_half_a_second() -> None:
    assert RetryPolicy() == RetryPolicy(max_retries=2, base_delay=0.5, max_delay=8.0)


# --- where tokens come from -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {CUSTOMER_TOKEN}", CUSTOMER_TOKEN),
        (f"bearer   {MEMBER_TOKEN}  ", MEMBER_TOKEN),
        (f"Bearer {ORGANIZATION_TOKEN}", None),
        (f"Basic {CUSTOMER_TOKEN}", None),
        (CUSTOMER_TOKEN, None),
        ("Bearer polar_cst_" + "x" * 5000, None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
    ids=[
        "customer",
        "member-odd-spacing",
        "organization",
        "basic",
        "no-scheme",
        "huge",
        "empty-bearer",
        "empty",
        "none",
    ],
)
def test_a_bearer_header_yields_only_a_customer_or_member_session(header: str | None, expected: str | None) -> None:
    assert bearer_session(header) == expected


def test_a_token_is_described_by_its_kind_never_its_value() -> None:
    kinds = [token_kind(t) for t in (CUSTOMER_TOKEN, MEMBER_TOKEN, ORGANIZATION_TOKEN, "sk_live_123")]

    assert kinds == ["polar_cst_…", "polar_mst_…", "polar_oat_…", "unrecognised token"]


def test_principal_keys_are_stable_distinct_and_do_not_reveal_the_token() -> None:
    alice, bob = session(CUSTOMER_TOKEN), session(OTHER_CUSTOMER_TOKEN)

    assert alice.principal == session(CUSTOMER_TOKEN).principal == principal_key(CUSTOMER_TOKEN)
    assert alice.principal != bob.principal
    assert len(alice.principal) == 32
    assert "polar_cst" not in alice.principal


@pytest.mark.anyio
async def test_a_deployment_without_a_token_asks_each_caller_for_a_bearer() -> None:
    polar = FakePolar(answers=[ok()])

    with pytest.raises(ConfigurationError) as raised:
        await make_client(polar).list_downloadables(BearerRequired())

    assert str(raised.value) == (
        "Send your own customer session token (polar_cst_…) or member session token (polar_mst_…) as "
        "`Authorization: Bearer …` with each request."
    )
    assert polar.requests == []


@pytest.mark.anyio
async def test_a_probe_reaches_polar_without_any_token() -> None:
    polar = FakePolar(answers=[httpx2.Response(404)])

    assert await make_client(polar).probe("/v1/customer-portal/downloadables/") == 404
    assert polar.authorizations == [None]


# --- pages that contradict themselves ---------------------------------------------------------


def _answering(body: dict[str, object]) -> FakePolar:
    return FakePolar(script=lambda _: json_response(200, body))


CONTRADICTION = (
    "Polar sent a page that contradicts itself ({count} items for a page of at most {asked}; {total} in all "
    "over {pages} pages), so it was not used. Try again; if it persists, Polar's API may have changed."
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("count", "total", "pages"),
    [(21, 21, 2), (500, 500, 25), (3, 3, 7), (3, 300, 1), (0, 0, 1)],
    ids=["one-too-many", "a-flood", "max-page-too-high", "max-page-too-low", "empty-with-a-page"],
)
async def test_a_page_that_contradicts_itself_is_refused_not_passed_on(count: int, total: int, pages: int) -> None:
    body = {"items": catalog(count), "pagination": {"total_count": total, "max_page": pages}}

    with pytest.raises(MalformedResponseError) as raised:
        await make_client(_answering(body)).list_downloadables(session(), limit=20)

    asked = 20
    assert raised.value.message == CONTRADICTION.format(count=count, asked=asked, total=total, pages=pages)


@pytest.mark.anyio
async def test_a_scan_refuses_a_later_page_that_holds_more_than_a_hundred_items() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        page = int(request.url.params["page"])
        items = catalog(100 if page == 1 else 150, start=page * 1000)
        return json_response(200, {"items": items, "pagination": {"total_count": 250, "max_page": 3}})

    with pytest.raises(MalformedResponseError) as raised:
        await make_client(FakePolar(script=answer)).list_all_downloadables(session())

    assert raised.value.message == CONTRADICTION.format(count=150, asked=100, total=250, pages=3)
