"""`polar-mcp list`: the table, paging, search, benefit filters and `--json` equal to the MCP tool."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import anyio
import pytest
from mcp import Client

from polar_mcp.config import load_settings
from polar_mcp.double.blobs import Blob
from polar_mcp.double.store import Store
from polar_mcp.server import build_server
from tests.helpers.cli import DEMO_TABLE, EPUB_ID, ERRATA_ID, PDF_ID, Cli, table

pytestmark = pytest.mark.usefixtures("token")


def _mcp_listing(arguments: dict[str, Any]) -> dict[str, Any]:
    """list_downloadables through an in-memory MCP client built from the same environment."""
    settings = load_settings(os.environ)

    async def call() -> dict[str, Any]:
        async with Client(build_server(settings)) as client:
            result = await client.call_tool("list_downloadables", arguments)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        return result.structured_content

    return anyio.run(call)


def test_list_prints_the_whole_catalog_as_a_table_with_a_page_footer(cli: Cli) -> None:
    run = cli("list")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [*DEMO_TABLE, "page 1 of 1 · 11 files"]


def test_a_long_name_is_cut_at_sixty_characters_and_a_hostile_name_cannot_forge_lines(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    press = next(org for org in store.organizations.values() if org.slug == "ferris-press")
    long_name = "the-complete-guide-to-asynchronous-rust-with-tokio-and-friends-2nd-edition.pdf"
    hostile = "notes\n\x1b[2Jpage 9 of 9 · 0 files\u202e.txt"
    files = [store.add_file(press, name, "text/plain", Blob.literal(b"x")) for name in (long_name, hostile)]
    benefit = store.add_benefit(press, f"Odd names {uuid.uuid4()}", files)
    customer = store.add_customer(press, f"{uuid.uuid4()}@example.com", "Odd Names")
    store.grant(customer, benefit, store.now())
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", store.issue_session(customer.id))
    run = cli("list")
    ids = [item["id"] for item in json.loads(cli("list", "--json").out)["items"]]
    assert run.code == 0
    name_width = 60
    assert run.out.splitlines() == [
        "NAME".ljust(name_width) + "  SIZE   TYPE        ID",
        long_name[: name_width - 1] + "…  1.0 B  text/plain  " + ids[0],
        "notes page 9 of 9 · 0 files .txt".ljust(name_width) + "  1.0 B  text/plain  " + ids[1],
        "page 1 of 1 · 2 files",
    ]


def test_a_limited_page_says_how_many_pages_and_how_to_get_the_next(cli: Cli) -> None:
    run = cli("list", "--limit", "5")
    assert run.code == 0
    first_five = [line.split()[0] for line in DEMO_TABLE[1:6]]
    assert run.out.splitlines() == [*table(*first_five), "page 1 of 3 · 11 files", "more: --page 2, or --all"]


def test_the_last_page_offers_no_more(cli: Cli) -> None:
    run = cli("list", "--limit", "5", "--page", "3")
    assert run.code == 0
    assert run.out.splitlines() == [*table("errata.txt"), "page 3 of 3 · 11 files"]


def test_a_page_past_the_end_says_so(cli: Cli) -> None:
    run = cli("list", "--limit", "5", "--page", "4")
    assert (run.code, run.out, run.err) == (0, "Page 4 is past the end (3 pages).\n", "")


def test_all_lists_every_file_on_one_page(cli: Cli) -> None:
    run = cli("list", "--all")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [*DEMO_TABLE, "page 1 of 1 · 11 files"]


def test_all_with_a_query_lists_every_match(cli: Cli) -> None:
    run = cli("list", "--all", "--query", "PDF")
    assert run.code == 0
    assert run.out.splitlines() == [*table("chapter-12-draft.pdf", "rust-in-practice.pdf"), "page 1 of 1 · 2 files"]


def test_a_query_searches_file_names_across_every_page_case_insensitively(cli: Cli) -> None:
    run = cli("list", "--query", "RUST-IN", "--limit", "1")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [
        *table("rust-in-practice.pdf"),
        "page 1 of 2 · 2 files",
        "more: --page 2, or --all",
    ]
    second = cli("list", "--query", "RUST-IN", "--limit", "1", "--page", "2")
    assert second.out.splitlines() == [*table("rust-in-practice.epub"), "page 2 of 2 · 2 files"]


def test_a_query_that_matches_nothing_prints_no_files(cli: Cli) -> None:
    run = cli("list", "--query", "no-such-file")
    assert (run.code, run.out, run.err) == (0, "No files.\n", "")


def test_repeated_benefit_ids_narrow_the_listing_to_those_benefits(cli: Cli) -> None:
    by_name = {item["name"]: item for item in json.loads(cli("list", "--json", "--limit", "100").out)["items"]}
    ebooks, wallpapers = by_name["errata.txt"]["benefit_id"], by_name["ferris-dawn-3840x2160.png"]["benefit_id"]
    run = cli("list", "--benefit-id", ebooks, "--benefit-id", wallpapers)
    assert (run.code, run.err) == (0, "")
    files = ("ferris-dawn-3840x2160.png", "ferris-dusk-2560x1440.png", "rust-in-practice.pdf")
    assert run.out.splitlines() == [
        *table(*files, "rust-in-practice.epub", "errata.txt"),
        "page 1 of 1 · 5 files",
    ]
    only_ebooks = cli("list", "--benefit-id", ebooks, "--json")
    assert [item["id"] for item in json.loads(only_ebooks.out)["items"]] == [PDF_ID, EPUB_ID, ERRATA_ID]


def test_a_benefit_id_the_customer_does_not_hold_lists_no_files(cli: Cli) -> None:
    run = cli("list", "--benefit-id", "4a9bf4bf-4b17-4b02-8326-42f01c19c576")  # a downloadable id, not a benefit
    assert (run.code, run.out, run.err) == (0, "No files.\n", "")


def test_a_malformed_benefit_id_exits_2_without_calling_polar(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_API_URL", "http://127.0.0.1:9")  # a request would fail with exit 5 instead
    run = cli("list", "--benefit-id", "nope")
    assert (run.code, run.out) == (2, "")
    assert run.messages == (
        "polar-mcp: --benefit-id 'nope' is not a benefit id: the benefit_id values are in "
        "`polar-mcp list --json`; use --query to search by file or benefit name.\n"
    )


@pytest.mark.parametrize(
    "argv",
    [["--limit", "0"], ["--limit", "101"], ["--page", "0"], ["--limit", "-1"]],
    ids=["limit-0", "limit-101", "page-0", "limit-negative"],
)
def test_an_out_of_range_limit_or_page_exits_2_without_calling_polar(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("POLAR_API_URL", "http://127.0.0.1:9")  # a request would fail with exit 5 instead
    run = cli("list", *argv)
    assert (run.code, run.out, run.err) == (2, "", "polar-mcp: --limit must be 1..100 and --page at least 1.\n")


def test_a_limit_that_is_not_a_number_is_a_usage_error(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("list", "--limit", "many")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: polar-mcp list ")
    assert err.endswith("polar-mcp list: error: argument --limit: invalid int value: 'many'\n")


@pytest.mark.parametrize(
    ("argv", "arguments"),
    [
        ([], {}),
        (["--limit", "3", "--page", "2"], {"limit": 3, "page": 2}),
        (["--query", "rust"], {"query": "rust"}),
        (["--query", "wakers", "--limit", "1"], {"query": "wakers", "limit": 1}),
        (["--page", "9", "--limit", "5"], {"page": 9, "limit": 5}),
    ],
    ids=["defaults", "page-2-of-3", "query", "query-paged", "past-the-end"],
)
def test_json_is_exactly_the_structured_result_of_the_mcp_tool(
    cli: Cli, argv: list[str], arguments: dict[str, Any]
) -> None:
    run = cli("list", "--json", *argv)
    assert (run.code, run.err) == (0, "")
    from_cli = json.loads(run.out)
    from_mcp = _mcp_listing(arguments)
    assert list(from_cli) == list(from_mcp)
    for key in from_mcp:
        assert from_cli[key] == from_mcp[key], key
    assert [list(item) for item in from_cli["items"]] == [list(item) for item in from_mcp["items"]]


def test_json_with_benefit_ids_equals_the_mcp_tool_given_the_same_ids(cli: Cli) -> None:
    ids = sorted({item["benefit_id"] for item in json.loads(cli("list", "--json", "--limit", "100").out)["items"]})
    run = cli("list", "--json", "--benefit-id", ids[0], "--benefit-id", ids[1])
    assert json.loads(run.out) == _mcp_listing({"benefit_id": ids[:2]})


def test_json_is_indented_and_keeps_non_ascii_readable(cli: Cli) -> None:
    run = cli("list", "--json", "--limit", "1")
    assert run.out.startswith('{\n  "items": [\n    {\n      "id": ')
    assert run.out.endswith('"has_more": true\n}\n')
