"""The downloadables listing: auth, pagination, validation, filters and order, as docs/POLAR-API.md describes."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest

from polar_mcp.double.seed import (
    DEMO_ORG_TOKEN,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_MEMBER_EXTERNAL_ID,
    DEMO_TEAM_OWNER_EXTERNAL_ID,
    synthetic_store,
)
from polar_mcp.double.signing import LINK_TTL
from polar_mcp.double.store import Store, isoformat, readable_size
from tests.double.helpers import ADA_FILES, LIST, asgi_client, bearer, benefit_id
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio

INVALID_TOKEN_BODY = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed, or invalid for other reasons.",
}
UNAUTHORIZED_BODY = {"error": "Unauthorized", "detail": "Unauthorized"}


def names(response: httpx2.Response) -> list[str]:
    return [item["file"]["name"] for item in response.json()["items"]]


async def test_lists_files_of_active_grants_newest_grant_first(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert names(response) == ADA_FILES
    assert response.json()["pagination"] == {"total_count": 11, "max_page": 1}


async def test_defaults_to_ten_items_per_page(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, headers=bearer(ada_token))

    assert names(response) == ADA_FILES[:10]
    assert response.json()["pagination"] == {"total_count": 11, "max_page": 2}


async def test_pages_split_the_listing_and_a_page_past_the_end_is_empty(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    pages = [
        (await client.get(LIST, params={"page": page, "limit": 4}, headers=bearer(ada_token))).json()
        for page in (1, 2, 3, 4, 99)
    ]

    assert [[i["file"]["name"] for i in p["items"]] for p in pages] == [
        ADA_FILES[0:4],
        ADA_FILES[4:8],
        ADA_FILES[8:11],
        [],
        [],
    ]
    assert all(p["pagination"] == {"total_count": 11, "max_page": 3} for p in pages)


async def test_limit_over_one_hundred_is_clamped_not_rejected(clock: ManualClock) -> None:
    store = synthetic_store(items=250, benefits=5, clock=clock)
    customer = next(iter(store.customers.values()))
    token = store.issue_session(customer.id)
    async with asgi_client(store) as client:
        response = await client.get(LIST, params={"limit": 500, "page": 3}, headers=bearer(token))

    assert response.status_code == 200
    assert len(response.json()["items"]) == 50
    assert response.json()["pagination"] == {"total_count": 250, "max_page": 3}


async def test_an_empty_listing_has_max_page_zero(client: httpx2.AsyncClient, store: Store) -> None:
    token = store.issue_session(store.customer_by_external_id("linus-solo").id)

    response = await client.get(LIST, headers=bearer(token))

    assert response.json() == {"items": [], "pagination": {"total_count": 0, "max_page": 0}}


async def test_repeated_benefit_id_keeps_the_files_of_those_benefits(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    wanted = [benefit_id(store, "Code Samples"), benefit_id(store, "Rust Ebook Bundle")]

    response = await client.get(LIST, params={"benefit_id": wanted}, headers=bearer(ada_token))

    assert str(response.request.url).count("benefit_id=") == 2
    assert names(response) == ADA_FILES[6:]
    assert {item["benefit_id"] for item in response.json()["items"]} == set(wanted)


async def test_each_item_has_the_contract_shape(client: httpx2.AsyncClient, ada_token: str, clock: ManualClock) -> None:
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    errata = next(i for i in response.json()["items"] if i["file"]["name"] == "errata.txt")
    file = errata["file"]

    assert file["mime_type"] == "text/plain"
    assert file["path"] == f"{file['organization_id']}/{file['id']}/errata.txt"
    assert file["version"] == "2025-03"
    assert file["is_uploaded"] is True
    assert file["service"] == "downloadable"
    assert file["download"]["headers"] == {}
    assert file["download"]["url"].startswith("http://polar.test/v1/customer-portal/downloadables/")
    assert file["download"]["expires_at"] == "2026-05-28T21:26:40Z"
    assert clock() + 3600 == 1_780_003_600
    assert len(file["checksum_sha256_hex"]) == 64
    # As the real server: the storage object's version id, and the storage ETag with its quotes.
    assert isinstance(file["storage_version"], str)
    assert re.fullmatch(r'"[0-9a-f]{32}-1"', file["checksum_etag"])


async def test_size_readable_uses_1024_steps(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    sizes = {i["file"]["name"]: (i["file"]["size"], i["file"]["size_readable"]) for i in response.json()["items"]}

    assert sizes["01-futures-and-wakers.mp4"] == (14 * 1024 * 1024 + 123_457, "14.1 MB")
    assert sizes["async-course-code.zip"] == (412_311, "402.6 KB")
    assert sizes["errata.txt"][1].endswith(" B")


async def test_files_without_recorded_checksums_show_nulls(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    readme = next(i["file"] for i in response.json()["items"] if i["file"]["name"] == "README.md")

    assert (readme["checksum_sha256_hex"], readme["checksum_sha256_base64"], readme["checksum_etag"]) == (
        None,
        None,
        None,
    )


async def test_deleted_benefits_and_disabled_files_drop_out(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.benefits[benefit_id(store, "Code Samples")].deleted = True
    next(f for f in store.files.values() if f.name == "errata.txt").is_enabled = False

    response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))

    assert names(response) == [n for n in ADA_FILES if n not in ("async-course-code.zip", "README.md", "errata.txt")]


# Authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWRhOnB3"},
        {"Authorization": "Bearer "},
        bearer(DEMO_ORG_TOKEN),
        bearer("polar_pat_someonespersonaltoken"),
    ],
    ids=["none", "basic", "empty", "organization-token", "personal-token"],
)
async def test_no_token_or_a_token_of_the_wrong_kind_is_unauthorized(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(LIST, headers=headers)

    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_BODY
    assert response.headers["www-authenticate"] == 'Bearer realm="polar"'


@pytest.mark.parametrize(
    "token", ["polar_cst_unknown0000000000000000000000000000000", "polar_mst_unknown", "not-a-polar-token"]
)
async def test_an_unknown_token_is_invalid(client: httpx2.AsyncClient, token: str) -> None:
    response = await client.get(LIST, headers=bearer(token))

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN_BODY
    assert response.headers["www-authenticate"] == (
        'Bearer realm="polar", error="invalid_token", error_description="The access token provided is '
        'expired, revoked, malformed, or invalid for other reasons."'
    )


async def test_a_session_token_expires_after_an_hour(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    clock.advance(3599)
    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 200

    clock.advance(1)
    response = await client.get(LIST, headers=bearer(ada_token))

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN_BODY


async def test_authentication_is_checked_before_the_query(client: httpx2.AsyncClient) -> None:
    response = await client.get(LIST, params={"page": 0})

    assert response.status_code == 401


# Validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"page": "0"},
            {
                "type": "greater_than",
                "loc": ["query", "page"],
                "msg": "Input should be greater than 0",
                "input": "0",
                "ctx": {"gt": 0},
            },
        ),
        (
            {"limit": "0"},
            {
                "type": "greater_than",
                "loc": ["query", "limit"],
                "msg": "Input should be greater than 0",
                "input": "0",
                "ctx": {"gt": 0},
            },
        ),
        (
            {"page": "-2"},
            {
                "type": "greater_than",
                "loc": ["query", "page"],
                "msg": "Input should be greater than 0",
                "input": "-2",
                "ctx": {"gt": 0},
            },
        ),
        (
            {"limit": "abc"},
            {
                "type": "int_parsing",
                "loc": ["query", "limit"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "abc",
            },
        ),
        (
            {"page": "1.5"},
            {
                "type": "int_parsing",
                "loc": ["query", "page"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "1.5",
            },
        ),
    ],
    ids=["page-0", "limit-0", "page-negative", "limit-not-integer", "page-decimal"],
)
async def test_invalid_queries_answer_polar_422(
    client: httpx2.AsyncClient, ada_token: str, params: dict[str, str], error: dict[str, object]
) -> None:
    response = await client.get(LIST, params=params, headers=bearer(ada_token))

    assert response.status_code == 422
    assert response.json() == {"error": "RequestValidationError", "detail": [error]}


LIST_OF_UUIDS = (
    "json-or-python[json=list[uuid],python=chain[is-instance[Sequence],function-wrap[sequence_validator()]]]"
)
"""How pydantic names the list branch of Polar's one-or-several filter types, in 422 locations."""


