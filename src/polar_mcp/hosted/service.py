"""The hosted sign-in's shared state for the life of the app, and each buyer's session source.

`Hosted` opens the store, proves the services (SMTP, the seller, the token's scopes) and keeps one
`MintedSession` per signed-in buyer in memory: Polar sessions are minted on demand with the
organization token and never stored. A buyer the seller removed is found out at the next mint:
every sign-in of that buyer is revoked at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from pydantic import SecretStr

from polar_mcp.cache import BoundedCache
from polar_mcp.config import ConfigError
from polar_mcp.hosted.keys import Keys
from polar_mcp.hosted.mail import Mailer
from polar_mcp.hosted.options import HostedOptions, Seller, check_services
from polar_mcp.hosted.store import DatabaseError, Store
from polar_mcp.polar.client import PolarClient
from polar_mcp.polar.errors import ConfigurationError
from polar_mcp.polar.minting import CustomerRef, MintedSession, MintError

logger = logging.getLogger(__name__)

SIGN_IN_AGAIN = "Sign in again from the assistant's connector settings."


@dataclass(frozen=True)
class Limits:
    """Rate limits (events, window seconds) and the rules of codes."""

    codes_per_address: tuple[int, float] = (10, 900.0)
    codes_per_email: tuple[int, float] = (5, 3600.0)
    tries_per_address: tuple[int, float] = (30, 900.0)
    # Web hosts register from their own servers, one address for many buyers: a roomier limit.
    registrations_per_address: tuple[int, float] = (120, 3600.0)
    code_minutes: int = 10
    code_tries: int = 5


@dataclass(frozen=True)
class Lifetimes:
    """How long each thing lives, in seconds (the refresh life comes from POLAR_MCP_REFRESH_TTL)."""

    access: int = 3600
    authorization_code: int = 300
    flow: int = 1800


class AccessEndedError(ConfigurationError):
    """The seller no longer has this buyer as a customer: every sign-in of theirs was revoked."""


class SignedOut:
    """The source of a request without a signed-in buyer: the MCP endpoint never lets one through."""

    principal = "anonymous"
    renew_hint = SIGN_IN_AGAIN

    async def token(self) -> SecretStr:
        raise ConfigurationError(f"Not signed in. {SIGN_IN_AGAIN}")

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        return None


class Hosted:
    """Shared by every request of the hosted app; `start` before serving, `stop` after."""

    def __init__(
        self,
        options: HostedOptions,
        *,
        polar: PolarClient,
        mailer: Mailer,
        clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
    ) -> None:
        self.options = options
        self.polar = polar
        self.mailer = mailer
        self.clock = clock
        self.limits = limits or Limits()
        self.lifetimes = Lifetimes()
        self.keys = Keys(options.secret_key)
        self._store: Store | None = None
        self._seller: Seller | None = None
        self._sessions: BoundedCache[str, MintedSession] = BoundedCache(max_entries=10_000, ttl=6 * 3600.0)

    @property
    def store(self) -> Store:
        assert self._store is not None, "Hosted.start() opens the store"
        return self._store

    @property
    def seller(self) -> Seller:
        assert self._seller is not None, "Hosted.start() finds the seller"
        return self._seller

    async def start(self) -> None:
        """Open and migrate the database, then prove every service; `ConfigError` lists what is wrong."""
        try:
            self._store = await Store.open(self.options.database_url)
        except DatabaseError as error:
            raise ConfigError(f"Cannot start signin: {error}") from None
        seller, problems = await check_services(self.options, self.polar, self.mailer)
        if problems or seller is None:
            await self.stop()
            raise ConfigError("Cannot start signin: " + "; ".join(problems))
        self._seller = seller
        removed = await self.store.prune(self.clock())
        logger.info(
            "signin ready for %s at %s (database schema %d, %d expired rows removed)",
            seller.name,
            self.options.public_url,
            await self.store.version(),
            removed,
        )

    async def stop(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def prune(self) -> int:
        return await self.store.prune(self.clock())

    def buyer_source(self) -> BuyerSession | SignedOut:
        """The session source of the buyer whose access token this request carries."""
        access = get_access_token()
        if access is None or access.subject is None:
            return SignedOut()
        member = (access.claims or {}).get("member")
        customer = CustomerRef(customer_id=access.subject, member_id=member if isinstance(member, str) else None)
        minted = self._sessions.get(access.subject)
        if minted is None or minted.customer != customer:
            minted = MintedSession(self.polar, self.options.access_token, customer, wall_clock=self.clock)
            self._sessions.put(access.subject, minted)
        return BuyerSession(self, minted, access.subject)

    async def end_access(self, customer_id: str) -> None:
        """Revoke every sign-in of a customer Polar no longer knows, and forget its session."""
        revoked = await self.store.revoke_customer(customer_id)
        self._sessions.discard(customer_id)
        logger.warning("customer %s is gone from the organization: %d sign-in(s) revoked", customer_id, revoked)


class BuyerSession:
    """A `TokenSource` for one buyer: their minted session, and the end of access if they are gone."""

    renew_hint = SIGN_IN_AGAIN

    def __init__(self, hosted: Hosted, minted: MintedSession, customer_id: str) -> None:
        self._hosted = hosted
        self._minted = minted
        self._customer_id = customer_id

    @property
    def principal(self) -> str:
        return self._minted.principal

    async def token(self) -> SecretStr:
        try:
            return await self._minted.token()
        except MintError as error:
            raise await self._explain(error) from None

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        try:
            return await self._minted.renew(rejected)
        except MintError as error:
            raise await self._explain(error) from None

    async def _explain(self, error: MintError) -> ConfigurationError:
        if error.reason == "customer_unknown":
            await self._hosted.end_access(self._customer_id)
            return AccessEndedError(
                f"{self._hosted.seller.name} no longer has this customer on record, so access has ended. "
                "If you bought with another e-mail, sign in with that one."
            )
        logger.error("minting a session for customer %s failed: %s", self._customer_id, error.message)
        return ConfigurationError("The server cannot reach your purchases right now; its operator has been told.")
