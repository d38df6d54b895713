"""'What did I buy from this seller?': benefit names through the MCP tools, against the double over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from polar_mcp.server import build_server

pytestmark = pytest.mark.anyio

GRANTS_PATH = "/v1/customer-portal/benefit-grants/"
LISTING_PATH = "/v1/customer-portal/downloadables/"

ADA_PURCHASES: list[tuple[str, str | None, list[str]]] = [
    # (the benefit as the demo catalog describes it, the name a customer sees, its listed files),
    # newest grant first, as Polar lists them. Downloadables benefits are always public, so all are named.
    ("Early Access: Chapter 12", "Early Access: Chapter 12", ["chapter-12-draft.pdf"]),
    ("Wallpaper Pack", "Wallpaper Pack", ["ferris-dawn-3840x2160.png", "ferris-dusk-2560x1440.png"]),
    (
        "Async Course Videos",
        "Async Course Videos",
        ["01-futures-and-wakers.mp4", "02-inside-the-tokio-runtime.mp4", "01-futures-and-wakers.srt"],
    ),
    ("Code Samples", "Code Samples", ["async-course-code.zip", "README.md"]),
    ("Rust Ebook Bundle", "Rust Ebook Bundle", ["rust-in-practice.pdf", "rust-in-practice.epub", "errata.txt"]),
]


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


def _benefit_id(store: Store, description: str) -> str:
    return next(b.id for b in store.benefits.values() if b.description == description)


def _text(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


def _items(result: CallToolResult) -> list[dict[str, Any]]:
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result.structured_content["items"]


async def test_one_listing_answers_what_was_bought_from_the_seller_grouped_under_benefit_names(
    store: Store, double: RunningDouble
) -> None:
    token = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    env = {"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": token}
    before = store.request_counts()

    async with Client(build_server(load_settings(env))) as client:
        everything = await client.call_tool("list_downloadables", {})
        ebooks = await client.call_tool("list_downloadables", {"query": "ebook bundle"})

    after = store.request_counts()
    items = _items(everything)
    assert [(i["name"], i["benefit_id"], i.get("benefit"), i.get("seller")) for i in items] == [
        (name, _benefit_id(store, description), shown, "Ferris Press" if shown else None)
        for description, shown, names in ADA_PURCHASES
        for name in names
    ]
    id_of = {i["name"]: i["id"] for i in items}
    text = _text(everything)
    assert [line for line in text.splitlines() if not line.startswith("- ")] == [
        "Files 1–11 of 11 from Ferris Press (page 1 of 1):",
        f"Early Access: Chapter 12 — 1 file (benefit_id {_benefit_id(store, 'Early Access: Chapter 12')}):",
        f"Wallpaper Pack — 2 files (benefit_id {_benefit_id(store, 'Wallpaper Pack')}):",
        f"Async Course Videos — 3 files (benefit_id {_benefit_id(store, 'Async Course Videos')}):",
        f"Code Samples — 2 files (benefit_id {_benefit_id(store, 'Code Samples')}):",
        f"Rust Ebook Bundle — 3 files (benefit_id {_benefit_id(store, 'Rust Ebook Bundle')}):",
    ]
    assert [line.split(" · ")[0] for line in text.splitlines() if line.startswith("- ")] == [
        f"- {name}" for _, _, names in ADA_PURCHASES for name in names
    ]
    assert f"- chapter-12-draft.pdf · 640.0 KB · application/pdf · id {id_of['chapter-12-draft.pdf']}" in text
    assert [i["name"] for i in _items(ebooks)] == ["rust-in-practice.pdf", "rust-in-practice.epub", "errata.txt"]
    assert after.get(GRANTS_PATH, 0) - before.get(GRANTS_PATH, 0) == 1, "one benefit-grants walk for both"
    assert after.get(LISTING_PATH, 0) - before.get(LISTING_PATH, 0) == 2
