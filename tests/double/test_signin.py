"""The customer portal's sign-in by e-mailed code, per docs/POLAR-API.md's "Customer sign-in by e-mail code"."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest

from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_NO_MEMBERS_CUSTOMER_EMAIL,
    DEMO_NO_MEMBERS_ORGANIZATION_SLUG,
    DEMO_ORGANIZATION_SLUG,
    DEMO_SHARED_EMAIL,
    DEMO_TEAM_ORGANIZATION_SLUG,
)
from polar_mcp.double.store import Store
from tests.double.helpers import ADMIN, AUTHENTICATE, INTROSPECT, LIST, ME, PORTAL, REQUEST_CODE, USER, bearer
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio

INVALID_CODE = {
    "error": "CustomerSessionCodeInvalidOrExpired",
    "detail": "This customer session code is invalid or has expired.",
}


def org_id(store: Store, slug: str) -> str:
    return next(o.id for o in store.organizations.values() if o.slug == slug)


async def ask(
    client: httpx2.AsyncClient, store: Store, email: str, slug: str = DEMO_ORGANIZATION_SLUG, **more: str
) -> httpx2.Response:
    return await client.post(REQUEST_CODE, json={"email": email, "organization_id": org_id(store, slug), **more})


async def sign_in(client: httpx2.AsyncClient, store: Store, email: str, slug: str = DEMO_ORGANIZATION_SLUG) -> str:
    assert (await ask(client, store, email, slug)).status_code == 202
    response = await client.post(AUTHENTICATE, json={"code": store.last_code(email)})
    assert response.status_code == 200
    token: str = response.json()["token"]
    return token


async def test_the_seller_is_found_by_slug_without_auth(client: httpx2.AsyncClient, store: Store) -> None:
    response = await client.get(f"{PORTAL}organizations/{DEMO_ORGANIZATION_SLUG}")
    unknown = await client.get(f"{PORTAL}organizations/no-such-seller")

    assert response.status_code == 200
    assert set(response.json()) == {"organization", "products"}
    organization: dict[str, Any] = response.json()["organization"]
    assert (organization["id"], organization["name"], organization["slug"]) == (
        org_id(store, DEMO_ORGANIZATION_SLUG),
        "Ferris Press",
        DEMO_ORGANIZATION_SLUG,
    )
    assert (unknown.status_code, unknown.json()) == (404, {"error": "ResourceNotFound", "detail": "Not found"})


async def test_asking_for_a_code_answers_202_null_and_e_mails_a_six_character_code(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    response = await ask(client, store, DEMO_CUSTOMER_EMAIL)

    assert (response.status_code, response.content) == (202, b"null")
    [email] = store.outbox
    assert (email.to, email.subject, email.sent_at) == (
        DEMO_CUSTOMER_EMAIL,
        "Access your Ferris Press purchases",
        clock(),
    )
    assert re.fullmatch(r"[A-Z0-9]{6}", email.code)
    assert email.code in email.text
    # Polar keeps only a keyed hash of the code.
    assert email.code not in repr(store.codes)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nobody@example.com"},
        {"email": DEMO_CUSTOMER_EMAIL, "organization_id": "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11"},
        {"email": DEMO_CUSTOMER_EMAIL, "customer_id": "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11"},
    ],
    ids=["unknown-email", "unknown-organization", "other-customer"],
)
async def test_asking_for_someone_unknown_answers_the_same_202_and_sends_nothing(
    client: httpx2.AsyncClient, store: Store, body: dict[str, str]
) -> None:
    response = await client.post(REQUEST_CODE, json={"organization_id": org_id(store, DEMO_ORGANIZATION_SLUG)} | body)

    assert (response.status_code, response.content) == (202, b"null")
    assert store.outbox == []


async def test_the_e_mail_is_matched_in_any_case(client: httpx2.AsyncClient, store: Store) -> None:
    response = await ask(client, store, "ADA@Example.COM")

    assert response.status_code == 202
    assert [e.to for e in store.outbox] == ["ADA@Example.COM"]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"email": "ada-at-example.com"}, ["body", "email"], "value_error"),
        ({"email": "ada@localhost"}, ["body", "email"], "value_error"),
        ({"email": "ada@-bad-.com"}, ["body", "email"], "value_error"),
        (
            {"email": DEMO_CUSTOMER_EMAIL, "organization_id": "ferris-press"},
            ["body", "organization_id"],
            "uuid_parsing",
        ),
        ({"email": DEMO_CUSTOMER_EMAIL, "customer_id": "42"}, ["body", "customer_id"], "uuid_parsing"),
        ({"email": None}, ["body", "email"], "missing"),
    ],
    ids=["no-at-sign", "no-period", "bad-domain", "slug-for-id", "bad-customer-id", "missing-email"],
)
async def test_a_malformed_request_answers_422(
    client: httpx2.AsyncClient, store: Store, body: dict[str, Any], loc: list[str], kind: str
) -> None:
    full = {"organization_id": org_id(store, DEMO_ORGANIZATION_SLUG)} | body
    full = {k: v for k, v in full.items() if v is not None}

    response = await client.post(REQUEST_CODE, json=full)

    assert response.status_code == 422
    assert response.json()["error"] == "RequestValidationError"
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(loc, kind)]
    assert store.outbox == []


async def test_a_malformed_e_mail_says_why(client: httpx2.AsyncClient, store: Store) -> None:
    response = await ask(client, store, "ada@localhost")

    assert response.json()["detail"][0]["msg"] == (
        "value is not a valid email address: The part after the @-sign is not valid. It should have a period."
    )


async def test_the_code_opens_a_member_session_that_lists_the_customers_files(
    client: httpx2.AsyncClient, store: Store
) -> None:
    token = await sign_in(client, store, DEMO_CUSTOMER_EMAIL)

    assert token.startswith("polar_mst_")
    listed = await client.get(LIST, headers=bearer(token))
    assert listed.json()["pagination"]["total_count"] == 11
    introspected = await client.get(INTROSPECT, headers=bearer(token))
    assert introspected.json() == {"expires_at": "2026-05-28T21:26:40Z", "return_url": None}


async def test_who_is_signed_in_and_their_customer(client: httpx2.AsyncClient, store: Store) -> None:
    token = await sign_in(client, store, DEMO_CUSTOMER_EMAIL)
    ada = next(c for c in store.customers.values() if c.email == DEMO_CUSTOMER_EMAIL)

    user = await client.get(USER, headers=bearer(token))
    me = await client.get(ME, headers=bearer(token))

    assert user.json() == {
        "type": "member",
        "name": "Ada Lovelace",
        "email": DEMO_CUSTOMER_EMAIL,
        "customer_id": ada.id,
        "member_id": store.members_of(ada.id)[0].id,
        "role": "owner",
    }
    assert (me.json()["id"], me.json()["email"], me.json()["name"], me.json()["type"]) == (
        ada.id,
        DEMO_CUSTOMER_EMAIL,
        "Ada Lovelace",
        "individual",
    )
    # Exchanging the code proved the address.
    assert me.json()["email_verified"] is True


async def test_an_organization_without_members_answers_a_customer_session(
    client: httpx2.AsyncClient, store: Store
) -> None:
    token = await sign_in(client, store, DEMO_NO_MEMBERS_CUSTOMER_EMAIL, DEMO_NO_MEMBERS_ORGANIZATION_SLUG)

    assert token.startswith("polar_cst_")
    user = await client.get(USER, headers=bearer(token))
    assert (user.json()["type"], user.json()["member_id"], user.json()["role"]) == ("customer", None, None)
    assert [i["file"]["name"] for i in (await client.get(LIST, headers=bearer(token))).json()["items"]] == [
        "night-poems-chapbook.pdf"
    ]


async def test_an_e_mail_of_several_customers_asks_to_choose_then_signs_in_the_chosen_one(
    client: httpx2.AsyncClient, store: Store
) -> None:
    crabs = DEMO_TEAM_ORGANIZATION_SLUG
    acme, alice = (
        c for c, _ in store.customers_with_email(store.organizations[org_id(store, crabs)], DEMO_SHARED_EMAIL)
    )

    choice = await ask(client, store, DEMO_SHARED_EMAIL, crabs)
    chosen = await ask(client, store, DEMO_SHARED_EMAIL, crabs, customer_id=alice.id)
    token = (await client.post(AUTHENTICATE, json={"code": store.last_code(DEMO_SHARED_EMAIL)})).json()["token"]

    assert choice.status_code == 409
    assert choice.json() == {
        "error": "customer_selection_required",
        "detail": "Multiple customers found for this email. Please select one.",
        "customers": [{"id": acme.id, "name": "Acme Robotics"}, {"id": alice.id, "name": "Alice Chen"}],
    }
    assert (chosen.status_code, len(store.outbox)) == (202, 1)
    user = (await client.get(USER, headers=bearer(token))).json()
    assert (user["customer_id"], user["role"]) == (alice.id, "owner")
    assert [i["file"]["name"] for i in (await client.get(LIST, headers=bearer(token))).json()["items"]] == [
        "crab-stickers.txt"
    ]


async def test_a_code_works_once(client: httpx2.AsyncClient, store: Store) -> None:
    await ask(client, store, DEMO_CUSTOMER_EMAIL)
    code = store.last_code(DEMO_CUSTOMER_EMAIL)

    first = await client.post(AUTHENTICATE, json={"code": code})
    again = await client.post(AUTHENTICATE, json={"code": code})

    assert first.status_code == 200
    assert (again.status_code, again.json()) == (401, INVALID_CODE)


async def test_a_code_expires_after_thirty_minutes(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    await ask(client, store, DEMO_CUSTOMER_EMAIL)
    await ask(client, store, DEMO_CUSTOMER_EMAIL)
    first, second = (e.code for e in store.outbox)

    clock.advance(1799)
    # Asking again did not cancel the earlier code.
    assert (await client.post(AUTHENTICATE, json={"code": first})).status_code == 200
    clock.advance(1)
    expired = await client.post(AUTHENTICATE, json={"code": second})

    assert (expired.status_code, expired.json()) == (401, INVALID_CODE)


@pytest.mark.parametrize("wrong", ["", "ZZZZZZ", "lower", " CODE "])
async def test_a_wrong_or_empty_code_is_refused(client: httpx2.AsyncClient, store: Store, wrong: str) -> None:
    await ask(client, store, DEMO_CUSTOMER_EMAIL)
    code = store.last_code(DEMO_CUSTOMER_EMAIL)
    attempt = {"lower": code.lower(), " CODE ": f" {code} "}.get(wrong, wrong)

    response = await client.post(AUTHENTICATE, json={"code": attempt})

    assert (response.status_code, response.json()) == (401, INVALID_CODE)


async def test_authenticating_without_a_body_answers_422(client: httpx2.AsyncClient) -> None:
    response = await client.post(AUTHENTICATE)
    no_code = await client.post(AUTHENTICATE, json={})

    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
    assert (no_code.status_code, no_code.json()["detail"][0]["loc"]) == (422, ["body", "code"])


async def test_the_sign_in_limit_blocks_the_address_on_the_whole_api(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock, ada_token: str
) -> None:
    statuses = [(await ask(client, store, "nobody@example.com")).status_code for _ in range(6)]

    limited = await client.post(AUTHENTICATE, json={"code": "ABCDEF"})
    listing = await client.get(LIST, headers=bearer(ada_token))

    assert statuses == [202] * 6
    assert (limited.status_code, limited.content, limited.headers["retry-after"]) == (429, b"", "900")
    assert "content-type" not in limited.headers
    assert (listing.status_code, listing.content, listing.headers["retry-after"]) == (429, b"", "900")
    clock.advance(600)
    assert (await client.get(LIST, headers=bearer(ada_token))).headers["retry-after"] == "300"
    clock.advance(300)
    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 200


async def test_the_hourly_sign_in_limit_counts_too(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    store.signin_per_minute = None
    store.signin_per_hour = 2
    statuses: list[int] = []
    for _ in range(3):
        statuses.append((await ask(client, store, "nobody@example.com")).status_code)
        clock.advance(61)

    assert statuses == [202, 202, 429]


async def test_a_bearer_token_is_counted_apart_from_the_address(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.signin_per_minute = 1
    body = {"email": "nobody@example.com", "organization_id": org_id(store, DEMO_ORGANIZATION_SLUG)}

    with_token = [(await client.post(REQUEST_CODE, json=body, headers=bearer(ada_token))).status_code for _ in range(2)]
    anonymous = await client.post(REQUEST_CODE, json=body)

    assert (with_token, anonymous.status_code) == ([202, 429], 202)
    # The token is blocked, the address is not.
    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 429
    assert (await client.get(f"{PORTAL}organizations/{DEMO_ORGANIZATION_SLUG}")).status_code == 200


async def test_the_outbox_is_readable_and_emptied_through_the_admin_route(
    client: httpx2.AsyncClient, store: Store
) -> None:
    await ask(client, store, DEMO_CUSTOMER_EMAIL)
    code = store.last_code(DEMO_CUSTOMER_EMAIL)

    shown = await client.get(f"{ADMIN}outbox")
    emptied = await client.delete(f"{ADMIN}outbox")

    [message] = shown.json()["messages"]
    assert message == {
        "to": DEMO_CUSTOMER_EMAIL,
        "subject": "Access your Ferris Press purchases",
        "text": message["text"],
        "code": code,
        "organization_id": org_id(store, DEMO_ORGANIZATION_SLUG),
        "sent_at": "2026-05-28T20:26:40Z",
    }
    assert code in message["text"]
    assert emptied.json() == {"messages": []}
    assert store.outbox == []
    # The outbox is the double's, not Polar's: no sign-in limit or log applies to it.
    assert all(not r.path.startswith(ADMIN) for r in store.requests)
