"""The floor: the least an MCP server over Polar's downloadables can be.

One tool over stdio, built on the same SDK (MCPServer) as polar-mcp: it does the same GET with httpx2
(one long-lived client, like polar-mcp's) and returns Polar's JSON as it is, as text, with no
structured content, no models, no retries, no caches. Cold start, memory and tool-call overhead of
polar-mcp are measured against this script, started the same way (`python bench/floor_server.py`).

Reads POLAR_API_URL and POLAR_CUSTOMER_SESSION from the environment.
"""

from __future__ import annotations

import logging
import os

import httpx2
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent

server = MCPServer("floor")
_clients: list[httpx2.AsyncClient] = []


def _client() -> httpx2.AsyncClient:
    if not _clients:
        _clients.append(
            httpx2.AsyncClient(
                base_url=os.environ.get("POLAR_API_URL", "http://127.0.0.1:9"),
                headers={"Authorization": f"Bearer {os.environ.get('POLAR_CUSTOMER_SESSION', '')}"},
                timeout=30,
            )
        )
    return _clients[0]


@server.tool()
async def list_downloadables(page: int = 1, limit: int = 20) -> CallToolResult:
    """List the customer's downloadables: Polar's JSON as it is."""
    response = await _client().get("/v1/customer-portal/downloadables/", params={"page": page, "limit": limit})
    return CallToolResult(content=[TextContent(type="text", text=response.text)], is_error=response.is_error)


if __name__ == "__main__":
    # MCPServer configures the root logger at INFO: keep httpx2's per-request lines off stderr, as polar-mcp does.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    server.run()
