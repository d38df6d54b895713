"""The double's data, modelled as Polar's: organizations, customers and members, grants, benefits, files.

Also the state a test inspects or steers: the clock, sessions and organization tokens, sign-in codes and
the e-mails that carried them, the rate limits, fault switches, and what was requested and downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, overload

from polar_mcp.double.blobs import Blob
from polar_mcp.double.faults import Faults

SESSION_TTL = 3600.0
CODE_TTL = 30 * 60.0
SIGNIN_BLOCK = 15 * 60
"""Seconds Polar refuses an identity on its whole API once it went over the sign-in limit."""
CUSTOMER_SESSIONS_WRITE = "customer_sessions:write"
CUSTOMERS_READ = "customers:read"
MEMBERS_READ = "members:read"

Visibility = Literal["public", "private"]
CustomerType = Literal["individual", "team"]
MemberRole = Literal["owner", "billing_manager", "member"]

_TOKEN_ALPHABET = string.ascii_letters + string.digits
_CODE_ALPHABET = string.ascii_uppercase + string.digits


@functools.lru_cache(maxsize=1 << 16)
def stable_uuid(key: str) -> str:
    """A UUID4-shaped id derived from `key`, so rebuilt catalogs keep their ids.

    Memoized: every listing derives an id per row of the whole catalog, which made the double's own
    CPU, not the client, the limit of a concurrent whole-catalog scan.
    """
    return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4))


@functools.lru_cache(maxsize=1 << 14)
def isoformat(timestamp: float) -> str:
    """Epoch seconds as Polar writes datetimes (UTC, `Z`)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=1 << 14)
def readable_size(size: int) -> str:
    """Polar's `size_readable`: 1024 steps, one decimal ("976.6 KB" for 1,000,000 bytes)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PB"


@dataclass
class Organization:
    id: str
    name: str
    slug: str
    uses_members: bool
    created_at: float


@dataclass
class Customer:
    id: str
    organization_id: str
    email: str
    name: str
    external_id: str | None
    type: CustomerType
    created_at: float
    email_verified: bool = False


@dataclass
class Member:
    id: str
    customer_id: str
    email: str
    name: str
    external_id: str | None
    role: MemberRole
    created_at: float


@dataclass
class File:
    """An uploaded file; the flags say why Polar would hide it from customers."""

    id: str
    organization_id: str
    name: str
    mime_type: str
    blob: Blob
    created_at: float
    version: str | None = None
    checksums: bool = True
    """False when the uploader sent no checksum (Polar never computes one): the listing shows nulls."""
    is_uploaded: bool = True
    is_enabled: bool = True
    deleted: bool = False
    malware: bool = False

    @property
    def size(self) -> int:
        return self.blob.size

    @property
    def key(self) -> str:
        """The storage object's key, which Polar also lists as the file's `path`."""
        return f"{self.organization_id}/{self.id}/{self.name}"

    @property
    def storage_version(self) -> str:
        """The storage object's version id."""
        return stable_uuid(f"object-version:{self.id}").replace("-", "")

    @property
    def downloadable(self) -> bool:
        return self.is_uploaded and self.is_enabled and not self.deleted and not self.malware


@dataclass
class Benefit:
    id: str
    organization_id: str
    description: str
    """The name customers see (Polar caps it at 42 characters)."""
    type: str
    file_ids: list[str]
    visibility: Visibility
    position: int
    """Order of the benefit within its product, the default sort of benefit grants."""
    created_at: float
    deleted: bool = False


@dataclass
class Grant:
    id: str
    customer_id: str
    benefit_id: str
    granted_at: float
    member_id: str | None = None
    """Set for a seat grant: only that member of a team customer sees it."""
    revoked_at: float | None = None
    order_id: str | None = None
    subscription_id: str | None = None
    in_benefit_grants: bool = True
    """False while Polar's benefit-grants listing lags behind this new purchase: its files are listed,
    its benefit not yet, so they have no name. The one way besides a failing call to get nameless files."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass
class Session:
    id: str
    token: str
    customer_id: str
    member_id: str | None
    created_at: float
    expires_at: float
    return_url: str | None

    @property
    def subject(self) -> str:
        """Whose rate-limit bucket the session draws from."""
        return self.member_id or self.customer_id


@dataclass
class SignInCode:
    """What a code e-mailed for sign-in opens; Polar keeps it under a keyed hash of the code only."""

    customer_id: str
    member_id: str | None
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class Email:
    """An e-mail the double would have sent: the only place a sign-in code appears."""

    to: str
    subject: str
    text: str
    code: str
    organization_id: str
    sent_at: float


@dataclass(frozen=True)
class OrgToken:
    token: str
    organization_id: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the double saw it, without secrets: the token is cut to its kind prefix."""

    method: str
    path: str
    query: str
    token_prefix: str | None
    status: int
    """0 when the connection was dropped without an answer."""


