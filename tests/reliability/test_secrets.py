"""Secrets stay secret: canary tokens and signed URLs, followed through every tool, error, command and log.

Four module-scoped runs exercise every surface with logging at DEBUG as polar-mcp configures it
(`configure_logging("DEBUG")`, what POLAR_MCP_LOG_LEVEL=DEBUG does), writing what each channel carried
into a transcript; the tests then check every channel on its own, so a leak names its channel (and the
step within it), and each channel must have carried traffic, so no check passes on an empty channel:

- the MCP tools in-process (static canary session): every tool's success path and error paths (ambiguous
  name, unknown id, bad benefit id, a 5xx burst, a 429 whose Retry-After exceeds the timeout, a non-JSON
  body, a corrupted download, a revoked and an expired session);
- minted mode with a canary organization token: tools, a forced renewal, and a revoked organization token;
- the CLI in-process (`list`, `link`, `download`, `doctor`, and their failures) in both modes;
- streamable HTTP with the canary as the caller's bearer;
- one `python -m polar_mcp` stdio subprocess at POLAR_MCP_LOG_LEVEL=DEBUG, its stderr kept.

The channels: in-process tool results, in-process tool errors, link results (get_download_link answers
over every transport and `polar-mcp link` output), HTTP responses, stdio responses, CLI stdout, CLI
stderr, the in-process logs, the HTTP server's logs and the stdio subprocess's stderr.

Signed download links may appear only where a person asked for one: get_download_link results and the
output of `polar-mcp link`. The storage URL a link redirects to may appear nowhere.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from polar_mcp.cli import configure_logging, main
from polar_mcp.config import Settings, load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.double.store import Session, Store
from polar_mcp.http import build_http_app
from polar_mcp.polar.client import PolarClient
from polar_mcp.server import build_server
from tests.helpers.clock import ManualClock
from tests.helpers.demo import ada_id
from tests.helpers.logs import root_logger_restored
from tests.helpers.loopback import serve_asgi

SESSION_CANARY = "polar_cst_CANARYsession" + "Zq7xW2vLk9TfR4mNpB8sYdJ0uHc"
ORG_CANARY = "polar_oat_CANARYorganization" + "Xe5tGa1QwKz7LrVn3MbPy"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
LINK = re.compile(r"/v1/customer-portal/downloadables/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
"""A signed download link of the double, whoever it was issued to."""
STORAGE = re.compile(r"/polar-files/[^\s'\"]*X-Amz-Signature=")
"""The storage URL a download link redirects to (a presigned S3 URL at Polar)."""
TIMEOUT = "10"
BOUND = 60.0


TOOL_RESULTS = "tool-results"
TOOL_ERRORS = "tool-errors"
LINK_RESULTS = "link-results"
"""get_download_link results and `polar-mcp link` stdout: the only places a signed link belongs."""
HTTP_RESPONSES = "http-responses"
STDIO_RESPONSES = "stdio-responses"
CLI_STDOUT = "cli-stdout"
CLI_STDERR = "cli-stderr"
IN_PROCESS_LOGS = "in-process-logs"
HTTP_SERVER_LOGS = "http-server-logs"
STDIO_STDERR = "stdio-stderr"
LOGS = (IN_PROCESS_LOGS, HTTP_SERVER_LOGS, STDIO_STDERR)
"""Log streams as polar-mcp writes them to stderr, and the stdio subprocess's stderr."""
CHANNELS = (
    TOOL_RESULTS,
    TOOL_ERRORS,
    LINK_RESULTS,
    HTTP_RESPONSES,
    STDIO_RESPONSES,
    CLI_STDOUT,
    CLI_STDERR,
    *LOGS,
)
OUTPUTS = (TOOL_RESULTS, TOOL_ERRORS, HTTP_RESPONSES, STDIO_RESPONSES, CLI_STDOUT, CLI_STDERR)
"""Every tool result (errors included) and CLI output but the link results."""


@dataclass
class Transcript:
    """Everything the runs showed anyone, by channel, each entry labelled with the step that wrote it."""

    channels: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {c: [] for c in CHANNELS})
    links: set[str] = field(default_factory=set[str])
    minted: set[str] = field(default_factory=set[str])
    """Session tokens minted from the canary organization token."""
    exit_codes: list[tuple[str, int]] = field(default_factory=list[tuple[str, int]])

    def add(self, channel: str, where: str, text: str) -> None:
        self.channels[channel].append((where, text))

    def of(self, *channels: str) -> list[tuple[str, str]]:
        return [entry for channel in channels for entry in self.channels[channel]]

    def record(self, where: str, tool: str, result: CallToolResult, responses: str | None) -> None:
        """A tool's answer: a link result, else on `responses` (a transport's channel) or by outcome."""
        text = result.model_dump_json()
        if tool == "get_download_link" and not result.is_error:
            assert result.structured_content is not None
            self.links.add(result.structured_content["url"])
            self.add(LINK_RESULTS, where, text)
        elif responses is not None:
            self.add(responses, where, text)
        else:
            self.add(TOOL_ERRORS if result.is_error else TOOL_RESULTS, where, text)


