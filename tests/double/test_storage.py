"""The double's storage origin: presigned GETs answered as S3 answers them (ranges, headers, XML errors)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from polar_mcp.double.faults import S3_ERRORS
from polar_mcp.double.store import Store
from tests.double.helpers import LIST, bearer
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio


async def storage_url(client: httpx2.AsyncClient, token: str, name: str) -> tuple[str, dict[str, Any]]:
    """Where the link of Ada's file `name` redirects, and the listed file."""
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(token))
    file = next(item["file"] for item in response.json()["items"] if item["file"]["name"] == name)
    return (await client.get(file["download"]["url"])).headers["location"], file


def s3_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>DOUBLE0000000000</RequestId></Error>"
    ).encode()


async def test_storage_serves_the_object_with_s3_headers(client: httpx2.AsyncClient, ada_token: str) -> None:
    url, file = await storage_url(client, ada_token, "errata.txt")

    served = await client.get(url)

    assert served.status_code == 200
    assert served.content.startswith(b"Rust in Practice, 2nd edition: errata")
    assert {k: v for k, v in served.headers.items() if k != "etag"} == {
        "accept-ranges": "bytes",
        "content-disposition": 'attachment; filename="errata.txt"',
        "content-length": str(file["size"]),
        "content-type": "text/plain; charset=utf-8",
        "x-amz-meta-polar-sha256-hex": file["checksum_sha256_hex"],
        "x-amz-version-id": file["storage_version"],
    }
    assert served.headers["etag"] == file["checksum_etag"]


async def test_an_object_whose_uploader_sent_no_checksum_has_no_checksum_header(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    url, _ = await storage_url(client, ada_token, "README.md")

    served = await client.get(url)

    assert served.status_code == 200
    assert "x-amz-meta-polar-sha256-hex" not in served.headers


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("café-menu.pdf", "attachment; filename=\"caf?-menu.pdf\"; filename*=UTF-8''caf%C3%A9-menu.pdf"),
        ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"'),
        ("../../etc/passwd", 'attachment; filename="../../etc/passwd"'),
    ],
    ids=["non-ascii", "quotes", "traversal"],
)
async def test_filename_star_is_given_only_for_non_ascii_names(
    client: httpx2.AsyncClient, store: Store, ada_token: str, name: str, disposition: str
) -> None:
    store.files[next(f.id for f in store.files.values() if f.name == "errata.txt")].name = name
    url, file = await storage_url(client, ada_token, name)

    served = await client.get(url)

    assert served.status_code == 200
    assert served.headers["content-disposition"] == disposition
    assert len(served.content) == file["size"]


@pytest.mark.parametrize(
    ("requested", "content_range", "piece"),
    [
        ("bytes=0-9", "bytes 0-9/{size}", slice(0, 10)),
        ("bytes=100-", "bytes 100-{last}/{size}", slice(100, None)),
        ("bytes=-5", "bytes {tail}-{last}/{size}", slice(-5, None)),
        ("bytes=10-100000000", "bytes 10-{last}/{size}", slice(10, None)),
    ],
    ids=["first-ten", "from-100", "last-five", "past-the-end"],
)
async def test_a_range_request_answers_206_with_the_piece(
    client: httpx2.AsyncClient, ada_token: str, requested: str, content_range: str, piece: slice
) -> None:
    url, file = await storage_url(client, ada_token, "errata.txt")
    whole = (await client.get(url)).content
    size = file["size"]

    partial = await client.get(url, headers={"Range": requested})

    assert partial.status_code == 206
    assert partial.headers["content-range"] == content_range.format(size=size, last=size - 1, tail=size - 5)
    assert partial.content == whole[piece]
    assert partial.headers["content-length"] == str(len(whole[piece]))


async def test_a_range_past_the_end_is_not_satisfiable(client: httpx2.AsyncClient, ada_token: str) -> None:
    url, file = await storage_url(client, ada_token, "errata.txt")

    refused = await client.get(url, headers={"Range": f"bytes={file['size']}-"})

    assert refused.status_code == 416
    assert refused.headers["content-range"] == f"bytes */{file['size']}"
    assert b"<Code>InvalidRange</Code>" in refused.content


async def test_a_range_over_block_boundaries_of_a_large_file_is_exact(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    url, _ = await storage_url(client, ada_token, "rust-in-practice.epub")
    whole = (await client.get(url)).content

    partial = await client.get(url, headers={"Range": "bytes=65530-200000"})

    assert partial.content == whole[65530:200001]


async def test_a_refused_signature_answers_403_signature_does_not_match(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    url, _ = await storage_url(client, ada_token, "errata.txt")

    forged = await client.get(url.replace("X-Amz-Expires=3600", "X-Amz-Expires=86400"))
    unsigned = await client.get(url.partition("?")[0])

    message = S3_ERRORS["SignatureDoesNotMatch"][1]
    assert (forged.status_code, forged.content) == (403, s3_error("SignatureDoesNotMatch", message))
    assert forged.headers["content-type"] == "application/xml"
    assert (unsigned.status_code, unsigned.content) == (403, s3_error("SignatureDoesNotMatch", message))


async def test_an_expired_presigned_url_is_denied(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    url, _ = await storage_url(client, ada_token, "errata.txt")

    clock.advance(3599)
    assert (await client.get(url)).status_code == 200
    clock.advance(1)
    expired = await client.get(url)

    assert (expired.status_code, expired.content) == (403, s3_error("AccessDenied", "Request has expired"))


async def test_storage_is_not_the_api(client: httpx2.AsyncClient, ada_token: str) -> None:
    url, _ = await storage_url(client, ada_token, "errata.txt")

    served = await client.get(url)

    assert "polar-version" not in served.headers
    assert "cache-control" not in served.headers


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SignatureDoesNotMatch", 403),
        ("AccessDenied", 403),
        ("NoSuchKey", 404),
        ("InternalError", 500),
        ("SlowDown", 503),
    ],
)
async def test_the_storage_error_switch_answers_that_s3_error_then_serves_again(
    client: httpx2.AsyncClient, store: Store, ada_token: str, code: str, status: int
) -> None:
    url, file = await storage_url(client, ada_token, "errata.txt")
    store.faults.update({"storage_errors_next": 1, "storage_error_code": code})

    failed = await client.get(url)
    served = await client.get(url)

    assert (failed.status_code, failed.content) == (status, s3_error(code, S3_ERRORS[code][1]))
    assert (served.status_code, len(served.content)) == (200, file["size"])


async def test_injected_server_errors_on_storage_carry_an_xml_body(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    url, _ = await storage_url(client, ada_token, "errata.txt")
    store.faults.update({"errors_next": 1, "error_status": 503})

    failed = await client.get(url)

    assert (failed.status_code, failed.content) == (
        503,
        s3_error("ServiceUnavailable", S3_ERRORS["ServiceUnavailable"][1]),
    )


def test_an_unknown_storage_error_code_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="storage_error_code: expected one of AccessDenied"):
        store.faults.update({"storage_error_code": "Teapot"})
