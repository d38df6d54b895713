"""`polar-mcp hosted revoke|clients|prune`: the operator's commands, on the server's own database.

They read the settings the server reads (POLAR_MCP_DATABASE_URL, and for a revocation by e-mail
the organization token, to ask Polar which customers have that e-mail: the database keeps customer
ids, never e-mails). Each may run while replicas serve: a revocation takes effect at the next
request on every replica, since every request checks its token in the database.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import anyio

from polar_mcp.config import Settings
from polar_mcp.exit_codes import ExitCode
from polar_mcp.hosted.database import DatabaseError
from polar_mcp.hosted.store import ClientRow, Store, default_database_url
from polar_mcp.polar.client import PolarClient
from polar_mcp.polar.customers import customers_by_email
from polar_mcp.polar.errors import PolarError
from polar_mcp.polar.sessions import ORGANIZATION_PREFIX
from polar_mcp.untrusted import clean_text

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def run(args: argparse.Namespace, settings: Settings, *, clock: Callable[[], float] = time.time) -> int:
    """Run one action to completion; its exit code."""
    action: str = args.action

    async def main() -> int:
        url = settings.database_url.get_secret_value() if settings.database_url else default_database_url()
        try:
            store = await Store.open(url, pool_size=2)
        except DatabaseError as error:
            _err(str(error))
            return ExitCode.CONFIG
        try:
            if action == "revoke":
                return await _revoke(store, settings, str(args.buyer).strip())
            if action == "clients":
                return await _clients(store, clock(), as_json=bool(args.json))
            removed = await store.prune(clock())
            print(f"removed {removed} expired row{'' if removed == 1 else 's'}")
            return ExitCode.OK
        finally:
            await store.close()

    return anyio.run(main)


async def _revoke(store: Store, settings: Settings, buyer: str) -> int:
    if _UUID.fullmatch(buyer):
        customer_ids = [buyer.lower()]
    elif "@" in buyer:
        found = await _customers_of(settings, buyer)
        if isinstance(found, int):
            return found
        customer_ids = found
    else:
        _err(f"{buyer!r} is neither an e-mail address nor a Polar customer id")
        return ExitCode.FAILED
    for customer_id in customer_ids:
        revoked = await store.revoke_customer(customer_id)
        print(f"customer {customer_id}: {revoked} sign-in{'' if revoked == 1 else 's'} revoked")
    return ExitCode.OK


async def _customers_of(settings: Settings, email: str) -> list[str] | int:
    """The seller's customers with this e-mail (as Polar knows them now), or an exit code."""
    token = settings.access_token
    if token is None or not token.get_secret_value().startswith(ORGANIZATION_PREFIX):
        _err(
            "POLAR_ACCESS_TOKEN: set the server's organization token to revoke by e-mail, "
            "or give the customer id instead"
        )
        return ExitCode.CONFIG
    http = PolarClient.new_http_client(settings.base_url, settings.timeout)
    try:
        polar = PolarClient(http, timeout=settings.timeout, polar_version=settings.api_version)
        customers = await customers_by_email(polar, token, email)
    except PolarError as error:
        _err(f"could not ask Polar for the customers with this e-mail: {error.message}")
        return ExitCode.UNAVAILABLE
    finally:
        await http.aclose()
    if not customers:
        _err(
            "Polar has no customer of this organization with this e-mail; if the seller removed it, "
            "revoke by its customer id"
        )
        return ExitCode.NOT_FOUND
    return [customer.id for customer in customers]


async def _clients(store: Store, now: float, *, as_json: bool) -> int:
    rows = await store.clients_in_use(now)
    if as_json:
        print(json.dumps([_as_dict(row) for row in rows], indent=2))
        return ExitCode.OK
    table = [["NAME", "REDIRECT HOSTS", "CREATED", "LAST USE", "SIGN-INS", "CLIENT ID"]]
    for row in rows:
        name, hosts = _shown(row)
        created, used = _when(row.created_at), _when(row.last_used_at)
        table.append([name or "(no name)", ", ".join(hosts), created, used, str(row.live_sign_ins), row.client_id])
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(widths[index]) for index, cell in enumerate(line)).rstrip())
    return ExitCode.OK


def _shown(row: ClientRow) -> tuple[str, list[str]]:
    """The name the app gave (neutralised: it is the app's text) and the hosts it sends buyers back
    to."""
    hosts = dict.fromkeys(_redirect_host(uri) for uri in row.redirect_uris)
    return clean_text(row.info.get("client_name") or "", limit=60), [clean_text(host, limit=80) for host in hosts]


def _redirect_host(uri: str) -> str:
    """The host of a web redirect; an app's own scheme is shown with it, since it says which app."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def _as_dict(row: ClientRow) -> dict[str, object]:
    name, hosts = _shown(row)
    return {
        "client_id": row.client_id,
        "name": name,
        "redirect_hosts": hosts,
        "created_at": _iso(row.created_at),
        "last_used_at": _iso(row.last_used_at),
        "live_sign_ins": row.live_sign_ins,
    }


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _err(message: str) -> None:
    print(f"polar-mcp: {message}", file=sys.stderr)
