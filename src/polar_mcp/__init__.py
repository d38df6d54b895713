"""polar-mcp: an MCP server for the files a customer bought on Polar.sh."""

__version__ = "0.1.0"
