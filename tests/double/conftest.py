"""Fixtures for the double's tests: the demo store on a manual clock, served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store
from polar_mcp.double.store import Store
from tests.double.helpers import asgi_client
from tests.helpers.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> Store:
    return demo_store(clock=clock)


@pytest.fixture
def ada_token(store: Store) -> str:
    return store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx2.AsyncClient]:
    async with asgi_client(store) as client:
        yield client
