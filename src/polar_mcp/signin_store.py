"""The stored sign-in: one JSON file in the user's config folder, readable by the user alone.

It holds, per API base URL and seller, the session a code was exchanged for (a token is only ever
sent to the base URL it came from), the codes asked for and not yet used (so a code typed after a
restart still completes), and the times codes were asked for, which the local limiter counts (so a
restart does not reset it). Writes are atomic: a temporary file in the same folder, then `os.replace`.
"""

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from pydantic import SecretStr

from polar_mcp.failure import Failure
from polar_mcp.polar.errors import AuthenticationError
from polar_mcp.polar.sessions import principal_key
from polar_mcp.polar.signin import mask_email

logger = logging.getLogger(__name__)

FILE_NAME = "signin.json"
CODE_LIFETIME = 30 * 60.0
"""Polar's codes live 30 minutes: a code asked for earlier cannot complete a sign-in."""
REQUESTS_PER_HOUR = 5
"""The local limit on code requests per seller and e-mail (and one a minute), inside Polar's 6/min, 12/h."""
ATTEMPTS_PER_MINUTE = 3
ATTEMPTS_PER_HOUR = 6
"""The local limit on codes sent to Polar per API: with the requests, still inside Polar's budget, which
counts code requests and code exchanges together."""


def default_config_dir(environ: Mapping[str, str]) -> Path:
    """polar-mcp's folder in the user's config folder (`$XDG_CONFIG_HOME`, `~/.config`, `%APPDATA%`)."""
    if os.name == "nt" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "polar-mcp"
    base = environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".config") / "polar-mcp"


class Seller(NamedTuple):
    """A seller as signed in to: Polar's organization id, its slug (portal address) and name."""

    id: str
    slug: str
    name: str

    def matches(self, wanted: str) -> bool:
        """Whether `wanted` (a slug or an id, as settings hold them) names this seller."""
        return wanted in (self.id, self.slug)


class SignedIn(NamedTuple):
    """A session a code was exchanged for, and whose it is."""

    api: str
    seller: Seller
    email: str
    token: SecretStr
    expires_at: datetime
    signed_in_at: datetime
    name: str | None = None
    kind: str | None = None
    role: str | None = None

    @property
    def masked_email(self) -> str:
        return mask_email(self.email)


class PendingCode(NamedTuple):
    """A code asked for and not yet exchanged: which seller and e-mail it was sent for."""

    api: str
    seller: Seller
    email: str
    customer_id: str | None
    requested_at: datetime


class StoreError(Failure):
    """The stored sign-in cannot be used as it is."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class InsecureStoreError(StoreError):
    """The file can be read by other users: it holds session tokens, so it is refused."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} can be read by other users and holds sign-in sessions; polar-mcp refuses it. "
            f"Fix it with: chmod 600 {path}",
            path,
        )


class UnreadableStoreError(StoreError):
    """The file is not one polar-mcp wrote (or was cut short)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is not a sign-in file polar-mcp can read; delete it and sign in again.", path)


class CodeRequestLimitedError(Failure):
    """polar-mcp's own limit on code requests (1 a minute, 5 an hour per seller and e-mail)."""

    def __init__(
        self, seller: str, email: str, wait: float, *, per: Literal["minute", "hour"], code_pending: bool
    ) -> None:
        self.seller = seller
        self.email = mask_email(email)
        self.wait = wait
        self.per = per
        self.code_pending = code_pending
        """Whether a code sent earlier is still unused: the person can type it instead of waiting."""
        if per == "minute":
            head = f"A code for {self.email} at {seller} was asked for less than a minute ago"
            allowed = "one code request a minute"
        else:
            head = f"Codes for {self.email} at {seller} were asked for {REQUESTS_PER_HOUR} times in the last hour"
            allowed = f"{REQUESTS_PER_HOUR} code requests an hour"
        super().__init__(
            f"{head}: polar-mcp allows {allowed} per seller and e-mail, so that Polar never blocks this address. "
            f"Wait {_seconds(wait)}."
        )


