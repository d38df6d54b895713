"""The hosted sign-in's state: SQLAlchemy Core over an async driver, one small repository.

Every statement is dialect-neutral Core (no upserts, no SQLite-only types), so the same code runs
on PostgreSQL once its driver is installed. The schema carries its version in `schema_version`;
`migrate` applies the missing steps in order inside one transaction. Secrets never reach a row:
tokens, codes and flow ids are stored as keyed digests (`keys.Keys.digest`), and no Polar session
token is stored at all.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from polar_mcp.hosted.database import (
    DEFAULT_POOL_SIZE,
    DatabaseError,
    RowReader,
    async_url,
    explain,
    migration_transaction,
    open_engine,
)

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

clients = sa.Table(
    "oauth_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("info", sa.Text, nullable=False),
    # The redirect URIs exactly as the app sent them: compared as strings, never normalised.
    sa.Column("redirect_uris", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("last_used_at", sa.Double, nullable=False),
)

flows = sa.Table(
    "signin_flows",
    metadata,
    sa.Column("flow_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("browser_hash", sa.String(64)),
    sa.Column("email", sa.String(320)),
    sa.Column("code_hash", sa.String(64)),
    sa.Column("code_expires_at", sa.Double),
    sa.Column("code_tries", sa.Integer, nullable=False, default=0),
    sa.Column("verified", sa.Boolean, nullable=False, default=False),
    sa.Column("choices", sa.Text),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("member_id", sa.String(64)),
    sa.Column("finished", sa.Boolean, nullable=False, default=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

codes = sa.Table(
    "authorization_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("member_id", sa.String(64)),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("family_id", sa.String(64)),
)

families = sa.Table(
    "token_families",
    metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("member_id", sa.String(64)),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

tokens = sa.Table(
    "oauth_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)

counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

MIGRATIONS: tuple[tuple[sa.Table, ...], ...] = ((clients, flows, codes, families, tokens, counters),)
"""Step N creates (or alters) what schema version N needs; the list only ever grows."""
SCHEMA_VERSION = len(MIGRATIONS)
UNUSED_CLIENT_LIFE = 30 * 86400.0
"""A registration that no sign-in used for this long goes: registering is open to anyone."""


def default_database_url() -> str:
    """A SQLite file in the user's data folder (XDG_DATA_HOME, else ~/.local/share)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'polar-mcp' / 'hosted.sqlite3'}"


@dataclass(frozen=True)
class Flow:
    """One sign-in in progress, from /authorize to the app's redirect."""

    flow_hash: str
    client_id: str
    params: dict[str, Any]
    browser_hash: str | None
    email: str | None
    code_hash: str | None
    code_expires_at: float | None
    code_tries: int
    verified: bool
    choices: list[dict[str, str]] | None
    customer_id: str | None
    member_id: str | None
    finished: bool
    expires_at: float


@dataclass(frozen=True)
class Family:
    """The tokens of one sign-in of one buyer in one app: rotated together, revoked together."""

    family_id: str
    client_id: str
    customer_id: str
    member_id: str | None
    resource: str
    scopes: list[str]
    expires_at: float
    revoked: bool


@dataclass(frozen=True)
class CodeRow:
    client_id: str
    customer_id: str
    member_id: str | None
    params: dict[str, Any]
    expires_at: float
    family_id: str | None


@dataclass(frozen=True)
class TokenRow:
    kind: str
    family: Family
    expires_at: float
    used: bool


@dataclass(frozen=True)
class ClientRow:
    """A registered app as an operator sees it."""

    client_id: str
    info: dict[str, Any]
    redirect_uris: list[str]
    created_at: float
    last_used_at: float
    live_sign_ins: int


