"""The sign-in page as a person (and an attacker) meets it: HTML, cookies, CSRF, codes, limits, answers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from polar_mcp.double.store import Store
from polar_mcp.hosted.service import Limits
from tests.helpers.hosted import (
    ADA_EMAIL,
    NO_MEMBERS_ORG_TOKEN,
    SELLER_NAME,
    FakeClock,
    Mailbox,
    RunningHosted,
    csrf_of,
    exchange,
    hosted_server,
    list_files,
    register,
    start,
)

pytestmark = pytest.mark.anyio

STRANGER = "stranger@example.com"


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


async def _open(http: httpx2.AsyncClient, server: RunningHosted, **metadata: str) -> tuple[str, str, httpx2.Response]:
    """Register an app, start its authorization; (client id, page URL, the first page)."""
    client_id = (await register(http, server.base_url, **metadata))["client_id"]
    started = await start(http, server.base_url, client_id)
    page_url = started.headers["location"]
    return client_id, page_url, await http.get(page_url)


async def _post(http: httpx2.AsyncClient, url: str, page: httpx2.Response, **form: str) -> httpx2.Response:
    return await http.post(url, data={"csrf": csrf_of(page), **form})


def _text(page: httpx2.Response) -> str:
    """The words on a page, without tags: what a person reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text.split("</style>")[-1])).strip()


async def test_the_page_is_plain_html_that_no_site_can_frame_with_a_safe_cookie(
    http: httpx2.AsyncClient, server: RunningHosted
) -> None:
    _, _, page = await _open(http, server)

    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert "<script" not in page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert '<label for="email">E-mail</label>' in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie, "plain http on loopback only"
    assert _text(page) == (
        f"{SELLER_NAME} Sign in to your {SELLER_NAME} purchases Enter the e-mail you used to buy from "
        f"{SELLER_NAME}. We will send you a code. E-mail Send me a code"
    )


async def test_the_browser_cookie_is_secure_when_the_public_url_is_https(
    http: httpx2.AsyncClient, env: dict[str, str], clock: FakeClock
) -> None:
    env["POLAR_MCP_PUBLIC_URL"] = env["POLAR_MCP_PUBLIC_URL"].replace("http://", "https://")
    with hosted_server(env, clock) as server:
        plain = server.base_url.replace("https://", "http://")
        client_id = (await register(http, plain))["client_id"]
        started = await start(http, plain, client_id)
        page = await http.get(started.headers["location"].replace("https://", "http://"))

    assert "secure" in page.headers["set-cookie"].lower()