# Harness ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _debug_logging(transcript: Transcript, channel: str) -> Iterator[None]:
    """polar-mcp's own DEBUG logging (what POLAR_MCP_LOG_LEVEL=DEBUG sets up), its stderr captured."""
    stream = io.StringIO()
    try:
        with root_logger_restored():
            with contextlib.redirect_stderr(stream):
                configure_logging("DEBUG")
            yield
    finally:
        transcript.add(channel, channel, stream.getvalue())


async def _no_sleep(_: float) -> None:
    await anyio.lowlevel.checkpoint()


def _server(settings: Settings) -> Any:
    """The MCP server, its Polar client retrying at once (a 5xx burst costs no wall time)."""
    return build_server(settings, make_client=lambda http: PolarClient(http, timeout=settings.timeout, sleep=_no_sleep))


Step = tuple[str, dict[str, Any], Callable[[], None] | None]
"""A tool call, and what to set up just before it (a fault, a revoked session...)."""


async def _run_tools(
    client: Client, transcript: Transcript, where: str, steps: list[Step], responses: str | None = None
) -> None:
    for tool, args, before in steps:
        if before is not None:
            before()
        result = await client.call_tool(tool, args)
        transcript.record(f"{where}: {tool} {args}", tool, result, responses)


def _session_env(double: RunningDouble, folder: Path, **extra: str) -> dict[str, str]:
    return {
        "POLAR_API_URL": double.base_url,
        "POLAR_MCP_DOWNLOAD_DIR": str(folder),
        "POLAR_MCP_TIMEOUT": TIMEOUT,
        "POLAR_MCP_LOG_LEVEL": "DEBUG",
        **extra,
    }


