"""polar-mcp launched as a host launches it: a subprocess speaking MCP over stdio."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store

pytestmark = pytest.mark.anyio


def _demo_token(store: Store) -> str:
    return store.issue_session(store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID).id)


def _launched(double: RunningDouble, token: str, **env: str) -> StdioServerParameters:
    """`python -m polar_mcp` as a host launches it, against the double, with `env` added."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "polar_mcp"],
        env={"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": token, **env},
    )


async def test_a_host_launched_server_lists_searches_and_links_without_leaking_the_token(
    store: Store, double: RunningDouble
) -> None:
    token = _demo_token(store)
    params = _launched(double, token, POLAR_MCP_LOG_LEVEL="DEBUG")
    outputs: list[str] = []
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = await client.list_tools()
            assert {tool.name for tool in tools.tools} >= {"list_downloadables", "get_download_link"}
            listing = await client.call_tool("list_downloadables", {})
            search = await client.call_tool("list_downloadables", {"query": "RUST"})
            link = await client.call_tool("get_download_link", {"name": "errata"})
            for result in (listing, search, link):
                assert not result.is_error, result.content
                outputs.append(result.model_dump_json())
        errlog.seek(0)
        stderr = errlog.read()
    assert search.structured_content is not None
    assert {i["name"] for i in search.structured_content["items"]} == {
        "rust-in-practice.pdf",
        "rust-in-practice.epub",
        "errata.txt",  # matched by its benefit's name, Rust Ebook Bundle
    }
    assert link.structured_content is not None
    signed_url = link.structured_content["url"]
    assert signed_url.startswith(double.base_url + "/v1/customer-portal/downloadables/")
    assert token not in stderr
    assert signed_url not in stderr
    assert all(token not in output for output in outputs)
    assert re.search(r"/downloadables/[A-Za-z0-9_.-]{20,}", stderr) is None  # no signed link of any file


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"POLAR_CUSTOMER_SESSION": "polar_oat_wrong_kind", "POLAR_MCP_LOG_LEVEL": "DEBUG"},
    ],
    ids=["no-token-warning", "debug-logging"],
)
def test_stdout_carries_only_json_rpc_even_when_the_server_warns(env: dict[str, str]) -> None:
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_downloadables", "arguments": {}}},
    ]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("POLAR")}
    process = subprocess.Popen(
        [sys.executable, "-m", "polar_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean_env, "POLAR_API_URL": "http://127.0.0.1:9", **env},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    # A stuck server must fail the test, not hang it.
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        process.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        process.stdin.flush()
        lines: list[str] = []
        # EOF on stdin cancels requests in flight: keep it open until the last answer is read.
        while not any('"id":3' in line.replace(" ", "") for line in lines):
            line = process.stdout.readline()
            assert line, "the server closed stdout early"
            lines.append(line)
        rest, stderr = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    lines += rest.splitlines()
    answers = [json.loads(line) for line in lines if line.strip()]
    assert all(answer["jsonrpc"] == "2.0" for answer in answers)
    assert {answer.get("id") for answer in answers} >= {1, 2, 3}
    call = next(answer for answer in answers if answer.get("id") == 3)
    assert call["result"]["isError"] is True
    assert process.returncode == 0
    assert stderr  # the warning went to stderr, not stdout


def _entries(importtime_log: str) -> list[tuple[int, str]]:
    """(depth, module) from `-X importtime` lines, "import time: self | cumulative | name", in the
    order imports finished: a module's own imports come before it, one level deeper."""
    names = [
        line.rsplit("|", 1)[1]
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and "[us]" not in line
    ]
    return [(len(name) - len(name.lstrip()), name.strip()) for name in names]


def _imported(importtime_log: str) -> set[str]:
    return {name for _, name in _entries(importtime_log)}


def _importers(importtime_log: str, module: str) -> set[str]:
    """The modules that imported `module` themselves."""
    entries = _entries(importtime_log)
    return {
        next((name for shallower, name in entries[index + 1 :] if shallower < depth), "")
        for index, (depth, imported) in enumerate(entries)
        if imported == module
    }


CORE_SIDE = {"polar_mcp.core", "polar_mcp.catalog", "polar_mcp.polar.client", "polar_mcp.present", "httpcore2"}


async def test_the_tools_are_listed_before_the_core_loads_and_the_first_call_loads_it(
    store: Store, double: RunningDouble
) -> None:
    # No warm-up: what is loaded when tools/list is answered, and by whom, must not depend on how soon
    # the log is read after it.
    params = _launched(double, _demo_token(store), PYTHONPROFILEIMPORTTIME="1", POLAR_MCP_WARM_UP="off")
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert len((await client.list_tools()).tools) == 4
            errlog.seek(0)
            log_at_start = errlog.read()
            at_start = _imported(log_at_start)
            importers_of_argparse = _importers(log_at_start, "argparse")
            listing = await client.call_tool("list_downloadables", {})
            errlog.seek(0)
            after_call = _imported(errlog.read())
    assert "polar_mcp.server" in at_start  # the log is read
    assert not CORE_SIDE & at_start
    # Launched with no arguments, as hosts do: nothing to parse (whatever the SDK may import).
    assert not {name for name in importers_of_argparse if name.startswith("polar_mcp")}
    assert not listing.is_error
    assert after_call >= CORE_SIDE


async def test_once_the_tools_are_listed_the_server_loads_its_core_before_any_call(
    store: Store, double: RunningDouble
) -> None:
    params = _launched(double, _demo_token(store), PYTHONPROFILEIMPORTTIME="1", POLAR_MCP_WARM_UP="0")
    requests_before = len(store.requests)
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.list_tools()
            deadline = time.monotonic() + 30
            while not _imported(_read(errlog)) >= CORE_SIDE:
                assert time.monotonic() < deadline, "the core was not loaded within 30 s of tools/list"
                await anyio.sleep(0.05)  # polling another process: it decides when it is done
            assert len(store.requests) == requests_before  # preparing sends nothing to Polar
            listing = await client.call_tool("list_downloadables", {})
    assert not listing.is_error


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()
