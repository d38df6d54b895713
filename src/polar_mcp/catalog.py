"""The customer's catalog: listing, searching, finding one item, reusing links still fresh.

Polar has no get-one endpoint, so finding an item means listing. What a listing taught us (which
benefit an item is under, its current link) is remembered per principal, bounded in size and time,
so a follow-up `get_download_link` is usually answered with one narrow call or none at all.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeVar

import anyio

from polar_mcp.cache import BoundedCache
from polar_mcp.failure import Failure
from polar_mcp.polar.client import PageHook, PolarClient, first_error
from polar_mcp.polar.errors import AuthenticationError, PolarError
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.sessions import TokenSource
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)
R = TypeVar("R")

LINK_REUSE_MARGIN = 300.0
"""A remembered link is reused only while it has more than this many seconds left."""

NAMES_TTL = 300.0
"""How long benefit names are trusted before the benefit grants are fetched again."""

SNAPSHOT_TTL = 60.0
"""How long a whole-catalog scan answers name lookups before the catalog is scanned again."""

ACCEPTED_TTL = 60.0
"""A remembered link is served only if Polar accepted the principal's token this recently.

Polar keeps redirecting a link after the merchant revokes the grant (until the link expires), so a
remembered link must not outlive the proof that its holder still has access.
"""

MAX_CANDIDATES = 10


class CatalogError(Failure):
    """A lookup that cannot be answered as asked; the fields say why, the front ends word it."""


class InvalidArgumentError(CatalogError):
    """An argument that cannot name anything in a catalog.

    `argument` is which: `benefit_id` (not an id; `wanted` is the value), `benefit_ids` (too many),
    `id_or_name` (both or neither of an id and a name were given), or `page_or_limit` (out of range).
    """

    def __init__(
        self,
        message: str,
        *,
        argument: Literal["benefit_id", "benefit_ids", "id_or_name", "page_or_limit"],
        wanted: str = "",
    ) -> None:
        super().__init__(message)
        self.argument = argument
        self.wanted = wanted


MAX_BENEFIT_IDS = 50


def parse_benefit_ids(values: Sequence[str]) -> list[str]:
    """Benefit ids in canonical form, de-duplicated; refused before anything is sent to Polar."""
    if len(values) > MAX_BENEFIT_IDS:
        raise InvalidArgumentError(f"Give at most {MAX_BENEFIT_IDS} benefit ids.", argument="benefit_ids")
    cleaned: list[str] = []
    for raw in values:
        try:
            cleaned.append(str(uuid.UUID(raw.strip())))
        except ValueError:
            wanted = clean_text(raw.strip(), 60)
            raise InvalidArgumentError(
                f"{wanted!r} is not a benefit id.", argument="benefit_id", wanted=raw.strip()[:60]
            ) from None
    return list(dict.fromkeys(cleaned))


class ItemNotFoundError(CatalogError):
    """No item has that id (`by="id"`) or name (`by="name"`); `wanted` is what was looked for."""

    def __init__(self, wanted: str, *, by: Literal["id", "name"]) -> None:
        super().__init__(f"No file has the {by} {clean_text(wanted, 80)!r}.")
        self.wanted = wanted
        self.by = by


class AmbiguousNameError(CatalogError):
    """Several items match a name; `candidates` are the first few of them, `matches` how many."""

    def __init__(self, wanted: str, candidates: list[Downloadable], matches: int) -> None:
        super().__init__(f"{matches} files match {clean_text(wanted, 80)!r}.")
        self.wanted = wanted
        self.matches = matches
        self.candidates = candidates


class NoUsableLinkError(CatalogError):
    """Polar listed the item with no link, or with one polar-mcp refuses to pass on."""

    def __init__(self, item: Downloadable) -> None:
        super().__init__("Polar sent no usable link for this file.")
        self.item = item


class Listing(NamedTuple):
    """One page of results, from Polar's pages or from a filtered whole-catalog search."""

    items: list[Downloadable]
    page: int
    limit: int
    total_count: int
    max_page: int
    names: Mapping[str, BenefitName] = MappingProxyType({})

    @property
    def has_more(self) -> bool:
        return self.page < self.max_page


