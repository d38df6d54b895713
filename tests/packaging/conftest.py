"""Fixtures of the bundle tests: the wheelhouse, the bundle built once per session, the double."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from tests.helpers.packaging import (
    build,
    require_mcpb,
    run_mcpb,
)


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """polar-mcp's dependencies as wheels (`make wheelhouse`): the only package source a launch may use."""
    path = Path(build.wheelhouse_dir())
    if not path.is_dir():
        pytest.fail(f"the offline wheelhouse {path} is missing: run `make wheelhouse`", pytrace=False)
    return path


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .mcpb `make mcpb` builds, built the same way into a temporary folder."""
    require_mcpb()
    return Path(build.build_bundle(tmp_path_factory.mktemp("dist")))


@pytest.fixture(scope="session")
def unpacked(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle extracted by the official CLI, as a host installs it (`${__dirname}`)."""
    directory = tmp_path_factory.mktemp("installed") / "polar-mcp"
    result = run_mcpb("unpack", str(bundle), str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


@pytest.fixture(scope="session")
def manifest(unpacked: Path) -> dict[str, Any]:
    return json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def store() -> Store:
    return demo_store()


@pytest.fixture(scope="module")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running
