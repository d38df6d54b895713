"""Lenient models of Polar's answers: unknown fields are ignored, unknown enum values accepted.

Only what polar-mcp uses is declared; Polar may add fields at any time without breaking us.
"""

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr


def _as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC, as Polar means it, never as local time.
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


UTCDateTime = Annotated[datetime, AfterValidator(_as_utc)]


# A link that is not plain http(s) is dropped (""), not passed on: the model would show it.
# C1 controls and bidi overrides are refused too: the link is shown verbatim to the model.
# Compiled once: it runs for every item of every page (2,000 times in a whole-catalog scan).
_USABLE_LINK = re.compile(r"https?://[^\s\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]+")


def _usable_link(value: str) -> str:
    # An ASCII link (what Polar sends: signed storage links are percent-encoded) is checked with
    # string methods, several times faster than the pattern over a 1 KB link: printable ASCII but the
    # space is exactly what the pattern accepts after the scheme.
    if value.isascii():
        usable = value.startswith(("https://", "http://")) and value.isprintable() and " " not in value
        return value if usable and not value.endswith("://") else ""
    return value if _USABLE_LINK.fullmatch(value) else ""


LinkURL = Annotated[str, AfterValidator(_usable_link)]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class _Lenient(BaseModel):
    # Built on first validation, not at import: a cold start to tools/list validates no answer (the
    # warm-up after tools/list, or else the first listing, pays about 5 ms for it instead).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class DownloadURL(_Lenient):
    """A signed Polar link: a secret capability that expires (about one hour)."""

    url: LinkURL
    expires_at: UTCDateTime
    headers: dict[str, str] = Field(default_factory=dict[str, str])


class FileDownload(_Lenient):
    """The file behind a downloadable. `size` in bytes is the truth; `size_readable` is not parsed."""

    id: str
    name: str
    size: int = Field(ge=0, le=2**63 - 1)
    download: DownloadURL
    mime_type: str | None = None
    version: str | None = None
    checksum_sha256_hex: str | None = None
    checksum_sha256_base64: str | None = None
    last_modified_at: UTCDateTime | None = None
    storage_version: str | None = None
    """The storage object's version id: changes whenever the seller uploads new bytes."""
    # Polar has more services than its schema lists (support_case_attachment): accept any string.
    service: str | None = None

    @property
    def sha256(self) -> str | None:
        """The SHA-256 in lowercase hex, from Polar's hex or base64 checksum; None if absent or malformed."""
        hex_value = self.checksum_sha256_hex
        if hex_value and _HEX64.fullmatch(hex_value):
            return hex_value.lower()
        b64_value = self.checksum_sha256_base64
        if b64_value:
            try:
                raw = base64.b64decode(b64_value, validate=True)
            except (binascii.Error, ValueError):
                return None
            if len(raw) == 32:
                return raw.hex()
        return None


class Downloadable(_Lenient):
    """One file the customer may download, under the benefit that granted it."""

    id: str
    benefit_id: str
    file: FileDownload


class Pagination(_Lenient):
    total_count: int = Field(ge=0)
    max_page: int = Field(ge=0)


class DownloadablesPage(_Lenient):
    """One page of `GET /v1/customer-portal/downloadables/`."""

    items: list[Downloadable]
    pagination: Pagination


class Seller(_Lenient):
    name: str | None = None


class BenefitInfo(_Lenient):
    """The part of a benefit polar-mcp shows: its name (`description`) and its seller."""

    id: str
    description: str | None = None
    organization: Seller | None = None


class BenefitGrant(_Lenient):
    """One grant of `GET /v1/customer-portal/benefit-grants/`; only the benefit matters here."""

    benefit_id: str
    benefit: BenefitInfo | None = None


class BenefitGrantsPage(_Lenient):
    items: list[BenefitGrant]
    pagination: Pagination


class SessionIntrospection(_Lenient):
    """`GET /v1/customer-portal/customer-session/introspect`."""

    expires_at: UTCDateTime


class CustomerSessionCreated(_Lenient):
    """`POST /v1/customer-sessions/`: the new session token and when it expires."""

    token: SecretStr
    expires_at: UTCDateTime


class CustomerMatch(_Lenient):
    """A customer of `GET /v1/customers/`: who the seller knows by an e-mail."""

    id: str
    email: str
    name: str | None = None
    type: str | None = None
    organization_id: str | None = None


class CustomersPage(_Lenient):
    items: list[CustomerMatch]
    pagination: Pagination


class MemberMatch(_Lenient):
    """A member of `GET /v1/members/`: one person of a team customer."""

    id: str
    email: str
    role: str | None = None


class MembersPage(_Lenient):
    items: list[MemberMatch]
    pagination: Pagination