async def test_a_form_post_without_the_csrf_token_is_refused_and_sends_nothing(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    _, page_url, _ = await _open(http, server)
    _, _, other_page = await _open(http, server)
    before = len(mailbox.messages)

    missing = await http.post(page_url, data={"action": "email", "email": ADA_EMAIL})
    foreign = await _post(http, page_url, other_page, action="email", email=ADA_EMAIL)

    assert missing.status_code == 400
    assert foreign.status_code == 400
    assert "did not come from this page" in missing.text
    assert len(mailbox.messages) == before


async def test_the_answers_are_the_same_for_a_customer_and_a_stranger(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    answers: list[str] = []
    for email in (ADA_EMAIL, STRANGER):
        _, page_url, page = await _open(http, server)
        answer = await _post(http, page_url, page, action="email", email=email)
        assert answer.status_code == 200
        answers.append(_text(answer).replace(email, "EMAIL"))

    assert answers[0] == answers[1]
    assert mailbox.to(STRANGER), "a code goes to any address that asks"


async def test_a_code_is_six_characters_for_ten_minutes_and_five_tries(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, clock: FakeClock
) -> None:
    _, page_url, page = await _open(http, server)
    page = await _post(http, page_url, page, action="email", email=ADA_EMAIL)
    code = mailbox.code_for(ADA_EMAIL)
    assert re.fullmatch(r"[A-Z2-9]{6}", code)
    wrong = "22222" + ("3" if code != "222223" else "4")
    tries = []
    for _ in range(5):
        page = await _post(http, page_url, page, action="code", code=wrong)
        tries.append(re.search(r'role="alert">([^<]+)<', page.text).group(1))  # type: ignore[union-attr]
    locked = await _post(http, page_url, page, action="code", code=code)

    assert tries == [
        "That code is not right. 4 tries left.",
        "That code is not right. 3 tries left.",
        "That code is not right. 2 tries left.",
        "That code is not right. 1 tries left.",
        "That code is not right. Ask for a new code.",
    ]
    assert "Too many wrong codes. Ask for a new code." in locked.text

    fresh = await _post(http, page_url, locked, action="resend")
    clock.advance(601)
    expired = await _post(http, page_url, fresh, action="code", code=mailbox.code_for(ADA_EMAIL))
    assert "This code has expired. Ask for a new code." in expired.text


async def test_a_code_works_once_and_only_in_the_sign_in_it_was_sent_for(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, store: Store
) -> None:
    _, first_url, first = await _open(http, server)
    first = await _post(http, first_url, first, action="email", email=ADA_EMAIL)
    code = mailbox.code_for(ADA_EMAIL)
    _, second_url, second = await _open(http, server)
    second = await _post(http, second_url, second, action="email", email=ADA_EMAIL)

    elsewhere = await _post(http, second_url, second, action="code", code=code)
    accepted = await _post(http, first_url, first, action="code", code=code.lower())
    lookups = store.request_counts().get("/v1/customers/", 0)
    again = await _post(http, first_url, accepted, action="code", code=code)

    assert "That code is not right." in elsewhere.text
    assert "Allow this app?" in accepted.text
    assert "Allow this app?" in again.text
    assert store.request_counts().get("/v1/customers/", 0) == lookups, "a spent code leads nowhere"


async def test_an_email_with_no_purchases_gets_a_clear_page_after_the_code(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    _, page_url, page = await _open(http, server)
    page = await _post(http, page_url, page, action="email", email=STRANGER)
    answer = await _post(http, page_url, page, action="code", code=mailbox.code_for(STRANGER))

    assert _text(answer) == (
        f"{SELLER_NAME} No purchases from {SELLER_NAME} for this e-mail There are no purchases from "
        f"{SELLER_NAME} for {STRANGER}. A member of a team signs in with the team's e-mail, or asks its owner. "
        "If you bought with another e-mail, start again from your assistant and use that one."
    )


async def test_several_customers_for_one_email_become_a_choice(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, store: Store
) -> None:
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    first = store.add_customer(press, "twins@example.com", "Twin Studio")
    # Several customer records can share one e-mail (common where members are on).
    second = replace(first, id=str(uuid.uuid4()), name="Twin Personal")
    store.customers[second.id] = second
    client_id, page_url, page = await _open(http, server)
    page = await _post(http, page_url, page, action="email", email="twins@example.com")
    choice = await _post(http, page_url, page, action="code", code=mailbox.code_for("twins@example.com"))
    consent = await _post(http, page_url, choice, action="choose", customer=second.id)
    done = await _post(http, page_url, consent, action="allow")
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    tokens = (await exchange(http, server.base_url, client_id, code)).json()

    assert "Twin Studio" in choice.text
    assert "Twin Personal" in choice.text
    row = await server.gate.hosted.store.token(server.gate.hosted.keys.digest("token", tokens["access_token"]))
    assert row is not None
    assert row.family.customer_id == second.id


async def test_the_consent_step_names_the_app_as_it_calls_itself_and_where_it_returns(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    _, page_url, page = await _open(http, server, client_name="<b>Files</b> Helper")
    page = await _post(http, page_url, page, action="email", email=ADA_EMAIL)
    consent = await _post(http, page_url, page, action="code", code=mailbox.code_for(ADA_EMAIL))

    assert _text(consent) == (
        f"{SELLER_NAME} Allow this app? &lt;b&gt;Files&lt;/b&gt; Helper (the name the app gives itself) It will "
        "send you back "
        f"to 127.0.0.1 . It asks to list and download your purchases from {SELLER_NAME}. It cannot buy, change or "
        "see anything else. You can end its access by signing out of it. Allow Deny"
    )
    assert "form-action 'self' http://127.0.0.1:9" in consent.headers["content-security-policy"]


async def test_denying_sends_the_app_access_denied(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox
) -> None:
    _, page_url, page = await _open(http, server)
    page = await _post(http, page_url, page, action="email", email=ADA_EMAIL)
    consent = await _post(http, page_url, page, action="code", code=mailbox.code_for(ADA_EMAIL))
    denied = await _post(http, page_url, consent, action="deny")

    assert denied.status_code == 303
    assert parse_qs(urlsplit(denied.headers["location"]).query) == {
        "error": ["access_denied"],
        "state": ["the-apps-state"],
        "iss": [server.base_url],
    }


async def test_a_sign_in_started_in_one_browser_cannot_be_finished_in_another(
    http: httpx2.AsyncClient, server: RunningHosted
) -> None:
    _, page_url, _ = await _open(http, server)
    async with httpx2.AsyncClient() as other_browser:
        answer = await other_browser.get(page_url)

    assert answer.status_code == 403
    assert "started in another browser" in answer.text


async def test_codes_are_rate_limited_per_email(
    http: httpx2.AsyncClient, env: dict[str, str], clock: FakeClock, mailbox: Mailbox
) -> None:
    limits = Limits(codes_per_email=(2, 3600.0))
    with hosted_server(env, clock, limits) as server:
        before = len(mailbox.to("limited@example.com"))
        answers = []
        for email in ("limited@example.com", "LIMITED@example.com", "limited@example.com"):
            _, page_url, page = await _open(http, server)
            answers.append(await _post(http, page_url, page, action="email", email=email))

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert "Too many codes were asked for." in answers[2].text
    assert len(mailbox.to("limited@example.com")) + len(mailbox.to("LIMITED@example.com")) == before + 2


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [("127.0.0.1", [200, 200, 429, 200]), ("", [200, 200, 429, 429])],
)
async def test_codes_are_rate_limited_per_client_address_believing_only_trusted_proxies(
    http: httpx2.AsyncClient, env: dict[str, str], clock: FakeClock, trusted: str, expected: list[int]
) -> None:
    env["POLAR_MCP_TRUSTED_PROXIES"] = trusted
    with hosted_server(env, clock, Limits(codes_per_address=(2, 900.0))) as server:
        statuses = []
        for index, forwarded in enumerate(["203.0.113.5", "203.0.113.5", "203.0.113.5", "203.0.113.6"]):
            _, page_url, page = await _open(http, server)
            answer = await http.post(
                page_url,
                data={"csrf": csrf_of(page), "action": "email", "email": f"person{index}@example.com"},
                headers={"X-Forwarded-For": forwarded},
            )
            statuses.append(answer.status_code)

    assert statuses == expected


async def test_healthz_checks_the_database(http: httpx2.AsyncClient, server: RunningHosted) -> None:
    answer = await http.get(server.base_url + "/healthz")

    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def _team(store: Store, email: str) -> tuple[str, str]:
    """A team customer of the seller whose owner signs in with `email`; (customer id, owner member id)."""
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    team = store.add_customer(press, email, "Lab Team", type="team")
    owner = store.add_member(team, email, "Lab Owner", role="owner")
    store.add_member(team, "helper@" + email.split("@")[1], "Lab Helper")
    return team.id, owner.id


async def test_a_team_owner_signs_in_as_the_teams_owner_member(
    http: httpx2.AsyncClient, server: RunningHosted, mailbox: Mailbox, store: Store
) -> None:
    team_id, owner_id = _team(store, "owner@lab.example")
    client_id, page_url, page = await _open(http, server)
    page = await _post(http, page_url, page, action="email", email="owner@lab.example")
    consent = await _post(http, page_url, page, action="code", code=mailbox.code_for("owner@lab.example"))
    done = await _post(http, page_url, consent, action="allow")
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    tokens = (await exchange(http, server.base_url, client_id, code)).json()
    listed = await list_files(server.mcp_url, tokens["access_token"])

    assert "Allow this app?" in consent.text
    row = await server.gate.hosted.store.token(server.gate.hosted.keys.digest("token", tokens["access_token"]))
    assert row is not None
    assert (row.family.customer_id, row.family.member_id) == (team_id, owner_id)
    assert not listed.is_error, listed.content


async def test_a_team_without_members_read_gets_a_clear_page(
    http: httpx2.AsyncClient, env: dict[str, str], clock: FakeClock, mailbox: Mailbox, store: Store
) -> None:
    _team(store, "owner@studio.example")
    with hosted_server({**env, "POLAR_ACCESS_TOKEN": NO_MEMBERS_ORG_TOKEN}, clock) as server:
        _, page_url, page = await _open(http, server)
        page = await _post(http, page_url, page, action="email", email="owner@studio.example")
        answer = await _post(http, page_url, page, action="code", code=mailbox.code_for("owner@studio.example"))

    assert _text(answer) == (
        f"{SELLER_NAME} Team purchases This e-mail's purchases from {SELLER_NAME} belong to a team, which this "
        f"connector cannot open yet. Ask {SELLER_NAME} about access."
    )
