"""`FakePolar` with the customer-portal sign-in endpoints, behind `httpx2.MockTransport`.

It answers as docs/POLAR-API.md says Polar does: 202 with `null` whether or not the e-mail is a customer's
(a code goes out only when it is), 409 with the customer list for an e-mail several customers share,
422 for a malformed address, single-use codes, 401 for any code it did not send, and the sign-in
rate limit as a switch. Every code it "e-mails" lands in `outbox`, the only place a code appears.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers.polar import CUSTOMER_TOKEN, FAR_FUTURE, FakePolar, downloadable

ORG_ID = "0a0a0a0a-0000-4000-8000-00000000000a"
ORG = {"id": ORG_ID, "name": "Ferris Press", "slug": "ferris-press"}
ADA = "ada@example.com"
TEAM_EMAIL = "grace@example.com"
TEAM_CUSTOMERS = [
    {"id": "c1c1c1c1-0000-4000-8000-0000000000c1", "name": "Grace Hopper"},
    {"id": "c2c2c2c2-0000-4000-8000-0000000000c2", "name": "Hopper Labs"},
]
SESSION_TTL = timedelta(hours=1)
JSON = {"content-type": "application/json"}


@dataclass
class Mail:
    """One e-mail the fake would have sent: to whom, for which customer, with which code."""

    to: str
    customer_id: str | None
    code: str


@dataclass
class Session:
    email: str
    name: str
    expires_at: datetime
    kind: str = "customer"


def item(number: int, name: str) -> dict[str, object]:
    """A file whose link outlives the run."""
    return downloadable(number, name, expires_at=FAR_FUTURE)


@dataclass
class SignInPolar(FakePolar):
    """Sign-in endpoints in front of the listing fake; `now` is the fake's clock for session expiry.

    `valid_tokens` holds the sessions it has given out (and CUSTOMER_TOKEN): any other is refused.
    """

    customers: dict[str, str] = field(default_factory=lambda: {ADA: "Ada Lovelace"})
    outbox: list[Mail] = field(default_factory=list[Mail])
    codes: dict[str, str] = field(default_factory=dict[str, str])
    sessions: dict[str, Session] = field(default_factory=dict[str, Session])
    rate_limited: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    token_prefix: str = "polar_cst_"
    drift: dict[str, httpx2.Response] = field(default_factory=dict[str, httpx2.Response])

    def __post_init__(self) -> None:
        if self.valid_tokens is None:
            self.valid_tokens = {CUSTOMER_TOKEN}

    @property
    def tokens(self) -> set[str]:
        assert self.valid_tokens is not None
        return self.valid_tokens

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path in self.drift:
            self.requests.append(request)
            return self.drift[path]
        if path.startswith("/v1/customer-portal/organizations/"):
            self.requests.append(request)
            slug = path.rsplit("/", 1)[-1]
            if slug != ORG["slug"]:
                return httpx2.Response(404, json={"error": "ResourceNotFound", "detail": "Not found"})
            return httpx2.Response(200, json={"organization": ORG, "products": []})
        if path == "/v1/customer-portal/customer-session/request":
            self.requests.append(request)
            return self._request(json.loads(request.content))
        if path == "/v1/customer-portal/customer-session/authenticate":
            self.requests.append(request)
            return self._authenticate(json.loads(request.content))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        session = self.sessions.get(token)
        if session is not None and session.expires_at <= self.now:
            self.tokens.discard(token)
        if path == "/v1/customer-portal/customer-session/user" and token in self.tokens and session is not None:
            self.requests.append(request)
            return httpx2.Response(200, json=self._user(session))
        if path == "/v1/customer-portal/customer-session/introspect" and token in self.tokens and session:
            self.requests.append(request)
            expires = session.expires_at.isoformat().replace("+00:00", "Z")
            return httpx2.Response(200, json={"expires_at": expires, "return_url": None})
        return await super().__call__(request)

    def _request(self, body: dict[str, object]) -> httpx2.Response:
        if self.rate_limited:
            return httpx2.Response(429, headers={"retry-after": "900"})
        email = str(body.get("email", ""))
        local, _, domain = email.partition("@")
        if not local or "." not in domain:
            detail = [{"loc": ["body", "email"], "msg": "value is not a valid email address", "type": "value_error"}]
            return httpx2.Response(422, json={"error": "RequestValidationError", "detail": detail})
        if body.get("organization_id") != ORG_ID:
            return httpx2.Response(202, content=b"null", headers=JSON)
        customer_id = body.get("customer_id")
        if email.casefold() == TEAM_EMAIL:
            if customer_id is None:
                return httpx2.Response(
                    409,
                    json={
                        "error": "customer_selection_required",
                        "detail": "Multiple customers found for this email. Please select one.",
                        "customers": TEAM_CUSTOMERS,
                    },
                )
            if customer_id in {c["id"] for c in TEAM_CUSTOMERS}:
                self._send(TEAM_EMAIL, str(customer_id))
        elif email.casefold() in self.customers:
            self._send(email.casefold(), None)
        return httpx2.Response(202, content=b"null", headers=JSON)

    def _send(self, email: str, customer_id: str | None) -> None:
        code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        self.codes[code] = email
        self.outbox.append(Mail(email, customer_id, code))

    def _authenticate(self, body: dict[str, object]) -> httpx2.Response:
        if self.rate_limited:
            return httpx2.Response(429, headers={"retry-after": "900"})
        email = self.codes.pop(str(body.get("code", "")), None)
        if email is None:
            return httpx2.Response(
                401,
                json={
                    "error": "CustomerSessionCodeInvalidOrExpired",
                    "detail": "This customer session code is invalid or has expired.",
                },
            )
        token = self.token_prefix + secrets.token_urlsafe(32)
        self.tokens.add(token)
        name = self.customers.get(email, "Grace Hopper")
        self.sessions[token] = Session(email, name, self.now + SESSION_TTL)
        return httpx2.Response(200, json={"token": token})

    def _user(self, session: Session) -> dict[str, object]:
        return {
            "type": session.kind,
            "name": session.name,
            "email": session.email,
            "customer_id": "cccccccc-0000-4000-8000-cccccccccccc",
            "member_id": None,
            "role": None,
        }

    def last_code(self) -> str:
        return self.outbox[-1].code

    def list_calls(self) -> list[httpx2.Request]:
        return self.listing_requests

    def sign_in_calls(self) -> list[httpx2.Request]:
        return [r for r in self.requests if r.url.path.endswith(("/request", "/authenticate"))]


def asgi(polar: FakePolar) -> Starlette:
    """The fake as an ASGI app, so the CLI (which opens its own HTTP client) can reach it over loopback."""

    async def endpoint(request: Request) -> Response:
        query = request.url.query
        forwarded = httpx2.Request(
            request.method,
            f"http://fake{request.url.path}" + (f"?{query}" if query else ""),
            headers=list(request.headers.items()),
            content=await request.body(),
        )
        answer = await polar(forwarded)
        headers = {k: v for k, v in answer.headers.items() if k != "content-length"}
        return Response(answer.read(), status_code=answer.status_code, headers=headers)

    methods = ["GET", "POST"]
    return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
