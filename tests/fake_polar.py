"""A tiny in-memory Polar behind `httpx2.MockTransport`, for server-level unit tests.

The embedded double (polar_mcp.double) is the faithful one, over real HTTP; this one exists so tool
tests can script exact answers (a 429 here, a 503 there) and count every request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx2

CUSTOMER_TOKEN = "polar_cst_unit_test_token"
BENEFIT_A = "11111111-1111-4111-8111-111111111111"
BENEFIT_B = "22222222-2222-4222-8222-222222222222"
LINK_EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)
GRANTS_PATH = "/v1/customer-portal/benefit-grants/"


def item(number: int, name: str, *, benefit_id: str = BENEFIT_A, size: int = 1_234_567) -> dict[str, object]:
    """One downloadable exactly as Polar shapes it."""
    return {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "benefit_id": benefit_id,
        "file": {
            "id": f"ffffffff-0000-4000-8000-{number:012d}",
            "organization_id": "99999999-9999-4999-8999-999999999999",
            "name": name,
            "path": f"org/{name}",
            "mime_type": "application/pdf",
            "size": size,
            "storage_version": None,
            "checksum_etag": None,
            "checksum_sha256_base64": None,
            "checksum_sha256_hex": f"{number:02x}" * 32,
            "last_modified_at": "2026-03-04T05:06:07Z",
            "download": {
                "url": f"https://api.polar.sh/v1/customer-portal/downloadables/signed-{number}",
                "headers": {},
                "expires_at": LINK_EXPIRES.isoformat(),
            },
            "version": None,
            "is_uploaded": True,
            "service": "downloadable",
            "size_readable": "1.2 MB",
        },
    }


Responder = Callable[[httpx2.Request], httpx2.Response | None]


@dataclass
class FakePolar:
    """Serves `items` as Polar would; `script` answers listings first when it returns a response.

    Benefit grants (for benefit names) are always served from `benefit_names`.
    """

    items: list[dict[str, object]] = field(default_factory=list[dict[str, object]])
    tokens: set[str] = field(default_factory=lambda: {CUSTOMER_TOKEN})
    script: list[Responder] = field(default_factory=list[Responder])
    requests: list[httpx2.Request] = field(default_factory=list[httpx2.Request])
    link_ttl: timedelta | None = None
    benefit_names: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {
            BENEFIT_A: ("Rust Ebook Bundle", "Ferris Press"),
            BENEFIT_B: ("Async Course", "Ferris Press"),
        }
    )

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path == GRANTS_PATH:
            return self._grants()
        while self.script:
            answer = self.script.pop(0)(request)
            if answer is not None:
                return answer
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return httpx2.Response(
                401,
                json={"error": "invalid_token", "error_description": "The access token provided is expired."},
                headers={"WWW-Authenticate": 'Bearer realm="polar", error="invalid_token"'},
            )
        if request.url.path != "/v1/customer-portal/downloadables/":
            return httpx2.Response(404, json={"detail": "Not Found"})
        return self._list(request)

    def _list(self, request: httpx2.Request) -> httpx2.Response:
        page = int(request.url.params.get("page", "1"))
        limit = min(int(request.url.params.get("limit", "10")), 100)
        wanted = request.url.params.get_list("benefit_id")
        matching = [i for i in self.items if not wanted or i["benefit_id"] in wanted]
        chosen = matching[(page - 1) * limit : page * limit]
        if self.link_ttl is not None:
            expires = (datetime.now(UTC) + self.link_ttl).isoformat()
            chosen = [_with_expiry(i, expires) for i in chosen]
        body = {
            "items": chosen,
            "pagination": {"total_count": len(matching), "max_page": math.ceil(len(matching) / limit)},
        }
        return httpx2.Response(200, content=json.dumps(body), headers={"content-type": "application/json"})

    def _grants(self) -> httpx2.Response:
        grants = [
            {
                "id": f"grant-{benefit_id}",
                "benefit_id": benefit_id,
                "is_granted": True,
                "benefit": {
                    "id": benefit_id,
                    "type": "downloadables",
                    "description": name,
                    "organization": {"name": seller, "slug": "seller"},
                },
            }
            for benefit_id, (name, seller) in self.benefit_names.items()
        ]
        body = {"items": grants, "pagination": {"total_count": len(grants), "max_page": 1 if grants else 0}}
        return httpx2.Response(200, content=json.dumps(body), headers={"content-type": "application/json"})

    def list_calls(self) -> list[httpx2.Request]:
        return [r for r in self.requests if r.url.path == "/v1/customer-portal/downloadables/"]


def _with_expiry(entry: dict[str, object], expires: str) -> dict[str, object]:
    file = dict(entry["file"])  # type: ignore[arg-type]
    file["download"] = {**file["download"], "expires_at": expires}  # type: ignore[dict-item]
    return {**entry, "file": file}
