"""GET /v1/customer-portal/benefit-grants/: where benefit names come from, per docs/POLAR-API.md."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from polar_mcp.double.store import Store
from tests.double.helpers import GRANTS, LIST, bearer, benefit_id

pytestmark = pytest.mark.anyio


def descriptions(response: httpx2.Response) -> list[str]:
    return [grant["benefit"]["description"] for grant in response.json()["items"]]


async def test_lists_public_active_grants_in_product_benefit_order(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"limit": 100}, headers=bearer(ada_token))

    assert response.status_code == 200
    # The private "Early Access" benefit and the revoked "Preview Chapter" grant stay hidden.
    assert descriptions(response) == [
        "Rust Ebook Bundle",
        "Async Course Videos",
        "Wallpaper Pack",
        "Code Samples",
        "Ferris Press Discord",
    ]
    assert response.json()["pagination"] == {"total_count": 5, "max_page": 1}


async def test_a_grant_has_the_facts_shape(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    params = {"benefit_id": benefit_id(store, "Wallpaper Pack")}
    response = await client.get(GRANTS, params=params, headers=bearer(ada_token))
    grant: dict[str, Any] = response.json()["items"][0]

    assert {
        "id",
        "created_at",
        "modified_at",
        "granted_at",
        "revoked_at",
        "is_granted",
        "is_revoked",
        "customer_id",
        "member_id",
        "benefit_id",
        "order_id",
        "subscription_id",
        "error",
        "benefit",
        "properties",
    } <= set(grant)
    assert (grant["is_granted"], grant["is_revoked"], grant["revoked_at"]) == (True, False, None)
    assert grant["granted_at"] == "2025-06-01T12:00:00Z"
    assert grant["benefit"]["type"] == "downloadables"
    assert grant["benefit"]["organization"]["name"] == "Ferris Press"
    assert grant["benefit"]["organization"]["slug"] == "ferris-press"
    # The malware-flagged wallpaper is no file of the grant's.
    assert len(grant["properties"]["files"]) == 2
    assert len(grant["benefit"]["properties"]["files"]) == 3


async def test_type_filter_is_repeatable(client: httpx2.AsyncClient, ada_token: str) -> None:
    files_only = await client.get(GRANTS, params={"type": "downloadables"}, headers=bearer(ada_token))
    both = await client.get(GRANTS, params={"type": ["downloadables", "discord"]}, headers=bearer(ada_token))
    discord = await client.get(GRANTS, params={"type": "discord"}, headers=bearer(ada_token))

    assert "Ferris Press Discord" not in descriptions(files_only)
    assert len(descriptions(files_only)) == 4
    assert len(descriptions(both)) == 5
    assert descriptions(discord) == ["Ferris Press Discord"]


async def test_benefit_id_filter_is_repeatable(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    wanted = [benefit_id(store, "Code Samples"), benefit_id(store, "Async Course Videos")]

    response = await client.get(GRANTS, params={"benefit_id": wanted}, headers=bearer(ada_token))

    assert descriptions(response) == ["Async Course Videos", "Code Samples"]


async def test_query_matches_the_description_case_insensitively(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"query": "WALLPAPER"}, headers=bearer(ada_token))

    assert descriptions(response) == ["Wallpaper Pack"]


async def test_sorting_by_newest_grant(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"sorting": "-granted_at"}, headers=bearer(ada_token))

    assert descriptions(response) == [
        "Wallpaper Pack",
        "Async Course Videos",
        "Code Samples",
        "Rust Ebook Bundle",
        "Ferris Press Discord",
    ]


async def test_grants_paginate(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"limit": 2, "page": 3}, headers=bearer(ada_token))

    assert descriptions(response) == ["Ferris Press Discord"]
    assert response.json()["pagination"] == {"total_count": 5, "max_page": 3}


async def test_a_private_benefit_lists_files_but_never_a_name(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    listed = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    grants = await client.get(GRANTS, params={"limit": 100}, headers=bearer(ada_token))

    listed_benefits = {item["benefit_id"] for item in listed.json()["items"]}
    named_benefits = {grant["benefit_id"] for grant in grants.json()["items"]}
    assert listed_benefits - named_benefits == {benefit_id(store, "Early Access: Chapter 12")}


async def test_bad_filters_answer_422(client: httpx2.AsyncClient, ada_token: str) -> None:
    params = {"type": "ebook", "sorting": "newest", "limit": "0"}

    response = await client.get(GRANTS, params=params, headers=bearer(ada_token))

    assert response.status_code == 422
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [
        ("enum", ["query", "type", 0]),
        ("enum", ["query", "sorting", 0]),
        ("greater_than", ["query", "limit"]),
    ]


async def test_grants_need_a_session_token(client: httpx2.AsyncClient) -> None:
    response = await client.get(GRANTS, headers=bearer("polar_cst_expired"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
