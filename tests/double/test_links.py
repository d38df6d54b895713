"""Download links: signed and expiring, 302 to presigned storage that serves the listed bytes."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx2
import pytest

from polar_mcp.double.store import ManualClock, Store
from tests.double.helpers import LIST, bearer

pytestmark = pytest.mark.anyio


async def listing(client: httpx2.AsyncClient, token: str) -> dict[str, dict[str, Any]]:
    """Ada's files by name."""
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(token))
    return {item["file"]["name"]: item["file"] for item in response.json()["items"]}


async def test_a_link_redirects_to_storage_that_serves_the_listed_bytes(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    file = (await listing(client, ada_token))["errata.txt"]

    redirect = await client.get(file["download"]["url"])
    served = await client.get(redirect.headers["location"])

    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith(f"http://polar.test/__storage__/{file['id']}?expires=")
    assert served.status_code == 200
    assert served.content.startswith(b"Rust in Practice, 2nd edition: errata")
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    assert served.headers["content-length"] == str(file["size"])
    assert served.headers["content-disposition"] == "attachment; filename=\"errata.txt\"; filename*=UTF-8''errata.txt"


async def test_every_listed_checksum_is_the_sha256_of_the_served_bytes(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    files = await listing(client, ada_token)
    checked = 0
    for file in files.values():
        served = await client.get(file["download"]["url"], follow_redirects=True)
        digest = hashlib.sha256(served.content).digest()
        assert len(served.content) == file["size"]
        if file["checksum_sha256_hex"] is None:
            continue
        assert digest.hex() == file["checksum_sha256_hex"], file["name"]
        assert base64.b64encode(digest).decode() == file["checksum_sha256_base64"]
        assert hashlib.md5(served.content).hexdigest() == file["checksum_etag"]
        checked += 1

    assert checked == len(files) - 1  # README.md predates checksums


async def test_generated_files_start_with_their_format_magic_number(client: httpx2.AsyncClient, ada_token: str) -> None:
    files = await listing(client, ada_token)
    magic = {
        "rust-in-practice.pdf": b"%PDF-",
        "ferris-dawn-3840x2160.png": b"\x89PNG",
        "async-course-code.zip": b"PK\x03\x04",
        "01-futures-and-wakers.mp4": b"\x00\x00\x00\x20ftyp",
    }

    for name, prefix in magic.items():
        served = await client.get(files[name]["download"]["url"], follow_redirects=True)
        assert served.content.startswith(prefix), name


async def test_a_link_needs_no_authorization_and_counts_each_download(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    file = (await listing(client, ada_token))["rust-in-practice.epub"]

    for _ in range(2):
        assert (await client.get(file["download"]["url"])).status_code == 302

    assert store.download_counts == {file["id"]: 2}


@pytest.mark.parametrize("damage", ["flip", "garbage", "empty-signature"])
async def test_a_link_with_a_bad_signature_is_not_found(
    client: httpx2.AsyncClient, store: Store, ada_token: str, damage: str
) -> None:
    url: str = (await listing(client, ada_token))["errata.txt"]["download"]["url"]
    token = url.rsplit("/", 1)[1]
    body, _, signature = token.partition(".")
    bad = {
        "flip": f"{body}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "garbage": "not-a-link",
        "empty-signature": f"{body}.",
    }[damage]

    response = await client.get(f"{LIST}{bad}")

    assert response.status_code == 404
    assert response.json() == {"error": "ResourceNotFound", "detail": "Not found"}
    assert store.download_counts == {}


async def test_a_link_expires_after_an_hour_of_the_store_clock(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    url = (await listing(client, ada_token))["errata.txt"]["download"]["url"]

    clock.advance(3599)
    assert (await client.get(url)).status_code == 302
    clock.advance(1)
    response = await client.get(url)

    assert response.status_code == 410
    assert response.json()["error"] == "ResourceUnavailable"


async def test_a_new_listing_mints_fresh_links_and_old_ones_stay_valid(
    client: httpx2.AsyncClient, store: Store, ada_token: str, clock: ManualClock
) -> None:
    first = (await listing(client, ada_token))["errata.txt"]["download"]
    clock.advance(1800)
    second = (await listing(client, ada_token))["errata.txt"]["download"]

    assert second["url"] != first["url"]
    assert second["expires_at"] > first["expires_at"]
    assert (await client.get(first["url"])).status_code == 302


async def test_a_link_to_a_withdrawn_file_is_gone(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    files = await listing(client, ada_token)
    videos = next(g for g in store.grants.values() if store.benefits[g.benefit_id].description == "Async Course Videos")
    videos.revoked_at = store.now()
    store.files[files["errata.txt"]["id"]].deleted = True

    revoked = await client.get(files["01-futures-and-wakers.mp4"]["download"]["url"])
    deleted = await client.get(files["errata.txt"]["download"]["url"])

    assert (revoked.status_code, deleted.status_code) == (410, 410)
    assert "01-futures-and-wakers.mp4" not in await listing(client, ada_token)


async def test_storage_urls_check_their_signature_and_expiry(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    url = (await listing(client, ada_token))["errata.txt"]["download"]["url"]
    storage = (await client.get(url)).headers["location"]
    forged = storage.replace("signature=", "signature=x")

    bad_signature = await client.get(forged)
    clock.advance(3600)
    expired = await client.get(storage)

    assert bad_signature.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in bad_signature.content
    assert expired.status_code == 403
    assert b"<Code>AccessDenied</Code>" in expired.content
    assert expired.headers["content-type"] == "application/xml"
