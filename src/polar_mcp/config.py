"""Settings from the environment and command-line flags.

`POLAR_*` names are Polar identity and endpoints, `POLAR_MCP_*` this server's behaviour. Every
setting has a flag (the name without its prefix, lowercase, dashes) except secrets: a token on the
command line would show in `ps`.
"""

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from polar_mcp.untrusted import parse_size

logger = logging.getLogger(__name__)

# A host that fills `${user_config.x}` in a bundle's env leaves the reference itself when the user set nothing.
_UNFILLED_REFERENCE = re.compile(r"\$\{[^}]*\}")

WARM_UP_DEFAULT = 0.1
"""Seconds of quiet after tools/list before the server prepares its core (`POLAR_MCP_WARM_UP`)."""

SERVERS = {"production": "https://api.polar.sh", "sandbox": "https://sandbox-api.polar.sh"}


class Option(NamedTuple):
    """One setting: its field, environment variable, flag (None for secrets) and help text."""

    field: str
    env: str
    help: str
    secret: bool = False
    switch: bool = False
    short_flag: str | None = None
    """A flag name other than the one derived from the variable (`--email`, not `--customer-email`)."""

    @property
    def flag(self) -> str | None:
        if self.secret:
            return None
        if self.short_flag is not None:
            return "--" + self.short_flag
        name = self.env.removeprefix("POLAR_MCP_").removeprefix("POLAR_")
        return "--" + name.lower().replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "customer_session",
        "POLAR_CUSTOMER_SESSION",
        "customer (polar_cst_…) or member (polar_mst_…) session token",
        secret=True,
    ),
    Option(
        "access_token",
        "POLAR_ACCESS_TOKEN",
        "organization token (polar_oat_…, scope customer_sessions:write) to mint customer sessions",
        secret=True,
    ),
    Option("customer_id", "POLAR_CUSTOMER_ID", "Polar customer id to mint sessions for"),
    Option("external_customer_id", "POLAR_EXTERNAL_CUSTOMER_ID", "your own customer id to mint sessions for"),
    Option("member_id", "POLAR_MEMBER_ID", "member id, for team customers"),
    Option("external_member_id", "POLAR_EXTERNAL_MEMBER_ID", "your own member id, for team customers"),
    Option(
        "organization",
        "POLAR_ORGANIZATION",
        "the seller to sign in at: the slug of its portal address (polar.sh/<slug>/portal) or its id",
    ),
    Option("customer_email", "POLAR_CUSTOMER_EMAIL", "the buyer's e-mail, to sign in with", short_flag="email"),
    Option("server", "POLAR_SERVER", "Polar environment: production (default) or sandbox"),
    Option("api_url", "POLAR_API_URL", "Polar API base URL, overriding --server (proxies, tests)"),
    Option("api_version", "POLAR_API_VERSION", "Polar-Version header to send (YYYY-MM); none by default"),
    Option("timeout", "POLAR_MCP_TIMEOUT", "seconds a Polar call may take, retries included (default 30)"),
    Option("log_level", "POLAR_MCP_LOG_LEVEL", "stderr log level: DEBUG, INFO (default), WARNING, ERROR"),
    Option(
        "config_dir",
        "POLAR_MCP_CONFIG_DIR",
        "folder of the stored sign-in (default: polar-mcp in the user's config folder)",
    ),
    Option("download_dir", "POLAR_MCP_DOWNLOAD_DIR", "folder download_file saves into (default: Downloads/polar)"),
    Option(
        "max_download_size",
        "POLAR_MCP_MAX_DOWNLOAD_SIZE",
        "largest file download_file fetches, in bytes or with a unit of 1024: 500MB, 2GB (default 5GB)",
    ),
    Option(
        "max_sync_size",
        "POLAR_MCP_MAX_SYNC_SIZE",
        "most sync_library fetches in one sync, in bytes or with a unit of 1024 (default 20GB)",
    ),
    Option(
        "download_concurrency",
        "POLAR_MCP_DOWNLOAD_CONCURRENCY",
        "files sync_library fetches at once (default 4)",
    ),
    Option(
        "disable_download",
        "POLAR_MCP_DISABLE_DOWNLOAD",
        "hide download_file and sync_library, for hosts that must not write files",
        switch=True,
    ),
    Option(
        "warm_up",
        "POLAR_MCP_WARM_UP",
        "seconds the server waits, once the host has its tools, before it prepares its Polar client,"
        " so the first call answers sooner (0 to 60; default 0.1; off: the first call prepares it)",
    ),
    Option("transport", "POLAR_MCP_TRANSPORT", "stdio (default) or http (streamable HTTP at /mcp)"),
    Option("host", "POLAR_MCP_HOST", "HTTP bind address (default 127.0.0.1)"),
    Option("port", "POLAR_MCP_PORT", "HTTP port (default 8000)"),
    Option(
        "allowed_hosts",
        "POLAR_MCP_ALLOWED_HOSTS",
        "comma-separated Host header values HTTP accepts (default: localhost only); required off loopback",
    ),
    Option(
        "allow_configured_token",
        "POLAR_MCP_ALLOW_CONFIGURED_TOKEN",
        "HTTP on loopback: let requests without a bearer use the configured session (default off)",
        switch=True,
    ),
    Option(
        "auth",
        "POLAR_MCP_AUTH",
        "HTTP: bearer (default, each request brings a session token) or signin (OAuth, buyers sign in by e-mail)",
    ),
    Option("public_url", "POLAR_MCP_PUBLIC_URL", "signin: the address buyers reach, e.g. https://files.example.com"),
    Option(
        "secret_key",
        "POLAR_MCP_SECRET_KEY",
        "signin: at least 32 random characters, the same on every replica (CSRF, token and code hashing)",
        secret=True,
    ),
    Option(
        "smtp_url",
        "POLAR_MCP_SMTP_URL",
        "signin: the mail server for codes, smtp://user:password@host:587 (STARTTLS) or smtps://…:465",
        secret=True,
    ),
    Option("mail_from", "POLAR_MCP_MAIL_FROM", "signin: the From address of code e-mails"),
    Option(
        "database_url",
        "POLAR_MCP_DATABASE_URL",
        "signin: where state lives (default sqlite in the user's data folder)",
        secret=True,
    ),
    Option(
        "database_pool_size",
        "POLAR_MCP_DATABASE_POOL_SIZE",
        "signin: database connections each server process keeps at most (default 10)",
    ),
    Option(
        "workers",
        "POLAR_MCP_WORKERS",
        "HTTP: server processes on the one port (default 1); signin shares its state through the database",
    ),
    Option(
        "trusted_proxies",
        "POLAR_MCP_TRUSTED_PROXIES",
        "signin: comma-separated proxy addresses or networks whose X-Forwarded-For is believed",
    ),
    Option(
        "refresh_ttl",
        "POLAR_MCP_REFRESH_TTL",
        "signin: how long a sign-in lasts unused, renewed by each use: 30d (default), 12h, or seconds",
    ),
)