class CodeAttemptsLimitedError(Failure):
    """polar-mcp's own limit on codes tried (3 a minute, 6 an hour), so that guessing never blocks the address."""

    def __init__(self, wait: float, *, per: Literal["minute", "hour"]) -> None:
        self.wait = wait
        self.per = per
        allowed = ATTEMPTS_PER_MINUTE if per == "minute" else ATTEMPTS_PER_HOUR
        super().__init__(
            f"{allowed} codes were tried in the last {per}: polar-mcp allows {ATTEMPTS_PER_MINUTE} code attempts a "
            f"minute and {ATTEMPTS_PER_HOUR} an hour, so that Polar never blocks this address. Wait {_seconds(wait)}."
        )


class SignInRequiredError(AuthenticationError):
    """No usable stored sign-in: none yet, expired, or rejected by Polar. The fix is signing in again."""

    def __init__(
        self,
        reason: Literal["none", "expired", "rejected"],
        *,
        seller: str | None = None,
        email: str | None = None,
        expired_at: datetime | None = None,
    ) -> None:
        self.reason = reason
        self.seller = seller
        self.email = mask_email(email) if email else None
        self.expired_at = expired_at
        if reason == "none":
            message = "Not signed in to Polar."
        elif reason == "expired":
            message = f"The sign-in at {seller} for {self.email} has expired (sessions live one hour)."
        else:
            message = f"Polar no longer accepts the sign-in at {seller} for {self.email}."
        self.situation = message
        """What happened, without advice: each front end adds how to sign in again in its own terms."""
        super().__init__(message + " Sign in again with a new code.")


def _seconds(value: float) -> str:
    seconds = max(1, round(value))
    if seconds < 120:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min"


