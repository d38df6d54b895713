"""The OAuth authorization server behind the SDK's routes: clients, codes, token families.

The SDK (`mcp.server.auth`) parses requests, checks PKCE S256 and client secrets and answers in
OAuth's terms; this provider decides. Its own rules, beyond the SDK's:
- the `resource` (RFC 8707) defaults to this server's MCP URL and any other is refused;
- an authorization code is spent once; presenting it again revokes what it became;
- refresh tokens rotate, each rotation extending the family's life; a spent one presented again
  revokes the whole family (it was stolen, or the app is confused: either way, sign in again);
- access tokens live one hour; everything is stored as keyed digests.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from polar_mcp.hosted.keys import new_secret
from polar_mcp.hosted.service import Hosted
from polar_mcp.hosted.store import Family
from polar_mcp.untrusted import clean_text

logger = logging.getLogger(__name__)

ACCESS_PREFIX = "pmcp_at_"
REFRESH_PREFIX = "pmcp_rt_"
CODE_PREFIX = "pmcp_ac_"
MAX_REDIRECT_URIS = 10
MAX_CLIENT_NAME = 100

raw_redirect_uris: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("raw_redirect_uris", default=None)
"""The redirect URIs of the registration being handled, exactly as the app sent them (set by the gate)."""


def same_resource(given: str, ours: str) -> bool:
    """RFC 8707 resource comparison: scheme and host case and a trailing slash aside, exact."""
    a, b = urlsplit(given.strip()), urlsplit(ours)
    return (
        a.scheme.lower() == b.scheme.lower()
        and a.netloc.lower() == b.netloc.lower()
        and a.path.rstrip("/") == b.path.rstrip("/")
        and not a.query
        and not a.fragment
    )


def acceptable_redirect(uri: str) -> bool:
    """https anywhere, http only to this machine (native apps), or an app's own scheme; no fragment."""
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment:
        return False
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme == "http":
        return parts.hostname in ("localhost", "127.0.0.1", "::1")
    return parts.scheme not in ("javascript", "data", "file", "vbscript")


class BuyerCode(AuthorizationCode):
    """An authorization code with the buyer's member id (team customers), carried to the tokens."""

    member_id: str | None = None


