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
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from polar_mcp.cache import BoundedCache
from polar_mcp.polar.client import PolarClient, first_error
from polar_mcp.polar.errors import AuthenticationError, PolarError
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.sessions import TokenSource

logger = logging.getLogger(__name__)
_logged_name_failures: set[str] = set()
R = TypeVar("R")

LINK_REUSE_MARGIN = 300.0
"""A remembered link is reused only while it has more than this many seconds left."""

NAMES_TTL = 300.0
"""How long benefit names are trusted before the benefit grants are fetched again."""

SNAPSHOT_TTL = 60.0
"""How long a whole-catalog scan answers name lookups before the catalog is scanned again."""

MAX_CANDIDATES = 10


class CatalogError(Exception):
    """A lookup that cannot be answered as asked; `message` says what to do instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(CatalogError):
    """An argument that cannot name anything in a catalog; `wanted` is the offending value."""

    def __init__(self, message: str, wanted: str = "") -> None:
        super().__init__(message)
        self.wanted = wanted


MAX_BENEFIT_IDS = 50


def parse_benefit_ids(values: Sequence[str]) -> list[str]:
    """Benefit ids in canonical form, de-duplicated; refused before anything is sent to Polar."""
    if len(values) > MAX_BENEFIT_IDS:
        raise InvalidArgumentError(f"Give at most {MAX_BENEFIT_IDS} benefit ids.")
    cleaned: list[str] = []
    for raw in values:
        try:
            cleaned.append(str(uuid.UUID(raw.strip())))
        except ValueError:
            raise InvalidArgumentError(
                f"benefit_id {raw.strip()[:60]!r} is not a benefit id: use a benefit_id from "
                "list_downloadables, or query to search by file or benefit name.",
                raw.strip()[:60],
            ) from None
    return list(dict.fromkeys(cleaned))


class ItemNotFoundError(CatalogError):
    """No item has that id or name; `wanted` is what was looked for."""

    def __init__(self, message: str, wanted: str) -> None:
        super().__init__(message)
        self.wanted = wanted


class AmbiguousNameError(CatalogError):
    """Several items match a name; `candidates` are the first few of them."""

    def __init__(self, message: str, candidates: list[Downloadable], wanted: str, matches: int) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.matches = matches
        self.candidates = candidates


@dataclass(frozen=True)
class Listing:
    """One page of results, from Polar's pages or from a filtered whole-catalog search."""

    items: list[Downloadable]
    page: int
    limit: int
    total_count: int
    max_page: int
    names: Mapping[str, BenefitName] = field(default_factory=dict[str, "BenefitName"])

    @property
    def has_more(self) -> bool:
        return self.page < self.max_page


@dataclass(frozen=True)
class BenefitName:
    """What a customer calls a benefit, and who sold it (either may be unknown)."""

    name: str | None
    seller: str | None


@dataclass
class _Names:
    by_benefit: dict[str, BenefitName] = field(default_factory=dict[str, BenefitName])
    fetched_at: float = -math.inf
    rechecked: set[str] = field(default_factory=set[str])
    """Benefits still without a name after a fetch: not looked for again in this lifetime."""


@dataclass
class _Memory:
    """What one principal's listings taught us."""

    names: _Names = field(default_factory=_Names)
    names_lock: anyio.Lock = field(default_factory=anyio.Lock)
    name_walks: int = 0
    """Benefit-grants walks started so far: a listing skips its own if one started meanwhile."""

    items: dict[str, Downloadable] = field(default_factory=dict[str, Downloadable])
    by_file_id: dict[str, str] = field(default_factory=dict[str, str])
    snapshot: list[str] | None = None
    snapshot_at: float = -math.inf


