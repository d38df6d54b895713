"""The MCP tools as a host sees them: through the in-memory client, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.polar.client import PolarClient
from polar_mcp.server import build_server
from tests.helpers.polar import BENEFIT_A, BENEFIT_B, CUSTOMER_TOKEN, FAR_FUTURE, FakePolar, downloadable
from tests.helpers.snapshot import assert_matches_snapshot

SNAPSHOT = Path(__file__).parent / "tools_list.snapshot.json"

pytestmark = pytest.mark.anyio


def item(number: int, name: str, **overrides: Any) -> dict[str, Any]:
    """A file with a checksum, whose link outlives the run: the tools run on the real clock."""
    return downloadable(number, name, expires_at=FAR_FUTURE, checksum_sha256_hex=f"{number:02x}" * 32, **overrides)


async def _no_sleep(_: float) -> None:
    return None


def _server(polar: FakePolar, env: dict[str, str] | None = None) -> Any:
    settings = load_settings(
        env if env is not None else {"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN, "POLAR_MCP_TIMEOUT": "5"}
    )
    return build_server(
        settings,
        http_transport=polar.transport(),
        make_client=lambda http: PolarClient(http, timeout=settings.timeout, sleep=_no_sleep),
    )


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def polar() -> FakePolar:
    return FakePolar(
        valid_tokens={CUSTOMER_TOKEN},
        items=[
            item(1, "Rust Ebook.pdf"),
            item(2, "Rust Ebook.epub"),
            item(3, "Async Course - Part 1.mp4", benefit_id=BENEFIT_B, size=250_000_000),
        ],
    )


@pytest.fixture
async def client(polar: FakePolar, mode: str) -> AsyncIterator[Client]:
    async with Client(_server(polar), mode=mode) as connected:  # type: ignore[arg-type]
        yield connected


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


async def test_the_instructions_name_every_tool(client: Client) -> None:
    assert client.instructions is not None
    assert all(
        name in client.instructions
        for name in ("list_downloadables", "get_download_link", "download_file", "sync_library")
    )


async def test_tools_list_matches_the_checked_in_snapshot(client: Client) -> None:
    listed = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    assert_matches_snapshot(SNAPSHOT, tools)


async def test_list_downloadables_answers_compact_text_and_structured_items(client: Client) -> None:
    result = await client.call_tool("list_downloadables", {})
    assert not result.is_error
    assert _text(result) == (
        "Files 1–3 of 3 from Ferris Press (page 1 of 1):\n"
        f"Rust Ebook Bundle — 2 files (benefit_id {BENEFIT_A}):\n"
        "- Rust Ebook.pdf · 1.2 MB · application/pdf · id 00000000-0000-4000-8000-000000000001\n"
        "- Rust Ebook.epub · 1.2 MB · application/pdf · id 00000000-0000-4000-8000-000000000002\n"
        f"Async Course Videos — 1 file (benefit_id {BENEFIT_B}):\n"
        "- Async Course - Part 1.mp4 · 238.4 MB · application/pdf · id 00000000-0000-4000-8000-000000000003"
    )
    assert result.structured_content == {
        "items": [
            {
                "id": "00000000-0000-4000-8000-000000000001",
                "benefit_id": BENEFIT_A,
                "benefit": "Rust Ebook Bundle",
                "seller": "Ferris Press",
                "file_id": "ffffffff-0000-4000-8000-000000000001",
                "name": "Rust Ebook.pdf",
                "mime_type": "application/pdf",
                "size_bytes": 1234567,
                "size": "1.2 MB",
                "last_modified_at": "2026-03-04T05:06:07Z",
                "sha256": "01" * 32,
            },
            {
                "id": "00000000-0000-4000-8000-000000000002",
                "benefit_id": BENEFIT_A,
                "benefit": "Rust Ebook Bundle",
                "seller": "Ferris Press",
                "file_id": "ffffffff-0000-4000-8000-000000000002",
                "name": "Rust Ebook.epub",
                "mime_type": "application/pdf",
                "size_bytes": 1234567,
                "size": "1.2 MB",
                "last_modified_at": "2026-03-04T05:06:07Z",
                "sha256": "02" * 32,
            },
            {
                "id": "00000000-0000-4000-8000-000000000003",
                "benefit_id": BENEFIT_B,
                "benefit": "Async Course Videos",
                "seller": "Ferris Press",
                "file_id": "ffffffff-0000-4000-8000-000000000003",
                "name": "Async Course - Part 1.mp4",
                "mime_type": "application/pdf",
                "size_bytes": 250000000,
                "size": "238.4 MB",
                "last_modified_at": "2026-03-04T05:06:07Z",
                "sha256": "03" * 32,
            },
        ],
        "page": 1,
        "limit": 20,
        "total_count": 3,
        "max_page": 1,
        "has_more": False,
    }


async def test_list_downloadables_sends_page_limit_and_repeated_benefit_ids(client: Client, polar: FakePolar) -> None:
    result = await client.call_tool(
        "list_downloadables", {"benefit_id": [BENEFIT_A, BENEFIT_B.upper()], "page": 1, "limit": 2}
    )
    assert not result.is_error
    sent = polar.listing_requests[-1].url.params
    assert sent.get_list("benefit_id") == [BENEFIT_A, BENEFIT_B]
    assert (sent["page"], sent["limit"]) == ("1", "2")
    assert _text(result).endswith("More: call again with page=2.")
    assert result.structured_content is not None
    assert result.structured_content["has_more"] is True


async def test_list_downloadables_accepts_a_single_benefit_id(client: Client, polar: FakePolar) -> None:
    result = await client.call_tool("list_downloadables", {"benefit_id": BENEFIT_B})
    assert not result.is_error
    assert polar.listing_requests[-1].url.params.get_list("benefit_id") == [BENEFIT_B]
    assert result.structured_content is not None
    assert [i["name"] for i in result.structured_content["items"]] == ["Async Course - Part 1.mp4"]


async def test_a_malformed_benefit_id_is_refused_before_calling_polar(client: Client, polar: FakePolar) -> None:
    result = await client.call_tool("list_downloadables", {"benefit_id": "rust ebooks"})
    assert result.is_error
    assert _text(result) == (
        "Error executing tool list_downloadables: benefit_id 'rust ebooks' is not a benefit id: use a "
        "benefit_id from list_downloadables, or query to search by file or benefit name."
    )
    assert polar.requests == []


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"page": 0}, "page"),
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"page": "two"}, "page"),
        ({"query": "x" * 201}, "query"),
    ],
)
async def test_out_of_range_arguments_answer_a_tool_error(
    client: Client, polar: FakePolar, arguments: dict[str, Any], fragment: str
) -> None:
    result = await client.call_tool("list_downloadables", arguments)
    assert result.is_error
    assert fragment in _text(result)
    assert polar.requests == []


async def test_query_searches_every_page_case_insensitively_then_paginates_matches(
    mode: str,
) -> None:
    many = FakePolar(
        valid_tokens={CUSTOMER_TOKEN},
        items=[item(n, f"Chapter {n:03d}.pdf") for n in range(1, 251)] + [item(999, "Index.pdf")],
    )
    async with Client(_server(many), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_downloadables", {"query": "CHAPTER 2", "limit": 20, "page": 3})
    assert not result.is_error
    structured = result.structured_content
    assert structured is not None
    expected = [f"Chapter {n:03d}.pdf" for n in range(1, 251) if "chapter 2" in f"chapter {n:03d}.pdf"]
    assert structured["total_count"] == len(expected)
    assert structured["max_page"] == -(-len(expected) // 20)
    assert [i["name"] for i in structured["items"]] == expected[40:60]
    assert sorted(int(r.url.params["page"]) for r in many.listing_requests) == [1, 2, 3]
    assert {r.url.params["limit"] for r in many.listing_requests} == {"100"}


async def test_an_empty_search_says_so(client: Client) -> None:
    result = await client.call_tool("list_downloadables", {"query": "wallpaper"})
    assert not result.is_error
    assert _text(result) == "No files matching 'wallpaper'."


async def test_get_download_link_by_id_by_file_id_and_by_name(client: Client) -> None:
    by_id = await client.call_tool("get_download_link", {"downloadable_id": "00000000-0000-4000-8000-000000000002"})
    by_file = await client.call_tool("get_download_link", {"downloadable_id": "ffffffff-0000-4000-8000-000000000002"})
    by_name = await client.call_tool("get_download_link", {"name": "rust ebook.EPUB"})
    links = [r.structured_content for r in (by_id, by_file, by_name)]
    # expires_in_seconds counts down between calls: everything else must be identical.
    stable = [{k: v for k, v in (link or {}).items() if k != "expires_in_seconds"} for link in links]
    assert (
        stable[0]
        == stable[1]
        == stable[2]
        == {
            "id": "00000000-0000-4000-8000-000000000002",
            "file_id": "ffffffff-0000-4000-8000-000000000002",
            "benefit_id": BENEFIT_A,
            "benefit": "Rust Ebook Bundle",
            "seller": "Ferris Press",
            "name": "Rust Ebook.epub",
            "url": "https://api.polar.sh/v1/customer-portal/downloadables/signed-2",
            "expires_at": "2030-01-01T00:00:00Z",
            "size_bytes": 1234567,
            "mime_type": "application/pdf",
            "sha256": "02" * 32,
        }
    )
    text = _text(by_id)
    assert text.startswith(
        "Download link for Rust Ebook.epub (1.2 MB), from Rust Ebook Bundle by Ferris Press:\nhttps://api.polar.sh/"
    )
    assert "Keep it private" in text


async def test_a_unique_substring_finds_a_file_and_an_ambiguous_one_lists_candidates(client: Client) -> None:
    unique = await client.call_tool("get_download_link", {"name": "course"})
    assert not unique.is_error
    ambiguous = await client.call_tool("get_download_link", {"name": "rust"})
    assert ambiguous.is_error
    assert _text(ambiguous) == (
        "Error executing tool get_download_link: 2 files match 'rust'; call again with downloadable_id.\n"
        "Candidates:\n"
        "- Rust Ebook.pdf · id 00000000-0000-4000-8000-000000000001\n"
        "- Rust Ebook.epub · id 00000000-0000-4000-8000-000000000002"
    )


async def test_unknown_names_and_ids_point_to_list_downloadables(client: Client) -> None:
    name = await client.call_tool("get_download_link", {"name": "wallpaper"})
    ident = await client.call_tool("get_download_link", {"downloadable_id": "00000000-0000-4000-8000-000000000042"})
    assert name.is_error
    assert ident.is_error
    assert "list_downloadables" in _text(name)
    assert "list_downloadables" in _text(ident)


@pytest.mark.parametrize("arguments", [{}, {"name": " "}, {"name": "a", "downloadable_id": "b"}])
async def test_get_download_link_needs_exactly_one_of_id_or_name(client: Client, arguments: dict[str, str]) -> None:
    result = await client.call_tool("get_download_link", arguments)
    assert result.is_error
    assert _text(result) == (
        "Error executing tool get_download_link: Give exactly one of downloadable_id (from list_downloadables) or name."
    )


async def test_a_link_from_a_recent_listing_is_reused_without_calling_polar(client: Client, polar: FakePolar) -> None:
    await client.call_tool("list_downloadables", {})
    before = len(polar.requests)
    result = await client.call_tool("get_download_link", {"downloadable_id": "00000000-0000-4000-8000-000000000003"})
    assert not result.is_error
    assert len(polar.requests) == before


async def test_a_link_close_to_expiry_is_refreshed_with_a_listing_narrowed_to_its_benefit(mode: str) -> None:
    polar = FakePolar(
        valid_tokens={CUSTOMER_TOKEN},
        items=[item(1, "a.pdf"), item(2, "b.pdf", benefit_id=BENEFIT_B)],
        link_ttl=timedelta(minutes=4),
    )
    async with Client(_server(polar), mode=mode) as client:  # type: ignore[arg-type]
        await client.call_tool("list_downloadables", {})
        result = await client.call_tool(
            "get_download_link", {"downloadable_id": "00000000-0000-4000-8000-000000000002"}
        )
    assert not result.is_error
    assert polar.listing_requests[-1].url.params.get_list("benefit_id") == [BENEFIT_B]


async def test_without_a_token_every_tool_explains_how_to_get_one(polar: FakePolar, mode: str) -> None:
    async with Client(_server(polar, env={}), mode=mode) as client:  # type: ignore[arg-type]
        for name, arguments in (("list_downloadables", {}), ("get_download_link", {"name": "x"})):
            result = await client.call_tool(name, arguments)
            assert result.is_error
            assert "POLAR_CUSTOMER_SESSION" in _text(result)
            assert "POST /v1/customer-sessions/" in _text(result)
    assert polar.requests == []


async def test_an_organization_token_is_explained_not_sent(polar: FakePolar, mode: str) -> None:
    env = {"POLAR_CUSTOMER_SESSION": "polar_oat_merchant_secret"}
    async with Client(_server(polar, env=env), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_downloadables", {})
    assert result.is_error
    assert "organization access token" in _text(result)
    assert "polar_oat_merchant_secret" not in _text(result)
    assert polar.requests == []


def _status(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    return lambda _request: httpx2.Response(status, content=body, headers=headers or {})


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            [_status(401, b'{"error":"invalid_token","error_description":"expired"}')],
            "Polar rejected the session token: it is expired, revoked or invalid (customer session tokens "
            "live one hour). Create a new customer session and update POLAR_CUSTOMER_SESSION, or set "
            "POLAR_ACCESS_TOKEN and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself.",
        ),
        (
            [_status(401, b'{"error":"Unauthorized","detail":"Unauthorized"}')],
            "Polar did not accept this token for the customer portal: it needs a customer session token "
            "(polar_cst_…) or a member session token (polar_mst_…).",
        ),
        (
            [_status(429, headers={"Retry-After": "600"})],
            "Polar's rate limit was reached; retry after 600 s.",
        ),
        (
            [_status(503), _status(502), _status(500)],
            "Polar is having trouble right now (HTTP 500); try again in a minute.",
        ),
        (
            [_status(200, b"<html>oops</html>")],
            "Polar sent a response that is not valid JSON (perhaps cut off); try again.",
        ),
        (
            [_status(404, b'{"detail":"Not Found"}')],
            "Polar answered 404 Not Found. Check POLAR_API_URL / POLAR_SERVER, and POLAR_API_VERSION if set "
            "(known versions: 2026-04, 2026-10).",
        ),
    ],
)
async def test_polar_failures_become_actionable_tool_errors_and_the_server_stays_up(
    polar: FakePolar, mode: str, answers: list[Any], message: str
) -> None:
    polar.answers = list(answers)
    async with Client(_server(polar), mode=mode) as client:  # type: ignore[arg-type]
        failed = await client.call_tool("list_downloadables", {})
        assert failed.is_error
        assert _text(failed) == f"Error executing tool list_downloadables: {message}"
        recovered = await client.call_tool("list_downloadables", {})
        assert not recovered.is_error


async def test_a_transient_503_is_retried_and_answers_normally(polar: FakePolar, mode: str) -> None:
    polar.answers = [_status(503)]
    async with Client(_server(polar), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_downloadables", {})
    assert not result.is_error
    assert len(polar.listing_requests) == 2


async def test_the_token_never_appears_in_any_output(polar: FakePolar, mode: str) -> None:
    canary = "polar_cst_CANARY_7f3a9c_do_not_leak"
    polar.valid_tokens = {canary}
    env = {"POLAR_CUSTOMER_SESSION": canary}
    outputs: list[str] = []
    async with Client(_server(polar, env=env), mode=mode) as client:  # type: ignore[arg-type]
        outputs.append(json.dumps([t.model_dump(mode="json") for t in (await client.list_tools()).tools]))
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_downloadables", {}),
            ("list_downloadables", {"query": "rust"}),
            ("get_download_link", {"name": "rust"}),
            ("get_download_link", {"name": "course"}),
            ("get_download_link", {"downloadable_id": "nope"}),
        ]
        for name, arguments in calls:
            outputs.append((await client.call_tool(name, arguments)).model_dump_json())
        polar.valid_tokens = set()
        outputs.append((await client.call_tool("list_downloadables", {})).model_dump_json())
    assert all(canary not in output for output in outputs)
    assert any("rejected the session token" in output for output in outputs)


async def test_once_polar_rejects_the_session_nothing_remembered_is_served(client: Client, polar: FakePolar) -> None:
    await client.call_tool("list_downloadables", {"query": "rust"})  # a whole-catalog snapshot, links remembered
    polar.valid_tokens = set()  # the session is revoked
    rejected = await client.call_tool("list_downloadables", {})
    assert rejected.is_error
    requests_before = len(polar.listing_requests)
    again = await client.call_tool("get_download_link", {"downloadable_id": "00000000-0000-4000-8000-000000000001"})
    assert again.is_error
    assert "rejected the session token" in _text(again)
    assert len(polar.listing_requests) == requests_before + 1  # asked Polar, not the forgotten memory
