"""`--demo`: the embedded Polar double on a free loopback port, and a demo customer's session."""

from __future__ import annotations

import logging
from collections.abc import Generator
from contextlib import contextmanager

from pydantic import SecretStr

from polar_mcp.config import Settings

logger = logging.getLogger(__name__)

DEMO_SESSION_TTL = 10 * 365 * 24 * 3600.0
"""The demo token outlives the process: it exists only in this process's double."""


@contextmanager
def running_demo(settings: Settings) -> Generator[Settings]:
    """Start the double with the demo catalog; yield settings that point at it as the demo customer."""
    from polar_mcp.double.runner import start_double
    from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID, demo_store

    store = demo_store()
    customer = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    token = store.issue_session(customer.id, ttl=DEMO_SESSION_TTL)
    with start_double(store) as double:
        logger.info("demo: embedded Polar double at %s, customer %s", double.base_url, DEMO_CUSTOMER_EXTERNAL_ID)
        yield settings.model_copy(
            update={
                "api_url": double.base_url,
                "customer_session": SecretStr(token),
                "access_token": None,
                "customer_id": None,
                "external_customer_id": None,
                "member_id": None,
                "external_member_id": None,
                "allow_configured_token": settings.binds_loopback,
            }
        )
