"""Fixtures for third-party clients: the Node tools (required), a throwaway HOME, and polar-mcp's
streamable HTTP app on loopback in front of the embedded double with its demo catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polar_mcp.config import Settings, load_settings
from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from polar_mcp.double.store import Store
from polar_mcp.http import build_http_app
from tests.helpers.loopback import serve_asgi
from tests.helpers.thirdparty import require_node_tools


@pytest.fixture(autouse=True)
def _node_tools() -> None:  # pyright: ignore[reportUnusedFunction]
    require_node_tools()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the Node clients: the inspector writes ~/.mcp-inspector/."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def store() -> Store:
    return demo_store()


@pytest.fixture(scope="module")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running


@pytest.fixture(scope="module")
def token(store: Store) -> str:
    """A customer session of the demo customer, sent as the bearer of every HTTP request."""
    return store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)


@pytest.fixture(scope="module")
def http_downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the HTTP server saves files (POLAR_MCP_DOWNLOAD_DIR); created by the server itself."""
    return tmp_path_factory.mktemp("http") / "downloads"


@pytest.fixture(scope="module")
def mcp_url(double: RunningDouble, http_downloads: Path) -> Iterator[str]:
    settings = load_settings({"POLAR_API_URL": double.base_url, "POLAR_MCP_DOWNLOAD_DIR": str(http_downloads)})
    with serve_asgi(build_http_app(settings, use_configured_token=False)) as base:
        yield base + "/mcp"


@pytest.fixture(scope="module")
def http_reference(double: RunningDouble, token: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The same customer and double, for the in-process reference client."""
    downloads = tmp_path_factory.mktemp("reference-downloads")
    return load_settings(
        {"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": token, "POLAR_MCP_DOWNLOAD_DIR": str(downloads)}
    )
