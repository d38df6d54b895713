"""The seller's lookups with its organization token: customers by e-mail, a team's member.

Used by the hosted sign-in. The organization token never appears in a message.
"""

from __future__ import annotations

from urllib.parse import quote

from pydantic import SecretStr

from polar_mcp.polar.client import PolarClient, parse_json
from polar_mcp.polar.errors import NotFoundError
from polar_mcp.polar.models import (
    CustomerMatch,
    CustomersPage,
    MembersPage,
)

CUSTOMERS_PATH = "/v1/customers/"
MEMBERS_PATH = "/v1/members/"
MAX_MATCHES = 100
"""More customers than this for one e-mail is not a choice a person can make on a page."""


async def customers_by_email(client: PolarClient, organization_token: SecretStr, email: str) -> list[CustomerMatch]:
    """The organization's customers whose e-mail is exactly `email`, letter case aside: Polar's filter
    is exact, so the address is asked for as typed and in lower case."""
    found: dict[str, CustomerMatch] = {}
    for variant in dict.fromkeys((email.strip(), email.strip().lower())):
        body = await client.request(
            "GET", CUSTOMERS_PATH, token=organization_token, params=[("email", variant), ("limit", str(MAX_MATCHES))]
        )
        for customer in parse_json(body, CustomersPage).items:
            if customer.email.strip().lower() == email.strip().lower():
                found.setdefault(customer.id, customer)
    return list(found.values())


async def team_owner(client: PolarClient, organization_token: SecretStr, customer_id: str, email: str) -> str | None:
    """The member to act as for a team customer signed in with `email` (scope `members:read`): the
    member with that e-mail, else the team's owner. A team's sessions need a member id."""
    body = await client.request(
        "GET", MEMBERS_PATH, token=organization_token, params=[("customer_id", customer_id), ("limit", "100")]
    )
    members = parse_json(body, MembersPage).items
    wanted = email.strip().lower()
    # Whoever proved they read the team's e-mail acts as its owner, or as the member they are.
    for member in sorted(members, key=lambda member: (member.email.strip().lower() != wanted, member.role != "owner")):
        if member.email.strip().lower() == wanted or member.role == "owner":
            return member.id
    return None


async def customer_exists(client: PolarClient, organization_token: SecretStr, customer_id: str) -> bool:
    """Whether the organization still has this customer (a removed one answers 404)."""
    try:
        await client.request("GET", CUSTOMERS_PATH + quote(customer_id, safe=""), token=organization_token)
    except NotFoundError:
        return False
    return True