class _Env:
    """The canary store's switches, as steps."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.store = store
        self.clock = clock
        self._revoked: dict[str, Session] = {}
        self._org_token = store.org_tokens.get(ORG_CANARY)

    def fault(self, **switches: Any) -> Callable[[], None]:
        return lambda: self.store.faults.update(switches)

    def reset(self) -> None:
        self.store.faults.reset()
        self.store.sessions.update(self._revoked)
        self._revoked.clear()
        if self._org_token is not None:
            self.store.org_tokens[ORG_CANARY] = self._org_token

    def revoke_canary(self) -> None:
        self._revoked[SESSION_CANARY] = self.store.sessions.pop(SESSION_CANARY)

    def expire_sessions(self) -> None:
        self.clock.advance(7200)

    def unexpire_sessions(self) -> None:
        self.clock.now -= 7200

    def revoke_minted(self, minted: set[str]) -> None:
        for token, session in list(self.store.sessions.items()):
            if token != SESSION_CANARY and session.customer_id == ada_id(self.store):
                minted.add(token)
                self._revoked.pop(token, None)
                del self.store.sessions[token]

    def revoke_org_token(self) -> None:
        self._org_token = self.store.org_tokens.pop(ORG_CANARY)


def _session_steps(env: _Env) -> list[Step]:
    def then_reset(action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            env.reset()
            action()

        return run

    return [
        ("list_downloadables", {}, None),
        ("list_downloadables", {"query": "rust", "limit": 2}, None),
        ("get_download_link", {"name": "errata.txt"}, None),
        ("get_download_link", {"name": "rust-in-practice.epub"}, None),
        ("download_file", {"name": "errata.txt"}, None),
        ("download_file", {"name": "rust-in-practice.epub"}, None),
        ("get_download_link", {"name": "rust-in-practice"}, None),  # ambiguous
        ("get_download_link", {"downloadable_id": UNKNOWN_ID}, None),
        ("get_download_link", {}, None),
        ("list_downloadables", {"benefit_id": "not-a-benefit"}, None),
        ("list_downloadables", {"benefit_id": UNKNOWN_ID}, None),
        ("list_downloadables", {"page": 2}, then_reset(env.fault(errors_next=3, error_status=503))),
        ("list_downloadables", {"page": 3}, then_reset(env.fault(rate_limit_next=1, retry_after=120))),
        ("list_downloadables", {"page": 4}, then_reset(env.fault(non_json_next=1))),
        ("download_file", {"name": "rust-in-practice.pdf"}, then_reset(env.fault(wrong_bytes_next=1))),
        ("download_file", {"name": "ferris-dusk-2560x1440.png"}, then_reset(env.fault(cut_next=1))),
        ("list_downloadables", {}, then_reset(env.revoke_canary)),
        ("get_download_link", {"name": "README.md"}, None),
        ("list_downloadables", {}, then_reset(env.expire_sessions)),
        ("get_download_link", {"downloadable_id": UNKNOWN_ID}, None),
        ("list_downloadables", {"limit": 1}, then_reset(env.unexpire_sessions)),
    ]


def _minted_steps(env: _Env, minted: set[str]) -> list[Step]:
    def revoke_minted() -> None:
        env.reset()
        env.revoke_minted(minted)

    def revoke_everything() -> None:
        revoke_minted()
        env.revoke_org_token()

    return [
        ("list_downloadables", {}, None),
        ("get_download_link", {"name": "errata.txt"}, None),
        ("download_file", {"name": "async-course-code.zip"}, None),
        ("get_download_link", {"downloadable_id": UNKNOWN_ID}, None),
        ("list_downloadables", {"query": "png"}, revoke_minted),  # renewed: minted again
        ("get_download_link", {"name": "rust-in-practice"}, None),
        ("list_downloadables", {}, revoke_everything),  # renewal refused: the org token is revoked
        ("list_downloadables", {}, env.reset),
    ]


def _cli(transcript: Transcript, where: str, *argv: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    label = f"{where}: polar-mcp {' '.join(argv)}"
    transcript.exit_codes.append((label, code))
    if argv[0] == "link" and code == 0:
        text = out.getvalue()
        transcript.add(LINK_RESULTS, label, text)
        transcript.links.add(json.loads(text)["url"] if "--json" in argv else text.strip())
    else:
        transcript.add(CLI_STDOUT, label, out.getvalue())
    transcript.add(CLI_STDERR, label, err.getvalue())
    return code


def _cli_runs(transcript: Transcript, env: _Env, where: str, folder: Path, *, minted: bool) -> None:
    """Every command, and its failures; minted mode repeats the ones that use the token differently."""
    _cli(transcript, where, "list", "--json", "--limit", "100")
    _cli(transcript, where, "link", "errata.txt")
    _cli(transcript, where, "download", "rust-in-practice.epub", "--dir", str(folder), "--json")
    _cli(transcript, where, "doctor")
    if not minted:
        _cli(transcript, where, "list")
        _cli(transcript, where, "link", "rust-in-practice.epub", "--json")
        _cli(transcript, where, "download", "errata.txt", "--dir", str(folder))
        _cli(transcript, where, "link", "rust-in-practice")
        _cli(transcript, where, "link", UNKNOWN_ID)
        _cli(transcript, where, "list", "--benefit-id", "not-a-benefit")
        env.fault(rate_limit_next=1, retry_after=120)()
        _cli(transcript, where, "list", "--page", "2")
        env.fault(non_json_next=1)()
        _cli(transcript, where, "link", "README.md", "--json")
        env.reset()
        env.fault(wrong_bytes_next=1)()
        _cli(transcript, where, "download", "rust-in-practice.pdf", "--dir", str(folder))
        env.reset()
    if minted:
        env.revoke_minted(transcript.minted)
        env.revoke_org_token()
    else:
        env.revoke_canary()
    _cli(transcript, where, "doctor")
    _cli(transcript, where, "link", "errata.txt")
    env.reset()


# The run ----------------------------------------------------------------------------------------


async def _bounded(run: Callable[..., Awaitable[None]], *args: Any) -> None:
    with anyio.fail_after(BOUND):
        await run(*args)


@asynccontextmanager
async def _http_client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def _in_process(transcript: Transcript, env: _Env, double: RunningDouble, folder: Path) -> None:
    session = load_settings(_session_env(double, folder / "session", POLAR_CUSTOMER_SESSION=SESSION_CANARY))
    async with Client(_server(session)) as client:
        await _run_tools(client, transcript, "mcp session", _session_steps(env))
    env.reset()
    minted = load_settings(
        _session_env(double, folder / "minted", POLAR_ACCESS_TOKEN=ORG_CANARY, POLAR_CUSTOMER_ID=ada_id(env.store))
    )
    async with Client(_server(minted)) as client:
        await _run_tools(client, transcript, "mcp minted", _minted_steps(env, transcript.minted))
    env.reset()
    env.revoke_minted(transcript.minted)
    env.reset()


async def _over_http(transcript: Transcript, env: _Env, url: str) -> None:
    async with _http_client(url, SESSION_CANARY) as client:
        steps: list[Step] = [
            ("list_downloadables", {}, None),
            ("get_download_link", {"name": "errata.txt"}, None),
            ("download_file", {"name": "rust-in-practice.epub"}, None),
            ("get_download_link", {"name": "rust-in-practice"}, None),
            ("get_download_link", {"downloadable_id": UNKNOWN_ID}, None),
            ("list_downloadables", {"page": 2}, env.fault(rate_limit_next=1, retry_after=120)),
            ("list_downloadables", {"page": 3}, env.fault(non_json_next=1)),
            ("list_downloadables", {}, env.revoke_canary),
        ]
        await _run_tools(client, transcript, "http", steps, HTTP_RESPONSES)
    env.reset()


async def _over_stdio(transcript: Transcript, double: RunningDouble, folder: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "polar_mcp"],
        env={**_session_env(double, folder, POLAR_CUSTOMER_SESSION=SESSION_CANARY)},
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            steps: list[Step] = [
                ("list_downloadables", {}, None),
                ("list_downloadables", {"query": "png"}, None),
                ("get_download_link", {"name": "errata.txt"}, None),
                ("download_file", {"name": "rust-in-practice.epub"}, None),
                ("get_download_link", {"name": "rust-in-practice"}, None),
                ("get_download_link", {"downloadable_id": UNKNOWN_ID}, None),
                ("list_downloadables", {"benefit_id": "not-a-benefit"}, None),
            ]
            await _run_tools(client, transcript, "stdio", steps, STDIO_RESPONSES)
        errlog.seek(0)
        transcript.add(STDIO_STDERR, "stdio subprocess stderr", errlog.read())


@contextlib.contextmanager
def _clean_environment(home: Path) -> Iterator[pytest.MonkeyPatch]:
    """No POLAR_* variable of the developer's, and a HOME of the run's own."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("POLAR")]:
            patch.delenv(name)
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        yield patch


