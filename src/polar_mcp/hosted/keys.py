"""Everything derived from POLAR_MCP_SECRET_KEY: keyed hashes of tokens and codes, CSRF tokens.

Tokens and codes are stored only as HMAC-SHA256 digests keyed with the secret key, one domain per
kind, so a copy of the database alone neither reveals nor forges any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import SecretStr

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Letters and digits without the look-alikes (O/0, I/1): codes are read off a phone and typed."""
CODE_LENGTH = 6


class Keys:
    """Keyed hashing with the operator's secret key."""

    def __init__(self, secret_key: SecretStr) -> None:
        self._key = hashlib.sha256(b"polar-mcp hosted\0" + secret_key.get_secret_value().encode()).digest()

    def digest(self, kind: str, value: str) -> str:
        """The stored form of a secret `value` of `kind` (access, refresh, code, flow, ...)."""
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, flow_id: str, browser: str) -> str:
        """The form token of one sign-in flow in one browser."""
        return self.digest("csrf", f"{flow_id}\0{browser}")

    def csrf_valid(self, flow_id: str, browser: str, given: str) -> bool:
        return hmac.compare_digest(self.csrf_token(flow_id, browser), given)


def new_secret(prefix: str = "") -> str:
    """A random token of 256 bits, URL-safe, with an optional readable prefix."""
    return prefix + secrets.token_urlsafe(32)


def new_code() -> str:
    """A one-time sign-in code: 6 characters from `CODE_ALPHABET`."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a person typed, as a code: case and spaces or dashes do not matter."""
    return "".join(ch for ch in text.upper() if ch.isalnum())
