"""Polar's signed download links and the presigned storage URLs they redirect to, as the double writes them."""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import quote, urlencode

LINK_TTL = 3600
STORAGE_TTL = 3600
BUCKET = "polar-files"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class BadSignatureError(Exception):
    """The link was not signed by this double (or was altered)."""


class ExpiredError(Exception):
    """The link's signature is good but older than LINK_TTL."""


def sign_link(secret: bytes, payload: object, timestamp: int) -> str:
    """A link token as Polar mints them: `.{compressed JSON}.{timestamp}.{signature}` (a timed signature)."""
    return _signed(secret, _link_body(json.dumps(payload, separators=(",", ":"))), timestamp)


def sign_id_link(secret: bytes, row_id: str, timestamp: int) -> str:
    """`sign_link(secret, {"id": row_id}, timestamp)`: a listing signs one per item of its page."""
    return _signed(secret, _id_body(row_id), timestamp)


def _signed(secret: bytes, body: str, timestamp: int) -> str:
    signed = f"{body}.{_stamp(timestamp)}"
    return f"{signed}.{_mac(secret, 'link', signed)}"


@lru_cache(maxsize=64)
def _stamp(timestamp: int) -> str:
    return _b64(timestamp.to_bytes(max(1, (timestamp.bit_length() + 7) // 8), "big"))


@lru_cache(maxsize=65536)
def _id_body(row_id: str) -> str:
    return _link_body(json.dumps({"id": row_id}, separators=(",", ":")))


@lru_cache(maxsize=65536)
def _link_body(payload: str) -> str:
    # A listing signs every link on its page anew, but a file's payload never changes: compress it once.
    return "." + _b64(zlib.compress(payload.encode()))


def read_link(secret: bytes, token: str, now: float) -> object:
    """The payload of a link token; BadSignatureError or ExpiredError when it cannot be used."""
    signed, _, signature = token.rpartition(".")
    body, _, stamp = signed.rpartition(".")
    if not body or not hmac.compare_digest(signature, _mac(secret, "link", signed)):
        raise BadSignatureError
    # The signature proves this double wrote the token, so it decodes.
    if now - int.from_bytes(_unb64(stamp), "big") >= LINK_TTL:
        raise ExpiredError
    data = _unb64(body.removeprefix("."))
    return json.loads(zlib.decompress(data) if body.startswith(".") else data)


def attachment(filename: str) -> str:
    """The Content-Disposition storage serves: `filename*` only when the name is not ASCII."""
    fallback = "".join("_" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in filename)
    fallback = fallback.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
    value = f'attachment; filename="{fallback}"'
    if not filename.isascii():
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def object_path(key: str) -> str:
    """The URL path of a storage object; the file name part is one segment whatever it holds."""
    organization_id, file_id, name = key.split("/", 2)
    return f"/{BUCKET}/{organization_id}/{file_id}/{quote(name, safe='')}"


def presign(secret: bytes, storage_url: str, key: str, name: str, mime_type: str, now: float) -> str:
    """A presigned GET of the object `key` on `storage_url`, valid STORAGE_TTL seconds from `now`."""
    amz_date = time.strftime(_AMZ_DATE, time.gmtime(now))
    params = {
        "response-content-disposition": attachment(name),
        "response-content-type": mime_type,
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"polar-double/{amz_date[:8]}/us-east-1/s3/aws4_request",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(STORAGE_TTL),
        "X-Amz-SignedHeaders": "host",
    }
    params["X-Amz-Signature"] = storage_signature(secret, f"/{BUCKET}/{key}", params)
    return f"{storage_url}{object_path(key)}?{urlencode(params, quote_via=quote)}"


def storage_signature(secret: bytes, path: str, params: Mapping[str, str]) -> str:
    """The signature of a storage request: its decoded path and every parameter but the signature."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "X-Amz-Signature")
    return hmac.new(secret, f"storage:{path}\n{canonical}".encode(), hashlib.sha256).hexdigest()


def storage_expiry(params: Mapping[str, str]) -> float:
    """When a presigned URL (already proven ours by its signature) stops working, in epoch seconds."""
    return calendar.timegm(time.strptime(params["X-Amz-Date"], _AMZ_DATE)) + int(params["X-Amz-Expires"])


def _mac(secret: bytes, purpose: str, message: str) -> str:
    return _b64(hmac.digest(secret, f"{purpose}:{message}".encode(), "sha256"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadSignatureError from None
