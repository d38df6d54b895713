"""The double's API origin: Polar's customer-portal and merchant routes, signed download links, admin routes.

File contents are served by another origin (`storage.py`), as Polar's links redirect to S3.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from enum import StrEnum
from http import HTTPStatus
from typing import Annotated, Any, cast
from urllib.parse import quote
from uuid import UUID

from pydantic import UUID4, BaseModel, Field, TypeAdapter
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Scope, Send

from polar_mcp.double.answers import (
    Checker,
    Reject,
    as_list,
    customer_json,
    error,
    insufficient_scope,
    invalid_token,
    json_body,
    member_json,
    organization_json,
    paginate,
    polar_validation_error,
    rate_limited,
    unauthorized,
    validated,
)
from polar_mcp.double.layer import FaultyApp, bearer
from polar_mcp.double.signin import SignIn
from polar_mcp.double.signing import LINK_TTL, BadSignatureError, ExpiredError, presign, read_link, sign_id_link
from polar_mcp.double.store import (
    CUSTOMER_SESSIONS_WRITE,
    CUSTOMERS_READ,
    MEMBERS_READ,
    SESSION_TTL,
    Customer,
    Grant,
    Listed,
    Member,
    Organization,
    OrgToken,
    Session,
    Store,
    isoformat,
    readable_size,
)

DEFAULT_POLAR_VERSION = "2026-04"
POLAR_VERSIONS = frozenset({DEFAULT_POLAR_VERSION, "2026-10"})

_LINK_PREFIX = "/v1/customer-portal/downloadables/"


def _json(value: object) -> str:
    """JSON text exactly as Starlette's JSONResponse writes it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


@functools.lru_cache(maxsize=1 << 16)
def _item_json_around_link(
    row_id: str,
    benefit_id: str,
    file_id: str,
    organization_id: str,
    name: str,
    key: str,
    mime_type: str,
    size: int,
    storage_version: str,
    etag: str | None,
    sha256_base64: str | None,
    sha256_hex: str | None,
    last_modified_at: str,
    version: str | None,
) -> tuple[str, str]:
    """A listing item's JSON before its link and after the download object: only the link and its
    expiry change from one listing to the next."""
    head = (
        f'{{"id":{_json(row_id)},"benefit_id":{_json(benefit_id)},"file":{{"id":{_json(file_id)},'
        f'"organization_id":{_json(organization_id)},"name":{_json(name)},"path":{_json(key)},'
        f'"mime_type":{_json(mime_type)},"size":{_json(size)},"storage_version":{_json(storage_version)},'
        f'"checksum_etag":{_json(etag)},"checksum_sha256_base64":{_json(sha256_base64)},'
        f'"checksum_sha256_hex":{_json(sha256_hex)},"last_modified_at":{_json(last_modified_at)},'
        '"download":{"url":'
    )
    tail = (
        f',"version":{_json(version)},"is_uploaded":true,"service":"downloadable",'
        f'"size_readable":{_json(readable_size(size))}}}}}'
    )
    return head, tail


_ADMIN_PREFIX = "/__double__/"
_SESSION_PREFIXES = ("polar_cst_", "polar_mst_")
# Token kinds Polar recognises but refuses on the customer portal: they answer a plain 401, while a
# token of no known kind is "invalid".
_OTHER_KINDS = ("polar_oat_", "polar_pat_", "polar_at_")


class BenefitType(StrEnum):
    custom = "custom"
    discord = "discord"
    github_repository = "github_repository"
    downloadables = "downloadables"
    license_keys = "license_keys"
    meter_credit = "meter_credit"
    feature_flag = "feature_flag"
    slack_shared_channel = "slack_shared_channel"


class GrantSorting(StrEnum):
    granted_at = "granted_at"
    granted_at_desc = "-granted_at"
    type = "type"
    type_desc = "-type"
    organization = "organization"
    organization_desc = "-organization"
    product_benefit = "product_benefit"
    product_benefit_desc = "-product_benefit"


class CustomerSessionCustomerIDCreate(BaseModel):
    customer_id: UUID4
    member_id: UUID4 | None = None
    external_member_id: str | None = None
    return_url: str | None = None


class CustomerSessionCustomerExternalIDCreate(BaseModel):
    external_customer_id: str
    member_id: UUID4 | None = None
    external_member_id: str | None = None
    return_url: str | None = None


