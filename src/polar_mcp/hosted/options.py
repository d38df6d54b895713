"""The hosted mode's settings, checked together: every problem is reported at once, by variable.

`hosted_options` checks what can be checked without the network (it raises `ConfigError` listing
every problem); `check_services` then proves the SMTP server and the organization token work and
finds the seller's name, as the server does before it accepts a connection.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from polar_mcp.config import ConfigError, Settings
from polar_mcp.hosted.mail import Mailer, MailError, SmtpServer, parse_smtp_url
from polar_mcp.hosted.store import default_database_url
from polar_mcp.polar.client import PolarClient, parse_json
from polar_mcp.polar.customers import CUSTOMERS_PATH, customers_by_email
from polar_mcp.polar.errors import (
    AuthenticationError,
    ForbiddenError,
    PolarError,
    RequestValidationError,
    UnauthorizedError,
)
from polar_mcp.polar.minting import CUSTOMER_SESSIONS_PATH
from polar_mcp.polar.models import CustomersPage
from polar_mcp.polar.sessions import ORGANIZATION_PREFIX
from polar_mcp.polar.signin import SellerNotFoundError, find_organization

MIN_SECRET_KEY = 32
MCP_PATH = "/mcp"
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SCOPES = ("customer_sessions:write", "customers:read")


@dataclass(frozen=True)
class HostedOptions:
    """Everything the hosted sign-in needs, validated."""

    public_url: str
    organization: str
    access_token: SecretStr
    secret_key: SecretStr
    smtp: SmtpServer
    mail_from: str
    database_url: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    refresh_ttl: int

    @property
    def resource_url(self) -> str:
        """The MCP endpoint, the resource every token is bound to (RFC 8707)."""
        return self.public_url + MCP_PATH

    @property
    def host(self) -> str:
        """The Host header value buyers' requests carry."""
        return urlsplit(self.public_url).netloc

    @property
    def loopback_http(self) -> bool:
        """Plain http on this machine only (tests, trying it out): cookies cannot be Secure there."""
        return self.public_url.startswith("http://")


def hosted_options(settings: Settings) -> HostedOptions:
    """The hosted settings, or `ConfigError` naming every variable that is missing or wrong."""
    problems: list[str] = []
    if settings.public_url is None:
        problems.append(
            "POLAR_MCP_PUBLIC_URL / --public-url: set the https address buyers reach, e.g. https://files.example.com"
        )
    if settings.organization is None:
        problems.append("POLAR_ORGANIZATION / --organization: set the seller's slug (from its portal address)")
    elif _UUID.fullmatch(settings.organization):
        problems.append(
            "POLAR_ORGANIZATION / --organization: give the slug from the portal address "
            "(https://polar.sh/<slug>/portal), not the id: the sign-in page shows the seller's name, which only "
            "the slug finds"
        )
    token = settings.access_token
    if token is None:
        problems.append(
            "POLAR_ACCESS_TOKEN: set an organization token (polar_oat_…) with the scopes " + " and ".join(SCOPES)
        )
    elif not token.get_secret_value().startswith(ORGANIZATION_PREFIX):
        problems.append("POLAR_ACCESS_TOKEN: must be an organization access token (polar_oat_…)")
    if settings.customer_session is not None:
        problems.append("POLAR_CUSTOMER_SESSION: unset it; in signin mode each buyer signs in as themselves")
    key = settings.secret_key
    if key is None or len(key.get_secret_value()) < MIN_SECRET_KEY:
        problems.append(
            f"POLAR_MCP_SECRET_KEY: set at least {MIN_SECRET_KEY} random characters, the same on every replica "
            '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    smtp: SmtpServer | None = None
    if settings.smtp_url is None:
        problems.append("POLAR_MCP_SMTP_URL: set the mail server, e.g. smtp://user:password@mail.example.com:587")
    else:
        try:
            smtp = parse_smtp_url(settings.smtp_url)
        except ValueError as error:
            problems.append(f"POLAR_MCP_SMTP_URL: {error}")
    if settings.mail_from is None or not _EMAIL.fullmatch(settings.mail_from.rpartition("<")[2].rstrip(">")):
        problems.append("POLAR_MCP_MAIL_FROM / --mail-from: set the From address, e.g. Files <files@example.com>")
    if (
        problems
        or settings.public_url is None
        or settings.organization is None
        or settings.mail_from is None
        or token is None
        or key is None
        or smtp is None
    ):
        raise ConfigError("Invalid signin configuration: " + "; ".join(problems))
    database_url = settings.database_url.get_secret_value() if settings.database_url else default_database_url()
    return HostedOptions(
        public_url=settings.public_url,
        organization=settings.organization,
        access_token=token,
        secret_key=key,
        smtp=smtp,
        mail_from=settings.mail_from,
        database_url=database_url,
        trusted_proxies=tuple(ipaddress.ip_network(network) for network in settings.trusted_proxies),
        refresh_ttl=settings.refresh_ttl,
    )


@dataclass(frozen=True)
class Seller:
    """The organization buyers sign in to: its name is on the page and in the e-mail."""

    id: str
    name: str


async def check_services(
    options: HostedOptions, client: PolarClient, mailer: Mailer
) -> tuple[Seller | None, list[str]]:
    """Prove the SMTP server, the organization and the token's scopes; (seller, problems by variable)."""
    problems: list[str] = []
    try:
        await mailer.check()
    except MailError as error:
        problems.append(str(error))
    seller: Seller | None = None
    try:
        organization = await find_organization(client, options.organization)
        seller = Seller(organization.id, organization.name)
    except SellerNotFoundError:
        problems.append(f"POLAR_ORGANIZATION: Polar knows no organization with the slug {options.organization!r}")
    except PolarError as error:
        problems.append(f"POLAR_ORGANIZATION: could not look the seller up ({type(error).__name__})")
    problems.extend(await _check_token(options, client, seller))
    return seller, problems


async def _check_token(options: HostedOptions, client: PolarClient, seller: Seller | None) -> list[str]:
    token = options.access_token
    try:
        # An address no customer has: proves customers:read, and shows which organization answers.
        await customers_by_email(client, token, "scope-check@polar-mcp.invalid")
        first = await client.request("GET", CUSTOMERS_PATH, token=token, params=[("limit", "1")])
    except (AuthenticationError, UnauthorizedError):
        return ["POLAR_ACCESS_TOKEN: Polar rejected the organization token (invalid, expired or revoked)"]
    except ForbiddenError:
        return ["POLAR_ACCESS_TOKEN: the token lacks the customers:read scope (it needs " + " and ".join(SCOPES) + ")"]
    except PolarError as error:
        return [f"POLAR_ACCESS_TOKEN: could not check the token ({type(error).__name__})"]
    problems: list[str] = []
    owners = {customer.organization_id for customer in parse_json(first, CustomersPage).items}
    if seller is not None and owners - {seller.id, None}:
        problems.append("POLAR_ACCESS_TOKEN: the token belongs to another organization than POLAR_ORGANIZATION")
    try:
        # An empty body creates nothing: Polar checks the scope first, then answers 422.
        await client.request("POST", CUSTOMER_SESSIONS_PATH, token=token, json_body={})
    except RequestValidationError:
        pass
    except ForbiddenError:
        problems.append("POLAR_ACCESS_TOKEN: the token lacks the customer_sessions:write scope")
    except PolarError as error:
        problems.append(
            f"POLAR_ACCESS_TOKEN: could not check the customer_sessions:write scope ({type(error).__name__})"
        )
    else:
        problems.append("POLAR_ACCESS_TOKEN: Polar accepted an empty customer session request; is POLAR_API_URL Polar?")
    return problems
