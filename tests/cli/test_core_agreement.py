"""The CLI and the MCP tools give the same answers: each question is answered once, by the core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polar_mcp.cli import build_parser
from polar_mcp.config import Settings
from polar_mcp.server import build_server
from tests.helpers.cli import Cli, table
from tests.helpers.loopback import serve_asgi
from tests.helpers.polar import CUSTOMER_TOKEN, FAR_FUTURE, FakePolar, downloadable

EBOOK_FILES = ("rust-in-practice.pdf", "rust-in-practice.epub", "errata.txt")


@pytest.mark.usefixtures("token")
def test_a_search_of_the_whole_catalog_matches_benefit_names_as_a_paged_search_does(cli: Cli) -> None:
    paged, whole = cli("list", "--query", "ebook"), cli("list", "--all", "--query", "ebook")
    assert (paged.code, whole.code) == (0, 0)
    assert paged.out.splitlines() == whole.out.splitlines() == [*table(*EBOOK_FILES), "page 1 of 1 · 3 files"]


@pytest.mark.usefixtures("token")
def test_the_whole_catalog_as_json_carries_benefit_names_and_sellers_as_a_page_does(cli: Cli) -> None:
    page = json.loads(cli("list", "--json", "--limit", "100").out)["items"]
    whole = json.loads(cli("list", "--all", "--json").out)["items"]
    assert whole == page
    assert {(row.get("benefit"), row.get("seller")) for row in whole} >= {("Rust Ebook Bundle", "Ferris Press")}


def _over_loopback(polar: FakePolar) -> Starlette:
    """The MockTransport fake, answering real HTTP: the CLI runs as users run it, against a URL."""

    async def answer(request: Request) -> Response:
        sent = httpx2.Request(
            request.method, str(request.url), headers=request.headers.raw, content=await request.body()
        )
        answered = await polar(sent)
        return Response(answered.content, answered.status_code, headers=dict(answered.headers))

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


def broken_link_items() -> list[dict[str, Any]]:
    """Two files that came with no link and with a non-HTTP one."""
    empty = downloadable(1, "empty-link.pdf", expires_at=FAR_FUTURE)
    ftp = downloadable(2, "ftp-link.pdf", expires_at=FAR_FUTURE)
    empty["file"]["download"]["url"] = ""
    ftp["file"]["download"]["url"] = "ftp://files.example/x.pdf"
    return [empty, ftp]


@pytest.fixture
def broken_links(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePolar]:
    """A catalog whose two files came with no link and with a non-HTTP one."""
    polar = FakePolar(valid_tokens={CUSTOMER_TOKEN}, items=broken_link_items())
    with serve_asgi(_over_loopback(polar)) as base:
        monkeypatch.setenv("POLAR_API_URL", base)
        monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CUSTOMER_TOKEN)
        yield polar


NO_LINK = "Polar sent no usable link for this file; try again in a minute."


@pytest.mark.usefixtures("broken_links")
@pytest.mark.parametrize("name", ["empty-link.pdf", "ftp-link.pdf"])
def test_link_refuses_a_file_polar_sent_no_usable_link_for_as_the_tool_does(cli: Cli, name: str) -> None:
    run = cli("link", name)
    assert (run.code, run.out, run.messages) == (5, "", f"polar-mcp: {NO_LINK}\n")


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["empty-link.pdf", "ftp-link.pdf"])
async def test_the_tool_refuses_the_same_files_in_the_same_words(name: str) -> None:
    polar = FakePolar(valid_tokens={CUSTOMER_TOKEN}, items=broken_link_items())
    settings = Settings(customer_session=CUSTOMER_TOKEN)  # pyright: ignore[reportArgumentType]
    async with Client(build_server(settings, http_transport=polar.transport())) as client:
        result = await client.call_tool("get_download_link", {"name": name})
    assert result.is_error
    assert result.content[0].text == f"Error executing tool get_download_link: {NO_LINK}"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_query_help_of_the_cli_is_the_tool_argument_description() -> None:
    async with Client(build_server(Settings())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    described = tools["list_downloadables"].input_schema["properties"]["query"]["description"]
    listing = build_parser()._subparsers._group_actions[0].choices["list"]  # type: ignore[union-attr]
    helps = {action.dest: action.help for action in listing._actions}  # type: ignore[union-attr]
    assert helps["query"] == described == "Part of a file or benefit name; searches every page."


@pytest.fixture
def wide_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePolar]:
    """A catalog whose names mix wide (CJK) characters, combining marks and plain ASCII."""
    names = ["日本語の本.pdf", "cafe\u0301-menu.pdf", "plain.pdf", "長" * 40 + ".pdf"]
    polar = FakePolar(items=[downloadable(n, name, expires_at=FAR_FUTURE) for n, name in enumerate(names, start=1)])
    with serve_asgi(_over_loopback(polar)) as base:
        monkeypatch.setenv("POLAR_API_URL", base)
        monkeypatch.setenv("POLAR_CUSTOMER_SESSION", CUSTOMER_TOKEN)
        yield polar


@pytest.mark.usefixtures("wide_names")
def test_table_columns_line_up_on_a_terminal_with_wide_characters(cli: Cli) -> None:
    run = cli("list")
    rest = "  1.2 MB  application/pdf  00000000-0000-4000-8000-00000000000"
    assert run.out.splitlines() == [
        "NAME" + " " * 56 + "  SIZE    TYPE             ID",
        "日本語の本.pdf" + " " * 46 + rest + "1",  # five wide characters take ten columns
        "cafe\u0301-menu.pdf" + " " * 47 + rest + "2",  # a combining accent takes none
        "plain.pdf" + " " * 51 + rest + "3",
        "長" * 29 + "…" + " " + rest + "4",  # cut to 59 columns: a 30th wide character would need 61
        "page 1 of 1 · 4 files",
    ]
