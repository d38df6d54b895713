"""Serving polar-mcp's HTTP app on a free loopback port, for integration tests."""

from polar_mcp.double.runner import serve_asgi

__all__ = ["serve_asgi"]
