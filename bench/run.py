"""`python -m bench.run [--quick] [--only NAME ...] [--write docs/BENCHMARKS.md]`: run the benchmarks.

Prints each case as it finishes, then the Markdown report (written to --write when given). Exits 1
when a target is missed, so a regression shows in the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import cases
from bench.harness import CaseResult, machine_facts, markdown

Case = Callable[[], CaseResult]


def plan(*, quick: bool) -> dict[str, Case]:
    """The cases with their full sizes, or smaller ones for a quick look (--quick)."""
    runs = 2 if quick else 5
    return {
        "cold_start": lambda: cases.cold_start(runs=2 if quick else 15, spawns=1 if quick else 5),
        "tool_call_overhead": lambda: cases.tool_call_overhead(runs=runs, iterations=20 if quick else 50),
        "catalog_search": lambda: cases.catalog_search(runs=runs),
        "context_cost": lambda: cases.context_cost(),
        "memory": lambda: cases.memory(runs=1 if quick else 3),
        "http_load": lambda: cases.http_load(duration=3.0 if quick else 10.0),
        "sync_fresh": lambda: cases.sync_fresh(runs=1 if quick else 3),
        "resync": lambda: cases.resync(runs=2 if quick else 21),
        "signin_load": lambda: cases.signin_load(paced=3.0 if quick else 40.0, saturated=3.0 if quick else 8.0),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and shorter load, for a quick look")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--write", type=Path, metavar="PATH", help="write the Markdown report here")
    args = parser.parse_args(argv)
    # The double and uvicorn log through the root logger: keep the console for the figures.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    selected = plan(quick=args.quick)
    if args.only:
        unknown = set(args.only) - selected.keys()
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}; known: {', '.join(selected)}")
        selected = {name: case for name, case in selected.items() if name in args.only}
    load_before = machine_facts()["load"]
    results: list[CaseResult] = []
    for name, case in selected.items():
        started = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        result = case()
        results.append(result)
        verdict = "met" if result["passed"] else "MISSED"
        print(
            f"{name}: {result['figures'].get('headline', '')} [{verdict}] ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    command = "make bench   # = pip install 'polar-sdk>=1,<2' && python -m bench.run --write docs/BENCHMARKS.md"
    if args.quick:
        command = "python -m bench.run --quick"
    runs_note = "Quick mode: 2 runs per case." if args.quick else "5 runs per case unless stated."
    report = markdown(results, machine_facts(), command, runs_note=runs_note, load_before=load_before)
    print(report)
    if args.write is not None:
        args.write.write_text(report, encoding="utf-8")
        print(f"wrote {args.write}", file=sys.stderr)
    return 0 if all(result["passed"] for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