class ConfigError(Exception):
    """A setting has a value polar-mcp cannot use; the message names the variable and the flag."""


class Settings(BaseModel):
    """Everything polar-mcp needs to run, validated once at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_session: SecretStr | None = None
    access_token: SecretStr | None = None
    customer_id: str | None = Field(default=None, max_length=200)
    external_customer_id: str | None = Field(default=None, max_length=200)
    member_id: str | None = Field(default=None, max_length=200)
    external_member_id: str | None = Field(default=None, max_length=200)
    organization: str | None = None
    customer_email: str | None = Field(default=None, max_length=320)
    server: Literal["production", "sandbox"] = "production"
    api_url: str | None = None
    api_version: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    timeout: float = Field(default=30.0, gt=0, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    config_dir: Path | None = None
    download_dir: Path | None = None
    max_download_size: int = Field(default=5 * 1024**3, gt=0)
    max_sync_size: int = Field(default=20 * 1024**3, gt=0)
    download_concurrency: int = Field(default=4, ge=1, le=32)
    disable_download: bool = False
    warm_up: float | None = Field(default=WARM_UP_DEFAULT, ge=0, le=60)
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_hosts: tuple[str, ...] = ()
    allow_configured_token: bool = False
    auth: Literal["bearer", "signin"] = "bearer"
    public_url: str | None = None
    secret_key: SecretStr | None = None
    smtp_url: SecretStr | None = None
    mail_from: str | None = Field(default=None, max_length=300)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    workers: int = Field(default=1, ge=1, le=256)
    trusted_proxies: tuple[str, ...] = ()
    refresh_ttl: int = Field(default=30 * 86400, ge=3600, le=366 * 86400)

    @model_validator(mode="before")
    @classmethod
    def _tidy(cls, values: Any) -> Any:
        """Text as people type it, made what the fields take; this never fails (the fields judge it).

        One validator for the model, not one per field: a field validator costs pydantic about a
        quarter of a millisecond per field to build, and every start builds this model.
        """
        if not isinstance(values, dict):
            return values
        tidied = dict(cast(dict[str, Any], values))
        for name, value in tidied.items():
            if isinstance(value, str) and (tidy := _TIDY.get(name)) is not None:
                tidied[name] = tidy(value)
        return tidied

    @field_validator("max_download_size", "max_sync_size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("refresh_ttl", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([dhms]?)\s*", value.lower())
        if match is None:
            raise ValueError("must be a duration such as 30d, 12h or a number of seconds")
        return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        try:
            return tuple(str(ipaddress.ip_network(part, strict=False)) for part in parts)
        except ValueError:
            raise ValueError("must be IP addresses or networks such as 10.0.0.5,172.16.0.0/12") from None

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be the server's address such as https://files.example.com")
        if parts.path.strip("/"):
            raise ValueError("must be the server's address without a path: polar-mcp serves from the root")
        if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("must be https (plain http only for localhost, 127.0.0.1 or [::1])")
        return value.strip().rstrip("/")

    @field_validator("api_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.polar.sh")
        return value.strip().rstrip("/")

    @field_validator("customer_id", "member_id")
    @classmethod
    def _check_uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError("must be a Polar id (a UUID); use the EXTERNAL_ variant for your own ids") from None

    @field_validator("organization")
    @classmethod
    def _check_seller(cls, value: str | None) -> str | None:
        return None if value is None else parse_seller(value)

    @field_validator("customer_email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return None if value is None else parse_email(value)

    @model_validator(mode="after")
    def _check_minting(self) -> "Settings":
        if self.customer_id is not None and self.external_customer_id is not None:
            raise ValueError("set only one of POLAR_CUSTOMER_ID and POLAR_EXTERNAL_CUSTOMER_ID")
        if self.member_id is not None and self.external_member_id is not None:
            raise ValueError("set only one of POLAR_MEMBER_ID and POLAR_EXTERNAL_MEMBER_ID")
        wants_customer = self.customer_id is not None or self.external_customer_id is not None
        if self.auth == "signin":
            if wants_customer or self.member_id is not None or self.external_member_id is not None:
                raise ValueError(
                    "POLAR_MCP_AUTH=signin: each buyer signs in as themselves; unset POLAR_CUSTOMER_ID, "
                    "POLAR_EXTERNAL_CUSTOMER_ID and the member ids"
                )
            return self
        if self.access_token is not None and not wants_customer and self.customer_session is None:
            raise ValueError(
                "POLAR_ACCESS_TOKEN mints customer sessions: also set POLAR_CUSTOMER_ID or POLAR_EXTERNAL_CUSTOMER_ID"
            )
        return self

    @property
    def mode(self) -> Literal["session", "minted", "none"]:
        """Where tokens come from: a static session wins over minting (least privilege). In signin
        mode the organization token serves the buyers who sign in, never a configured customer."""
        if self.customer_session is not None:
            return "session"
        if self.access_token is not None and self.auth != "signin":
            return "minted"
        return "none"

    @property
    def binds_loopback(self) -> bool:
        """Whether the HTTP bind address is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def base_url(self) -> str:
        """The API base URL: POLAR_API_URL if set, else the chosen environment's host."""
        return self.api_url or SERVERS[self.server]


