"""Real parts: a PostgreSQL server and a headless Chromium, both from the machine's own packages.

`make test` installs them first (scripts/system-deps.sh). Where it cannot (not root, no apt-get), the
tests that need them skip with what to install; where it can, a missing part fails the test instead,
so a machine that should run them never passes by skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator

import pytest

from tests.helpers import browser as browser_parts
from tests.helpers import postgres as postgres_parts
from tests.helpers.browser import Browser, chromium
from tests.helpers.postgres import PostgresServer, database_name, running_postgres

ARTIFACTS = "test-artifacts"
"""Under the project folder: one folder per failed browser test, holding its pages as PNG files."""


def _require(reason: str | None) -> None:
    if reason is None:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(f"{reason}: `make system-deps` installs it on this machine (`make test` runs it first)")
    pytest.skip(f"{reason}: see scripts/system-deps.sh for what to install")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session; tests take a database of their own from it."""
    _require(postgres_parts.missing())
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """`postgresql://postgres@127.0.0.1:PORT/db_<test name>_<hash>`: an empty database for this test alone."""
    return postgres.create_database(database_name(request.node.nodeid))


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A headless Chromium with an empty profile; its pages are kept when the test fails."""
    _require(browser_parts.missing())
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as window:
        yield window


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed browser test, while its window is still open, write its pages where the report says."""
    report: pytest.TestReport = yield
    window = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and isinstance(window, Browser):
        folder = item.config.rootpath / ARTIFACTS / re.sub(r"[^\w.-]+", "_", item.nodeid)
        written = window.keep_pages(folder)
        report.sections.append(("pages seen", "\n".join(str(path) for path in written)))
    return report