async def test_a_malformed_benefit_id_answers_the_two_entries_of_a_list_typed_filter(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    response = await client.get(LIST, params={"benefit_id": "not-a-uuid"}, headers=bearer(ada_token))

    assert response.status_code == 422
    assert response.json() == {
        "error": "RequestValidationError",
        "detail": [
            {
                "type": "uuid_type",
                "loc": ["query", "benefit_id", "uuid"],
                "msg": "UUID input should be a string, bytes or UUID object",
                "input": ["not-a-uuid"],
            },
            {
                "type": "uuid_parsing",
                "loc": ["query", "benefit_id", LIST_OF_UUIDS, 0],
                "msg": "Input should be a valid UUID, invalid character: found `n` at 0",
                "input": "not-a-uuid",
                "ctx": {"error": "invalid character: found `n` at 0"},
            },
        ],
    }


async def test_a_uuid_of_another_version_is_rejected(client: httpx2.AsyncClient, ada_token: str) -> None:
    version1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    params = {"benefit_id": ["1f0b8f4e-6f4c-4a57-9d55-0d3f0d6f7e11", version1]}

    response = await client.get(LIST, params=params, headers=bearer(ada_token))

    assert response.json()["detail"][1] == {
        "type": "uuid_version",
        "loc": ["query", "benefit_id", LIST_OF_UUIDS, 1],
        "msg": "UUID version 4 expected",
        "input": version1,
        "ctx": {"expected_version": 4},
    }


async def test_every_invalid_parameter_is_reported_at_once(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(LIST, params={"page": "0", "limit": "x"}, headers=bearer(ada_token))

    assert [e["loc"] for e in response.json()["detail"]] == [["query", "page"], ["query", "limit"]]


# Members, versions, rate limits, routing -------------------------------------------------------


async def test_member_tokens_see_team_files_and_only_their_own_seats(client: httpx2.AsyncClient, store: Store) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)
    alice, bob = (
        next(m for m in store.members_of(acme.id) if m.external_id == ext)
        for ext in (DEMO_TEAM_OWNER_EXTERNAL_ID, DEMO_TEAM_MEMBER_EXTERNAL_ID)
    )
    alice_token = store.issue_session(acme.id, alice.id)
    bob_token = store.issue_session(acme.id, bob.id)

    assert alice_token.startswith("polar_mst_")
    assert names(await client.get(LIST, headers=bearer(alice_token))) == [
        "brand-style-guide.pdf",
        "crab-sans-fonts.zip",
    ]
    assert names(await client.get(LIST, headers=bearer(bob_token))) == [
        "onboarding-walkthrough.mp4",
        "brand-style-guide.pdf",
        "crab-sans-fonts.zip",
    ]


@pytest.mark.parametrize("version", [None, "2026-04", "2026-10"])
async def test_known_polar_versions_are_accepted(
    client: httpx2.AsyncClient, ada_token: str, version: str | None
) -> None:
    headers = bearer(ada_token) | ({"Polar-Version": version} if version else {})

    assert (await client.get(LIST, headers=headers)).status_code == 200


@pytest.mark.parametrize("version", ["2025-01", "latest", ""])
async def test_an_unknown_polar_version_is_not_found(client: httpx2.AsyncClient, ada_token: str, version: str) -> None:
    response = await client.get(LIST, headers=bearer(ada_token) | {"Polar-Version": version})

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_rate_limit_answers_an_empty_429_with_retry_after(
    client: httpx2.AsyncClient, store: Store, ada_token: str, clock: ManualClock
) -> None:
    store.rate_limit_per_minute = 2
    grace_token = store.issue_session(store.customer_by_external_id("grace-1906").id)
    statuses = [(await client.get(LIST, headers=bearer(ada_token))).status_code for _ in range(2)]

    limited = await client.get(LIST, headers=bearer(ada_token))

    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert limited.content == b""
    assert "content-type" not in limited.headers
    # The manual clock starts 40 s into a minute: the bucket refills 20 s later.
    assert limited.headers["retry-after"] == "20"
    assert (await client.get(LIST, headers=bearer(grace_token))).status_code == 200
    clock.advance(20)
    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 200


async def test_unknown_routes_answer_fastapi_404(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get("/v1/customer-portal/downloadables/x/y", headers=bearer(ada_token))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_the_listing_written_from_cached_json_says_what_each_file_is_now(
    store: Store, client: httpx2.AsyncClient, ada_token: str
) -> None:
    # Items are written from JSON cached per file (only the link and its expiry change): every field
    # must be the file's, as DownloadableRead orders them, also after a file changes.
    async def listed_and_expected() -> tuple[list[Any], list[dict[str, Any]]]:
        response = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
        assert response.status_code == 200
        listed: list[Any] = response.json()["items"]
        session = store.live_session(ada_token)
        assert session is not None
        expected: list[dict[str, Any]] = []
        for row, item in zip(store.downloadables(session), listed, strict=True):
            file = row.file
            digests = file.blob.digests if file.checksums else None
            assert item["file"]["download"]["url"].startswith(f"{str(client.base_url).rstrip('/')}{LIST}")
            body = {
                "id": file.id,
                "organization_id": file.organization_id,
                "name": file.name,
                "path": file.key,
                "mime_type": file.mime_type,
                "size": file.size,
                "storage_version": file.storage_version,
                "checksum_etag": digests.etag if digests else None,
                "checksum_sha256_base64": digests.sha256_base64 if digests else None,
                "checksum_sha256_hex": digests.sha256_hex if digests else None,
                "last_modified_at": isoformat(file.created_at),
                "download": {
                    "url": item["file"]["download"]["url"],
                    "headers": {},
                    "expires_at": isoformat(int(store.now()) + LINK_TTL),
                },
                "version": file.version,
                "is_uploaded": True,
                "service": "downloadable",
                "size_readable": readable_size(file.size),
            }
            expected.append({"id": row.id, "benefit_id": row.benefit.id, "file": body})
        return listed, expected

    listed, expected = await listed_and_expected()
    assert listed == expected
    assert [list(item["file"]) for item in listed] == [list(item["file"]) for item in expected]
    assert len(listed) == len(ADA_FILES)

    changed = store.files[listed[0]["file"]["id"]]
    changed.name = 'renamed "quoted" \u00e9\u202e.pdf'
    changed.version = "7"
    listed, expected = await listed_and_expected()
    assert listed == expected
    assert listed[0]["file"]["name"] == 'renamed "quoted" \u00e9\u202e.pdf'