class Store:
    """The repository: every read and write of the hosted state goes through these methods."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reads = RowReader(engine)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Store:
        """Connect (see `database.open_engine`) and bring the schema up to date."""
        engine = await open_engine(url, pool_size=pool_size)
        store = cls(engine)
        try:
            await store.migrate()
        except DatabaseError:
            await engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as error:
            await engine.dispose()
            raise explain(error, async_url(url)) from None
        return store

    async def close(self) -> None:
        await self._engine.dispose()
        await self._reads.close()

    @asynccontextmanager
    async def _begin(self) -> AsyncGenerator[AsyncConnection]:
        async with self._engine.begin() as connection:
            yield connection

    async def migrate(self) -> None:
        async with migration_transaction(self._engine) as db:
            await db.run_sync(lambda sync: schema_version.create(sync, checkfirst=True))
            current = (await db.execute(sa.select(sa.func.max(schema_version.c.version)))).scalar() or 0
            if current > SCHEMA_VERSION:
                raise DatabaseError(
                    f"POLAR_MCP_DATABASE_URL: the database has schema version {current}, newer than this "
                    f"polar-mcp knows ({SCHEMA_VERSION}); upgrade polar-mcp"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                step = MIGRATIONS[version - 1]
                await db.run_sync(functools.partial(_create, tables=step))
                await db.execute(sa.delete(schema_version))
                await db.execute(sa.insert(schema_version).values(version=version))
                logger.info("database schema migrated to version %d", version)

    async def version(self) -> int:
        async with self._begin() as db:
            return int((await db.execute(sa.select(sa.func.max(schema_version.c.version)))).scalar() or 0)

    async def healthy(self) -> bool:
        try:
            async with self._begin() as db:
                await db.execute(sa.select(1))
        except (SQLAlchemyError, OSError):
            return False
        return True

    # Clients -------------------------------------------------------------------------------------

    async def add_client(self, client_id: str, info: str, redirect_uris: Sequence[str], now: float) -> None:
        async with self._begin() as db:
            await db.execute(
                sa.insert(clients).values(
                    client_id=client_id,
                    info=info,
                    redirect_uris=json.dumps(list(redirect_uris)),
                    created_at=now,
                    last_used_at=now,
                )
            )

    async def client(self, client_id: str) -> tuple[str, list[str]] | None:
        """A client's registration (JSON) and its exact redirect URIs."""
        async with self._begin() as db:
            row = (
                await db.execute(
                    sa.select(clients.c.info, clients.c.redirect_uris).where(clients.c.client_id == client_id)
                )
            ).first()
        if row is None:
            return None
        return str(row.info), cast(list[str], json.loads(row.redirect_uris))

    # Flows ---------------------------------------------------------------------------------------

    async def add_flow(self, flow_hash: str, client_id: str, params: dict[str, Any], expires_at: float) -> None:
        async with self._begin() as db:
            await db.execute(
                sa.insert(flows).values(
                    flow_hash=flow_hash,
                    client_id=client_id,
                    params=json.dumps(params),
                    code_tries=0,
                    verified=False,
                    finished=False,
                    expires_at=expires_at,
                )
            )

    async def flow(self, flow_hash: str, now: float) -> Flow | None:
        async with self._begin() as db:
            row = (
                await db.execute(sa.select(flows).where(flows.c.flow_hash == flow_hash, flows.c.expires_at > now))
            ).first()
        if row is None:
            return None
        return Flow(
            flow_hash=row.flow_hash,
            client_id=row.client_id,
            params=json.loads(row.params),
            browser_hash=row.browser_hash,
            email=row.email,
            code_hash=row.code_hash,
            code_expires_at=row.code_expires_at,
            code_tries=row.code_tries,
            verified=bool(row.verified),
            choices=json.loads(row.choices) if row.choices is not None else None,
            customer_id=row.customer_id,
            member_id=row.member_id,
            finished=bool(row.finished),
            expires_at=row.expires_at,
        )

    async def update_flow(self, flow_hash: str, **values: Any) -> None:
        if "choices" in values and values["choices"] is not None:
            values["choices"] = json.dumps(values["choices"])
        async with self._begin() as db:
            await db.execute(sa.update(flows).where(flows.c.flow_hash == flow_hash).values(**values))

    async def count_code_try(self, flow_hash: str) -> int:
        """Count one try at the flow's code, atomically; the number of tries so far."""
        async with self._begin() as db:
            await db.execute(
                sa.update(flows).where(flows.c.flow_hash == flow_hash).values(code_tries=flows.c.code_tries + 1)
            )
            tries = (await db.execute(sa.select(flows.c.code_tries).where(flows.c.flow_hash == flow_hash))).scalar()
        return int(tries or 0)

    async def finish_flow(self, flow_hash: str) -> bool:
        """Mark the flow finished; False if it already was (a second click must not mint a second code)."""
        async with self._begin() as db:
            result = await db.execute(
                sa.update(flows)
                .where(flows.c.flow_hash == flow_hash, flows.c.finished.is_(False))
                .values(finished=True)
            )
        return result.rowcount == 1

    # Authorization codes -------------------------------------------------------------------------

    async def add_code(
        self,
        code_hash: str,
        client_id: str,
        customer: tuple[str, str | None],
        params: dict[str, Any],
        expires_at: float,
    ) -> None:
        """Store an authorization code for `customer` (its id, and its member id for a team)."""
        async with self._begin() as db:
            await db.execute(
                sa.insert(codes).values(
                    code_hash=code_hash,
                    client_id=client_id,
                    customer_id=customer[0],
                    member_id=customer[1],
                    params=json.dumps(params),
                    expires_at=expires_at,
                )
            )

    async def code(self, code_hash: str) -> CodeRow | None:
        async with self._begin() as db:
            row = (await db.execute(sa.select(codes).where(codes.c.code_hash == code_hash))).first()
        if row is None:
            return None
        return CodeRow(
            row.client_id, row.customer_id, row.member_id, json.loads(row.params), row.expires_at, row.family_id
        )

    async def spend_code(self, code_hash: str, family_id: str) -> bool:
        """Record which family a code became; False if it was already spent (a replay)."""
        async with self._begin() as db:
            result = await db.execute(
                sa.update(codes)
                .where(codes.c.code_hash == code_hash, codes.c.family_id.is_(None))
                .values(family_id=family_id)
            )
        return result.rowcount == 1

    # Token families ------------------------------------------------------------------------------

    async def add_family(self, family: Family, now: float) -> None:
        async with self._begin() as db:
            await db.execute(
                sa.insert(families).values(
                    family_id=family.family_id,
                    client_id=family.client_id,
                    customer_id=family.customer_id,
                    member_id=family.member_id,
                    resource=family.resource,
                    scopes=" ".join(family.scopes),
                    created_at=now,
                    expires_at=family.expires_at,
                    revoked=False,
                )
            )

    async def add_token(self, token_hash: str, kind: str, family_id: str, expires_at: float) -> None:
        async with self._begin() as db:
            await db.execute(
                sa.insert(tokens).values(
                    token_hash=token_hash, kind=kind, family_id=family_id, expires_at=expires_at, used=False
                )
            )

    async def token(self, token_hash: str) -> TokenRow | None:
        """A token with its family, whatever their state (the caller judges expiry and reuse)."""
        row = await self._reads.first(_TOKEN_WITH_FAMILY, {"token_hash": token_hash})
        if row is None:
            return None
        family = Family(
            family_id=row.family_id,
            client_id=row.client_id,
            customer_id=row.customer_id,
            member_id=row.member_id,
            resource=row.resource,
            scopes=[scope for scope in str(row.scopes).split(" ") if scope],
            expires_at=row.family_expires_at,
            revoked=bool(row.revoked),
        )
        return TokenRow(kind=row.kind, family=family, expires_at=row.token_expires_at, used=bool(row.used))

    async def rotate(self, old_hash: str, new_hash: str, family_id: str, expires_at: float) -> bool:
        """Spend a refresh token and store its successor, extending the family's life; False on reuse."""
        async with self._begin() as db:
            spent = await db.execute(
                sa.update(tokens).where(tokens.c.token_hash == old_hash, tokens.c.used.is_(False)).values(used=True)
            )
            if spent.rowcount != 1:
                return False
            await db.execute(
                sa.insert(tokens).values(
                    token_hash=new_hash, kind="refresh", family_id=family_id, expires_at=expires_at, used=False
                )
            )
            await db.execute(sa.update(families).where(families.c.family_id == family_id).values(expires_at=expires_at))
        return True

    async def revoke_family(self, family_id: str) -> None:
        async with self._begin() as db:
            await db.execute(sa.update(families).where(families.c.family_id == family_id).values(revoked=True))
            await db.execute(sa.delete(tokens).where(tokens.c.family_id == family_id))

    async def revoke_customer(self, customer_id: str) -> int:
        """Revoke every family of a customer; how many were live."""
        async with self._begin() as db:
            result = await db.execute(
                sa.update(families)
                .where(families.c.customer_id == customer_id, families.c.revoked.is_(False))
                .values(revoked=True)
            )
            live = tokens.c.family_id.in_(sa.select(families.c.family_id).where(families.c.customer_id == customer_id))
            await db.execute(sa.delete(tokens).where(live))
        return int(result.rowcount)

    # Rate limits ---------------------------------------------------------------------------------

    async def hit(self, key: str, *, limit: int, window: float, now: float) -> bool:
        """Count one event under `key` in a fixed window; False once the window holds `limit` events.

        Safe between processes on one database: the count only grows by a conditional UPDATE, and a
        window is opened by one INSERT, whose loser (a unique-key violation) counts again."""
        for _ in range(2):
            async with self._begin() as db:
                counted = await db.execute(
                    sa.update(counters)
                    .where(counters.c.key == key, counters.c.expires_at > now, counters.c.hits < limit)
                    .values(hits=counters.c.hits + 1)
                )
                if counted.rowcount == 1:
                    return True
                live = await db.execute(
                    sa.select(counters.c.key).where(counters.c.key == key, counters.c.expires_at > now)
                )
                if live.first() is not None:
                    return False
            try:
                async with self._begin() as db:
                    await db.execute(sa.delete(counters).where(counters.c.key == key, counters.c.expires_at <= now))
                    await db.execute(sa.insert(counters).values(key=key, hits=1, expires_at=now + window))
            except IntegrityError:
                continue
            return limit >= 1
        return False

    async def touch_client(self, client_id: str, now: float) -> None:
        """Note that a client was used (tokens issued): unused registrations are pruned."""
        async with self._begin() as db:
            await db.execute(sa.update(clients).where(clients.c.client_id == client_id).values(last_used_at=now))

    # Housekeeping --------------------------------------------------------------------------------

    async def prune(self, now: float, *, unused_clients_after: float = UNUSED_CLIENT_LIFE) -> int:
        """Delete what expired, and registrations unused for `unused_clients_after` seconds that hold
        no live sign-in; how many rows went."""
        removed = 0
        async with self._begin() as db:
            for statement in (
                sa.delete(clients).where(
                    clients.c.last_used_at <= now - unused_clients_after,
                    ~sa.exists().where(families.c.client_id == clients.c.client_id, families.c.expires_at > now),
                ),
                sa.delete(flows).where(flows.c.expires_at <= now),
                sa.delete(codes).where(codes.c.expires_at <= now),
                sa.delete(tokens).where(tokens.c.expires_at <= now),
                sa.delete(counters).where(counters.c.expires_at <= now),
                sa.delete(families).where(
                    sa.or_(families.c.expires_at <= now, families.c.revoked.is_(True)),
                    ~sa.exists().where(codes.c.family_id == families.c.family_id),
                ),
            ):
                removed += int((await db.execute(statement)).rowcount)
        return removed

    async def count(self, table: str) -> int:
        """Rows in one table (for operators and tests)."""
        chosen = metadata.tables[table]
        async with self._begin() as db:
            return int((await db.execute(sa.select(sa.func.count()).select_from(chosen))).scalar() or 0)

    # Operators ----------------------------------------------------------------------------------

    async def clients_in_use(self, now: float) -> list[ClientRow]:
        """Every registered app with its live sign-ins, most recently used first."""
        live = (
            sa.select(sa.func.count())
            .where(families.c.client_id == clients.c.client_id, families.c.revoked.is_(False))
            .where(families.c.expires_at > now)
            .scalar_subquery()
        )
        query = sa.select(clients, live.label("live")).order_by(clients.c.last_used_at.desc(), clients.c.client_id)
        async with self._begin() as db:
            rows = (await db.execute(query)).all()
        return [
            ClientRow(
                client_id=row.client_id,
                info=json.loads(row.info),
                redirect_uris=json.loads(row.redirect_uris),
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                live_sign_ins=int(row.live),
            )
            for row in rows
        ]

    async def dump(self) -> list[str]:
        """Every stored value as text, for proving that no secret is stored in the clear."""
        values: list[str] = []
        async with self._begin() as db:
            for table in metadata.sorted_tables:
                for row in (await db.execute(sa.select(table))).all():
                    values.extend(str(value) for value in row)
        return values


# Built once: the token check runs on every call of a signed-in buyer.
_TOKEN_WITH_FAMILY = (
    sa.select(
        tokens.c.kind,
        tokens.c.expires_at.label("token_expires_at"),
        tokens.c.used,
        families.c.family_id,
        families.c.client_id,
        families.c.customer_id,
        families.c.member_id,
        families.c.resource,
        families.c.scopes,
        families.c.expires_at.label("family_expires_at"),
        families.c.revoked,
    )
    .join(families, families.c.family_id == tokens.c.family_id)
    .where(tokens.c.token_hash == sa.bindparam("token_hash"))
)


def _create(sync: sa.Connection, tables: tuple[sa.Table, ...]) -> None:
    metadata.create_all(sync, tables=list(tables))
