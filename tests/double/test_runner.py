"""The double over real loopback HTTP: what only a socket can show (drops, cuts, stdout silence)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx2
import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import (
    DEMO_CUSTOMER_EMAIL,
    DEMO_CUSTOMER_EXTERNAL_ID,
    DEMO_ORG_TOKEN,
    DEMO_ORGANIZATION_SLUG,
    demo_store,
)
from tests.double.helpers import ADMIN, AUTHENTICATE, LIST, REQUEST_CODE, SESSIONS, bearer


@pytest.fixture(scope="module")
def double() -> Iterator[RunningDouble]:
    with start_double(demo_store()) as running:
        yield running


@pytest.fixture
def http(double: RunningDouble) -> Iterator[httpx2.Client]:
    double.store.faults.reset()
    with httpx2.Client(base_url=double.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def token(double: RunningDouble) -> str:
    return double.store.issue_session(double.store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)


def test_serves_on_a_free_loopback_port(double: RunningDouble) -> None:
    assert double.base_url.startswith("http://127.0.0.1:")
    assert not double.base_url.endswith(":0")


def test_a_download_over_http_matches_the_listed_checksum(http: httpx2.Client, token: str) -> None:
    listing = http.get(LIST, params={"limit": 100}, headers=bearer(token)).json()
    file = next(i["file"] for i in listing["items"] if i["file"]["name"] == "01-futures-and-wakers.mp4")

    assert file["download"]["url"].startswith(f"{http.base_url}".rstrip("/") + LIST)
    digest = hashlib.sha256()
    with http.stream("GET", file["download"]["url"], follow_redirects=True) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            digest.update(chunk)

    assert file["size"] > 8 * 1024 * 1024
    assert digest.hexdigest() == file["checksum_sha256_hex"]


def test_links_redirect_to_storage_on_its_own_loopback_port(
    http: httpx2.Client, double: RunningDouble, token: str
) -> None:
    file = http.get(LIST, params={"limit": 1}, headers=bearer(token)).json()["items"][0]["file"]

    redirect = http.get(file["download"]["url"])
    partial = http.get(redirect.headers["location"], headers={"Range": "bytes=0-3"})

    assert double.storage_url.startswith("http://127.0.0.1:")
    assert double.storage_url != double.base_url
    assert redirect.headers["location"].startswith(f"{double.storage_url}/polar-files/")
    assert (partial.status_code, partial.headers["content-range"]) == (206, f"bytes 0-3/{file['size']}")
    assert partial.content == b"%PDF"


def test_a_sign_in_over_http_reads_its_code_from_the_admin_outbox(http: httpx2.Client, double: RunningDouble) -> None:
    org = http.get(f"/v1/customer-portal/organizations/{DEMO_ORGANIZATION_SLUG}").json()["organization"]
    http.delete(f"{ADMIN}outbox")

    asked = http.post(REQUEST_CODE, json={"email": DEMO_CUSTOMER_EMAIL, "organization_id": org["id"]})
    [message] = http.get(f"{ADMIN}outbox").json()["messages"]
    token = http.post(AUTHENTICATE, json={"code": message["code"]}).json()["token"]

    assert asked.status_code == 202
    assert http.get(LIST, headers=bearer(token)).json()["pagination"]["total_count"] == 11


def test_a_session_minted_over_http_lists_files(http: httpx2.Client) -> None:
    created = http.post(
        SESSIONS, json={"external_customer_id": DEMO_CUSTOMER_EXTERNAL_ID}, headers=bearer(DEMO_ORG_TOKEN)
    )

    listed = http.get(LIST, headers=bearer(created.json()["token"]))

    assert created.status_code == 201
    assert listed.json()["pagination"]["total_count"] == 11


def test_a_dropped_connection_gets_no_answer(http: httpx2.Client, token: str) -> None:
    assert http.post(f"{ADMIN}faults", json={"drop_next": 1}).status_code == 200

    with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
        http.get(LIST, headers=bearer(token))
    assert http.get(LIST, headers=bearer(token)).status_code == 200


def test_a_cut_download_ends_early(http: httpx2.Client, token: str) -> None:
    file = http.get(LIST, params={"limit": 1}, headers=bearer(token)).json()["items"][0]["file"]
    http.post(f"{ADMIN}faults", json={"cut_next": 1})

    with pytest.raises(httpx2.RemoteProtocolError, match=r"incomplete|complete message body"):
        http.get(file["download"]["url"], follow_redirects=True)
    assert len(http.get(file["download"]["url"], follow_redirects=True).content) == file["size"]


def test_the_admin_clock_expires_links_of_a_running_double(double: RunningDouble, http: httpx2.Client) -> None:
    customer = double.store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    long_lived = double.store.issue_session(customer.id, ttl=10 * 365 * 24 * 3600)
    url = http.get(LIST, params={"limit": 1}, headers=bearer(long_lived)).json()["items"][0]["file"]["download"]["url"]

    http.post(f"{ADMIN}clock", json={"advance": 3600})

    assert http.get(url).status_code == 410
    assert http.get(LIST, headers=bearer(long_lived)).status_code == 200


def test_nothing_is_written_to_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    store = demo_store()
    token = store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)
    with start_double(store) as running, httpx2.Client(base_url=running.base_url) as client:
        client.get(LIST, headers=bearer(token))
        client.get(LIST, headers=bearer("polar_cst_bad"))
        store.faults.update({"drop_next": 1})
        with pytest.raises(httpx2.RemoteProtocolError):
            client.get(LIST, headers=bearer(token))

    assert capfd.readouterr().out == ""


def test_stop_closes_both_ports() -> None:
    running = start_double(demo_store())
    running.stop()

    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{running.base_url}{LIST}")
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{running.storage_url}/polar-files/x")
