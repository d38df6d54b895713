"""The seller's lookups with an organization token: customers by e-mail, a customer's members."""

from __future__ import annotations

import httpx2
import pytest

from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_NO_MEMBERS_ORG_TOKEN,
    DEMO_ORG_TOKEN,
    DEMO_READONLY_ORG_TOKEN,
    DEMO_SHARED_EMAIL,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_ORG_TOKEN,
)
from polar_mcp.double.store import CUSTOMER_SESSIONS_WRITE, Store
from tests.double.helpers import CUSTOMERS, MEMBERS, bearer

pytestmark = pytest.mark.anyio


def emails(response: httpx2.Response) -> list[str]:
    return [item["email"] for item in response.json()["items"]]


async def test_customers_are_found_by_their_exact_e_mail(client: httpx2.AsyncClient, store: Store) -> None:
    found = await client.get(CUSTOMERS, params={"email": DEMO_CUSTOMER_EMAIL}, headers=bearer(DEMO_ORG_TOKEN))
    other_case = await client.get(CUSTOMERS, params={"email": "ADA@example.com"}, headers=bearer(DEMO_ORG_TOKEN))

    assert found.status_code == 200
    assert emails(found) == [DEMO_CUSTOMER_EMAIL]
    assert found.json()["items"][0]["id"] == next(
        c.id for c in store.customers.values() if c.email == DEMO_CUSTOMER_EMAIL
    )
    assert found.json()["pagination"] == {"total_count": 1, "max_page": 1}
    assert other_case.json() == {"items": [], "pagination": {"total_count": 0, "max_page": 0}}


async def test_customers_are_those_of_the_tokens_organization_and_paged(client: httpx2.AsyncClient) -> None:
    press = await client.get(CUSTOMERS, headers=bearer(DEMO_READONLY_ORG_TOKEN))
    crabs = await client.get(CUSTOMERS, params={"limit": 2, "page": 2}, headers=bearer(DEMO_TEAM_ORG_TOKEN))
    crabs_by_email = await client.get(
        CUSTOMERS, params={"email": DEMO_SHARED_EMAIL}, headers=bearer(DEMO_TEAM_ORG_TOKEN)
    )

    assert emails(press) == ["ada@example.com", "grace@example.com"]
    assert emails(crabs) == [DEMO_SHARED_EMAIL]
    assert crabs.json()["pagination"] == {"total_count": 3, "max_page": 2}
    # An individual customer's e-mail; the team customer has its own.
    assert [i["type"] for i in crabs_by_email.json()["items"]] == ["individual"]


async def test_a_customers_members_are_listed(client: httpx2.AsyncClient, store: Store) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)

    response = await client.get(MEMBERS, params={"customer_id": acme.id}, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 200
    assert [(m["email"], m["role"], m["customer_id"]) for m in response.json()["items"]] == [
        ("alice@acme.example", "owner", acme.id),
        ("bob@acme.example", "member", acme.id),
    ]
    assert set(response.json()["items"][0]) == {
        "id",
        "created_at",
        "modified_at",
        "customer_id",
        "email",
        "name",
        "external_id",
        "role",
    }


async def test_members_of_another_organizations_customer_are_not_listed(
    client: httpx2.AsyncClient, store: Store
) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)

    response = await client.get(MEMBERS, params={"customer_id": acme.id}, headers=bearer(DEMO_ORG_TOKEN))

    assert response.json() == {"items": [], "pagination": {"total_count": 0, "max_page": 0}}


async def test_an_organization_without_members_has_none(client: httpx2.AsyncClient) -> None:
    response = await client.get(MEMBERS, headers=bearer(DEMO_NO_MEMBERS_ORG_TOKEN))

    assert response.json()["items"] == []


async def test_a_malformed_customer_id_answers_422(client: httpx2.AsyncClient) -> None:
    response = await client.get(MEMBERS, params={"customer_id": "acme"}, headers=bearer(DEMO_ORG_TOKEN))

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "customer_id"]]


@pytest.mark.parametrize(
    ("path", "scope"), [(CUSTOMERS, "customers:read customers:write"), (MEMBERS, "members:read members:write")]
)
async def test_a_token_without_the_read_scope_is_forbidden(
    client: httpx2.AsyncClient, store: Store, path: str, scope: str
) -> None:
    org = next(iter(store.organizations.values()))
    store.add_org_token("polar_oat_sessions_only", organization_id=org.id, scopes=(CUSTOMER_SESSIONS_WRITE,))

    response = await client.get(path, headers=bearer("polar_oat_sessions_only"))

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert response.headers["www-authenticate"].startswith(f'Bearer realm="polar", scope="{scope}", ')


async def test_the_readonly_demo_token_reads_customers_but_not_members(client: httpx2.AsyncClient) -> None:
    customers = await client.get(CUSTOMERS, headers=bearer(DEMO_READONLY_ORG_TOKEN))
    members = await client.get(MEMBERS, headers=bearer(DEMO_READONLY_ORG_TOKEN))

    assert (customers.status_code, members.status_code) == (200, 403)


async def test_a_customer_session_cannot_look_up_customers(client: httpx2.AsyncClient, ada_token: str) -> None:
    response = await client.get(CUSTOMERS, headers=bearer(ada_token))

    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized", "detail": "Unauthorized"})
