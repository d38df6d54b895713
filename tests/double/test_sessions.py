"""Session introspection and the merchant's POST /v1/customer-sessions/."""

from __future__ import annotations

import httpx2
import pytest

from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_ORG_TOKEN,
    DEMO_READONLY_ORG_TOKEN,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_MEMBER_EXTERNAL_ID,
    DEMO_TEAM_ORG_TOKEN,
)
from polar_mcp.double.store import Store
from tests.clock import ManualClock
from tests.double.helpers import INTROSPECT, LIST, SESSIONS, bearer

pytestmark = pytest.mark.anyio


async def test_introspect_tells_when_the_token_expires(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    token = store.issue_session(ada.id, ttl=90, return_url="https://ferris.example/account")

    response = await client.get(INTROSPECT, headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {"expires_at": "2026-05-28T20:28:10Z", "return_url": "https://ferris.example/account"}
    clock.advance(90)
    assert (await client.get(INTROSPECT, headers=bearer(token))).status_code == 401


async def test_introspect_refuses_an_organization_token(client: httpx2.AsyncClient) -> None:
    response = await client.get(INTROSPECT, headers=bearer(DEMO_ORG_TOKEN))

    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized", "detail": "Unauthorized"})


async def test_creating_a_session_by_customer_id_answers_201_with_a_working_token(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)

    response = await client.post(SESSIONS, json={"customer_id": ada.id}, headers=bearer(DEMO_ORG_TOKEN))
    body = response.json()

    assert response.status_code == 201
    assert set(body) == {
        "id",
        "created_at",
        "modified_at",
        "token",
        "expires_at",
        "return_url",
        "customer_portal_url",
        "customer_id",
        "customer",
    }
    assert body["token"].startswith("polar_cst_")
    assert (body["created_at"], body["expires_at"]) == ("2026-05-28T20:26:40Z", "2026-05-28T21:26:40Z")
    assert body["customer_id"] == ada.id
    assert body["customer"]["external_id"] == DEMO_CUSTOMER_EXTERNAL_ID
    assert body["customer"]["email"] == "ada@example.com"
    assert (await client.get(LIST, headers=bearer(body["token"]))).status_code == 200
    clock.advance(3600)
    assert (await client.get(LIST, headers=bearer(body["token"]))).status_code == 401


async def test_creating_a_session_by_external_customer_id(client: httpx2.AsyncClient, store: Store) -> None:
    body = {"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID, "return_url": "https://ferris.example/"}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_ORG_TOKEN))

    assert response.status_code == 201
    assert response.json()["customer_id"] == store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id
    assert response.json()["return_url"] == "https://ferris.example/"
    introspected = await client.get(INTROSPECT, headers=bearer(response.json()["token"]))
    assert introspected.json()["return_url"] == "https://ferris.example/"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"customer_id": "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11"},
            {
                "type": "value_error",
                "loc": ["body", "customer_id"],
                "msg": "Customer does not exist.",
                "input": "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11",
            },
        ),
        (
            {"external_customer_id": "nobody"},
            {
                "type": "value_error",
                "loc": ["body", "external_customer_id"],
                "msg": "Customer does not exist.",
                "input": "nobody",
            },
        ),
    ],
    ids=["customer-id", "external-customer-id"],
)
async def test_an_unknown_customer_answers_422(
    client: httpx2.AsyncClient, body: dict[str, str], error: dict[str, object]
) -> None:
    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_ORG_TOKEN))

    assert response.status_code == 422
    assert response.json() == {"error": "PolarRequestValidationError", "detail": [error]}


