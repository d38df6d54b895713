"""The shapes of Polar's answers: errors, validation (as FastAPI reports it), pages, and its objects."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter, ValidationError
from starlette.responses import JSONResponse, Response

from polar_mcp.double.store import Customer, Member, Organization, isoformat

MAX_LIMIT = 100
INVALID_TEXT = "The access token provided is expired, revoked, malformed, or invalid for other reasons."
SCOPE_TEXT = "The request requires higher privileges than provided by the access token."
# Answers that must never be cached carry these, on top of every answer's `private, no-store`.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_T = TypeVar("_T")


class Reject(Exception):  # noqa: N818 - a response carried up the stack, not an error
    """Raised by a handler's helpers to answer `response` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class Checker:
    """Validates request values as FastAPI does, collecting every error before answering 422."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.errors: list[dict[str, Any]] = []

    def check(self, adapter: TypeAdapter[_T], name: str, raw: object, fallback: _T) -> _T:
        """`raw` validated by `adapter`, or `fallback` after noting the errors under `name`."""
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            self.errors.extend(_entries(exc, [self.location, name]))
            return fallback

    def raise_errors(self) -> None:
        """Answer 422 with every error noted so far, if any."""
        if self.errors:
            raise Reject(validation_error(self.errors))


def paginate(rows: Sequence[_T], page: int, limit: int) -> tuple[Sequence[_T], dict[str, int]]:
    """One page of `rows` and Polar's pagination object; limits over MAX_LIMIT are clamped, not refused."""
    limit = min(limit, MAX_LIMIT)
    start = (page - 1) * limit
    return rows[start : start + limit], {"total_count": len(rows), "max_page": math.ceil(len(rows) / limit)}


def json_body(raw: bytes) -> object:
    """A request's JSON body, 422 as FastAPI words it when there is none or it does not parse."""
    if not raw.strip():
        missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        raise Reject(validation_error([missing]))
    try:
        return json.loads(raw)
    except ValueError as exc:
        # Bytes that are not UTF-8 fail before parsing, at no position.
        position, reason = (exc.pos, exc.msg) if isinstance(exc, json.JSONDecodeError) else (0, str(exc))
        entry: dict[str, Any] = {
            "type": "json_invalid",
            "loc": ["body", position],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": reason},
        }
        raise Reject(validation_error([entry])) from None


def validated(adapter: TypeAdapter[_T], body: object) -> _T:
    """`body` validated by `adapter` (a model or a union of models), or 422 naming every error."""
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise Reject(validation_error(_entries(exc, ["body"]))) from None


def _entries(exc: ValidationError, prefix: list[str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False):
        entry: dict[str, Any] = {
            "type": error["type"],
            "loc": [*prefix, *error["loc"]],
            "msg": error["msg"],
            "input": error["input"],
        }
        if "ctx" in error:
            entry["ctx"] = {k: v if isinstance(v, int | float) else str(v) for k, v in error["ctx"].items()}
        entries.append(entry)
    return entries


def error(status: int, name: str, detail: str) -> JSONResponse:
    """Polar's usual error body."""
    return JSONResponse({"error": name, "detail": detail}, status_code=status)


def unauthorized() -> JSONResponse:
    """401 for no token or a token of the wrong kind."""
    body = {"error": "Unauthorized", "detail": "Unauthorized"}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="polar"'})


def invalid_token() -> Response:
    """401 for an unknown, expired or revoked token; this body is written with spaces after colons."""
    challenge = f'Bearer realm="polar", error="invalid_token", error_description="{INVALID_TEXT}"'
    body = json.dumps({"error": "invalid_token", "error_description": INVALID_TEXT})
    headers = {"WWW-Authenticate": challenge, **_NO_STORE}
    return Response(body, status_code=401, media_type="application/json", headers=headers)


def insufficient_scope(scopes: Sequence[str]) -> JSONResponse:
    """403 for an organization token lacking every one of `scopes`."""
    challenge = (
        f'Bearer realm="polar", scope="{" ".join(scopes)}", error="insufficient_scope", '
        f'error_description="{SCOPE_TEXT}"'
    )
    body = {"error": "insufficient_scope", "error_description": SCOPE_TEXT}
    return JSONResponse(body, status_code=403, headers={"WWW-Authenticate": challenge, **_NO_STORE})


def rate_limited(retry_after: int) -> Response:
    """Polar's 429: no body and no content type (a bare Response sets neither)."""
    return Response(status_code=429, headers={"Retry-After": str(retry_after)})


def validation_error(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 as FastAPI answers a request that does not validate."""
    return JSONResponse({"error": "RequestValidationError", "detail": errors}, status_code=422)


def polar_validation_error(field: str, msg: str, value: object) -> JSONResponse:
    """422 as Polar answers a well-formed request naming something that does not exist."""
    entry = {"type": "value_error", "loc": ["body", field], "msg": msg, "input": value}
    return JSONResponse({"error": "PolarRequestValidationError", "detail": [entry]}, status_code=422)


def organization_json(org: Organization) -> dict[str, Any]:
    """An organization as Polar shows it to customers."""
    return {
        "id": org.id,
        "created_at": isoformat(org.created_at),
        "modified_at": None,
        "name": org.name,
        "slug": org.slug,
        "avatar_url": None,
        "proration_behavior": "prorate",
        "allow_customer_updates": True,
        "email": None,
        "website": None,
        "socials": [],
        "status": "active",
        "details_submitted_at": None,
        "default_presentment_currency": "usd",
        "account_id": None,
        "order_settings": {"invoice_numbering": "organization"},
        "feature_settings": {"member_model_enabled": org.uses_members},
        "subscription_settings": {"allow_multiple_subscriptions": False, "proration_behavior": "prorate"},
        "notification_settings": {"new_order": True, "new_subscription": True},
        "customer_email_settings": {"order_confirmation": True, "subscription_confirmation": True},
        "customer_portal_settings": {"usage": {"show": True}, "subscription": {"update_seats": True}},
    }


def customer_json(customer: Customer) -> dict[str, Any]:
    """A customer as Polar answers it."""
    return {
        "id": customer.id,
        "created_at": isoformat(customer.created_at),
        "modified_at": None,
        "metadata": {},
        "external_id": customer.external_id,
        "email": customer.email,
        "email_verified": customer.email_verified,
        "name": customer.name,
        "billing_name": None,
        "type": customer.type,
        "billing_address": None,
        "tax_id": None,
        "locale": None,
        "organization_id": customer.organization_id,
        "default_payment_method_id": None,
        "first_user_event_at": None,
        "deleted_at": None,
        "avatar_url": f"https://www.gravatar.com/avatar/{_gravatar(customer.email)}?d=404",
    }


def member_json(member: Member) -> dict[str, Any]:
    """A member (a seat of a customer) as Polar answers it."""
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


def _gravatar(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def as_list(value: _T | Sequence[_T]) -> list[_T]:
    """A list-typed query value, which Polar's types accept as one value or several."""
    if isinstance(value, list | tuple):
        return list(cast(Sequence[_T], value))
    return [cast(_T, value)]
