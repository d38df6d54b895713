"""Serving polar-mcp's HTTP app on a free loopback port, for integration tests."""

from collections.abc import Generator
from contextlib import contextmanager

from starlette.types import ASGIApp

from polar_mcp.double.runner import ServingThread


@contextmanager
def serve_asgi(app: ASGIApp, host: str = "127.0.0.1") -> Generator[str]:
    """Serve `app` (its lifespan included) on a free loopback port; yield its base URL."""
    serving = ServingThread(app, host, lifespan="on")
    try:
        yield serving.base_url
    finally:
        serving.stop()
