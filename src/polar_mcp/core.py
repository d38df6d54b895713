"""The one API every front end (MCP tools, CLI, HTTP app) calls: list, find, link, save, check.

Every rule lives here once: which item a call names ("exactly one of id or name", an id else a
name), what a usable link is, how a search matches (file and benefit names, always with names and
sellers attached), where a file is saved. Front ends translate arguments in and word failures out;
they never reach into the catalog or the Polar client.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import httpx2
from pydantic import SecretStr

from polar_mcp import present
from polar_mcp.catalog import (
    BenefitName,
    Catalog,
    InvalidArgumentError,
    ItemNotFoundError,
    NoUsableLinkError,
    matches_query,
)
from polar_mcp.catalog import parse_benefit_ids as _parse_benefit_ids
from polar_mcp.config import Settings
from polar_mcp.failure import Failure
from polar_mcp.polar.client import INTROSPECT_PATH, HttpClientSource, PolarClient
from polar_mcp.polar.minting import CustomerRef, MintedSession
from polar_mcp.polar.models import Downloadable
from polar_mcp.polar.sessions import (
    BEARER_HINT,
    BearerRequired,
    MissingSession,
    StaticSession,
    TokenSource,
    bearer_session,
    token_kind,
)

if TYPE_CHECKING:
    from polar_mcp.download import DownloadRequest, Progress, SavedFile
    from polar_mcp.sync import Plan

logger = logging.getLogger(__name__)

BEARER_RENEW_HINT = f"The bearer session was rejected. {BEARER_HINT}"
STATIC_RENEW_HINT = (
    "Create a new customer session and update POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN "
    "and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself."
)


QUERY_HELP = "Part of a file or benefit name; searches every page."
"""What a search matches, said once for every front end (the tool's argument, the CLI's --query)."""


class LazyClient:
    """An `httpx2.AsyncClient` made on first use: building one loads the CA bundle (tens of ms),
    which would otherwise delay every start-up, even one that never calls Polar."""

    def __init__(self, make: Callable[[], httpx2.AsyncClient]) -> None:
        self._make = make
        self._client: httpx2.AsyncClient | None = None

    def __call__(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = self._make()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass(frozen=True)
class Health:
    """What `doctor` reports: the credentials in use, whether Polar answers, and the session's state."""

    credentials: str
    reachable: bool
    configured: bool
    renews: bool
    expires_at: datetime | None = None
    failure: Failure | None = None


def session_bearer(authorization: str | None) -> bool:
    """Whether an `Authorization` header carries a customer or member session token."""
    return bearer_session(authorization) is not None


