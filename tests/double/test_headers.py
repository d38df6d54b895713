"""Headers Polar's server puts on every answer, and those of its auth errors."""

from __future__ import annotations

import httpx2
import pytest

from polar_mcp.double.seed import DEMO_ORG_TOKEN
from polar_mcp.double.store import Store
from tests.double.helpers import ADMIN, GRANTS, INTROSPECT, LIST, SESSIONS, bearer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [
        ("GET", LIST, True),
        ("GET", GRANTS, True),
        ("GET", INTROSPECT, True),
        ("GET", LIST, False),
        ("GET", LIST + "not-a-link", False),
        ("GET", "/v1/nowhere", False),
        ("POST", SESSIONS, False),
        ("GET", "/v1/customer-portal/organizations/ferris-press", False),
    ],
)
async def test_every_answer_carries_the_version_and_no_store(
    client: httpx2.AsyncClient, ada_token: str, method: str, path: str, auth: bool
) -> None:
    response = await client.request(method, path, headers=bearer(ada_token) if auth else {})

    assert response.headers["polar-version"] == "2026-04"
    assert response.headers.get_list("cache-control")[-1] == "private, no-store"


async def test_the_version_sent_is_the_version_answered(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, headers=bearer(ada_token) | {"Polar-Version": "2026-10"})

    assert response.headers["polar-version"] == "2026-10"


async def test_injected_failures_carry_the_headers_too(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.faults.update({"errors_next": 1, "rate_limit_next": 1})

    limited = await client.get(LIST, headers=bearer(ada_token))
    failed = await client.get(LIST, headers=bearer(ada_token))

    assert [(r.status_code, r.headers["polar-version"]) for r in (limited, failed)] == [
        (429, "2026-04"),
        (503, "2026-04"),
    ]


async def test_an_invalid_token_answer_is_never_cached_and_spaced_like_polars(client: httpx2.AsyncClient) -> None:
    response = await client.get(LIST, headers=bearer("polar_cst_unknown"))

    assert response.status_code == 401
    assert response.content == (
        b'{"error": "invalid_token", "error_description": "The access token provided is expired, revoked, '
        b'malformed, or invalid for other reasons."}'
    )
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get_list("cache-control") == ["no-store", "private, no-store"]
    assert response.headers["pragma"] == "no-cache"


async def test_no_token_answers_a_bare_bearer_challenge(client: httpx2.AsyncClient) -> None:
    response = await client.get(LIST)

    assert response.status_code == 401
    assert response.content == b'{"error":"Unauthorized","detail":"Unauthorized"}'
    assert response.headers["www-authenticate"] == 'Bearer realm="polar"'
    assert "pragma" not in response.headers


async def test_a_redirect_answers_with_the_headers_and_no_body(client: httpx2.AsyncClient, ada_token: str) -> None:
    listing = await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))

    redirect = await client.get(listing.json()["items"][0]["file"]["download"]["url"])

    assert (redirect.status_code, redirect.headers["content-length"]) == (302, "0")
    assert redirect.headers["cache-control"] == "private, no-store"


async def test_admin_routes_are_not_polars(client: httpx2.AsyncClient) -> None:
    response = await client.get(f"{ADMIN}stats")

    assert "polar-version" not in response.headers


async def test_an_organization_token_is_refused_on_the_portal_with_the_headers(client: httpx2.AsyncClient) -> None:
    response = await client.get(LIST, headers=bearer(DEMO_ORG_TOKEN))

    assert (response.status_code, response.headers["polar-version"]) == (401, "2026-04")
