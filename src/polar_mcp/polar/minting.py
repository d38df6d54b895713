"""Customer sessions minted from an organization token, renewed before they expire.

The organization token is the most powerful secret in the process: it is sent to one endpoint,
`POST /v1/customer-sessions/`, and nowhere else, and it never appears in a message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio
from pydantic import SecretStr

from polar_mcp.polar.client import PolarClient, parse_json
from polar_mcp.polar.errors import (
    AuthenticationError,
    ConfigurationError,
    ForbiddenError,
    RequestValidationError,
    UnauthorizedError,
)
from polar_mcp.polar.models import CustomerSessionCreated
from polar_mcp.polar.sessions import principal_key

logger = logging.getLogger(__name__)

CUSTOMER_SESSIONS_PATH = "/v1/customer-sessions/"
RENEW_MARGIN = 300.0
"""A minted session is replaced this many seconds before Polar says it expires."""


@dataclass(frozen=True)
class CustomerRef:
    """Which customer (and member, for team customers) to mint sessions for."""

    customer_id: str | None = None
    external_customer_id: str | None = None
    member_id: str | None = None
    external_member_id: str | None = None

    def body(self) -> dict[str, str]:
        fields = {
            "customer_id": self.customer_id,
            "external_customer_id": self.external_customer_id,
            "member_id": self.member_id,
            "external_member_id": self.external_member_id,
        }
        return {key: value for key, value in fields.items() if value is not None}

    def describe(self) -> str:
        """For logs and messages: which setting names the customer (ids are not secrets)."""
        if self.customer_id is not None:
            who = f"POLAR_CUSTOMER_ID={self.customer_id}"
        else:
            who = f"POLAR_EXTERNAL_CUSTOMER_ID={self.external_customer_id}"
        if self.member_id is not None:
            who += f", POLAR_MEMBER_ID={self.member_id}"
        elif self.external_member_id is not None:
            who += f", POLAR_EXTERNAL_MEMBER_ID={self.external_member_id}"
        return who


MintFailure = Literal[
    "token_rejected", "scope_missing", "customer_unknown", "member_required", "member_unknown", "refused"
]


class MintError(ConfigurationError):
    """Minting failed for a reason only a configuration change fixes; `reason` says which."""

    def __init__(self, message: str, *, reason: MintFailure, customer: CustomerRef) -> None:
        super().__init__(message)
        self.reason = reason
        self.customer = customer


class MintedSession:
    """A `TokenSource` that mints customer sessions with an organization token, sharing one mint."""

    renew_hint = (
        "polar-mcp minted a new session and Polar still rejected it; check POLAR_ACCESS_TOKEN and the "
        "customer settings with `polar-mcp doctor`."
    )

    def __init__(
        self,
        client: PolarClient,
        organization_token: SecretStr,
        customer: CustomerRef,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._organization_token = organization_token
        self._customer = customer
        self._wall_clock = wall_clock
        self._lock = anyio.Lock()
        self._current: SecretStr | None = None
        self._expires_at: datetime | None = None
        self._principal = principal_key(
            "minted\0" + organization_token.get_secret_value() + "\0" + repr(sorted(customer.body().items()))
        )

    @property
    def principal(self) -> str:
        return self._principal

    @property
    def expires_at(self) -> datetime | None:
        """When the current minted session expires (None before the first mint)."""
        return self._expires_at

    @property
    def customer(self) -> CustomerRef:
        return self._customer

    async def token(self) -> SecretStr:
        current = self._current
        if current is not None and self._fresh():
            return current
        async with self._lock:
            # Another caller may have minted while this one waited: one mint serves them all.
            if self._current is not None and self._fresh():
                return self._current
            return await self._mint()

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        async with self._lock:
            if self._current is not None and self._current.get_secret_value() != rejected.get_secret_value():
                return self._current
            return await self._mint()

    def _fresh(self) -> bool:
        return self._expires_at is not None and self._expires_at.timestamp() - self._wall_clock() > RENEW_MARGIN

    async def _mint(self) -> SecretStr:
        try:
            body = await self._client.request(
                "POST",
                CUSTOMER_SESSIONS_PATH,
                token=self._organization_token,
                json_body=self._customer.body(),
            )
        except (AuthenticationError, UnauthorizedError):
            raise MintError(
                "Polar rejected POLAR_ACCESS_TOKEN: the organization token is invalid, expired or revoked. "
                "Create a new organization access token with the customer_sessions:write scope.",
                reason="token_rejected",
                customer=self._customer,
            ) from None
        except ForbiddenError:
            raise MintError(
                "POLAR_ACCESS_TOKEN lacks the customer_sessions:write scope. Create an organization access "
                "token with that single scope.",
                reason="scope_missing",
                customer=self._customer,
            ) from None
        except RequestValidationError as error:
            raise self._explain_422(error) from None
        created = parse_json(body, CustomerSessionCreated)
        self._current = created.token
        self._expires_at = created.expires_at
        logger.info("minted a customer session for %s, valid until %s", self._customer.describe(), created.expires_at)
        return created.token

    def _explain_422(self, error: RequestValidationError) -> MintError:
        """Which of the customer settings Polar refused, told apart by where and what it says."""
        customer = self._customer
        about_member = [msg.lower() for loc, msg in error.problems if "member" in loc.lower()]
        about_customer = [msg.lower() for loc, msg in error.problems if "customer" in loc.lower()]
        if any("required" in msg for msg in about_member):
            return MintError(
                f"{customer.describe()} is a team customer: set POLAR_MEMBER_ID or POLAR_EXTERNAL_MEMBER_ID to "
                "the member the assistant acts for.",
                reason="member_required",
                customer=customer,
            )
        if about_member:
            member = "POLAR_MEMBER_ID" if customer.member_id is not None else "POLAR_EXTERNAL_MEMBER_ID"
            return MintError(
                f"Polar has no such member for this customer ({customer.describe()}); check {member} "
                "(POLAR_MEMBER_ID is Polar's member id, POLAR_EXTERNAL_MEMBER_ID your own).",
                reason="member_unknown",
                customer=customer,
            )
        if about_customer:
            return MintError(
                f"Polar has no customer for {customer.describe()}; check the id in the Polar dashboard "
                "(POLAR_CUSTOMER_ID is Polar's id, POLAR_EXTERNAL_CUSTOMER_ID your own).",
                reason="customer_unknown",
                customer=customer,
            )
        return MintError(
            f"Polar refused to create a customer session for {customer.describe()}: {error.message}",
            reason="refused",
            customer=customer,
        )