@pytest.fixture(scope="module")
def env(store: Store, clock: ManualClock) -> _Env:
    """The canary session and organization token, installed in the store."""
    customer = ada_id(store)
    now = store.now()
    store.sessions[SESSION_CANARY] = Session(str(uuid.uuid4()), SESSION_CANARY, customer, None, now, now + 3600, None)
    store.add_org_token(ORG_CANARY, organization_id=store.customers[customer].organization_id)
    return _Env(store, clock)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="module")
def recorded() -> Transcript:
    return Transcript()


@pytest.fixture(scope="module")
def in_process_run(recorded: Transcript, env: _Env, double: RunningDouble, folder: Path) -> None:
    """The tools in-process, with a static canary session and minted from the canary organization token."""
    with _clean_environment(folder / "home"), _debug_logging(recorded, IN_PROCESS_LOGS):
        anyio.run(_bounded, _in_process, recorded, env, double, folder)


@pytest.fixture(scope="module")
def http_run(recorded: Transcript, env: _Env, double: RunningDouble, folder: Path) -> None:
    """The tools over streamable HTTP, the canary as the caller's bearer."""
    settings = load_settings({"POLAR_API_URL": double.base_url, "POLAR_MCP_TIMEOUT": TIMEOUT})
    with (
        _clean_environment(folder / "home"),
        _debug_logging(recorded, HTTP_SERVER_LOGS),
        serve_asgi(build_http_app(settings, use_configured_token=False)) as base,
    ):
        anyio.run(_bounded, _over_http, recorded, env, base + "/mcp")


@pytest.fixture(scope="module")
def cli_run(recorded: Transcript, env: _Env, double: RunningDouble, folder: Path) -> None:
    """Every command with the canary session, then minted from the canary organization token."""
    with _clean_environment(folder / "home") as patch:
        for key, value in _session_env(double, folder / "cli").items():
            patch.setenv(key, value)
        patch.setenv("POLAR_CUSTOMER_SESSION", SESSION_CANARY)
        # Each command configures logging itself, onto the stderr _cli captures.
        with root_logger_restored():
            _cli_runs(recorded, env, "cli session", folder / "cli-session", minted=False)
        patch.delenv("POLAR_CUSTOMER_SESSION")
        patch.setenv("POLAR_ACCESS_TOKEN", ORG_CANARY)
        patch.setenv("POLAR_CUSTOMER_ID", ada_id(env.store))
        with root_logger_restored():
            _cli_runs(recorded, env, "cli minted", folder / "cli-minted", minted=True)
        env.revoke_minted(recorded.minted)
        env.reset()


