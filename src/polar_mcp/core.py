"""The one API every front end (MCP tools, CLI, HTTP app) calls: list, find, link, save, check.

Every rule lives here once: which item a call names ("exactly one of id or name", an id else a
name), what a usable link is, how a search matches (file and benefit names, always with names and
sellers attached), where a file is saved. Front ends translate arguments in and word failures out;
they never reach into the catalog or the Polar client.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, NamedTuple

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
from polar_mcp.config import Settings, parse_email, parse_seller
from polar_mcp.failure import Failure
from polar_mcp.polar import signin
from polar_mcp.polar.client import INTROSPECT_PATH, MAX_PAGE_SIZE, HttpClientSource, PolarClient
from polar_mcp.polar.errors import PolarError
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
from polar_mcp.polar.signin import CodeRejectedError, mask_email
from polar_mcp.signin_store import (
    PendingCode,
    Seller,
    SignedIn,
    SignInStore,
    StoredSession,
    StoreError,
    default_config_dir,
)
from polar_mcp.untrusted import clean_text

if TYPE_CHECKING:
    from polar_mcp.download import DownloadRequest, Progress, SavedFile
    from polar_mcp.sync import Plan

logger = logging.getLogger(__name__)

BEARER_RENEW_HINT = f"The bearer session was rejected. {BEARER_HINT}"
STATIC_RENEW_HINT = (
    "Create a new customer session and update POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN "
    "and POLAR_CUSTOMER_ID so polar-mcp renews sessions itself."
)


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


class Health(NamedTuple):
    """What `doctor` reports: the credentials in use, whether Polar answers, and the session's state."""

    credentials: str
    reachable: bool
    configured: bool
    renews: bool
    expires_at: datetime | None = None
    failure: Failure | None = None


class SignInArgumentError(Failure):
    """A sign-in needs a value nobody gave (`missing`), or was given one it cannot use."""

    def __init__(self, argument: Literal["seller", "email", "customer_id"], *, missing: bool, wanted: str = "") -> None:
        what = {"seller": "the seller", "email": "the e-mail", "customer_id": "the customer id"}[argument]
        super().__init__(f"Signing in needs {what}." if missing else f"{wanted!r} is not a usable value for {what}.")
        self.argument = argument
        self.missing = missing
        self.wanted = wanted


class NoPendingCodeError(Failure):
    """A code was given, but no code was asked for here in the last 30 minutes and no seller is known."""

    def __init__(self) -> None:
        super().__init__("No sign-in code was asked for here in the last 30 minutes: ask for one first.")


class SignInUnavailableError(Failure):
    """Signing in with a code is for one person's own machine (stdio, CLI), not the shared HTTP server."""

    def __init__(self) -> None:
        super().__init__("Signing in with an e-mail code is available over stdio and in the CLI only.")


class Credential(NamedTuple):
    """One of the three ways to a session, in order of precedence: whether it is there and used."""

    name: str
    present: bool
    used: bool

    @property
    def absent(self) -> str:
        """How its absence reads: a variable is "not set", the stored sign-in is "none"."""
        return "not set" if self.name.startswith("POLAR_") else "none"


