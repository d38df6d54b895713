"""The catalog: listing, searching, finding one item, and reusing links that still have time left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from polar_mcp.catalog import (
    ACCEPTED_TTL,
    LINK_REUSE_MARGIN,
    AmbiguousNameError,
    BenefitName,
    Catalog,
    InvalidArgumentError,
    ItemNotFoundError,
    Listing,
)
from polar_mcp.polar.errors import AuthenticationError
from polar_mcp.polar.models import Downloadable
from tests.helpers.clock import FakeTime
from tests.helpers.polar import (
    BENEFIT_A,
    BENEFIT_B,
    BENEFIT_NAMES,
    CUSTOMER_TOKEN,
    OTHER_CUSTOMER_TOKEN,
    FakePolar,
    by_token,
    downloadable,
    file_id,
    item_id,
    make_client,
    session,
)


class World:
    """One fake Polar, one client, one catalog, one clock."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.time = FakeTime()
        self.polar = FakePolar(items=items)
        self.catalog = Catalog(
            make_client(self.polar, self.time), clock=self.time.clock, wall_clock=self.time.wall_clock
        )

    @property
    def calls(self) -> int:
        return len(self.polar.requests)

    def later(self, seconds: float) -> None:
        """Time passes; from now on Polar mints links that expire an hour after the new moment."""
        self.time.advance(seconds)
        expires = datetime.fromtimestamp(self.time.wall, UTC) + timedelta(hours=1)
        for raw in self.polar.items:
            raw["file"]["download"]["expires_at"] = expires.isoformat()


def parsed(raw: dict[str, Any]) -> Downloadable:
    return Downloadable.model_validate(raw)


def numbered(count: int, **options: Any) -> list[dict[str, Any]]:
    return [downloadable(n, **options) for n in range(1, count + 1)]


def names(*benefit_ids: str) -> dict[str, BenefitName]:
    """The names FakePolar's benefit grants give these benefits."""
    return {b: BenefitName(*BENEFIT_NAMES[b]) for b in benefit_ids}


ONE_GRANTS_WALK = [[("type", "downloadables"), ("page", "1"), ("limit", "100")]]
"""A listing fetches every benefit grant (one page here) for benefit names, alongside its own call."""


# --- listing ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_listing_without_query_is_one_polar_page() -> None:
    items = numbered(5)
    world = World(items)

    listing = await world.catalog.list(session(), page=2, limit=2)

    assert listing == Listing(
        items=[parsed(items[2]), parsed(items[3])], page=2, limit=2, total_count=5, max_page=3, names=names(BENEFIT_A)
    )
    assert listing.has_more
    assert world.polar.listing_queries == [[("page", "2"), ("limit", "2")]]
    assert world.polar.grant_queries == ONE_GRANTS_WALK


