"""CLI fixtures: `polar_mcp.cli.main` run in-process against the embedded double over loopback.

Every POLAR_* variable of the developer's environment is cleared first, and HOME points into the
test's temporary folder, so neither a real token nor a real Downloads folder can be touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpcore2
import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from tests.helpers.cli import Cli, in_process_cli
from tests.helpers.demo import ada_token
from tests.helpers.logs import root_logger_restored


@pytest.fixture(scope="package")
def store() -> Store:
    return demo_store()


@pytest.fixture(scope="package")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running


@pytest.fixture(scope="package", autouse=True)
def _one_ssl_context() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """Build the default SSL context once for the package instead of twice per command.

    Each command opens two HTTP clients, and loading the CA bundle costs ~70 ms per client: most of
    a command's run time here. Every test talks plain HTTP over loopback, so the context is never used.
    """
    context = httpcore2.default_ssl_context()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpcore2, "default_ssl_context", lambda **_: context)
        yield


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME for the test: the default download folder is under it."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:  # pyright: ignore[reportUnusedFunction]
    for name in list(os.environ):
        if name.startswith("POLAR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    """main() reconfigures the root logger onto the captured stderr; undo it after each test."""
    with root_logger_restored():
        yield


@pytest.fixture(autouse=True)
def _faults_off(store: Store) -> Iterator[None]:  # pyright: ignore[reportUnusedFunction]
    store.faults.reset()
    yield
    store.faults.reset()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `polar-mcp ARGS...` in-process and return what it did."""
    return in_process_cli(capsys)


@pytest.fixture
def token(store: Store, double: RunningDouble, monkeypatch: pytest.MonkeyPatch) -> str:
    """Ada's session in POLAR_CUSTOMER_SESSION and the double in POLAR_API_URL."""
    session = ada_token(store)
    monkeypatch.setenv("POLAR_API_URL", double.base_url)
    monkeypatch.setenv("POLAR_CUSTOMER_SESSION", session)
    return session
