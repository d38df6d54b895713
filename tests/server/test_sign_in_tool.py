"""The sign_in tool as a host sees it: e-mail code, session, expiry, every error, and no secret anywhere."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.polar.client import PolarClient
from polar_mcp.server import build_server
from tests.helpers.polar import CUSTOMER_TOKEN
from tests.helpers.signin import ADA, ORG_ID, TEAM_CUSTOMERS, TEAM_EMAIL, SignInPolar, item
from tests.helpers.snapshot import assert_matches_snapshot

SNAPSHOT = Path(__file__).parent / "tools_list.sign_in.snapshot.json"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.anyio

NOT_SIGNED_IN = (
    "Error executing tool list_downloadables: Not signed in to Polar. Call sign_in with seller (the slug of the "
    "user's customer portal address, https://polar.sh/<slug>/portal) and email, then call sign_in with the code "
    "Polar e-mails; or the user can run `polar-mcp login` in a terminal."
)
CODE_SENT = (
    "If a•••@example.com bought from Ferris Press, a code is on its way (Polar does not say whether it did). Ask "
    "the user for the 6-character code Polar sent to a•••@example.com, then call sign_in with code. The code is "
    "valid 30 minutes."
)
SIGNED_IN = (
    "Signed in at Ferris Press as Ada Lovelace (a•••@example.com) until 2026-11-30T10:00:00Z (in 60 min). "
    "list_downloadables now shows their files; when the session ends, call sign_in again to e-mail a new code."
)


class Clock:
    """The wall clock of both polar-mcp's store and the fake's sessions: tests move it, nobody sleeps."""

    def __init__(self, polar: SignInPolar) -> None:
        self.polar = polar
        polar.now = START

    def __call__(self) -> float:
        return self.polar.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.polar.now += timedelta(**delta)


async def _no_sleep(_: float) -> None:
    return None


def _server(polar: SignInPolar, clock: Clock, config: Path, env: dict[str, str] | None = None, **kw: Any) -> Any:
    settings = load_settings({"POLAR_MCP_CONFIG_DIR": str(config), "POLAR_MCP_TIMEOUT": "5", **(env or {})})
    return build_server(
        settings,
        http_transport=polar.transport(),
        make_client=lambda http: PolarClient(http, timeout=settings.timeout, sleep=_no_sleep),
        stored_sign_in=kw.pop("stored_sign_in", True),
        clock=clock,
        **kw,
    )


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def polar() -> SignInPolar:
    return SignInPolar(items=[item(1, "Rust Ebook.pdf")])


@pytest.fixture
def clock(polar: SignInPolar) -> Clock:
    return Clock(polar)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
async def client(polar: SignInPolar, clock: Clock, config: Path, mode: str) -> AsyncIterator[Client]:
    async with Client(_server(polar, clock, config), mode=mode) as connected:  # type: ignore[arg-type]
        yield connected


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


async def _sign_in(client: Client, polar: SignInPolar) -> CallToolResult:
    sent = await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    assert not sent.is_error, _text(sent)
    return await client.call_tool("sign_in", {"code": polar.last_code()})


async def test_tools_list_with_sign_in_matches_the_checked_in_snapshot(client: Client) -> None:
    listed = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    assert_matches_snapshot(SNAPSHOT, tools)
    assert client.instructions is not None
    assert "sign_in" in client.instructions


async def test_sign_in_is_not_offered_when_a_token_is_configured_or_outside_stdio(
    polar: SignInPolar, clock: Clock, config: Path
) -> None:
    with_token = _server(polar, clock, config, {"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN})
    over_http = _server(polar, clock, config, stored_sign_in=False)
    for server in (with_token, over_http):
        async with Client(server) as connected:
            names = [tool.name for tool in (await connected.list_tools()).tools]
            assert names == ["list_downloadables", "get_download_link", "download_file", "sync_library"]
            assert connected.instructions is not None
            assert "sign_in" not in connected.instructions


async def test_a_first_sign_in_goes_from_the_code_request_to_a_listing(client: Client, polar: SignInPolar) -> None:
    before = await client.call_tool("list_downloadables", {})
    assert (before.is_error, _text(before)) == (True, NOT_SIGNED_IN)

    sent = await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    assert (sent.is_error, _text(sent)) == (False, CODE_SENT)
    assert sent.structured_content == {
        "status": "code_sent",
        "seller": "Ferris Press",
        "seller_slug": "ferris-press",
        "email": "a•••@example.com",
    }
    assert [(mail.to, mail.customer_id) for mail in polar.outbox] == [(ADA, None)]

    done = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert (done.is_error, _text(done)) == (False, SIGNED_IN)
    assert done.structured_content == {
        "status": "signed_in",
        "seller": "Ferris Press",
        "seller_slug": "ferris-press",
        "email": "a•••@example.com",
        "name": "Ada Lovelace",
        "expires_at": "2026-11-30T10:00:00Z",
        "expires_in_seconds": 3600,
    }

    listing = await client.call_tool("list_downloadables", {})
    assert not listing.is_error
    assert listing.structured_content is not None
    assert [entry["name"] for entry in listing.structured_content["items"]] == ["Rust Ebook.pdf"]


async def test_a_code_is_accepted_as_typed_lower_case_and_spaced(client: Client, polar: SignInPolar) -> None:
    await client.call_tool("sign_in", {"seller": "https://polar.sh/ferris-press/portal", "email": ADA})
    code = polar.last_code()
    done = await client.call_tool("sign_in", {"code": f" {code[:3].lower()} {code[3:].lower()} "})
    assert (done.is_error, _text(done)) == (False, SIGNED_IN)


async def test_an_expired_session_says_to_sign_in_again_and_one_call_sends_the_new_code(
    client: Client, polar: SignInPolar, clock: Clock
) -> None:
    await _sign_in(client, polar)
    clock.advance(hours=1)

    expired = await client.call_tool("list_downloadables", {})
    assert (expired.is_error, _text(expired)) == (
        True,
        "Error executing tool list_downloadables: The sign-in at Ferris Press for a•••@example.com has expired "
        "(sessions live one hour). Call sign_in with no arguments to e-mail a new code to a•••@example.com, then "
        "call sign_in with that code; or the user can run `polar-mcp login` in a terminal.",
    )
    listing_calls = len(polar.list_calls())

    again = await client.call_tool("sign_in", {})
    assert (again.is_error, _text(again)) == (False, CODE_SENT)
    done = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert not done.is_error
    assert done.structured_content is not None
    assert done.structured_content["expires_at"] == "2026-11-30T11:00:00Z"
    assert not (await client.call_tool("list_downloadables", {})).is_error
    # The expired session was refused locally: Polar was not asked with it.
    assert len(polar.list_calls()) == listing_calls + 1


async def test_a_session_polar_stops_accepting_early_says_to_sign_in_again(client: Client, polar: SignInPolar) -> None:
    await _sign_in(client, polar)
    polar.tokens.clear()
    rejected = await client.call_tool("get_download_link", {"name": "rust"})
    assert _text(rejected) == (
        "Error executing tool get_download_link: Polar no longer accepts the sign-in at Ferris Press for "
        "a•••@example.com. Call sign_in with no arguments to e-mail a new code to a•••@example.com, then call "
        "sign_in with that code; or the user can run `polar-mcp login` in a terminal."
    )


async def test_a_code_typed_after_a_restart_still_completes(polar: SignInPolar, clock: Clock, config: Path) -> None:
    async with Client(_server(polar, clock, config)) as first:
        await first.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    async with Client(_server(polar, clock, config)) as second:
        done = await second.call_tool("sign_in", {"code": polar.last_code()})
        assert (done.is_error, _text(done)) == (False, SIGNED_IN)
        assert not (await second.call_tool("list_downloadables", {})).is_error


async def test_the_settings_name_the_seller_and_e_mail_so_sign_in_needs_no_arguments(
    polar: SignInPolar, clock: Clock, config: Path
) -> None:
    env = {"POLAR_ORGANIZATION": "ferris-press", "POLAR_CUSTOMER_EMAIL": ADA}
    async with Client(_server(polar, clock, config, env)) as connected:
        sent = await connected.call_tool("sign_in", {})
        assert (sent.is_error, _text(sent)) == (False, CODE_SENT)


async def test_an_e_mail_that_bought_nothing_gets_the_same_answer_and_no_code(
    client: Client, polar: SignInPolar
) -> None:
    sent = await client.call_tool("sign_in", {"seller": "ferris-press", "email": "nobody@example.com"})
    assert _text(sent) == CODE_SENT.replace("a•••@example.com", "n•••@example.com")
    assert polar.outbox == []


async def test_an_e_mail_of_several_customers_lists_them_and_the_choice_sends_the_code(
    client: Client, polar: SignInPolar
) -> None:
    choice = await client.call_tool("sign_in", {"seller": "ferris-press", "email": TEAM_EMAIL})
    assert (choice.is_error, _text(choice)) == (
        True,
        "Error executing tool sign_in: g•••@example.com belongs to several customers of Ferris Press: Grace Hopper "
        f"(customer_id {TEAM_CUSTOMERS[0]['id']}); Hopper Labs (customer_id {TEAM_CUSTOMERS[1]['id']}). Ask the "
        "user which one, then call sign_in again with seller, email and customer_id.",
    )
    # A 409 sends no code, so it does not count against the local limit: the choice goes through at once.
    chosen = await client.call_tool(
        "sign_in", {"seller": "ferris-press", "email": TEAM_EMAIL, "customer_id": TEAM_CUSTOMERS[1]["id"]}
    )
    assert not chosen.is_error, _text(chosen)
    assert [(mail.to, mail.customer_id) for mail in polar.outbox] == [(TEAM_EMAIL, TEAM_CUSTOMERS[1]["id"])]
    done = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert _text(done).startswith("Signed in at Ferris Press as Grace Hopper (g•••@example.com) until ")


ERRORS = [
    (
        {"seller": "ferris-pres", "email": ADA},
        "Polar knows no seller with the slug 'ferris-pres'. Ask the user for their customer portal address "
        "(https://polar.sh/<slug>/portal) and call sign_in with seller set to its slug.",
    ),
    (
        {"seller": "ferris-press", "email": "ada@localhost"},
        "email is not an e-mail address. Ask the user for the address they bought with, and call sign_in with email.",
    ),
    (
        {"seller": "ferris-press", "email": "ada@example"},
        "email is not an e-mail address. Ask the user for the address they bought with, and call sign_in with email.",
    ),
    (
        {"email": ADA},
        "Which seller? Call sign_in with seller: the slug of the user's customer portal address "
        "(https://polar.sh/<slug>/portal).",
    ),
    (
        {"seller": "ferris-press"},
        "Which e-mail? Ask the user for the address they bought with, and call sign_in with email.",
    ),
    (
        {"seller": "not a slug!", "email": ADA},
        "'not a slug!' is not a seller's slug or id. Call sign_in with seller: the slug of the user's customer "
        "portal address (https://polar.sh/<slug>/portal).",
    ),
    (
        {"seller": "ferris-press", "email": ADA, "customer_id": "Hopper Labs"},
        "customer_id must be one of the ids sign_in listed for this e-mail.",
    ),
    (
        {"code": "ABC12"},
        "A sign-in code is 6 letters and digits, such as ABC123. Ask the user for the code in Polar's e-mail and "
        "call sign_in with code.",
    ),
    (
        {"code": "ABC123"},
        "No code was asked for here in the last 30 minutes. Call sign_in with seller and email first, then with "
        "the code Polar e-mails.",
    ),
]


@pytest.mark.parametrize(("arguments", "expected"), ERRORS)
async def test_arguments_that_cannot_work_are_refused_before_any_code_is_asked_for(
    client: Client, polar: SignInPolar, arguments: dict[str, str], expected: str
) -> None:
    result = await client.call_tool("sign_in", arguments)
    assert (result.is_error, _text(result)) == (True, f"Error executing tool sign_in: {expected}")
    assert polar.sign_in_calls() == []


async def test_an_address_polar_refuses_is_reported_masked(client: Client, polar: SignInPolar) -> None:
    polar.drift["/v1/customer-portal/customer-session/request"] = httpx2.Response(
        422, json={"detail": [{"loc": ["body", "email"], "msg": "The domain does not accept email", "type": "x"}]}
    )
    result = await client.call_tool("sign_in", {"seller": "ferris-press", "email": "ada@example.invalid"})
    assert _text(result) == (
        "Error executing tool sign_in: Polar refused a•••@example.invalid as an e-mail address. Ask the user for "
        "the address they bought with, and call sign_in with email."
    )


async def test_a_wrong_code_and_a_code_used_twice_are_refused(client: Client, polar: SignInPolar) -> None:
    wrong = (
        "Error executing tool sign_in: Polar did not accept the code: it is wrong, already used, or expired (codes "
        "live 30 minutes). Ask the user to check the code in the latest e-mail from Polar and call sign_in with "
        "code, or call sign_in with no arguments to e-mail a new one."
    )
    await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    code = polar.last_code()
    assert _text(await client.call_tool("sign_in", {"code": "ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY"})) == wrong
    assert not (await client.call_tool("sign_in", {"code": code})).is_error
    assert _text(await client.call_tool("sign_in", {"code": code})) == wrong


async def test_polar_s_rate_limit_is_never_retried_and_says_how_long_and_why(
    client: Client, polar: SignInPolar
) -> None:
    polar.rate_limited = True
    result = await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    assert _text(result) == (
        "Error executing tool sign_in: Polar's limit on sign-in requests was reached (6 a minute, 12 an hour per "
        "address); Polar now refuses this address on its whole API for about 15 minutes. Tell the user to wait; "
        "do not call sign_in again before then."
    )
    assert len(polar.sign_in_calls()) == 1


async def test_polar_mcp_allows_one_code_request_a_minute_and_five_an_hour(
    client: Client, polar: SignInPolar, clock: Clock
) -> None:
    ask = {"seller": "ferris-press", "email": ADA}
    assert not (await client.call_tool("sign_in", ask)).is_error
    clock.advance(seconds=20)
    too_soon = await client.call_tool("sign_in", ask)
    assert _text(too_soon) == (
        "Error executing tool sign_in: A code for a•••@example.com at Ferris Press was asked for less than a minute "
        "ago: "
        "polar-mcp allows one code request a minute per seller and e-mail, so that Polar never blocks this "
        "address. Wait 40 s. Meanwhile, ask the user for the code in the e-mail already sent to a•••@example.com "
        "and call sign_in with code."
    )
    for _ in range(4):
        clock.advance(seconds=61)
        assert not (await client.call_tool("sign_in", ask)).is_error
    clock.advance(seconds=61)
    hourly = await client.call_tool("sign_in", ask)
    assert _text(hourly) == (
        "Error executing tool sign_in: Codes for a•••@example.com at Ferris Press were asked for 5 times in the "
        "last hour: polar-mcp allows 5 code requests an hour per seller and e-mail, so that Polar never blocks "
        "this address. Wait 55 min. Meanwhile, ask the user for the code in the e-mail already sent to "
        "a•••@example.com and call sign_in with code."
    )
    assert len(polar.outbox) == 5
    # Another e-mail has its own allowance.
    assert not (await client.call_tool("sign_in", {"seller": "ferris-press", "email": "bo@example.com"})).is_error


async def test_the_local_limit_survives_a_restart(polar: SignInPolar, clock: Clock, config: Path) -> None:
    async with Client(_server(polar, clock, config)) as first:
        assert not (await first.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})).is_error
    async with Client(_server(polar, clock, config)) as second:
        again = await second.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
        assert again.is_error
        assert "Wait 60 s." in _text(again)
    assert len(polar.outbox) == 1


@pytest.mark.parametrize(
    ("path", "answer", "arguments", "step", "detail"),
    [
        (
            "/v1/customer-portal/customer-session/request",
            httpx2.Response(404, json={"detail": "Not Found"}),
            {"seller": "ferris-press", "email": ADA},
            "request a code",
            "NotFound",
        ),
        (
            "/v1/customer-portal/customer-session/request",
            httpx2.Response(409, json={"error": "something_new"}),
            {"seller": "ferris-press", "email": ADA},
            "request a code",
            "HTTP 409 without the list of customers",
        ),
        (
            "/v1/customer-portal/organizations/ferris-press",
            httpx2.Response(200, json={"org": {}}),
            {"seller": "ferris-press", "email": ADA},
            "find the seller",
            "an answer that is not the documented one",
        ),
    ],
)
async def test_a_changed_sign_in_endpoint_is_a_clear_error_not_a_traceback(
    client: Client,
    polar: SignInPolar,
    path: str,
    answer: httpx2.Response,
    arguments: dict[str, str],
    step: str,
    detail: str,
) -> None:
    polar.drift[path] = answer
    result = await client.call_tool("sign_in", arguments)
    assert _text(result) == (
        "Error executing tool sign_in: Polar's sign-in answered something polar-mcp does not understand "
        f"({step}: {detail}). These endpoints are private to Polar's customer portal and may have changed; update "
        "polar-mcp. Until then, a session token set in POLAR_CUSTOMER_SESSION still works."
    )


async def test_an_exchange_that_returns_no_session_token_is_a_changed_endpoint(
    client: Client, polar: SignInPolar
) -> None:
    await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    polar.drift["/v1/customer-portal/customer-session/authenticate"] = httpx2.Response(200, json={"jwt": "x"})
    result = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert "(exchange the code: an answer that is not the documented one)" in _text(result)


async def test_a_configured_session_wins_over_the_stored_sign_in_and_the_log_says_so(
    polar: SignInPolar, clock: Clock, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(_server(polar, clock, config)) as first:
        await _sign_in(first, polar)
    caplog.set_level(logging.INFO, logger="polar_mcp")
    async with Client(_server(polar, clock, config, {"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN})) as second:
        assert not (await second.call_tool("list_downloadables", {})).is_error
    assert polar.list_calls()[-1].headers["authorization"] == f"Bearer {CUSTOMER_TOKEN}"
    assert "POLAR_CUSTOMER_SESSION is set: using it, not the stored sign-in" in caplog.messages


async def test_the_stored_sign_in_is_announced_in_the_log_with_the_e_mail_masked(
    polar: SignInPolar, clock: Clock, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(_server(polar, clock, config)) as first:
        await _sign_in(first, polar)
    caplog.set_level(logging.INFO, logger="polar_mcp")
    async with Client(_server(polar, clock, config)) as second:
        assert not (await second.call_tool("list_downloadables", {})).is_error
    assert (
        "no token configured: using the stored sign-in at Ferris Press for a•••@example.com "
        "(until 2026-11-30T10:00:00Z)"
    ) in caplog.messages


async def test_the_stored_file_is_the_user_s_alone_and_one_others_can_read_is_refused(
    polar: SignInPolar, clock: Clock, config: Path
) -> None:
    async with Client(_server(polar, clock, config)) as first:
        await _sign_in(first, polar)
    path = config / "signin.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    os.chmod(path, 0o644)
    async with Client(_server(polar, clock, config)) as second:
        refused = await second.call_tool("list_downloadables", {})
    assert _text(refused) == (
        f"Error executing tool list_downloadables: {path} can be read by other users and holds sign-in sessions; "
        f"polar-mcp refuses it. Fix it with: chmod 600 {path}"
    )


async def test_neither_the_code_nor_the_token_nor_the_whole_e_mail_appears_anywhere(
    polar: SignInPolar, clock: Clock, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    async with Client(_server(polar, clock, config)) as connected:

        async def call(name: str, arguments: dict[str, str]) -> None:
            result = await connected.call_tool(name, arguments)
            shown.append(_text(result) + json.dumps(result.structured_content, ensure_ascii=False))

        await call("sign_in", {"seller": "ferris-press", "email": ADA})
        code = polar.last_code()
        await call("sign_in", {"code": "WRONG1" if code != "WRONG1" else "WRONG2"})
        await call("sign_in", {"code": code})
        await call("list_downloadables", {})
        await call("sign_in", {"code": code})  # used twice
        polar.tokens.clear()
        await call("list_downloadables", {})
    tokens = [token for token in polar.sessions if token.startswith("polar_cst_")]
    assert len(tokens) == 1
    everything = "\n".join(shown + [record.getMessage() for record in caplog.records])
    for secret in (code, tokens[0], tokens[0].removeprefix("polar_cst_")[:12]):
        assert secret not in everything
    assert ADA not in "\n".join(shown)
    assert ADA not in "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("polar"))
    assert ORG_ID not in "\n".join(shown)


async def test_polar_mcp_sends_at_most_three_codes_a_minute_so_guessing_never_blocks_the_address(
    client: Client, polar: SignInPolar, clock: Clock
) -> None:
    await client.call_tool("sign_in", {"seller": "ferris-press", "email": ADA})
    wrong = "ZZZZZZ" if polar.last_code() != "ZZZZZZ" else "YYYYYY"
    for _ in range(3):
        assert "Polar did not accept the code" in _text(await client.call_tool("sign_in", {"code": wrong}))
    clock.advance(seconds=15)
    refused = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert _text(refused) == (
        "Error executing tool sign_in: 3 codes were tried in the last minute: polar-mcp allows 3 code attempts a "
        "minute and 6 an hour, so that Polar never blocks this address. Wait 45 s. Ask the user to check the code "
        "in the latest e-mail from Polar meanwhile."
    )
    assert len([r for r in polar.sign_in_calls() if r.url.path.endswith("/authenticate")]) == 3
    clock.advance(seconds=45)
    assert not (await client.call_tool("sign_in", {"code": polar.last_code()})).is_error


async def test_a_server_without_the_stored_sign_in_as_over_http_never_uses_it(
    polar: SignInPolar, clock: Clock, config: Path
) -> None:
    async with Client(_server(polar, clock, config)) as stdio:
        await _sign_in(stdio, polar)
    calls = len(polar.list_calls())
    async with Client(_server(polar, clock, config, stored_sign_in=False)) as over_http:
        refused = await over_http.call_tool("list_downloadables", {})
    assert refused.is_error
    assert _text(refused).startswith("Error executing tool list_downloadables: No Polar session is configured.")
    assert len(polar.list_calls()) == calls


async def test_a_seller_given_by_organization_id_is_asked_for_without_a_lookup(
    client: Client, polar: SignInPolar
) -> None:
    sent = await client.call_tool("sign_in", {"seller": ORG_ID.upper(), "email": ADA})
    assert _text(sent).startswith(f"If a•••@example.com bought from organization {ORG_ID}, a code is on its way")
    assert [r.url.path for r in polar.requests] == ["/v1/customer-portal/customer-session/request"]
    done = await client.call_tool("sign_in", {"code": polar.last_code()})
    assert not done.is_error, _text(done)
