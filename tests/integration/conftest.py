"""Integration fixtures: the embedded double with its demo catalog, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store


@pytest.fixture(scope="module")
def store() -> Store:
    return demo_store()


@pytest.fixture(scope="module")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running