class BenefitName(NamedTuple):
    """What a customer calls a benefit, and who sold it (either may be unknown)."""

    name: str | None
    seller: str | None


class _Names:
    """One principal's benefit names, as of one fetch of the benefit grants."""

    __slots__ = ("by_benefit", "fetched_at", "missing")

    def __init__(
        self,
        by_benefit: dict[str, BenefitName] | None = None,
        fetched_at: float = -math.inf,
        missing: set[str] | None = None,
    ) -> None:
        self.by_benefit: dict[str, BenefitName] = {} if by_benefit is None else by_benefit
        self.fetched_at = fetched_at
        self.missing: set[str] = set() if missing is None else missing
        """Benefits asked for and still without a name: not looked for again before the names go stale."""


class _Memory:
    """What one principal's listings taught us."""

    __slots__ = (
        "accepted_at",
        "by_file_id",
        "items",
        "names",
        "names_fetch",
        "names_fetches",
        "snapshot",
        "snapshot_at",
    )

    def __init__(self) -> None:
        self.names = _Names()
        self.names_fetch: anyio.Event | None = None
        """Set while a fetch of the benefit names is under way: later askers wait for it, not start another."""
        self.names_fetches = 0
        """Fetches of the names started so far: a listing does not fetch again if one started meanwhile."""
        self.items: dict[str, Downloadable] = {}
        self.by_file_id: dict[str, str] = {}
        self.snapshot: list[str] | None = None
        self.snapshot_at = -math.inf
        self.accepted_at = -math.inf
        """When Polar last answered a listing with this principal's token."""


def _searchable(item: Downloadable, names: Mapping[str, BenefitName]) -> str:
    benefit = names.get(item.benefit_id)
    return f"{item.file.name}\n{benefit.name if benefit and benefit.name else ''}".casefold()


def matches_query(items: Iterable[Downloadable], names: Mapping[str, BenefitName], query: str) -> list[Downloadable]:
    """The items whose file name or benefit name contains `query`, ignoring case."""
    needle = query.casefold().strip()
    return [item for item in items if needle in _searchable(item, names)]


