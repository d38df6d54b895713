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
    # The revoked "Preview Chapter" grant stays hidden.
    assert descriptions(response) == [
        "Rust Ebook Bundle",
        "Async Course Videos",
        "Wallpaper Pack",
        "Code Samples",
        "Early Access: Chapter 12",
        "Ferris Press Discord",
    ]
    assert response.json()["pagination"] == {"total_count": 6, "max_page": 1}


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
        "customer",
        "benefit",
        "properties",
    } <= set(grant)
    assert (grant["is_granted"], grant["is_revoked"], grant["revoked_at"]) == (True, False, None)
    assert grant["granted_at"] == "2025-06-01T12:00:00Z"
    assert grant["benefit"]["type"] == "downloadables"
    assert grant["benefit"]["organization"]["name"] == "Ferris Press"
    assert grant["benefit"]["organization"]["slug"] == "ferris-press"
    assert len(grant["benefit"]["organization"]) > 20
    assert (grant["benefit"]["selectable"], grant["benefit"]["deletable"], grant["benefit"]["is_deleted"]) == (
        True,
        True,
        False,
    )
    assert grant["customer"]["email"] == "ada@example.com"
    # Ferris Press uses members: Ada's grants go to her owner member.
    ada = store.customers[grant["customer_id"]]
    assert grant["member_id"] == store.members_of(ada.id)[0].id
    # The malware-flagged wallpaper is no file of the grant's, but stays one of the benefit's.
    assert len(grant["properties"]["files"]) == 2
    assert grant["benefit"]["properties"] == {"active_files": store.benefits[grant["benefit_id"]].file_ids}
    assert len(grant["benefit"]["properties"]["active_files"]) == 3


async def test_type_filter_is_repeatable(client: httpx2.AsyncClient, ada_token: str) -> None:
    files_only = await client.get(GRANTS, params={"type": "downloadables"}, headers=bearer(ada_token))
    both = await client.get(GRANTS, params={"type": ["downloadables", "discord"]}, headers=bearer(ada_token))
    discord = await client.get(GRANTS, params={"type": "discord"}, headers=bearer(ada_token))

    assert "Ferris Press Discord" not in descriptions(files_only)
    assert len(descriptions(files_only)) == 5
    assert len(descriptions(both)) == 6
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
        "Early Access: Chapter 12",
        "Wallpaper Pack",
        "Async Course Videos",
        "Code Samples",
        "Rust Ebook Bundle",
        "Ferris Press Discord",
    ]


async def test_grants_paginate(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"limit": 2, "page": 3}, headers=bearer(ada_token))

    assert descriptions(response) == ["Early Access: Chapter 12", "Ferris Press Discord"]
    assert response.json()["pagination"] == {"total_count": 6, "max_page": 3}


async def test_every_listed_file_has_a_named_benefit(client: httpx2.AsyncClient, ada_token: str) -> None:
    listed = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    grants = await client.get(GRANTS, params={"limit": 100}, headers=bearer(ada_token))

    listed_benefits = {item["benefit_id"] for item in listed.json()["items"]}
    named_benefits = {grant["benefit_id"] for grant in grants.json()["items"]}
    assert listed_benefits <= named_benefits


async def test_a_grant_the_listing_lags_behind_leaves_its_files_nameless(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    early = benefit_id(store, "Early Access: Chapter 12")
    next(g for g in store.grants.values() if g.benefit_id == early).in_benefit_grants = False

    listed = await client.get(LIST, params={"limit": 100}, headers=bearer(ada_token))
    grants = await client.get(GRANTS, params={"limit": 100}, headers=bearer(ada_token))

    listed_benefits = {item["benefit_id"] for item in listed.json()["items"]}
    named_benefits = {grant["benefit_id"] for grant in grants.json()["items"]}
    assert listed_benefits - named_benefits == {early}


def test_a_downloadables_benefit_is_always_public(store: Store) -> None:
    org = next(iter(store.organizations.values()))

    with pytest.raises(ValueError, match="other than public"):
        store.add_benefit(org, "Secret Drafts", visibility="private")
    assert store.add_benefit(org, "Private Discord", type="discord", visibility="private").visibility == "private"


async def test_a_private_benefit_of_another_type_is_never_listed(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    org = next(iter(store.organizations.values()))
    ada = store.customers[store.sessions[ada_token].customer_id]
    store.grant(ada, store.add_benefit(org, "Private Discord", type="discord", visibility="private"), store.now())

    grants = await client.get(GRANTS, params={"limit": 100}, headers=bearer(ada_token))

    assert "Private Discord" not in descriptions(grants)


async def test_bad_filters_answer_422(client: httpx2.AsyncClient, ada_token: str) -> None:
    params = {"type": "ebook", "sorting": "newest", "limit": "0"}

    response = await client.get(GRANTS, params=params, headers=bearer(ada_token))

    assert response.status_code == 422
    assert [(e["type"], e["loc"], e["input"]) for e in response.json()["detail"]] == [
        ("enum", ["query", "type", "str-enum[BenefitType]"], ["ebook"]),
        (
            "enum",
            [
                "query",
                "type",
                "json-or-python[json=list[str-enum[BenefitType]],python=chain[is-instance[Sequence],"
                "function-wrap[sequence_validator()]]]",
                0,
            ],
            "ebook",
        ),
        ("enum", ["query", "sorting", 0], "newest"),
        ("greater_than", ["query", "limit"], "0"),
    ]


async def test_the_benefit_type_enum_has_slack_shared_channel(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(GRANTS, params={"type": "slack_shared_channel"}, headers=bearer(ada_token))

    assert response.json() == {"items": [], "pagination": {"total_count": 0, "max_page": 0}}


async def test_grants_need_a_session_token(client: httpx2.AsyncClient) -> None:
    response = await client.get(GRANTS, headers=bearer("polar_cst_expired"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