def _stripped_or_none(value: str) -> str | None:
    return value.strip() or None


def _lower(value: str) -> str:
    return value.strip().lower()


def _expanded(value: str) -> Path:
    return Path(value).expanduser()


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _seconds_or_off(value: str) -> Any:
    """`POLAR_MCP_WARM_UP`: seconds, or off/no/false/none (None), or on/yes/true (the default)."""
    word = value.strip().lower()
    if word in ("off", "no", "false", "none"):
        return None
    return WARM_UP_DEFAULT if word in ("on", "yes", "true") else value.strip()


# What `Settings._tidy` does to a field's text. Tokens pasted into host configs often carry a stray
# newline or spaces.
_TIDY: dict[str, Callable[[str], Any]] = {
    "customer_session": _stripped_or_none,
    "access_token": _stripped_or_none,
    "mail_from": _stripped_or_none,
    "config_dir": _expanded,
    "download_dir": _expanded,
    "allowed_hosts": _split,
    "server": _lower,
    "transport": _lower,
    "auth": _lower,
    "log_level": lambda value: value.strip().upper(),
    "warm_up": _seconds_or_off,
}

_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def parse_seller(value: str) -> str:
    """A seller as polar-mcp uses it: an organization id (a UUID) or a slug in lower case.

    The portal address a buyer has at hand (`https://polar.sh/<slug>/portal`) is accepted too.
    """
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        segments = [segment for segment in parts.path.split("/") if segment]
        text = segments[0] if segments else ""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        pass
    slug = text.lower()
    if not _SLUG.fullmatch(slug):
        raise ValueError("must be the seller's slug (polar.sh/<slug>/portal) or organization id")
    return slug


def parse_email(value: str) -> str:
    """An e-mail address, trimmed; only its shape is checked here (Polar checks the domain)."""
    text = value.strip()
    if len(text) > 320 or not _EMAIL.fullmatch(text):
        raise ValueError("must be an e-mail address such as ada@example.com")
    return text


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `environ`, then flags in `overrides` (None values ignored), validated."""
    raw: dict[str, Any] = {}
    unfilled: list[str] = []
    for option in OPTIONS:
        value = environ.get(option.env)
        if value is None or value.strip() == "":
            continue
        if _UNFILLED_REFERENCE.fullmatch(value.strip()):
            unfilled.append(option.env)
            continue
        raw[option.field] = value
    if unfilled:
        logger.warning(
            "%s: still a ${...} placeholder the host left unfilled, so treated as unset", ", ".join(unfilled)
        )
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def _explain(error: ValidationError) -> str:
    by_field = {option.field: option for option in OPTIONS}
    lines: list[str] = []
    for problem in error.errors():
        message = re.sub(r"^Value error, ", "", problem["msg"])
        option = by_field.get(str(problem["loc"][0])) if problem["loc"] else None
        if option is None:
            lines.append(message)
            continue
        where = option.env + (f" / {option.flag}" if option.flag else "")
        shown = "" if option.secret else f" (got {str(problem.get('input'))[:60]!r})"
        lines.append(f"{where}: {message}{shown}")
    return "Invalid configuration: " + "; ".join(lines)