class Catalog:
    """Answers catalog questions for any principal, through one `PolarClient`."""

    MAX_PRINCIPALS = 1024
    MAX_ITEMS_PER_PRINCIPAL = 50_000

    def __init__(
        self,
        client: PolarClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        memory_ttl: float = 3600.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._wall_clock = wall_clock
        self._memories: BoundedCache[str, _Memory] = BoundedCache(
            max_entries=self.MAX_PRINCIPALS, ttl=memory_ttl, clock=clock
        )
        self._logged_name_failures: set[str] = set()

    @property
    def client(self) -> PolarClient:
        return self._client

    async def list(
        self,
        source: TokenSource,
        *,
        benefit_ids: Sequence[str] = (),
        page: int = 1,
        limit: int | None = 20,
        query: str | None = None,
        on_page: PageHook | None = None,
    ) -> Listing:
        """A page of the catalog; with `query`, a page of the matches (file or benefit name) of all of it.

        `limit=None` answers everything (or every match) as one page. `on_page` sees each page of a
        whole-catalog scan as it arrives (a sync plans while the rest is fetched).
        """
        with self._forget_if_rejected(source):
            before = self._memory(source).names_fetches
            if query is None and limit is not None:
                result = await self._alongside_names(
                    source, self._client.list_downloadables(source, page=page, limit=limit, benefit_ids=benefit_ids)
                )
                self._remember(source, result.items)
                names = await self._names(source, {item.benefit_id for item in result.items}, fetched_since=before)
                pagination = result.pagination
                return Listing(list(result.items), page, limit, pagination.total_count, pagination.max_page, names)
            items = await self._alongside_names(source, self._scan(source, benefit_ids, on_page))
            names = await self._names(source, {item.benefit_id for item in items}, fetched_since=before)
            found = items if query is None else matches_query(items, names, query)
            if limit is None:
                return Listing(found, 1, max(len(found), 1), len(found), 1 if found else 0, names)
            start = (page - 1) * limit
            return Listing(found[start : start + limit], page, limit, len(found), math.ceil(len(found) / limit), names)

    async def benefit_names(self, source: TokenSource, benefit_ids: Iterable[str]) -> dict[str, BenefitName]:
        """Names of these benefits, from the cache, refreshed at most once per lifetime for unknown ids.

        A benefit that is not public never gets a name; a failure to fetch names only leaves them out.
        """
        return await self._names(source, benefit_ids, fetched_since=None)

    async def _names(
        self, source: TokenSource, benefit_ids: Iterable[str], *, fetched_since: int | None
    ) -> dict[str, BenefitName]:
        """`benefit_names`; a fetch started after the `fetched_since`-th (the one that ran alongside
        the listing asking) already looked for its unknown benefits: they are not looked for again."""
        memory = self._memory(source)
        wanted = set(benefit_ids)
        names = memory.names
        unknown = wanted - names.by_benefit.keys() - names.missing
        fetched_meanwhile = fetched_since is not None and memory.names_fetches > fetched_since
        if self._stale(names) or (unknown and not fetched_meanwhile):
            await self._refresh_names(source, memory)
            names = memory.names
        names.missing |= wanted - names.by_benefit.keys()
        return {b: names.by_benefit[b] for b in wanted if b in names.by_benefit}

    def _stale(self, names: _Names) -> bool:
        return self._clock() - names.fetched_at > NAMES_TTL

    async def _refresh_names(self, source: TokenSource, memory: _Memory, *, log: bool = True) -> PolarError | None:
        """Fetch the names once, however many callers ask at the same time; a failure only leaves
        them out, and is logged here unless `log` is off (the caller then decides)."""
        if memory.names_fetch is not None:
            await memory.names_fetch.wait()
            return None
        done = memory.names_fetch = anyio.Event()
        memory.names_fetches += 1
        try:
            memory.names, failure = await self._fetch_names(source, memory.names)
        finally:
            memory.names_fetch = None
            done.set()
        if failure is not None and log:
            self._log_name_failure(failure)
        return failure

    async def _alongside_names(self, source: TokenSource, listing: Awaitable[R]) -> R:
        """Await `listing` while stale benefit names refresh concurrently, so names cost no extra wait.

        When the listing fails too (an expired session fails both), its error is the one message:
        the names' failure is not logged.
        """
        memory = self._memory(source)
        if not self._stale(memory.names):
            return await listing
        results: list[R] = []
        failures: list[PolarError] = []

        async def refresh() -> None:
            failure = await self._refresh_names(source, memory, log=False)
            if failure is not None:
                failures.append(failure)

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(refresh)
                results.append(await listing)
        except ExceptionGroup as errors:
            raise first_error(errors) from None
        for failure in failures:
            self._log_name_failure(failure)
        return results[0]

    async def _fetch_names(self, source: TokenSource, previous: _Names) -> tuple[_Names, PolarError | None]:
        try:
            grants = await self._client.list_all_benefit_grants(source)
        except PolarError as error:
            # Not again before the names go stale: a failing endpoint must not slow every listing.
            return _Names(dict(previous.by_benefit), self._clock(), set(previous.missing)), error
        fetched = {
            grant.benefit_id: BenefitName(
                name=grant.benefit.description if grant.benefit else None,
                seller=grant.benefit.organization.name if grant.benefit and grant.benefit.organization else None,
            )
            for grant in grants
        }
        if self._stale(previous):
            return _Names(fetched, self._clock(), set()), None
        return _Names({**previous.by_benefit, **fetched}, self._clock(), set(previous.missing)), None

    def _log_name_failure(self, error: PolarError) -> None:
        if error.message not in self._logged_name_failures:
            self._logged_name_failures.add(error.message)
            logger.warning("benefit names unavailable, listings go without them: %s", error.message)

    async def find(
        self, source: TokenSource, *, downloadable_id: str | None = None, name: str | None = None
    ) -> Downloadable:
        """One item by id (or file id), or by name, with a link that has time left."""
        with self._forget_if_rejected(source):
            if downloadable_id is not None:
                return await self._find_by_id(source, downloadable_id.strip())
            if name is not None:
                return await self._find_by_name(source, name)
        raise InvalidArgumentError("Give an id or a name.", argument="id_or_name")

    @contextmanager
    def _forget_if_rejected(self, source: TokenSource) -> Generator[None]:
        """Once Polar rejects a principal's session, nothing remembered for it is served again."""
        try:
            yield
        except AuthenticationError:
            self._memories.discard(source.principal)
            raise

    async def _find_by_id(self, source: TokenSource, wanted: str) -> Downloadable:
        memory = self._memory(source)
        known = memory.items.get(memory.by_file_id.get(wanted, wanted))
        if known is not None and self._reusable(memory, known):
            return known
        # Narrow to the benefit we saw it under; if it moved (or we never saw it), scan everything.
        scopes: list[list[str]] = [[known.benefit_id], []] if known is not None else [[]]
        for benefit_ids in scopes:
            for item in await self._scan(source, benefit_ids):
                if wanted in (item.id, item.file.id):
                    return item
        raise ItemNotFoundError(wanted, by="id")

    async def _find_by_name(self, source: TokenSource, name: str) -> Downloadable:
        memory = self._memory(source)
        if memory.snapshot is not None and self._clock() - memory.snapshot_at <= SNAPSHOT_TTL:
            items = [memory.items[i] for i in memory.snapshot if i in memory.items]
        else:
            items = await self._scan(source, ())
        wanted = name.strip()
        needle = wanted.casefold()
        exact = [item for item in items if item.file.name.casefold() == needle]
        matches = exact or [item for item in items if needle in item.file.name.casefold()]
        if not matches:
            raise ItemNotFoundError(wanted[:80], by="name")
        if len(matches) > 1:
            raise AmbiguousNameError(wanted[:80], matches[:MAX_CANDIDATES], len(matches))
        found = matches[0]
        if self._reusable(memory, found):
            return found
        return await self._find_by_id(source, found.id)

    async def _scan(
        self, source: TokenSource, benefit_ids: Sequence[str], on_page: PageHook | None = None
    ) -> list[Downloadable]:
        items = await self._client.list_all_downloadables(source, benefit_ids=benefit_ids, on_page=on_page)
        memory = self._remember(source, items)
        if not benefit_ids:
            memory.snapshot = [item.id for item in items]
            memory.snapshot_at = self._clock()
        return items

    def _memory(self, source: TokenSource) -> _Memory:
        memory = self._memories.get(source.principal)
        if memory is None:
            memory = _Memory()
            self._memories.put(source.principal, memory)
        return memory

    def _remember(self, source: TokenSource, items: Sequence[Downloadable]) -> _Memory:
        """Keep what a listing Polar just answered taught: its items, and that the token still works."""
        memory = self._memory(source)
        memory.accepted_at = self._clock()
        for item in items:
            memory.items[item.id] = item
            memory.by_file_id[item.file.id] = item.id
        if len(memory.items) > self.MAX_ITEMS_PER_PRINCIPAL:
            # Rare (a catalog larger than the bound): start over rather than track recency per item.
            memory.items = {item.id: item for item in items}
            memory.by_file_id = {item.file.id: item.id for item in items}
            memory.snapshot = None
        return memory

    def _reusable(self, memory: _Memory, item: Downloadable) -> bool:
        recently_accepted = self._clock() - memory.accepted_at <= ACCEPTED_TTL
        return recently_accepted and self.link_is_fresh(item)

    def last_scan(self, source: TokenSource) -> list[Downloadable]:
        """The items of the last whole-catalog scan for `source`'s principal, as remembered (maybe
        none): what the next scan will most likely list again."""
        memory = self._memories.get(source.principal)
        if memory is None or memory.snapshot is None:
            return []
        return [memory.items[item_id] for item_id in memory.snapshot if item_id in memory.items]

    def link_is_fresh(self, item: Downloadable) -> bool:
        """Whether the item's link has more than LINK_REUSE_MARGIN seconds left, by this catalog's wall clock."""
        if not item.file.download.url:
            return False  # the link was dropped as unusable: only a new listing can bring a good one
        left = item.file.download.expires_at.timestamp() - self._wall_clock()
        return left > LINK_REUSE_MARGIN