_SessionCreate = CustomerSessionCustomerIDCreate | CustomerSessionCustomerExternalIDCreate
_SESSION_CREATE: TypeAdapter[_SessionCreate] = TypeAdapter(_SessionCreate)
_DEFAULT_GRANT_SORTING = [GrantSorting.product_benefit, GrantSorting.granted_at_desc]
_POSITIVE_INT = TypeAdapter(Annotated[int, Field(gt=0)])
# Polar's list filters take one value or several; a bad one reports against both members of the union.
_UUIDS = TypeAdapter(UUID4 | Sequence[UUID4])
_BENEFIT_TYPES = TypeAdapter(BenefitType | Sequence[BenefitType])
_GRANT_SORTINGS = TypeAdapter(list[GrantSorting])
_OPTIONAL_UUID = TypeAdapter(UUID4 | None)
_OPTIONAL_TEXT = TypeAdapter(str | None)


def create_app(store: Store, storage_url: str) -> DoubleApp:
    """The double's API as an ASGI app serving `store`; its links redirect to storage at `storage_url`."""
    return DoubleApp(store, storage_url.rstrip("/"))


class DoubleApp(FaultyApp):
    """The API origin: every answer carries `polar-version` and `cache-control: private, no-store`."""

    def __init__(self, store: Store, storage_url: str) -> None:
        api = _Api(store, storage_url)
        handlers = {Reject: _rejected, HTTPException: _http_error}
        super().__init__(store, api.routes(), handlers)

    def exempt(self, path: str) -> bool:
        return path.startswith(_ADMIN_PREFIX)

    def server_error(self, status: int) -> Response:
        phrase = HTTPStatus(status).phrase
        return error(status, phrase.replace(" ", ""), phrase)

    def rate_limited(self, retry_after: int) -> Response:
        return rate_limited(retry_after)

    def record_path(self, path: str) -> str:
        # A download link is a bearer capability: never keep it.
        return _LINK_PREFIX + "{token}" if path.startswith(_LINK_PREFIX) and path != _LINK_PREFIX else path

    def stamp(self, scope: Scope, send: Send) -> Send:
        sent = Headers(scope=scope).get("polar-version")
        version = sent if sent in POLAR_VERSIONS else DEFAULT_POLAR_VERSION

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("polar-version", version)
                headers.append("cache-control", "private, no-store")
            await send(message)

        return stamped

    async def before_routes(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        version = headers.get("polar-version")
        if scope["path"].startswith("/v1/") and version not in (None, *POLAR_VERSIONS):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        client = scope.get("client")
        token = bearer(headers)
        identities = [f"address:{client[0] if client else ''}", *([f"token:{token}"] if token else [])]
        blocked = self.store.blocked_for(identities)
        return None if blocked is None else rate_limited(blocked)


class _Api:
    """Route handlers over one store."""

    def __init__(self, store: Store, storage_url: str) -> None:
        self.store = store
        self.storage_url = storage_url

    def routes(self) -> list[BaseRoute]:
        signin = SignIn(self.store, self._session)
        return [
            Route(_LINK_PREFIX, self.list_downloadables, methods=["GET"]),
            Route(_LINK_PREFIX + "{token}", self.follow_link, methods=["GET"]),
            Route("/v1/customer-portal/customer-session/introspect", self.introspect, methods=["GET"]),
            Route("/v1/customer-portal/benefit-grants/", self.list_benefit_grants, methods=["GET"]),
            *signin.routes(),
            Route("/v1/customer-sessions/", self.create_customer_session, methods=["POST"]),
            Route("/v1/customers/", self.list_customers, methods=["GET"]),
            Route("/v1/members/", self.list_members, methods=["GET"]),
            Route(_ADMIN_PREFIX + "faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route(_ADMIN_PREFIX + "stats", self.stats, methods=["GET"]),
            Route(_ADMIN_PREFIX + "clock", self.advance_clock, methods=["POST"]),
            Route(_ADMIN_PREFIX + "outbox", self.outbox, methods=["GET", "DELETE"]),
        ]

    # Customer portal ----------------------------------------------------------------------------

    async def list_downloadables(self, request: Request) -> Response:
        session = self._session(request)
        query = Checker("query")
        params = request.query_params
        benefit_ids = as_list(query.check(_UUIDS, "benefit_id", params.getlist("benefit_id"), []))
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        rows = self.store.downloadables(session, [str(b) for b in benefit_ids])
        items, pagination = paginate(rows, page, limit)
        drift = self.store.faults.drift
        # Every link of one answer is signed at the same moment, as Polar mints them in one go.
        signed_at = int(self.store.now())
        link_base = f"{request.base_url}{_LINK_PREFIX.lstrip('/')}"
        if not drift:
            # Written from each item's cached JSON around its new link: a whole-catalog scan asks for
            # every page at once, and this loop, not the client under test, would be what it waits on.
            expires = _json(isoformat(signed_at + LINK_TTL))
            written = ",".join(self._downloadable_json(row, link_base, signed_at, expires) for row in items)
            body = f'{{"items":[{written}],"pagination":{_json(pagination)}}}'
            return Response(body.encode("utf-8"), media_type="application/json")
        payload: dict[str, Any] = {
            "items": [self._drifted(row, link_base, signed_at) for row in items],
            "pagination": pagination,
            "meta": {"api_version": "2026-10"},
        }
        return JSONResponse(payload)

    async def follow_link(self, request: Request) -> Response:
        if request.method == "HEAD":
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "GET"})
        now = self.store.now()
        try:
            payload = read_link(self.store.secret, request.path_params["token"], now)
        except BadSignatureError:
            return error(404, "ResourceNotFound", "Not found")
        except ExpiredError:
            return error(410, "ResourceUnavailable", "Unavailable")
        link_id = cast(dict[str, Any], payload).get("id") if isinstance(payload, dict) else None
        if not isinstance(link_id, str):
            return error(400, "BadRequest", "Bad request")
        target = self.store.links.get(link_id)
        if target is None:
            return error(404, "ResourceNotFound", "Not found")
        # Withdrawn access (revoked grant, deleted file) does not stop a link: only malware does.
        file = self.store.files[target[2]]
        if file.malware:
            return error(410, "ResourceUnavailable", "Unavailable")
        self.store.download_counts[file.id] += 1
        location = presign(self.store.secret, self.storage_url, file.key, file.name, file.mime_type, now)
        return Response(status_code=302, headers={"Location": location})

    async def introspect(self, request: Request) -> Response:
        session = self._session(request)
        return JSONResponse({"expires_at": isoformat(session.expires_at), "return_url": session.return_url})

    async def list_benefit_grants(self, request: Request) -> Response:
        session = self._session(request)
        query = Checker("query")
        params = request.query_params
        types = as_list(query.check(_BENEFIT_TYPES, "type", params.getlist("type"), []))
        benefit_ids = as_list(query.check(_UUIDS, "benefit_id", params.getlist("benefit_id"), []))
        sorting = query.check(_GRANT_SORTINGS, "sorting", params.getlist("sorting"), [])
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        text = (params.get("query") or "").casefold()
        wanted_ids = {str(b) for b in benefit_ids}
        grants = [
            grant
            for grant in self.store.grants_of(session)
            if grant.in_benefit_grants
            and (benefit := self.store.benefits[grant.benefit_id]).visibility == "public"
            and (not types or benefit.type in types)
            and (not wanted_ids or benefit.id in wanted_ids)
            and text in benefit.description.casefold()
        ]
        for criterion in reversed(sorting or _DEFAULT_GRANT_SORTING):
            grants.sort(key=self._grant_sort_key(criterion), reverse=criterion.value.startswith("-"))
        items, pagination = paginate(grants, page, limit)
        return JSONResponse({"items": [self._grant(g) for g in items], "pagination": pagination})

    # Merchant side ------------------------------------------------------------------------------

    async def create_customer_session(self, request: Request) -> Response:
        org_token = self._org_token(request, CUSTOMER_SESSIONS_WRITE)
        asked = validated(_SESSION_CREATE, json_body(await request.body()))
        org = self.store.organizations[org_token.organization_id]
        customer = self._asked_customer(asked, org)
        member = self._asked_member(asked, org, customer)
        session = self.store.open_session(customer.id, member.id if member else None, SESSION_TTL, asked.return_url)
        portal = f"{request.base_url}{org.slug}/portal"
        query = f"customer_session_token={session.token}&email={quote(customer.email, safe='')}"
        payload: dict[str, Any] = {
            "id": session.id,
            "created_at": isoformat(session.created_at),
            "modified_at": None,
            "token": session.token,
            "expires_at": isoformat(session.expires_at),
            "return_url": asked.return_url,
            "customer_portal_url": f"{portal}?{query}",
            "customer_id": customer.id,
            "customer": customer_json(customer),
        }
        return JSONResponse(payload, status_code=201)

    async def list_customers(self, request: Request) -> Response:
        org_token = self._org_token(request, CUSTOMERS_READ, "customers:write")
        query = Checker("query")
        params = request.query_params
        email = query.check(_OPTIONAL_TEXT, "email", params.get("email"), None)
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        found = [
            c
            for c in self.store.customers.values()
            if c.organization_id == org_token.organization_id and email in (None, c.email)
        ]
        items, pagination = paginate(found, page, limit)
        return JSONResponse({"items": [customer_json(c) for c in items], "pagination": pagination})

    async def list_members(self, request: Request) -> Response:
        org_token = self._org_token(request, MEMBERS_READ, "members:write")
        query = Checker("query")
        params = request.query_params
        customer_id = query.check(_OPTIONAL_UUID, "customer_id", params.get("customer_id"), None)
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        customers = {
            c.id
            for c in self.store.customers.values()
            if c.organization_id == org_token.organization_id and customer_id in (None, UUID(c.id))
        }
        found = [m for m in self.store.members.values() if m.customer_id in customers]
        items, pagination = paginate(found, page, limit)
        return JSONResponse({"items": [member_json(m) for m in items], "pagination": pagination})

    # Admin --------------------------------------------------------------------------------------

    async def faults(self, request: Request) -> Response:
        faults = self.store.faults
        if request.method == "DELETE":
            faults.reset()
        elif request.method == "POST":
            try:
                changes = json.loads(await request.body())
            except ValueError:
                changes = None
            if not isinstance(changes, dict):
                return error(400, "BadFaults", "expected a JSON object of fault switches")
            try:
                faults.update(cast(dict[str, object], changes))
            except (TypeError, ValueError) as exc:
                return error(400, "BadFaults", str(exc))
        return JSONResponse(faults.snapshot())

    async def stats(self, request: Request) -> Response:
        records = self.store.requests[-100:]
        return JSONResponse(
            {
                "now": isoformat(self.store.now()),
                "requests": self.store.request_counts(),
                "peak_in_flight": self.store.peak_in_flight,
                "downloads": dict(self.store.download_counts),
                "recent": [asdict(r) for r in records],
            }
        )

    async def advance_clock(self, request: Request) -> Response:
        try:
            seconds = json.loads(await request.body())["advance"]
        except (ValueError, KeyError, TypeError):
            return error(400, "BadClock", 'expected {"advance": seconds}')
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return error(400, "BadClock", "advance: expected seconds >= 0")
        self.store.clock_offset += seconds
        return JSONResponse({"now": isoformat(self.store.now())})

    async def outbox(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.store.outbox.clear()
        messages = [asdict(m) | {"sent_at": isoformat(m.sent_at)} for m in self.store.outbox]
        return JSONResponse({"messages": messages})

    # Helpers ------------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        token = bearer(request.headers)
        if token is None or token.startswith(_OTHER_KINDS):
            raise Reject(unauthorized())
        session = self.store.live_session(token) if token.startswith(_SESSION_PREFIXES) else None
        if session is None:
            raise Reject(invalid_token())
        self._throttle(session.subject)
        return session

    def _org_token(self, request: Request, *scopes: str) -> OrgToken:
        """The organization token of the request, which must hold one of `scopes`."""
        token = bearer(request.headers)
        if token is None or (token.startswith("polar_") and not token.startswith("polar_oat_")):
            raise Reject(unauthorized())
        org_token = self.store.org_tokens.get(token)
        if org_token is None:
            raise Reject(invalid_token())
        if not org_token.scopes & set(scopes):
            raise Reject(insufficient_scope(scopes))
        self._throttle(org_token.organization_id)
        return org_token

    def _throttle(self, subject: str) -> None:
        retry_after = self.store.hit_rate_limit(subject)
        if retry_after is not None:
            raise Reject(rate_limited(retry_after))

    def _asked_customer(self, asked: _SessionCreate, org: Organization) -> Customer:
        if isinstance(asked, CustomerSessionCustomerIDCreate):
            customer = self.store.customers.get(str(asked.customer_id))
            field, value = "customer_id", str(asked.customer_id)
        else:
            customer = next(
                (
                    c
                    for c in self.store.customers.values()
                    if c.external_id == asked.external_customer_id and c.organization_id == org.id
                ),
                None,
            )
            field, value = "external_customer_id", asked.external_customer_id
        if customer is None or customer.organization_id != org.id:
            raise Reject(polar_validation_error(field, "Customer does not exist.", value))
        return customer

    def _asked_member(self, asked: _SessionCreate, org: Organization, customer: Customer) -> Member | None:
        if not org.uses_members:
            return None
        members = self.store.members_of(customer.id)
        if asked.member_id is not None:
            found = [m for m in members if m.id == str(asked.member_id)]
            field, value = "member_id", str(asked.member_id)
        elif asked.external_member_id is not None:
            found = [m for m in members if m.external_id == asked.external_member_id]
            field, value = "external_member_id", asked.external_member_id
        elif customer.type == "team":
            raise Reject(polar_validation_error("member_id", "member_id is required for team customers.", None))
        else:
            return members[0] if members else None  # an individual customer acts through its owner member
        if not found:
            raise Reject(polar_validation_error(field, "Member does not exist for this customer.", value))
        return found[0]

    def _downloadable_json(self, row: Listed, link_base: str, signed_at: int, expires: str) -> str:
        """A listing item (DownloadableRead) as JSON text, with its link signed at `signed_at`."""
        file = row.file
        self.store.links[row.id] = (row.grant.customer_id, row.benefit.id, file.id)
        link = sign_id_link(self.store.secret, row.id, signed_at)
        digests = file.blob.digests if file.checksums else None
        head, tail = _item_json_around_link(
            row.id,
            row.benefit.id,
            file.id,
            file.organization_id,
            file.name,
            file.key,
            file.mime_type,
            file.size,
            file.storage_version,
            digests.etag if digests else None,
            digests.sha256_base64 if digests else None,
            digests.sha256_hex if digests else None,
            isoformat(file.created_at),
            file.version,
        )
        return f'{head}{_json(link_base + link)},"headers":{{}},"expires_at":{expires}}}{tail}'

    def _drifted(self, row: Listed, link_base: str, signed_at: int) -> dict[str, Any]:
        """A listing item as Polar's drifted answers shape it: the same item, with nulls, a new service,
        fields the excerpt does not name, and the grant's creation time."""
        expires = _json(isoformat(signed_at + LINK_TTL))
        item: dict[str, Any] = json.loads(self._downloadable_json(row, link_base, signed_at, expires))
        body: dict[str, Any] = item["file"]
        for nullable in (
            "storage_version",
            "checksum_etag",
            "checksum_sha256_base64",
            "checksum_sha256_hex",
            "last_modified_at",
        ):
            body[nullable] = None
        body |= {"version": None, "service": "support_case_attachment", "is_enabled": True, "preview_url": None}
        item["created_at"] = isoformat(row.grant.granted_at)
        return item

    def _grant(self, grant: Grant) -> dict[str, Any]:
        benefit = self.store.benefits[grant.benefit_id]
        org = self.store.organizations[benefit.organization_id]
        is_downloadables = benefit.type == BenefitType.downloadables
        files = [f for f in benefit.file_ids if self.store.files[f].downloadable]
        return {
            "id": grant.id,
            "created_at": isoformat(grant.granted_at),
            "modified_at": None,
            "granted_at": isoformat(grant.granted_at),
            "revoked_at": None,
            "is_granted": True,
            "is_revoked": False,
            "customer_id": grant.customer_id,
            "member_id": grant.member_id or self._owner_id(grant.customer_id),
            "benefit_id": benefit.id,
            "order_id": grant.order_id,
            "subscription_id": grant.subscription_id,
            "error": None,
            "customer": customer_json(self.store.customers[grant.customer_id]),
            "benefit": {
                "id": benefit.id,
                "created_at": isoformat(benefit.created_at),
                "modified_at": None,
                "type": benefit.type,
                "description": benefit.description,
                "selectable": True,
                "deletable": True,
                "is_deleted": benefit.deleted,
                "organization_id": org.id,
                "organization": organization_json(org),
                "properties": {"active_files": benefit.file_ids} if is_downloadables else {},
            },
            "properties": {"files": files} if is_downloadables else {},
        }

    def _owner_id(self, customer_id: str) -> str | None:
        """The member an individual customer's grants belong to in an organization with members."""
        customer = self.store.customers[customer_id]
        if customer.type == "team" or not self.store.organizations[customer.organization_id].uses_members:
            return None
        return next((m.id for m in self.store.members_of(customer_id)), None)

    def _grant_sort_key(self, criterion: GrantSorting) -> Callable[[Grant], Any]:
        benefits = self.store.benefits
        name = criterion.value.lstrip("-")
        if name == "granted_at":
            return lambda g: g.granted_at
        if name == "type":
            return lambda g: benefits[g.benefit_id].type
        if name == "organization":
            return lambda g: self.store.organizations[benefits[g.benefit_id].organization_id].name
        return lambda g: benefits[g.benefit_id].position


async def _rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Reject)
    return exc.response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
