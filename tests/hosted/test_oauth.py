"""OAuth 2.1 as the MCP authorization spec asks: metadata, registration, PKCE, exact redirects,
resource binding, code and refresh-token rules, revocation; each refusal over loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from polar_mcp.double.store import Store
from polar_mcp.hosted.service import Limits
from tests.helpers.hosted import (
    REDIRECT_URI,
    VERIFIER,
    FakeClock,
    Mailbox,
    RunningHosted,
    exchange,
    free_port,
    hosted_env,
    hosted_server,
    refresh,
    register,
    sign_in,
    start,
    tools_list,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


async def _tokens(http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox) -> tuple[str, dict[str, str]]:
    client_id = (await register(http, server.base_url))["client_id"]
    code = await sign_in(http, server.base_url, mailbox, client_id)
    answer = await exchange(http, server.base_url, client_id, code)
    assert answer.status_code == 200, answer.text
    return client_id, answer.json()


async def test_both_metadata_documents_describe_this_server(http: httpx2.AsyncClient, server: RunningHosted) -> None:
    base = server.base_url
    resource = (await http.get(base + "/.well-known/oauth-protected-resource/mcp")).json()
    authorization = (await http.get(base + "/.well-known/oauth-authorization-server")).json()

    assert resource == {
        "resource": base + "/mcp",
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
    }
    assert authorization == {
        "issuer": base,
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/token",
        "registration_endpoint": base + "/register",
        "revocation_endpoint": base + "/revoke",
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    }


async def test_an_mcp_request_without_a_token_gets_401_pointing_at_the_resource_metadata(
    http: httpx2.AsyncClient, server: RunningHosted
) -> None:
    answer = await http.post(server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})

    assert answer.status_code == 401
    assert (
        f'resource_metadata="{server.base_url}/.well-known/oauth-protected-resource/mcp"'
        in answer.headers["www-authenticate"]
    )


@pytest.mark.parametrize("token", ["polar_cst_" + "x" * 43, "polar_mst_" + "y" * 43])
async def test_a_raw_polar_session_bearer_is_refused(
    http: httpx2.AsyncClient, server: RunningHosted, token: str
) -> None:
    answer = await tools_list(http, server.mcp_url, token)

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"
    assert "sign in" in answer.json()["error_description"]
    assert "resource_metadata=" in answer.headers["www-authenticate"]


async def test_registration_is_rate_limited_per_client_address(
    http: httpx2.AsyncClient, env: dict[str, str], clock: FakeClock
) -> None:
    with hosted_server(env, clock, Limits(registrations_per_address=(2, 3600.0))) as server:
        await register(http, server.base_url)
        await register(http, server.base_url)
        third = await http.post(server.base_url + "/register", json={"redirect_uris": [REDIRECT_URI]})
        clock.advance(3601)
        after_an_hour = await register(http, server.base_url)

    assert third.status_code == 429
    assert after_an_hour["client_id"]


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:9/Callback",
        "HTTP://127.0.0.1:9/callback",
        "http://127.0.0.1:9/callback?x=1",
        "http://127.0.0.1:9/other",
        None,
    ],
)
async def test_authorize_accepts_only_a_redirect_uri_exactly_as_registered(
    http: httpx2.AsyncClient, server: RunningHosted, redirect_uri: str | None
) -> None:
    client_id = (await register(http, server.base_url))["client_id"]

    answer = await start(http, server.base_url, client_id, redirect_uri=redirect_uri)

    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert answer.headers["x-frame-options"] == "DENY"


async def test_registration_refuses_redirects_that_are_plain_http_off_this_machine(
    http: httpx2.AsyncClient, server: RunningHosted
) -> None:
    answer = await http.post(
        server.base_url + "/register", json={"redirect_uris": ["http://apps.example.com/callback"]}
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"resource": "https://elsewhere.example/mcp"}, "invalid_target"),
    ],
)
async def test_authorize_requires_pkce_s256_and_this_resource(
    http: httpx2.AsyncClient, server: RunningHosted, overrides: dict[str, str | None], error: str
) -> None:
    client_id = (await register(http, server.base_url))["client_id"]

    answer = await start(http, server.base_url, client_id, **overrides)

    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert parse_qs(urlsplit(location).query)["error"] == [error]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_verifier": None}, "invalid_request"),
        ({"code_verifier": "a-wrong-verifier-that-is-long-enough-0123456789-abcdefghijklmnopq"}, "invalid_grant"),
        ({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "invalid_request"),
    ],
)
async def test_the_token_endpoint_refuses_a_missing_or_wrong_verifier_or_redirect(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, overrides: dict[str, str | None], error: str
) -> None:
    client_id = (await register(http, server.base_url))["client_id"]
    code = await sign_in(http, server.base_url, mailbox, client_id)

    answer = await exchange(http, server.base_url, client_id, code, **overrides)

    assert answer.status_code == 400
    assert answer.json()["error"] == error


async def test_a_token_without_a_resource_is_bound_to_this_server_and_works(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    _, tokens = await _tokens(http, server, mailbox)

    answer = await tools_list(http, server.mcp_url, tokens["access_token"])

    assert answer.status_code == 200
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600


async def test_a_replayed_code_is_refused_and_revokes_what_it_became(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    client_id = (await register(http, server.base_url))["client_id"]
    code = await sign_in(http, server.base_url, mailbox, client_id)
    first = (await exchange(http, server.base_url, client_id, code)).json()

    replay = await exchange(http, server.base_url, client_id, code)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert (await tools_list(http, server.mcp_url, first["access_token"])).status_code == 401
    assert (await refresh(http, server.base_url, client_id, first["refresh_token"])).status_code == 400


async def test_an_expired_authorization_code_is_refused(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, clock: FakeClock
) -> None:
    client_id = (await register(http, server.base_url))["client_id"]
    code = await sign_in(http, server.base_url, mailbox, client_id)
    clock.advance(301)

    answer = await exchange(http, server.base_url, client_id, code)

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


async def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_family(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    client_id, first = await _tokens(http, server, mailbox)
    second = (await refresh(http, server.base_url, client_id, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await tools_list(http, server.mcp_url, second["access_token"])).status_code == 200

    reuse = await refresh(http, server.base_url, client_id, first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert (await tools_list(http, server.mcp_url, second["access_token"])).status_code == 401
    assert (await refresh(http, server.base_url, client_id, second["refresh_token"])).status_code == 400


async def test_each_rotation_extends_the_refresh_life_and_an_unused_one_ends(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, clock: FakeClock
) -> None:
    client_id, tokens = await _tokens(http, server, mailbox)
    for _ in range(3):  # 3 x 20 days: well past the first 30 days
        clock.advance(20 * 86400)
        answer = await refresh(http, server.base_url, client_id, tokens["refresh_token"])
        assert answer.status_code == 200, answer.text
        tokens = answer.json()

    clock.advance(30 * 86400 + 1)
    ended = await refresh(http, server.base_url, client_id, tokens["refresh_token"])

    assert ended.status_code == 400
    assert ended.json()["error"] == "invalid_grant"


async def test_access_tokens_last_one_hour(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, clock: FakeClock
) -> None:
    _, tokens = await _tokens(http, server, mailbox)
    clock.advance(3599)
    assert (await tools_list(http, server.mcp_url, tokens["access_token"])).status_code == 200
    clock.advance(2)

    assert (await tools_list(http, server.mcp_url, tokens["access_token"])).status_code == 401


async def test_revoking_a_refresh_token_ends_its_access_token_too(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    client_id, tokens = await _tokens(http, server, mailbox)

    answer = await http.post(
        server.base_url + "/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": client_id},
    )

    assert answer.status_code == 200
    assert (await tools_list(http, server.mcp_url, tokens["access_token"])).status_code == 401
    assert (await refresh(http, server.base_url, client_id, tokens["refresh_token"])).status_code == 400


async def test_a_confidential_client_authenticates_with_its_secret_which_is_stored_only_as_a_digest(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    registered = await register(http, server.base_url, token_endpoint_auth_method="client_secret_basic")
    client_id, secret = registered["client_id"], registered["client_secret"]
    code = await sign_in(http, server.base_url, mailbox, client_id)

    without = await exchange(http, server.base_url, client_id, code)
    wrong = await http.post(
        server.base_url + "/token",
        auth=httpx2.BasicAuth(client_id, "not-the-secret"),
        data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
    )
    answer = await http.post(
        server.base_url + "/token",
        auth=httpx2.BasicAuth(client_id, secret),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "code_verifier": VERIFIER,
        },
    )

    assert without.status_code == 401
    assert wrong.status_code == 401
    assert answer.status_code == 200, answer.text
    assert secret not in "\n".join(await server.gate.hosted.store.dump())


async def test_a_token_bound_to_another_resource_is_refused(
    http: httpx2.AsyncClient,
    polar_url: str,
    smtp: tuple[str, Mailbox],
    mailbox: Mailbox,
    tmp_path: Path,
    clock: FakeClock,
    store: Store,
) -> None:
    # Two servers share one database and key but serve different resources (URLs): a token one
    # issued is bound to it and refused by the other, although the other can read its record.
    database = str(tmp_path / "shared.sqlite3")
    first_env = hosted_env(polar_url, smtp[0], database, f"http://127.0.0.1:{free_port()}")
    second_env = hosted_env(polar_url, smtp[0], database, f"http://127.0.0.1:{free_port()}")
    with hosted_server(first_env, clock) as first, hosted_server(second_env, clock) as second:
        _, tokens = await _tokens(http, first, mailbox)
        here = await tools_list(http, first.mcp_url, tokens["access_token"])
        there = await tools_list(http, second.mcp_url, tokens["access_token"])

    assert here.status_code == 200
    assert there.status_code == 401
