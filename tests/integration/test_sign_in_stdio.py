"""Signing in inside the conversation, as a host runs it: polar-mcp over stdio, with no token configured,
against the double over loopback. The code is read from the double's outbox (its admin route), as the
person would read their e-mail; an hour passes through the double's admin clock."""

from __future__ import annotations

import json
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_ORGANIZATION_SLUG,
    DEMO_SHARED_EMAIL,
    DEMO_TEAM_ORGANIZATION_SLUG,
    demo_store,
)

pytestmark = pytest.mark.anyio

CODE_SENT = (
    "If a•••@example.com bought from Ferris Press, a code is on its way (Polar does not say whether it did). Ask "
    "the user for the 6-character code Polar sent to a•••@example.com, then call sign_in with code. The code is "
    "valid 30 minutes."
)
# The second sign-in is judged by polar-mcp's clock while the double's runs an hour ahead: 2 hours left.
SIGNED_IN = re.compile(
    r"Signed in at Ferris Press as Ada Lovelace \(a•••@example\.com\) until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    r"\(in (59|60|119|120) min\)\. list_downloadables now shows their files; when the session ends, call sign_in "
    r"again to e-mail a new code\."
)
REJECTED = (
    "Error executing tool list_downloadables: Polar no longer accepts the sign-in at Ferris Press for "
    "a•••@example.com. Call sign_in with no arguments to e-mail a new code to a•••@example.com, then call sign_in "
    "with that code; or the user can run `polar-mcp login` in a terminal."
)


@pytest.fixture
def double() -> Iterator[RunningDouble]:
    """A double of its own: its sign-in rate limit counts per address, and this test spends it."""
    with start_double(demo_store()) as running:
        yield running


def _outbox(double: RunningDouble) -> list[dict[str, Any]]:
    with httpx2.Client(base_url=double.base_url) as admin:
        return admin.get("/__double__/outbox").json()["messages"]


def _code_for(double: RunningDouble, to: str) -> str:
    return next(m["code"] for m in reversed(_outbox(double)) if m["to"].casefold() == to.casefold())


def _params(double: RunningDouble, config: Path, downloads: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "polar_mcp"],
        env={
            "POLAR_API_URL": double.base_url,
            "POLAR_MCP_CONFIG_DIR": str(config),
            "POLAR_MCP_DOWNLOAD_DIR": str(downloads),
            "POLAR_MCP_LOG_LEVEL": "DEBUG",
        },
    )


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


def _an_hour_passes_for_polar_mcp(config: Path) -> None:
    """polar-mcp's own record of code requests ages as the double's clock moves (same hour)."""
    path = config / "signin.json"
    state = json.loads(path.read_text())
    for key in ("requests", "attempts"):
        state[key] = [{**entry, "at": entry["at"] - 3601} for entry in state.get(key, [])]
    path.write_text(json.dumps(state))


