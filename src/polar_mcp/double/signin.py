"""The customer portal's own sign-in: find the seller, e-mail a code, exchange it for a session."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import UUID4, AfterValidator, BaseModel, TypeAdapter
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polar_mcp.double.answers import (
    Reject,
    customer_json,
    error,
    json_body,
    organization_json,
    rate_limited,
    validated,
)
from polar_mcp.double.layer import bearer
from polar_mcp.double.store import SIGNIN_BLOCK, Session, Store

PORTAL = "/v1/customer-portal/"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def _email(value: str) -> str:
    """An e-mail address as Polar's validator accepts it (syntax and domain; deliverability unchecked)."""
    local, at, domain = value.rpartition("@")
    if not at:
        reason = "An email address must have an @-sign."
    elif not local:
        reason = "There must be something before the @-sign."
    elif not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        reason = "The email address contains invalid characters before the @-sign."
    elif "." not in domain:
        reason = "The part after the @-sign is not valid. It should have a period."
    elif not all(_LABEL.fullmatch(label) for label in domain.split(".")) or domain.rsplit(".", 1)[1].isdigit():
        reason = "The part after the @-sign is not valid."
    else:
        return value
    raise PydanticCustomError("value_error", "value is not a valid email address: {reason}", {"reason": reason})


class CustomerSessionCodeRequest(BaseModel):
    email: Annotated[str, AfterValidator(_email)]
    organization_id: UUID4
    customer_id: UUID4 | None = None


class CustomerSessionCodeAuthenticate(BaseModel):
    code: str


_CODE_REQUEST = TypeAdapter(CustomerSessionCodeRequest)
_CODE_AUTHENTICATE = TypeAdapter(CustomerSessionCodeAuthenticate)


class SignIn:
    """Route handlers of the portal sign-in over one store; `session_of` authenticates a portal request."""

    def __init__(self, store: Store, session_of: Callable[[Request], Session]) -> None:
        self.store = store
        self.session_of = session_of

    def routes(self) -> list[Route]:
        return [
            Route(PORTAL + "organizations/{slug}", self.organization, methods=["GET"]),
            Route(PORTAL + "customer-session/request", self.request_code, methods=["POST"]),
            Route(PORTAL + "customer-session/authenticate", self.authenticate, methods=["POST"]),
            Route(PORTAL + "customer-session/user", self.user, methods=["GET"]),
            Route(PORTAL + "customers/me", self.me, methods=["GET"]),
        ]

    async def organization(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        org = next((o for o in self.store.organizations.values() if o.slug == slug), None)
        if org is None:
            return error(404, "ResourceNotFound", "Not found")
        return JSONResponse({"organization": organization_json(org), "products": []})

    async def request_code(self, request: Request) -> Response:
        self._throttle(request)
        asked = validated(_CODE_REQUEST, json_body(await request.body()))
        org = self.store.organizations.get(str(asked.organization_id))
        # Polar answers 202 whatever it finds, so that no one learns who is a customer.
        if org is None:
            return JSONResponse(None, status_code=202)
        found = self.store.customers_with_email(org, asked.email)
        if asked.customer_id is not None:
            found = [(c, m) for c, m in found if c.id == str(asked.customer_id)]
        elif len(found) > 1:
            body: dict[str, Any] = {
                "error": "customer_selection_required",
                "detail": "Multiple customers found for this email. Please select one.",
                "customers": [{"id": c.id, "name": c.name} for c, _ in found],
            }
            return JSONResponse(body, status_code=409)
        if len(found) == 1:
            customer, member = found[0]
            self.store.send_code(org, customer, member, asked.email)
        return JSONResponse(None, status_code=202)

    async def authenticate(self, request: Request) -> Response:
        self._throttle(request)
        asked = validated(_CODE_AUTHENTICATE, json_body(await request.body()))
        session = self.store.redeem_code(asked.code)
        if session is None:
            detail = "This customer session code is invalid or has expired."
            return error(401, "CustomerSessionCodeInvalidOrExpired", detail)
        return JSONResponse({"token": session.token})

    async def user(self, request: Request) -> Response:
        session = self.session_of(request)
        customer = self.store.customers[session.customer_id]
        if session.member_id is None:
            person: dict[str, Any] = {"type": "customer", "name": customer.name, "email": customer.email}
            return JSONResponse(person | {"customer_id": customer.id, "member_id": None, "role": None})
        member = self.store.members[session.member_id]
        person = {"type": "member", "name": member.name, "email": member.email}
        return JSONResponse(person | {"customer_id": customer.id, "member_id": member.id, "role": member.role})

    async def me(self, request: Request) -> Response:
        session = self.session_of(request)
        return JSONResponse(customer_json(self.store.customers[session.customer_id]))

    def _throttle(self, request: Request) -> None:
        if self.store.hit_signin_limit(signin_identity(request)):
            raise Reject(rate_limited(SIGNIN_BLOCK))


def signin_identity(request: Request) -> str:
    """Whom Polar's sign-in limit counts: the bearer token, or the client address when there is none."""
    token = bearer(request.headers)
    if token is not None:
        return f"token:{token}"
    return f"address:{request.client.host if request.client else ''}"
