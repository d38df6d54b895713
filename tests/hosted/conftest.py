"""Fixtures of the hosted sign-in tests: SMTP, Polar, a clock, and a server on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polar_mcp.double.catalog import demo_store
from polar_mcp.double.store import Store
from tests.hosted.support import (
    FakeClock,
    Mailbox,
    RunningHosted,
    free_port,
    hosted_env,
    hosted_server,
    polar_server,
    smtp_server,
)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[str, Mailbox]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def mailbox(smtp: tuple[str, Mailbox]) -> Mailbox:
    return smtp[1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def polar_clock() -> FakeClock:
    """Polar's own time (the double's), apart from the server's: sessions expire at Polar."""
    return FakeClock()


@pytest.fixture
def store(polar_clock: FakeClock) -> Store:
    return demo_store(clock=polar_clock)


@pytest.fixture
def polar_url(store: Store) -> Iterator[str]:
    with polar_server(store) as url:
        yield url


@pytest.fixture
def env(polar_url: str, smtp: tuple[str, Mailbox], tmp_path: Path) -> dict[str, str]:
    return hosted_env(polar_url, smtp[0], str(tmp_path / "hosted.sqlite3"), f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def server(env: dict[str, str], clock: FakeClock) -> Iterator[RunningHosted]:
    with hosted_server(env, clock) as running:
        yield running
