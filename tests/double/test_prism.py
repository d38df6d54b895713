"""Stoplight Prism, a third-party validating proxy, finds no contract violation in the double's answers."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from tests.double.helpers import LIST, bearer

PRISM = Path(__file__).resolve().parents[2] / ".tools" / "node" / "node_modules" / ".bin" / "prism"
SPEC = Path(__file__).parent.parent / "openapi" / "list-downloadables.openapi.json"

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(not PRISM.exists(), reason=f"Prism is not installed at {PRISM}: run `make node-tools`"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(process: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.05):
                return
        except OSError:
            pass
        try:
            process.wait(timeout=0.05)  # paces the polling, and notices an early exit
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"prism exited with code {process.returncode}")
    raise RuntimeError(f"prism did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="module")
def double() -> Iterator[RunningDouble]:
    with start_double(demo_store()) as running:
        yield running


@pytest.fixture(scope="module")
def prism(double: RunningDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Prism does not know `format: uuid4`; with `uuid` it checks the ids for real.
    spec = tmp_path_factory.mktemp("prism") / "spec.json"
    spec.write_text(json.dumps(json.loads(SPEC.read_text().replace('"uuid4"', '"uuid"'))))
    log = spec.with_name("prism.log").open("wb")
    port = free_port()
    command = [str(PRISM), "proxy", "--errors", "-h", "127.0.0.1", "-p", str(port), str(spec), double.base_url]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def token(double: RunningDouble) -> str:
    return double.store.issue_session(double.store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)


@pytest.mark.parametrize("params", [{}, {"limit": 100}, {"page": 2, "limit": 4}, {"page": 9}])
def test_listings_pass_prism_validation(prism: str, token: str, params: dict[str, int]) -> None:
    response = httpx2.get(f"{prism}{LIST}", params=params, headers=bearer(token), timeout=30)

    assert response.status_code == 200, response.text
    assert "sl-violations" not in response.headers


def test_a_filtered_listing_passes_prism_validation(prism: str, double: RunningDouble, token: str) -> None:
    wanted = [b.id for b in double.store.benefits.values() if b.description in ("Wallpaper Pack", "Code Samples")]

    response = httpx2.get(f"{prism}{LIST}", params={"benefit_id": wanted}, headers=bearer(token), timeout=30)

    assert response.status_code == 200, response.text
    assert response.json()["pagination"]["total_count"] == 4


def test_prism_does_flag_a_violation(prism: str, double: RunningDouble, token: str) -> None:
    double.store.faults.update({"drift": True})
    try:
        response = httpx2.get(f"{prism}{LIST}", params={"limit": 1}, headers=bearer(token), timeout=30)
    finally:
        double.store.faults.reset()

    # The unknown `service` value is outside the excerpt's enum: proof the proxy really validates.
    assert response.status_code == 500
    assert "service" in response.text