@dataclass(frozen=True)
class Core:
    """Shared for the life of the process (stdio, CLI) or of the HTTP app."""

    settings: Settings
    catalog: Catalog
    configured: TokenSource
    _files: LazyClient

    def source_for(self, headers: Mapping[str, str] | None) -> TokenSource:
        """An HTTP caller's own bearer token if it sent one, else the configured source."""
        bearer = bearer_session(headers.get("authorization")) if headers is not None else None
        if bearer is None:
            return self.configured
        return StaticSession(SecretStr(bearer), renew_hint=BEARER_RENEW_HINT)

    async def list(
        self,
        source: TokenSource,
        *,
        benefit_ids: Sequence[str] = (),
        page: int = 1,
        limit: int | None = 20,
        query: str = "",
    ) -> present.DownloadablesList:
        """A page of the customer's files (`limit=None`: all of them); `query` searches file and
        benefit names across every page. Benefit ids are checked before anything is sent."""
        wanted = _parse_benefit_ids(benefit_ids)
        listing = await self.catalog.list(
            source, benefit_ids=wanted, page=page, limit=limit, query=query.strip() or None
        )
        return present.downloadables_list(listing)

    async def find(self, source: TokenSource, *, downloadable_id: str = "", name: str = "") -> Downloadable:
        """The item named by exactly one of an id (or file id) and a name, with a usable link."""
        wanted_id, wanted_name = downloadable_id.strip(), name.strip()
        if bool(wanted_id) == bool(wanted_name):
            raise InvalidArgumentError("Give exactly one of an id or a name.", argument="id_or_name")
        if wanted_id:
            item = await self.catalog.find(source, downloadable_id=wanted_id)
        else:
            item = await self.catalog.find(source, name=wanted_name)
        return _usable(item)

    async def find_reference(self, source: TokenSource, reference: str) -> Downloadable:
        """The item `reference` names: an id or file id of the catalog if it is one, else a name."""
        try:
            return await self.find(source, downloadable_id=reference)
        except ItemNotFoundError:
            return await self.find(source, name=reference)

    async def link(self, source: TokenSource, item: Downloadable) -> present.DownloadLink:
        """A link result for `item`, with its benefit's name when Polar told us one."""
        return present.download_link(item, await self._benefit(source, item), now=datetime.now(UTC))

    async def save(
        self, source: TokenSource, item: Downloadable, *, overwrite: bool, progress: Progress
    ) -> present.DownloadedFile:
        """Download `item` into the configured folder, verified."""
        # Loaded on first use: the download engine is not needed to start, list or link.
        from polar_mcp import download

        saved = await download.download_file(
            self._files(),
            download_request(item),
            self.settings.download_dir or download.default_download_dir(),
            overwrite=overwrite,
            max_bytes=self.settings.max_download_size,
            progress=progress,
        )
        return saved_result(saved, await self._benefit(source, item))

    async def sync(
        self, source: TokenSource, *, benefit_ids: Sequence[str] = (), query: str = "", progress: Progress | None = None
    ) -> present.SyncResult:
        """Bring every matching file (all of them when neither filter is given) into the download folder,
        one sub-folder per benefit, fetching only what is missing or changed."""
        from polar_mcp import sync

        plan = await self._plan_sync(source, benefit_ids, query, dry_run=False)

        async def refresh(item: Downloadable) -> Downloadable:
            # Narrowed to the item's benefit by the catalog: every link of that benefit is renewed at once.
            return await self.catalog.find(source, downloadable_id=item.id)

        outcomes = await sync.run(
            self._files(),
            plan,
            request_for=download_request,
            fresh=self.catalog.link_is_fresh,
            refresh=refresh,
            concurrency=self.settings.download_concurrency,
            max_file_bytes=self.settings.max_download_size,
            max_total_bytes=self.settings.max_sync_size,
            progress=progress,
        )
        return present.sync_result(plan, outcomes)

    async def plan_sync(
        self, source: TokenSource, *, benefit_ids: Sequence[str] = (), query: str = ""
    ) -> present.SyncPlan:
        """What `sync` would fetch, refused as it would be, without opening any link or writing anything."""
        from polar_mcp import sync

        plan = await self._plan_sync(source, benefit_ids, query, dry_run=True)
        sync.check_limits(plan, self.settings.max_sync_size)
        return present.sync_plan(plan)

    async def _plan_sync(self, source: TokenSource, benefit_ids: Sequence[str], query: str, *, dry_run: bool) -> Plan:
        from polar_mcp import download, sync

        wanted = _parse_benefit_ids(benefit_ids)
        # One scan of the catalog with the benefit names, the same search as `list`.
        listing = await self.catalog.list(source, benefit_ids=wanted, limit=None)
        needle = query.strip()
        chosen = matches_query(listing.items, listing.names, needle) if needle else listing.items
        names = {benefit: name.name for benefit, name in listing.names.items() if name.name}
        # Gone files are looked for in the folders of what was synced: the benefits asked for, the
        # benefits a search matched, or every folder of the record.
        scope = wanted or ({item.benefit_id for item in chosen} if needle else None)
        return await sync.plan(
            self.settings.download_dir or download.default_download_dir(),
            chosen,
            listing.items,
            names,
            request_for=download_request,
            scope=scope,
            max_file_bytes=self.settings.max_download_size,
            dry_run=dry_run,
        )

    async def check(self) -> Health:
        """Whether Polar answers and the configured session is accepted, and until when."""
        credentials = describe_credentials(self.settings)
        renews = isinstance(self.configured, MintedSession)
        try:
            # Any HTTP answer (even 401 without a token) proves Polar is reachable; nothing is sent but a GET.
            await self.catalog.client.probe(INTROSPECT_PATH)
        except (httpx2.TransportError, TimeoutError):
            return Health(credentials, reachable=False, configured=self.settings.mode != "none", renews=renews)
        if self.settings.mode == "none":
            return Health(credentials, reachable=True, configured=False, renews=False)
        try:
            info = await self.catalog.client.introspect(self.configured)
        except Failure as failure:
            return Health(credentials, reachable=True, configured=True, renews=renews, failure=failure)
        return Health(credentials, reachable=True, configured=True, renews=renews, expires_at=info.expires_at)

    async def _benefit(self, source: TokenSource, item: Downloadable) -> BenefitName | None:
        return (await self.catalog.benefit_names(source, [item.benefit_id])).get(item.benefit_id)