CODE_PATTERN = re.compile(r"[A-Z0-9]{6}")
SESSION_LIFETIME = timedelta(hours=1)
"""Every customer session lives one hour; assumed only if introspection fails right after sign-in."""


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
    stored: StoredSession | None = None
    """The stored sign-in (stdio and CLI only; None over HTTP)."""
    buyer_source: Callable[[], TokenSource] | None = None
    """Hosted sign-in: the signed-in buyer of the current request (the bearer is polar-mcp's own)."""

    def source_for(self, headers: Mapping[str, str] | None) -> TokenSource:
        """An HTTP caller's own bearer token if it sent one, else the configured source."""
        if self.buyer_source is not None:
            return self.buyer_source()
        bearer = bearer_session(headers.get("authorization")) if headers is not None else None
        if bearer is None:
            return self.configured
        return StaticSession(SecretStr(bearer), renew_hint=BEARER_RENEW_HINT)

    def preparations(self) -> tuple[Callable[[], None], ...]:
        """What a first call would do before it could answer, as steps a warm-up runs one at a time
        while the server idles: make the Polar client (nothing is sent) and build the models that
        read Polar's pages, then those that carry the answers."""
        return (self.catalog.client.prepare, present.prepare)

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
        if page < 1 or (limit is not None and not 1 <= limit <= MAX_PAGE_SIZE):
            raise InvalidArgumentError(
                f"The page must be at least 1 and the limit 1 to {MAX_PAGE_SIZE}.", argument="page_or_limit"
            )
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
        directory = self.settings.download_dir or download.default_download_dir()
        limit = self.settings.max_download_size
        # What the last scan listed is looked for while page 1 is on its way: a re-sync's files, mostly.
        expected = [item for item in self.catalog.last_scan(source) if not wanted or item.benefit_id in wanted]
        async with sync.Planner.open(
            directory, request_for=download_request, max_file_bytes=limit, expected=expected
        ) as planner:
            # One scan of the catalog with the benefit names, the same search as `list`; the folder is
            # read and each page's files looked for as the pages arrive, so a re-sync costs about the scan.
            listing = await self.catalog.list(source, benefit_ids=wanted, limit=None, on_page=planner.feed)
            needle = query.strip()
            chosen = matches_query(listing.items, listing.names, needle) if needle else listing.items
            names = {benefit: name.name for benefit, name in listing.names.items() if name.name}
            # Gone files are looked for in the folders of what was synced: the benefits asked for, else those
            # a search matched, else those Polar lists. Not every folder of the record: the same folder may
            # hold what the user bought from another seller, under another session.
            scope = wanted or {item.benefit_id for item in (chosen if needle else listing.items)}
            return await planner.plan(chosen, listing.items, names, scope=scope, dry_run=dry_run)

    async def check(self) -> Health:
        """Whether Polar answers and the session in use is accepted, and until when."""
        renews = _mints(self.configured)
        try:
            signed_in = self.signed_in() if self.settings.mode == "none" else None
        except StoreError as failure:
            return Health(
                describe_credentials(self.settings), reachable=True, configured=True, renews=False, failure=failure
            )
        credentials = describe_credentials(self.settings, signed_in)
        configured = self.settings.mode != "none" or signed_in is not None
        try:
            # Any HTTP answer (even 401 without a token) proves Polar is reachable; nothing is sent but a GET.
            await self.catalog.client.probe(INTROSPECT_PATH)
        except (httpx2.TransportError, TimeoutError):
            return Health(credentials, reachable=False, configured=configured, renews=renews)
        if not configured:
            return Health(credentials, reachable=True, configured=False, renews=False)
        try:
            info = await self.catalog.client.introspect(self.configured)
        except Failure as failure:
            return Health(credentials, reachable=True, configured=True, renews=renews, failure=failure)
        return Health(credentials, reachable=True, configured=True, renews=renews, expires_at=info.expires_at)

    # Signing in with an e-mail code.

    def _store(self) -> StoredSession:
        if self.stored is None:
            raise SignInUnavailableError()
        return self.stored

    def sign_in_defaults(self) -> tuple[str | None, str | None]:
        """The seller and e-mail a sign-in uses when none is given: settings, then the stored ones."""
        stored = self._store()
        api = self.settings.base_url
        known = stored.current() or stored.store.pending(api)
        seller = self.settings.organization or (known.seller.slug or known.seller.id if known else None)
        email = self.settings.customer_email or (known.email if known else None)
        return seller, email

    async def request_code(self, seller: str = "", email: str = "", customer_id: str = "") -> PendingCode:
        """Ask Polar to e-mail a sign-in code; the seller and e-mail default to the settings, then to the
        stored sign-in. Limited locally to 1 a minute and 5 an hour per seller and e-mail."""
        stored = self._store()
        default_seller, default_email = self.sign_in_defaults()
        wanted_seller = _argument(seller, "seller", parse_seller) or default_seller
        if wanted_seller is None:
            raise SignInArgumentError("seller", missing=True)
        wanted_email = _argument(email, "email", parse_email) or default_email
        if wanted_email is None:
            raise SignInArgumentError("email", missing=True)
        chosen = _argument(customer_id, "customer_id", lambda v: str(uuid.UUID(v.strip())))
        who = await self._seller(wanted_seller)
        api = self.settings.base_url
        stored.store.check_limit(api, who, wanted_email)
        organization = signin.Organization(id=who.id, name=who.name, slug=who.slug)
        await signin.request_code(self.catalog.client, organization, wanted_email, customer_id=chosen)
        pending = PendingCode(api, who, wanted_email, chosen, stored.store.now())
        stored.store.code_requested(pending)
        logger.info("asked Polar to e-mail a sign-in code to %s for %s", mask_email(wanted_email), who.name)
        return pending

    async def complete_sign_in(self, code: str, seller: str = "", email: str = "") -> SignedIn:
        """Exchange a code for a session and store it; `seller` and `email` pick among codes asked for."""
        stored = self._store()
        typed = re.sub(r"[\s-]", "", code).upper()
        if not CODE_PATTERN.fullmatch(typed):
            raise CodeRejectedError(malformed=True)
        api = self.settings.base_url
        wanted_seller = _argument(seller, "seller", parse_seller) or self.settings.organization
        wanted_email = _argument(email, "email", parse_email)
        pending = stored.store.pending(api, wanted_seller, wanted_email) or stored.store.pending(api, wanted_seller)
        if pending is not None:
            who = pending.seller
        elif wanted_seller is not None:
            who = await self._seller(wanted_seller)
        else:
            # No code asked for here (or it was used already): the seller signed in at last, if any.
            active = stored.current()
            if active is None:
                raise NoPendingCodeError()
            who = active.seller
        client = self.catalog.client
        stored.store.check_attempts(api)
        stored.store.code_tried(api)
        token = await signin.authenticate(client, typed)
        user = await signin.signed_in_user(client, token)
        now = stored.store.now()
        try:
            expires_at = (await signin.session_expiry(client, token)).expires_at
        except PolarError as error:
            # The code is spent: keep the session rather than lose it over a failed check.
            logger.info("introspection after sign-in failed (%s); assuming the usual hour", error.message)
            expires_at = now + SESSION_LIFETIME
        address = (user.email if user else None) or (pending.email if pending else wanted_email) or ""
        if not address and (active := stored.current()) is not None and active.seller.id == who.id:
            address = active.email
        signed_in = SignedIn(
            api=api,
            seller=who,
            email=address,
            token=token,
            expires_at=expires_at,
            signed_in_at=now,
            name=user.name if user else None,
            kind=user.type if user else None,
            role=user.role if user else None,
        )
        stored.store.save(signed_in)
        stored.reload()
        logger.info("signed in at %s as %s until %s", who.name, mask_email(address), present.utc_iso(expires_at))
        return signed_in

    def sign_out(self, seller: str = "") -> SignedIn | None:
        """Forget the stored sign-in for `seller` (else the active one); what was forgotten, if anything."""
        stored = self._store()
        wanted = _argument(seller, "seller", parse_seller) or self.settings.organization
        gone = stored.store.forget(self.settings.base_url, wanted)
        stored.reload()
        if gone is not None:
            logger.info("signed out of %s (%s)", gone.seller.name, gone.masked_email)
        return gone

    def now(self) -> datetime:
        """The wall clock sign-in expiry is judged by (injected in tests)."""
        return self.stored.store.now() if self.stored is not None else datetime.now(UTC)

    def signed_in(self) -> SignedIn | None:
        """The stored sign-in in use (None when there is none, or over HTTP)."""
        return self.stored.current() if self.stored is not None else None

    def precedence(self) -> list[Credential]:
        """The three ways to a session in order: a session token, minting, the stored sign-in."""
        mode = self.settings.mode
        stored = self.stored is not None and self._quietly(self.stored.current) is not None
        return [
            Credential("POLAR_CUSTOMER_SESSION", self.settings.customer_session is not None, mode == "session"),
            Credential("POLAR_ACCESS_TOKEN", self.settings.access_token is not None, mode == "minted"),
            Credential("stored sign-in", stored, mode == "none" and stored),
        ]

    @staticmethod
    def _quietly(read: Callable[[], SignedIn | None]) -> SignedIn | None:
        try:
            return read()
        except StoreError:
            return None

    async def _seller(self, wanted: str) -> Seller:
        """A seller from its slug (asking Polar) or its id (known from an earlier sign-in, or shown as is)."""
        try:
            organization_id = str(uuid.UUID(wanted))
        except ValueError:
            found = await signin.find_organization(self.catalog.client, wanted)
            return Seller(found.id, found.slug, clean_text(found.name, 80))
        assert self.stored is not None
        for known in (self.stored.current(), self.stored.store.pending(self.settings.base_url, organization_id)):
            if known is not None and known.seller.id == organization_id:
                return known.seller
        return Seller(organization_id, "", f"organization {organization_id}")

    async def _benefit(self, source: TokenSource, item: Downloadable) -> BenefitName | None:
        return (await self.catalog.benefit_names(source, [item.benefit_id])).get(item.benefit_id)


