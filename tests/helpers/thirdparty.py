"""Running third-party Node.js MCP clients, and the in-process reference their output is compared with.

The reference is polar-mcp itself driven by the Python SDK's in-memory client against a double: what a
third-party client prints must be exactly what the server emits, in wire (camelCase) form.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from polar_mcp.config import Settings, load_settings
from polar_mcp.demo_backend import running_demo
from polar_mcp.double.seed import DEMO_CUSTOMER_EXTERNAL_ID
from polar_mcp.double.store import Store
from polar_mcp.server import build_server

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = ROOT / ".tools" / "node"
NODE_BIN = NODE_TOOLS / "node_modules" / ".bin"
INSPECTOR = NODE_BIN / "mcp-inspector"
TS_SDK = NODE_TOOLS / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
TS_CLIENT = ROOT / "tests" / "thirdparty" / "ts_client.mjs"
TIMEOUT = 120.0

DEMO_SERVER = (sys.executable, "-m", "polar_mcp", "--demo")
"""polar-mcp over stdio as a host would launch it, against its embedded double."""

TOOL_NAMES = ["list_downloadables", "get_download_link", "download_file", "sync_library"]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MASK = "<masked>"

Json = dict[str, Any]


def require_node_tools() -> None:
    """Fail (never skip) when the Node tools are missing: `make test` installs them first."""
    missing = [str(path) for path in (INSPECTOR, TS_SDK) if not path.exists()]
    if shutil.which("node") is None:
        missing.append("node (Node.js 20 or later) on PATH")
    if missing:
        pytest.fail(
            f"third-party MCP clients are not installed ({', '.join(missing)}): run `make node-tools`",
            pytrace=False,
        )


@dataclass(frozen=True)
class Run:
    """One finished Node.js client process."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Json:
        """The single JSON line the client printed on stdout."""
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line on stdout, got {self.stdout!r}; stderr:\n{self.stderr}"
        return json.loads(lines[0])

    def ok(self) -> Json:
        assert self.returncode == 0, f"exit code {self.returncode}; stderr:\n{self.stderr}"
        return self.json()


def run_node(command: list[str], *, home: Path) -> Run:
    """Run a Node.js client with HOME in a temporary folder and no POLAR_* variables inherited."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("POLAR")}
    env["HOME"] = str(home)
    completed = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return Run(completed.returncode, completed.stdout, completed.stderr)


def inspector(*arguments: str, home: Path) -> Run:
    """MCP Inspector's CLI, printing one JSON object (`{"result": ...}`) and nothing else."""
    return run_node([str(INSPECTOR), "--cli", "--format", "json", "-q", *arguments], home=home)


def ts_client(*arguments: str, home: Path) -> Run:
    """tests/thirdparty/ts_client.mjs, a host built on the TypeScript SDK."""
    node = shutil.which("node")
    assert node is not None
    return run_node([node, str(TS_CLIENT), *arguments], home=home)


# The in-process reference -------------------------------------------------------------------------


@contextmanager
def demo_reference(download_dir: Path) -> Iterator[Settings]:
    """Settings exactly as `polar-mcp --demo` builds them, against a double of this process."""
    with running_demo(load_settings({"POLAR_MCP_DOWNLOAD_DIR": str(download_dir)})) as settings:
        yield settings


def reference_tools(settings: Settings) -> list[Json]:
    """tools/list as the Python SDK's in-memory client receives it, in wire form.

    The reference speaks the 2025-11-25 era (`initialize`), as the inspector and the TypeScript SDK do:
    in the newer era results also carry `resultType` and the server's info in `_meta`.
    """

    async def listed() -> list[Json]:
        async with Client(build_server(settings), mode="legacy") as client:
            tools = await client.list_tools()
        return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools.tools]

    return anyio.run(listed)


def reference_call(settings: Settings, name: str, arguments: Mapping[str, Any]) -> Json:
    """A tools/call result as the Python SDK's in-memory client receives it, in wire form."""

    async def called() -> Json:
        async with Client(build_server(settings), mode="legacy") as client:
            result = await client.call_tool(name, dict(arguments))
        # `resultType` is a model default of the Python SDK; a legacy-era server does not send it.
        unsent = {"result_type"} - result.model_fields_set
        return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=unsent)

    return anyio.run(called)


def mask_timestamps(result: Json) -> Json:
    """A listing result with each item's last_modified_at (when that run's double started) masked."""
    masked = json.loads(json.dumps(result))
    for item in masked.get("structuredContent", {}).get("items", []):
        assert TIMESTAMP.fullmatch(item["last_modified_at"]), item
        item["last_modified_at"] = MASK
    return masked


def mask_values(result: Json, *secrets: str) -> Json:
    """`result` with every occurrence of each of `secrets` (links, times) replaced by a placeholder."""
    text = json.dumps(result, ensure_ascii=False)
    for secret in secrets:
        text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK)
    return json.loads(text)


# Facts of the demo catalog ------------------------------------------------------------------------


def demo_facts(store: Store, file_name: str) -> Json:
    """What the demo customer's listing must say about `file_name`, from the double's own store."""
    customer = store.customer_by_external_id(DEMO_CUSTOMER_EXTERNAL_ID)
    session = store.open_session(customer.id, None)
    (row,) = [row for row in store.downloadables(session) if row.file.name == file_name]
    return {
        "id": row.id,
        "benefit_id": row.benefit.id,
        "file_id": row.file.id,
        "name": row.file.name,
        "mime_type": row.file.mime_type,
        "size_bytes": row.file.size,
        "sha256": row.file.blob.digests.sha256_hex,
    }


def stable_fields(item: Json) -> Json:
    """The fields of a listed item that `demo_facts` pins down."""
    return {key: item[key] for key in ("id", "benefit_id", "file_id", "name", "mime_type", "size_bytes", "sha256")}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
