"""Customer sign-in by e-mail code: the endpoints Polar's own customer portal uses.

Polar marks `request` and `authenticate` private: they may change without notice, so any answer that
is not the documented one becomes `SignInChangedError`, never a traceback. They share a tight rate
limit (6 a minute, 12 an hour per address, then a 15-minute block of the whole API), so none of these
calls is ever retried: a code is asked for only when a person asks.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from polar_mcp.polar.client import INTROSPECT_PATH, PolarClient, RetryPolicy, parse_json
from polar_mcp.polar.errors import (
    AuthenticationError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    PolarError,
    RateLimitedError,
    RequestValidationError,
    UnauthorizedError,
    UnexpectedStatusError,
)
from polar_mcp.polar.models import SessionIntrospection
from polar_mcp.polar.sessions import SESSION_PREFIXES
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

ORGANIZATION_PATH = "/v1/customer-portal/organizations/{slug}"
REQUEST_PATH = "/v1/customer-portal/customer-session/request"
AUTHENTICATE_PATH = "/v1/customer-portal/customer-session/authenticate"
USER_PATH = "/v1/customer-portal/customer-session/user"

NO_RETRY = RetryPolicy(max_retries=0)
"""Every retry would spend the address's sign-in budget, and past it Polar blocks the whole API."""

POLAR_BLOCK_SECONDS = 900
"""How long Polar refuses an address on its whole API once its sign-in limit is passed."""


def mask_email(email: str) -> str:
    """An e-mail as results show it: the first character and the domain (`r•••@example.com`)."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return "•••"
    return f"{clean_text(local[:1], 1)}•••@{clean_text(domain, 100)}"


# Errors: each carries what a front end needs to word it, and a neutral message for logs.


class SignInError(PolarError):
    """Base of the sign-in failures."""


class SellerNotFoundError(SignInError):
    """No organization has this slug."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"Polar knows no seller with the slug {clean_text(slug, 100)!r}.")
        self.slug = slug


class InvalidEmailError(SignInError):
    """Polar refused the e-mail address (422)."""

    def __init__(self, email: str) -> None:
        self.email = mask_email(email)
        super().__init__(f"Polar refused {self.email} as an e-mail address.")


class CodeRejectedError(SignInError):
    """The code is wrong, used or expired (401), or is not six letters and digits at all."""

    def __init__(self, *, malformed: bool = False) -> None:
        reason = (
            "A sign-in code is 6 letters and digits, such as ABC123."
            if malformed
            else "Polar did not accept the code: it is wrong, already used, or expired (codes live 30 minutes)."
        )
        super().__init__(reason)
        self.malformed = malformed


class SignInRateLimitedError(SignInError):
    """Polar's sign-in rate limit: past it, the address is refused on the whole API for 15 minutes."""

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after if retry_after is not None else float(POLAR_BLOCK_SECONDS)
        super().__init__(
            "Polar's limit on sign-in requests was reached (6 a minute, 12 an hour per address); Polar now "
            f"refuses this address on its whole API for about {_minutes(self.retry_after)}."
        )


class CustomerChoice(NamedTuple):
    """One of the customers an e-mail belongs to at a seller (id and name only)."""

    id: str
    name: str


class CustomerChoiceRequiredError(SignInError):
    """The e-mail belongs to several customers of the seller (409): one must be chosen."""

    def __init__(self, seller: str, email: str, customers: Sequence[CustomerChoice]) -> None:
        self.seller = seller
        self.email = mask_email(email)
        self.customers = list(customers)
        super().__init__(f"{self.email} is {len(self.customers)} customers of {seller}: one must be chosen.")


