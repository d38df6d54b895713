"""Reliability fixtures: the demo double on loopback with a frozen clock.

The store's clock is frozen at the moment the module starts, so every link Polar signs during a test is
the same string each time it is asked for: answers can be compared byte for byte.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import demo_store
from polar_mcp.double.store import Store
from tests.helpers.clock import ManualClock


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture(scope="module")
def store(clock: ManualClock) -> Store:
    return demo_store(clock=clock)


@pytest.fixture(scope="module")
def double(store: Store) -> Iterator[RunningDouble]:
    with start_double(store) as running:
        yield running
