"""Benchmarks of polar-mcp: `make bench` (or `python -m bench.run`) writes docs/BENCHMARKS.md."""
