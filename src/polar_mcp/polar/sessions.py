"""Where a customer session token comes from. One interface, several sources.

`StaticSession` holds a token from the environment or from an HTTP caller; `MissingSession` explains
how to get one. Every source has a `principal`: the key under which anything cached for it lives.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from pydantic import SecretStr

from polar_mcp.polar.errors import ConfigurationError

CUSTOMER_PREFIX = "polar_cst_"
MEMBER_PREFIX = "polar_mst_"
ORGANIZATION_PREFIX = "polar_oat_"
SESSION_PREFIXES = (CUSTOMER_PREFIX, MEMBER_PREFIX)

HOW_TO_GET_A_SESSION = (
    "A customer session token (polar_cst_…) is created by the seller with Polar's "
    "POST /v1/customer-sessions/ (organization token with customer_sessions:write); it lives one hour."
)


BEARER_HINT = (
    "Send your own customer session token (polar_cst_…) or member session token (polar_mst_…) as "
    "`Authorization: Bearer …` with each request."
)


def principal_key(secret: str) -> str:
    """A stable, non-reversible key for everything cached on behalf of one identity."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def token_kind(token: str) -> str:
    """A token's kind shown as its prefix only, never its value: `polar_cst_…`."""
    for prefix in (*SESSION_PREFIXES, ORGANIZATION_PREFIX):
        if token.startswith(prefix):
            return prefix + "…"
    return "unrecognised token"


def bearer_session(authorization: str | None) -> str | None:
    """The session token in an `Authorization: Bearer …` header, if it is a customer or member one."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value.startswith(SESSION_PREFIXES) or len(value) > 4096:
        return None
    return value


class TokenSource(Protocol):
    """Gives the session token to send, and may renew it once when Polar rejects it."""

    @property
    def principal(self) -> str:
        """Key for caches: one per customer identity, never the token itself."""
        ...

    @property
    def renew_hint(self) -> str:
        """What to tell a person whose session Polar rejected."""
        ...

    async def token(self) -> SecretStr:
        """The token to send now; raises `ConfigurationError` if there is none usable."""
        ...

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        """A fresh token after `rejected` got 401 invalid_token, or None if this source cannot renew."""
        ...


class StaticSession:
    """A session token given as is: by the environment (stdio) or by an HTTP caller's bearer."""

    def __init__(self, token: SecretStr, *, renew_hint: str) -> None:
        self._token = token
        self._principal = principal_key(token.get_secret_value())
        self._renew_hint = renew_hint

    @property
    def principal(self) -> str:
        return self._principal

    @property
    def renew_hint(self) -> str:
        return self._renew_hint

    async def token(self) -> SecretStr:
        if self._token.get_secret_value().startswith(ORGANIZATION_PREFIX):
            raise ConfigurationError(
                "The configured token is an organization access token (polar_oat_…), but the customer "
                "portal needs a customer or member session token. Either create a customer session "
                "and set POLAR_CUSTOMER_SESSION, or set POLAR_ACCESS_TOKEN with POLAR_CUSTOMER_ID so "
                "polar-mcp mints sessions itself."
            )
        return self._token

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        return None


NO_SESSION = (
    "No Polar session is configured. Set one of: POLAR_CUSTOMER_SESSION, a customer (polar_cst_…) or member "
    "(polar_mst_…) session token, which the seller creates with Polar's POST /v1/customer-sessions/ and which "
    "lives one hour; or POLAR_ACCESS_TOKEN, an organization token with customer_sessions:write, with "
    "POLAR_CUSTOMER_ID or POLAR_EXTERNAL_CUSTOMER_ID, so polar-mcp creates sessions itself. Or run with --demo "
    "to try polar-mcp without an account."
)


class MissingSession:
    """No token configured: every call explains how to provide one."""

    principal = "anonymous"
    renew_hint = HOW_TO_GET_A_SESSION

    async def token(self) -> SecretStr:
        raise ConfigurationError(NO_SESSION)

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        return None


class BearerRequired:
    """Multi-tenant HTTP: there is no configured token, each request brings its own."""

    principal = "anonymous"
    renew_hint = BEARER_HINT

    async def token(self) -> SecretStr:
        raise ConfigurationError(BEARER_HINT)

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        return None