@dataclass(frozen=True)
class Listed:
    """One row of the downloadables listing."""

    id: str
    grant: Grant
    benefit: Benefit
    file: File


class Rows(Sequence[Listed]):
    """Listing rows built only when read: a page of a big catalog costs a page, not the catalog.

    Benchmarks page through thousands of files; building every row for every page made the double,
    not the client under test, the bottleneck.
    """

    def __init__(self, customer_id: str, rows: list[tuple[Grant, Benefit, File]]) -> None:
        self._customer_id = customer_id
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Listed: ...
    @overload
    def __getitem__(self, index: slice) -> list[Listed]: ...
    def __getitem__(self, index: int | slice) -> Listed | list[Listed]:
        if isinstance(index, slice):
            return [self._listed(*row) for row in self._rows[index]]
        return self._listed(*self._rows[index])

    def _listed(self, grant: Grant, benefit: Benefit, file: File) -> Listed:
        row_id = stable_uuid(f"downloadable:{self._customer_id}:{benefit.id}:{file.id}")
        return Listed(row_id, grant, benefit, file)


@dataclass
class Store:
    """Everything the double knows; mutate it freely between requests."""

    clock: Callable[[], float] = time.time
    rate_limit_per_minute: int | None = None
    """Requests per minute per customer or member (None: no limit)."""
    signin_per_minute: int | None = 6
    """Sign-in requests (code request and authenticate together) a minute per identity (None: no limit)."""
    signin_per_hour: int | None = 12
    faults: Faults = field(default_factory=Faults)
    clock_offset: float = 0.0
    """Added to `clock`; the admin route moves it so a subprocess double can be aged."""

    organizations: dict[str, Organization] = field(default_factory=dict[str, Organization])
    customers: dict[str, Customer] = field(default_factory=dict[str, Customer])
    members: dict[str, Member] = field(default_factory=dict[str, Member])
    benefits: dict[str, Benefit] = field(default_factory=dict[str, Benefit])
    files: dict[str, File] = field(default_factory=dict[str, File])
    grants: dict[str, Grant] = field(default_factory=dict[str, Grant])
    sessions: dict[str, Session] = field(default_factory=dict[str, Session])
    org_tokens: dict[str, OrgToken] = field(default_factory=dict[str, OrgToken])
    codes: dict[str, SignInCode] = field(default_factory=dict[str, SignInCode], repr=False)
    """Sign-in codes by keyed hash."""
    outbox: list[Email] = field(default_factory=list[Email])
    links: dict[str, tuple[str, str, str]] = field(default_factory=dict[str, tuple[str, str, str]], repr=False)
    """What each minted downloadable id opens: (customer id, benefit id, file id)."""

    requests: list[RequestRecord] = field(default_factory=list[RequestRecord])
    in_flight: int = 0
    """Requests being answered now."""
    peak_in_flight: int = 0
    """The most requests answered at once since the store was made or `peak_in_flight` was set to 0."""
    download_counts: Counter[str] = field(default_factory=Counter[str])
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Signs download links and storage URLs."""

    _windows: dict[str, tuple[int, int]] = field(default_factory=dict[str, tuple[int, int]], repr=False)
    _signin_windows: dict[tuple[str, int], tuple[int, int]] = field(
        default_factory=dict[tuple[str, int], tuple[int, int]], repr=False
    )
    _blocked: dict[str, float] = field(default_factory=dict[str, float], repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        """The store's current time in epoch seconds."""
        return self.clock() + self.clock_offset

    # Building a catalog -------------------------------------------------------------------------

    def add_organization(self, name: str, slug: str, *, uses_members: bool = True) -> Organization:
        """Add an organization; with members (Polar's default for new ones) its sessions are `polar_mst_`."""
        org = Organization(stable_uuid(f"org:{slug}"), name, slug, uses_members, self.now())
        self.organizations[org.id] = org
        return org

    def add_customer(
        self,
        organization: Organization,
        email: str,
        name: str,
        *,
        external_id: str | None = None,
        type: CustomerType = "individual",
    ) -> Customer:
        """Add a customer; in an organization using members an individual gets its owner member."""
        customer = Customer(
            stable_uuid(f"customer:{organization.id}:{email}"),
            organization.id,
            email,
            name,
            external_id,
            type,
            self.now(),
        )
        self.customers[customer.id] = customer
        if organization.uses_members and type == "individual":
            self.add_member(customer, email, name, role="owner")
        return customer

    def add_member(
        self,
        customer: Customer,
        email: str,
        name: str,
        *,
        external_id: str | None = None,
        role: MemberRole = "member",
    ) -> Member:
        """Add a member (a seat) to a customer."""
        member = Member(
            stable_uuid(f"member:{customer.id}:{email}"),
            customer.id,
            email,
            name,
            external_id,
            role,
            self.now(),
        )
        self.members[member.id] = member
        return member

    def add_file(
        self,
        organization: Organization,
        name: str,
        mime_type: str,
        blob: Blob,
        *,
        version: str | None = None,
        checksums: bool = True,
    ) -> File:
        """Add an uploaded file; set its hiding flags (deleted, malware, ...) on the result."""
        file = File(
            stable_uuid(f"file:{organization.id}:{len(self.files)}:{name}"),
            organization.id,
            name,
            mime_type,
            blob,
            self.now(),
            version=version,
            checksums=checksums,
        )
        self.files[file.id] = file
        return file

    def add_benefit(
        self,
        organization: Organization,
        description: str,
        files: Iterable[File] = (),
        *,
        type: str = "downloadables",
        visibility: Visibility = "public",
    ) -> Benefit:
        """Add a benefit; benefits of a product keep the order they are added in."""
        if type == "downloadables" and visibility != "public":
            raise ValueError("Polar refuses a visibility other than public for a downloadables benefit")
        position = sum(1 for b in self.benefits.values() if b.organization_id == organization.id)
        benefit = Benefit(
            stable_uuid(f"benefit:{organization.id}:{description}"),
            organization.id,
            description,
            type,
            [f.id for f in files],
            visibility,
            position,
            self.now(),
        )
        self.benefits[benefit.id] = benefit
        return benefit

    def grant(
        self,
        customer: Customer,
        benefit: Benefit,
        granted_at: float,
        *,
        member: Member | None = None,
        revoked_at: float | None = None,
    ) -> Grant:
        """Grant a benefit to a customer (or to one member of a team customer)."""
        key = f"{customer.id}:{benefit.id}:{member.id if member else ''}"
        grant = Grant(
            stable_uuid(f"grant:{key}"),
            customer.id,
            benefit.id,
            granted_at,
            member.id if member else None,
            revoked_at,
            order_id=stable_uuid(f"order:{key}"),
        )
        self.grants[grant.id] = grant
        return grant

    def add_org_token(
        self, token: str, *, organization_id: str, scopes: Iterable[str] = (CUSTOMER_SESSIONS_WRITE,)
    ) -> None:
        """Accept `token` (a `polar_oat_...`) as an organization access token with `scopes`."""
        self.org_tokens[token] = OrgToken(token, organization_id, frozenset(scopes))

    def customer_by_external_id(self, external_id: str, organization_id: str | None = None) -> Customer:
        """The customer with this external id (within one organization when given); KeyError if none."""
        for customer in self.customers.values():
            if customer.external_id == external_id and organization_id in (None, customer.organization_id):
                return customer
        raise KeyError(external_id)

    def members_of(self, customer_id: str) -> list[Member]:
        """A customer's members, owner first."""
        found = [m for m in self.members.values() if m.customer_id == customer_id]
        return sorted(found, key=lambda m: m.role != "owner")

    def customers_with_email(self, organization: Organization, email: str) -> list[tuple[Customer, Member | None]]:
        """The organization's customers this e-mail (any case) belongs to, with the member it names.

        In an organization with members the e-mail may be a member's, so one address can belong to
        several customers (a team and the person's own account).
        """
        wanted = email.casefold()
        found: dict[str, tuple[Customer, Member | None]] = {}
        for customer in self.customers.values():
            if customer.organization_id != organization.id:
                continue
            members = self.members_of(customer.id) if organization.uses_members else []
            member = next((m for m in members if m.email.casefold() == wanted), None)
            if member is not None or customer.email.casefold() == wanted:
                found[customer.id] = (customer, member or next(iter(members), None))
        return list(found.values())

    # Sessions -----------------------------------------------------------------------------------

    def issue_session(
        self,
        customer_id: str,
        member_id: str | None = None,
        ttl: float = SESSION_TTL,
        return_url: str | None = None,
    ) -> str:
        """Mint a session token directly (tests, demo): `polar_mst_` for a member, else `polar_cst_`."""
        return self.open_session(customer_id, member_id, ttl, return_url).token

    def open_session(
        self, customer_id: str, member_id: str | None, ttl: float = SESSION_TTL, return_url: str | None = None
    ) -> Session:
        """Mint a session and return all of it."""
        if customer_id not in self.customers:
            raise KeyError(customer_id)
        if member_id is not None and self.members[member_id].customer_id != customer_id:
            raise ValueError(f"member {member_id} is not a member of customer {customer_id}")
        prefix = "polar_mst_" if member_id else "polar_cst_"
        token = prefix + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(43))
        now = self.now()
        session = Session(str(uuid.uuid4()), token, customer_id, member_id, now, now + ttl, return_url)
        self.sessions[token] = session
        return session

    def send_code(self, organization: Organization, customer: Customer, member: Member | None, to: str) -> None:
        """Create a sign-in code for this customer (and member) and put the e-mail carrying it in the outbox."""
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))
        now = self.now()
        self.codes[self._code_key(code)] = SignInCode(customer.id, member.id if member else None, now + CODE_TTL)
        subject = f"Access your {organization.name} purchases"
        text = (
            f"Here is your code to access your {organization.name} purchases: {code}\n"
            f"It is valid for 30 minutes. You can also open /{organization.slug}/portal/authenticate?code={code}\n"
        )
        self.outbox.append(Email(to, subject, text, code, organization.id, now))

    def redeem_code(self, code: str) -> Session | None:
        """Exchange a sign-in code for a session, once; None for a code unknown, used or expired."""
        with self._lock:
            entry = self.codes.get(self._code_key(code))
            if entry is None or entry.used or entry.expires_at <= self.now():
                return None
            entry.used = True
        self.customers[entry.customer_id].email_verified = True
        return self.open_session(entry.customer_id, entry.member_id)

    def last_code(self, to: str) -> str:
        """The code of the latest e-mail sent to `to` (any case); KeyError if none was."""
        for email in reversed(self.outbox):
            if email.to.casefold() == to.casefold():
                return email.code
        raise KeyError(to)

    def _code_key(self, code: str) -> str:
        return hmac.new(self.secret, f"sign-in-code:{code}".encode(), hashlib.sha256).hexdigest()

    def live_session(self, token: str) -> Session | None:
        """The session of `token` if it exists and has not expired."""
        session = self.sessions.get(token)
        if session is None or session.expires_at <= self.now():
            return None
        return session

    # Queries ------------------------------------------------------------------------------------

    def grants_of(self, session: Session) -> list[Grant]:
        """Active grants the session can see, newest first (ties keep insertion order)."""
        found = [
            g
            for g in self.grants.values()
            if g.customer_id == session.customer_id
            and g.active
            and g.member_id in (None, session.member_id)
            and not self.benefits[g.benefit_id].deleted
        ]
        return sorted(found, key=lambda g: g.granted_at, reverse=True)

    def downloadables(self, session: Session, benefit_ids: Iterable[str] = ()) -> Rows:
        """The downloadables listing: files of active grants, newest grant first, hidden files left out."""
        wanted = set(benefit_ids)
        files = self.files
        rows: list[tuple[Grant, Benefit, File]] = []
        for grant in self.grants_of(session):
            benefit = self.benefits[grant.benefit_id]
            if benefit.type != "downloadables" or (wanted and benefit.id not in wanted):
                continue
            # A list comprehension, not a generator: a whole-catalog scan asks for every row once per page.
            rows += [(grant, benefit, file) for file in map(files.__getitem__, benefit.file_ids) if file.downloadable]
        return Rows(session.customer_id, rows)

    # Counters -----------------------------------------------------------------------------------

    def hit_rate_limit(self, subject: str) -> int | None:
        """Count a request for `subject`; seconds to wait if it is over the per-minute limit."""
        limit = self.rate_limit_per_minute
        if limit is None:
            return None
        now = self.now()
        window = math.floor(now / 60)
        with self._lock:
            current, count = self._windows.get(subject, (window, 0))
            count = count + 1 if current == window else 1
            self._windows[subject] = (window, count)
        if count <= limit:
            return None
        return max(1, math.ceil((window + 1) * 60 - now))

    def hit_signin_limit(self, identity: str) -> bool:
        """Count a sign-in request for `identity`; past a limit, block the identity and answer True."""
        now = self.now()
        limits = ((60, self.signin_per_minute), (3600, self.signin_per_hour))
        over = False
        with self._lock:
            for period, limit in limits:
                if limit is None:
                    continue
                window = math.floor(now / period)
                current, count = self._signin_windows.get((identity, period), (window, 0))
                count = count + 1 if current == window else 1
                self._signin_windows[(identity, period)] = (window, count)
                over = over or count > limit
            if over:
                self._blocked[identity] = now + SIGNIN_BLOCK
        return over

    def blocked_for(self, identities: Iterable[str]) -> int | None:
        """Seconds until the longest block among `identities` ends, None when none is blocked."""
        now = self.now()
        with self._lock:
            left = max((self._blocked.get(i, now) - now for i in identities), default=0.0)
        return math.ceil(left) if left > 0 else None

    def request_started(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def request_ended(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def record(self, record: RequestRecord) -> None:
        """Keep a request in the log."""
        with self._lock:
            self.requests.append(record)

    def request_counts(self) -> dict[str, int]:
        """Requests received per path (download links counted under one templated path)."""
        with self._lock:
            return dict(Counter(r.path for r in self.requests))
