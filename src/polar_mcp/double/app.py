"""The double's HTTP face: Polar's customer-portal routes, signed download links, storage and admin routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from enum import StrEnum
from http import HTTPStatus
from typing import Annotated, Any, Literal, TypeVar, cast
from urllib.parse import quote

import anyio
import anyio.lowlevel
from pydantic import UUID4, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from polar_mcp.double.faults import Faults, GateFault
from polar_mcp.double.store import (
    CUSTOMER_SESSIONS_WRITE,
    SESSION_TTL,
    Customer,
    Grant,
    Listed,
    Member,
    Organization,
    OrgToken,
    RequestRecord,
    Session,
    Store,
    isoformat,
    readable_size,
)

LINK_TTL = 3600
STORAGE_TTL = 3600
MAX_LIMIT = 100
POLAR_VERSIONS = frozenset({"2026-04", "2026-10"})

_LINK_PREFIX = "/v1/customer-portal/downloadables/"
_STORAGE_PREFIX = "/__storage__/"
_ADMIN_PREFIX = "/__double__/"
_SESSION_PREFIXES = ("polar_cst_", "polar_mst_")
# Token kinds Polar recognises but refuses on the customer portal: they answer a plain 401, while a
# token of no known kind is "invalid".
_OTHER_KINDS = ("polar_oat_", "polar_pat_", "polar_at_")
_INVALID_TEXT = "The access token provided is expired, revoked, malformed, or invalid for other reasons."
_SCOPE_TEXT = "The request requires higher privileges than provided by the access token."
_PORTAL_PAGE = "<!doctype html><html><head><title>Sign in to continue</title></head><body>Wi-Fi</body></html>"

_T = TypeVar("_T")


class ConnectionDroppedError(ConnectionError):
    """Raised in place of a dropped connection when no real socket is there to drop (ASGI in-process)."""


class BenefitType(StrEnum):
    custom = "custom"
    discord = "discord"
    github_repository = "github_repository"
    downloadables = "downloadables"
    license_keys = "license_keys"
    meter_credit = "meter_credit"
    feature_flag = "feature_flag"


class GrantSorting(StrEnum):
    granted_at = "granted_at"
    granted_at_desc = "-granted_at"
    type = "type"
    type_desc = "-type"
    organization = "organization"
    organization_desc = "-organization"
    product_benefit = "product_benefit"
    product_benefit_desc = "-product_benefit"


_DEFAULT_GRANT_SORTING = [GrantSorting.product_benefit, GrantSorting.granted_at_desc]
_POSITIVE_INT = TypeAdapter(Annotated[int, Field(gt=0)])
_UUIDS = TypeAdapter(list[UUID4])
_UUID = TypeAdapter(UUID4)
_BENEFIT_TYPES = TypeAdapter(list[BenefitType])
_GRANT_SORTINGS = TypeAdapter(list[GrantSorting])
_OPTIONAL_TEXT = TypeAdapter(str | None)
_TEXT = TypeAdapter(str)
# Stands in for an invalid id until the 422 is raised.
_NIL_UUID = uuid.UUID(int=0)


def create_app(store: Store) -> DoubleApp:
    """The double as an ASGI app serving `store`."""
    return DoubleApp(store)


class _Reject(Exception):  # noqa: N818 - a response carried up the stack, not an error
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class DoubleApp(Starlette):
    """Starlette app whose outermost layer applies the store's faults, holding the server's own `send`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        api = _Api(store)
        super().__init__(
            routes=api.routes(),
            exception_handlers={_Reject: _rejected, HTTPException: _http_error},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_ADMIN_PREFIX):
            await super().__call__(scope, receive, send)
            return
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, recording_send, send)
        finally:
            self.store.record(_record(scope, status))

    async def _serve(self, scope: Scope, receive: Receive, send: Send, raw_send: Send) -> None:
        faults = self.store.faults
        if faults.latency:
            await anyio.sleep(faults.latency)
        fault: GateFault | None = faults.take_gate_fault()
        if fault is None and faults.roll_error():
            fault = "errors_next"
        response: Response | None = None
        if fault == "drop_next":
            await _drop_connection(raw_send)
            return
        if fault == "non_json_next":
            response = HTMLResponse(_PORTAL_PAGE)
        elif fault == "rate_limit_next":
            response = _rate_limited(faults.retry_after)
        elif fault == "errors_next":
            phrase = HTTPStatus(faults.error_status).phrase
            response = _error(faults.error_status, phrase.replace(" ", ""), phrase)
        version = Headers(scope=scope).get("polar-version")
        if response is None and scope["path"].startswith("/v1/") and version not in (None, *POLAR_VERSIONS):
            response = JSONResponse({"detail": "Not Found"}, status_code=404)
        if response is not None:
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, _with_body_faults(send, raw_send, faults))