def _argument(
    value: str, argument: Literal["seller", "email", "customer_id"], parse: Callable[[str], str]
) -> str | None:
    """A sign-in argument checked, or None when not given ("" is "not given")."""
    if not value.strip():
        return None
    try:
        return parse(value)
    except ValueError:
        raise SignInArgumentError(argument, missing=False, wanted=clean_text(value, 80)) from None


def _usable(item: Downloadable) -> Downloadable:
    # The models drop a link that is not plain http(s): such an item cannot be linked or saved.
    if not item.file.download.url:
        raise NoUsableLinkError(item)
    return item


@functools.cache
def _download_request_type() -> type[DownloadRequest]:
    # Imported on first use (a start that never downloads does not load the engine), and then only
    # once: a sync asks for one request per file of the library.
    from polar_mcp.download import DownloadRequest

    return DownloadRequest


def download_request(item: Downloadable) -> DownloadRequest:
    """What to fetch for a listing item: its current link, headers, name, size, checksum and versions."""
    modified = item.file.last_modified_at
    return _download_request_type()(
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


def _announce_stored(stored: StoredSession | None) -> SignedIn | None:
    """The stored sign-in, if any; a file that cannot be used is logged here and refused at first use."""
    if stored is None:
        return None
    try:
        return stored.current()
    except StoreError as failure:
        logger.warning("%s", failure.message)
        return None


def describe_credentials(settings: Settings, signed_in: SignedIn | None = None) -> str:
    """Where the session comes from, showing a token's kind (its prefix), never its value."""
    if settings.mode == "session" and settings.customer_session is not None:
        note = " (POLAR_ACCESS_TOKEN ignored)" if settings.access_token is not None else ""
        return f"session from POLAR_CUSTOMER_SESSION, {token_kind(settings.customer_session.get_secret_value())}{note}"
    if settings.mode == "minted" and settings.access_token is not None:
        who = settings.customer_id or settings.external_customer_id
        kind = token_kind(settings.access_token.get_secret_value())
        return f"minted from POLAR_ACCESS_TOKEN ({kind}) for customer {who}"
    if signed_in is not None:
        kind = token_kind(signed_in.token.get_secret_value())
        return f"stored sign-in at {signed_in.seller.name} for {signed_in.masked_email} ({kind})"
    return "none"


ClientFactory = Callable[[HttpClientSource], PolarClient]


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    use_configured_token: bool = True,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    make_client: ClientFactory | None = None,
    stored_sign_in: bool = False,
    clock: Callable[[], float] = time.time,
    buyer_source: Callable[[], TokenSource] | None = None,
) -> AsyncGenerator[Core]:
    """Build the core; its HTTP clients are made on first use and closed on exit.

    `stored_sign_in` (stdio and CLI only) lets the core sign in with an e-mail code and use the
    stored sign-in when no token is configured; `clock` is the wall clock its expiry is judged by.
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
        stored = None
        if stored_sign_in:
            folder = settings.config_dir or default_config_dir(os.environ)
            stored = StoredSession(SignInStore(folder, clock=clock), settings.base_url, settings.organization)
        configured = configured_source(settings, polar, stored) if use_configured_token else BearerRequired()
        yield Core(
            settings=settings,
            catalog=Catalog(polar),
            configured=configured,
            _files=files,
            stored=stored,
            buyer_source=buyer_source,
        )
    finally:
        with anyio.CancelScope(shield=True):
            await http.aclose()
            await files.aclose()


def _mints(source: TokenSource) -> bool:
    from polar_mcp.polar.minting import MintedSession

    return isinstance(source, MintedSession)


def configured_source(settings: Settings, client: PolarClient, stored: StoredSession | None = None) -> TokenSource:
    """The token source the configuration describes, announced once in the log.

    Precedence: POLAR_CUSTOMER_SESSION, then minting with POLAR_ACCESS_TOKEN, then the stored sign-in.
    """
    signed_in = _announce_stored(stored)
    if settings.mode == "session":
        assert settings.customer_session is not None
        if settings.access_token is not None:
            logger.info("POLAR_CUSTOMER_SESSION is set: using it, not minting with POLAR_ACCESS_TOKEN")
        if signed_in is not None:
            logger.info("POLAR_CUSTOMER_SESSION is set: using it, not the stored sign-in")
        return StaticSession(settings.customer_session, renew_hint=STATIC_RENEW_HINT)
    if settings.mode == "minted":
        assert settings.access_token is not None
        # Imported here: a start that does not mint (most stdio hosts) does not load it.
        from polar_mcp.polar.minting import CustomerRef, MintedSession

        customer = CustomerRef(
            customer_id=settings.customer_id,
            external_customer_id=settings.external_customer_id,
            member_id=settings.member_id,
            external_member_id=settings.external_member_id,
        )
        logger.info("minting customer sessions for %s with POLAR_ACCESS_TOKEN", customer.describe())
        if signed_in is not None:
            logger.info("POLAR_ACCESS_TOKEN is set: minting, not using the stored sign-in")
        return MintedSession(client, settings.access_token, customer)
    if stored is not None:
        if signed_in is not None:
            logger.info(
                "no token configured: using the stored sign-in at %s for %s (until %s)",
                signed_in.seller.name,
                signed_in.masked_email,
                present.utc_iso(signed_in.expires_at),
            )
        else:
            logger.info("no token configured and not signed in: sign in with the sign_in tool or `polar-mcp login`")
        return stored
    logger.warning("POLAR_CUSTOMER_SESSION is not set: every tool will answer with how to provide a session token")
    return MissingSession()