def _searchable(item: Downloadable, names: Mapping[str, BenefitName]) -> str:
    benefit = names.get(item.benefit_id)
    return f"{item.file.name}\n{benefit.name if benefit and benefit.name else ''}".casefold()


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

    @property
    def client(self) -> PolarClient:
        return self._client

    async def list(
        self,
        source: TokenSource,
        *,
        benefit_ids: Sequence[str] = (),
        page: int = 1,
        limit: int = 20,
        query: str | None = None,
    ) -> Listing:
        """A page of the catalog; with `query`, a page of the matches (file or benefit name) of all of it."""
        with self._forget_if_rejected(source):
            return await self._list(source, benefit_ids=benefit_ids, page=page, limit=limit, query=query)

    async def _list(
        self, source: TokenSource, *, benefit_ids: Sequence[str], page: int, limit: int, query: str | None
    ) -> Listing:
        walks = self._memory(source).name_walks
        if query is None:
            result = await self._alongside_names(
                source, self._client.list_downloadables(source, page=page, limit=limit, benefit_ids=benefit_ids)
            )
            self._remember(source, result.items)
            names = await self._names(source, {item.benefit_id for item in result.items}, walks_before=walks)
            pagination = result.pagination
            return Listing(list(result.items), page, limit, pagination.total_count, pagination.max_page, names)
        items = await self._alongside_names(source, self._scan(source, benefit_ids))
        names = await self._names(source, {item.benefit_id for item in items}, walks_before=walks)
        needle = query.casefold().strip()
        matches = [item for item in items if needle in _searchable(item, names)]
        start = (page - 1) * limit
        pages = math.ceil(len(matches) / limit)
        return Listing(matches[start : start + limit], page, limit, len(matches), pages, names)

    async def benefit_names(self, source: TokenSource, benefit_ids: Iterable[str]) -> dict[str, BenefitName]:
        """Names of these benefits, from the cache, refreshed at most once per lifetime for unknown ids.

        A benefit that is not public never gets a name; a failure to fetch names only leaves them out.
        """
        return await self._names(source, benefit_ids, walks_before=None)

    async def _names(
        self, source: TokenSource, benefit_ids: Iterable[str], *, walks_before: int | None
    ) -> dict[str, BenefitName]:
        """`benefit_names`; a walk started after `walks_before` (the one that ran alongside the
        listing asking) already looked for its unknown benefits: they are not looked for again."""
        memory = self._memory(source)
        wanted = set(benefit_ids)
        async with memory.names_lock:
            names = memory.names
            stale = self._clock() - names.fetched_at > NAMES_TTL
            unknown = wanted - names.by_benefit.keys() - names.rechecked
            walked_meanwhile = walks_before is not None and memory.name_walks > walks_before
            if stale or (unknown and not walked_meanwhile):
                memory.name_walks += 1
                names = memory.names = await self._fetch_names(source, names, stale=stale)
            names.rechecked |= wanted - names.by_benefit.keys()
        return {b: names.by_benefit[b] for b in wanted if b in names.by_benefit}

    async def _alongside_names(self, source: TokenSource, listing: Awaitable[R]) -> R:
        """Await `listing` while stale benefit names refresh concurrently, so names cost no extra wait."""
        memory = self._memory(source)
        if self._clock() - memory.names.fetched_at <= NAMES_TTL:
            return await listing
        results: list[R] = []
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self.benefit_names, source, ())
                results.append(await listing)
        except ExceptionGroup as failures:
            raise first_error(failures) from None
        return results[0]

    async def _fetch_names(self, source: TokenSource, previous: _Names, *, stale: bool) -> _Names:
        try:
            grants = await self._client.list_all_benefit_grants(source)
        except PolarError as error:
            if error.message not in _logged_name_failures:
                _logged_name_failures.add(error.message)
                logger.warning("benefit names unavailable, listings go without them: %s", error.message)
            # Not again before the cache lifetime ends: a failing endpoint must not slow every listing.
            return _Names(dict(previous.by_benefit), self._clock(), set(previous.rechecked))
        fetched = {
            grant.benefit_id: BenefitName(
                name=grant.benefit.description if grant.benefit else None,
                seller=grant.benefit.organization.name if grant.benefit and grant.benefit.organization else None,
            )
            for grant in grants
        }
        if stale:
            return _Names(fetched, self._clock(), set())
        return _Names({**previous.by_benefit, **fetched}, previous.fetched_at, set(previous.rechecked))

    async def all_items(self, source: TokenSource, *, benefit_ids: Sequence[str] = ()) -> list[Downloadable]:
        """Every item of the catalog (or of some benefits), fetched concurrently."""
        with self._forget_if_rejected(source):
            return await self._scan(source, benefit_ids)

    async def find(
        self, source: TokenSource, *, downloadable_id: str | None = None, name: str | None = None
    ) -> Downloadable:
        """One item by id (or file id), or by name, with a link that has time left."""
        with self._forget_if_rejected(source):
            if downloadable_id is not None:
                return await self._find_by_id(source, downloadable_id.strip())
            if name is not None:
                return await self._find_by_name(source, name)
        raise CatalogError("Give downloadable_id or name.")

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
        if known is not None and self._link_is_fresh(known):
            return known
        # Narrow to the benefit we saw it under; if it moved (or we never saw it), scan everything.
        scopes: list[list[str]] = [[known.benefit_id], []] if known is not None else [[]]
        for benefit_ids in scopes:
            for item in await self._scan(source, benefit_ids):
                if wanted in (item.id, item.file.id):
                    return item
        raise ItemNotFoundError(
            f"No downloadable has the id {wanted!r} in this customer's catalog (it may have been "
            "withdrawn). Call list_downloadables to see current ids, or pass name instead.",
            wanted,
        )

    async def _find_by_name(self, source: TokenSource, name: str) -> Downloadable:
        memory = self._memory(source)
        if memory.snapshot is not None and self._clock() - memory.snapshot_at <= SNAPSHOT_TTL:
            items = [memory.items[i] for i in memory.snapshot if i in memory.items]
        else:
            items = await self._scan(source, ())
        needle = name.strip().casefold()
        exact = [item for item in items if item.file.name.casefold() == needle]
        matches = exact or [item for item in items if needle in item.file.name.casefold()]
        if not matches:
            raise ItemNotFoundError(
                f"No file name matches {name.strip()[:80]!r}. Call list_downloadables (with query) "
                "to see the names and ids of the files.",
                name.strip()[:80],
            )
        if len(matches) > 1:
            raise AmbiguousNameError(
                f"{len(matches)} files match {name.strip()[:80]!r}; call again with downloadable_id.",
                matches[:MAX_CANDIDATES],
                name.strip()[:80],
                len(matches),
            )
        found = matches[0]
        if self._link_is_fresh(found):
            return found
        return await self._find_by_id(source, found.id)

    async def _scan(self, source: TokenSource, benefit_ids: Sequence[str]) -> list[Downloadable]:
        items = await self._client.list_all_downloadables(source, benefit_ids=benefit_ids)
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
        memory = self._memory(source)
        for item in items:
            memory.items[item.id] = item
            memory.by_file_id[item.file.id] = item.id
        if len(memory.items) > self.MAX_ITEMS_PER_PRINCIPAL:
            # Rare (a catalog larger than the bound): start over rather than track recency per item.
            memory.items = {item.id: item for item in items}
            memory.by_file_id = {item.file.id: item.id for item in items}
            memory.snapshot = None
        return memory

    def _link_is_fresh(self, item: Downloadable) -> bool:
        if not item.file.download.url:
            return False  # the link was dropped as unusable: only a new listing can bring a good one
        left = item.file.download.expires_at.timestamp() - self._wall_clock()
        return left > LINK_REUSE_MARGIN
