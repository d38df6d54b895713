"""Reliability fixtures: the demo double on loopback with a frozen clock, and a clean environment for subprocesses.

The store's clock is frozen at the moment the module starts, so every link Polar signs during a test is
the same string each time it is asked for: answers can be compared byte for byte.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from polar_mcp.double.runner import RunningDouble, start_double
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from polar_mcp.double.store import Store
from tests.clock import ManualClock


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


def ada_id(store: Store) -> str:
    return store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id


def subprocess_env(**values: str) -> dict[str, str]:
    """The test's environment without any POLAR_* variable of the developer's, plus `values`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("POLAR")}, **values}
