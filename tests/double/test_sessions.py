"""Session introspection and the merchant's POST /v1/customer-sessions/."""

from __future__ import annotations

import httpx2
import pytest

from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_NO_MEMBERS_ORG_TOKEN,
    DEMO_ORG_TOKEN,
    DEMO_READONLY_ORG_TOKEN,
    DEMO_TEAM_CUSTOMER_EXTERNAL_ID,
    DEMO_TEAM_MEMBER_EXTERNAL_ID,
    DEMO_TEAM_ORG_TOKEN,
)
from polar_mcp.double.store import Store
from tests.double.helpers import INTROSPECT, LIST, SESSIONS, USER, bearer
from tests.helpers.clock import ManualClock

INSUFFICIENT_SCOPE = {
    "error": "insufficient_scope",
    "error_description": "The request requires higher privileges than provided by the access token.",
}

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


async def test_creating_a_session_answers_201_with_a_member_token_as_organizations_use_members(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)

    response = await client.post(SESSIONS, json={"customer_id": ada.id}, headers=bearer(DEMO_ORG_TOKEN))
    body = response.json()
    token = body["token"]

    assert response.status_code == 201
    assert body == {
        "id": body["id"],
        "created_at": "2026-05-28T20:26:40Z",
        "modified_at": None,
        "token": token,
        "expires_at": "2026-05-28T21:26:40Z",
        "return_url": None,
        "customer_portal_url": f"http://polar.test/ferris-press/portal?customer_session_token={token}"
        "&email=ada%40example.com",
        "customer_id": ada.id,
        "customer": {
            "id": ada.id,
            "created_at": "2026-05-28T20:26:40Z",
            "modified_at": None,
            "metadata": {},
            "external_id": DEMO_CUSTOMER_EXTERNAL_ID,
            "email": "ada@example.com",
            "email_verified": False,
            "name": "Ada Lovelace",
            "billing_name": None,
            "type": "individual",
            "billing_address": None,
            "tax_id": None,
            "locale": None,
            "organization_id": ada.organization_id,
            "default_payment_method_id": None,
            "first_user_event_at": None,
            "deleted_at": None,
            "avatar_url": "https://www.gravatar.com/avatar/"
            "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72?d=404",
        },
    }
    assert token.startswith("polar_mst_")
    assert (await client.get(LIST, headers=bearer(token))).json()["pagination"]["total_count"] == 11
    clock.advance(3600)
    assert (await client.get(LIST, headers=bearer(token))).status_code == 401


async def test_an_organization_without_members_answers_a_customer_token(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        SESSIONS, json={"external_customer_id": "mary-1797"}, headers=bearer(DEMO_NO_MEMBERS_ORG_TOKEN)
    )

    assert response.status_code == 201
    assert response.json()["token"].startswith("polar_cst_")
    assert (await client.get(USER, headers=bearer(response.json()["token"]))).json()["type"] == "customer"


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


def missing(model: str, field: str, given: object) -> dict[str, object]:
    return {"type": "missing", "loc": ["body", model, field], "msg": "Field required", "input": given}


@pytest.mark.parametrize(
    ("content", "errors"),
    [
        (
            b'{"customer_id": "42"}',
            [
                {
                    "type": "uuid_parsing",
                    "loc": ["body", "CustomerSessionCustomerIDCreate", "customer_id"],
                    "msg": "Input should be a valid UUID, invalid length: found 2",
                    "input": "42",
                    "ctx": {"error": "invalid length: found 2"},
                },
                missing("CustomerSessionCustomerExternalIDCreate", "external_customer_id", {"customer_id": "42"}),
            ],
        ),
        (
            b"{}",
            [
                missing("CustomerSessionCustomerIDCreate", "customer_id", {}),
                missing("CustomerSessionCustomerExternalIDCreate", "external_customer_id", {}),
            ],
        ),
        (
            b"[]",
            [
                {
                    "type": "model_type",
                    "loc": ["body", model],
                    "msg": f"Input should be a valid dictionary or instance of {model}",
                    "input": [],
                    "ctx": {"class_name": model},
                }
                for model in ("CustomerSessionCustomerIDCreate", "CustomerSessionCustomerExternalIDCreate")
            ],
        ),
        (
            b"{nope",
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", 1],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": "Expecting property name enclosed in double quotes"},
                }
            ],
        ),
        (b"", [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]),
    ],
    ids=["malformed-id", "empty-object", "not-an-object", "bad-json", "no-body"],
)
async def test_a_malformed_body_answers_422_naming_polars_models(
    client: httpx2.AsyncClient, content: bytes, errors: list[dict[str, object]]
) -> None:
    headers = bearer(DEMO_ORG_TOKEN) | {"Content-Type": "application/json"}

    response = await client.post(SESSIONS, content=content, headers=headers)

    assert response.status_code == 422
    assert response.json() == {"error": "RequestValidationError", "detail": errors}


async def test_an_organization_token_without_the_scope_is_forbidden(client: httpx2.AsyncClient) -> None:
    body = {"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_READONLY_ORG_TOKEN))

    assert response.status_code == 403
    assert response.json() == INSUFFICIENT_SCOPE
    assert response.headers["www-authenticate"] == (
        'Bearer realm="polar", scope="customer_sessions:write", error="insufficient_scope", '
        'error_description="The request requires higher privileges than provided by the access token."'
    )
    assert response.headers.get_list("cache-control") == ["no-store", "private, no-store"]
    assert response.headers["pragma"] == "no-cache"


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
    assert not {"member", "member_id"} & set(response.json())
    user = await client.get(USER, headers=bearer(response.json()["token"]))
    assert (user.json()["member_id"], user.json()["name"]) == (bob.id, "Bob Okafor")
    listed = await client.get(LIST, headers=bearer(response.json()["token"]))
    assert listed.json()["pagination"]["total_count"] == 3


async def test_an_individual_customer_of_a_members_organization_acts_as_its_owner(
    client: httpx2.AsyncClient, store: Store
) -> None:
    linus = store.customer_by_external_id("linus-solo")

    response = await client.post(SESSIONS, json={"customer_id": linus.id}, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 201
    assert response.json()["token"].startswith("polar_mst_")
    assert (await client.get(USER, headers=bearer(response.json()["token"]))).json()["role"] == "owner"


@pytest.mark.parametrize(
    ("field", "value"),
    [("external_member_id", "acme-mallory"), ("member_id", "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11")],
)
async def test_an_unknown_member_answers_422(client: httpx2.AsyncClient, field: str, value: str) -> None:
    body = {"external_customer_id": DEMO_TEAM_CUSTOMER_EXTERNAL_ID, field: value}

    response = await client.post(SESSIONS, json=body, headers=bearer(DEMO_TEAM_ORG_TOKEN))

    assert response.status_code == 422
    assert response.json() == {
        "error": "PolarRequestValidationError",
        "detail": [
            {
                "type": "value_error",
                "loc": ["body", field],
                "msg": "Member does not exist for this customer.",
                "input": value,
            }
        ],
    }


def test_issued_tokens_carry_the_kind_of_their_subject(store: Store) -> None:
    acme = store.customer_by_external_id(DEMO_TEAM_CUSTOMER_EXTERNAL_ID)
    owner = store.members_of(acme.id)[0]
    ada = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)

    assert store.issue_session(ada.id).startswith("polar_cst_")
    assert store.issue_session(acme.id, owner.id).startswith("polar_mst_")
    with pytest.raises(ValueError, match="not a member"):
        store.issue_session(ada.id, owner.id)