async def test_a_buyer_signs_in_lists_downloads_and_signs_in_again_an_hour_later_in_one_session(
    double: RunningDouble, tmp_path: Path
) -> None:
    config, downloads = tmp_path / "config", tmp_path / "downloads"
    results: list[str] = []
    tokens: list[str] = []

    async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
        result = await client.call_tool(name, arguments)
        results.append(_text(result) + json.dumps(result.structured_content, ensure_ascii=False))
        return result

    def stored_token() -> str:
        (session,) = json.loads((config / "signin.json").read_text())["sessions"]
        return session["token"]

    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(_params(double, config, downloads), errlog=errlog)) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names == ["list_downloadables", "get_download_link", "download_file", "sync_library", "sign_in"]
            assert (await call(client, "list_downloadables", {})).is_error

            sent = await call(client, "sign_in", {"seller": DEMO_ORGANIZATION_SLUG, "email": DEMO_CUSTOMER_EMAIL})
            assert (sent.is_error, _text(sent)) == (False, CODE_SENT)
            done = await call(client, "sign_in", {"code": _code_for(double, DEMO_CUSTOMER_EMAIL)})
            assert SIGNED_IN.fullmatch(_text(done)), _text(done)
            tokens.append(stored_token())
            assert stat.S_IMODE((config / "signin.json").stat().st_mode) == 0o600

            listing = await call(client, "list_downloadables", {"query": "rust"})
            assert listing.structured_content is not None
            assert {i["name"] for i in listing.structured_content["items"]} == {
                "rust-in-practice.pdf",
                "rust-in-practice.epub",
                "errata.txt",
            }
            saved = await call(client, "download_file", {"name": "errata.txt"})
            assert not saved.is_error, _text(saved)
            assert (downloads / "errata.txt").exists()

            with httpx2.Client(base_url=double.base_url) as admin:
                admin.post("/__double__/clock", json={"advance": 3601}).raise_for_status()
            _an_hour_passes_for_polar_mcp(config)
            expired = await call(client, "list_downloadables", {})
            assert (expired.is_error, _text(expired)) == (True, REJECTED)

            again = await call(client, "sign_in", {})
            assert (again.is_error, _text(again)) == (False, CODE_SENT)
            renewed = await call(client, "sign_in", {"code": _code_for(double, DEMO_CUSTOMER_EMAIL)})
            assert SIGNED_IN.fullmatch(_text(renewed)), _text(renewed)
            tokens.append(stored_token())
            assert not (await call(client, "list_downloadables", {})).is_error
        errlog.seek(0)
        stderr = errlog.read()

    codes = [m["code"] for m in _outbox(double)]
    assert len(codes) == 2
    assert len(set(tokens)) == 2
    assert "DEBUG" in stderr
    everything = "\n".join([*results, stderr])
    for secret in [*codes, *tokens]:
        assert secret not in everything
    assert DEMO_CUSTOMER_EMAIL not in everything


async def test_an_e_mail_of_several_customers_chooses_one_then_signs_in(double: RunningDouble, tmp_path: Path) -> None:
    async with Client(stdio_client(_params(double, tmp_path / "config", tmp_path / "dl"))) as client:
        choice = await client.call_tool("sign_in", {"seller": DEMO_TEAM_ORGANIZATION_SLUG, "email": DEMO_SHARED_EMAIL})
        assert choice.is_error
        ids = re.findall(r"customer_id ([0-9a-f-]{36})", _text(choice))
        assert _text(choice) == (
            "Error executing tool sign_in: a•••@acme.example belongs to several customers of Crab Collective: "
            f"Acme Robotics (customer_id {ids[0]}); Alice Chen (customer_id {ids[1]}). Ask the user which one, then "
            "call sign_in again with seller, email and customer_id."
        )
        chosen = await client.call_tool(
            "sign_in", {"seller": DEMO_TEAM_ORGANIZATION_SLUG, "email": DEMO_SHARED_EMAIL, "customer_id": ids[0]}
        )
        assert not chosen.is_error, _text(chosen)
        done = await client.call_tool("sign_in", {"code": _code_for(double, DEMO_SHARED_EMAIL)})
        assert _text(done).startswith("Signed in at Crab Collective as Alice Chen (a•••@acme.example) until ")
        listing = await client.call_tool("list_downloadables", {})
        assert listing.structured_content is not None
        assert {i["name"] for i in listing.structured_content["items"]} >= {"brand-style-guide.pdf"}


async def test_polar_s_block_of_the_address_is_reported_once_and_never_retried(
    double: RunningDouble, tmp_path: Path
) -> None:
    for _ in range(7):
        double.store.hit_signin_limit("address:127.0.0.1")
    before = len(double.store.requests)
    async with Client(stdio_client(_params(double, tmp_path / "config", tmp_path / "dl"))) as client:
        refused = await client.call_tool("sign_in", {"seller": DEMO_ORGANIZATION_SLUG, "email": DEMO_CUSTOMER_EMAIL})
    assert _text(refused) == (
        "Error executing tool sign_in: Polar's limit on sign-in requests was reached (6 a minute, 12 an hour per "
        "address); Polar now refuses this address on its whole API for about 15 minutes. Tell the user to wait; do "
        "not call sign_in again before then."
    )
    sent = [r for r in double.store.requests[before:] if "customer-session" in r.path or "organizations" in r.path]
    assert len(sent) == 1, sent