class SignInChangedError(SignInError):
    """A private sign-in endpoint answered something else than documented: Polar may have changed it."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        self.detail = detail
        super().__init__(
            f"Polar's sign-in answered something polar-mcp does not understand ({step}: {detail}). These "
            "endpoints are private to Polar's customer portal and may have changed; update polar-mcp."
        )


# Answers. Built on first validation, not at import: most starts never sign in.


class _Answer(BaseModel):
    model_config = ConfigDict(defer_build=True)


class Organization(_Answer):
    id: str
    name: str
    slug: str


class _PortalOrganization(_Answer):
    organization: Organization


class _Authenticated(_Answer):
    token: SecretStr


class PortalUser(_Answer):
    """`GET /v1/customer-portal/customer-session/user`: who a session belongs to."""

    type: str | None = None
    name: str | None = None
    email: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    role: str | None = None


async def find_organization(client: PolarClient, slug: str) -> Organization:
    """The seller whose portal address ends in `slug` (no credentials needed)."""
    step = "find the seller"
    try:
        body = await client.request("GET", ORGANIZATION_PATH.format(slug=quote(slug, safe="")), token=None)
    except NotFoundError:
        raise SellerNotFoundError(slug) from None
    except PolarError as error:
        raise _sign_in_error(error, step) from None
    return _parse(body, _PortalOrganization, step).organization


async def request_code(
    client: PolarClient, organization: Organization, email: str, *, customer_id: str | None = None
) -> None:
    """Ask Polar to e-mail a code. Polar answers 202 whether or not the e-mail is a customer's."""
    body: dict[str, Any] = {"email": email, "organization_id": organization.id}
    if customer_id is not None:
        body["customer_id"] = customer_id
    step = "request a code"
    try:
        await client.request("POST", REQUEST_PATH, token=None, json_body=body, retry=NO_RETRY)
    except UnexpectedStatusError as error:
        if error.status == 409:
            raise CustomerChoiceRequiredError(organization.name, email, _choices(error.data, step)) from None
        raise _sign_in_error(error, step) from None
    except RequestValidationError as error:
        if any("email" in loc for loc, _ in error.problems):
            raise InvalidEmailError(email) from None
        raise _sign_in_error(error, step) from None
    except PolarError as error:
        raise _sign_in_error(error, step) from None


async def authenticate(client: PolarClient, code: str) -> SecretStr:
    """Exchange a code for a customer (or member) session token."""
    step = "exchange the code"
    try:
        body = await client.request("POST", AUTHENTICATE_PATH, token=None, json_body={"code": code}, retry=NO_RETRY)
    except (UnauthorizedError, AuthenticationError):
        raise CodeRejectedError() from None
    except PolarError as error:
        raise _sign_in_error(error, step) from None
    token = _parse(body, _Authenticated, step).token
    if not token.get_secret_value().startswith(SESSION_PREFIXES):
        raise SignInChangedError(step, "the answer holds no customer session token")
    return token


async def signed_in_user(client: PolarClient, token: SecretStr) -> PortalUser | None:
    """Who the session belongs to, or None if Polar does not say (the session works all the same)."""
    try:
        return parse_json(await client.request("GET", USER_PATH, token=token), PortalUser)
    except PolarError as error:
        logger.info("the signed-in customer's name is unavailable: %s", error.message)
        return None


async def session_expiry(client: PolarClient, token: SecretStr) -> SessionIntrospection:
    """When a fresh session ends, from Polar's introspection."""
    return parse_json(await client.request("GET", INTROSPECT_PATH, token=token), SessionIntrospection)


def _choices(data: Mapping[str, Any] | None, step: str) -> list[CustomerChoice]:
    raw = data.get("customers") if data is not None else None
    if not isinstance(raw, list) or not raw:
        raise SignInChangedError(step, "HTTP 409 without the list of customers")
    choices: list[CustomerChoice] = []
    for entry in cast(list[Any], raw)[:20]:
        if not isinstance(entry, dict) or not isinstance(cast(dict[str, Any], entry).get("id"), str):
            raise SignInChangedError(step, "HTTP 409 with customers polar-mcp cannot read")
        entry = cast(dict[str, Any], entry)
        choices.append(CustomerChoice(clean_text(entry["id"], 60), clean_text(entry.get("name") or "(no name)", 80)))
    return choices


def _sign_in_error(error: PolarError, step: str) -> PolarError:
    """Outages, timeouts and network failures keep their own wording; anything else means a change."""
    if isinstance(error, RateLimitedError):
        return SignInRateLimitedError(error.retry_after)
    if isinstance(error, UnexpectedStatusError):
        return SignInChangedError(step, f"HTTP {error.status}")
    if isinstance(error, RequestValidationError):
        return SignInChangedError(step, "HTTP 422")
    if isinstance(error, NotFoundError | UnauthorizedError | AuthenticationError | ForbiddenError):
        return SignInChangedError(step, type(error).__name__.removesuffix("Error"))
    if isinstance(error, MalformedResponseError):
        return SignInChangedError(step, "an answer that is not the documented one")
    return error


def _parse(body: bytes, model: type[M], step: str) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        raise SignInChangedError(step, "an answer that is not the documented one") from None


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute" + ("s" if minutes != 1 else "")