def _usable(item: Downloadable) -> Downloadable:
    # The models drop a link that is not plain http(s): such an item cannot be linked or saved.
    if not item.file.download.url:
        raise NoUsableLinkError(item)
    return item


def download_request(item: Downloadable) -> DownloadRequest:
    """What to fetch for a listing item: its current link, headers, name, size, checksum and versions."""
    from polar_mcp.download import DownloadRequest

    modified = item.file.last_modified_at
    return DownloadRequest(
        url=item.file.download.url,
        headers=dict(item.file.download.headers),
        name=item.file.name,
        size_bytes=item.file.size,
        sha256=item.file.sha256,
        file_id=item.file.id,
        version=item.file.version,
        last_modified=modified.isoformat() if modified else None,
        storage_version=item.file.storage_version,
    )


def saved_result(saved: SavedFile, benefit: BenefitName | None) -> present.DownloadedFile:
    """The tool's and the CLI's structured result for a saved file."""
    return present.DownloadedFile(
        **present.benefit_keys(benefit),
        path=str(saved.path),
        name=saved.name,
        size_bytes=saved.size_bytes,
        sha256=saved.sha256,
        verified=saved.verified,
        skipped=saved.skipped,
    )


def describe_credentials(settings: Settings) -> str:
    """Where the session comes from, showing a token's kind (its prefix), never its value."""
    if settings.mode == "session" and settings.customer_session is not None:
        note = " (POLAR_ACCESS_TOKEN ignored)" if settings.access_token is not None else ""
        return f"session from POLAR_CUSTOMER_SESSION, {token_kind(settings.customer_session.get_secret_value())}{note}"
    if settings.mode == "minted" and settings.access_token is not None:
        who = settings.customer_id or settings.external_customer_id
        kind = token_kind(settings.access_token.get_secret_value())
        return f"minted from POLAR_ACCESS_TOKEN ({kind}) for customer {who}"
    return "none"


ClientFactory = Callable[[HttpClientSource], PolarClient]


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    use_configured_token: bool = True,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: ClientFactory | None = None,
) -> AsyncGenerator[Core]:
    """Build the core; its HTTP clients are made on first use and closed on exit.

    Tests inject a transport or a whole client factory.
    """
    # httpx2 logs every request URL at INFO (and MCPServer sets the root logger to INFO): signed
    # download links are URLs. Every entry point (stdio, ASGI, CLI) opens the core, so quiet it here.
    for noisy in ("httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tls = functools.cache(httpx2.create_ssl_context)  # one TLS context for both clients, made once

    def context_for(base_url: str) -> ssl.SSLContext:
        # A plain-http upstream (a local proxy, the double) never needs the CA bundle: its client gets
        # a context that trusts nothing, so any https it were sent to would fail closed.
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if base_url.startswith("http://") else tls()

    def client(base_url: str) -> LazyClient:
        return LazyClient(
            lambda: PolarClient.new_http_client(
                base_url, settings.timeout, transport=http_transport, verify=context_for(base_url)
            )
        )

    # The file client has no base URL and no credentials, so a session token can never reach storage.
    http, files = client(settings.base_url), client("")
    try:
        polar = (
            make_client(http)
            if make_client is not None
            else PolarClient(http, timeout=settings.timeout, polar_version=settings.api_version)
        )
        configured = configured_source(settings, polar) if use_configured_token else BearerRequired()
        yield Core(settings=settings, catalog=Catalog(polar), configured=configured, _files=files)
    finally:
        with anyio.CancelScope(shield=True):
            await http.aclose()
            await files.aclose()


def configured_source(settings: Settings, client: PolarClient) -> TokenSource:
    """The token source the configuration describes, announced once in the log."""
    if settings.mode == "session":
        assert settings.customer_session is not None
        if settings.access_token is not None:
            logger.info("POLAR_CUSTOMER_SESSION is set: using it, not minting with POLAR_ACCESS_TOKEN")
        return StaticSession(settings.customer_session, renew_hint=STATIC_RENEW_HINT)
    if settings.mode == "minted":
        assert settings.access_token is not None
        customer = CustomerRef(
            customer_id=settings.customer_id,
            external_customer_id=settings.external_customer_id,
            member_id=settings.member_id,
            external_member_id=settings.external_member_id,
        )
        logger.info("minting customer sessions for %s with POLAR_ACCESS_TOKEN", customer.describe())
        return MintedSession(client, settings.access_token, customer)
    logger.warning("POLAR_CUSTOMER_SESSION is not set: every tool will answer with how to provide a session token")
    return MissingSession()