class _Api:
    """Route handlers over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [
            Route("/v1/customer-portal/downloadables/", self.list_downloadables, methods=["GET"]),
            Route("/v1/customer-portal/downloadables/{token}", self.follow_link, methods=["GET"]),
            Route("/v1/customer-portal/customer-session/introspect", self.introspect, methods=["GET"]),
            Route("/v1/customer-portal/benefit-grants/", self.list_benefit_grants, methods=["GET"]),
            Route("/v1/customer-sessions/", self.create_customer_session, methods=["POST"]),
            Route(_STORAGE_PREFIX + "{file_id}", self.storage, methods=["GET"]),
            Route(_ADMIN_PREFIX + "faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route(_ADMIN_PREFIX + "stats", self.stats, methods=["GET"]),
            Route(_ADMIN_PREFIX + "clock", self.advance_clock, methods=["POST"]),
        ]

    # Customer portal ----------------------------------------------------------------------------

    async def list_downloadables(self, request: Request) -> Response:
        session = self._session(request)
        query = _Checker("query")
        params = request.query_params
        benefit_ids = query.check(_UUIDS, "benefit_id", params.getlist("benefit_id"), [])
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        rows = self.store.downloadables(session, [str(b) for b in benefit_ids])
        items, pagination = _paginate(rows, page, limit)
        drift = self.store.faults.drift
        # Every link of one answer expires at the same moment, as Polar mints them in one go.
        expires = int(self.store.now()) + LINK_TTL
        link_base = f"{request.base_url}{_LINK_PREFIX.lstrip('/')}"
        payload: dict[str, Any] = {
            "items": [self._downloadable(row, session, link_base, expires, drift) for row in items],
            "pagination": pagination,
        }
        if drift:
            payload["meta"] = {"api_version": "2026-10"}
        return JSONResponse(payload)

    async def follow_link(self, request: Request) -> Response:
        link = self._read_link(request.path_params["token"])
        if link is None:
            return _error(404, "ResourceNotFound", "Not found")
        customer_id, benefit_id, file_id, expires = link
        now = self.store.now()
        file = self.store.link_target(customer_id, benefit_id, file_id)
        if expires <= now or file is None:
            return _error(410, "ResourceUnavailable", "This download link has expired or was withdrawn.")
        self.store.download_counts[file.id] += 1
        storage_expires = int(now) + STORAGE_TTL
        signature = self._mac("storage", f"{file.id}:{storage_expires}")
        target = f"{request.base_url}__storage__/{file.id}?expires={storage_expires}&signature={signature}"
        return RedirectResponse(target, status_code=302)

    async def introspect(self, request: Request) -> Response:
        session = self._session(request)
        return JSONResponse({"expires_at": isoformat(session.expires_at), "return_url": session.return_url})

    async def list_benefit_grants(self, request: Request) -> Response:
        session = self._session(request)
        query = _Checker("query")
        params = request.query_params
        types = query.check(_BENEFIT_TYPES, "type", params.getlist("type"), [])
        benefit_ids = query.check(_UUIDS, "benefit_id", params.getlist("benefit_id"), [])
        sorting = query.check(_GRANT_SORTINGS, "sorting", params.getlist("sorting"), [])
        page = query.check(_POSITIVE_INT, "page", params.get("page", 1), 1)
        limit = query.check(_POSITIVE_INT, "limit", params.get("limit", 10), 10)
        query.raise_errors()
        text = (params.get("query") or "").casefold()
        wanted_ids = {str(b) for b in benefit_ids}
        grants = [
            grant
            for grant in self.store.grants_of(session)
            if (benefit := self.store.benefits[grant.benefit_id]).visibility == "public"
            and (not types or benefit.type in types)
            and (not wanted_ids or benefit.id in wanted_ids)
            and text in benefit.description.casefold()
        ]
        for criterion in reversed(sorting or _DEFAULT_GRANT_SORTING):
            grants.sort(key=self._grant_sort_key(criterion), reverse=criterion.value.startswith("-"))
        items, pagination = _paginate(grants, page, limit)
        return JSONResponse({"items": [self._grant(g) for g in items], "pagination": pagination})

    # Merchant side ------------------------------------------------------------------------------

    async def create_customer_session(self, request: Request) -> Response:
        org_token = self._org_token(request)
        body = _json_object(await request.body())
        org = self.store.organizations[org_token.organization_id]
        customer = self._body_customer(body, org)
        member = self._body_member(body, org, customer)
        checker = _Checker("body")
        return_url = checker.check(_OPTIONAL_TEXT, "return_url", body.get("return_url"), None)
        checker.raise_errors()
        session = self.store.open_session(customer.id, member.id if member else None, SESSION_TTL, return_url)
        base = str(request.base_url)
        payload: dict[str, Any] = {
            "id": session.id,
            "created_at": isoformat(session.created_at),
            "modified_at": None,
            "token": session.token,
            "expires_at": isoformat(session.expires_at),
            "return_url": return_url,
            "customer_portal_url": f"{base}{org.slug}/portal?customer_session_token={session.token}",
            "customer_id": customer.id,
            "customer": _customer(customer),
        }
        if member is not None:
            payload |= {"member_id": member.id, "member": _member(member)}
        return JSONResponse(payload, status_code=201)

    # Storage ------------------------------------------------------------------------------------

    async def storage(self, request: Request) -> Response:
        file_id: str = request.path_params["file_id"]
        expires = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        if not hmac.compare_digest(signature, self._mac("storage", f"{file_id}:{expires}")):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match.")
        if int(expires) <= self.store.now():
            return _s3_error(403, "AccessDenied", "Request has expired")
        file = self.store.files.get(file_id)
        if file is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        blocks = file.blob.blocks()
        if self.store.faults.take("wrong_bytes_next"):
            blocks = _corrupted(blocks)
        headers = {"Content-Length": str(file.size), "Content-Disposition": _attachment(file.name)}
        return StreamingResponse(blocks, media_type=file.mime_type, headers=headers)

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
                return _error(400, "BadFaults", "expected a JSON object of fault switches")
            try:
                faults.update(cast(dict[str, object], changes))
            except (TypeError, ValueError) as exc:
                return _error(400, "BadFaults", str(exc))
        return JSONResponse(faults.snapshot())

    async def stats(self, request: Request) -> Response:
        records = self.store.requests[-100:]
        return JSONResponse(
            {
                "now": isoformat(self.store.now()),
                "requests": self.store.request_counts(),
                "downloads": dict(self.store.download_counts),
                "recent": [asdict(r) for r in records],
            }
        )

    async def advance_clock(self, request: Request) -> Response:
        try:
            seconds = json.loads(await request.body())["advance"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "BadClock", 'expected {"advance": seconds}')
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _error(400, "BadClock", "advance: expected seconds >= 0")
        self.store.clock_offset += seconds
        return JSONResponse({"now": isoformat(self.store.now())})

    # Helpers ------------------------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        token = _bearer(request.headers)
        if token is None or token.startswith(_OTHER_KINDS):
            raise _Reject(_unauthorized())
        session = self.store.live_session(token) if token.startswith(_SESSION_PREFIXES) else None
        if session is None:
            raise _Reject(_invalid_token())
        self._throttle(session.subject)
        return session

    def _org_token(self, request: Request) -> OrgToken:
        token = _bearer(request.headers)
        if token is None or (token.startswith("polar_") and not token.startswith("polar_oat_")):
            raise _Reject(_unauthorized())
        org_token = self.store.org_tokens.get(token)
        if org_token is None:
            raise _Reject(_invalid_token())
        if CUSTOMER_SESSIONS_WRITE not in org_token.scopes:
            raise _Reject(_insufficient_scope())
        self._throttle(org_token.organization_id)
        return org_token

    def _throttle(self, subject: str) -> None:
        retry_after = self.store.hit_rate_limit(subject)
        if retry_after is not None:
            raise _Reject(_rate_limited(retry_after))

    def _body_customer(self, body: dict[str, Any], org: Organization) -> Customer:
        checker = _Checker("body")
        if "customer_id" in body:
            customer_id = checker.check(_UUID, "customer_id", body["customer_id"], _NIL_UUID)
            checker.raise_errors()
            customer = self.store.customers.get(str(customer_id))
            field, value = "customer_id", body["customer_id"]
        elif "external_customer_id" in body:
            external_id = checker.check(_TEXT, "external_customer_id", body["external_customer_id"], "")
            checker.raise_errors()
            customer = next(
                (
                    c
                    for c in self.store.customers.values()
                    if c.external_id == external_id and c.organization_id == org.id
                ),
                None,
            )
            field, value = "external_customer_id", external_id
        else:
            missing = {
                "type": "missing",
                "loc": ["body", "customer_id"],
                "msg": "Field required",
                "input": body,
            }
            raise _Reject(_validation_error([missing]))
        if customer is None or customer.organization_id != org.id:
            raise _Reject(_polar_validation_error(field, "Customer does not exist.", value))
        return customer

    def _body_member(self, body: dict[str, Any], org: Organization, customer: Customer) -> Member | None:
        if not org.uses_members:
            return None
        members = self.store.members_of(customer.id)
        if body.get("member_id") is not None:
            checker = _Checker("body")
            member_id = str(checker.check(_UUID, "member_id", body["member_id"], _NIL_UUID))
            checker.raise_errors()
            found = [m for m in members if m.id == member_id]
            field, value = "member_id", body["member_id"]
        elif body.get("external_member_id") is not None:
            value = body["external_member_id"]
            found = [m for m in members if m.external_id == value]
            field = "external_member_id"
        elif customer.type == "team":
            raise _Reject(_polar_validation_error("member_id", "member_id is required for team customers.", None))
        else:
            found = members[:1]  # an individual customer acts through its owner member
            field, value = "member_id", None
        if not found:
            raise _Reject(_polar_validation_error(field, "Member does not exist.", value))
        return found[0]

    def _downloadable(self, row: Listed, session: Session, link_base: str, expires: int, drift: bool) -> dict[str, Any]:
        file = row.file
        link = self._make_link(session.customer_id, row.benefit.id, file.id, expires)
        digests = file.blob.digests if file.checksums else None
        body: dict[str, Any] = {
            "id": file.id,
            "organization_id": file.organization_id,
            "name": file.name,
            "path": f"{file.organization_id}/{file.id}/{file.name}",
            "mime_type": file.mime_type,
            "size": file.size,
            "storage_version": None,
            "checksum_etag": digests.etag if digests else None,
            "checksum_sha256_base64": digests.sha256_base64 if digests else None,
            "checksum_sha256_hex": digests.sha256_hex if digests else None,
            "last_modified_at": isoformat(file.created_at),
            "download": {
                "url": link_base + link,
                "headers": {},
                "expires_at": isoformat(expires),
            },
            "version": file.version,
            "is_uploaded": True,
            "service": "downloadable",
            "size_readable": readable_size(file.size),
        }
        item: dict[str, Any] = {"id": row.id, "benefit_id": row.benefit.id, "file": body}
        if drift:
            for nullable in (
                "checksum_etag",
                "checksum_sha256_base64",
                "checksum_sha256_hex",
                "last_modified_at",
            ):
                body[nullable] = None
            body |= {
                "version": None,
                "service": "support_case_attachment",
                "is_enabled": True,
                "preview_url": None,
            }
            item["created_at"] = isoformat(row.grant.granted_at)
        return item

    def _grant(self, grant: Grant) -> dict[str, Any]:
        benefit = self.store.benefits[grant.benefit_id]
        org = self.store.organizations[benefit.organization_id]
        files = [f for f in benefit.file_ids if self.store.files[f].downloadable]
        is_downloadables = benefit.type == BenefitType.downloadables
        return {
            "id": grant.id,
            "created_at": isoformat(grant.granted_at),
            "modified_at": None,
            "granted_at": isoformat(grant.granted_at),
            "revoked_at": None,
            "is_granted": True,
            "is_revoked": False,
            "customer_id": grant.customer_id,
            "member_id": grant.member_id,
            "benefit_id": benefit.id,
            "order_id": grant.order_id,
            "subscription_id": grant.subscription_id,
            "error": None,
            "benefit": {
                "id": benefit.id,
                "created_at": isoformat(benefit.created_at),
                "modified_at": None,
                "type": benefit.type,
                "description": benefit.description,
                "selectable": True,
                "deletable": True,
                "organization_id": org.id,
                "organization": {
                    "id": org.id,
                    "created_at": isoformat(org.created_at),
                    "modified_at": None,
                    "name": org.name,
                    "slug": org.slug,
                    "avatar_url": None,
                },
                "properties": {"archived": {}, "files": benefit.file_ids} if is_downloadables else {},
            },
            "properties": {"files": files} if is_downloadables else {},
        }

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

    def _make_link(self, customer_id: str, benefit_id: str, file_id: str, expires: int) -> str:
        message = f"{customer_id}:{benefit_id}:{file_id}:{expires}"
        body = base64.urlsafe_b64encode(message.encode()).decode().rstrip("=")
        return f"{body}.{self._mac('link', body)}"

    def _read_link(self, token: str) -> tuple[str, str, str, int] | None:
        body, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac("link", body)):
            return None
        # The signature proves the body is one this store wrote, so it parses.
        customer_id, benefit_id, file_id, expires = (
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split(":")
        )
        return customer_id, benefit_id, file_id, int(expires)

    def _mac(self, purpose: str, message: str) -> str:
        digest = hmac.new(self.store.secret, f"{purpose}:{message}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class _Checker:
    """Validates request values as FastAPI does, collecting every error before answering 422."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.errors: list[dict[str, Any]] = []

    def check(self, adapter: TypeAdapter[_T], name: str, raw: object, fallback: _T) -> _T:
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                entry: dict[str, Any] = {
                    "type": error["type"],
                    "loc": [self.location, name, *error["loc"]],
                    "msg": error["msg"],
                    "input": error["input"],
                }
                if "ctx" in error:
                    entry["ctx"] = {k: v if isinstance(v, int | float) else str(v) for k, v in error["ctx"].items()}
                self.errors.append(entry)
            return fallback

    def raise_errors(self) -> None:
        if self.errors:
            raise _Reject(_validation_error(self.errors))