@pytest.mark.anyio
async def test_a_listing_narrowed_by_benefit_passes_it_on() -> None:
    items = [downloadable(1, benefit_id=BENEFIT_A), downloadable(2, benefit_id=BENEFIT_B)]
    world = World(items)

    listing = await world.catalog.list(session(), benefit_ids=[BENEFIT_B])

    assert listing == Listing(
        items=[parsed(items[1])], page=1, limit=20, total_count=1, max_page=1, names=names(BENEFIT_B)
    )
    assert not listing.has_more
    assert world.polar.listing_queries == [[("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "20")]]
    assert world.polar.grant_queries == ONE_GRANTS_WALK


def search_catalog() -> list[dict[str, Any]]:
    """250 files over three Polar pages; five have 'guide' in their name, in varied case."""
    guides = {5: "Guide.pdf", 120: "field GUIDE.epub", 180: "guidebook.zip", 230: "The Guide (v2).pdf", 249: "gUiDe"}
    return [downloadable(n, guides.get(n, f"file-{n}.pdf")) for n in range(1, 251)]


@pytest.mark.anyio
async def test_a_query_searches_every_page_case_insensitively_and_pages_the_matches() -> None:
    items = search_catalog()
    world = World(items)

    listing = await world.catalog.list(session(), query="  GUIDE ", page=2, limit=2)

    assert listing == Listing(
        items=[parsed(items[179]), parsed(items[229])],
        page=2,
        limit=2,
        total_count=5,
        max_page=3,
        names=names(BENEFIT_A),
    )
    assert sorted(world.polar.served_pages) == [1, 2, 3]
    assert world.polar.grant_queries == ONE_GRANTS_WALK


@pytest.mark.anyio
async def test_the_last_page_of_matches_has_no_more() -> None:
    items = search_catalog()
    world = World(items)

    listing = await world.catalog.list(session(), query="guide", page=3, limit=2)

    assert listing == Listing(
        items=[parsed(items[248])], page=3, limit=2, total_count=5, max_page=3, names=names(BENEFIT_A)
    )
    assert not listing.has_more


@pytest.mark.anyio
async def test_a_query_past_the_last_page_of_matches_is_empty_but_counts_them() -> None:
    world = World(search_catalog())

    listing = await world.catalog.list(session(), query="guide", page=9, limit=2)

    assert listing == Listing(items=[], page=9, limit=2, total_count=5, max_page=3, names=names(BENEFIT_A))


@pytest.mark.anyio
async def test_a_query_matching_nothing_has_no_pages() -> None:
    world = World(search_catalog())

    listing = await world.catalog.list(session(), query="invoice")

    assert listing == Listing(items=[], page=1, limit=20, total_count=0, max_page=0, names=names(BENEFIT_A))


@pytest.mark.anyio
async def test_a_query_within_a_benefit_scans_only_that_benefit() -> None:
    items = [downloadable(1, "guide-a.pdf", benefit_id=BENEFIT_A), downloadable(2, "guide-b.pdf", benefit_id=BENEFIT_B)]
    world = World(items)

    listing = await world.catalog.list(session(), query="guide", benefit_ids=[BENEFIT_B])

    assert listing == Listing(
        items=[parsed(items[1])], page=1, limit=20, total_count=1, max_page=1, names=names(BENEFIT_B)
    )
    assert world.polar.listing_queries == [[("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")]]
    assert world.polar.grant_queries == ONE_GRANTS_WALK


# --- finding by id ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_item_seen_in_a_listing_with_a_fresh_link_is_found_without_calling_polar() -> None:
    items = numbered(3)
    world = World(items)
    await world.catalog.list(session())
    before = world.calls

    by_id = await world.catalog.find(session(), downloadable_id=item_id(2))
    by_file_id = await world.catalog.find(session(), downloadable_id=f"  {file_id(3)}\n")

    assert (by_id, by_file_id) == (parsed(items[1]), parsed(items[2]))
    assert world.calls - before == 0


@pytest.mark.anyio
async def test_an_unknown_id_is_looked_up_in_the_whole_catalog_then_remembered() -> None:
    items = numbered(150)
    world = World(items)

    found = await world.catalog.find(session(), downloadable_id=item_id(140))
    again = await world.catalog.find(session(), downloadable_id=file_id(140))

    assert found == again == parsed(items[139])
    assert sorted(world.polar.served_pages) == [1, 2]


@pytest.mark.anyio
async def test_an_id_in_no_listing_is_not_found_and_says_which_id() -> None:
    world = World(numbered(3))

    with pytest.raises(ItemNotFoundError) as raised:
        await world.catalog.find(session(), downloadable_id="nope-123")

    assert (raised.value.wanted, raised.value.by, raised.value.message) == (
        "nope-123",
        "id",
        "No file has the id 'nope-123'.",
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("left", "calls"),
    [(LINK_REUSE_MARGIN + 1, 0), (LINK_REUSE_MARGIN, 1), (60.0, 1), (-10.0, 1)],
    ids=["just-over-5-min", "exactly-5-min", "one-minute", "expired"],
)
async def test_a_remembered_link_is_reused_only_with_more_than_five_minutes_left(left: float, calls: int) -> None:
    world = World(numbered(3))
    await world.catalog.list(session())
    before = world.calls
    world.time.wall += 3600 - left  # the link ages; Polar accepted the token a moment ago

    await world.catalog.find(session(), downloadable_id=item_id(1))

    assert world.calls - before == calls


@pytest.mark.anyio
@pytest.mark.parametrize(("since", "calls"), [(ACCEPTED_TTL, 0), (ACCEPTED_TTL + 1, 1)], ids=["60-s", "61-s"])
async def test_a_remembered_link_is_served_only_within_a_minute_of_polar_accepting_the_token(
    since: float, calls: int
) -> None:
    world = World([downloadable(1, benefit_id=BENEFIT_B), downloadable(2)])
    await world.catalog.list(session())
    world.time.advance(since)
    before = world.calls

    await world.catalog.find(session(), downloadable_id=item_id(1))
    await world.catalog.find(session(), downloadable_id=item_id(1))  # the narrow listing proved it again

    assert world.polar.queries[before:] == [[("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")]] * calls


@pytest.mark.anyio
async def test_a_revoked_customer_is_refused_after_a_minute_though_its_links_have_an_hour_left() -> None:
    world = World(numbered(2))
    await world.catalog.list(session())
    # The merchant revoked the session: Polar refuses it, though it would still redirect old links.
    world.polar.script = lambda _: httpx2.Response(
        401,
        json={"error": "invalid_token"},
        headers={"WWW-Authenticate": 'Bearer realm="polar", error="invalid_token"'},
    )
    world.time.advance(ACCEPTED_TTL + 1)

    with pytest.raises(AuthenticationError):
        await world.catalog.find(session(), downloadable_id=item_id(1))


@pytest.mark.anyio
async def test_a_stale_link_is_refreshed_by_a_listing_narrowed_to_its_benefit() -> None:
    items = [downloadable(1, benefit_id=BENEFIT_A), downloadable(2, benefit_id=BENEFIT_B)]
    world = World(items)
    await world.catalog.list(session())
    world.later(3400)
    before = world.calls

    found = await world.catalog.find(session(), downloadable_id=item_id(2))

    assert world.polar.queries[before:] == [[("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")]]
    assert found == parsed(items[1])
    assert found.file.download.expires_at == datetime.fromtimestamp(world.time.wall, UTC) + timedelta(hours=1)


@pytest.mark.anyio
async def test_a_refreshed_link_is_then_reused() -> None:
    world = World(numbered(2))
    await world.catalog.list(session())
    world.later(3400)
    await world.catalog.find(session(), downloadable_id=item_id(1))
    before = world.calls

    await world.catalog.find(session(), downloadable_id=item_id(1))

    assert world.calls - before == 0


@pytest.mark.anyio
async def test_a_stale_item_that_was_withdrawn_is_not_found() -> None:
    world = World(numbered(2))
    await world.catalog.list(session())
    world.later(3400)
    world.polar.items.pop(0)

    with pytest.raises(ItemNotFoundError):
        await world.catalog.find(session(), downloadable_id=item_id(1))


# --- finding by name --------------------------------------------------------------------------


def named(*names: str) -> list[dict[str, Any]]:
    return [downloadable(n, name) for n, name in enumerate(names, start=1)]


@pytest.mark.anyio
async def test_an_exact_name_in_any_case_beats_names_containing_it() -> None:
    items = named("Guide.pdf.sig", "Advanced Guide.pdf", "Guide.pdf", "guide.pdf.zip")
    world = World(items)

    assert await world.catalog.find(session(), name=" guide.PDF ") == parsed(items[2])


@pytest.mark.anyio
async def test_a_unique_part_of_a_name_finds_the_file() -> None:
    items = named("Guide.pdf", "Advanced Guide.pdf", "Workbook.epub")
    world = World(items)

    assert await world.catalog.find(session(), name="ADVANCED") == parsed(items[1])


@pytest.mark.anyio
async def test_a_name_matching_many_files_lists_at_most_ten_candidates() -> None:
    items = named(*[f"Chapter {n}.pdf" for n in range(1, 13)], "Cover.png")
    world = World(items)

    with pytest.raises(AmbiguousNameError) as raised:
        await world.catalog.find(session(), name="chapter")

    assert (raised.value.wanted, raised.value.matches) == ("chapter", 12)
    assert raised.value.candidates == [parsed(raw) for raw in items[:10]]


@pytest.mark.anyio
async def test_two_files_with_the_same_exact_name_are_ambiguous() -> None:
    items = named("Book.pdf", "book.PDF", "Book.pdf.sig")
    world = World(items)

    with pytest.raises(AmbiguousNameError) as raised:
        await world.catalog.find(session(), name="book.pdf")

    assert (raised.value.wanted, raised.value.matches) == ("book.pdf", 2)
    assert raised.value.candidates == [parsed(items[0]), parsed(items[1])]


@pytest.mark.anyio
async def test_a_name_matching_nothing_is_not_found_and_says_which_name() -> None:
    world = World(named("Guide.pdf"))

    with pytest.raises(ItemNotFoundError) as raised:
        await world.catalog.find(session(), name="  invoice\n")

    assert (raised.value.wanted, raised.value.by) == ("invoice", "name")


@pytest.mark.anyio
async def test_name_lookups_within_a_minute_reuse_the_last_whole_catalog_scan() -> None:
    world = World(named("Guide.pdf", "Workbook.epub"))
    await world.catalog.find(session(), name="guide")
    scans = world.calls

    world.time.advance(60)
    await world.catalog.find(session(), name="workbook")
    assert world.calls == scans

    world.time.advance(1)
    await world.catalog.find(session(), name="workbook")
    assert world.calls == scans + 1


@pytest.mark.anyio
async def test_a_name_found_with_a_stale_link_is_refreshed_narrowly() -> None:
    items = [downloadable(1, "Guide.pdf", benefit_id=BENEFIT_B), downloadable(2, "Other.pdf")]
    world = World(items)
    await world.catalog.find(session(), name="guide")
    world.time.advance(30)
    world.time.wall += 3400  # the wall clock alone says the link is nearly spent
    before = world.calls

    await world.catalog.find(session(), name="guide")

    assert world.polar.queries[before:] == [[("benefit_id", BENEFIT_B), ("page", "1"), ("limit", "100")]]


@pytest.mark.anyio
async def test_a_lookup_needs_an_id_or_a_name() -> None:
    world = World([])

    with pytest.raises(InvalidArgumentError) as raised:
        await world.catalog.find(session())

    assert raised.value.argument == "id_or_name"
    assert world.calls == 0


# --- isolation --------------------------------------------------------------------------------


class TwoCustomers:
    """One Polar serving two customers, each seeing only their own files."""

    def __init__(self) -> None:
        self.time = FakeTime()
        self.polars = {
            CUSTOMER_TOKEN: FakePolar(items=[downloadable(1, "Alice secret.pdf")]),
            OTHER_CUSTOMER_TOKEN: FakePolar(items=[downloadable(2, "Bob notes.pdf")]),
        }
        self.catalog = Catalog(
            make_client(by_token(self.polars), self.time), clock=self.time.clock, wall_clock=self.time.wall_clock
        )

    def calls(self, token: str) -> int:
        return len(self.polars[token].requests)


@pytest.mark.anyio
async def test_one_customers_remembered_items_are_never_found_for_another() -> None:
    world = TwoCustomers()
    alice, bob = session(CUSTOMER_TOKEN), session(OTHER_CUSTOMER_TOKEN)
    await world.catalog.list(alice)
    assert (await world.catalog.find(alice, downloadable_id=item_id(1))).file.name == "Alice secret.pdf"

    with pytest.raises(ItemNotFoundError):
        await world.catalog.find(bob, downloadable_id=item_id(1))
    with pytest.raises(ItemNotFoundError):
        await world.catalog.find(bob, name="alice")

    # Alice: one listing and its benefit-grants walk; Bob: one scan of his own catalog.
    assert (world.calls(CUSTOMER_TOKEN), world.calls(OTHER_CUSTOMER_TOKEN)) == (2, 1)


@pytest.mark.anyio
async def test_one_customers_name_snapshot_is_not_used_for_another() -> None:
    world = TwoCustomers()
    alice, bob = session(CUSTOMER_TOKEN), session(OTHER_CUSTOMER_TOKEN)
    await world.catalog.find(alice, name="alice")

    found = await world.catalog.find(bob, name="notes")

    assert found.file.name == "Bob notes.pdf"
    assert (world.calls(CUSTOMER_TOKEN), world.calls(OTHER_CUSTOMER_TOKEN)) == (1, 1)


@pytest.mark.anyio
async def test_a_listing_without_a_limit_is_the_whole_catalog_and_is_remembered() -> None:
    items = numbered(150)
    world = World(items)

    everything = (await world.catalog.list(session(), limit=None)).items
    before = world.calls
    found = await world.catalog.find(session(), name="file-149.pdf")

    assert everything == [parsed(raw) for raw in items]
    assert found == parsed(items[148])
    assert world.calls == before


@pytest.mark.anyio
async def test_a_remembered_item_whose_link_was_unusable_is_looked_up_again() -> None:
    items = numbered(2)
    items[0]["file"]["download"]["url"] = "javascript:alert(1)"
    world = World(items)
    await world.catalog.list(session())
    assert (await world.catalog.find(session(), name="file-1.pdf")).file.download.url == ""
    items[0]["file"]["download"]["url"] = "https://api.polar.sh/v1/customer-portal/downloadables/good"
    before = world.calls

    found = await world.catalog.find(session(), downloadable_id=item_id(1))

    assert found.file.download.url == "https://api.polar.sh/v1/customer-portal/downloadables/good"
    assert world.polar.queries[before:] == [[("benefit_id", BENEFIT_A), ("page", "1"), ("limit", "100")]]