class SigninProvider:
    """`OAuthAuthorizationServerProvider` over the hosted store."""

    def __init__(self, hosted: Hosted) -> None:
        self._hosted = hosted

    # Clients -------------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        found = await self._hosted.store.client(client_id)
        if found is None:
            return None
        return OAuthClientInformationFull.model_validate_json(found[0])

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        raw = raw_redirect_uris.get()
        uris = raw if raw is not None else [str(uri) for uri in client_info.redirect_uris or []]
        if not uris or len(uris) > MAX_REDIRECT_URIS:
            raise RegistrationError("invalid_redirect_uri", f"give between 1 and {MAX_REDIRECT_URIS} redirect_uris")
        for uri in uris:
            if not acceptable_redirect(uri):
                raise RegistrationError(
                    "invalid_redirect_uri", "redirect URIs must be https, http on localhost, or an app's own scheme"
                )
        if client_info.client_name is not None and len(client_info.client_name) > MAX_CLIENT_NAME:
            raise RegistrationError("invalid_client_metadata", f"client_name is longer than {MAX_CLIENT_NAME}")
        # The app keeps its secret; the store keeps a digest, which the gate compares (see app.py).
        stored = client_info.model_copy(
            update={"client_secret": self._hosted.keys.digest("client", client_info.client_secret)}
            if client_info.client_secret is not None
            else {}
        )
        await self._hosted.store.add_client(
            client_info.client_id, stored.model_dump_json(exclude_none=True), uris, self._hosted.clock()
        )
        name = clean_text(client_info.client_name or "no name", MAX_CLIENT_NAME)
        logger.info("registered OAuth client %s (%s)", client_info.client_id, name)

    # Authorization -------------------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if not params.redirect_uri_provided_explicitly:
            raise AuthorizeError("invalid_request", "redirect_uri is required")
        resource = params.resource or self._hosted.options.resource_url
        if not same_resource(resource, self._hosted.options.resource_url):
            raise AuthorizeError("invalid_target", f"this server issues tokens for {self._hosted.options.resource_url}")
        flow_id = new_secret()
        now = self._hosted.clock()
        await self._hosted.store.add_flow(
            self._hosted.keys.digest("flow", flow_id),
            client.client_id,
            {
                "redirect_uri": str(params.redirect_uri),
                "code_challenge": params.code_challenge,
                "state": params.state,
                "scopes": params.scopes or [],
                "resource": self._hosted.options.resource_url,
            },
            now + self._hosted.lifetimes.flow,
        )
        return f"{self._hosted.options.public_url}/signin/{flow_id}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> BuyerCode | None:
        row = await self._hosted.store.code(self._hosted.keys.digest("code", authorization_code))
        if row is None or row.client_id != client.client_id:
            return None
        if row.family_id is not None:
            # RFC 6749 §4.1.2: a code used twice revokes the tokens it was exchanged for.
            logger.warning(
                "an authorization code of client %s was presented again: its tokens are revoked", client.client_id
            )
            await self._hosted.store.revoke_family(row.family_id)
            return None
        if row.expires_at <= self._hosted.clock():
            return None
        params = row.params
        return BuyerCode(
            code=authorization_code,
            scopes=params["scopes"],
            expires_at=row.expires_at,
            client_id=row.client_id,
            code_challenge=params["code_challenge"],
            redirect_uri=AnyUrl(params["redirect_uri"]),
            redirect_uri_provided_explicitly=True,
            resource=params["resource"],
            subject=row.customer_id,
            member_id=row.member_id,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: BuyerCode
    ) -> OAuthToken:
        store, now = self._hosted.store, self._hosted.clock()
        family_id = new_secret()
        if not await store.spend_code(self._hosted.keys.digest("code", authorization_code.code), family_id):
            raise TokenError("invalid_grant", "authorization code was already used")
        assert authorization_code.subject is not None
        assert authorization_code.resource is not None
        family = Family(
            family_id=family_id,
            client_id=client.client_id,
            customer_id=authorization_code.subject,
            member_id=authorization_code.member_id,
            resource=authorization_code.resource,
            scopes=authorization_code.scopes,
            expires_at=now + self._hosted.options.refresh_ttl,
            revoked=False,
        )
        await store.add_family(family, now)
        refresh = new_secret(REFRESH_PREFIX)
        await store.add_token(self._hosted.keys.digest("token", refresh), "refresh", family_id, family.expires_at)
        logger.info("signed in customer %s in client %s", family.customer_id, client.client_id)
        return await self._issue(family, refresh)

    # Refresh -------------------------------------------------------------------------------------

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        row = await self._hosted.store.token(self._hosted.keys.digest("token", refresh_token))
        if row is None or row.kind != "refresh" or row.family.client_id != client.client_id or row.family.revoked:
            return None
        if row.used:
            logger.warning(
                "a spent refresh token of client %s was presented again: its whole family is revoked", client.client_id
            )
            await self._hosted.store.revoke_family(row.family.family_id)
            return None
        if row.expires_at <= self._hosted.clock():
            return None
        return RefreshToken(
            token=refresh_token,
            client_id=client.client_id,
            scopes=row.family.scopes,
            expires_at=int(row.expires_at),
            resource=row.family.resource,
            subject=row.family.customer_id,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        store, keys = self._hosted.store, self._hosted.keys
        row = await store.token(keys.digest("token", refresh_token.token))
        if row is None or row.family.revoked:
            raise TokenError("invalid_grant", "refresh token does not exist")
        expires_at = self._hosted.clock() + self._hosted.options.refresh_ttl
        successor = new_secret(REFRESH_PREFIX)
        rotated = await store.rotate(
            keys.digest("token", refresh_token.token), keys.digest("token", successor), row.family.family_id, expires_at
        )
        if not rotated:
            # Two refreshes raced with one token: only one may win, and the family is suspect.
            await store.revoke_family(row.family.family_id)
            raise TokenError("invalid_grant", "refresh token was already used")
        family = replace(row.family, scopes=scopes, expires_at=expires_at)
        return await self._issue(family, successor)

    async def _issue(self, family: Family, refresh: str) -> OAuthToken:
        await self._hosted.store.touch_client(family.client_id, self._hosted.clock())
        access = new_secret(ACCESS_PREFIX)
        lifetime = self._hosted.lifetimes.access
        await self._hosted.store.add_token(
            self._hosted.keys.digest("token", access), "access", family.family_id, self._hosted.clock() + lifetime
        )
        return OAuthToken(
            access_token=access,
            token_type="Bearer",  # noqa: S106 - the token type, not a password
            expires_in=lifetime,
            refresh_token=refresh,
            scope=" ".join(family.scopes) or None,
        )

    # Access --------------------------------------------------------------------------------------

    async def load_access_token(self, token: str) -> AccessToken | None:
        row = await self._hosted.store.token(self._hosted.keys.digest("token", token))
        if row is None or row.kind != "access" or row.family.revoked or row.expires_at <= self._hosted.clock():
            return None
        return AccessToken(
            token=token,
            client_id=row.family.client_id,
            scopes=row.family.scopes,
            expires_at=int(row.expires_at),
            resource=row.family.resource,
            subject=row.family.customer_id,
            claims={"family": row.family.family_id, "member": row.family.member_id},
        )

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        row = await self._hosted.store.token(self._hosted.keys.digest("token", token.token))
        if row is not None:
            await self._hosted.store.revoke_family(row.family.family_id)
            logger.info("revoked a token family of client %s at its request", row.family.client_id)

    async def exchange_identity_assertion(self, client: OAuthClientInformationFull, params: Any) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "this server does not accept identity assertions")
