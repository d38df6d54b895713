"""The Polar API: HTTP, models, errors and where a token comes from. Knows nothing of MCP."""
