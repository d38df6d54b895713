"""Two replicas on one PostgreSQL serve one buyer interchangeably: two `polar-mcp --auth signin`
processes, each on its own port under one public address (as behind a load balancer), sharing the
database and the secret key; the second runs two workers. Polar is the double and the mail server is
real, both in this process."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from polar_mcp.hosted.service import Limits
from tests.helpers.cli import subprocess_env
from tests.helpers.hosted import (
    ADA_EMAIL,
    Browser,
    Mailbox,
    MemoryStorage,
    csrf_of,
    exchange,
    free_port,
    hosted_env,
    list_files,
    oauth_for,
    polar_server,
    refresh,
    register,
    smtp_server,
    start,
    tools_list,
)
from tests.helpers.postgres import PostgresServer, database_name
from tests.helpers.replicas import Replica, replicas

pytestmark = pytest.mark.anyio

REGISTRATIONS_PER_WINDOW = Limits().registrations_per_address[0]
"""The servers run with the default limits."""


@dataclass(frozen=True)
class Pair:
    first: Replica
    second: Replica
    mailbox: Mailbox
    polar: Store
    env: dict[str, str]


@pytest.fixture(scope="module")
def pair(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    logs = tmp_path_factory.mktemp("replicas")
    database_url = postgres.create_database(database_name(__name__ + "::pair"))
    polar = demo_store()
    ports = free_port(), free_port()
    public_url = f"http://127.0.0.1:{ports[0]}"
    with smtp_server() as (smtp_url, mailbox), polar_server(polar) as polar_url:
        env = hosted_env(
            polar_url,
            smtp_url,
            "unused",
            public_url,
            POLAR_MCP_DATABASE_URL=database_url,
            # The second replica is reached at its own port too; a load balancer would keep the Host.
            POLAR_MCP_ALLOWED_HOSTS=",".join(f"127.0.0.1:{port}" for port in ports),
            # Each test is a client address of its own (X-Forwarded-For), so counters start at zero.
            POLAR_MCP_TRUSTED_PROXIES="127.0.0.1",
        )
        # The second replica is itself two worker processes on its port.
        args = ("--transport", "http", "--auth", "signin")
        with replicas(env, ports, logs, *args, workers=(1, 2)) as (first, second):
            yield Pair(first, second, mailbox, polar, env)


@dataclass
class AcrossReplicas(Browser):
    """A person whose requests a load balancer spreads: the e-mail step reaches the first replica
    (which sends the code), the code and the consent reach the second."""

    first: str = ""
    second: str = ""

    async def open(self, authorization_url: str) -> None:
        started = await self.http.get(authorization_url)
        assert started.status_code == 302, started.text
        on_first = started.headers["location"]
        on_second = on_first.replace(self.first, self.second, 1)
        page = await self.get(on_first)
        page = await self.post(on_first, page, action="email", email=self.email)
        page = await self.post(on_second, page, action="code", code=self.mailbox.code_for(self.email))
        done = await self.post(on_second, page, action="allow")
        assert done.status_code == 303, done.text
        self.landed = done.headers["location"]


def _names(result: Any) -> list[str]:
    assert not result.is_error, result.content
    return sorted(item["name"] for item in result.structured_content["items"])


def _ada_files(polar: Store) -> list[str]:
    ada = polar.customer_by_external_id("ada-1815")
    return sorted(row.file.name for row in polar.downloadables(polar.open_session(ada.id, None, 60, None)))


def _forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_a_code_sent_by_one_replica_is_accepted_by_the_other_and_tokens_work_on_both(pair: Pair) -> None:
    storage = MemoryStorage()
    async with httpx2.AsyncClient(headers=_forwarded("198.51.100.1"), timeout=30) as browser_http:
        person = AcrossReplicas(
            browser_http, pair.mailbox, ADA_EMAIL, first=pair.first.base_url, second=pair.second.base_url
        )
        oauth = oauth_for(pair.first.mcp_url, person, storage)
        async with (
            httpx2.AsyncClient(auth=oauth, timeout=30) as http,
            Client(streamable_http_client(pair.first.mcp_url, http_client=http)) as client,
        ):
            on_first = _names(await client.call_tool("list_downloadables", {"limit": 100}))
    assert storage.tokens is not None

    on_second = _names(await list_files(pair.second.mcp_url, storage.tokens.access_token))

    assert [page.request.url.port for page in person.pages] == [
        int(pair.first.base_url.rsplit(":", 1)[1]),
        int(pair.first.base_url.rsplit(":", 1)[1]),
        int(pair.second.base_url.rsplit(":", 1)[1]),
        int(pair.second.base_url.rsplit(":", 1)[1]),
    ]
    assert on_first == on_second == _ada_files(pair.polar)


async def test_a_refresh_token_reused_on_one_replica_ends_the_sign_in_on_both(pair: Pair) -> None:
    async with httpx2.AsyncClient(headers=_forwarded("198.51.100.2"), timeout=30) as http:
        client_id = (await register(http, pair.first.base_url))["client_id"]
        code = await _sign_in_across(http, pair, client_id)
        issued = await exchange(http, pair.second.base_url, client_id, code)
        assert issued.status_code == 200, issued.text
        first_tokens = issued.json()
        rotated = await refresh(http, pair.first.base_url, client_id, first_tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        new_access = rotated.json()["access_token"]
        works_before = _names(await list_files(pair.second.mcp_url, new_access))

        reused = await refresh(http, pair.second.base_url, client_id, first_tokens["refresh_token"])
        refused = [await _status(http, replica.mcp_url, new_access) for replica in (pair.first, pair.second)]
        successor = await refresh(http, pair.first.base_url, client_id, rotated.json()["refresh_token"])

    assert works_before == _ada_files(pair.polar)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert refused == [401, 401]
    assert (successor.status_code, successor.json()["error"]) == (400, "invalid_grant")


async def test_the_registration_limit_counts_requests_on_both_replicas_together(pair: Pair) -> None:
    answers: list[int] = []
    async with httpx2.AsyncClient(headers=_forwarded("198.51.100.3"), timeout=30) as http:
        for index in range(REGISTRATIONS_PER_WINDOW + 2):
            target = (pair.first, pair.second)[index % 2]
            answer = await http.post(
                target.base_url + "/register",
                json={"client_name": "Busy", "redirect_uris": ["http://127.0.0.1:9/callback"]},
            )
            answers.append(answer.status_code)

    assert answers == [201] * REGISTRATIONS_PER_WINDOW + [429, 429]


async def test_an_operator_revoking_a_buyer_ends_their_access_on_every_replica_at_once(pair: Pair) -> None:
    async with httpx2.AsyncClient(headers=_forwarded("198.51.100.4"), timeout=30) as http:
        client_id = (await register(http, pair.second.base_url))["client_id"]
        code = await _sign_in_across(http, pair, client_id)
        tokens = (await exchange(http, pair.first.base_url, client_id, code)).json()
        before = [await _status(http, replica.mcp_url, tokens["access_token"]) for replica in (pair.first, pair.second)]

        revoked = await anyio.run_process(
            [sys.executable, "-m", "polar_mcp", "hosted", "revoke", ADA_EMAIL], env=subprocess_env(**pair.env)
        )
        after = [await _status(http, replica.mcp_url, tokens["access_token"]) for replica in (pair.first, pair.second)]
        refreshed = await refresh(http, pair.second.base_url, client_id, tokens["refresh_token"])

    ada = pair.polar.customer_by_external_id("ada-1815")
    assert before == [200, 200]
    assert re.fullmatch(rf"customer {ada.id}: \d+ sign-ins? revoked\n", revoked.stdout.decode())
    assert after == [401, 401]
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")


async def _sign_in_across(http: httpx2.AsyncClient, pair: Pair, client_id: str) -> str:
    """The page's steps spread over both replicas, by hand; the authorization code."""
    started = await start(http, pair.first.base_url, client_id)
    assert started.status_code == 302, started.text
    on_first = started.headers["location"]
    on_second = on_first.replace(pair.first.base_url, pair.second.base_url, 1)
    page = await http.get(on_second)
    page = await http.post(on_second, data={"csrf": csrf_of(page), "action": "email", "email": ADA_EMAIL})
    code = pair.mailbox.code_for(ADA_EMAIL)
    page = await http.post(on_first, data={"csrf": csrf_of(page), "action": "code", "code": code})
    done = await http.post(on_second, data={"csrf": csrf_of(page), "action": "allow"})
    assert done.status_code == 303, done.text
    return httpx2.URL(done.headers["location"]).params["code"]


async def _status(http: httpx2.AsyncClient, mcp_url: str, access_token: str) -> int:
    return (await tools_list(http, mcp_url, access_token)).status_code


def test_the_second_replica_serves_from_two_worker_processes(pair: Pair) -> None:
    started = re.findall(r"Started server process \[(\d+)\]", pair.second.log.read_text())

    assert len(set(started)) == 2, pair.second.log.read_text()