class SignInStore:
    """The file; every change is a whole new file put in place atomically."""

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._folder = folder
        self._clock = clock

    @property
    def path(self) -> Path:
        return self._folder / FILE_NAME

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # Sessions.

    def sessions(self, api: str) -> list[SignedIn]:
        """Every session stored for `api`, the most recently signed in first."""
        found = [s for s in (_signed_in(e) for e in _entries(self._read(), "sessions")) if s and s.api == api]
        return sorted(found, key=lambda s: s.signed_in_at, reverse=True)

    def active(self, api: str, organization: str | None) -> SignedIn | None:
        """The session in use: the seller `organization` names, else the last signed in."""
        sessions = self.sessions(api)
        if organization is not None:
            return next((s for s in sessions if s.seller.matches(organization)), None)
        return sessions[0] if sessions else None

    def save(self, signed_in: SignedIn) -> None:
        """Store a session, replacing the seller's previous one and its pending codes."""
        state = self._read()
        state["sessions"] = [
            e for e in _entries(state, "sessions") if not _same_seller(e, signed_in.api, signed_in.seller.id)
        ] + [_session_entry(signed_in)]
        state["pending"] = [
            e for e in _entries(state, "pending") if not _same_seller(e, signed_in.api, signed_in.seller.id)
        ]
        self._write(state)

    def forget(self, api: str, seller: str | None) -> SignedIn | None:
        """Remove the session for `seller` (else the active one) and its pending codes; what was removed."""
        gone = self.active(api, seller)
        if gone is None:
            return None
        state = self._read()
        for key in ("sessions", "pending"):
            state[key] = [e for e in _entries(state, key) if not _same_seller(e, api, gone.seller.id)]
        self._write(state)
        return gone

    # Codes asked for.

    def pending(self, api: str, seller: str | None = None, email: str | None = None) -> PendingCode | None:
        """The latest code asked for in the last 30 minutes, for `seller` and `email` when given."""
        oldest = self._clock() - CODE_LIFETIME
        found = [
            p
            for p in (_pending(e) for e in _entries(self._read(), "pending"))
            if p is not None
            and p.api == api
            and p.requested_at.timestamp() > oldest
            and (seller is None or p.seller.matches(seller))
            and (email is None or p.email.casefold() == email.casefold())
        ]
        return max(found, key=lambda p: p.requested_at, default=None)

    def check_limit(self, api: str, seller: Seller, email: str) -> None:
        """Refuse a code request past 1 a minute or 5 an hour for this seller and e-mail."""
        now = self._clock()
        times = sorted(
            float(e["at"])
            for e in _entries(self._read(), "requests")
            if _request_key(e) == (api, seller.id, email.casefold()) and now - float(e["at"]) < 3600
        )
        pending = self.pending(api, seller.id, email) is not None
        if times and now - times[-1] < 60:
            wait = 60 - (now - times[-1])
            raise CodeRequestLimitedError(seller.name, email, wait, per="minute", code_pending=pending)
        if len(times) >= REQUESTS_PER_HOUR:
            wait = 3600 - (now - times[-REQUESTS_PER_HOUR])
            raise CodeRequestLimitedError(seller.name, email, wait, per="hour", code_pending=pending)

    def check_attempts(self, api: str) -> None:
        """Refuse to send a code to Polar past 3 a minute or 6 an hour for this API."""
        now = self._clock()
        times = sorted(
            float(e["at"])
            for e in _entries(self._read(), "attempts")
            if isinstance(e.get("at"), int | float) and e.get("api") == api and now - float(e["at"]) < 3600
        )
        recent = [t for t in times if now - t < 60]
        if len(recent) >= ATTEMPTS_PER_MINUTE:
            raise CodeAttemptsLimitedError(60 - (now - recent[-ATTEMPTS_PER_MINUTE]), per="minute")
        if len(times) >= ATTEMPTS_PER_HOUR:
            raise CodeAttemptsLimitedError(3600 - (now - times[-ATTEMPTS_PER_HOUR]), per="hour")

    def code_tried(self, api: str) -> None:
        """Count a code sent to Polar, accepted or not."""
        state = self._read()
        now = self._clock()
        state["attempts"] = [
            e
            for e in _entries(state, "attempts")
            if isinstance(e.get("at"), int | float) and now - float(e["at"]) < 3600
        ] + [{"api": api, "at": now}]
        self._write(state)

    def code_requested(self, pending: PendingCode) -> None:
        """Remember a code Polar accepted to send: for the limiter and for completing it later."""
        state = self._read()
        now = self._clock()
        state["requests"] = [
            e for e in _entries(state, "requests") if _request_key(e) and now - float(e["at"]) < 3600
        ] + [{"api": pending.api, "seller_id": pending.seller.id, "email": pending.email.casefold(), "at": now}]
        kept = [
            e
            for e in _entries(state, "pending")
            if (p := _pending(e)) is not None
            and now - p.requested_at.timestamp() < CODE_LIFETIME
            and not (p.api == pending.api and p.seller.id == pending.seller.id and p.email == pending.email)
        ]
        state["pending"] = [*kept, _pending_entry(pending)]
        self._write(state)

    # The file.

    def _read(self) -> dict[str, Any]:
        path = self.path
        try:
            info = path.stat()
        except FileNotFoundError:
            return {}
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureStoreError(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UnreadableStoreError(path) from None
        if not isinstance(data, dict) or cast(dict[str, Any], data).get("version") != 1:
            raise UnreadableStoreError(path)
        return cast(dict[str, Any], data)

    def _write(self, state: dict[str, Any]) -> None:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        state["version"] = 1
        # mkstemp creates the file 0600: the token is never readable by others, not even for a moment.
        handle, temporary = tempfile.mkstemp(dir=self._folder, prefix=".signin-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(state, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _entries(state: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The well-formed entries of one list in the file (anything else is skipped)."""
    raw = state.get(key)
    if not isinstance(raw, list):
        return []
    return [cast(dict[str, Any], e) for e in cast(list[Any], raw) if isinstance(e, dict)]


def _same_seller(entry: dict[str, Any], api: str, seller_id: str) -> bool:
    return entry.get("api") == api and entry.get("seller_id") == seller_id


def _request_key(entry: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    if not isinstance(entry.get("at"), int | float):
        return None
    return entry.get("api"), entry.get("seller_id"), entry.get("email")


def _seller_fields(seller: Seller) -> dict[str, str]:
    return {"seller_id": seller.id, "seller_slug": seller.slug, "seller_name": seller.name}


def _session_entry(s: SignedIn) -> dict[str, Any]:
    return {
        "api": s.api,
        **_seller_fields(s.seller),
        "email": s.email,
        "token": s.token.get_secret_value(),
        "expires_at": s.expires_at.isoformat(),
        "signed_in_at": s.signed_in_at.isoformat(),
        "name": s.name,
        "kind": s.kind,
        "role": s.role,
    }


def _pending_entry(p: PendingCode) -> dict[str, Any]:
    return {
        "api": p.api,
        **_seller_fields(p.seller),
        "email": p.email,
        "customer_id": p.customer_id,
        "requested_at": p.requested_at.isoformat(),
    }


def _seller_of(entry: dict[str, Any]) -> Seller:
    return Seller(str(entry["seller_id"]), str(entry["seller_slug"]), str(entry["seller_name"]))


def _moment(value: Any) -> datetime:
    """A time read back; one without a zone (a hand-edited file) is taken as UTC, as Polar's are."""
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _signed_in(e: dict[str, Any]) -> SignedIn | None:
    """An entry read back; one that is not well formed is skipped, not fatal."""
    try:
        return SignedIn(
            api=str(e["api"]),
            seller=_seller_of(e),
            email=str(e["email"]),
            token=SecretStr(str(e["token"])),
            expires_at=_moment(e["expires_at"]),
            signed_in_at=_moment(e["signed_in_at"]),
            name=e.get("name"),
            kind=e.get("kind"),
            role=e.get("role"),
        )
    except (KeyError, ValueError):
        return None


def _pending(e: dict[str, Any]) -> PendingCode | None:
    try:
        return PendingCode(
            api=str(e["api"]),
            seller=_seller_of(e),
            email=str(e["email"]),
            customer_id=e.get("customer_id"),
            requested_at=_moment(e["requested_at"]),
        )
    except (KeyError, ValueError):
        return None


class StoredSession:
    """A `TokenSource` for the stored sign-in of one API base URL (stdio and CLI only).

    The file is read again whenever the session in hand is missing, expired or rejected, so a
    `polar-mcp login` in a terminal renews a server that is already running.
    """

    def __init__(self, store: SignInStore, api: str, organization: str | None) -> None:
        self._store = store
        self._api = api
        self._organization = organization
        self._current: SignedIn | None = None
        self._loaded = False

    @property
    def store(self) -> SignInStore:
        return self._store

    @property
    def principal(self) -> str:
        current = self._current
        return principal_key(current.token.get_secret_value()) if current is not None else "signed-out"

    @property
    def renew_hint(self) -> str:
        return "Sign in again with a new code."

    def current(self) -> SignedIn | None:
        """The session in use now, read from the file on first use."""
        if not self._loaded:
            self.reload()
        return self._current

    def reload(self) -> SignedIn | None:
        self._current = self._store.active(self._api, self._organization)
        self._loaded = True
        return self._current

    async def token(self) -> SecretStr:
        current = self.current()
        if current is None or self._expired(current):
            current = self.reload()
        if current is None:
            raise SignInRequiredError("none", seller=self._organization)
        if self._expired(current):
            raise SignInRequiredError(
                "expired", seller=current.seller.name, email=current.email, expired_at=current.expires_at
            )
        return current.token

    async def renew(self, rejected: SecretStr) -> SecretStr | None:
        fresh = self.reload()
        renewed = fresh is not None and fresh.token.get_secret_value() != rejected.get_secret_value()
        if fresh is not None and renewed and not self._expired(fresh):
            return fresh.token
        known = fresh or self._current
        if known is None:
            raise SignInRequiredError("none", seller=self._organization)
        # Remembered as expired, so the next call says so at once instead of asking Polar again.
        self._current = known._replace(expires_at=min(known.expires_at, self._store.now()))
        raise SignInRequiredError("rejected", seller=known.seller.name, email=known.email)

    def _expired(self, signed_in: SignedIn) -> bool:
        return signed_in.expires_at <= self._store.now()
