"""The server's core opens at the first tool call that needs it, once, and closes with the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

import anyio
import pytest
from mcp import Client

from polar_mcp.config import load_settings
from polar_mcp.core import Core
from polar_mcp.failure import Failure
from polar_mcp.polar.client import HttpClientSource, PolarClient
from polar_mcp.server import CoreOnDemand, build_server
from tests.helpers.host import text_of
from tests.helpers.polar import CUSTOMER_TOKEN, FAR_FUTURE, FakePolar, downloadable

pytestmark = pytest.mark.anyio


class Opener:
    """Counts the cores it opens and closes; its open waits for `release`, so calls can meet there."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.opened = 0
        self.closed = 0
        self.fail_first = fail_first
        self.release = anyio.Event()
        self.waiting = anyio.Event()

    def __call__(self) -> AbstractAsyncContextManager[Core]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Core]:
        self.opened += 1
        self.waiting.set()
        await self.release.wait()
        if self.fail_first and self.opened == 1:
            raise OSError("the stored sign-in could not be read")
        try:
            yield cast(Core, f"core {self.opened}")
        finally:
            self.closed += 1


async def test_nothing_is_opened_until_a_call_asks_and_the_core_is_closed_with_the_server() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        assert opener.opened == 0
        first = await cores.get()
        assert await cores.get() is first
        assert (opener.opened, opener.closed) == (1, 0)
    assert (opener.opened, opener.closed) == (1, 1)


async def test_a_server_that_no_call_needed_opens_and_closes_nothing() -> None:
    opener = Opener()
    async with CoreOnDemand(opener):
        pass
    assert (opener.opened, opener.closed) == (0, 0)


async def test_calls_that_arrive_together_share_one_core() -> None:
    opener = Opener()
    got: list[Core] = []

    async def call(cores: CoreOnDemand) -> None:
        got.append(await cores.get())

    async with CoreOnDemand(opener) as cores:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(call, cores)
                await opener.waiting.wait()  # the first call is opening; the others queue behind it
                opener.release.set()
    assert opener.opened == 1
    assert got == ["core 1"] * 5
    assert opener.closed == 1


async def test_a_core_that_fails_to_open_fails_that_call_and_the_next_call_opens_it() -> None:
    opener = Opener(fail_first=True)
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        with pytest.raises(OSError, match="stored sign-in"):
            await cores.get()
        assert await cores.get() == "core 2"
    assert (opener.opened, opener.closed) == (2, 1)


async def test_once_the_server_closes_no_call_opens_a_core() -> None:
    opener = Opener()
    opener.release.set()
    async with CoreOnDemand(opener) as cores:
        pass
    with pytest.raises(Failure, match="shutting down"):
        await cores.get()
    assert opener.opened == 0


async def test_a_core_that_cannot_open_is_a_tool_error_that_says_where_to_look_and_the_next_call_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    polar = FakePolar(valid_tokens={CUSTOMER_TOKEN}, items=[downloadable(1, "Rust Ebook.pdf", expires_at=FAR_FUTURE)])
    settings = load_settings({"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN, "POLAR_MCP_TIMEOUT": "5"})
    attempts: list[int] = []

    def make_client(http: HttpClientSource) -> PolarClient:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("Could not determine home directory.")
        return PolarClient(http, timeout=settings.timeout)

    server = build_server(settings, http_transport=polar.transport(), make_client=make_client)
    async with Client(server) as client:
        failed = await client.call_tool("list_downloadables", {})
        listed = await client.call_tool("list_downloadables", {})
    assert failed.is_error
    assert text_of(failed) == (
        "Error executing tool list_downloadables: polar-mcp could not start its connection to Polar (RuntimeError). "
        "The server's log (stderr) has the details; the next call tries again."
    )
    assert "could not open polar-mcp's core" in caplog.messages
    assert "Could not determine home directory." in caplog.text  # the traceback is the operator's
    assert not listed.is_error
    assert len(attempts) == 2


async def test_a_server_cancelled_while_it_closes_still_closes_its_core() -> None:
    opener = Opener()
    opener.release.set()
    with anyio.CancelScope() as scope:
        async with CoreOnDemand(opener) as cores:
            await cores.get()
            scope.cancel()
    assert (opener.opened, opener.closed) == (1, 1)