async def test_a_customer_of_another_organization_does_not_exist(client: httpx2.AsyncClient, store: Store) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)

    response = await client.post(SESSIONS, json={"customer_id": acme.id}, headers=bearer(DEMO_ORG_TOKEN))

    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "Customer does not exist."


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            b'{"customer_id": "42"}',
            {
                "type": "uuid_parsing",
                "loc": ["body", "customer_id"],
                "msg": "Input should be a valid UUID, invalid length: found 2",
                "input": "42",
                "ctx": {"error": "invalid length: found 2"},
            },
        ),
        (
            b"{}",
            {"type": "missing", "loc": ["body", "customer_id"], "msg": "Field required", "input": {}},
        ),
        (
            b"{nope",
            {
                "type": "json_invalid",
                "loc": ["body", 1],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting property name enclosed in double quotes"},
            },
        ),
        (
            b"[]",
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": [],
            },
        ),
    ],
    ids=["malformed-id", "no-customer", "bad-json", "not-an-object"],
)
async def test_a_malformed_body_answers_422(
    client: httpx2.AsyncClient, content: bytes, error: dict[str, object]
) -> None:
    headers = bearer(DEMO_ORG_TOKEN) | {"Content-Type": "application/json"}

    response = await client.post(SESSIONS, content=content, headers=headers)

    assert response.status_code == 422
    assert response.json() == {"error": "RequestValidationError", "detail": [error]}


async def test_an_organization_token_without_the_scope_is_forbidden(client: httpx2.AsyncClient) -> None:
    body = {"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_READONLY_ORG_TOKEN))

    assert response.status_code == 403
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
    }
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_an_unknown_organization_token_is_invalid(client: httpx2.AsyncClient) -> None:
    body = {"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID}

    response = await client.post(SESSIONS, json=body, headers=bearer("polar_oat_revoked"))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


async def test_a_session_token_cannot_create_sessions(client: httpx2.AsyncClient, ada_token: str) -> None:
    body = {"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID}

    without = await client.post(SESSIONS, json=body)
    with_session = await client.post(SESSIONS, json=body, headers=bearer(ada_token))

    assert (without.status_code, with_session.status_code) == (401, 401)
    assert with_session.json() == {"error": "Unauthorized", "detail": "Unauthorized"}


async def test_a_team_customer_needs_a_member(client: httpx2.AsyncClient) -> None:
    body = {"external_customer_id": DEMO_TEAM_CUSTOMER_EXTERNAL_ID}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 422
    assert response.json() == {
        "error": "PolarRequestValidationError",
        "detail": [
            {
                "type": "value_error",
                "loc": ["body", "member_id"],
                "msg": "member_id is required for team customers.",
                "input": None,
            }
        ],
    }


@pytest.mark.parametrize("by", ["member_id", "external_member_id"])
async def test_an_organization_using_members_answers_a_member_token(
    client: httpx2.AsyncClient, store: Store, by: str
) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)
    bob = next(m for m in store.members_of(acme.id) if m.external_id == DEMO_TEAM_MEMBER_EXTERNAL_ID)
    member = {"member_id": bob.id, "external_member_id": bob.external_id}[by]
    body = {"customer_id": acme.id, by: member}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 201
    assert response.json()["token"].startswith("polar_mst_")
    assert (response.json()["member_id"], response.json()["member"]["name"]) == (bob.id, "Bob Okafor")
    listed = await client.get(LIST, headers=bearer(response.json()["token"]))
    assert listed.json()["pagination"]["total_count"] == 3


async def test_an_individual_customer_of_a_members_organization_acts_as_its_owner(
    client: httpx2.AsyncClient, store: Store
) -> None:
    linus = store.customer_by_external_id("linus-solo")

    response = await client.post(SESSIONS, json={"customer_id": linus.id}, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 201
    assert response.json()["token"].startswith("polar_mst_")
    assert response.json()["member"]["role"] == "owner"


async def test_an_unknown_member_answers_422(client: httpx2.AsyncClient, store: Store) -> None:
    body = {"external_customer_id": DEMO_TEAM_CUSTOMER_EXTERNAL_ID, "external_member_id": "acme-mallory"}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "value_error",
            "loc": ["body", "external_member_id"],
            "msg": "Member does not exist.",
            "input": "acme-mallory",
        }
    ]


def test_issued_tokens_carry_the_kind_of_their_subject(store: Store) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)
    owner = store.members_of(acme.id)[0]
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)

    assert store.issue_session(ada.id).startswith("polar_cst_")
    assert store.issue_session(acme.id, owner.id).startswith("polar_mst_")
    with pytest.raises(ValueError, match="not a member"):
        store.issue_session(ada.id, owner.id)
