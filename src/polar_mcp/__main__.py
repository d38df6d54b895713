"""`python -m polar_mcp`: the same entry point as the `polar-mcp` console script."""

from polar_mcp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
