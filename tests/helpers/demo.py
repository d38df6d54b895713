"""Ada, the demo catalog's customer, as tests reach her in a store of the double."""

from __future__ import annotations

from typing import Any

from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store


def ada_id(store: Store) -> str:
    return store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id


def ada_token(store: Store, **kwargs: Any) -> str:
    """A fresh customer session for Ada."""
    return store.issue_session(ada_id(store), **kwargs)
