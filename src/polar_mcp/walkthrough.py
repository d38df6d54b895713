"""`make demo`: a scripted walkthrough, through a real MCP client over stdio, against `polar-mcp --demo`.

It launches the server exactly as a host would, then does what a person would ask an assistant to
do: see the tools, list the files, search by name, get a download link, download a file and sync the
whole library (into a temporary folder: a newcomer's Downloads folder is not the demo's to fill). A
second session starts with no token at all and signs in with an e-mail code, reading the code from
the double's outbox as the buyer would read their e-mail; its stored sign-in goes to a temporary
config folder, never the user's own.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

RULE = "─" * 72


def _say(title: str) -> None:
    print(f"\n{RULE}\n{title}\n{RULE}")


def _text(result: CallToolResult) -> str:
    first = result.content[0] if result.content else None
    return first.text if first is not None and first.type == "text" else ""


async def _call(client: Client, name: str, arguments: dict[str, Any], *, watch: bool = False) -> CallToolResult:
    shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    print(f"\n> {name}({shown})")
    reports: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(message or f"{progress:.0f}/{total or 0:.0f}")

    result = await client.call_tool(name, arguments, progress_callback=on_progress if watch else None)
    if reports:
        print(f"progress: {len(reports)} notifications, {reports[0]} … {reports[-1]}")
    marker = "error" if result.is_error else "ok"
    print(f"[{marker}]\n{_text(result)}")
    return result


async def session(download_dir: str, config_dir: str) -> int:
    """Run the scripted sessions; returns the exit code (0 when every step answered as expected)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "polar_mcp", "--demo"],
        env={
            "POLAR_MCP_DOWNLOAD_DIR": download_dir,
            "POLAR_MCP_CONFIG_DIR": config_dir,
            "POLAR_MCP_LOG_LEVEL": "WARNING",
        },
    )
    failures = 0
    async with Client(params) as client:
        _say("1. The tools a host sees (tools/list)")
        tools = await client.list_tools()
        for tool in tools.tools:
            print(f"- {tool.name}: {tool.description}")
        _say("2. 'What did I buy?' (list_downloadables)")
        listing = await _call(client, "list_downloadables", {"limit": 5})
        failures += listing.is_error
        _say("3. 'Find my Rust ebook' (a search over every page)")
        search = await _call(client, "list_downloadables", {"query": "rust"})
        failures += search.is_error
        _say("4. 'Give me the link for the errata' (get_download_link by name)")
        link = await _call(client, "get_download_link", {"name": "errata"})
        failures += link.is_error
        _say("5. 'Download my Rust ebook as a PDF' (download_file, verified, with progress)")
        saved = await _call(client, "download_file", {"name": "rust-in-practice.pdf"}, watch=True)
        failures += saved.is_error
        _say("6. 'Save the course README' twice: Polar has no checksum for it, polar-mcp's record knows it")
        first = await _call(client, "download_file", {"name": "README.md"})
        again = await _call(client, "download_file", {"name": "README.md"})
        failures += first.is_error or not _text(again).startswith("Already present")
        _say("7. A mistake, answered with what to do next")
        await _call(client, "get_download_link", {"name": "rust"})
        _say("8. 'Keep a copy of everything I bought' (sync_library, twice: nothing is fetched again)")
        synced = await _call(client, "sync_library", {}, watch=True)
        resynced = await _call(client, "sync_library", {})
        failures += synced.is_error or not _text(resynced).endswith(": 0 downloaded (0.0 B), 11 already present.")
    failures += await sign_in_session(config_dir)
    _say("Done" if not failures else f"Done, with {failures} unexpected error(s)")
    return 1 if failures else 0


async def sign_in_session(config_dir: str) -> int:
    """A buyer with no token: sign in with a code Polar e-mails, then list. Returns the unexpected errors."""
    # Loaded here: only this session runs a double of its own, to read its outbox.
    from polar_mcp.double.runner import start_double
    from polar_mcp.double.seed import DEMO_CUSTOMER_EMAIL, DEMO_ORGANIZATION_SLUG, demo_store

    failures = 0
    with start_double(demo_store()) as double:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "polar_mcp"],
            env={
                "POLAR_API_URL": double.base_url,
                "POLAR_MCP_CONFIG_DIR": config_dir,
                "POLAR_MCP_LOG_LEVEL": "WARNING",
            },
        )
        async with Client(params) as client:
            _say("7. A second session with no token configured: sign_in is offered")
            tools = await client.list_tools()
            print(", ".join(tool.name for tool in tools.tools))
            await _call(client, "list_downloadables", {"limit": 5})
            _say("8. 'I bought from Ferris Press as ada@example.com' (sign_in asks Polar to e-mail a code)")
            sent = await _call(client, "sign_in", {"seller": DEMO_ORGANIZATION_SLUG, "email": DEMO_CUSTOMER_EMAIL})
            failures += sent.is_error
            async with httpx2.AsyncClient(base_url=double.base_url) as admin:
                messages = (await admin.get("/__double__/outbox")).json()["messages"]
            mail = messages[-1]
            print(f"\n(the double's outbox, admin route: to {mail['to']}, {mail['subject']!r}, code {mail['code']})")
            _say("9. 'The code is ...' (sign_in with the code)")
            done = await _call(client, "sign_in", {"code": mail["code"]})
            failures += done.is_error
            _say("10. 'What did I buy?' now that she is signed in")
            listing = await _call(client, "list_downloadables", {"limit": 5})
            failures += listing.is_error
    return failures


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="polar-mcp-demo-") as download_dir,
        tempfile.TemporaryDirectory(prefix="polar-mcp-demo-config-") as config_dir,
    ):
        for name in ("POLAR_CUSTOMER_SESSION", "POLAR_ACCESS_TOKEN", "POLAR_ORGANIZATION", "POLAR_CUSTOMER_EMAIL"):
            os.environ.pop(name, None)
        return anyio.run(session, download_dir, config_dir)


if __name__ == "__main__":
    raise SystemExit(main())