@pytest.fixture(scope="module")
def stdio_run(recorded: Transcript, double: RunningDouble, folder: Path) -> None:
    """`python -m polar_mcp` as a host launches it, at DEBUG, its stderr kept."""
    anyio.run(_bounded, _over_stdio, recorded, double, folder / "stdio")


@pytest.fixture(scope="module")
def transcript(
    in_process_run: None, http_run: None, cli_run: None, stdio_run: None, recorded: Transcript
) -> Transcript:
    """Every run's transcript (in this order); sessions minted in any run are checked in every channel."""
    return recorded


# The properties ---------------------------------------------------------------------------------


def _leaks(entries: list[tuple[str, str]], needles: dict[str, str]) -> dict[str, list[str]]:
    """Per needle found: the steps whose text holds it."""
    found = {label: [where for where, text in entries if needle in text] for label, needle in needles.items()}
    return {label: places for label, places in found.items() if places}


def test_the_run_exercised_every_tool_error_path_and_command(transcript: Transcript) -> None:
    outputs = "\n".join(text for _, text in transcript.of(*OUTPUTS))
    for expected in [
        r"files match",  # ambiguous name
        r"No downloadable has the id",
        r"is not a benefit id",
        r"Polar is having trouble right now \(HTTP 503\)",
        r"Polar's rate limit was reached; retry after 120 s\.",
        r"not valid JSON|instead of JSON",
        r"arrived corrupted",
        r"Polar rejected the session token",
        r"Polar rejected POLAR_ACCESS_TOKEN",
        r"Saved rust-in-practice\.epub",
        r"Saved async-course-code\.zip",
    ]:
        assert re.search(expected, outputs), expected
    logs = "\n".join(text for _, text in transcript.of(*LOGS, *OUTPUTS))
    for expected in ["minted a customer session for", "retrying GET", "INFO polar_mcp.download: saved "]:
        assert expected in logs, expected
    # The clock is frozen, so one file's links are all the same string: errata.txt and the epub. (README.md's
    # link is asked for after the session was revoked, and a revoked session is served nothing remembered.)
    assert len(transcript.links) >= 2
    assert len(transcript.minted) >= 2  # minted, then renewed after the first was revoked
    codes = {code for _, code in transcript.exit_codes}
    assert {0, 3, 4, 5} <= codes, transcript.exit_codes


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_carried_traffic(transcript: Transcript, channel: str) -> None:
    entries = transcript.channels[channel]
    assert entries, f"nothing reached {channel}"
    assert any(text.strip() for _, text in entries), f"only empty text reached {channel}"
    if channel in LOGS:
        assert all(" DEBUG " in text for _, text in entries), channel  # every log stream was captured at DEBUG
    if channel == CLI_STDERR:
        assert any(" DEBUG " in text for _, text in entries)


@pytest.mark.parametrize("channel", CHANNELS)
def test_no_token_reaches_the_channel(transcript: Transcript, channel: str) -> None:
    needles = {
        "session token": SESSION_CANARY,
        "session token tail": SESSION_CANARY[-16:],
        "session marker": "CANARYsession",
        "organization token": ORG_CANARY,
        "organization token tail": ORG_CANARY[-16:],
        "organization marker": "CANARYorganization",
        **{f"minted session {token[:14]}…": token for token in transcript.minted},
    }
    assert _leaks(transcript.channels[channel], needles) == {}


@pytest.mark.parametrize("channel", [c for c in CHANNELS if c != LINK_RESULTS])
def test_signed_links_reach_no_channel_but_the_link_results(transcript: Transcript, channel: str) -> None:
    entries = transcript.channels[channel]
    assert _leaks(entries, {url[-20:]: url for url in transcript.links}) == {}
    # Links nobody asked for (a download's own link, a listing's) appear nowhere either.
    assert [where for where, text in entries if LINK.search(text)] == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_no_storage_url_that_links_redirect_to_reaches_the_channel(transcript: Transcript, channel: str) -> None:
    found = {where: STORAGE.findall(text)[:1] for where, text in transcript.channels[channel] if STORAGE.search(text)}
    assert found == {}


def test_link_results_hold_only_links_issued_to_the_canary_customer(transcript: Transcript, store: Store) -> None:
    assert transcript.channels[LINK_RESULTS]
    for where, text in transcript.channels[LINK_RESULTS]:
        for match in LINK.finditer(text):
            body = match.group(0).rsplit("/", 1)[1].split(".")[0]
            customer = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().split(":")[0]
            assert customer == ada_id(store), where
