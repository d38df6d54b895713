"""An MCP host over the double on loopback, counting what its Polar client sent.

Retries are instant: the Polar client gets a fake clock whose time moves only when it sleeps, so the
waits it chose are recorded and checked against its deadline. Requests are counted as the client sent
them, by a recording transport around the real one (the double logs a request only after answering it,
so its own log can lag behind the tool result).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
from mcp import Client
from mcp.types import CallToolResult

from polar_mcp.config import load_settings
from polar_mcp.double.runner import RunningDouble
from polar_mcp.polar.client import HttpClientSource, PolarClient
from polar_mcp.server import build_server
from tests.helpers.clock import FakeTime

LISTING = "/v1/customer-portal/downloadables/"
_TLS = ssl.create_default_context()
"""Built once: loading the CA bundle for every transport costs more than the test itself (loopback is plain HTTP)."""

Mode = Literal["legacy", "auto"]


# Harness -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One HTTP attempt as the client made it; status 0 when no answer came (dropped, timed out)."""

    path: str
    query: str
    status: int


class _Closing(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._recorder.in_flight -= 1
        await self._inner.aclose()


class Recorder(httpx2.AsyncBaseTransport):
    """The real loopback transport, recording every attempt and how many were in flight at once."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport(verify=_TLS)
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        path, query = request.url.path, request.url.query.decode()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self.in_flight -= 1
            self.sent.append(Sent(path, query, 0))
            raise
        self.sent.append(Sent(path, query, response.status_code))
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_Closing(response.stream, self),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    def listing_statuses(self, since: int) -> list[int]:
        """Statuses of the downloadables listing attempts made after the first `since` attempts."""
        return [sent.status for sent in self.sent[since:] if sent.path == LISTING]


@dataclass
class Host:
    """An MCP client connected to a fresh server, and what its Polar client did."""

    client: Client
    recorder: Recorder
    time: FakeTime

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[CallToolResult, list[int]]:
        """Call a tool; also answer the statuses of the listing attempts it made."""
        mark = len(self.recorder.sent)
        self.time.waits.clear()
        result = await self.client.call_tool(tool, arguments)
        return result, self.recorder.listing_statuses(mark)

    async def listing_works(self) -> dict[str, Any]:
        """A plain listing (up to 100 files) succeeds: the server is still serving."""
        return ok(await self.client.call_tool("list_downloadables", {"limit": 100}))


@asynccontextmanager
async def connect(
    double: RunningDouble,
    token: str,
    *,
    timeout: float = 10.0,
    fake: FakeTime | None = None,
    real_clock: bool = False,
    mode: Mode = "legacy",
) -> AsyncIterator[Host]:
    """A connected host whose first listing (which also learns the benefit names) has succeeded."""
    fake = fake or FakeTime(monotonic=0.0)
    recorder = Recorder()
    settings = load_settings(
        {"POLAR_API_URL": double.base_url, "POLAR_CUSTOMER_SESSION": token, "POLAR_MCP_TIMEOUT": f"{timeout:g}"}
    )

    def make_client(http: HttpClientSource) -> PolarClient:
        clock = time.monotonic if real_clock else fake.clock
        return PolarClient(http, timeout=timeout, sleep=fake.sleep, clock=clock)

    server = build_server(settings, http_transport=recorder, make_client=make_client)
    async with Client(server, mode=mode) as client:
        host = Host(client, recorder, fake)
        await host.listing_works()
        yield host


def text_of(result: CallToolResult) -> str:
    first = result.content[0]
    assert first.type == "text"
    return first.text


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def failed(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return text_of(result)
