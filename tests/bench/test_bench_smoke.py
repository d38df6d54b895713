"""A smoke run of the benchmark harness: every case with tiny sizes, so `make bench` cannot rot.

Figures are not judged here (one run of a few items says nothing about speed), only that each case
runs end to end and reports what it should. The cases run concurrently to keep this quick; the
polar-sdk comparison is skipped when polar-sdk is not installed (`make bench` installs it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import cases, harness

SDK_INSTALLED = importlib.util.find_spec("polar") is not None

TINY: dict[str, Callable[[], harness.CaseResult]] = {
    "cold_start": lambda: cases.cold_start(
        runs=1, spawns=1, importtime=False, warm_up=False, instructions=False, first_call_starts=1
    ),
    "tool_call_overhead": lambda: cases.tool_call_overhead(runs=1, iterations=2, items=10, latency=0.0),
    "catalog_search": lambda: cases.catalog_search(
        runs=1, items=150, benefits=3, latency=0.0, query="item-00012", host_pause=0
    ),
    "context_cost": lambda: cases.context_cost(items=10),
    "memory": lambda: cases.memory(runs=1, settle=0.0),
    "http_load": lambda: cases.http_load(clients=2, duration=1.0, latency=0.0, links=3),
    "signin_load": lambda: cases.signin_load(
        clients=2, paced=1.0, saturated=1.0, rate=4.0, latency=0.0, databases=("sqlite",), workers=(1,)
    ),
    "sync_fresh": lambda: cases.sync_fresh(runs=1, files=4, size=100_000, latency=0.0),
    "resync": lambda: cases.resync(runs=1, files=12, benefits=3, latency=0.0),
}


@pytest.fixture(scope="module")
def results() -> dict[str, harness.CaseResult]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(case) for name, case in TINY.items()}
        return {name: future.result(timeout=120) for name, future in futures.items()}


@pytest.mark.parametrize("name", list(TINY))
def test_each_case_reports_figures_a_target_and_a_verdict(results: dict[str, harness.CaseResult], name: str) -> None:
    result = results[name]
    assert result["name"] == name
    assert set(result) == {"name", "title", "figures", "target", "passed", "notes"}
    assert result["title"]
    assert result["target"]
    assert isinstance(result["passed"], bool)
    assert isinstance(result["figures"].get("headline"), str)
    assert len(result["figures"]) >= 4
    assert all(isinstance(value, int | float | str) for value in result["figures"].values())
    assert all(isinstance(note, str) for note in result["notes"])


def test_timings_are_positive(results: dict[str, harness.CaseResult]) -> None:
    cold = results["cold_start"]["figures"]
    assert float(cold["polar-mcp, spawn to tools/list (ms, median)"]) > 0
    assert float(cold["floor server, spawn to tools/list (ms, median)"]) > 0
    call = results["tool_call_overhead"]["figures"]
    assert float(call["polar-mcp call (ms, median)"]) > 0
    assert float(call["floor call (ms, median)"]) > 0
    assert float(call["plain httpx2 GET (ms, median)"]) > 0
    memory = results["memory"]["figures"]
    assert float(memory["polar-mcp after first tools/list (MiB, median)"]) > 0


def test_the_search_finds_the_same_matches_without_being_throttled(results: dict[str, harness.CaseResult]) -> None:
    figures = results["catalog_search"]["figures"]
    assert figures["429 answers served by the double"] == 0
    assert figures["matches found by polar-mcp"] == 1
    if SDK_INSTALLED:
        assert figures["matches found by polar-sdk"] == 1
        assert float(figures["speed-up polar-sdk / polar-mcp (median of per-run ratios)"]) > 0
    else:
        assert "polar-sdk not installed" in str(figures["headline"])


def test_context_cost_covers_every_tool(results: dict[str, harness.CaseResult]) -> None:
    figures = results["context_cost"]["figures"]
    assert figures["tools listed"] == "list_downloadables, get_download_link, download_file, sync_library"
    assert int(figures["tools/list answer on the wire, whole JSON-RPC line (bytes)"]) > 1000


def test_a_sync_fetches_every_file_once_and_a_resync_opens_no_link(results: dict[str, harness.CaseResult]) -> None:
    fresh = results["sync_fresh"]["figures"]
    assert (fresh["files downloaded by the sync"], fresh["links opened by the sync"]) == (4, 4)
    assert fresh["links opened by the download_file calls"] == 4
    again = results["resync"]["figures"]
    assert again["files found present by every re-sync"] == 12
    assert (again["links opened by the re-syncs"], again["storage or link requests during the re-syncs"]) == (0, 0)


def test_load_has_no_errors_and_links_come_from_the_cache(results: dict[str, harness.CaseResult]) -> None:
    figures = results["http_load"]["figures"]
    assert figures["errors"] == 0
    assert int(figures["calls completed"]) > 0
    assert figures["get_download_link calls after one listing"] == 3
    assert figures["extra downloadables requests to Polar for them"] == 0


def test_the_report_has_the_table_and_the_machine(results: dict[str, harness.CaseResult], tmp_path: Path) -> None:
    report = harness.markdown(list(results.values()), harness.machine_facts(), "make bench", runs_note="Smoke.")
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(report, encoding="utf-8")
    text = target.read_text(encoding="utf-8")
    assert "| benchmark | result | target | met |" in text
    assert "make bench" in text
    assert f"{harness.machine_facts()['nproc']} CPUs" in text
    for result in results.values():
        assert f"## {result['title']}" in text
