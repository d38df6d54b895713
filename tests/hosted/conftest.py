"""Fixtures of the hosted sign-in tests: SMTP, Polar, clocks, and servers on fresh databases.

Starting Polar and a server takes most of a test's time, so one of each serves a whole module;
tests that change limits, restart a server or remove a customer start their own. Clocks only move
forward, and every check is relative to them, so tests sharing a server do not disturb each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from polar_mcp.hosted.service import Limits
from tests.helpers.hosted import (
    FakeClock,
    Mailbox,
    RunningHosted,
    free_port,
    hosted_env,
    hosted_server,
    polar_server,
    smtp_server,
)
from tests.helpers.logs import root_logger_restored

ROOMY = Limits(
    codes_per_address=(1000, 900.0),
    codes_per_email=(1000, 3600.0),
    tries_per_address=(1000, 900.0),
    registrations_per_address=(1000, 3600.0),
)
"""Limits no shared server reaches: the tests of the limits start servers with small ones."""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """main() reconfigures the root logger (the start-up tests run it); undo it after each test."""
    with root_logger_restored():
        yield


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[str, Mailbox]]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def mailbox(smtp: tuple[str, Mailbox]) -> Mailbox:
    return smtp[1]


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def polar_clock() -> FakeClock:
    """Polar's own time (the double's), apart from the server's: sessions expire at Polar."""
    return FakeClock()


@pytest.fixture(scope="module")
def store(polar_clock: FakeClock) -> Store:
    return demo_store(clock=polar_clock)


@pytest.fixture(scope="module")
def polar_url(store: Store) -> Iterator[str]:
    with polar_server(store) as url:
        yield url


@pytest.fixture
def env(polar_url: str, smtp: tuple[str, Mailbox], tmp_path: Path) -> dict[str, str]:
    """Settings for a server of the test's own, on a fresh database and a free port."""
    return hosted_env(polar_url, smtp[0], str(tmp_path / "hosted.sqlite3"), f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def server(
    polar_url: str, smtp: tuple[str, Mailbox], clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHosted]:
    database = str(tmp_path_factory.mktemp("hosted") / "hosted.sqlite3")
    with hosted_server(
        hosted_env(polar_url, smtp[0], database, f"http://127.0.0.1:{free_port()}"), clock, ROOMY
    ) as running:
        yield running