def _paginate(rows: Sequence[_T], page: int, limit: int) -> tuple[Sequence[_T], dict[str, int]]:
    limit = min(limit, MAX_LIMIT)
    start = (page - 1) * limit
    return rows[start : start + limit], {"total_count": len(rows), "max_page": math.ceil(len(rows) / limit)}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        pos = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        error: dict[str, Any] = {
            "type": "json_invalid",
            "loc": ["body", pos],
            "msg": "JSON decode error",
            "input": {},
        }
        raise _Reject(_validation_error([error | {"ctx": {"error": msg}}])) from None
    if not isinstance(data, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise _Reject(
            _validation_error([{"type": "model_attributes_type", "loc": ["body"], "msg": msg, "input": data}])
        )
    return cast(dict[str, Any], data)


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _customer(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "created_at": isoformat(customer.created_at),
        "modified_at": None,
        "metadata": {},
        "external_id": customer.external_id,
        "email": customer.email,
        "email_verified": True,
        "name": customer.name,
        "type": customer.type,
        "billing_address": None,
        "tax_id": None,
        "organization_id": customer.organization_id,
        "deleted_at": None,
        "avatar_url": None,
    }


def _member(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "created_at": isoformat(member.created_at),
        "modified_at": None,
        "customer_id": member.customer_id,
        "email": member.email,
        "name": member.name,
        "external_id": member.external_id,
        "role": member.role,
    }


def _error(status: int, name: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": name, "detail": detail}, status_code=status)


def _unauthorized() -> JSONResponse:
    body = {"error": "Unauthorized", "detail": "Unauthorized"}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="polar"'})


def _invalid_token() -> JSONResponse:
    challenge = f'Bearer realm="polar", error="invalid_token", error_description="{_INVALID_TEXT}"'
    body = {"error": "invalid_token", "error_description": _INVALID_TEXT}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": challenge})


def _insufficient_scope() -> JSONResponse:
    challenge = f'Bearer realm="polar", error="insufficient_scope", error_description="{_SCOPE_TEXT}"'
    body = {"error": "insufficient_scope", "error_description": _SCOPE_TEXT}
    return JSONResponse(body, status_code=403, headers={"WWW-Authenticate": challenge})


def _rate_limited(retry_after: int) -> Response:
    # Polar's 429 has no body and no content type: a bare Response sets neither.
    return Response(status_code=429, headers={"Retry-After": str(retry_after)})


def _validation_error(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"error": "RequestValidationError", "detail": errors}, status_code=422)


def _polar_validation_error(field: str, msg: str, value: object) -> JSONResponse:
    error = {"type": "value_error", "loc": ["body", field], "msg": msg, "input": value}
    return JSONResponse({"error": "PolarRequestValidationError", "detail": [error]}, status_code=422)


def _s3_error(status: int, code: str, message: str) -> Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code>"
    body += f"<Message>{message}</Message></Error>"
    return Response(body, status_code=status, media_type="application/xml")


def _attachment(filename: str) -> str:
    fallback = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def _corrupted(blocks: Iterator[bytes]) -> Iterator[bytes]:
    first = next(blocks, b"")
    if first:
        yield bytes([first[0] ^ 0xFF]) + first[1:]
    yield from blocks


async def _rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Reject)
    return exc.response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _record(scope: Scope, status: int) -> RequestRecord:
    path: str = scope["path"]
    query = "" if path.startswith(_STORAGE_PREFIX) else scope.get("query_string", b"").decode("latin-1")
    if path.startswith(_LINK_PREFIX) and path != _LINK_PREFIX:
        path = _LINK_PREFIX + "{token}"  # a download link is a bearer capability: never keep it
    token = _bearer(Headers(scope=scope))
    prefix = None if token is None else token[:10] if token.startswith("polar_") else "(opaque)"
    return RequestRecord(scope["method"], path, query, prefix, status)


