"""Fault injection, in-process: each switch, its count, and the admin routes that flip them."""

from __future__ import annotations

import hashlib
import json

import anyio
import httpx2
import pytest

from polar_mcp.double import layer
from polar_mcp.double.faults import Faults
from polar_mcp.double.layer import ConnectionDroppedError
from polar_mcp.double.store import Store
from tests.double.helpers import ADMIN, LIST, bearer
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio


async def statuses(client: httpx2.AsyncClient, token: str, count: int) -> list[int]:
    return [(await client.get(LIST, headers=bearer(token))).status_code for _ in range(count)]


async def test_errors_next_fails_exactly_that_many_requests(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.faults.update({"errors_next": 2, "error_status": 502})

    first = await client.get(LIST, headers=bearer(ada_token))

    assert first.status_code == 502
    assert first.json() == {"error": "BadGateway", "detail": "Bad Gateway"}
    assert await statuses(client, ada_token, 2) == [502, 200]


async def test_error_rate_is_deterministic_for_a_seed(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    store.faults.update({"error_rate": 0.5, "seed": 7})
    first = await statuses(client, ada_token, 12)
    store.faults.update({"seed": 7})
    second = await statuses(client, ada_token, 12)

    assert first == second
    assert set(first) == {200, 503}


async def test_rate_limit_burst_answers_empty_429s(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    store.faults.update({"rate_limit_next": 2, "retry_after": 7})

    limited = await client.get(LIST, headers=bearer(ada_token))

    assert limited.status_code == 429
    assert (limited.content, limited.headers["retry-after"]) == (b"", "7")
    assert "content-type" not in limited.headers
    assert await statuses(client, ada_token, 2) == [429, 200]


async def test_non_json_answers_an_html_page_with_200(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    store.faults.update({"non_json_next": 1})

    response = await client.get(LIST, headers=bearer(ada_token))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_truncate_cuts_the_json_body_in_half(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    whole = await client.get(LIST, params={"limit": 2}, headers=bearer(ada_token))
    store.faults.update({"truncate_next": 1})

    cut = await client.get(LIST, params={"limit": 2}, headers=bearer(ada_token))

    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content) == len(whole.content) // 2
    with pytest.raises(json.JSONDecodeError):
        cut.json()


async def test_truncate_skips_answers_without_a_body(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    listing = await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))
    file = listing.json()["items"][0]["file"]
    store.faults.update({"truncate_next": 1})

    served = await client.get(file["download"]["url"], follow_redirects=True)

    # The 302 has no body to cut: the download behind it is the answer truncated.
    assert len(served.content) == file["size"] // 2
    assert store.faults.truncate_next == 0


async def test_drop_and_cut_raise_in_process_where_there_is_no_socket(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.faults.update({"drop_next": 1})
    with pytest.raises(ConnectionDroppedError):
        await client.get(LIST, headers=bearer(ada_token))

    store.faults.update({"cut_next": 1})
    with pytest.raises(ConnectionDroppedError):
        await client.get(LIST, headers=bearer(ada_token))

    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 200


async def test_drift_adds_fields_nulls_and_an_unknown_service(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.faults.update({"drift": True})

    response = await client.get(LIST, headers=bearer(ada_token))
    body = response.json()
    file = body["items"][0]["file"]

    assert body["pagination"] == {"total_count": 11, "max_page": 2}
    assert "meta" in body
    assert "created_at" in body["items"][0]
    assert file["service"] == "support_case_attachment"
    assert file["is_enabled"] is True
    nullable = ("checksum_etag", "checksum_sha256_hex", "checksum_sha256_base64", "version", "last_modified_at")
    assert all(file[name] is None for name in nullable)
    assert file["download"]["url"]


async def test_wrong_bytes_break_the_checksum_but_not_the_size(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    listing = await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))
    file = listing.json()["items"][0]["file"]
    store.faults.update({"wrong_bytes_next": 1})

    wrong = await client.get(file["download"]["url"], follow_redirects=True)
    right = await client.get(file["download"]["url"], follow_redirects=True)

    assert len(wrong.content) == file["size"]
    assert hashlib.sha256(wrong.content).hexdigest() != file["checksum_sha256_hex"]
    assert hashlib.sha256(right.content).hexdigest() == file["checksum_sha256_hex"]


async def test_latency_waits_before_each_request(
    client: httpx2.AsyncClient, store: Store, ada_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(layer.anyio, "sleep", fake_sleep)
    store.faults.update({"latency": 1.5})

    await statuses(client, ada_token, 2)

    assert waits == [1.5, 1.5]


async def test_a_request_waiting_out_its_latency_does_not_take_a_fault_set_meanwhile(
    client: httpx2.AsyncClient, store: Store, ada_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting, release = anyio.Event(), anyio.Event()

    async def held_sleep(_: float) -> None:
        waiting.set()
        await release.wait()

    monkeypatch.setattr(layer.anyio, "sleep", held_sleep)
    store.faults.update({"latency": 1.0})
    answers: list[httpx2.Response] = []

    async def early() -> None:
        answers.append(await client.get(LIST, headers=bearer(ada_token)))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(early)
            await waiting.wait()
            # Set while the early request waits (as a test that follows one that gave up on it would).
            store.faults.update({"latency": 0.0, "non_json_next": 1})
            release.set()

    later = await client.get(LIST, headers=bearer(ada_token))

    assert [answers[0].headers["content-type"], later.headers["content-type"]] == [
        "application/json",
        "text/html; charset=utf-8",
    ]


async def test_faults_spare_the_admin_routes(client: httpx2.AsyncClient, store: Store) -> None:
    store.faults.update({"errors_next": 1, "drop_next": 1})

    response = await client.get(f"{ADMIN}faults")

    assert response.status_code == 200
    assert (response.json()["errors_next"], response.json()["drop_next"]) == (1, 1)


async def test_admin_routes_set_show_and_reset_faults(client: httpx2.AsyncClient, store: Store) -> None:
    set_response = await client.post(f"{ADMIN}faults", json={"errors_next": 3, "drift": True, "latency": 0})
    rejected = await client.post(f"{ADMIN}faults", json={"errors_next": -1})
    unknown = await client.post(f"{ADMIN}faults", json={"explode": 1})
    not_an_object = await client.post(f"{ADMIN}faults", json=[1])

    assert set_response.json()["errors_next"] == 3
    assert store.faults.drift is True
    assert (rejected.status_code, rejected.json()["detail"]) == (400, "errors_next: expected an integer >= 0")
    assert (unknown.status_code, unknown.json()["detail"]) == (400, "explode: no such fault")
    assert not_an_object.status_code == 400
    assert store.faults.errors_next == 3
    reset = await client.delete(f"{ADMIN}faults")
    assert reset.json() == Faults().snapshot()


async def test_the_double_counts_the_requests_it_answers_at_once(
    client: httpx2.AsyncClient, store: Store, ada_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrived = 0
    both = anyio.Event()

    async def held_sleep(_: float) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            both.set()
        await both.wait()

    monkeypatch.setattr(layer.anyio, "sleep", held_sleep)
    store.faults.update({"latency": 1.0})
    store.peak_in_flight = 0

    async def listing() -> None:
        await client.get(LIST, headers=bearer(ada_token))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(listing)
    store.faults.update({"latency": 0.0})
    stats = (await client.get(f"{ADMIN}stats")).json()

    assert (store.peak_in_flight, store.in_flight, stats["peak_in_flight"]) == (3, 0, 3)


async def test_admin_stats_count_requests_without_secrets(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    listing = await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))
    file = listing.json()["items"][0]["file"]
    await client.get(file["download"]["url"], follow_redirects=True)

    stats = (await client.get(f"{ADMIN}stats")).json()

    assert stats["requests"] == {
        LIST: 1,
        LIST + "{token}": 1,
        f"/polar-files/{file['path']}": 1,
    }
    assert stats["downloads"] == {file["id"]: 1}
    assert [(r["path"], r["query"], r["token_prefix"], r["status"]) for r in stats["recent"]] == [
        (LIST, "limit=1", "polar_cst_", 200),
        (LIST + "{token}", "", None, 302),
        (f"/polar-files/{file['path']}", "", None, 200),
    ]
    assert ada_token not in json.dumps(stats)


async def test_admin_clock_ages_the_store(
    client: httpx2.AsyncClient, store: Store, ada_token: str, clock: ManualClock
) -> None:
    response = await client.post(f"{ADMIN}clock", json={"advance": 3600})
    bad = await client.post(f"{ADMIN}clock", json={"advance": "soon"})

    assert response.json() == {"now": "2026-05-28T21:26:40Z"}
    assert bad.status_code == 400
    assert (await client.get(LIST, headers=bearer(ada_token))).status_code == 401


def test_fault_switches_are_validated() -> None:
    faults = Faults()

    with pytest.raises(TypeError, match="drift: expected a boolean"):
        faults.update({"drift": 1})
    with pytest.raises(TypeError, match="latency: expected a number"):
        faults.update({"latency": True})
    with pytest.raises(ValueError, match="error_rate: expected a probability"):
        faults.update({"error_rate": 1.5})
    with pytest.raises(ValueError, match="error_status: expected a 5xx status"):
        faults.update({"error_status": 404})
    with pytest.raises(ValueError, match="cut_next: expected an integer"):
        faults.update({"errors_next": 1, "cut_next": 0.5})
    assert faults.errors_next == 0  # a rejected update changes nothing


def test_counted_faults_are_consumed_in_gate_order() -> None:
    faults = Faults(errors_next=1, drop_next=1, rate_limit_next=1, non_json_next=1)

    taken = [faults.take_gate_fault() for _ in range(5)]

    assert taken == ["drop_next", "non_json_next", "rate_limit_next", "errors_next", None]
