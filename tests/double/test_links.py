"""Download links as Polar's server answers them: signed and expiring, 302 to storage on another origin."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from polar_mcp.double.signing import sign_link
from polar_mcp.double.store import Store
from tests.double.helpers import LIST, STORAGE_URL, bearer, benefit_id
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio

NOT_FOUND = {"error": "ResourceNotFound", "detail": "Not found"}
UNAVAILABLE = {"error": "ResourceUnavailable", "detail": "Unavailable"}


async def listing(client: httpx2.AsyncClient, token: str) -> dict[str, dict[str, Any]]:
    """Ada's files by name."""
    response = await client.get(LIST, params={"limit": 100}, headers=bearer(token))
    return {item["file"]["name"]: item["file"] for item in response.json()["items"]}


async def test_a_link_is_a_compressed_timed_signature_under_the_api(client: httpx2.AsyncClient, ada_token: str) -> None:
    url: str = (await listing(client, ada_token))["errata.txt"]["download"]["url"]

    token = url.removeprefix(f"http://polar.test{LIST}")
    payload, stamp, signature = token.removeprefix(".").split(".")

    assert token.startswith(".eJ")  # zlib's header, base64url
    assert zlib.decompress(base64.urlsafe_b64decode(payload + "==")).startswith(b'{"id":')
    assert int.from_bytes(base64.urlsafe_b64decode(stamp + "=="), "big") == 1_780_000_000
    assert signature


async def test_a_link_redirects_to_a_presigned_url_on_the_storage_origin(
    client: httpx2.AsyncClient, ada_token: str
) -> None:
    file = (await listing(client, ada_token))["errata.txt"]

    redirect = await client.get(file["download"]["url"])
    location = urlsplit(redirect.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}

    assert redirect.status_code == 302
    assert (redirect.headers["content-length"], redirect.content) == ("0", b"")
    assert f"{location.scheme}://{location.netloc}" == STORAGE_URL
    assert location.path == f"/polar-files/{file['path']}"
    assert query["X-Amz-Expires"] == "3600"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Date"] == "20260528T202640Z"
    assert query["response-content-disposition"] == 'attachment; filename="errata.txt"'
    assert query["response-content-type"] == "text/plain"
    assert len(query["X-Amz-Signature"]) == 64


async def test_a_link_needs_no_authorization_and_counts_each_download(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    file = (await listing(client, ada_token))["rust-in-practice.epub"]

    for _ in range(2):
        assert (await client.get(file["download"]["url"])).status_code == 302

    assert store.download_counts == {file["id"]: 2}


async def test_head_on_a_link_is_not_allowed_and_not_counted(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    url = (await listing(client, ada_token))["errata.txt"]["download"]["url"]

    response = await client.head(url)

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert store.download_counts == {}


@pytest.mark.parametrize("damage", ["flip", "garbage", "empty-signature", "no-timestamp"])
async def test_a_link_with_a_bad_signature_is_not_found(
    client: httpx2.AsyncClient, store: Store, ada_token: str, damage: str
) -> None:
    url: str = (await listing(client, ada_token))["errata.txt"]["download"]["url"]
    token = url.rsplit("/", 1)[1]
    signed, _, signature = token.rpartition(".")
    bad = {
        "flip": f"{signed}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "garbage": "not-a-link",
        "empty-signature": f"{signed}.",
        "no-timestamp": f"{signed.rpartition('.')[0]}.{signature}",
    }[damage]

    response = await client.get(f"{LIST}{bad}")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert store.download_counts == {}


async def test_a_validly_signed_link_of_an_unknown_id_is_not_found(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock
) -> None:
    token = sign_link(store.secret, {"id": "0b1e7a4c-2f55-4f38-9b8a-1f6f3f2a9c11"}, int(clock()))

    response = await client.get(f"{LIST}{token}")

    assert (response.status_code, response.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize("payload", [{}, {"file": "x"}, ["id"], {"id": 42}])
async def test_a_validly_signed_link_without_an_id_is_a_bad_request(
    client: httpx2.AsyncClient, store: Store, clock: ManualClock, payload: object
) -> None:
    response = await client.get(f"{LIST}{sign_link(store.secret, payload, int(clock()))}")

    assert (response.status_code, response.json()) == (400, {"error": "BadRequest", "detail": "Bad request"})


async def test_a_link_expires_after_an_hour_of_the_store_clock(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    url = (await listing(client, ada_token))["errata.txt"]["download"]["url"]

    clock.advance(3599)
    assert (await client.get(url)).status_code == 302
    clock.advance(1)
    response = await client.get(url)

    assert (response.status_code, response.json()) == (410, UNAVAILABLE)


async def test_a_link_to_a_file_flagged_as_malware_is_unavailable(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    file = (await listing(client, ada_token))["ferris-dusk-2560x1440.png"]
    store.files[file["id"]].malware = True

    response = await client.get(file["download"]["url"])

    assert (response.status_code, response.json()) == (410, UNAVAILABLE)
    assert store.download_counts == {}


async def test_a_new_listing_mints_fresh_links_and_old_ones_stay_valid(
    client: httpx2.AsyncClient, ada_token: str, clock: ManualClock
) -> None:
    first = (await listing(client, ada_token))["errata.txt"]["download"]
    clock.advance(1800)
    second = (await listing(client, ada_token))["errata.txt"]["download"]

    assert second["url"] != first["url"]
    assert second["expires_at"] > first["expires_at"]
    assert (await client.get(first["url"])).status_code == 302


async def test_withdrawn_access_does_not_stop_an_old_link_and_storage_refuses_a_deleted_object(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    files = await listing(client, ada_token)
    videos = next(g for g in store.grants.values() if g.benefit_id == benefit_id(store, "Async Course Videos"))
    videos.revoked_at = store.now()
    store.files[files["errata.txt"]["id"]].deleted = True

    revoked = await client.get(files["01-futures-and-wakers.srt"]["download"]["url"])
    deleted = await client.get(files["errata.txt"]["download"]["url"])
    from_revoked = await client.get(revoked.headers["location"])
    from_deleted = await client.get(deleted.headers["location"])

    assert (revoked.status_code, deleted.status_code) == (302, 302)
    assert from_revoked.status_code == 200
    assert len(from_revoked.content) == files["01-futures-and-wakers.srt"]["size"]
    assert from_deleted.status_code == 403
    assert b"<Code>AccessDenied</Code>" in from_deleted.content
    relisted = await listing(client, ada_token)
    assert "01-futures-and-wakers.srt" not in relisted
    assert "errata.txt" not in relisted


async def test_every_listed_checksum_is_that_of_the_served_bytes(client: httpx2.AsyncClient, ada_token: str) -> None:
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
        assert served.headers["etag"] == file["checksum_etag"]
        checked += 1

    assert checked == len(files) - 1  # README.md's uploader sent no checksum


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