async def _drop_connection(raw_send: Send) -> None:
    """Close the client's connection without answering."""
    # ASGI has no message for this, so reach uvicorn's transport through its bound `send`
    # (a RequestResponseCycle method); without one (in-process ASGI) raise instead.
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise ConnectionDroppedError("the Polar double dropped this connection (fault injection)")
    transport.abort()
    # Let uvicorn see the connection lost before the app returns; otherwise it logs an error and
    # tries to send a 500 on the dead socket.
    for _ in range(10):
        if getattr(cycle, "disconnected", True):
            break
        await anyio.lowlevel.checkpoint()


def _content_length(message: Message) -> int | None:
    for key, value in message.get("headers", []):
        if key.lower() == b"content-length":
            return int(value)
    return None


def _with_body_faults(send: Send, raw_send: Send, faults: Faults) -> Send:
    """A `send` that applies `truncate_next` or `cut_next` to an answer with a body.

    Truncated: half the body, with a Content-Length to match. Cut: the headers and half the body, then
    the connection is dropped.
    """
    fault: Literal["truncate_next", "cut_next"] | None = None
    left = 0
    done = False

    async def faulty_send(message: Message) -> None:
        nonlocal fault, left, done
        if done:
            return
        if message["type"] == "http.response.start":
            length = _content_length(message)
            fault = next((f for f in ("truncate_next", "cut_next") if length and faults.take(f)), None)
            left = (length or 0) // 2
            if fault == "truncate_next":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
                message = {**message, "headers": [*headers, (b"content-length", str(left).encode())]}
            await send(message)
            return
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if fault is None or (len(body) < left and more_body):
            left -= len(body)
            await send(message)
            return
        done = True
        await send({"type": "http.response.body", "body": body[:left], "more_body": fault == "cut_next"})
        if fault == "cut_next":
            await _drop_connection(raw_send)

    return faulty_send
